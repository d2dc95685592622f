//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
)

// replicaProc is a rollguard run as a child process: the test binary
// itself, re-executed through TestMain (ROLLGUARD_E2E_CHILD) with `run`
// arguments, so it is the real CLI on a real configuration file. A child
// can be paused with SIGSTOP — every goroutine, timer and connection of
// the replica stops at once, as in a long GC pause, a frozen VM or a
// throttled container, which an in-process daemon cannot simulate. Its
// web address is picked here, so the test knows it before the child
// starts; its log goes to a file that is printed when the test fails (or
// always, with ROLLGUARD_PROC_LOGS=1).
type replicaProc struct {
	t    *testing.T
	name string
	web  string // http://127.0.0.1:port
	args []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// procClient answers for a paused child too: the kernel accepts its
// connections, nobody reads them, and the request times out.
var procClient = &http.Client{Timeout: 3 * time.Second}

// startProc writes config to a file of its own folder and starts a child
// running it, with its storage in that folder; it returns once the child
// is ready.
func startProc(t *testing.T, name, config string) *replicaProc {
	t.Helper()
	file := writeConfig(t, config)
	dir := filepath.Dir(file)
	p := &replicaProc{t: t, name: name, web: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		log: filepath.Join(dir, name+".log")}
	p.args = []string{"run", "--config.file=" + file, "--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + strings.TrimPrefix(p.web, "http://")}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() || os.Getenv("ROLLGUARD_PROC_LOGS") != "" {
			p.printLog()
		}
	})
	p.start()
	p.waitReady(60 * time.Second)
	return p
}

// start runs the child, its output appended to its log.
func (p *replicaProc) start() {
	p.t.Helper()
	args, err := json.Marshal(p.args)
	if err != nil {
		p.t.Fatal(err)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ROLLGUARD_E2E_CHILD="+string(args))
	cmd.Stdout, cmd.Stderr = out, out
	// A test binary killed by its -timeout takes its children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
}

// waitReady waits until the child answers /-/ready with 200.
func (p *replicaProc) waitReady(within time.Duration) {
	p.t.Helper()
	checkFor(p.t, within, func() error {
		select {
		case <-p.exitedCh():
			p.t.Fatalf("%s exited before it was ready", p.name)
		default:
		}
		if code, b := p.get("/-/ready"); code != http.StatusOK {
			return fmt.Errorf("%s not ready: %d %s", p.name, code, b)
		}
		return nil
	})
}

func (p *replicaProc) exitedCh() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

func (p *replicaProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// pause stops the child with SIGSTOP. It is safe to call from a NATS
// subscription's callback, to pause the child within a millisecond of
// something it published; pausedNow confirms the kernel has stopped it.
func (p *replicaProc) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Errorf("SIGSTOP %s: %v", p.name, err)
	}
}

// resume continues the child with SIGCONT.
func (p *replicaProc) resume() {
	p.t.Helper()
	p.mu.Lock()
	err := p.cmd.Process.Signal(syscall.SIGCONT)
	p.mu.Unlock()
	if err != nil {
		p.t.Fatalf("SIGCONT %s: %v", p.name, err)
	}
	checkFor(p.t, 5*time.Second, func() error {
		if s := p.procState(); s == "T" {
			return fmt.Errorf("%s still stopped", p.name)
		}
		return nil
	})
}

// pausedNow waits until the kernel reports the child stopped.
func (p *replicaProc) pausedNow() {
	p.t.Helper()
	checkFor(p.t, 5*time.Second, func() error {
		if s := p.procState(); s != "T" {
			return fmt.Errorf("%s in state %q, not stopped", p.name, s)
		}
		return nil
	})
}

// procState is the child's state letter in /proc (R, S, T, Z…).
func (p *replicaProc) procState() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return ""
	}
	// pid (comm) state …: comm may hold spaces, so cut at the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// stop continues a paused child and asks it to stop (SIGTERM); one that
// does not within 20s is killed.
func (p *replicaProc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		p.t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// printLog prints the child's log (its last 256 KiB) to the test log.
func (p *replicaProc) printLog() {
	b, err := os.ReadFile(p.log)
	if err != nil {
		p.t.Logf("%s: no log: %v", p.name, err)
		return
	}
	if len(b) > 256<<10 {
		b = b[len(b)-256<<10:]
	}
	p.t.Logf("--- log of %s (%s) ---\n%s--- end of %s's log ---", p.name, p.log, b, p.name)
}

// get is a GET on the child's web listener; 0 when it does not answer.
func (p *replicaProc) get(path string) (int, []byte) {
	resp, err := procClient.Get(p.web + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// getJSON decodes the child's answer to a GET into v; an error when it
// does not answer 200 with JSON.
func (p *replicaProc) getJSON(path string, v any) error {
	code, b := p.get(path)
	if code != http.StatusOK {
		return fmt.Errorf("%s: GET %s: %d %s", p.name, path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: GET %s: %w", p.name, path, err)
	}
	return nil
}

// incidents is the child's GET /api/v1/incidents.
func (p *replicaProc) incidents() ([]actions.Incident, error) {
	var body struct{ Incidents []actions.Incident }
	err := p.getJSON("/api/v1/incidents", &body)
	return body.Incidents, err
}

// guards is the child's GET /api/v1/guards.
func (p *replicaProc) guards() ([]detector.GuardStatus, error) {
	var body struct{ Guards []detector.GuardStatus }
	err := p.getJSON("/api/v1/guards", &body)
	return body.Guards, err
}

// deployments is the child's GET /api/v1/deployments.
func (p *replicaProc) deployments() ([]detector.Deployment, error) {
	var body struct{ Deployments []detector.Deployment }
	err := p.getJSON("/api/v1/deployments", &body)
	return body.Deployments, err
}

// metric is the value of one series in the child's /metrics (0 when it is
// absent), as `name{labels}` is written there.
func (p *replicaProc) metric(series string) (float64, error) {
	code, b := p.get("/metrics")
	if code != http.StatusOK {
		return 0, fmt.Errorf("%s: GET /metrics: %d", p.name, code)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, nil
}
