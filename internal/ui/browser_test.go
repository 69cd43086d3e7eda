package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/testsvc"
)

// stepTimeout bounds each step of a browser story. Generous, since CI
// machines are slow; steps wait on what the page shows, never on the clock.
const stepTimeout = 30 * time.Second

// newChromium starts a headless Debian Chromium with a fresh profile and
// returns a context for its first tab. It is stopped when the test ends.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	exe := testsvc.Chromium(t)
	profile := t.TempDir()
	// Runs after the browser is closed and before the profile is removed.
	t.Cleanup(func() { stopProcessesUsing(t, profile) })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// Start the browser with a context that has no deadline: the first Run's
	// context owns the browser's lifetime.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// stopProcessesUsing kills any process still running with dir in its command
// line and waits until none is left. Chromium's helper processes can outlive
// the browser process by a moment and keep writing to the profile, which
// would make removing it fail. It relies on /proc; elsewhere it does nothing.
func stopProcessesUsing(t *testing.T, dir string) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := processesWithArg(dir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
		if time.Now().After(deadline) {
			t.Logf("browser processes %v still running after 10s", pids)
			return
		}
		<-tick.C
	}
}

// processesWithArg lists the processes with s in their command line. A
// zombie has an empty command line, so it does not count.
func processesWithArg(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// newBrowserContext opens a tab in a new browser context (like a separate
// incognito profile: its own cookies) of parent's browser. It is closed when
// the test ends.
//
// chromedp.WithNewBrowserContext creates its tab without a window, which the
// headless Chromium of Debian 12 refuses ("no browser is open"), so the
// context and its tab are created here, the tab in a new window.
func newBrowserContext(t *testing.T, parent context.Context) context.Context {
	t.Helper()
	var id target.ID
	err := chromedp.Run(parent, chromedp.ActionFunc(func(ctx context.Context) error {
		browser := cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser)
		bc, err := target.CreateBrowserContext().WithDisposeOnDetach(true).Do(browser)
		if err != nil {
			return fmt.Errorf("create browser context: %w", err)
		}
		id, err = target.CreateTarget("about:blank").WithBrowserContextID(bc).WithNewWindow(true).Do(browser)
		if err != nil {
			return fmt.Errorf("open a tab in the new browser context: %w", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(parent, 10*time.Second)
			defer cancel()
			chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
				return target.DisposeBrowserContext(bc).Do(cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser))
			}))
		})
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithTargetID(id))
	t.Cleanup(cancel)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("attach to the new tab: %v", err)
	}
	return ctx
}

// artifactDir is where failing steps leave screenshots: $SILO_TEST_ARTIFACTS,
// or testartifacts/ at the repository root.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("SILO_TEST_ARTIFACTS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return "testartifacts"
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "testartifacts")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(dir, "testartifacts")
		}
	}
}

// browserStory runs a test's steps in one or more browser tabs. A failing
// step ends the test with the page's address, its text and a screenshot.
type browserStory struct {
	t *testing.T
}

func (s browserStory) step(ctx context.Context, name string, actions ...chromedp.Action) {
	s.t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		shot, loc, text := s.evidence(ctx, name)
		s.t.Fatalf("step %q failed: %v\npage: %s\nscreenshot: %s\npage text:\n%s", name, err, loc, shot, text)
	}
}

