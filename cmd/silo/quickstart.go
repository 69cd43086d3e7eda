package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const quickstartUsage = `Usage: silo quickstart [--data ./silo-quickstart] [--addr 127.0.0.1:8080] [--rounds 10]

Runs the whole product on this machine, end to end, with nothing to set up:
a workspace server on an embedded SQLite database (in DATA/server); an admin whose
credentials are printed (and kept in the data directory, so a second run
prints the same ones); three local task runners, hospital-a, -b and -c, each
with its own storage in DATA/runners; the breast-cancer sample data registered on them as
three datasets; and a federated logistic regression (glm, binomial) trained
across them with a live progress bar. It prints the metrics, saves the final
and the best model (by ROC AUC) and says where each is, and leaves the web UI
running until Ctrl-C. A second run reuses the workspace (and its address,
when free; a saved login follows it if the port changes).

  --rounds 0     set everything up but train nothing (for scripts and
                 tests that run their own sessions)
  --save-login   once it is up, save the server and an access token as the
                 command line's login (what 'silo login' saves; $SILO_CONFIG
                 or ~/.config/silo/config.json), so the silo command and the
                 Python client (silo.connect()) need no sign-in
`

// quickstartAdmin is the quickstart's admin account.
const quickstartAdmin = "admin@silo.example"

func cmdQuickstart(ctx context.Context, args []string, s streams) int {
	fs := flag.NewFlagSet("silo quickstart", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data", "./silo-quickstart", "data directory")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (a free port is used if it is taken)")
	rounds := fs.Int("rounds", 10, "training rounds (0: train nothing)")
	saveLogin := fs.Bool("save-login", false, "save the login for the silo command and the Python client")
	if code, done := parseFlags(fs, args, quickstartUsage, s); done {
		return code
	}
	if *rounds < 0 {
		fmt.Fprintf(s.Stderr, "silo quickstart: --rounds %d: give a number of rounds, or 0 to train nothing\n", *rounds)
		return 2
	}
	password, err := quickstartPassword(*dataDir)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	// The server's own files and the runners' storage live apart: runners
	// the server starts may read only under their folder.
	if _, err := os.Stat(filepath.Join(*dataDir, "silo.db")); err == nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %s was made by an earlier version, which kept the runners' data next to the server's: delete it to start afresh\n", *dataDir)
		return 1
	}
	// The server and its runners log only warnings here: the quickstart
	// prints its own story.
	_ = os.Setenv("SILO_LOG_LEVEL", "warn")
	log := slog.New(slog.NewTextHandler(s.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := serverConfig{Addr: *addr, DataDir: filepath.Join(*dataDir, "server"), LocalRunnersRoot: filepath.Join(*dataDir, "runners"),
		AdminEmail: quickstartAdmin, AdminPassword: password, Logger: log}
	rs, err := startServer(ctx, cfg)
	previous := quickstartLastURL(*dataDir)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		// The address of the last run first, so a saved login and open
		// browser tabs keep working; then any free port.
		if u, perr := url.Parse(previous); perr == nil && u.Host != "" && u.Host != *addr {
			cfg.Addr = u.Host
			rs, err = startServer(ctx, cfg)
		}
		if err != nil && strings.Contains(err.Error(), "address already in use") {
			cfg.Addr = "127.0.0.1:0"
			rs, err = startServer(ctx, cfg)
		}
		if err == nil {
			fmt.Fprintf(s.Stdout, "%s is taken; using %s instead.\n", *addr, strings.TrimPrefix(rs.URL, "http://"))
		}
	}
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	defer rs.Shutdown()

	// Check the product end to end through the public SDK, as a user would.
	c := client.New(rs.URL, "")
	if _, err := c.Health(ctx); err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: the server does not answer: %v\n", err)
		return 1
	}
	login, err := c.Login(ctx, client.LoginRequest{Email: quickstartAdmin, Password: password, TokenName: "quickstart"})
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: sign in as %s: %v (delete %s to start afresh)\n", quickstartAdmin, err, *dataDir)
		return 1
	}
	api := client.New(rs.URL, login.Token)
	ws, err := api.Workspace(ctx)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: read the workspace: %v\n", err)
		return 1
	}
	fmt.Fprintf(s.Stdout, "Workspace %q is up at %s (SQLite in %s).\n", ws.Name, rs.URL, cfg.DataDir)
	if moved, err := quickstartFollowLogin(*dataDir, previous, rs.URL); err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	} else if moved != "" {
		fmt.Fprintf(s.Stdout, "The saved login (%s) pointed at this workspace's last address, %s; it now points at %s.\n", moved, previous, rs.URL)
	}
	if err := quickstartRunners(ctx, s, api, *dataDir); err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	datasets, err := quickstartDatasets(ctx, s, api, *dataDir)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	trained := "No model was trained (--rounds 0)."
	if *rounds > 0 {
		if trained, err = quickstartTrain(ctx, s, api, *dataDir, datasets, *rounds); err != nil {
			fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
			return 1
		}
	}
	signIn := fmt.Sprintf("silo login --server %s --email %s", rs.URL, quickstartAdmin)
	if *saveLogin {
		// Written last, when everything is up: a script may wait for it.
		cfg := &config{Server: rs.URL, Token: login.Token, TokenID: login.TokenID, Email: quickstartAdmin}
		path, err := cfg.save()
		if err != nil {
			fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
			return 1
		}
		signIn = "# signed in already: the login is saved in " + path
	}
	if err := os.WriteFile(filepath.Join(*dataDir, quickstartURLFile), []byte(rs.URL+"\n"), 0o600); err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	fmt.Fprintf(s.Stdout, `
Silo is running.

  Web UI    %s
  Email     %s
  Password  %s

%s

Use the command line against it%s:
  %s
  silo sessions list
  silo predict --session ID --dataset hospital_a

Press Ctrl-C to stop.
`, rs.URL, quickstartAdmin, password, trained, onPath(), signIn)
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.Stdout, "\nStopping.")
		return 0
	case err := <-rs.done:
		fmt.Fprintf(s.Stderr, "silo quickstart: server stopped: %v\n", err)
		return 1
	}
}

