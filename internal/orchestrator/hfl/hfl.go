// Package hfl is the horizontal federated learning session kind: the same
// columns in every dataset, different rows. Its steps are the federated
// statistics (before round 1: standardisation, one-hot categories, classes),
// then, for each round, local training ("fit", aggregated with the session's
// strategy) and evaluation of the new global model ("evaluate", pooled into
// the round's federated metrics).
//
// Its blobs: "setup/<dataset>" (each client's TrainingSetup, sent once and
// cached by the runner), "model/final" (the global model after the last
// completed round; before round 1, the initial one), "params/next" (the
// model a round's fit produced, while it is evaluated) and "model/best".
package hfl

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/dp"
	"github.com/silofl/silo/internal/fl"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/model"
)

// Blob names.
const (
	blobFinal = "model/final"
	blobBest  = "model/best"
	blobNext  = "params/next"
)

func setupBlob(dataset string) string { return "setup/" + dataset }

// Kind is the hfl session kind.
type Kind struct{}

// state is what the kind keeps between steps.
type state struct {
	Preprocessing json.RawMessage `json:"preprocessing,omitempty"`
	NumParams     int             `json:"num_params,omitempty"`
	// Strategy is the aggregation strategy's own state (adaptive moments).
	Strategy  []byte                  `json:"strategy,omitempty"`
	BestValue float64                 `json:"best_value,omitempty"`
	Clients   map[string]*clientState `json:"clients,omitempty"`
}

// clientState is what the kind knows of one client after the statistics.
type clientState struct {
	NTrain int64 `json:"n_train"`
	NTest  int64 `json:"n_test"`
	// DP-SGD: noise multiplier, Poisson sampling rate and the noisy steps
	// taken so far.
	Sigma      float64 `json:"sigma,omitempty"`
	SampleRate float64 `json:"sample_rate,omitempty"`
	Steps      int     `json:"steps,omitempty"`
}

func load(s *orchestrator.Session) (*state, error) {
	st := &state{}
	if err := s.DecodeState(st); err != nil {
		return nil, err
	}
	if st.Clients == nil {
		st.Clients = map[string]*clientState{}
	}
	return st, nil
}

func (st *state) marshal() []byte {
	b, _ := json.Marshal(st) // plain data: never fails
	return b
}

// Start begins with the federated statistics.
func (Kind) Start(ctx context.Context, s *orchestrator.Session) (*orchestrator.Outcome, error) {
	return &orchestrator.Outcome{State: (&state{}).marshal(), Next: &orchestrator.Step{Name: silo.TaskStats, Quorum: s.Config.MinClients,
		Reason: "computing federated statistics"}}, nil
}

// Sizes of what a step may send back, beyond the model's parameters.
const (
	maxStatsResult = 16 << 20 // category counts of many text columns
	maxSmallResult = 1 << 20
)

// Configure sends the statistics task, or a round's fit or evaluate task:
// its round, the client's setup and the global parameters.
func (Kind) Configure(s *orchestrator.Session, step orchestrator.Step, c *orchestrator.Client) (*orchestrator.Task, error) {
	switch step.Name {
	case silo.TaskStats:
		return &orchestrator.Task{Payload: silo.StatsPayload{TrainingData: trainingData(s, c), TaskType: s.Config.Task.Type, Target: s.Config.Task.Target,
			Features: s.Config.Task.Features, Categorical: s.Config.Task.Categorical}, VCPU: 1, MemoryMB: 256, MaxResult: maxStatsResult}, nil
	case silo.TaskFit, silo.TaskEvaluate:
		v, err := s.Memo("hfl.state", func() (any, error) { return load(s) })
		if err != nil {
			return nil, err
		}
		st := v.(*state) // shared by the step's clients: read only
		if st.Clients[c.Dataset] == nil {
			// Its statistics were missing or refused: it has no setup (its
			// DP noise was never calibrated) and sits the rounds out.
			return nil, nil
		}
		params := blobFinal
		if step.Name == silo.TaskEvaluate {
			params = blobNext
		}
		paramBytes := int64(ml.ParamsBytes(st.NumParams))
		return &orchestrator.Task{Payload: silo.RoundPayload{Round: step.Round},
			Inputs: []silo.PartBlob{{Part: silo.PartSetup, Blob: setupBlob(c.Dataset)}, {Part: silo.PartParams, Blob: params}},
			VCPU:   1, MemoryMB: memoryFor(st.NumParams), MaxResult: paramBytes + maxSmallResult}, nil
	}
	return nil, fmt.Errorf("hfl has no step %q", step.Name)
}