// evidence saves a full-page screenshot of the tab and returns its path, the
// page's address and its visible text.
func (s browserStory) evidence(ctx context.Context, step string) (shot, loc, text string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	chromedp.Run(ctx, chromedp.Location(&loc), chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &text))
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		return "(no screenshot: " + err.Error() + ")", loc, text
	}
	dir := artifactDir(s.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "(no screenshot: " + err.Error() + ")", loc, text
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(s.t.Name()+"-"+step, "_") + ".png"
	shot = filepath.Join(dir, name)
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		return "(no screenshot: " + err.Error() + ")", loc, text
	}
	return shot, loc, text
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// waitText waits until the first element matching the CSS selector shows
// want in its text (white space collapsed). It keeps looking across page
// loads, so it also waits for a submitted form's answer.
func waitText(sel, want string) chromedp.Action {
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? el.innerText : null; })()`, jsString(sel))
	return chromedp.ActionFunc(func(ctx context.Context) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		last := "(no element)"
		for {
			var got *string
			if err := chromedp.Evaluate(js, &got).Do(ctx); err == nil && got != nil {
				last = strings.Join(strings.Fields(*got), " ")
				if strings.Contains(last, want) {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s never showed %q; it showed %q: %w", sel, want, last, ctx.Err())
			case <-tick.C:
			}
		}
	})
}

// acceptDialogs answers every confirm() in the tab with OK and records the
// questions asked.
func acceptDialogs(ctx context.Context) func() []string {
	var mu sync.Mutex
	var asked []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if ev, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			mu.Lock()
			asked = append(asked, ev.Message)
			mu.Unlock()
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(true))
		}
	})
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), asked...) }
}

// TestBrowserInviteAndRoles walks the main administration story in a real
// browser: an admin invites a Model Builder, who joins in a separate browser
// session; the admin changes their roles and is stopped from demoting or
// removing the workspace's only admin.
func TestBrowserInviteAndRoles(t *testing.T) {
	e := newUIEnv(t, false)
	admin := newChromium(t)
	s := browserStory{t}
	base := e.ts.URL
	const mbEmail, mbPassword = "mb@example.org", "model builder password"
	mbRow := `tr[data-email="mb@example.org"]`
	adminRow := `tr[data-email="` + uiAdminEmail + `"]`
	questions := acceptDialogs(admin)

	s.step(admin, "admin signs in",
		chromedp.Navigate(base+"/"),
		waitText("h1", "Sign in"),
		chromedp.SendKeys("#email", uiAdminEmail, chromedp.ByQuery),
		chromedp.SendKeys("#password", uiAdminPassword, chromedp.ByQuery),
		chromedp.Click(`form[action="/login"] button[type="submit"]`, chromedp.ByQuery),
		waitText("#welcome", "Welcome, "+uiAdminEmail),
		waitText("#current-user", uiAdminEmail),
		waitText("#current-roles", "Workspace Administrator"),
	)

	s.step(admin, "admin opens Settings, Users",
		chromedp.Click(`nav.sidebar a[href="/settings"]`, chromedp.ByQuery),
		waitText(".tabs .tab.active", "Users"),
		waitText(".section-head h2", "Users"),
		waitText(adminRow, uiAdminEmail),
	)

	var link string
	s.step(admin, "admin invites a Model Builder",
		chromedp.SendKeys("#invite-email", mbEmail, chromedp.ByQuery),
		chromedp.Click(`#invite-form input[name="roles"][value="model_builder"]`, chromedp.ByQuery),
		chromedp.Click(`#invite-form button[type="submit"]`, chromedp.ByQuery),
		waitText("#new-invite", "Invitation created for "+mbEmail),
		waitText("#new-invite", "Send this link to "+mbEmail+" yourself"),
		chromedp.Value("#invite-link", &link, chromedp.ByQuery),
		waitText(`tr[data-invite="mb@example.org"]`, "Pending"),
	)
	if !strings.HasPrefix(link, base+"/invite/") {
		t.Fatalf("invitation link on the page is %q, want %s/invite/…", link, base)
	}

	// The invited person uses a separate browser context: no shared cookies.
	mb := newBrowserContext(t, admin)
	s.step(mb, "invitee opens the link",
		chromedp.Navigate(link),
		waitText("h1", "Join silo"),
		waitText("#invite-email", mbEmail),
		waitText("#invite-roles", "Model Builder"),
	)
	s.step(mb, "invitee sets name and password",
		chromedp.SendKeys("#name", "Mo Builder", chromedp.ByQuery),
		chromedp.SendKeys("#password", mbPassword, chromedp.ByQuery),
		chromedp.SendKeys("#confirm", mbPassword, chromedp.ByQuery),
		chromedp.Click(`button[type="submit"]`, chromedp.ByQuery),
		waitText("#flash", "You joined the workspace as Model Builder"),
		waitText("#welcome", "Welcome, Mo Builder"),
		waitText("#current-user", mbEmail),
		waitText("#current-roles", "Model Builder"),
	)

	s.step(admin, "admin sees the new user",
		chromedp.Navigate(base+"/settings/users"),
		waitText("#current-user", uiAdminEmail),
		waitText(mbRow, "Mo Builder"),
		waitText(mbRow+" .user-roles", "Model Builder"),
		waitText(`tr[data-invite="mb@example.org"]`, "Accepted"),
	)

	s.step(admin, "admin makes them Model Builder and Data Custodian",
		chromedp.Click(mbRow+" .edit-roles summary", chromedp.ByQuery),
		chromedp.Click(mbRow+` input[name="roles"][value="data_custodian"]`, chromedp.ByQuery),
		chromedp.Click(mbRow+` .roles-form button[type="submit"]`, chromedp.ByQuery),
		waitText("#flash", "mb@example.org now has the roles: Model Builder, Data Custodian."),
		waitText(mbRow+" .user-roles", "Model Builder"),
		waitText(mbRow+" .user-roles", "Data Custodian"),
	)

	s.step(admin, "admin cannot drop their own admin role",
		chromedp.Click(adminRow+" .edit-roles summary", chromedp.ByQuery),
		chromedp.Click(adminRow+` input[name="roles"][value="admin"]`, chromedp.ByQuery),
		chromedp.Click(adminRow+` input[name="roles"][value="model_builder"]`, chromedp.ByQuery),
		chromedp.Click(adminRow+` .roles-form button[type="submit"]`, chromedp.ByQuery),
		waitText(".flash-error", "at least one active admin"),
		waitText(adminRow+" .user-roles", "Workspace Administrator"),
	)

	s.step(admin, "admin cannot remove themself",
		chromedp.Click(adminRow+` form[action$="/remove"] button`, chromedp.ByQuery),
		waitText(".flash-error", "at least one active admin"),
		waitText(adminRow, uiAdminEmail),
		waitText("#current-user", uiAdminEmail),
	)
	if q := questions(); len(q) != 1 || !strings.Contains(q[0], "Remove your own account?") {
		t.Errorf("confirmations asked: %q, want one asking to remove your own account", q)
	}
}