// quickstartRunnerNames are the three organisations of the quickstart.
var quickstartRunnerNames = []string{"hospital-a", "hospital-b", "hospital-c"}

// quickstartRunners registers (on first run) and starts three local runners,
// each with its own storage root under dir, waits for them to come online
// and runs a diagnostics task on each.
func quickstartRunners(ctx context.Context, s streams, api *client.Client, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// A runner registered by an earlier run may still read "online" from
	// then: only a heartbeat from the agents started now counts.
	started := time.Now()
	for _, name := range quickstartRunnerNames {
		root := filepath.Join(abs, "runners", name)
		_, err := api.GetRunner(ctx, name)
		if silo.ErrorCode(err) == silo.ENOTFOUND {
			_, err = api.RegisterRunner(ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 1, MemoryGB: 1})
		}
		if err != nil {
			return fmt.Errorf("register runner %s: %w", name, err)
		}
		if _, err := api.StartRunner(ctx, name); err != nil {
			return fmt.Errorf("start runner %s: %w", name, err)
		}
	}
	fmt.Fprintf(s.Stdout, "Starting 3 local task runners ")
	deadline := time.Now().Add(time.Minute)
	for _, name := range quickstartRunnerNames {
		for {
			r, err := api.GetRunner(ctx, name)
			if err != nil {
				return err
			}
			if r.Status == silo.RunnerOnline && r.LastHeartbeat != nil && r.LastHeartbeat.After(started) {
				fmt.Fprint(s.Stdout, ".")
				break
			}
			if r.Status == silo.RunnerFailed || time.Now().After(deadline) {
				return fmt.Errorf("runner %s did not come online (%s: %s)", name, r.Status, r.StatusReason)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	fmt.Fprintln(s.Stdout, " online.")
	for _, name := range quickstartRunnerNames {
		t, err := api.QueueDiagnostics(ctx, name, 1, 64)
		if err != nil {
			return err
		}
		for t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
			if time.Now().After(deadline) {
				return fmt.Errorf("runner %s did not finish its diagnostics task", name)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			tasks, err := api.RunnerTasks(ctx, name)
			if err != nil {
				return err
			}
			t = tasks[0]
		}
		if t.Status != silo.TaskSucceeded {
			return fmt.Errorf("diagnostics on runner %s %s: %s", name, t.Status, t.Error)
		}
		fmt.Fprintf(s.Stdout, "  %-11s online, storage %s checked\n", name, filepath.Join(abs, "runners", name))
	}
	return nil
}

//go:embed sampledata/*.csv
var sampleData embed.FS

// quickstartDatasets puts each hospital's share of the sample data in its
// runner's storage, registers it (identifier column patient_id) and waits
// until it is connected; it returns the datasets' names.
func quickstartDatasets(ctx context.Context, s streams, api *client.Client, dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	privacy := silo.DefaultPrivacyControls()
	privacy.AllowedSessionTypes = nil // every session type the server runs
	privacy.IdentifierColumns = []string{"patient_id"}
	var names []string
	for _, runner := range quickstartRunnerNames {
		name := strings.ReplaceAll(runner, "-", "_")
		names = append(names, name)
		path := filepath.Join(abs, "runners", runner, "patients.csv")
		data, err := sampleData.ReadFile("sampledata/" + name + ".csv")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("write sample data: %w", err)
		}
		if _, err := api.GetDataset(ctx, name); silo.ErrorCode(err) == silo.ENOTFOUND {
			_, err = api.RegisterDataset(ctx, silo.DatasetSpec{Name: name, Runner: runner, URI: "file://" + path, Privacy: &privacy,
				Description: "Breast Cancer Wisconsin (Diagnostic), part " + strings.ToUpper(name[len(name)-1:]) + " (sample data)"})
			if err != nil {
				return nil, fmt.Errorf("register dataset %s: %w", name, err)
			}
		} else if err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		for {
			d, err := api.GetDataset(ctx, name)
			if err != nil {
				return nil, err
			}
			if d.Status == silo.DatasetError {
				return nil, fmt.Errorf("dataset %s: %s", name, d.Error)
			}
			if d.Status == silo.DatasetConnected {
				fmt.Fprintf(s.Stdout, "  dataset %-11s %d rows, %d columns (patient_id is an identifier: never a feature)\n", name, d.RowCount, len(d.Columns))
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return names, nil
}

// quickstartTrain trains a federated logistic regression on the datasets
// with a progress bar, prints the metrics and saves the final and the best
// model; it returns what it saved, for the summary.
func quickstartTrain(ctx context.Context, s streams, api *client.Client, dir string, names []string, rounds int) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cfg, _ := json.Marshal(map[string]any{
		"name": "quickstart-breast-cancer-glm", "type": "hfl", "datasets": names, "min_clients": 2, "rounds": rounds, "round_timeout": "2m",
		"task":      map[string]any{"type": "classification", "target": "diagnosis", "positive_class": "malignant"},
		"model":     map[string]any{"package": "glm", "family": "binomial", "l2": 0.0001},
		"optimizer": map[string]any{"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 32, "local_epochs": 1},
		"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": 0.25},
		"save_best_model": map[string]any{"metric": "roc_auc", "mode": "max"}, "seed": 23,
	})
	sess, err := api.CreateSession(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("create the training session: %w", err)
	}
	fmt.Fprintf(s.Stdout, "\nTraining %s across 3 runners (federated logistic regression, %d rounds):\n", sess.ID, rounds)
	sess, err = followSession(ctx, s.Stdout, api, sess.ID)
	if err != nil {
		return "", err
	}
	if sess.Status != silo.SessionCompleted {
		return "", fmt.Errorf("session %s %s: %s", sess.ID, sess.Status, sess.StatusReason)
	}
	m, err := api.SessionMetrics(ctx, sess.ID)
	if err != nil {
		return "", err
	}
	last := m.Federated[len(m.Federated)-1]
	fmt.Fprintf(s.Stdout, "\nFederated test metrics after round %.0f: %s\n", last["round"], formatMetrics(last))
	for _, c := range m.Clients {
		if float64(c.Round) == last["round"] {
			fmt.Fprintf(s.Stdout, "  %-11s n_train %.0f, n_test %.0f, test ROC AUC %.4f, test accuracy %.4f\n", c.Dataset, c.Values["n_train"], c.Values["n_test"], c.Values["test_roc_auc"], c.Values["test_accuracy"])
		}
	}
	// The session keeps two models: the last round's, and the best round's
	// by save_best_model. Save both, and say which is which.
	best := fmt.Sprintf("round %d by %s", sess.BestRound, sess.Config.SaveBestModel.Metric)
	if v, ok := bestValue(m, sess.BestRound, sess.Config.SaveBestModel.Metric); ok {
		best = fmt.Sprintf("round %d, %s %.4f", sess.BestRound, sess.Config.SaveBestModel.Metric, v)
	}
	finalPath := filepath.Join(abs, "models", sess.ID+".json")
	bestPath := filepath.Join(abs, "models", sess.ID+"-best.json")
	if err := saveModel(ctx, api, sess.ID, false, finalPath); err != nil {
		return "", err
	}
	if err := saveModel(ctx, api, sess.ID, true, bestPath); err != nil {
		return "", err
	}
	return fmt.Sprintf("Saved two models of %s:\n  final (round %d):  %s\n  best (%s):  %s\n'silo models download %s --best -o FILE' gets the best one again; without --best, the final one.",
		sess.ID, sess.Round, finalPath, best, bestPath, sess.ID), nil
}

// bestValue returns the metric's value in the given round.
func bestValue(m *silo.SessionMetrics, round int, metric string) (float64, bool) {
	for _, r := range m.Federated {
		if int(r["round"]) == round {
			v, ok := r[metric]
			return v, ok
		}
	}
	return 0, false
}

// saveModel downloads a session's final or best model to path.
func saveModel(ctx context.Context, api *client.Client, id string, best bool, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// #nosec G304 -- inside the quickstart's own data directory
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := api.DownloadModel(ctx, id, best, f); err != nil {
		return err
	}
	return f.Close()
}

// quickstartURLFile, in the data directory, keeps the address of the last
// run, so the next one can take it again or move the saved login along.
const quickstartURLFile = "quickstart-url"

// quickstartLastURL returns the address of the data directory's last run,
// or "".
func quickstartLastURL(dir string) string {
	// #nosec G304 -- inside the quickstart's own data directory
	b, err := os.ReadFile(filepath.Join(dir, quickstartURLFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// quickstartFollowLogin moves the saved login to now when it points at the
// workspace's previous address (its token, issued by the same database,
// still works), so a port change does not break 'silo' commands. It
// returns the login file it changed, or "".
func quickstartFollowLogin(dir, previous, now string) (string, error) {
	if previous == "" || previous == now {
		return "", nil
	}
	cfg, err := loadConfig()
	if err != nil || cfg.Server != previous || cfg.Token == "" {
		return "", nil // no login of ours to move; a broken one is not ours to fix
	}
	cfg.Server = now
	return cfg.save()
}

// onPath says how to get the silo command when it is not on PATH: 'go run'
// builds it in a temporary directory, so the commands below would not be
// found.
func onPath() string {
	if _, err := exec.LookPath("silo"); err == nil {
		return ""
	}
	return " (the silo command is not on your PATH: install it with 'go install ./cmd/silo', which puts it in $(go env GOPATH)/bin, or build it here with 'go build -o silo ./cmd/silo' and run ./silo)"
}

// quickstartPassword returns the quickstart admin's password, made once and
// kept (mode 0600) in the data directory.
func quickstartPassword(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "quickstart-admin-password")
	// #nosec G304 -- inside the quickstart's own data directory
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 9)
	rand.Read(buf)
	pw := "qs-" + hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save the admin password: %w", err)
	}
	return pw, nil
}
