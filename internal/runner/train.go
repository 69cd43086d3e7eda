package runner

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/dp"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/tabular"
	"github.com/silofl/silo/model"
)

// The training executors: federated statistics, local training, evaluation
// and prediction. They send aggregates and parameters, never rows; every
// statistic covers at least min_records_per_aggregate rows of the controls
// that bind the data (see guard.go), whatever the task says.

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
	b, err := cfg.checkUse(ctx, p.Dataset, p.URI, p.Privacy, silo.SessionHFL, append(slices.Clone(p.Features), p.Target)...)
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
				if len(counts) > maxCategoricalValues {
					return fmt.Errorf("refused by the runner: column %s of dataset %s has more than %d distinct values: it cannot be a categorical feature; leave it out of the features", f, p.Dataset, maxCategoricalValues)
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
	min := b.minRecords()
	if out.NTrain < min {
		return nil, b.refused("min_records_per_aggregate", "dataset %s has %d training rows, fewer than min_records_per_aggregate (%d): its aggregates would expose individuals", p.Dataset, out.NTrain, min)
	}
	for _, f := range p.Features {
		if err := identifierInDisguise(b, f, out.Categories[f]); err != nil {
			return nil, err
		}
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

// maxCategoricalValues bounds the distinct values a categorical feature may
// have on one runner (and the memory counting them takes).
const maxCategoricalValues = 100_000

// identifierInDisguise refuses a categorical feature whose values are
// mostly unique: a column that tells people apart (a name, an email, a
// record number) rather than describing them. Its rare values would be
// withheld anyway; refusing says why, rather than training on what is left.
func identifierInDisguise(b *binding, col string, counts map[string]int64) error {
	var rows, once int64
	for _, n := range counts {
		rows += n
		if n == 1 {
			once++
		}
	}
	if rows >= 2 && 2*once > rows {
		return fmt.Errorf("refused by the runner: column %s of dataset %s cannot be a categorical feature: %d of its %d values occur only once, so it identifies people rather than describing them; declare it an identifier column, or leave it out of the features", col, b.dataset, once, rows)
	}
	return nil
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
func load(ctx context.Context, cfg *Config, log *TaskLog, setup *silo.TrainingSetup, paramBytes []byte) (*ml.Model, *model.Preprocessing, *loaded, *binding, error) {
	td := &setup.TrainingData
	var spec ml.Spec
	var prep model.Preprocessing
	if err := json.Unmarshal(setup.Spec, &spec); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("model spec: %w", err)
	}
	if err := json.Unmarshal(setup.Preprocessing, &prep); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("preprocessing: %w", err)
	}
	params, err := ml.ParseParams(paramBytes)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("model parameters: %w", err)
	}
	m, err := ml.LoadModel(spec, params)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	b, err := cfg.checkUse(ctx, td.Dataset, td.URI, td.Privacy, silo.SessionHFL, append(prep.Columns(false), prep.Target)...)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	key := td.Session + "\x00" + td.Dataset + "\x00" + string(setup.Preprocessing) + "\x00" + strconv.FormatInt(b.minRecords(), 10)
	if l := cfg.cache.get(key); l != nil {
		return m, &prep, l, b, nil
	}
	w := prep.Width()
	var xTrain, xTest rowBlocks
	var yTrain, yTest []float64
	var enc []float64
	var kept []int
	var ys []float64
	err = readRows(ctx, cfg, td, prep.Columns(true), func(cols []column, n int, test []bool) error {
		target := &cols[len(cols)-1]
		kept, ys = kept[:0], ys[:0]
		for i := range n {
			if y, ok := prep.EncodeTarget(target.cell(i)); ok {
				kept, ys = append(kept, i), append(ys, y)
			}
		}
		enc = encodeRows(&prep, cols, kept, w, enc)
		for k, i := range kept {
			if test[i] {
				xTest.add(enc[k*w : (k+1)*w])
				yTest = append(yTest, ys[k])
			} else {
				xTrain.add(enc[k*w : (k+1)*w])
				yTrain = append(yTrain, ys[k])
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// #nosec G115 G404 -- a reproducible order: the seed's bits, mixed with the dataset
	xTr, yTr := xTrain.joinShuffled(rand.New(rand.NewPCG(uint64(td.Seed), uint64(len(td.Dataset))^0x5eed)), yTrain, w)
	xTe := xTest.join()
	if withheld := withholdRareCategories(&prep, xTr, xTe, b.minRecords()); withheld > 0 {
		log.Info("rare categories encoded as unknown", "dataset", td.Dataset, "categories", withheld)
	}
	l := &loaded{}
	if l.train, err = ml.NewDataset(xTr, w, yTr); err != nil {
		return nil, nil, nil, nil, err
	}
	l.train.Shuffled = true
	if l.test, err = ml.NewDataset(xTe, w, yTest); err != nil {
		return nil, nil, nil, nil, err
	}
	cfg.cache.put(key, l)
	return m, &prep, l, b, nil
}

// withholdRareCategories encodes as unknown (all zeros) every category of
// the model that this runner's training rows hold fewer than minRecords
// times, in the training and test rows: the model then learns nothing from
// a value that describes few people here, even when a server lists it
// (another runner's common value, or a guess). It returns how many
// categories it withheld.
func withholdRareCategories(prep *model.Preprocessing, xTrain, xTest []float64, minRecords int64) int {
	w := prep.Width()
	if w == 0 {
		return 0
	}
	withheld, j := 0, 0
	for _, f := range prep.Features {
		if f.Kind != model.Categorical {
			j++
			continue
		}
		for k := range f.Categories {
			col := j + k
			var n int64
			for r := col; r < len(xTrain); r += w {
				if xTrain[r] != 0 {
					n++
				}
			}
			if n == 0 || n >= minRecords {
				continue
			}
			withheld++
			for _, x := range [][]float64{xTrain, xTest} {
				for r := col; r < len(x); r += w {
					x[r] = 0
				}
			}
		}
		j += len(f.Categories)
	}
	return withheld
}

// encodeRows writes the model inputs of the given rows of a batch into
// enc (len(rows)·w values, reused), feature by feature over tiles of rows:
// a numeric column is standardised in a loop of its own, where encoding a
// row at a time cost a call per cell, a sixth of loading a wide dataset.
// cols are the batch's columns in Preprocessing.Columns order.
func encodeRows(p *model.Preprocessing, cols []column, rows []int, w int, enc []float64) []float64 {
	if need := len(rows) * w; cap(enc) < need {
		enc = make([]float64, need)
	} else {
		enc = enc[:need]
	}
	const tile = 64 // rows whose inputs stay in cache while every feature is written
	for lo := 0; lo < len(rows); lo += tile {
		part := rows[lo:min(lo+tile, len(rows))]
		j := 0
		for fi := range p.Features {
			f, col := &p.Features[fi], &cols[fi]
			fw := f.Width()
			if f.Kind == model.Numeric && col.str == nil {
				for k, i := range part {
					enc[(lo+k)*w+j] = f.Standardize(col.num[i], col.null[i])
				}
			} else {
				for k, i := range part {
					f.Encode(col.cell(i), enc[(lo+k)*w+j:(lo+k)*w+j+fw])
				}
			}
			j += fw
		}
	}
	return enc
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

// joinShuffled returns the rows (w values each) as one slice in a random
// order, with their targets y in the same order, in one pass that writes
// each row to its place; the blocks are released. The random order is
// made once per load: training epochs can then read the rows in blocks of
// consecutive rows, at the memory's sequential speed, and still draw
// random batches (see ml.Dataset.Shuffled). Joining and then shuffling in
// place took two passes, a third of loading a wide dataset.
func (r *rowBlocks) joinShuffled(rng *rand.Rand, y []float64, w int) ([]float64, []float64) {
	if r.n == 0 {
		return nil, y
	}
	perm := rng.Perm(len(y))
	x, ys := make([]float64, r.n), make([]float64, len(y))
	i := 0
	for _, b := range r.blocks {
		for off := 0; off < len(b); off += w {
			p := perm[i]
			copy(x[p*w:(p+1)*w], b[off:off+w])
			ys[p] = y[i]
			i++
		}
	}
	r.blocks = nil
	return x, ys
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
	m, _, data, b, err := load(ctx, cfg, log, p, params)
	if err != nil {
		return nil, err
	}
	if b.eff.Controls.RequireDifferentialPrivacy && !(p.NoiseMultiplier > 0) {
		return nil, b.refused("require_differential_privacy", "dataset %s requires differential privacy and this session has none", p.Dataset)
	}
	if int64(data.train.Len()) < b.minRecords() {
		return nil, b.refused("min_records_per_aggregate", "dataset %s has %d usable training rows, fewer than min_records_per_aggregate (%d)", p.Dataset, data.train.Len(), b.minRecords())
	}
	opts := ml.TrainOptions{
		Optimizer: ml.Optimizer{Name: p.Optimizer.Name, LearningRate: p.Optimizer.LearningRate, Momentum: p.Optimizer.Momentum,
			BatchSize: p.Optimizer.BatchSize, LocalEpochs: p.Optimizer.LocalEpochs},
		ProximalMu: p.ProximalMu,
		Workers:    max(cfg.VCPU, 1), // full-batch solvers use the runner's vCPUs
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
	if err := opts.Check(m.Spec()); err != nil {
		return nil, fmt.Errorf("refused by the runner: %w", err)
	}
	settle := func(int) {}
	if opts.DP != nil {
		// The runner counts the epsilon itself, from the steps it will run,
		// and charges its own ledger before any noise is drawn.
		n, batch := data.train.Len(), p.Optimizer.BatchSize
		seg := dp.Segment{SampleRate: ml.PoissonSampleRate(n, batch), NoiseMultiplier: p.NoiseMultiplier, Steps: p.Optimizer.LocalEpochs * ml.StepsPerEpoch(n, batch)}
		eps, s, err := cfg.reserveEpsilon(ctx, b, p.Session, seg)
		if err != nil {
			return nil, err
		}
		settle = s
		log.Info("epsilon charged to the runner's ledger", "dataset", p.Dataset, "location", b.location, "session_epsilon", eps, "steps", seg.Steps)
	}
	res, err := m.Train(ctx, data.train, opts)
	if err != nil {
		settle(0)
		return nil, err
	}
	settle(res.Steps)
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
	m, prep, data, b, err := load(ctx, cfg, log, p, params)
	if err != nil {
		return nil, err
	}
	out := silo.EvaluateOutput{NTest: int64(data.test.Len())}
	if out.NTest < b.minRecords() {
		return nil, b.refused("min_records_per_aggregate", "dataset %s has %d test rows, fewer than min_records_per_aggregate (%d): raise validation.fraction or leave it out", p.Dataset, out.NTest, b.minRecords())
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
