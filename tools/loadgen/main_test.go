package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		ticks      int
		want       float64
		err        string
	}{
		{
			name:  "plain",
			stat:  "4242 (otelcol-bench) S 1 4242 4242 0 -1 4194560 2613 0 0 0 150 37 0 0 20 0 9 0 100 1 1\n",
			ticks: 100, want: 1.87,
		},
		{
			// A command name may hold spaces and ')': fields count from the last ')'.
			name:  "odd command name",
			stat:  "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1000 250 0 0 20 0 1 0 5 1 1",
			ticks: 250, want: 5,
		},
		{name: "no command", stat: "7 R 1", ticks: 100, err: "no command name"},
		{name: "short", stat: "7 (x) R 1 2 3", ticks: 100, err: "fields after the command name"},
		{name: "not a number", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 1x 2 0", ticks: 100, err: "utime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat, tc.ticks)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS("Name:\tprometheus\nVmHWM:\t  200000 kB\nVmRSS:\t  153600 kB\nThreads:\t12\n")
	if err != nil || got != 153600*1024 {
		t.Fatalf("got %v, %v; want %v", got, err, 153600*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseStatusRSS(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The target's figures come from the real /proc: this process burns some CPU
// and must see it, and holds more than a megabyte resident.
func TestTargetProcessReadsProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/<pid> is Linux's")
	}
	p := targetProcess{pid: os.Getpid(), clockTicks: 100}
	cpu0, err := p.cpuSeconds()
	if err != nil {
		t.Fatal(err)
	}
	x, deadline := 0, time.Now().Add(20*time.Second)
	for cpu := cpu0; cpu < cpu0+0.05; {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v s over 20 s of work", cpu)
		}
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		if cpu, err = p.cpuSeconds(); err != nil {
			t.Fatal(err)
		}
	}
	_ = x
	rss, err := p.rssBytes()
	if err != nil || rss < 1<<20 {
		t.Fatalf("rss %v, %v; want more than 1 MiB", rss, err)
	}
	if _, err := (targetProcess{pid: 1 << 30, clockTicks: 100}).cpuSeconds(); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
