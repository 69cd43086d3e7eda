package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
)

// launchInProcess makes the server start local runners as in-process agents
// (the way it runs child processes), stopped when the test ends, with their
// storage under a folder for runners.
func launchInProcess(t *testing.T, e *uiEnv) {
	var mu sync.Mutex
	var stops []func()
	e.srv.InternalURL = e.ts.URL
	e.srv.LocalRunnersRoot = t.TempDir()
	e.srv.Launch = func(ctx context.Context, l server.LocalLaunch) (func(), error) {
		ag, err := runner.New(runner.Config{ServerURL: l.ServerURL, Token: l.Token, StorageRoot: l.StorageRoot, VCPU: l.VCPU, MemoryMB: l.MemoryMB,
			PollWait: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { ag.Run(ctx); close(done) }()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		mu.Lock()
		stops = append(stops, stop)
		mu.Unlock()
		return stop, nil
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, stop := range stops {
			stop()
		}
	})
}

// The walk's helpers find what to click or fill by the text a person reads,
// never by ids or addresses: if a page stops saying where to go, the walk
// fails there.

// pageJS holds the functions the helpers share: the visible text of an
// element, and the first visible control whose text is t (exactly, or
// starting with it).
const pageJS = `
const norm = s => (s || '').replace(/\s+/g, ' ').trim();
const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
const byText = (sel, t) => {
  const els = [...document.querySelectorAll(sel)].filter(visible);
  return els.find(e => norm(e.innerText) === t) || els.find(e => norm(e.innerText).startsWith(t));
};
`

// retry runs js (which returns a string, "" for done) until it is done.
func retry(what, js string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		last := ""
		for {
			var res string
			if err := chromedp.Evaluate(js, &res).Do(ctx); err == nil && res == "" {
				return nil
			} else if err == nil {
				last = res
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %s: %w", what, last, ctx.Err())
			case <-tick.C:
			}
		}
	})
}

// clickText clicks the link, button, summary or label that reads text.
func clickText(text string) chromedp.Action {
	return retry("click "+text, fmt.Sprintf(`(() => { %s
  const el = byText('a, button, summary, label', %s);
  if (!el) return 'nothing to click reads this';
  el.scrollIntoView({block: 'center'}); el.click(); return ''; })()`, pageJS, jsString(text)))
}

// fill types value into the field whose label reads label.
func fill(label, value string) chromedp.Action {
	return retry("fill "+label, fmt.Sprintf(`(() => { %s
  const l = byText('label', %s);
  if (!l || !l.control) return 'no field is labelled so';
  l.control.value = %s;
  l.control.dispatchEvent(new Event('input', {bubbles: true}));
  l.control.dispatchEvent(new Event('change', {bubbles: true}));
  return ''; })()`, pageJS, jsString(label), jsString(value)))
}

// see waits until the page says want.
func see(want string) chromedp.Action {
	return retry("see "+want, fmt.Sprintf(`(() => { %s
  return norm(document.body.innerText).includes(%s) ? '' : 'the page does not say it: ' + norm(document.body.innerText).slice(0, 400); })()`, pageJS, jsString(want)))
}

// reloadUntil reloads the page, as a person would, until it says want.
func reloadUntil(want string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var body string
			if err := chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &body).Do(ctx); err == nil && strings.Contains(strings.Join(strings.Fields(body), " "), want) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the page never said %q: %w", want, ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
			if err := chromedp.Reload().Do(ctx); err != nil {
				return err
			}
		}
	})
}

// check evaluates a JS condition about the page, failing with its message.
func checkJS(what, js string) chromedp.Action { return retry(what, "(() => { "+pageJS+js+" })()") }

