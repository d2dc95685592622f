package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/configs"
)

// TestReleaseStartupPages: the executable's read-only pages are handed back
// and the process keeps running on them (they fault back in).
func TestReleaseStartupPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	before := rssFileKB(t)
	n, err := releaseStartupPages()
	if err != nil || n == 0 {
		t.Fatalf("released %d bytes: %v", n, err)
	}
	if after := rssFileKB(t); after >= before {
		t.Errorf("file-backed RSS %d kB before, %d kB after", before, after)
	}
	if _, err := configs.Parse([]byte(testConfig)); err != nil { // code and constants fault back in
		t.Fatal(err)
	}
}

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
