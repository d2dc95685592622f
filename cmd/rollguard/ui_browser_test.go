package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rollguard/rollguard/actions"
)

// browser drives Debian's Chromium headless. make test installs it and sets
// ROLLGUARD_CHROMIUM; without either the test is skipped, saying so.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := os.Getenv("ROLLGUARD_CHROMIUM")
	if path == "" {
		if _, err := os.Stat("/usr/bin/chromium"); err != nil {
			t.Skip("no Chromium: run make test, which installs Debian's chromium, or set ROLLGUARD_CHROMIUM")
		}
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ROLLGUARD_CHROMIUM=%s: %v", path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900), // a laptop screen
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() && len(b.shots) > 0 {
			t.Logf("screenshots:\n  %s", strings.Join(b.shots, "\n  "))
		}
	})
	return b
}

// run runs actions with a timeout; on failure it takes a screenshot and
// names it in the error.
func (b *browser) run(what string, acts ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, acts...); err != nil {
		b.t.Fatalf("%s: %v (screenshot %s)", what, err, b.shot(what))
	}
}

// shot saves a full-page screenshot under the test's temporary directory.
func (b *browser) shot(name string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "(no screenshot: " + err.Error() + ")"
	}
	dir := os.Getenv("ROLLGUARD_SCREENSHOTS") // to keep them; by default they go with the test
	if dir == "" {
		dir = b.t.TempDir()
	}
	file := filepath.Join(dir, b.t.Name()+"-"+strings.NewReplacer(" ", "-", "/", "-").Replace(name)+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		return "(no screenshot: " + err.Error() + ")"
	}
	b.shots = append(b.shots, file)
	return file
}

// expect evaluates a JavaScript condition until it holds.
func (b *browser) expect(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Errorf("%s: %s is not true (screenshot %s)", what, js, b.shot(what))
}

// TestUIBadCanary: a bad canary's whole story is visible in a real browser:
// the overview lists the guard and the incident, the incident page shows the
// flag kill and its result, the charts are drawn with data, and the
// post-mortem renders.
func TestUIBadCanary(t *testing.T) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	flagdActuator(t, natsURL(td), pubKey(td), f)
	inc := untilState(t, f, td.get, actions.StateStabilized, 90*time.Second)
	b := newBrowser(t)

	b.run("overview", chromedp.Navigate(td.web+"/"), chromedp.WaitVisible(chromedp.CSS(`table.guards`)))
	b.expect("overview lists the guard", `document.querySelector('tr[data-guard="checkout"]').innerText.includes('checkout')`)
	b.expect("overview lists the open incident", `!!document.querySelector('tr[data-incident="`+inc.ID+`"] a')`)
	b.run("tab", chromedp.KeyEvent("\t"))
	b.expect("keyboard: the first Tab reaches the skip link", `document.activeElement && document.activeElement.classList.contains('skip')`)
	b.shot("overview")

	b.run("incident page", chromedp.Click(chromedp.CSS(`tr[data-incident="`+inc.ID+`"] a`)), chromedp.WaitVisible(chromedp.CSS(`table.commands`)))
	b.expect("the flag kill is listed with its result",
		`(() => { const r = document.querySelector('tr[data-command$="/flag_kill/new-checkout-flow"]');
		          return !!r && r.dataset.status === 'ok' && r.innerText.includes('ok by flagd') })()`)
	b.expect("the timeline reaches stabilized", `document.querySelector('ol.timeline').innerText.includes('stabilized')`)
	b.expect("status updates are listed", `document.querySelectorAll('table.statuses tbody tr').length >= 3`)
	b.expect("charts are drawn with data",
		`(() => { const s = document.querySelectorAll('figure.chart svg');
		          if (s.length < 2) return false;
		          const c = document.querySelector('figure.chart svg .series-candidate');
		          const r = s[0].getBoundingClientRect();
		          return !!c && parseInt(c.getAttribute('data-points'), 10) > 3 && r.width > 300 && r.height > 100 })()`)
	b.shot("incident")

	b.run("post-mortem page", chromedp.Navigate(td.web+"/incidents/"+inc.ID+"/postmortem"), chromedp.WaitVisible(chromedp.CSS(`article.postmortem h1`)))
	b.expect("post-mortem renders its sections", `document.querySelector('article.postmortem').innerText.includes('Time to detect') && !!document.querySelector('article.postmortem table')`)
	b.expect("post-mortem has the charts", `document.querySelectorAll('figure.chart svg').length >= 2`)
	b.shot("postmortem")

	b.run("deployment page", chromedp.Navigate(td.web+"/deployments/"+inc.Deployment.ID), chromedp.WaitVisible(chromedp.CSS(`figure.chart`)))
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`figure.chart svg .series-baseline`), "data-points"))
	if v, _ := strconv.Atoi(n.Value); err != nil || v < 3 {
		t.Errorf("baseline series has %q points, %v (screenshot %s)", n.Value, err, b.shot("deployment"))
	}
}

// TestUIHealthyCanary is the twin: a healthy canary shows its guard and
// deployment and no incident.
func TestUIHealthyCanary(t *testing.T) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	for i := 0; i < 40; i++ {
		f.round()
	}
	td.nextEvaluation(t, "checkout")
	b := newBrowser(t)
	b.run("overview", chromedp.Navigate(td.web+"/"), chromedp.WaitVisible(chromedp.CSS(`table.guards`)))
	b.expect("overview lists the guard", `document.querySelector('tr[data-guard="checkout"]').innerText.includes('checkout')`)
	b.expect("the deployment is under way", `document.querySelector('tr[data-guard="checkout"]').innerText.includes('v1 → v2')`)
	b.expect("no incident", `document.querySelectorAll('tr[data-incident]').length === 0`)
	b.run("incidents page", chromedp.Navigate(td.web+"/incidents"), chromedp.WaitVisible(chromedp.CSS(`main`)))
	b.expect("no incident listed", `document.querySelectorAll('tr[data-incident]').length === 0 && document.querySelector('main').innerText.includes('None')`)
	if t.Failed() {
		return
	}
	b.shot("healthy")
	if code, _ := td.get("/incidents/inc-nope"); code != 404 {
		t.Errorf("unknown incident page: %d, want 404", code)
	}
}