// TestBrowserFirstHour walks a new admin through the first hour, from the
// one-time setup page to predictions, following only what the pages say:
// links and buttons by their visible text, fields by their labels. On the
// way it checks what a newcomer tripped over: an invitation still pending
// is not a done step, the runners table fits a 1400 px window, the privacy
// controls offer only the session types the server runs, a mistyped data
// location can be corrected, a config's problems are listed all at once, a
// prediction's result shows where the user is looking, the dashboard lists
// recent sessions, and a missing page points at web pages, not commands.
func TestBrowserFirstHour(t *testing.T) {
	e := newUIEnv(t, true)
	launchInProcess(t, e)
	// Storage paths as long as real ones (a home directory, a project, a
	// data folder): the pages must still fit them.
	root := filepath.Join(e.srv.LocalRunnersRoot, "organisations", "hospital-a-north-wing", "clinical-data-warehouse", "exports")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(servertest.SampleData, "hospital_a.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "patients.csv"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := newChromium(t)
	acceptDialogs(ctx)
	s := browserStory{t}
	base := e.ts.URL
	const admin, password = "first.admin@example.org", "a long admin password"

	s.step(ctx, "the first admin sets up the workspace",
		chromedp.EmulateViewport(1400, 900),
		chromedp.Navigate(base+"/setup"),
		see("Set up Silo"),
		fill("Your email", admin), fill("Password", password), fill("Confirm password", password),
		clickText("Create admin account"),
		see("Welcome, "+admin),
		see("Getting started"),
	)

	s.step(ctx, "they invite a Model Builder",
		clickText("Invite people"),
		see("Invite"),
		fill("Email address", "builder@example.org"),
		clickText("Model Builder"),
		clickText("Create invitation"),
		see("Invitation created for builder@example.org"),
	)
	s.step(ctx, "an invitation still waiting is not a done step",
		clickText("Dashboard"),
		see("Getting started"),
		checkJS("the invite step", `
  const li = [...document.querySelectorAll('li')].find(l => norm(l.innerText).startsWith('Invite your team'));
  if (!li) return 'no step Invite your team';
  const t = norm(li.innerText);
  return t.includes('Pending') && t.includes('1 invitation waiting') && !t.includes('Done') ? '' : 'the step reads: ' + t;`),
	)

	s.step(ctx, "they register a local runner",
		clickText("Register a runner"),
		see("Register a task runner"),
		clickText("Local or self-managed"),
		see("Register a local task runner"),
		fill("Name", "hospital-a"),
		fill("Storage path", "file://"+root),
		fill("vCPUs", "2"),
		fill("Memory (GB)", "1"),
		clickText("Register runner"),
		see("shown only once"),
		see("silo runner --server "+base),
	)
	s.step(ctx, "they start it from the server and it comes online",
		clickText("Start it from the server"),
		see("is starting under the server"),
		reloadUntil("Online: the agent is connected"),
	)
	s.step(ctx, "they register a second runner, to start later",
		clickText("Task runners"),
		clickText("Register"),
		clickText("Local or self-managed"),
		fill("Name", "hospital-b"),
		fill("Storage path", "file://"+strings.Replace(root, "hospital-a", "hospital-b", 1)),
		clickText("Register runner"),
		see("shown only once"),
	)
	s.step(ctx, "the runners table fits a 1400 px window",
		clickText("Task runners"),
		see("Registered runners"),
		see("Waiting for the agent to connect"),
		checkJS("the table's width", `
  const w = document.querySelector('table').closest('.table-wrap');
  return w.scrollWidth <= w.clientWidth ? '' : 'the table is ' + w.scrollWidth + ' px wide in a ' + w.clientWidth + ' px card';`),
		shot("first-hour-runners"),
	)

	s.step(ctx, "they register a dataset, mistyping its file",
		clickText("Library"),
		clickText("Register dataset"),
		see("Which task runner holds the data?"),
		clickText("hospital-a"),
		clickText("Continue"),
		see("Details and privacy controls"),
		fill("Name", "hospital_a"),
		fill("Identifier columns", "patient_id"),
		checkJS("the session types offered", `
  const fs = [...document.querySelectorAll('fieldset')].find(f => norm(f.innerText).startsWith('Allowed session types'));
  if (!fs) return 'no Allowed session types';
  const offered = [...fs.querySelectorAll('input[type=checkbox]')].map(i => i.value + (i.checked ? '+' : ''));
  return offered.join(' ') === 'hfl+ prl+' ? '' : 'offered (+ ticked): ' + offered.join(' ');`),
		clickText("Continue"),
		see("Where is the data?"),
		fill("Location", "file://"+root+"/patient.csv"),
		clickText("Continue"),
		see("Attachments"),
		clickText("Connect"),
		reloadUntil("The runner could not read the data"),
	)
	s.step(ctx, "they correct the data location and it connects",
		clickText("correct the data location"),
		fill("Data location (URI)", "file://"+root+"/patients.csv"),
		clickText("Save changes"),
		reloadUntil("Connected"),
		see("230"),
	)

	var config string
	s.step(ctx, "they write a session config with two mistakes",
		clickText("Sessions"),
		clickText("New session"),
		see("Session config"),
		chromedp.Value("textarea", &config, chromedp.ByQuery),
	)
	if !strings.Contains(config, "<column to predict>") || !strings.Contains(config, `"hospital_a"`) {
		t.Fatalf("the editor does not start from the connected dataset with a target to choose:\n%s", config)
	}
	broken := strings.NewReplacer(`"<column to predict>"`, `"diagnosis"`, `"rounds": 10`, `"rounds": 0`, `"learning_rate": 0.1`, `"learning_rate": 99`).Replace(config)
	s.step(ctx, "every problem is listed at once",
		chromedp.SetValue("textarea", broken, chromedp.ByQuery),
		clickText("Create session"),
		see("The session was not created"),
		see("Rounds must be between 1 and 10000"),
		see("learning_rate must be above 0 and at most 10"),
	)
	fixed := strings.NewReplacer(`"<column to predict>"`, `"diagnosis"`, `"rounds": 10`, `"rounds": 3`).Replace(config)
	s.step(ctx, "they fix it and the session runs to the end",
		chromedp.SetValue("textarea", fixed, chromedp.ByQuery),
		clickText("Create session"),
		see("is created"),
		reloadUntil("Completed"),
		see("Final model"),
	)
	s.step(ctx, "they run predictions and see where the file is, where they clicked",
		clickText("Run predictions"),
		see("Predicted 230 rows of hospital_a"),
		checkJS("the result is in view", `
  const el = [...document.querySelectorAll('[role=status], [role=alert]')].find(e => norm(e.innerText).includes('Predicted'));
  if (!el) return 'no result';
  const r = el.getBoundingClientRect();
  return r.top >= 0 && r.bottom <= window.innerHeight ? '' : 'the result is out of view (top ' + r.top + ', window ' + window.innerHeight + ')';`),
		shot("first-hour-predicted"),
		see("predictions"),
	)
	s.step(ctx, "the dashboard lists the session",
		clickText("Dashboard"),
		see("Recent sessions"),
		see("my-session"),
		see("Completed"),
		shot("first-hour-dashboard"),
	)
	s.step(ctx, "a missing page points at web pages, not commands",
		chromedp.Navigate(base+"/library/no_such_data"),
		see("Not found"),
		checkJS("the message", `
  const t = norm(document.body.innerText);
  return !t.includes("'silo ") && t.includes('the Library') ? '' : 'it says: ' + t.slice(0, 300);`),
		clickText("Go to the Library"),
		see("hospital_a"),
	)
}
