package main

import (
	"slices"

	"context"
	"github.com/silofl/silo/model"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// quickstartRun is one `silo quickstart` running in-process.
type quickstartRun struct {
	out, err *syncBuffer
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returned code
	code     int
	url      string
	email    string
	password string
}

// startQuickstart runs the quickstart on dir (with extra flags) and waits
// (bounded) until it says it is ready, then reads the URL and credentials it
// printed.
func startQuickstart(t *testing.T, dir string, flags ...string) *quickstartRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q := &quickstartRun{out: &syncBuffer{}, err: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		args := append([]string{"quickstart", "--data", dir, "--addr", "127.0.0.1:0"}, flags...)
		q.code = run(ctx, args, strings.NewReader(""), q.out, q.err)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-q.done:
		case <-time.After(30 * time.Second):
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(q.out.String(), "Press Ctrl-C to stop.") {
		select {
		case <-q.done:
			t.Fatalf("quickstart exited %d before it was ready\nstdout:\n%s\nstderr:\n%s", q.code, q.out, q.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("quickstart not ready after 60s\nstdout:\n%s\nstderr:\n%s", q.out, q.err)
		}
	}
	out := q.out.String()
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^  ` + name + `\s+(\S+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("quickstart printed no %s:\n%s", name, out)
		}
		return m[1]
	}
	q.url, q.email, q.password = field("Web UI"), field("Email"), field("Password")
	return q
}

// stop cancels the quickstart as Ctrl-C does and returns its exit status.
func (q *quickstartRun) stop(t *testing.T) int {
	t.Helper()
	q.cancel()
	select {
	case <-q.done:
		return q.code
	case <-time.After(30 * time.Second):
		t.Fatalf("quickstart did not stop within 30s\nstdout:\n%s\nstderr:\n%s", q.out, q.err)
		return -1
	}
}

// TestQuickstart runs `silo quickstart` end to end, with its three runners
// as real child processes (see TestMain), twice on the same directory.
func TestQuickstart(t *testing.T) {
	t.Setenv(asCLI, "1")
	t.Setenv("SILO_RUNNER_TOKEN", "")
	t.Setenv("SILO_LOG_LEVEL", "") // the quickstart sets it; this restores it
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "qs")
	names := []string{"hospital-a", "hospital-b", "hospital-c"}
	// As after 'go run': no silo command on PATH (runners start from the
	// running binary itself).
	t.Setenv("PATH", t.TempDir())

	first := time.Now()
	q := startQuickstart(t, dir)
	out := q.out.String()
	for _, re := range []string{
		`Workspace "\S+" is up at ` + regexp.QuoteMeta(q.url) + ` \(SQLite in ` + regexp.QuoteMeta(filepath.Join(dir, "server")) + `\)\.`,
		`Starting 3 local task runners \.\.\. online\.`,
		`(?m)^  hospital-a\s+online, storage ` + regexp.QuoteMeta(filepath.Join(dir, "runners", "hospital-a")) + ` checked$`,
		`(?m)^  hospital-c\s+online, storage \S+ checked$`,
		`silo login --server ` + regexp.QuoteMeta(q.url) + ` --email ` + regexp.QuoteMeta(quickstartAdmin),
		`(?m)^  dataset hospital_a\s+230 rows, 32 columns`,
		`round 10/10\s+loss \d\.\d+\s+completed 10 rounds`,
		`Federated test metrics after round 10: accuracy 0\.9\d+, log_loss \S+, loss \S+, roc_auc (0\.9\d+|1)`,
		`(?m)^  hospital_b\s+n_train \d+, n_test \d+, test ROC AUC 0?\.?\d`,
		`Saved two models of sess_\w+:\n  final \(round 10\):  ` + regexp.QuoteMeta(filepath.Join(dir, "models")) + `/sess_\w+\.json\n  best \(round \d+, roc_auc [01]\.\d{4}\):  \S+-best\.json\n`,
		`--best -o FILE' gets the best one again; without --best, the final one\.`,
		`the silo command is not on your PATH: install it with 'go install \./cmd/silo'.*or build it here with 'go build -o silo \./cmd/silo'`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("quickstart output does not match %s:\n%s", re, out)
		}
	}
	if q.email != quickstartAdmin || !strings.HasPrefix(q.url, "http://127.0.0.1:") {
		t.Fatalf("quickstart printed %s %s", q.url, q.email)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "quickstart-admin-password")); err != nil || strings.TrimSpace(string(b)) != q.password {
		t.Fatalf("saved password = %q, %v; printed %q", b, err, q.password)
	}
	if fi, err := os.Stat(filepath.Join(dir, "quickstart-admin-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v %v", fi, err)
	}

	// The models it saved load, and are what they are said to be: the
	// final one of round 10, the best one of the round printed.
	m := regexp.MustCompile(`final \(round 10\):  (\S+)\n  best \(round (\d+), `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no model paths in:\n%s", out)
	}
	bestRound, _ := strconv.Atoi(m[2])
	for _, want := range []struct {
		path  string
		best  bool
		round int
	}{{m[1], false, 10}, {strings.TrimSuffix(m[1], ".json") + "-best.json", true, bestRound}} {
		mf, err := os.Open(want.path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := model.Load(mf)
		mf.Close()
		if err != nil || doc.Metadata.Round != want.round || doc.Metadata.Best != want.best || len(doc.Preprocessing.Features) != 30 {
			t.Fatalf("saved model %s: %v %+v", want.path, err, doc.Metadata)
		}
		if slices.Contains(doc.Preprocessing.Columns(false), "patient_id") {
			t.Fatal("the identifier column became a feature")
		}
	}

	// Sign in as a user would, with what was printed.
	ids := quickstartCheck(t, ctx, q, names, first, 1)
	if code := q.stop(t); code != 0 || !strings.Contains(q.out.String(), "Stopping.") {
		t.Fatalf("quickstart after Ctrl-C: exit %d\nstdout:\n%s\nstderr:\n%s", code, q.out, q.err)
	}
	// Its child runners stop with it.
	waitNoProcesses(t, childMarker(q.url))

	// Again on the same directory: the same admin and the same runners.
	second := time.Now()
	q2 := startQuickstart(t, dir)
	if q2.password != q.password || q2.email != q.email {
		t.Fatalf("second run printed %s / %s, first %s / %s", q2.email, q2.password, q.email, q.password)
	}
	if s := q2.out.String() + q2.err.String(); strings.Contains(s, "already exists") {
		t.Fatalf("second run:\n%s", s)
	}
	if ids2 := quickstartCheck(t, ctx, q2, names, second, 2); !equalMaps(ids, ids2) {
		t.Fatalf("second run has other runners: %v, first %v", ids2, ids)
	}
	if code := q2.stop(t); code != 0 {
		t.Fatalf("second quickstart: exit %d\nstderr:\n%s", code, q2.err)
	}
	waitNoProcesses(t, childMarker(q2.url))
}

