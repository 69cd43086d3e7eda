package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
)

// federation is a servertest.Federation with its fields under this
// package's short names.
type federation struct {
	*env
	api   *client.Client // a Model Builder
	admin *client.Client
	dc    *client.Client
	roots map[string]string
	stops map[string]func() // stop each hospital's agent
	wire  *servertest.Wire
}

func newFederation(t *testing.T) *federation {
	f := servertest.NewFederation(t)
	return &federation{env: envOf(f.Env), api: f.API, admin: f.AdminAPI, dc: f.DC, roots: f.Roots, stops: f.Stops, wire: f.Wire}
}

// TestFederatedGLMMatchesCentralised trains a federated GLM across three
// runners on the breast-cancer data and compares its pooled test ROC AUC with
// a centralised logistic regression fitted exactly (IRLS) on the same
// training rows; it also proves no row reached the server.
func TestFederatedGLMMatchesCentralised(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	s, err := f.api.CreateSession(ctx, sessionConfig("breast-cancer-glm", nil))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionCompleted || s.Round != 15 {
		t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	m, err := f.api.SessionMetrics(ctx, s.ID)
	if err != nil || len(m.Federated) != 15 || len(m.Clients) != 45 {
		t.Fatalf("metrics: %d rounds, %d client rows, %v", len(m.Federated), len(m.Clients), err)
	}
	for _, k := range []string{"loss", "accuracy", "roc_auc", "log_loss"} {
		if _, ok := m.Federated[14][k]; !ok {
			t.Errorf("federated metrics lack %s: %v", k, m.Federated[14])
		}
	}
	for _, k := range []string{"n_train", "n_test", "test_loss", "test_accuracy"} {
		if _, ok := m.Clients[0].Values[k]; !ok {
			t.Errorf("client metrics lack %s: %v", k, m.Clients[0].Values)
		}
	}
	fedAUC := m.Federated[14]["roc_auc"]

	// The centralised baseline on the same split.
	xTrain, yTrain, xTest, yTest, names := pooledSplit(t, 23, 0.25)
	beta := irlsLogistic(xTrain, yTrain, 1)
	central := aucOf(yTest, scores(xTest, beta))

	// The downloaded model predicts like the federated evaluation did.
	doc, err := f.api.LoadModel(ctx, s.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, x := range xTest {
		row := map[string]any{}
		for j, n := range names {
			row[n] = x[j]
		}
		rows = append(rows, row)
	}
	preds, err := doc.Predict(rows)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float64, len(preds))
	for i, pr := range preds {
		p[i] = pr.Probabilities["malignant"]
	}
	local := aucOf(yTest, p)
	t.Logf("test ROC AUC: federated GLM %.4f (the downloaded model on the pooled test rows: %.4f), centralised logistic regression %.4f (difference %.4f; %d train / %d test rows, %d features)",
		fedAUC, local, central, fedAUC-central, len(yTrain), len(yTest), len(names))
	if math.Abs(local-fedAUC) > 0.005 {
		t.Fatalf("the downloaded model's AUC %.4f differs from the federated %.4f", local, fedAUC)
	}
	if math.Abs(fedAUC-central) > 0.01 {
		t.Fatalf("federated AUC %.4f is not within 0.01 of the centralised %.4f", fedAUC, central)
	}
	if doc.Spec.Classes[1] != "malignant" || doc.Metadata.Session != s.ID {
		t.Fatalf("model document = %+v", doc.Metadata)
	}

	// Predictions run on the runner and stay there.
	out, err := f.api.Predict(ctx, client.PredictRequest{Session: s.ID, Dataset: "hospital_a"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Rows != 230 || !strings.HasPrefix(out.Path, "file://"+f.roots["a"]+"/predictions/hospital_a/") {
		t.Fatalf("predict = %+v", out)
	}
	pf, err := os.Open(strings.TrimPrefix(out.Path, "file://"))
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := csv.NewReader(pf).ReadAll()
	pf.Close()
	if len(recs) != 231 || strings.Join(recs[0], ",") != "patient_id,prediction,p_benign,p_malignant" || recs[1][0] != "A0000" {
		t.Fatalf("predictions file: %d lines, header %v, first %v", len(recs), recs[0], recs[1])
	}

	// Privacy: nothing the runners sent contains a row of the data.
	sent := f.wire.String()
	if len(sent) < 10000 {
		t.Fatalf("only %d bytes recorded from runners: the recorder is not in the path", len(sent))
	}
	leaks := 0
	for _, h := range []string{"a", "b", "c"} {
		recs := readCSV(t, filepath.Join(sampleData, "hospital_"+h+".csv"))
		for _, r := range recs[1:] {
			// An identifier, or three consecutive features of a row, in any
			// of the forms a serialiser would write them.
			probes := []string{r[0], strings.Join(r[1:4], ","), strings.Join(r[1:4], ", "), r[1] + `,"` + r[2]}
			for _, p := range probes {
				if strings.Contains(sent, p) {
					leaks++
					t.Errorf("runner traffic contains %q from hospital %s", p, h)
				}
			}
		}
	}
	t.Logf("checked %d bytes runners sent: no identifier or row of the training data", len(sent))
}

func readCSV(t *testing.T, path string) [][]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// pooledSplit reads the three hospitals' files with the runners' split and
// standardises with the training rows' statistics.
func pooledSplit(t *testing.T, seed int64, fraction float64) (xTrain [][]float64, yTrain []float64, xTest [][]float64, yTest []float64, names []string) {
	for _, h := range []string{"a", "b", "c"} {
		recs := readCSV(t, filepath.Join(sampleData, "hospital_"+h+".csv"))
		names = recs[0][1:31]
		for i, r := range recs[1:] {
			x := make([]float64, 30)
			for j := range x {
				x[j], _ = strconv.ParseFloat(r[j+1], 64)
			}
			y := 0.0
			if r[31] == "malignant" {
				y = 1
			}
			if runner.IsTestRow(seed, int64(i), fraction) {
				xTest, yTest = append(xTest, x), append(yTest, y)
			} else {
				xTrain, yTrain = append(xTrain, x), append(yTrain, y)
			}
		}
	}
	return
}

// irlsLogistic fits an L2-regularised logistic regression exactly by
// Newton's method on standardised features, with scikit-learn's objective:
// ½‖w‖² + C·Σ log loss (C = 1 is its default). It returns (beta, mean, std)
// for scores.
func irlsLogistic(x [][]float64, y []float64, C float64) []float64 {
	n, d := len(x), len(x[0])
	mean, std := make([]float64, d), make([]float64, d)
	for j := 0; j < d; j++ {
		for i := 0; i < n; i++ {
			mean[j] += x[i][j]
		}
		mean[j] /= float64(n)
		for i := 0; i < n; i++ {
			std[j] += (x[i][j] - mean[j]) * (x[i][j] - mean[j])
		}
		std[j] = math.Sqrt(std[j] / float64(n))
	}
	z := func(i, j int) float64 {
		if j == d {
			return 1
		}
		return (x[i][j] - mean[j]) / std[j]
	}
	beta := make([]float64, d+1)
	for iter := 0; iter < 50; iter++ {
		g := make([]float64, d+1)
		h := make([][]float64, d+1)
		for j := range h {
			h[j] = make([]float64, d+1)
		}
		for i := 0; i < n; i++ {
			eta := 0.0
			for j := 0; j <= d; j++ {
				eta += beta[j] * z(i, j)
			}
			p := 1 / (1 + math.Exp(-eta))
			for j := 0; j <= d; j++ {
				g[j] += (p - y[i]) * z(i, j)
				for k := 0; k <= d; k++ {
					h[j][k] += p * (1 - p) * z(i, j) * z(i, k)
				}
			}
		}
		for j := 0; j < d; j++ {
			g[j] += beta[j] / C
			h[j][j] += 1 / C
		}
		step := solve(h, g)
		for j := range beta {
			beta[j] -= step[j]
		}
	}
	return append(append(beta, mean...), std...)
}

func scores(x [][]float64, fit []float64) []float64 {
	d := len(x[0])
	beta, mean, std := fit[:d+1], fit[d+1:2*d+1], fit[2*d+1:]
	out := make([]float64, len(x))
	for i := range x {
		eta := beta[d]
		for j := 0; j < d; j++ {
			eta += beta[j] * (x[i][j] - mean[j]) / std[j]
		}
		out[i] = 1 / (1 + math.Exp(-eta))
	}
	return out
}

// solve solves a·x = b by Gaussian elimination with partial pivoting.
func solve(a [][]float64, b []float64) []float64 {
	n := len(b)
	m := make([][]float64, n)
	for i := range m {
		m[i] = append(append([]float64{}, a[i]...), b[i])
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for k := c; k <= n; k++ {
				m[r][k] -= f * m[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := m[r][n]
		for k := r + 1; k < n; k++ {
			s -= m[r][k] * x[k]
		}
		x[r] = s / m[r][r]
	}
	return x
}

// aucOf is the exact ROC AUC (ties count half).
func aucOf(y, p []float64) float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	var rankSum, npos float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && p[idx[j]] == p[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2
		for k := i; k < j; k++ {
			if y[idx[k]] == 1 {
				rankSum += mid
				npos++
			}
		}
		i = j
	}
	nneg := float64(len(y)) - npos
	return (rankSum - npos*(npos+1)/2) / (npos * nneg)
}

// TestSessionDPAndLedger trains with DP-SGD: the noise is calibrated by the
// accountant, the epsilon spent is reported and entered in each dataset's
// ledger, and a session that would exceed a budget is refused.
func TestSessionDPAndLedger(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	cfg := sessionConfig("dp-glm", func(m map[string]any) {
		m["rounds"] = 3
		m["differential_privacy"] = map[string]any{"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0}
	})
	s, err := f.api.CreateSession(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionCompleted {
		t.Fatalf("DP session %s: %s", s.Status, s.StatusReason)
	}
	for _, d := range []string{"hospital_a", "hospital_b", "hospital_c"} {
		e := s.EpsilonSpent[d]
		if !(e > 3.5 && e <= 4.0001) {
			t.Errorf("epsilon spent on %s = %g, want just under the 4.0 asked for (all planned steps were taken)", d, e)
		}
		ds, _ := f.dc.GetDataset(ctx, d)
		if math.Abs(ds.EpsilonSpent-e) > 1e-9 {
			t.Errorf("ledger of %s has %g, session reports %g", d, ds.EpsilonSpent, e)
		}
	}
	// The custodian tightens hospital_b's budget: 4 more would exceed it.
	p := silo.DefaultPrivacyControls()
	p.IdentifierColumns = []string{"patient_id"}
	p.EpsilonBudget, p.MaxEpsilonPerSession = 6, 5
	if _, err := f.dc.UpdateDataset(ctx, "hospital_b", client.DatasetUpdate{Privacy: &p}); err != nil {
		t.Fatal(err)
	}
	waitDataset(t, f.dc, "hospital_b")
	_, err = f.api.CreateSession(ctx, cfg)
	if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "hospital_b: would exceed the budget") {
		t.Fatalf("over-budget session: %v", err)
	}
	// A dataset that requires DP refuses a session without it.
	p.RequireDifferentialPrivacy, p.EpsilonBudget = true, 100
	if _, err := f.dc.UpdateDataset(ctx, "hospital_b", client.DatasetUpdate{Privacy: &p}); err != nil {
		t.Fatal(err)
	}
	waitDataset(t, f.dc, "hospital_b")
	_, err = f.api.CreateSession(ctx, sessionConfig("no-dp", nil))
	if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "requires differential privacy") {
		t.Fatalf("session without DP on a DP-only dataset: %v", err)
	}
}

// TestSessionChecks: the server checks a config against the datasets'
// schemas and privacy controls and says precisely what is wrong.
func TestSessionChecks(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	for _, tc := range []struct {
		edit      func(m map[string]any)
		field, in string
	}{
		{func(m map[string]any) { m["datasets"] = []string{"hospital_a", "nowhere"} }, "datasets", `no dataset named "nowhere"`},
		{func(m map[string]any) { m["task"].(map[string]any)["target"] = "patient_id" }, "task.target", "is an identifier"},
		{func(m map[string]any) { m["task"].(map[string]any)["target"] = "colour" }, "task.target", "has no column colour"},
		{func(m map[string]any) { m["task"].(map[string]any)["features"] = []string{"mean_radius", "patient_id"} }, "task.features", "is an identifier"},
		// A model no server could hold is refused before anything runs.
		{func(m map[string]any) {
			m["model"] = map[string]any{"package": "ffnet", "hidden_layers": []int{4096, 4096, 4096}}
		}, "model.hidden_layers", "more than 33554432 parameters"},
	} {
		_, err := f.api.CreateSession(ctx, sessionConfig("checks", tc.edit))
		var se *silo.Error
		if !errorsAs(err, &se) || se.Field != tc.field || !strings.Contains(se.Message, tc.in) {
			t.Errorf("got %v, want field %s containing %q", err, tc.field, tc.in)
		}
	}
	// A Data Custodian may not create sessions, and sees only sessions of
	// their datasets.
	if _, err := f.dc.CreateSession(ctx, sessionConfig("x", nil)); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("custodian created a session: %v", err)
	}
	// A positive class that does not exist fails the session with a reason.
	s, err := f.api.CreateSession(ctx, sessionConfig("bad-class", func(m map[string]any) { m["task"].(map[string]any)["positive_class"] = "maybe" }))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, `positive_class "maybe" is not among the classes`) {
		t.Fatalf("bad positive class: %s %q", s.Status, s.StatusReason)
	}
	// A model larger than a runner's memory fails the session once the
	// statistics fix its size, and says which runner and how large.
	s, err = f.api.CreateSession(ctx, sessionConfig("too-big", func(m map[string]any) {
		m["model"] = map[string]any{"package": "ffnet", "hidden_layers": []int{4000, 4000}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "runner hospital-a has 1024 MB") {
		t.Fatalf("a model too large for the runners: %s %q", s.Status, s.StatusReason)
	}
	other := client.New(f.ts.URL, f.addUser("dc2@example.org", "data_custodian"))
	if list, _ := other.ListSessions(ctx); len(list) != 0 {
		t.Fatalf("a custodian of no dataset sees %d sessions", len(list))
	}
	if list, _ := f.dc.ListSessions(ctx); len(list) != 2 {
		t.Fatalf("the datasets' custodian sees %d sessions, want 2", len(list))
	}
}

// TestSessionFFNetAdaptive trains a feed-forward net with Adam locally and
// FedAdam on the server, and cancels a second session midway.
func TestSessionFFNetAdaptive(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	s, err := f.api.CreateSession(ctx, sessionConfig("ffnet", func(m map[string]any) {
		m["rounds"] = 5
		m["model"] = map[string]any{"package": "ffnet", "hidden_layers": []int{16}, "activation": "tanh"}
		m["optimizer"] = map[string]any{"name": "adam", "learning_rate": 0.01, "batch_size": 32, "local_epochs": 2}
		m["strategy"] = map[string]any{"name": "fedadam", "params": map[string]any{"server_learning_rate": 0.05}}
		m["save_best_model"] = map[string]any{"metric": "roc_auc", "mode": "max"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionCompleted || s.Latest["roc_auc"] < 0.95 || s.BestRound == 0 {
		t.Fatalf("ffnet session: %s %q latest %v best %d", s.Status, s.StatusReason, s.Latest, s.BestRound)
	}
	if _, err := f.api.LoadModel(ctx, s.ID, true); err != nil {
		t.Fatalf("best model: %v", err)
	}
	long, err := f.api.CreateSession(ctx, sessionConfig("long", func(m map[string]any) { m["rounds"] = 1000 }))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "long session running", func() bool {
		s, _ := f.api.GetSession(ctx, long.ID)
		return s.Round >= 1
	})
	if s, err := f.api.CancelSession(ctx, long.ID); err != nil || s.Status != silo.SessionCancelled {
		t.Fatalf("cancel = %v, %v", s, err)
	}
	if _, err := f.api.CancelSession(ctx, long.ID); silo.ErrorCode(err) != silo.ECONFLICT {
		t.Fatalf("second cancel: %v", err)
	}
}

func errorsAs(err error, target **silo.Error) bool {
	e, ok := err.(*silo.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestRunnerStoppedMidRound: a runner stopped mid-session is recorded
// and the rounds go on with the others while min_clients remain; with too
// few left the session fails and says why.
func TestRunnerStoppedMidRound(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	// Rounds of this data take milliseconds: c, stopped once round 1 is
	// seen, may still be in the next few, but not in the last.
	const rounds = 6
	s, err := f.api.CreateSession(ctx, sessionConfig("dropped", func(m map[string]any) { m["rounds"] = rounds; m["round_timeout"] = "30s" }))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "round 1", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Round >= 1 })
	f.stops["c"]()
	// Time passes beyond the round timeout whenever the session waits: the
	// round closes with a and b.
	waitPastTimeouts(t, f, s.ID, "hospital-c")
	s, _ = f.api.GetSession(ctx, s.ID)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("session with a dropped client: %s round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	m, _ := f.api.SessionMetrics(ctx, s.ID)
	perRound := map[int][]string{}
	for _, c := range m.Clients {
		perRound[c.Round] = append(perRound[c.Round], c.Dataset)
	}
	if len(perRound[1]) != 3 || len(perRound[rounds]) != 2 || slices.Contains(perRound[rounds], "hospital_c") {
		t.Fatalf("clients per round = %v", perRound)
	}

	// With both of two clients needed, losing one fails the session and
	// says why.
	s, err = f.api.CreateSession(ctx, sessionConfig("needs-both", func(m map[string]any) {
		m["min_clients"] = 2
		m["datasets"] = []string{"hospital_a", "hospital_b"}
		m["rounds"] = 50
		m["round_timeout"] = "30s"
	}))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "round 1", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Round >= 1 })
	f.stops["b"]()
	waitPastTimeouts(t, f, s.ID, "hospital-b", "hospital-c")
	s, _ = f.api.GetSession(ctx, s.ID)
	// The stopped runner either reported its interrupted task or went
	// silent; either way the reason names it.
	if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "only 1 of 2 clients answered, min_clients is 2") ||
		!(strings.Contains(s.StatusReason, "did not answer within round_timeout 30s") || strings.Contains(s.StatusReason, "hospital_b: ")) {
		t.Fatalf("session short of clients: %s %q", s.Status, s.StatusReason)
	}
}

// waitsOnStoppedOnly reports whether every task of s's current phase that a
// live runner holds has ended: the session waits on the stopped runners
// alone, and only their round timeout can move it on.
func waitsOnStoppedOnly(db *sqlstore.DB, s *silo.Session, stopped []string) bool {
	ctx := context.Background()
	round := s.Round + 1
	if s.Phase == silo.TaskStats {
		round = 0
	}
	tasks, err := db.ListSessionTasks(ctx, s.ID, round, s.Phase)
	if err != nil || len(tasks) == 0 {
		return false
	}
	waiting := false
	for _, task := range tasks {
		if task.Status != silo.TaskQueued && task.Status != silo.TaskRunning {
			continue
		}
		if !slices.Contains(stopped, task.Runner) {
			return false
		}
		waiting = true
	}
	if !waiting {
		return false // nothing is left to wait for: the step closes by itself
	}
	// The session must not have moved on while its tasks were read: the
	// tasks listed would be those of a step that has closed.
	now, err := db.FindSession(ctx, s.ID)
	return err == nil && now.Phase == s.Phase && now.Round == s.Round && now.UpdatedAt.Equal(s.UpdatedAt)
}

// waitPastTimeouts moves the server's clock past the round timeout once the
// session waits only on stopped runners: every task of the current phase
// that a live runner holds has ended, and nothing has moved for a moment.
// Jumping while a live runner still works would cut it off too, which a
// loaded machine makes likely.
func waitPastTimeouts(t *testing.T, f *federation, id string, stopped ...string) {
	t.Helper()
	ctx := context.Background()
	last, since := "", time.Now()
	eventually(t, "the session to end", func() bool {
		s, _ := f.api.GetSession(ctx, id)
		if key := fmt.Sprint(s.Round, s.Phase, s.StatusReason); key != last {
			last, since = key, time.Now()
		} else if time.Since(since) > 300*time.Millisecond && waitsOnStoppedOnly(f.db, s, stopped) {
			f.clock.Add(31 * time.Second)
			since = time.Now()
		}
		return s.Status.Done()
	})
}

// TestHostileRunner: a runner that answers with garbage — impossible
// statistics, updates of the wrong shape or full of NaN, absurd metrics —
// is left out of each round; the session completes with the honest ones and
// its model stays sound.
func TestHostileRunner(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	f.stops["c"]()
	token, err := f.admin.RotateRunnerToken(ctx, "hospital-c")
	if err != nil {
		t.Fatal(err)
	}
	hostile := client.New(f.ts.URL, token.Token)
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		n := 0
		for hctx.Err() == nil {
			hostile.Heartbeat(hctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: "evil"})
			task, _, err := hostile.PollTask(hctx, time.Second, nil)
			if err != nil || task == nil {
				continue
			}
			n++
			var out any
			var parts client.Parts
			switch task.Type {
			case silo.TaskStats:
				out = silo.StatsOutput{NTrain: 100, NTest: 10, Numeric: map[string]silo.NumericStats{"mean_radius": {Count: 1 << 40, Sum: math.Inf(1)}}}
			case silo.TaskFit:
				if n%2 == 0 {
					out, parts = silo.FitOutput{NTrain: 1 << 30}, client.Parts{silo.PartParams: []byte("SILOW1 not really")}
				} else {
					out = map[string]any{"params": "U0lMT1cx", "n_train": 5}
				}
			case silo.TaskEvaluate:
				out = silo.EvaluateOutput{NTest: -3, Metrics: map[string]float64{"loss": -1e300}}
			}
			b, _ := json.Marshal(out)
			hostile.ReportTask(hctx, task.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: b}, parts, nil)
		}
	}()
	eventually(t, "hostile runner online", func() bool { return runnerStatus(t, f.admin, "hospital-c") == silo.RunnerOnline })
	s, err := f.api.CreateSession(ctx, sessionConfig("under-attack", func(m map[string]any) { m["rounds"] = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionCompleted {
		t.Fatalf("session with a hostile client: %s %q", s.Status, s.StatusReason)
	}
	if auc := s.Latest["roc_auc"]; !(auc > 0.97) || math.IsNaN(s.Latest["loss"]) || s.Latest["loss"] < 0 {
		t.Fatalf("the hostile client corrupted the model: %v", s.Latest)
	}
	m, _ := f.api.SessionMetrics(ctx, s.ID)
	for _, c := range m.Clients {
		if c.Dataset == "hospital_c" {
			t.Fatalf("the hostile client's metrics were recorded: %+v", c)
		}
	}
}

// TestEpsilonBudgetRace: differentially private sessions created at once
// against a small budget. Exactly as many as it affords are accepted (each
// reserves its epsilon on the dataset as it is created), the ledger never
// promises more than the budget, and once they end — one cancelled, the
// others completed — the ledger holds what they spent and the rest of each
// reservation is free again. TestAPIOnPostgres runs it on PostgreSQL.
func TestEpsilonBudgetRace(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	p := silo.DefaultPrivacyControls()
	p.IdentifierColumns = []string{"patient_id"}
	p.EpsilonBudget, p.MaxEpsilonPerSession = 5, 5
	if _, err := f.dc.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &p}); err != nil {
		t.Fatal(err)
	}
	waitDataset(t, f.dc, "hospital_a")
	dpConfig := func(name string, epsilon float64) json.RawMessage {
		return sessionConfig(name, func(m map[string]any) {
			m["rounds"] = 1
			m["differential_privacy"] = map[string]any{"epsilon": epsilon, "delta": 1e-5, "max_grad_norm": 1.0}
		})
	}
	const n = 6
	created := make([]*silo.Session, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i], errs[i] = f.api.CreateSession(ctx, dpConfig(fmt.Sprintf("race-%d", i), 2))
		}()
	}
	wg.Wait()
	var accepted []*silo.Session
	for i, err := range errs {
		switch {
		case err == nil:
			accepted = append(accepted, created[i])
		case silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "hospital_a: would exceed the budget"):
			t.Fatalf("session %d: %v", i, err)
		}
	}
	if len(accepted) != 2 {
		t.Fatalf("%d of %d sessions asking 2 of a budget of 5 were accepted, want 2", len(accepted), n)
	}
	if d, _ := f.dc.GetDataset(ctx, "hospital_a"); d.EpsilonSpent+d.EpsilonReserved > 5+1e-9 {
		t.Fatalf("hospital_a promises %g spent + %g reserved of a budget of 5", d.EpsilonSpent, d.EpsilonReserved)
	}
	f.api.CancelSession(ctx, accepted[0].ID) // it may have completed already
	spent := 0.0
	for _, s := range accepted {
		s = waitSession(t, f.api, s.ID)
		spent += s.EpsilonSpent["hospital_a"]
	}
	d, _ := f.dc.GetDataset(ctx, "hospital_a")
	if d.EpsilonReserved != 0 || math.Abs(d.EpsilonSpent-spent) > 1e-9 || spent > 4+1e-9 {
		t.Fatalf("after the sessions ended hospital_a has %g spent and %g reserved; the sessions spent %g", d.EpsilonSpent, d.EpsilonReserved, spent)
	}
	// What they did not spend is free again, to the last bit.
	rest := 5 - spent - 0.01
	if _, err := f.api.CreateSession(ctx, dpConfig("the-rest", rest)); err != nil {
		t.Fatalf("a session asking for the %g left: %v", rest, err)
	}
	if _, err := f.api.CreateSession(ctx, dpConfig("one-more", 0.1)); silo.ErrorCode(err) != silo.EINVALID {
		t.Fatalf("a session beyond the budget once the rest is reserved: %v", err)
	}
}
