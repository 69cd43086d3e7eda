package ui

// The sessions pages of the web UI: the list, the JSON editor that creates a
// session, and a session's page with its progress, configuration, metrics
// (charts drawn here as inline SVG, so they need no script), model downloads,
// cancel and predictions.
//
// Pages get their values already formatted (see sessionPageData): the
// templates only lay them out.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
)

func sessionPath(id string) string { return "/sessions/" + url.PathEscape(id) }

// metricTitles names metrics as people read them.
var metricTitles = map[string]string{
	"loss": "Loss", "accuracy": "Accuracy", "roc_auc": "ROC AUC", "log_loss": "Log loss",
	"mse": "MSE", "mae": "MAE", "r2": "R²", "n_train": "Train rows", "n_test": "Test rows",
}

func metricTitle(k string) string {
	if t, ok := metricTitles[k]; ok {
		return t
	}
	if rest, ok := strings.CutPrefix(k, "test_"); ok {
		return "Test " + metricWord(rest)
	}
	return k
}

// metricWord names a metric inside a sentence: "loss", but "ROC AUC".
func metricWord(k string) string {
	t := metricTitle(k)
	if len(t) > 1 && t[1] >= 'a' && t[1] <= 'z' {
		t = strings.ToLower(t[:1]) + t[1:]
	}
	return t
}

