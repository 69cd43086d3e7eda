package runner

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
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
// Every task asks; the file is read again only when it changed (a new
// connect replaces it).
func (c *Config) keptPrivacy(dataset string) (silo.PrivacyControls, bool) {
	var p silo.PrivacyControls
	dir := c.stateDir()
	if dir == "" {
		return p, false
	}
	path := filepath.Join(dir, "datasets", dataset+".json")
	fi, err := os.Stat(path)
	if err != nil {
		return p, false
	}
	if k, ok := c.kept.get(path, fi); ok {
		return k, true
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the runner's own state directory
	if err != nil || json.Unmarshal(b, &p) != nil {
		return p, false
	}
	c.kept.put(path, fi, p)
	return p, true
}

// keptCache holds the kept privacy controls read last, by file, with the
// size and time of the file they were read from.
type keptCache struct {
	mu sync.Mutex
	m  map[string]keptEntry
}

type keptEntry struct {
	size int64
	mod  time.Time
	p    silo.PrivacyControls
}

func (k *keptCache) get(path string, fi os.FileInfo) (silo.PrivacyControls, bool) {
	if k == nil {
		return silo.PrivacyControls{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[path]
	if !ok || e.size != fi.Size() || !e.mod.Equal(fi.ModTime()) {
		return silo.PrivacyControls{}, false
	}
	return e.p, true
}

func (k *keptCache) forget(path string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, path)
}

func (k *keptCache) put(path string, fi os.FileInfo, p silo.PrivacyControls) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]keptEntry{}
	}
	k.m[path] = keptEntry{size: fi.Size(), mod: fi.ModTime(), p: p}
}

