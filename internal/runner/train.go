package runner

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/tabular"
	"github.com/silofl/silo/model"
)

// The training executors: federated statistics, local training, evaluation
// and prediction. They send aggregates and parameters, never rows; every
// statistic covers at least min_records_per_aggregate rows.

// checkUse is the runner's own check of a training task against the
// dataset's privacy controls: the runner is the data owner's last line of
// defence, whatever the server asked. It prefers the controls the dataset
// was connected with, kept on the runner.
func (c *Config) checkUse(td *silo.TrainingData, columns []string, target string) (silo.PrivacyControls, error) {
	p := td.Privacy
	if kept, ok := c.keptPrivacy(td.Dataset); ok {
		p = kept
	}
	if !p.AllowsSessionType(silo.SessionHFL) {
		return p, fmt.Errorf("refused by the runner: dataset %s does not allow hfl sessions (its custodian allows: %v)", td.Dataset, p.AllowedSessionTypes)
	}
	for _, col := range append(slices.Clone(columns), target) {
		if col == "" {
			continue
		}
		if slices.Contains(p.ExcludedColumns, col) {
			return p, fmt.Errorf("refused by the runner: column %s of dataset %s is excluded by its custodian and is never read", col, td.Dataset)
		}
		if slices.Contains(p.IdentifierColumns, col) {
			return p, fmt.Errorf("refused by the runner: column %s of dataset %s is an identifier: it serves record linkage only, never as a feature or target", col, td.Dataset)
		}
	}
	return p, nil
}

// keptPrivacy reads the controls stored when the dataset was connected.
func (c *Config) keptPrivacy(dataset string) (silo.PrivacyControls, bool) {
	var p silo.PrivacyControls
	b, err := readStateFile(c.stateDir(), "datasets", dataset+".json")
	if err != nil || json.Unmarshal(b, &p) != nil {
		return p, false
	}
	return p, true
}

// isTest puts row i in the test split, deterministically for a seed.
func isTest(seed int64, i int64, fraction float64) bool {
	x := uint64(seed)*0x9E3779B97F4A7C15 ^ uint64(i)
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11)/float64(1<<53) < fraction
}

func schemaOf(cols []silo.ColumnType) tabular.Schema {
	s := make(tabular.Schema, len(cols))
	for i, c := range cols {
		s[i] = tabular.Column{Name: c.Name, Type: tabular.Type(c.Type)}
	}
	return s
}

// cell reads row i of column col from a batch.
func cell(b *tabular.Batch, col string, i int) model.Cell {
	if b.Null[col][i] {
		return model.Cell{Null: true}
	}
	if s, ok := b.Str[col]; ok {
		return model.Cell{Str: s[i], Text: true}
	}
	return model.Cell{Num: b.Num[col][i]}
}

// readRows streams a dataset's rows with their split, calling fn per row.
func readRows(ctx context.Context, cfg *Config, td *silo.TrainingData, columns []string, fn func(b *tabular.Batch, i int, test bool) error) error {
	inputs, err := openDataset(ctx, cfg, td.URI)
	if err != nil {
		return userError(err)
	}
	var row int64
	err = tabular.ReadBatches(ctx, inputs, schemaOf(td.Schema), columns, 4096, func(b *tabular.Batch) error {
		for i := 0; i < b.Len; i++ {
			if err := fn(b, i, isTest(td.Seed, row, td.Fraction)); err != nil {
				return err
			}
			row++
		}
		return nil
	})
	if err != nil {
		return userError(err)
	}
	return nil
}