// shot saves a screenshot of the tab's viewport (and one of the whole page,
// -full) as name.png in $SILO_UI_SHOTS, for people to look at the pages a
// story visits. Without the variable it does nothing.
func shot(name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		dir := os.Getenv("SILO_UI_SHOTS")
		if dir == "" {
			return nil
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var png []byte
		if err := chromedp.CaptureScreenshot(&png).Do(ctx); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			return err
		}
		if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+"-full.png"), png, 0o644)
	})
}

// signInAsAdmin signs the tab in as the test server's admin.
func signInAsAdmin(s browserStory, ctx context.Context, base string) {
	s.t.Helper()
	s.step(ctx, "admin signs in",
		chromedp.Navigate(base+"/login"),
		waitText("h1", "Sign in"),
		chromedp.SendKeys("#email", uiAdminEmail, chromedp.ByQuery),
		chromedp.SendKeys("#password", uiAdminPassword, chromedp.ByQuery),
		chromedp.Click(`form[action="/login"] button[type="submit"]`, chromedp.ByQuery),
		waitText("#welcome", "Welcome, "+uiAdminEmail),
	)
}

// value reads an input's current value into *dst.
func value(sel string, dst *string) chromedp.Action {
	return chromedp.Value(sel, dst, chromedp.ByQuery)
}