// Model size. A runner trains with about bytesPerParam bytes for each
// parameter (the model, its gradient, the optimiser's moments, the update
// and their encodings: eight float64 copies) besides 256 MB for the data,
// so a model must fit the smallest runner of its session. The server holds
// three copies while it aggregates (updates are folded in one at a time),
// so MaxModelParams bounds every model whatever the runners: 32 Mi
// parameters, 256 MiB a copy.
const (
	bytesPerParam  = 64
	MaxModelParams = 1 << 25
)

// memoryFor is what a training task needs for a model of n parameters, in
// MB.
func memoryFor(n int) int {
	return 256 + bytesPerParam*n>>20
}

// checkModelSize refuses a model of spec that the server or one of the
// session's runners could not hold.
func checkModelSize(spec ml.Spec, clients []*orchestrator.Client) error {
	n, ok := spec.ParamCount()
	if !ok || n > MaxModelParams {
		return silo.FieldErrorf("model.hidden_layers", "the model would have more than %d parameters, the most a model may have: use fewer or smaller hidden layers", MaxModelParams)
	}
	for _, c := range clients {
		if c.RunnerMemoryMB > 0 && memoryFor(n) > c.RunnerMemoryMB {
			fit := max(0, (c.RunnerMemoryMB-256)<<20/bytesPerParam)
			return silo.FieldErrorf("model.hidden_layers", "the model would have %d parameters, which need about %d MB to train; runner %s has %d MB, enough for about %d: use fewer or smaller hidden layers, or a larger runner",
				n, memoryFor(n), c.Runner, c.RunnerMemoryMB, fit)
		}
	}
	return nil
}

// trainingData is what every task of a client reads.
func trainingData(s *orchestrator.Session, c *orchestrator.Client) silo.TrainingData {
	var schema []silo.ColumnType
	for _, col := range c.Data.Columns {
		if !col.Excluded {
			schema = append(schema, silo.ColumnType{Name: col.Name, Type: col.Type})
		}
	}
	return silo.TrainingData{Session: s.ID, Dataset: c.Data.Name, URI: c.Data.URI, Schema: schema, Privacy: c.Data.Privacy,
		Fraction: s.Config.Validation.Fraction, Seed: s.Config.Seed}
}

// Aggregate folds a closed step.
func (k Kind) Aggregate(ctx context.Context, s *orchestrator.Session, step orchestrator.Step, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	st, err := load(s)
	if err != nil {
		return nil, err
	}
	switch step.Name {
	case silo.TaskStats:
		return k.finishStats(s, st, results)
	case silo.TaskFit:
		return k.finishFit(ctx, s, st, step, results)
	case silo.TaskEvaluate:
		return k.finishEvaluate(ctx, s, st, step, results)
	}
	return nil, fmt.Errorf("hfl has no step %q", step.Name)
}