// TestQuickstartNoTraining: --rounds 0 sets up the server, the runners and
// the datasets and trains nothing, for scripts that run their own sessions.
func TestQuickstartNoTraining(t *testing.T) {
	t.Setenv(asCLI, "1")
	t.Setenv("SILO_RUNNER_TOKEN", "")
	t.Setenv("SILO_LOG_LEVEL", "")
	ctx := context.Background()
	var out, errOut strings.Builder
	if code := run(ctx, []string{"quickstart", "--rounds", "-1"}, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "or 0 to train nothing") {
		t.Fatalf("--rounds -1: exit %d, stderr %q", code, errOut.String())
	}

	q := startQuickstart(t, filepath.Join(t.TempDir(), "qs"), "--rounds", "0")
	if out := q.out.String(); !strings.Contains(out, "No model was trained (--rounds 0).") || strings.Contains(out, "Training ") {
		t.Fatalf("quickstart --rounds 0 printed:\n%s", out)
	}
	login, err := client.New(q.url, "").Login(ctx, client.LoginRequest{Email: q.email, Password: q.password, TokenName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(q.url, login.Token)
	if sessions, err := api.ListSessions(ctx); err != nil || len(sessions) != 0 {
		t.Fatalf("sessions after --rounds 0: %v, %v", sessions, err)
	}
	for _, name := range []string{"hospital_a", "hospital_b", "hospital_c"} {
		if d, err := api.GetDataset(ctx, name); err != nil || d.Status != silo.DatasetConnected {
			t.Fatalf("dataset %s: %+v, %v", name, d, err)
		}
	}
	if code := q.stop(t); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, q.err)
	}
	waitNoProcesses(t, childMarker(q.url))
}