// fmtMetric writes a metric value: four decimals in the usual range, four
// significant digits outside it, "—" for none.
func fmtMetric(v float64, ok bool) string {
	switch {
	case !ok || math.IsNaN(v):
		return "—"
	case math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case v == 0:
		return "0"
	case math.Abs(v) >= 0.001 && math.Abs(v) < 1000:
		return strconv.FormatFloat(v, 'f', 4, 64)
	case math.Abs(v) >= 1000 && math.Abs(v) < 1e7 && v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func lookup(m map[string]float64, k string) string {
	v, ok := m[k]
	return fmtMetric(v, ok)
}

// mainMetric is the metric a session is judged by on its pages: ROC AUC for
// classification (accuracy when there is none, as with more than two
// classes), R² for regression (else MSE).
func mainMetric(task string, rows ...map[string]float64) string {
	want, fallback := "roc_auc", "accuracy"
	if task == "regression" {
		want, fallback = "r2", "mse"
	}
	if len(rows) == 0 {
		return want
	}
	for _, r := range rows {
		if _, ok := r[want]; ok {
			return want
		}
	}
	return fallback
}

// ---- List ----

type sessionRow struct {
	*silo.Session
	Active      bool
	MetricTitle string
	Loss        string
	Metric      string
}

type sessionsData struct {
	Sessions []sessionRow
}

// sessionRows lists the sessions the signed-in user may see, as the
// sessions page and the dashboard show them.
func (ui *UI) sessionRows(r *http.Request) ([]sessionRow, error) {
	ctx := r.Context()
	list, err := ui.db.ListSessions(ctx, false)
	if err != nil {
		return nil, err
	}
	var rows []sessionRow
	for _, ss := range list {
		if !ui.srv.CanSeeSession(ctx, ss) {
			continue
		}
		m := mainMetric(ss.Config.Task.Type)
		if len(ss.Latest) > 0 {
			m = mainMetric(ss.Config.Task.Type, ss.Latest)
		}
		rows = append(rows, sessionRow{Session: &ss.Session, Active: !ss.Status.Done(), MetricTitle: metricTitle(m), Loss: lookup(ss.Latest, "loss"), Metric: lookup(ss.Latest, m)})
	}
	return rows, nil
}

func (ui *UI) handleSessionsPage(w http.ResponseWriter, r *http.Request) {
	rows, err := ui.sessionRows(r)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d := sessionsData{Sessions: rows}
	active := false
	for _, row := range rows {
		active = active || row.Active
	}
	v := ui.newView(r, "Sessions")
	v.Section = "sessions"
	v.Data = d
	if active {
		v.Refresh = 5
	}
	ui.render(w, r, http.StatusOK, "sessions", v)
}

// ---- New session: the JSON editor ----

// datasetRef is a connected dataset as the editor's reference lists it.
type datasetRef struct {
	*silo.Dataset
	Usable    bool     // open to the user for hfl sessions
	Notes     []string // privacy controls that shape a config
	Remaining float64  // epsilon left in its budget
}

// refEntry is one line of the editor's reference panel.
type refEntry struct{ Name, Text string }

type sessionNewData struct {
	Datasets      []datasetRef
	Usable        int
	Packages      []refEntry
	Families      []string
	Strategies    []refEntry
	Optimizers    []string
	ClassMetrics  []string
	RegressMetric []string
	// About the config that was refused.
	ErrorField   string
	ErrorLine    int
	ErrorExcerpt string
	// MoreErrors are the config's other problems, each with its field:
	// every one is shown at once.
	MoreErrors []silo.FieldError
	From       string // the session duplicated, if any
	Rows       int    // the editor's height, to show the whole config
}

// strategyParams lists each aggregation strategy's parameters for the
// editor's reference; StrategyConfig.Validate is the rule.
var strategyParams = []refEntry{
	{"fedavg", "weighted average of the clients' models"},
	{"fedprox", "params: mu (proximal term, e.g. 0.01)"},
	{"fedadam", "params: server_learning_rate, beta1, beta2, tau"},
	{"fedyogi", "params: server_learning_rate, beta1, beta2, tau"},
	{"fedadagrad", "params: server_learning_rate, beta1, tau"},
}

const targetPlaceholder = "<column to predict>"

// connectedDatasets lists the workspace's connected datasets, with whether
// the signed-in user may train on them.
func (ui *UI) connectedDatasets(ctx context.Context) ([]datasetRef, error) {
	stored, err := ui.db.ListDatasets(ctx)
	if err != nil {
		return nil, err
	}
	email := silo.ActorFromContext(ctx).User.Email
	var out []datasetRef
	for _, sd := range stored {
		d := &sd.Dataset
		if d.Status != silo.DatasetConnected {
			continue
		}
		p := d.Privacy
		ref := datasetRef{Dataset: d, Remaining: math.Max(0, p.EpsilonBudget-d.EpsilonSpent-d.EpsilonReserved)}
		ref.Usable = p.AllowsSessionType(silo.SessionHFL) && p.AllowsUser(email)
		switch {
		case !p.AllowsSessionType(silo.SessionHFL):
			ref.Notes = append(ref.Notes, "Does not allow hfl sessions")
		case !p.AllowsUser(email):
			ref.Notes = append(ref.Notes, "Not open to you: ask "+d.Owner)
		}
		if p.RequireDifferentialPrivacy {
			ref.Notes = append(ref.Notes, fmt.Sprintf("Requires differential privacy: ε ≤ %s per session, δ ≤ %s, ε %s left of %s",
				fmtFloat(p.MaxEpsilonPerSession), fmtFloat(p.Delta), fmtFloat(round4(ref.Remaining)), fmtFloat(p.EpsilonBudget)))
		}
		out = append(out, ref)
	}
	return out, nil
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// exampleConfig is the editor's starting point: SPEC §4's example on the
// connected datasets the user may train on. The target is left for the user
// to choose; differential privacy is included when a dataset requires it.
func exampleConfig(datasets []datasetRef) *silo.SessionConfig {
	cfg := &silo.SessionConfig{
		Name: "my-session", Type: silo.SessionHFL, Datasets: []string{}, Rounds: 10, RoundTimeout: "5m",
		Task:          silo.TaskConfig{Type: "classification", Target: targetPlaceholder, Features: []string{}, Categorical: []string{}},
		Model:         silo.ModelConfig{Package: "glm", Family: "binomial", L2: 0.001},
		Optimizer:     silo.OptimizerConfig{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, BatchSize: 64, LocalEpochs: 1},
		Strategy:      silo.StrategyConfig{Name: "fedavg", Params: map[string]float64{}},
		Validation:    silo.ValidationConfig{Fraction: 0.2},
		SaveBestModel: silo.SaveBestConfig{Metric: "loss", Mode: "min"},
		Seed:          23,
	}
	epsilon, delta, needDP := 4.0, 1e-5, false
	for _, d := range datasets {
		if !d.Usable {
			continue
		}
		cfg.Datasets = append(cfg.Datasets, d.Name)
		p := d.Privacy
		if p.RequireDifferentialPrivacy {
			needDP = true
		}
		epsilon = math.Min(epsilon, math.Min(p.MaxEpsilonPerSession, d.Remaining))
		delta = math.Min(delta, p.Delta)
	}
	cfg.MinClients = min(2, len(cfg.Datasets))
	if needDP {
		if !(epsilon > 0) {
			epsilon = 1 // the budget is spent: the server will say so
		}
		cfg.DifferentialPrivacy = &silo.DPConfig{Epsilon: round4(epsilon), Delta: delta, MaxGradNorm: 1}
	}
	return cfg
}

// configText writes a config as the editor shows it: a record linkage's
// with its own fields only.
func configText(cfg *silo.SessionConfig) string {
	var v any = cfg
	if cfg.Type == silo.SessionPRL {
		v = struct {
			Name         string                `json:"name"`
			Type         string                `json:"type"`
			Datasets     []string              `json:"datasets"`
			RoundTimeout string                `json:"round_timeout,omitempty"`
			IDColumns    map[string][]string   `json:"id_columns,omitempty"`
			Keys         []map[string][]string `json:"keys,omitempty"`
			Normalize    []string              `json:"normalize,omitempty"`
		}{cfg.Name, cfg.Type, cfg.Datasets, cfg.RoundTimeout, cfg.IDColumns, cfg.Keys, cfg.Normalize}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

func (ui *UI) handleSessionNew(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	datasets, err := ui.connectedDatasets(ctx)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	cfg := exampleConfig(datasets)
	from := r.URL.Query().Get("from")
	if from != "" {
		ss, err := ui.srv.SessionByID(ctx, from)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		cfg = &ss.Config
		cfg.Name = copyName(cfg.Name)
	}
	ui.renderSessionNew(w, r, http.StatusOK, newForm(url.Values{"config": {configText(cfg)}}), datasets, nil, from)
}

// copyName names a duplicate: name-2, then name-3…
func copyName(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil && n > 0 && n < 1000 {
			return name[:i+1] + strconv.Itoa(n+1)
		}
	}
	if len(name) > 97 {
		name = name[:97]
	}
	return name + "-2"
}

func (ui *UI) renderSessionNew(w http.ResponseWriter, r *http.Request, status int, f *form, datasets []datasetRef, cause error, from string) {
	d := sessionNewData{Datasets: datasets, Families: silo.GLMFamilies, Strategies: strategyParams, Optimizers: silo.Optimizers,
		ClassMetrics: silo.MetricsFor("classification"), RegressMetric: silo.MetricsFor("regression"), From: from,
		Packages: []refEntry{
			{"glm", "generalised linear model, elastic net (l1, l2); family: " + strings.Join(silo.GLMFamilies, ", ")},
			{"ffnet", "feed-forward network: hidden_layers (e.g. [32, 16]), activation (" + strings.Join(silo.Activations, ", ") + "), dropout"},
		}}
	for _, ds := range datasets {
		if ds.Usable {
			d.Usable++
		}
	}
	d.Rows = min(max(strings.Count(f.Get("config"), "\n")+3, 24), 120)
	if cause != nil {
		d.ErrorField, d.ErrorLine, d.ErrorExcerpt = locateConfigError(f.Get("config"), cause)
		if fields := silo.ErrorFields(cause); len(fields) > 1 {
			f.Error, d.MoreErrors = fields[0].Message, fields[1:]
		}
	}
	v := ui.newView(r, "New session · Sessions")
	v.Section = "sessions"
	v.Form = f
	v.Data = d
	ui.render(w, r, status, "session_new", v)
}

func (ui *UI) handleSessionCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	text := r.PostFormValue("config")
	f := newForm(url.Values{"config": {text}})
	var err error
	if strings.TrimSpace(text) == "" {
		err = silo.Errorf(silo.EINVALID, "the config is empty: write the session's JSON config in the editor")
	} else if len(text) > server.MaxBodyBytes {
		err = silo.Errorf(silo.EINVALID, "the config is larger than %d KiB", server.MaxBodyBytes>>10)
	}
	var ss *silo.Session
	if err == nil {
		ss, err = ui.srv.CreateSession(ctx, []byte(text))
	}
	if err == nil {
		ui.redirectFlash(w, r, sessionPath(ss.ID), "success", fmt.Sprintf("Session %s is created: it starts once %d of its runners are ready.", ss.Name, ss.Config.MinClients))
		return
	}
	ui.logInternal(r, err)
	datasets, lerr := ui.connectedDatasets(ctx)
	if lerr != nil {
		ui.renderError(w, r, lerr)
		return
	}
	f.Error = silo.ErrorMessage(err)
	ui.renderSessionNew(w, r, httpjson.Status(err), f, datasets, err, "")
}

var (
	unknownField  = regexp.MustCompile(`unknown field "([^"]+)"`)
	typeMismatch  = regexp.MustCompile(`into Go struct field [A-Za-z]+\.([A-Za-z0-9_.]+) of type`)
	leadingSpaces = regexp.MustCompile(`^\s+`)
)

// locateConfigError finds what a refused config's error is about: the
// field (from the error, or named in a JSON decoding error) and the line of
// the editor it is on, with that line's text.
func locateConfigError(text string, err error) (field string, line int, excerpt string) {
	var e *silo.Error
	if errors.As(err, &e) {
		field = e.Field
	}
	msg := silo.ErrorMessage(err)
	offset := -1
	// A JSON syntax or type error: decode again for its offset.
	var v silo.SessionConfig
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch derr := dec.Decode(&v); {
	case errors.As(derr, &se):
		offset = int(se.Offset)
	case errors.As(derr, &te):
		offset = int(te.Offset)
		if field == "" {
			field = te.Field
		}
	}
	if m := unknownField.FindStringSubmatch(msg); m != nil && field == "" {
		field = m[1]
	} else if m := typeMismatch.FindStringSubmatch(msg); m != nil && field == "" {
		field = strings.ToLower(m[1])
	}
	if offset < 0 && field != "" {
		offset = fieldOffset(text, field)
	}
	if offset < 0 {
		return field, 0, ""
	}
	offset = min(offset, len(text))
	line = strings.Count(text[:offset], "\n") + 1
	// A syntax error's offset is just past the bad byte, which can be the
	// start of the next line.
	if offset > 0 && text[offset-1] == '\n' && se != nil {
		line--
	}
	lines := strings.Split(text, "\n")
	if line >= 1 && line <= len(lines) {
		excerpt = leadingSpaces.ReplaceAllString(lines[line-1], "")
		if len(excerpt) > 160 {
			excerpt = excerpt[:160] + "…"
		}
	}
	return field, line, excerpt
}

// fieldOffset finds where a dotted field ("task.target") is written in a
// config's text: each key's first occurrence after its parent's. It returns
// -1 when a key is not there.
func fieldOffset(text, field string) int {
	at := -1
	for _, key := range strings.Split(field, ".") {
		i := strings.Index(text[at+1:], `"`+key+`"`)
		if i < 0 {
			return -1
		}
		at += 1 + i
	}
	return at
}

// ---- A session's page ----

// fact is one line of a summary: a label and its value.
type fact struct {
	Label, Value string
	Code         bool
}

type metricCol struct{ Key, Title string }

type roundRow struct {
	Round  int
	Best   bool
	Values []string
}

type clientRow struct {
	Dataset string
	Values  []string
	Missing bool // no answer in that round
}

type epsilonRow struct {
	Dataset, Spent, Of string
}

type sessionPageData struct {
	Session    *silo.Session
	Active     bool
	Running    bool
	CanCancel  bool
	CanManage  bool
	CanModel   bool // download
	HasModel   bool
	HasBest    bool
	CanPredict bool
	Task       string
	// Headline numbers.
	MetricTitle  string
	LatestLoss   string
	LatestMetric string
	BestMetric   string // save_best_model's metric, titled
	BestValue    string
	BestMode     string
	// Configuration.
	Facts      []fact
	Features   []string
	ConfigJSON string
	DP         bool
	Epsilon    []epsilonRow
	// Metrics.
	LossChart, MetricChart, ClientChart template.HTML
	MetricChartTitle, ClientChartTitle  string
	Columns                             []metricCol
	Rounds                              []roundRow
	RoundsShown, RoundsTotal            int
	LastRound                           int
	ClientCols                          []metricCol
	Clients                             []clientRow
	// Predictions.
	PredictDatasets []string
	PredictNote     string
	// PredictResult is the outcome of the prediction just run, shown in
	// the Predict card, where the user is looking.
	PredictResult *flash
}

// maxRoundRows bounds the metrics table; the API and CLI return every round.
const maxRoundRows = 50

func (ui *UI) handleSessionPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ss, err := ui.srv.SessionByID(r.Context(), r.PathValue("id"))
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	if ss.Config.Type == silo.SessionPRL {
		ui.linkagePage(w, r, ss)
		return
	}
	m, err := ui.db.SessionMetrics(ctx, ss.ID)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	a := silo.ActorFromContext(ctx)
	sess := &ss.Session
	cfg := &sess.Config
	d := sessionPageData{Session: sess, Active: !sess.Status.Done(), Running: sess.Status == silo.SessionRunning, Task: cfg.Task.Type}
	d.CanManage = a.Can(silo.PermSessionsManage)
	d.CanCancel = d.Active && d.CanManage
	d.HasModel, d.HasBest = sess.Round > 0, sess.BestRound > 0
	d.CanModel = a.Can(silo.PermModelsDownload) && d.HasModel

	fed := slices.Clone(m.Federated)
	sort.SliceStable(fed, func(i, j int) bool { return fed[i]["round"] < fed[j]["round"] })
	metric := mainMetric(cfg.Task.Type, fed...)
	d.MetricTitle = metricTitle(metric)
	d.LatestLoss, d.LatestMetric = lookup(sess.Latest, "loss"), lookup(sess.Latest, metric)
	d.BestMetric, d.BestMode = metricTitle(cfg.SaveBestModel.Metric), cfg.SaveBestModel.Mode
	for _, row := range fed {
		if int(row["round"]) == sess.BestRound {
			d.BestValue = lookup(row, cfg.SaveBestModel.Metric)
		}
	}

	d.Facts, d.Features = sessionFacts(sess)
	d.ConfigJSON = configText(cfg)
	if dpc := cfg.DifferentialPrivacy; dpc != nil {
		d.DP = true
		for _, ds := range cfg.Datasets {
			e, ok := sess.EpsilonSpent[ds]
			d.Epsilon = append(d.Epsilon, epsilonRow{Dataset: ds, Spent: fmtMetric(e, ok), Of: fmtFloat(dpc.Epsilon)})
		}
	}

	if len(fed) > 0 {
		sessionCharts(&d, cfg, sess, fed, m.Clients, metric)
		sessionTables(&d, cfg, sess, fed, m.Clients)
	}

	if a.Can(silo.PermPredictionsRun) && d.HasModel && !d.Active {
		d.CanPredict = true
		if list, err := ui.connectedDatasets(ctx); err == nil {
			for _, ds := range list {
				if ds.Privacy.AllowPredictions && ds.Privacy.AllowsUser(a.User.Email) {
					d.PredictDatasets = append(d.PredictDatasets, ds.Name)
				}
			}
		}
		// The session's own datasets first.
		slices.SortStableFunc(d.PredictDatasets, func(x, y string) int {
			return boolInt(!slices.Contains(cfg.Datasets, x)) - boolInt(!slices.Contains(cfg.Datasets, y))
		})
	}

	v := ui.newView(r, sess.Name+" · Sessions")
	v.Section = "sessions"
	if r.URL.Query().Has("predicted") {
		d.PredictResult, v.flashTaken = ui.takeFlash(w, r), true
	}
	v.Data = d
	if d.Active {
		v.Refresh = 2
	}
	ui.render(w, r, http.StatusOK, "session", v)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sessionFacts summarises a session's config for reading.
func sessionFacts(sess *silo.Session) ([]fact, []string) {
	c := &sess.Config
	task := titleCase(c.Task.Type) + " of " + c.Task.Target
	if c.Task.PositiveClass != "" {
		task += " (positive class " + c.Task.PositiveClass + ")"
	}
	model := c.Model.Package
	switch c.Model.Package {
	case "glm":
		model += " · family " + c.Model.Family
		if c.Model.Family == "tweedie" {
			model += " (power " + fmtFloat(c.Model.TweediePower) + ")"
		}
	case "ffnet":
		var layers []string
		for _, h := range c.Model.HiddenLayers {
			layers = append(layers, strconv.Itoa(h))
		}
		model += " · hidden layers " + strings.Join(layers, "×") + " · " + c.Model.Activation
		if c.Model.Dropout > 0 {
			model += " · dropout " + fmtFloat(c.Model.Dropout)
		}
	}
	model += " · L1 " + fmtFloat(c.Model.L1) + " · L2 " + fmtFloat(c.Model.L2)
	o := c.Optimizer
	opt := fmt.Sprintf("%s · learning rate %s", o.Name, fmtFloat(o.LearningRate))
	if o.Momentum > 0 {
		opt += " · momentum " + fmtFloat(o.Momentum)
	}
	opt += fmt.Sprintf(" · batch %d · %s", o.BatchSize, plural(o.LocalEpochs, "local epoch"))
	strategy := c.Strategy.Name
	var params []string
	for k, v := range c.Strategy.Params {
		params = append(params, k+" "+fmtFloat(v))
	}
	sort.Strings(params)
	if len(params) > 0 {
		strategy += " · " + strings.Join(params, " · ")
	}
	dp := "Off"
	if p := c.DifferentialPrivacy; p != nil {
		dp = fmt.Sprintf("ε %s · δ %s · max grad norm %s", fmtFloat(p.Epsilon), fmtFloat(p.Delta), fmtFloat(p.MaxGradNorm))
	}
	best := "lowest " + metricWord(c.SaveBestModel.Metric)
	if c.SaveBestModel.Mode == "max" {
		best = "highest " + metricWord(c.SaveBestModel.Metric)
	}
	facts := []fact{
		{Label: "Type", Value: c.Type + " · horizontal federated learning"},
		{Label: "Task", Value: task},
		{Label: "Model", Value: model},
		{Label: "Optimizer", Value: opt},
		{Label: "Strategy", Value: strategy},
		{Label: "Rounds", Value: fmt.Sprintf("%d · at least %d clients per round · round timeout %s", c.Rounds, c.MinClients, c.RoundTimeout)},
		{Label: "Validation", Value: fmt.Sprintf("%s%% of each dataset's rows held out for testing", fmtFloat(round4(c.Validation.Fraction*100)))},
		{Label: "Best model", Value: "The round with the " + best},
		{Label: "Differential privacy", Value: dp},
		{Label: "Seed", Value: strconv.FormatInt(c.Seed, 10), Code: true},
	}
	return facts, c.Task.Features
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// roundsOf lists the rounds of federated metrics rows.
func roundsOf(fed []map[string]float64) []int {
	out := make([]int, len(fed))
	for i, r := range fed {
		out[i] = int(r["round"])
	}
	return out
}

func sessionCharts(d *sessionPageData, cfg *silo.SessionConfig, sess *silo.Session, fed []map[string]float64, clients []silo.ClientMetrics, metric string) {
	rounds := roundsOf(fed)
	line := func(name, key string) series {
		sr := series{Name: name}
		for i, row := range fed {
			v, ok := row[key]
			if !ok {
				v = math.NaN()
			}
			sr.Points = append(sr.Points, chartPoint{X: float64(rounds[i]), Y: v})
		}
		return sr
	}
	mark := float64(sess.BestRound)
	markLabel := ""
	if mark > 0 {
		markLabel = fmt.Sprintf("Best round (%d)", sess.BestRound)
	}
	d.LossChart = lineChart(chart{Title: "Federated loss per round", YLabel: "Loss", Width: 460, Height: 250,
		Series: []series{line("Federated loss", "loss")}, Legend: true, Mark: mark, MarkLabel: markLabel})
	metricSeries := []series{line(metricTitle(metric), metric)}
	yLabel := metricTitle(metric)
	d.MetricChartTitle = yLabel
	if metric == "roc_auc" {
		metricSeries = append(metricSeries, line("Accuracy", "accuracy"))
		d.MetricChartTitle, yLabel = "ROC AUC and accuracy", "Score"
	}
	d.MetricChart = lineChart(chart{Title: d.MetricChartTitle + " per round", YLabel: yLabel, Width: 460, Height: 250,
		Series: metricSeries, Legend: true, Mark: mark, MarkLabel: markLabel})

	// Per client: the test metric each dataset reports.
	key := "test_" + metric
	if metric == "roc_auc" {
		has := false
		for _, c := range clients {
			_, ok := c.Values[key]
			has = has || ok
		}
		if !has {
			key = "test_accuracy"
		}
	}
	d.ClientChartTitle = metricTitle(key) + " per client"
	var perClient []series
	for _, ds := range cfg.Datasets {
		sr := series{Name: ds}
		byRound := map[int]float64{}
		for _, c := range clients {
			if v, ok := c.Values[key]; ok && c.Dataset == ds {
				byRound[c.Round] = v
			}
		}
		for _, rd := range rounds {
			v, ok := byRound[rd]
			if !ok {
				v = math.NaN()
			}
			sr.Points = append(sr.Points, chartPoint{X: float64(rd), Y: v})
		}
		perClient = append(perClient, sr)
	}
	d.ClientChart = lineChart(chart{Title: d.ClientChartTitle, YLabel: metricTitle(key), Width: 940, Height: 260, Series: perClient, Legend: true})
}

func sessionTables(d *sessionPageData, cfg *silo.SessionConfig, sess *silo.Session, fed []map[string]float64, clients []silo.ClientMetrics) {
	// Federated metrics: the task's, in their usual order, then any other.
	known := silo.MetricsFor(cfg.Task.Type)
	present := map[string]bool{}
	for _, row := range fed {
		for k := range row {
			if k != "round" {
				present[k] = true
			}
		}
	}
	for _, k := range known {
		if present[k] {
			d.Columns = append(d.Columns, metricCol{k, metricTitle(k)})
			delete(present, k)
		}
	}
	var rest []string
	for k := range present {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		d.Columns = append(d.Columns, metricCol{k, metricTitle(k)})
	}
	d.RoundsTotal = len(fed)
	shown := fed
	if len(shown) > maxRoundRows {
		shown = shown[len(shown)-maxRoundRows:]
	}
	d.RoundsShown = len(shown)
	for i := len(shown) - 1; i >= 0; i-- { // newest first
		row := shown[i]
		rr := roundRow{Round: int(row["round"]), Best: int(row["round"]) == sess.BestRound}
		for _, c := range d.Columns {
			rr.Values = append(rr.Values, lookup(row, c.Key))
		}
		d.Rounds = append(d.Rounds, rr)
	}

	// The last round's clients.
	d.LastRound = int(fed[len(fed)-1]["round"])
	byDataset := map[string]map[string]float64{}
	keys := map[string]bool{}
	for _, c := range clients {
		if c.Round == d.LastRound {
			byDataset[c.Dataset] = c.Values
			for k := range c.Values {
				keys[k] = true
			}
		}
	}
	order := []string{"n_train", "n_test"}
	for _, k := range known {
		order = append(order, "test_"+k)
	}
	for _, k := range order {
		if keys[k] {
			d.ClientCols = append(d.ClientCols, metricCol{k, metricTitle(k)})
			delete(keys, k)
		}
	}
	rest = rest[:0]
	for k := range keys {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		d.ClientCols = append(d.ClientCols, metricCol{k, metricTitle(k)})
	}
	for _, ds := range cfg.Datasets {
		vals, ok := byDataset[ds]
		row := clientRow{Dataset: ds, Missing: !ok}
		for _, c := range d.ClientCols {
			v, has := vals[c.Key]
			if c.Key == "n_train" || c.Key == "n_test" {
				if has {
					row.Values = append(row.Values, strconv.FormatFloat(v, 'f', 0, 64))
				} else {
					row.Values = append(row.Values, "—")
				}
				continue
			}
			row.Values = append(row.Values, fmtMetric(v, has))
		}
		d.Clients = append(d.Clients, row)
	}
}

func (ui *UI) handleSessionCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ss, err := ui.srv.CancelSession(r.Context(), id)
	msg := ""
	if err == nil {
		msg = "Session " + ss.Name + " is cancelled: its runners stop after their current task."
	}
	ui.redirectResult(w, r, sessionPath(id), msg, err)
}

func (ui *UI) handleSessionPredict(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	req := server.PredictionRequest{Session: id, Dataset: r.PostFormValue("dataset"), Best: r.PostFormValue("model") == "best", Format: r.PostFormValue("format")}
	ss, err := ui.srv.SessionByID(ctx, id)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	var out *silo.PredictOutput
	if req.Dataset == "" {
		err = silo.FieldErrorf("dataset", "choose the dataset to predict")
	} else {
		out, err = ui.srv.Predict(ctx, req)
	}
	msg := ""
	if err == nil {
		which := "final"
		if req.Best {
			which = "best"
		}
		msg = fmt.Sprintf("Predicted %s of %s with the %s model of %s: written to %s on its runner's storage.",
			plural(int(out.Rows), "row"), req.Dataset, which, ss.Name, out.Path)
	}
	// Back to the Predict card, where the result is shown.
	ui.redirectResult(w, r, sessionPath(id)+"?predicted=1#predict-result", msg, err)
}