// isTest puts row i in the test split, deterministically for a seed.
func isTest(seed int64, i int64, fraction float64) bool {
	// #nosec G115 -- hashing the seed and row number: bit reinterpretation on purpose
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

// column is one requested column of a batch with its slices looked up once
// per batch: looking them up per cell (three map lookups each) took about
// two fifths of a round-1 task's CPU.
type column struct {
	name string
	null []bool
	str  []string // string columns
	num  []float64
}

// columnsOf resolves the named columns of a batch.
func columnsOf(b *tabular.Batch, names []string, cols []column) []column {
	cols = cols[:0]
	for _, n := range names {
		cols = append(cols, column{name: n, null: b.Null[n], str: b.Str[n], num: b.Num[n]})
	}
	return cols
}

// cell reads row i of the column.
func (c *column) cell(i int) model.Cell {
	if c.null[i] {
		return model.Cell{Null: true}
	}
	if c.str != nil {
		return model.Cell{Str: c.str[i], Text: true}
	}
	return model.Cell{Num: c.num[i]}
}

// rowCells serves Preprocessing.EncodeRow's cell requests for one row. The
// encoder asks for the columns in the order Preprocessing.Columns lists
// them, so a cursor finds each without a lookup; the index covers any other
// order.
type rowCells struct {
	cols  []column
	index map[string]int
	row   int
	next  int
}

func newRowCells(names []string) *rowCells {
	r := &rowCells{index: make(map[string]int, len(names))}
	for k, n := range names {
		r.index[n] = k
	}
	return r
}

// at moves to row i.
func (r *rowCells) at(i int) { r.row, r.next = i, 0 }

func (r *rowCells) get(name string) model.Cell {
	k := r.next
	if k >= len(r.cols) || r.cols[k].name != name {
		k = r.index[name]
	}
	r.next = k + 1
	return r.cols[k].cell(r.row)
}

// readRows streams a dataset's rows in batches of n rows with the columns
// in the order asked for and each row's split (test[i]).
func readRows(ctx context.Context, cfg *Config, td *silo.TrainingData, columns []string, fn func(cols []column, n int, test []bool) error) error {
	inputs, err := openDataset(ctx, cfg, td.URI)
	if err != nil {
		return userError(err)
	}
	var row int64
	var cols []column
	var test []bool
	err = tabular.ReadBatches(ctx, inputs, schemaOf(td.Schema), columns, 4096, func(b *tabular.Batch) error {
		cols = columnsOf(b, columns, cols)
		test = test[:0]
		for range b.Len {
			test = append(test, isTest(td.Seed, row, td.Fraction))
			row++
		}
		return fn(cols, b.Len, test)
	})
	if err != nil {
		return userError(err)
	}
	return nil
}

func runStats(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
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
	err = readRows(ctx, cfg, &p.TrainingData, columns, func(cols []column, n int, test []bool) error {
		train := 0
		for _, t := range test {
			if !t {
				train++
			}
		}
		out.NTrain += int64(train)
		out.NTest += int64(n - train)
		// Column by column; each statistic still sees the rows in order.
		if target := &cols[len(cols)-1]; p.TaskType == "classification" {
			for i := range n {
				if tc := target.cell(i); !test[i] && !tc.Null {
					out.Classes[tc.String(types[p.Target])]++
				}
			}
		}
		for k, f := range p.Features {
			col := &cols[k]
			if categorical[f] {
				counts := out.Categories[f]
				for i := range n {
					if c := col.cell(i); !test[i] && !c.Null {
						counts[c.String(types[f])]++
					}
				}
				continue
			}
			s, seen := out.Numeric[f], false
			for i := range n {
				c := col.cell(i)
				if test[i] || c.Null || math.IsNaN(c.Num) || math.IsInf(c.Num, 0) {
					continue
				}
				s.Count, s.Sum, s.SumSq = s.Count+1, s.Sum+c.Num, s.SumSq+c.Num*c.Num
				seen = true
			}
			if seen {
				out.Numeric[f] = s
			}
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

// roundTask reads a fit or evaluate task: its round, its setup and the
// global parameters.
func roundTask(t *Task) (silo.RoundPayload, *silo.TrainingSetup, []byte, error) {
	var p silo.RoundPayload
	var setup silo.TrainingSetup
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return p, nil, nil, fmt.Errorf("%s task payload: %w", t.Type, err)
	}
	b, err := t.Part(silo.PartSetup)
	if err != nil {
		return p, nil, nil, err
	}
	if err := json.Unmarshal(b, &setup); err != nil {
		return p, nil, nil, fmt.Errorf("%s task setup: %w", t.Type, err)
	}
	params, err := t.Part(silo.PartParams)
	return p, &setup, params, err
}

// load encodes a dataset for the model of a setup, from the cache when it
// can, and loads the global parameters into the model.
func load(ctx context.Context, cfg *Config, setup *silo.TrainingSetup, paramBytes []byte) (*ml.Model, *model.Preprocessing, *loaded, error) {
	td := &setup.TrainingData
	var spec ml.Spec
	var prep model.Preprocessing
	if err := json.Unmarshal(setup.Spec, &spec); err != nil {
		return nil, nil, nil, fmt.Errorf("model spec: %w", err)
	}
	if err := json.Unmarshal(setup.Preprocessing, &prep); err != nil {
		return nil, nil, nil, fmt.Errorf("preprocessing: %w", err)
	}
	params, err := ml.ParseParams(paramBytes)
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
	key := td.Session + "\x00" + td.Dataset + "\x00" + string(setup.Preprocessing)
	if l := cfg.cache.get(key); l != nil {
		return m, &prep, l, nil
	}
	w := prep.Width()
	var xTrain, xTest rowBlocks
	var yTrain, yTest []float64
	row := make([]float64, w)
	columns := prep.Columns(true)
	rc := newRowCells(columns)
	get := rc.get
	err = readRows(ctx, cfg, td, columns, func(cols []column, n int, test []bool) error {
		rc.cols = cols
		target := &cols[len(cols)-1]
		for i := range n {
			y, ok := prep.EncodeTarget(target.cell(i))
			if !ok {
				continue
			}
			rc.at(i)
			prep.EncodeRow(get, row)
			if test[i] {
				xTest.add(row)
				yTest = append(yTest, y)
			} else {
				xTrain.add(row)
				yTrain = append(yTrain, y)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	l := &loaded{}
	if l.train, err = ml.NewDataset(xTrain.join(), w, yTrain); err != nil {
		return nil, nil, nil, err
	}
	if l.test, err = ml.NewDataset(xTest.join(), w, yTest); err != nil {
		return nil, nil, nil, err
	}
	cfg.cache.put(key, l)
	return m, &prep, l, nil
}

// rowBlocks collects encoded rows in fixed-size blocks and joins them once:
// appending to one slice that grows by a quarter at a time allocated about
// five times the data and copied four, a sixth of a round-1 load.
type rowBlocks struct {
	blocks [][]float64
	n      int
}

const rowBlockFloats = 1 << 16

func (r *rowBlocks) add(row []float64) {
	if len(r.blocks) == 0 || len(r.blocks[len(r.blocks)-1])+len(row) > cap(r.blocks[len(r.blocks)-1]) {
		r.blocks = append(r.blocks, make([]float64, 0, max(rowBlockFloats, len(row))))
	}
	last := &r.blocks[len(r.blocks)-1]
	*last = append(*last, row...)
	r.n += len(row)
}

// join returns the rows as one slice, nil when there are none.
func (r *rowBlocks) join() []float64 {
	if r.n == 0 {
		return nil
	}
	out := make([]float64, 0, r.n)
	for _, b := range r.blocks {
		out = append(out, b...)
	}
	r.blocks = nil
	return out
}

func runFit(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	rp, p, params, err := roundTask(t)
	if err != nil {
		return nil, err
	}
	m, _, data, err := load(ctx, cfg, p, params)
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
	// #nosec G115 G404 -- a reproducible shuffle: the seed's bits, mixed with the round
	opts.Rand = rand.New(rand.NewPCG(uint64(p.Seed)*1_000_003+uint64(rp.Round), uint64(len(p.Dataset))))
	if p.NoiseMultiplier > 0 {
		opts.DP = &ml.DPOptions{ClipNorm: p.ClipNorm, NoiseMultiplier: p.NoiseMultiplier}
		// DP noise must be unpredictable: a replayable seed, or a generator
		// whose state its outputs give away, would let anyone subtract it.
		// ChaCha8 with a 256-bit key from crypto/rand is neither.
		var key [32]byte
		_, _ = crand.Read(key[:])                  // never fails (it aborts the program instead)
		opts.Rand = rand.New(rand.NewChaCha8(key)) // #nosec G404 -- a cryptographic generator, keyed from crypto/rand
	}
	res, err := m.Train(ctx, data.train, opts)
	if err != nil {
		return nil, err
	}
	out := silo.FitOutput{NTrain: int64(res.Examples), Steps: res.Steps}
	if opts.DP == nil {
		out.TrainLoss = res.Loss // under DP the raw training loss is not released
	}
	t.Out = client.Parts{silo.PartParams: m.MarshalBinaryParams()}
	log.Info("local training done", "dataset", p.Dataset, "round", rp.Round, "rows", res.Examples, "steps", res.Steps, "dp", opts.DP != nil)
	return json.Marshal(out)
}

func runEvaluate(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	rp, p, params, err := roundTask(t)
	if err != nil {
		return nil, err
	}
	m, prep, data, err := load(ctx, cfg, p, params)
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
		pos, neg := make([]int64, silo.ScoreBins), make([]int64, silo.ScoreBins)
		for i, y := range data.test.Y {
			bin := min(int(pred.At(i, 1)*silo.ScoreBins), silo.ScoreBins-1)
			if y == 1 {
				pos[bin]++
			} else {
				neg[bin]++
			}
		}
		out.PosHist, out.NegHist = silo.SparseOf(pos), silo.SparseOf(neg)
	}
	log.Info("evaluated the global model", "dataset", p.Dataset, "round", rp.Round, "test_rows", out.NTest)
	return json.Marshal(out)
}

// IsTestRow reports whether row i (0-based, in the dataset's order) of a
// session with seed is held out for testing: the same split on every run,
// which tests and benchmarks reproduce to compare with centralised training.
func IsTestRow(seed, i int64, fraction float64) bool { return isTest(seed, i, fraction) }
