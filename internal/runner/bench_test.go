package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/model"
)

// The task benchmarks run the executors on a seeded CSV of benchRows rows:
// benchNum float features, one 5-value string feature and a 0/1 target, as
// a runner sees them in round 1 (stats, then fit and evaluate, which load
// and encode the data once and share it through the cache).
const benchRows, benchNum = 20_000, 50

var benchCats = []string{"a", "b", "c", "d", "e"}

type benchTask struct {
	cfg   *Config
	log   *TaskLog
	td    silo.TrainingData
	feats []string
	setup silo.TrainingSetup
	// params are the initial global parameters.
	params []byte
}

// task is a fit or evaluate task of round 1 with the bench data's setup,
// edited by edit.
func (bt *benchTask) task(typ string, edit func(*silo.TrainingSetup)) *Task {
	setup := bt.setup
	if edit != nil {
		edit(&setup)
	}
	b, _ := json.Marshal(setup)
	p, _ := json.Marshal(silo.RoundPayload{Round: 1})
	return &Task{Task: &silo.Task{Type: typ, Payload: p}, Parts: client.Parts{silo.PartSetup: b, silo.PartParams: bt.params}}
}

func newBenchTask(b testing.TB) *benchTask {
	b.Helper()
	root := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	schema := []silo.ColumnType{}
	var feats []string
	for j := range benchNum {
		name := fmt.Sprintf("x%d", j)
		feats = append(feats, name)
		schema = append(schema, silo.ColumnType{Name: name, Type: "float"})
		sb.WriteString(name + ",")
	}
	feats = append(feats, "ward")
	schema = append(schema, silo.ColumnType{Name: "ward", Type: "string"}, silo.ColumnType{Name: "y", Type: "int"})
	sb.WriteString("ward,y\n")
	for range benchRows {
		eta := 0.0
		for j := range benchNum {
			v := rng.NormFloat64()
			if j < 5 {
				eta += v
			}
			if rng.IntN(100) == 0 {
				sb.WriteString(",") // a null
				continue
			}
			sb.WriteString(strconv.FormatFloat(v, 'g', 6, 64) + ",")
		}
		y := 0
		if rng.Float64()*2-1 < eta/4 {
			y = 1
		}
		fmt.Fprintf(&sb, "%s,%d\n", benchCats[rng.IntN(len(benchCats))], y)
	}
	if err := os.WriteFile(filepath.Join(root, "d.csv"), []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	bt := &benchTask{
		cfg:   &Config{StorageRoot: root, cache: &dataCache{}},
		log:   newTaskLog(nil, "t", slog.New(slog.DiscardHandler)),
		td:    silo.TrainingData{Session: "s", Dataset: "d", URI: "file://" + filepath.Join(root, "d.csv"), Schema: schema, Privacy: silo.DefaultPrivacyControls(), Fraction: 0.2, Seed: 7},
		feats: feats,
	}
	if err := connect(bt.cfg, bt.td.Dataset, bt.td.URI, bt.td.Privacy); err != nil {
		b.Fatal(err)
	}
	prep := model.Preprocessing{Task: "classification", Target: "y", Classes: []string{"0", "1"}, TargetType: "int"}
	for _, f := range feats[:benchNum] {
		prep.Features = append(prep.Features, model.Feature{Name: f, Type: "float", Kind: model.Numeric, Mean: 0.01, Std: 1.1})
	}
	prep.Features = append(prep.Features, model.Feature{Name: "ward", Type: "string", Kind: model.Categorical, Categories: benchCats})
	spec := ml.Spec{Package: ml.PackageGLM, Task: ml.Classification, NumFeatures: prep.Width(), Classes: prep.Classes}
	m, err := ml.NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	bt.setup.TrainingData = bt.td
	bt.setup.Spec, _ = json.Marshal(spec)
	bt.setup.Preprocessing, _ = json.Marshal(prep)
	bt.setup.Optimizer = silo.OptimizerConfig{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, BatchSize: 64, LocalEpochs: 1}
	bt.params = m.MarshalBinaryParams()
	return bt
}

func BenchmarkStatsTask(b *testing.B) {
	bt := newBenchTask(b)
	p, _ := json.Marshal(silo.StatsPayload{TrainingData: bt.td, TaskType: "classification", Target: "y", Features: bt.feats})
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := runStats(context.Background(), &Task{Task: &silo.Task{Payload: p}}, bt.log, bt.cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkFitTask is a round-1 fit: the data is read and encoded (the
// cache starts empty), then one epoch of SGD.
func BenchmarkFitTask(b *testing.B) {
	bt := newBenchTask(b)
	defer reportCPU(b)()
	for b.Loop() {
		bt.cfg.cache = &dataCache{}
		if _, err := runFit(context.Background(), bt.task(silo.TaskFit, nil), bt.log, bt.cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkEvaluateTask is a round-1 evaluate that does not find the data
// in the cache.
func BenchmarkEvaluateTask(b *testing.B) {
	bt := newBenchTask(b)
	defer reportCPU(b)()
	for b.Loop() {
		bt.cfg.cache = &dataCache{}
		if _, err := runEvaluate(context.Background(), bt.task(silo.TaskEvaluate, nil), bt.log, bt.cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// reportCPU reports the process CPU time per op from here to the returned
// function's call: on a shared machine it measures work where ns/op
// measures the neighbours too.
func reportCPU(b *testing.B) func() {
	self0, _ := cpuTime()
	return func() {
		if self1, _ := cpuTime(); self1 > self0 {
			b.ReportMetric(float64((self1-self0).Milliseconds())/float64(b.N), "cpu-ms/op")
		}
	}
}

// connect is kept here, not in a file of its own, so that bench_test.go
// runs as is on earlier versions of the package (bench/abtest copies it).
// connect runs a connect task for dataset on cfg's runner, as the server
// does when a dataset is registered or its controls change.
func connect(cfg *Config, dataset, uri string, privacy silo.PrivacyControls) error {
	_, err := connectOutput(cfg, dataset, uri, privacy)
	return err
}

func connectOutput(cfg *Config, dataset, uri string, privacy silo.PrivacyControls) (*silo.ConnectOutput, error) {
	p, _ := json.Marshal(silo.ConnectPayload{Dataset: dataset, URI: uri, Privacy: privacy})
	raw, err := runConnect(context.Background(), &Task{Task: &silo.Task{Type: silo.TaskConnect, Payload: p}}, newTaskLog(nil, "t", slog.New(slog.DiscardHandler)), cfg)
	if err != nil {
		return nil, err
	}
	var out silo.ConnectOutput
	return &out, json.Unmarshal(raw, &out)
}