// finishStats merges the clients' statistics into the preprocessing,
// initialises the model, calibrates each client's DP noise and sends each
// client its setup for the rounds.
func (Kind) finishStats(s *orchestrator.Session, st *state, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	o := &orchestrator.Outcome{Refused: map[string]string{}, PutBlobs: map[string][]byte{}}
	var usable []silo.StatsOutput
	for _, r := range results {
		if !r.OK() {
			continue
		}
		out, err := fl.CheckStats(r.Task.Output)
		if err != nil {
			o.Refused[r.Client.Dataset] = "statistics refused: " + err.Error()
			continue
		}
		usable = append(usable, out)
		st.Clients[r.Client.Dataset] = &clientState{NTrain: out.NTrain, NTest: out.NTest}
	}
	if len(usable) < s.Config.MinClients {
		return nil, silo.Errorf(silo.ECONFLICT, "statistics: only %d usable answers, min_clients is %d", len(usable), s.Config.MinClients)
	}
	first := s.Clients[0].Data
	merged := fl.MergeStats(usable)
	// No category seen fewer times than any client's dataset allows, over
	// all of them, enters the model (each runner withholds its own rare
	// values; this holds the union to the strictest floor too).
	minRecords := int64(1)
	for _, c := range s.Clients {
		minRecords = max(minRecords, int64(c.Data.Privacy.MinRecordsPerAggregate))
	}
	for _, counts := range merged.Categories {
		for v, n := range counts {
			if n < minRecords {
				delete(counts, v)
			}
		}
	}
	prep, _, err := model.Build(s.Config.Task, first.Columns, first.Privacy.IdentifierColumns, merged)
	if err != nil {
		return nil, err
	}
	spec := model.Spec(&s.Config, prep)
	if err := checkModelSize(spec, s.Clients); err != nil {
		return nil, err
	}
	m, err := ml.NewModel(spec, s.Config.Seed)
	if err != nil {
		return nil, silo.Errorf(silo.EINVALID, "model: %v", err)
	}
	if st.Preprocessing, err = json.Marshal(prep); err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	st.NumParams = m.NumParams()
	for _, c := range s.Clients {
		cs, ok := st.Clients[c.Dataset]
		if !ok {
			continue // without usable statistics it sits the rounds out
		}
		setup := silo.TrainingSetup{TrainingData: trainingData(s, c), Spec: specJSON, Preprocessing: st.Preprocessing, Optimizer: s.Config.Optimizer}
		if s.Config.Strategy.Name == "fedprox" {
			setup.ProximalMu = s.Config.Strategy.Params["mu"]
		}
		if dpc := s.Config.DifferentialPrivacy; dpc != nil {
			o := s.Config.Optimizer
			cs.SampleRate = ml.PoissonSampleRate(int(cs.NTrain), o.BatchSize)
			steps := s.Config.Rounds * o.LocalEpochs * ml.StepsPerEpoch(int(cs.NTrain), o.BatchSize)
			if cs.Sigma, err = dp.Calibrate(dpc.Epsilon, dpc.Delta, cs.SampleRate, steps); err != nil {
				return nil, silo.Errorf(silo.EINVALID, "differential privacy for %s: %v", c.Dataset, err)
			}
			setup.ClipNorm, setup.NoiseMultiplier = dpc.MaxGradNorm, cs.Sigma
		}
		b, err := json.Marshal(setup)
		if err != nil {
			return nil, err
		}
		o.PutBlobs[setupBlob(c.Dataset)] = b
	}
	o.PutBlobs[blobFinal] = m.MarshalBinaryParams()
	o.State = st.marshal()
	o.Next = roundStep(s, silo.TaskFit, 1)
	return o, nil
}

// roundStep is a round's fit or evaluate step.
func roundStep(s *orchestrator.Session, name string, round int) *orchestrator.Step {
	what := map[string]string{silo.TaskFit: "training", silo.TaskEvaluate: "evaluating"}[name]
	return &orchestrator.Step{Name: name, Round: round, Quorum: s.Config.MinClients, Reason: fmt.Sprintf("round %d of %d: %s", round, s.Config.Rounds, what)}
}