// TestBrowserRegisterAWSRunner registers an AWS runner through the form: a
// subnet outside the VPC is refused next to its field with everything else
// kept, and once fixed the runner is registered and listed. The test server
// has no cloud credentials, so the runner waits in provisioning for its
// deployment.
func TestBrowserRegisterAWSRunner(t *testing.T) {
	e := newUIEnv(t, false)
	ctx := newChromium(t)
	s := browserStory{t}
	base := e.ts.URL
	signInAsAdmin(s, ctx, base)

	s.step(ctx, "admin opens Settings, Task Runners, Register",
		chromedp.Navigate(base+"/settings"),
		chromedp.Click(`.tabs a[href="/settings/runners"]`, chromedp.ByQuery),
		waitText(".tabs .tab.active", "Task Runners"),
		waitText(".empty h2", "No task runners yet"),
		chromedp.Click("#register-runner", chromedp.ByQuery),
		waitText(".section-head h2", "Register a task runner"),
		waitText("#providers", "Amazon Web Services"),
		shot("1-runner-providers"),
	)
	s.step(ctx, "admin chooses AWS",
		chromedp.Click(`a[data-provider="aws"]`, chromedp.ByQuery),
		waitText(".section-head h2", "Register an AWS task runner"),
		shot("2-runner-form-aws"),
	)
	s.step(ctx, "admin fills the form with a subnet outside the VPC",
		chromedp.SendKeys("#runner-name", "hospital-a", chromedp.ByQuery),
		chromedp.SetValue("#runner-region", "eu-west-1", chromedp.ByQuery),
		chromedp.SendKeys("#runner-provisioner_role_arn", "arn:aws:iam::123456789012:role/silo-provisioner", chromedp.ByQuery),
		chromedp.SendKeys("#runner-runtime_role_arn", "arn:aws:iam::123456789012:role/silo-runtime", chromedp.ByQuery),
		waitText("#group-basics", "S3 bucket"),
		chromedp.Click("#advanced > summary", chromedp.ByQuery),
		chromedp.WaitVisible("#runner-vpc_cidr", chromedp.ByQuery),
		chromedp.SendKeys("#runner-vpc_cidr", "10.0.0.0/16", chromedp.ByQuery),
		chromedp.SendKeys("#runner-private_subnet_cidr", "10.0.0.0/17", chromedp.ByQuery),
		chromedp.SendKeys("#runner-public_subnet_cidr", "10.1.0.0/17", chromedp.ByQuery),
		chromedp.SendKeys("#runner-cidr_newbits", "2", chromedp.ByQuery),
		chromedp.Click(`#runner-form button[type="submit"]`, chromedp.ByQuery),
		waitText(`[data-field="public_subnet_cidr"] .field-error`, "public_subnet_cidr 10.1.0.0/17 is not inside vpc_cidr 10.0.0.0/16"),
		waitText("#form-summary", "One field needs attention"),
		shot("3-runner-form-errors"),
	)
	var name, region, arn, vpc string
	s.step(ctx, "what was typed is kept",
		value("#runner-name", &name), value("#runner-region", &region),
		value("#runner-provisioner_role_arn", &arn), value("#runner-vpc_cidr", &vpc),
		chromedp.WaitVisible("#runner-public_subnet_cidr", chromedp.ByQuery), // the advanced settings are open
	)
	if name != "hospital-a" || region != "eu-west-1" || arn != "arn:aws:iam::123456789012:role/silo-provisioner" || vpc != "10.0.0.0/16" {
		t.Fatalf("after the error the form holds name=%q region=%q arn=%q vpc=%q", name, region, arn, vpc)
	}
	s.step(ctx, "admin fixes the subnet and registers",
		chromedp.SetValue("#runner-public_subnet_cidr", "10.0.128.0/17", chromedp.ByQuery),
		chromedp.Click(`#runner-form button[type="submit"]`, chromedp.ByQuery),
		waitText("#flash", "Task runner hospital-a is registered"),
		waitText("#runner-name", "hospital-a"),
		waitText("#runner-status", "Provisioning"),
		waitText("#status-reason", "no AWS credentials"),
		waitText("#runner-settings", "s3://silo-hospital-a.silo"),
		waitText("#runner-settings", "10.0.128.0/17"),
		waitText("#deploy", "Download the deployment bundle"),
		shot("4-runner-page-aws"),
	)
	s.step(ctx, "the runner is listed on Task Runners",
		chromedp.Click(`.crumbs a[href="/settings/runners"]`, chromedp.ByQuery),
		waitText(`tr[data-runner="hospital-a"]`, "Provisioning"),
		waitText(`tr[data-runner="hospital-a"]`, "AWS · eu-west-1"),
		shot("5-runners-list"),
	)
}

