package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// releaseStartupPages hands back to the kernel the pages of the
// executable's read-only mappings (code, constants, symbol tables) that
// the process has touched so far. Package initialisation of the one
// rollguard binary touches some 20 MiB of them, most of which a sidecar
// never needs again; the kernel could reclaim them under pressure anyway,
// but until then they count in the resident set. They are clean, private
// and never written, so madvise(MADV_DONTNEED) only unmaps them: a page
// still in use is faulted back in from the page cache. Writable mappings
// are left alone (dropping them would lose their contents). It returns the
// bytes advised.
func releaseStartupPages() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 || fs[5] != exe || (fs[1] != "r-xp" && fs[1] != "r--p") {
			continue
		}
		lo, hi, _ := strings.Cut(fs[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return n, fmt.Errorf("/proc/self/maps: unexpected line %q", sc.Text())
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("madvise %s: %w", fs[0], e)
		}
		n += int(end - start)
	}
	return n, sc.Err()
}