// finishFit aggregates the clients' updates with the session's strategy and
// charges each client's DP steps.
func (Kind) finishFit(ctx context.Context, s *orchestrator.Session, st *state, step orchestrator.Step, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	b, err := s.Blob(ctx, blobFinal)
	if err != nil {
		return nil, err
	}
	global, err := ml.ParseParams(b)
	if err != nil {
		return nil, err
	}
	params, err := fl.ParamsFromConfig(s.Config.Strategy.Name, s.Config.Strategy.Params)
	if err != nil {
		return nil, silo.FieldErrorf("strategy.params", "%v", err)
	}
	strategy, err := fl.NewStrategy(s.Config.Strategy.Name, params)
	if err != nil {
		return nil, err
	}
	if len(st.Strategy) > 0 { // none before the first aggregation
		if err := strategy.Restore(st.Strategy); err != nil {
			return nil, err
		}
	}
	o := &orchestrator.Outcome{Refused: map[string]string{}, Epsilon: map[string]float64{}}
	// Updates are folded into their weighted mean one at a time, so the
	// server holds three copies of the model, not one per client: every
	// strategy aggregates from that mean (Reddi et al.'s pseudo-gradient is
	// the mean minus the global model).
	mean := fl.NewMean(len(global))
	var reasons []string
	for _, r := range results {
		ds := r.Client.Dataset
		if !r.OK() {
			reasons = append(reasons, ds+": "+cmpOr(r.Task.Error, r.Task.Status))
			continue
		}
		p, err := r.Part(ctx, silo.PartParams)
		if err != nil && silo.ErrorCode(err) != silo.ENOTFOUND {
			return nil, err // the store failed, not the client: the step is taken again
		}
		var out silo.FitOutput
		var update []float64
		if err == nil {
			out, update, err = fl.CheckUpdate(r.Task.Output, p, len(global))
		}
		if err != nil {
			// A malformed update is that client's failure, not the
			// session's: it is left out of the round and recorded.
			o.Refused[ds] = "update refused: " + err.Error()
			reasons = append(reasons, ds+": "+o.Refused[ds])
			continue
		}
		mean.Add(update, out.NTrain)
		cs := st.Clients[ds]
		if cs == nil {
			cs = &clientState{}
			st.Clients[ds] = cs
		}
		cs.NTrain = out.NTrain
		if dpc := s.Config.DifferentialPrivacy; dpc != nil && cs.Sigma > 0 {
			cs.Steps += out.Steps
			o.Epsilon[ds], _ = dp.Epsilon(cs.SampleRate, cs.Sigma, cs.Steps, dpc.Delta)
		}
	}
	if mean.Count() < s.Config.MinClients {
		return nil, silo.Errorf(silo.ECONFLICT, "round %d: only %d usable updates, min_clients is %d (%s)", step.Round, mean.Count(), s.Config.MinClients, strings.Join(reasons, "; "))
	}
	next, err := strategy.Aggregate(global, []fl.Update{mean.Update()})
	if err != nil {
		return nil, silo.Errorf(silo.EINVALID, "round %d: %v", step.Round, err)
	}
	st.Strategy = strategy.State()
	o.State = st.marshal()
	o.PutBlobs = map[string][]byte{blobNext: ml.MarshalParams(next)}
	o.Next = roundStep(s, silo.TaskEvaluate, step.Round)
	return o, nil
}