// TestBrowserDatasetWizard registers a local runner, starts its agent from
// the runner's page (in-process here), and walks the dataset wizard to a
// connected dataset with its schema and attachment.
func TestBrowserDatasetWizard(t *testing.T) {
	e := newUIEnv(t, false)
	var mu sync.Mutex
	var stops []func()
	e.srv.InternalURL = e.ts.URL
	e.srv.LocalRunnersRoot = t.TempDir()
	e.srv.Launch = func(ctx context.Context, l server.LocalLaunch) (func(), error) {
		if err := os.MkdirAll(l.StorageRoot, 0o700); err != nil {
			return nil, err
		}
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
	root := filepath.Join(e.srv.LocalRunnersRoot, "hospital-a")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("patient_id,age,bmi,smoker,readmitted\n")
	for i := range 60 {
		fmt.Fprintf(&csv, "P%04d,%d,%.1f,%v,%d\n", i, 30+i%40, 20+float64(i%15), i%3 == 0, i%2)
	}
	if err := os.WriteFile(filepath.Join(root, "patients.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	dictionary := filepath.Join(t.TempDir(), "dictionary.txt")
	if err := os.WriteFile(dictionary, []byte("patient_id: pseudonymous patient number\nage: years\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx := newChromium(t)
	s := browserStory{t}
	base := e.ts.URL
	signInAsAdmin(s, ctx, base)

	s.step(ctx, "admin registers a local runner",
		chromedp.Navigate(base+"/settings/register-runner/local"),
		waitText(".section-head h2", "Register a local task runner"),
		chromedp.SendKeys("#runner-name", "hospital-a", chromedp.ByQuery),
		chromedp.SendKeys("#runner-storage_path", "file://"+root, chromedp.ByQuery),
		chromedp.SendKeys("#runner-vcpu", "2", chromedp.ByQuery),
		chromedp.SendKeys("#runner-memory_gb", "1", chromedp.ByQuery),
		chromedp.Click(`#runner-form button[type="submit"]`, chromedp.ByQuery),
		waitText("#runner-token", "shown only once"),
		waitText("#runner-command", "silo runner --server "+base+" --token silor_"),
		shot("6-runner-token"),
	)
	s.step(ctx, "admin starts it from the server",
		chromedp.Click("#start-from-server", chromedp.ByQuery),
		waitText("#flash", "Runner hospital-a is starting under the server"),
	)
	servertest.Eventually(t, "runner online", func() bool {
		r, err := e.db.FindRunner(context.Background(), "hospital-a")
		return err == nil && r.Status == silo.RunnerOnline
	})
	s.step(ctx, "the runner page shows it online",
		chromedp.Reload(),
		waitText("#runner-status", "Online"),
		waitText("#runner-agent", "2 vCPU"),
	)
	s.step(ctx, "admin runs diagnostics; the page follows the task",
		chromedp.Click("#run-diagnostics", chromedp.ByQuery),
		waitText("#flash", "Diagnostics task"),
		waitText("#runner-tasks", "Succeeded"),
		waitText("#runner-tasks", "storage writable"),
		waitText("#runner-log", "storage root checked"),
		shot("6b-runner-page-local"),
	)

	s.step(ctx, "wizard step 1: choose the runner",
		chromedp.Click(`nav.sidebar a[href="/library"]`, chromedp.ByQuery),
		waitText("#library-empty", "No datasets yet"),
		chromedp.Click("#register-dataset", chromedp.ByQuery),
		waitText(".step-intro h2", "Which task runner holds the data?"),
		waitText(`label[data-runner="hospital-a"]`, "Online"),
		chromedp.Click(`label[data-runner="hospital-a"]`, chromedp.ByQuery),
		shot("7-wizard-1-runner"),
		chromedp.Click("#wizard-next", chromedp.ByQuery),
		waitText(".step-intro h2", "Details and privacy controls"),
	)
	s.step(ctx, "wizard step 2: a bad name is refused next to its field",
		chromedp.SendKeys("#ds-name", "Patients", chromedp.ByQuery),
		chromedp.SendKeys("#p-identifier_columns", "patient_id", chromedp.ByQuery),
		chromedp.Click("#wizard-next", chromedp.ByQuery),
		waitText(".field.invalid .field-error", `Dataset name "Patients" must be 3–64 lowercase letters`),
		shot("8-wizard-2-error"),
	)
	var ident string
	s.step(ctx, "wizard step 2: details and privacy controls", value("#p-identifier_columns", &ident))
	if ident != "patient_id" {
		t.Fatalf("identifier columns after the error = %q", ident)
	}
	s.step(ctx, "wizard step 2: fixed",
		chromedp.SetValue("#ds-name", "patients", chromedp.ByQuery),
		chromedp.SendKeys("#ds-description", "Readmissions after discharge, 2023.", chromedp.ByQuery),
		chromedp.Click("#wizard-next", chromedp.ByQuery),
		waitText(".step-intro h2", "Where is the data?"),
		waitText("#uri-help", "A file or a folder under file://"+root),
	)
	s.step(ctx, "wizard step 3: the data's location",
		chromedp.SendKeys("#ds-uri", "file://"+root+"/patients.csv", chromedp.ByQuery),
		shot("9-wizard-3-uri"),
		chromedp.Click("#wizard-next", chromedp.ByQuery),
		waitText(".step-intro h2", "Attachments"),
		waitText("#review", "patients"),
	)
	s.step(ctx, "wizard step 4: attach a file and connect",
		chromedp.SetUploadFiles("#ds-attachments", []string{dictionary}, chromedp.ByQuery),
		shot("10-wizard-4-attachments"),
		chromedp.Click("#wizard-next", chromedp.ByQuery),
		waitText("#flash", "Dataset patients is registered with 1 attachment"),
	)
	s.step(ctx, "the dataset page shows it connected with its schema",
		waitText("#dataset-status", "Connected"),
		waitText("#stat-rows", "60"),
		waitText("#schema", "age"),
		waitText(`tr[data-column="patient_id"]`, "Identifier"),
		waitText(`tr[data-column="readmitted"]`, "int"),
		waitText("#attachments", "dictionary.txt"),
		waitText("#privacy", "patient_id"),
		shot("11-dataset-page"),
	)
	s.step(ctx, "the library lists it",
		chromedp.Click(`.crumbs a[href="/library"]`, chromedp.ByQuery),
		waitText(`tr[data-dataset="patients"]`, "Connected"),
		waitText(`tr[data-dataset="patients"]`, "hospital-a"),
		shot("12-library"),
	)
}