// quickstartCheck signs in to a running quickstart and checks its three
// runners: online, fed by the heartbeats of agents started since, and with
// (at least) wantTasks succeeded diagnostics tasks each. It returns their ids.
func quickstartCheck(t *testing.T, ctx context.Context, q *quickstartRun, names []string, since time.Time, wantTasks int) map[string]int64 {
	t.Helper()
	login, err := client.New(q.url, "").Login(ctx, client.LoginRequest{Email: q.email, Password: q.password, TokenName: "test"})
	if err != nil {
		t.Fatalf("sign in with the printed credentials: %v", err)
	}
	api := client.New(q.url, login.Token)
	runners, err := api.ListRunners(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, r := range runners {
		ids[r.Name] = r.ID
		if r.Status != silo.RunnerOnline || r.Provider != silo.ProviderLocal || r.LastHeartbeat == nil || !r.LastHeartbeat.After(since) || r.AgentVersion != silo.Version {
			t.Errorf("runner %s = %s %q (heartbeat %v, agent %q)", r.Name, r.Status, r.StatusReason, r.LastHeartbeat, r.AgentVersion)
		}
	}
	if len(runners) != len(names) {
		t.Fatalf("quickstart has %d runners, want %v", len(runners), names)
	}
	for _, n := range names {
		if _, ok := ids[n]; !ok {
			t.Fatalf("no runner %s among %v", n, ids)
		}
		tasks, err := api.RunnerTasks(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		succeeded := 0
		for _, task := range tasks {
			if task.Type == silo.TaskDiagnostics && task.Status == silo.TaskSucceeded {
				succeeded++
			}
		}
		if succeeded < wantTasks {
			t.Errorf("runner %s has %d succeeded diagnostics tasks, want %d: %+v", n, succeeded, wantTasks, tasks)
		}
	}
	return ids
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestQuickstartSaveLogin: --save-login leaves the command line signed in to
// the quickstart (a file readable by its owner only), so that scripts and
// notebooks need no password.
func TestQuickstartSaveLogin(t *testing.T) {
	t.Setenv(asCLI, "1")
	t.Setenv("SILO_RUNNER_TOKEN", "")
	t.Setenv("SILO_LOG_LEVEL", "")
	t.Setenv("SILO_SERVER", "")
	t.Setenv("SILO_TOKEN", "")
	cfgPath := filepath.Join(t.TempDir(), "cli", "config.json")
	t.Setenv("SILO_CONFIG", cfgPath)

	qsDir := filepath.Join(t.TempDir(), "qs")
	q := startQuickstart(t, qsDir, "--rounds", "0", "--save-login")
	if out := q.out.String(); !strings.Contains(out, "signed in already: the login is saved in "+cfgPath) || strings.Contains(out, "silo login --server") {
		t.Fatalf("quickstart --save-login printed:\n%s", out)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved login: %v %v", fi, err)
	}
	cfg, err := loadConfig()
	if err != nil || cfg.Server != q.url || cfg.Email != quickstartAdmin || !strings.HasPrefix(cfg.Token, "silo_") || cfg.TokenID == "" {
		t.Fatalf("saved login = %+v, %v", cfg, err)
	}
	// The command line works with it, with no sign-in.
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"datasets", "list", "--json"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), `"hospital_c"`) {
		t.Fatalf("datasets list with the saved login: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if code := q.stop(t); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, q.err)
	}
	waitNoProcesses(t, childMarker(q.url))

	// Run again on another port (as when 8080 is taken): the saved login
	// follows the workspace, and the command line still works.
	q2 := startQuickstart(t, qsDir, "--rounds", "0")
	if q2.url == q.url {
		t.Fatalf("the second run took the same address %s: the test needs another", q.url)
	}
	if out := q2.out.String(); !strings.Contains(out, "The saved login ("+cfgPath+") pointed at this workspace's last address, "+q.url+"; it now points at "+q2.url) {
		t.Errorf("second run does not say the login moved:\n%s", out)
	}
	if cfg, err := loadConfig(); err != nil || cfg.Server != q2.url {
		t.Fatalf("saved login after the port changed = %+v, %v; want server %s", cfg, err, q2.url)
	}
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"datasets", "list", "--json"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), `"hospital_c"`) {
		t.Fatalf("datasets list after the port changed: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if code := q2.stop(t); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, q2.err)
	}
	waitNoProcesses(t, childMarker(q2.url))
}