func runStats(ctx context.Context, t *silo.Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.StatsPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("stats task payload: %w", err)
	}
	privacy, err := cfg.checkUse(&p.TrainingData, p.Features, p.Target)
	if err != nil {
		return nil, err
	}
	types := map[string]string{}
	for _, c := range p.Schema {
		types[c.Name] = c.Type
	}
	out := silo.StatsOutput{Numeric: map[string]silo.NumericStats{}, Categories: map[string]map[string]int64{}, Classes: map[string]int64{}}
	categorical := map[string]bool{}
	for _, f := range p.Features {
		if types[f] == "string" || slices.Contains(p.Categorical, f) {
			categorical[f] = true
			out.Categories[f] = map[string]int64{}
		}
	}
	columns := append(slices.Clone(p.Features), p.Target)
	err = readRows(ctx, cfg, &p.TrainingData, columns, func(b *tabular.Batch, i int, test bool) error {
		if test {
			out.NTest++
			return nil
		}
		out.NTrain++
		tc := cell(b, p.Target, i)
		if !tc.Null && p.TaskType == "classification" {
			out.Classes[tc.String(types[p.Target])]++
		}
		for _, f := range p.Features {
			c := cell(b, f, i)
			if c.Null {
				continue
			}
			if categorical[f] {
				out.Categories[f][c.String(types[f])]++
				continue
			}
			if math.IsNaN(c.Num) || math.IsInf(c.Num, 0) {
				continue
			}
			s := out.Numeric[f]
			s.Count, s.Sum, s.SumSq = s.Count+1, s.Sum+c.Num, s.SumSq+c.Num*c.Num
			out.Numeric[f] = s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	min := int64(max(privacy.MinRecordsPerAggregate, 1))
	if out.NTrain < min {
		return nil, fmt.Errorf("refused by the runner: dataset %s has %d training rows, fewer than its min_records_per_aggregate (%d): its aggregates would expose individuals", p.Dataset, out.NTrain, min)
	}
	// Rare values describe few people: they are left out, not sent.
	dropped := 0
	for _, counts := range append([]map[string]int64{out.Classes}, mapValues(out.Categories)...) {
		for k, n := range counts {
			if n < min {
				delete(counts, k)
				dropped++
			}
		}
	}
	for f, s := range out.Numeric {
		if s.Count < min {
			delete(out.Numeric, f)
		}
	}
	log.Info("statistics computed", "dataset", p.Dataset, "train_rows", out.NTrain, "test_rows", out.NTest, "features", len(p.Features), "rare_values_withheld", dropped)
	return json.Marshal(out)
}

func mapValues(m map[string]map[string]int64) []map[string]int64 {
	out := make([]map[string]int64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// loaded is a dataset encoded for a model: train and test splits.
type loaded struct {
	train, test ml.Dataset
}

// dataCache keeps the last datasets encoded for training, so rounds after
// the first do not read and encode the data again.
type dataCache struct {
	mu      sync.Mutex
	entries map[string]*loaded
	order   []string
}

const cacheEntries = 4

func (c *dataCache) get(key string) *loaded {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key]
}

func (c *dataCache) put(key string, l *loaded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*loaded{}
	}
	if _, ok := c.entries[key]; !ok {
		c.order = append(c.order, key)
	}
	c.entries[key] = l
	for len(c.order) > cacheEntries {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
}

// load encodes a dataset for the model in mp, from the cache when it can.
func load(ctx context.Context, cfg *Config, td *silo.TrainingData, mp *silo.ModelPayload) (*ml.Model, *model.Preprocessing, *loaded, error) {
	var spec ml.Spec
	var prep model.Preprocessing
	if err := json.Unmarshal(mp.Spec, &spec); err != nil {
		return nil, nil, nil, fmt.Errorf("model spec: %w", err)
	}
	if err := json.Unmarshal(mp.Preprocessing, &prep); err != nil {
		return nil, nil, nil, fmt.Errorf("preprocessing: %w", err)
	}
	params, err := ml.ParseParams(mp.Params)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("model parameters: %w", err)
	}
	m, err := ml.LoadModel(spec, params)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := cfg.checkUse(td, prep.Columns(false), prep.Target); err != nil {
		return nil, nil, nil, err
	}
	key := td.Session + "\x00" + td.Dataset + "\x00" + string(mp.Preprocessing)
	if l := cfg.cache.get(key); l != nil {
		return m, &prep, l, nil
	}
	w := prep.Width()
	var xTrain, yTrain, xTest, yTest []float64
	row := make([]float64, w)
	err = readRows(ctx, cfg, td, prep.Columns(true), func(b *tabular.Batch, i int, test bool) error {
		y, ok := prep.EncodeTarget(cell(b, prep.Target, i))
		if !ok {
			return nil
		}
		prep.EncodeRow(func(col string) model.Cell { return cell(b, col, i) }, row)
		if test {
			xTest, yTest = append(xTest, row...), append(yTest, y)
		} else {
			xTrain, yTrain = append(xTrain, row...), append(yTrain, y)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	l := &loaded{}
	if l.train, err = ml.NewDataset(xTrain, w, yTrain); err != nil {
		return nil, nil, nil, err
	}
	if l.test, err = ml.NewDataset(xTest, w, yTest); err != nil {
		return nil, nil, nil, err
	}
	cfg.cache.put(key, l)
	return m, &prep, l, nil
}

func runFit(ctx context.Context, t *silo.Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.FitPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("fit task payload: %w", err)
	}
	m, _, data, err := load(ctx, cfg, &p.TrainingData, &p.ModelPayload)
	if err != nil {
		return nil, err
	}
	privacy, _ := cfg.checkUse(&p.TrainingData, nil, "")
	if privacy.RequireDifferentialPrivacy && p.NoiseMultiplier <= 0 {
		return nil, fmt.Errorf("refused by the runner: dataset %s requires differential privacy and this session has none", p.Dataset)
	}
	if int64(data.train.Len()) < int64(max(privacy.MinRecordsPerAggregate, 1)) {
		return nil, fmt.Errorf("refused by the runner: dataset %s has %d usable training rows, fewer than its min_records_per_aggregate (%d)", p.Dataset, data.train.Len(), privacy.MinRecordsPerAggregate)
	}
	opts := ml.TrainOptions{
		Optimizer: ml.Optimizer{Name: p.Optimizer.Name, LearningRate: p.Optimizer.LearningRate, Momentum: p.Optimizer.Momentum,
			BatchSize: p.Optimizer.BatchSize, LocalEpochs: p.Optimizer.LocalEpochs},
		ProximalMu: p.ProximalMu,
	}
	if p.ProximalMu > 0 {
		opts.Global = m.Params()
	}
	seed := uint64(p.Seed)*1_000_003 + uint64(p.Round)
	if p.NoiseMultiplier > 0 {
		opts.DP = &ml.DPOptions{ClipNorm: p.ClipNorm, NoiseMultiplier: p.NoiseMultiplier}
		// DP noise must be unpredictable: a replayable seed would let anyone
		// subtract it.
		var b [8]byte
		crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	opts.Rand = rand.New(rand.NewPCG(seed, uint64(len(p.Dataset))))
	res, err := m.Train(ctx, data.train, opts)
	if err != nil {
		return nil, err
	}
	out := silo.FitOutput{Params: m.MarshalBinaryParams(), NTrain: int64(res.Examples), Steps: res.Steps}
	if opts.DP == nil {
		out.TrainLoss = res.Loss // under DP the raw training loss is not released
	}
	log.Info("local training done", "dataset", p.Dataset, "round", p.Round, "rows", res.Examples, "steps", res.Steps, "dp", opts.DP != nil)
	return json.Marshal(out)
}

func runEvaluate(ctx context.Context, t *silo.Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.EvaluatePayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("evaluate task payload: %w", err)
	}
	m, prep, data, err := load(ctx, cfg, &p.TrainingData, &p.ModelPayload)
	if err != nil {
		return nil, err
	}
	out := silo.EvaluateOutput{NTest: int64(data.test.Len())}
	privacy, _ := cfg.checkUse(&p.TrainingData, nil, "")
	if out.NTest < int64(max(privacy.MinRecordsPerAggregate, 1)) {
		return nil, fmt.Errorf("refused by the runner: dataset %s has %d test rows, fewer than its min_records_per_aggregate (%d): raise validation.fraction or leave it out", p.Dataset, out.NTest, privacy.MinRecordsPerAggregate)
	}
	pred, err := m.Predict(data.test.X)
	if err != nil {
		return nil, err
	}
	metrics, err := ml.Evaluate(m.Spec().Task, len(prep.Classes), data.test.Y, pred)
	if err != nil {
		return nil, err
	}
	out.Metrics = metrics
	if prep.Task == "classification" && len(prep.Classes) == 2 {
		out.PosHist, out.NegHist = make([]int64, silo.ScoreBins), make([]int64, silo.ScoreBins)
		for i, y := range data.test.Y {
			bin := min(int(pred.At(i, 1)*silo.ScoreBins), silo.ScoreBins-1)
			if y == 1 {
				out.PosHist[bin]++
			} else {
				out.NegHist[bin]++
			}
		}
	}
	log.Info("evaluated the global model", "dataset", p.Dataset, "round", p.Round, "test_rows", out.NTest)
	return json.Marshal(out)
}

// IsTestRow reports whether row i (0-based, in the dataset's order) of a
// session with seed is held out for testing: the same split on every run,
// which tests and benchmarks reproduce to compare with centralised training.
func IsTestRow(seed, i int64, fraction float64) bool { return isTest(seed, i, fraction) }