// finishEvaluate pools the clients' test metrics into the round's federated
// metrics and records the round; the last round completes the session.
func (Kind) finishEvaluate(ctx context.Context, s *orchestrator.Session, st *state, step orchestrator.Step, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	round := step.Round
	o := &orchestrator.Outcome{Refused: map[string]string{}}
	var evals []fl.Evaluation
	var clientMetrics []silo.ClientMetrics
	for _, r := range results {
		if !r.OK() {
			continue
		}
		ds := r.Client.Dataset
		ev, err := fl.CheckEvaluation(r.Task.Output)
		if err != nil {
			o.Refused[ds] = "metrics refused: " + err.Error()
			continue
		}
		evals = append(evals, ev)
		var ntrain int64
		if cs := st.Clients[ds]; cs != nil {
			ntrain = cs.NTrain
		}
		cm := silo.ClientMetrics{Round: round, Dataset: ds, Values: map[string]float64{"n_train": float64(ntrain), "n_test": float64(ev.NTest)}}
		for k, v := range ev.Metrics {
			cm.Values["test_"+k] = v
		}
		clientMetrics = append(clientMetrics, cm)
	}
	fed, ok := fl.PoolEvaluations(evals, s.Config.Task.Type == "classification")
	if !ok {
		return nil, silo.Errorf(silo.ECONFLICT, "round %d: no usable evaluation from any client", round)
	}
	metric := s.Config.SaveBestModel.Metric
	best := s.BestRound == 0
	if v, ok := fed[metric]; ok && !best {
		best = (s.Config.SaveBestModel.Mode == "min" && v < st.BestValue) || (s.Config.SaveBestModel.Mode == "max" && v > st.BestValue)
	}
	params, err := s.Blob(ctx, blobNext)
	if err != nil {
		return nil, err
	}
	o.PutBlobs = map[string][]byte{blobFinal: params}
	o.DropBlobs = []string{blobNext}
	o.Round = &sqlstore.SessionRound{Round: round, Federated: fed, Clients: clientMetrics}
	o.Latest = fed
	if best {
		o.BestRound, st.BestValue = round, fed[metric]
		o.PutBlobs[blobBest] = params
	}
	o.State = st.marshal()
	if round < s.Config.Rounds {
		o.Next = roundStep(s, silo.TaskFit, round+1)
		return o, nil
	}
	bestRound := s.BestRound
	if best {
		bestRound = round
	}
	o.Reason = fmt.Sprintf("completed %d rounds; best round %d (%s %.4g)", round, bestRound, metric, st.BestValue)
	return o, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Prepare checks the target and features against every dataset's schema and
// privacy controls and, when no features are listed, takes every column the
// datasets share that may be one.
func (Kind) Prepare(ctx context.Context, cfg *silo.SessionConfig, datasets []*silo.Dataset) error {
	usable := func(d *silo.Dataset, col string) (silo.Column, error) {
		// The controls in effect on the data when the server computed them
		// (every dataset on the same data, the runner's policy).
		p := d.Privacy
		if d.Effective != nil {
			p = d.Effective.Controls
		}
		for _, c := range d.Columns {
			if c.Name != col {
				continue
			}
			switch {
			case c.Excluded || slices.Contains(p.ExcludedColumns, col):
				return c, fmt.Errorf("column %s of dataset %s is excluded by its custodian", col, d.Name)
			case c.Identifier || slices.Contains(p.IdentifierColumns, col):
				return c, fmt.Errorf("column %s of dataset %s is an identifier: it serves record linkage only", col, d.Name)
			}
			return c, nil
		}
		return silo.Column{}, fmt.Errorf("dataset %s has no column %s", d.Name, col)
	}
	for _, d := range datasets {
		if _, err := usable(d, cfg.Task.Target); err != nil {
			return silo.FieldErrorf("task.target", "%v", err)
		}
	}
	if len(cfg.Task.Features) == 0 {
		for _, c := range datasets[0].Columns {
			if c.Name == cfg.Task.Target || c.Excluded || c.Identifier {
				continue
			}
			if c.Type == "string" && c.MostlyUnique {
				continue // an identifier in disguise: never picked by default
			}
			ok := true
			for _, d := range datasets {
				if _, err := usable(d, c.Name); err != nil {
					ok = false
				}
			}
			if ok {
				cfg.Task.Features = append(cfg.Task.Features, c.Name)
			}
		}
		if len(cfg.Task.Features) == 0 {
			return silo.FieldErrorf("task.features", "the datasets share no usable feature column besides the target")
		}
	}
	for _, f := range cfg.Task.Features {
		var kinds []string
		for _, d := range datasets {
			c, err := usable(d, f)
			if err != nil {
				return silo.FieldErrorf("task.features", "%v", err)
			}
			kinds = append(kinds, kindOf(c.Type))
		}
		if slices.Contains(kinds, "text") && slices.Contains(kinds, "number") {
			return silo.FieldErrorf("task.features", "column %s is text in some datasets and numbers in others: the datasets must share a schema", f)
		}
	}
	for _, c := range cfg.Task.Categorical {
		if !slices.Contains(cfg.Task.Features, c) {
			return silo.FieldErrorf("task.categorical", "categorical column %s is not among the features", c)
		}
	}
	// A column whose values mostly occur once tells people apart: as a
	// categorical feature it would be an identifier in disguise.
	for _, f := range cfg.Task.Features {
		for _, d := range datasets {
			c, _ := usable(d, f)
			if (c.Type == "string" || slices.Contains(cfg.Task.Categorical, f)) && c.MostlyUnique {
				return silo.FieldErrorf("task.features", "column %s of dataset %s cannot be a categorical feature: most of its values occur only once, so it identifies people rather than describing them; ask its custodian to declare it an identifier column, or leave it out of the features", f, d.Name)
			}
		}
	}
	// The model has at least this many parameters (one input per feature,
	// one output): refuse at once what no server could train. The exact
	// count, against each runner's memory, is checked once the statistics
	// fix the inputs.
	return checkModelSize(ml.Spec{Package: cfg.Model.Package, NumFeatures: len(cfg.Task.Features), HiddenLayers: cfg.Model.HiddenLayers}, nil)
}

func kindOf(colType string) string {
	if colType == "string" {
		return "text"
	}
	return "number"
}
