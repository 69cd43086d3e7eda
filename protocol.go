package silo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// ProtocolVersion is the version of the runner↔server wire protocol below.
// The server refuses agents that speak another version, with a message that
// says which side to upgrade.
const ProtocolVersion = 2

// DefaultHeartbeatInterval is how often agents report; a runner that misses
// three in a row is marked offline.
const DefaultHeartbeatInterval = 10 * time.Second

// Heartbeat is what an agent posts to /api/v1/runner/heartbeat: who it is
// and what it has.
type Heartbeat struct {
	ProtocolVersion int      `json:"protocol_version"`
	AgentVersion    string   `json:"agent_version"`
	Hostname        string   `json:"hostname,omitempty"`
	VCPU            int      `json:"vcpu"`
	MemoryMB        int      `json:"memory_mb"`
	RunningTasks    []string `json:"running_tasks,omitempty"`
	// Policy is the data owner's policy the runner holds (silo runner
	// --policy), so the server can show what binds each dataset and refuse
	// what the runner would refuse before any task is queued.
	Policy *RunnerPolicy `json:"policy,omitempty"`
	// Sessions lists the sessions the runner keeps local state for (a
	// linkage's secret scalar and files); the reply says which ended.
	Sessions []string `json:"sessions,omitempty"`
}

// HeartbeatReply tells the agent its runner's name and how often to report.
type HeartbeatReply struct {
	Runner            string       `json:"runner"`
	Status            RunnerStatus `json:"status"`
	ProtocolVersion   int          `json:"protocol_version"`
	HeartbeatInterval string       `json:"heartbeat_interval"` // a Go duration
	// CancelTasks lists running tasks the server no longer wants.
	CancelTasks []string `json:"cancel_tasks,omitempty"`
	// EndedSessions lists the heartbeat's Sessions that ended (or that the
	// runner has no part in): the runner removes their local state.
	EndedSessions []string `json:"ended_sessions,omitempty"`
}

// Task types.
const (
	// TaskDiagnostics checks the runner's storage root and reports the
	// runner's resources; it reads no data.
	TaskDiagnostics = "diagnostics"
)

// Task states.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskRefused   = "refused" // the runner would not run it (resources, privacy)
	TaskCancelled = "cancelled"
)

// Task is a unit of work for one runner.
type Task struct {
	ID       string          `json:"id"`
	Runner   string          `json:"runner"`
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	VCPU     int             `json:"vcpu"`      // what the task needs
	MemoryMB int             `json:"memory_mb"` // what the task needs
	Status   string          `json:"status"`
	Error    string          `json:"error,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	// Parts are the binary inputs that travel with the task (a model's
	// parameters, a session's setup) after its JSON, in a frames body.
	Parts []Part `json:"parts,omitempty"`
	// Inputs name the session blob each part is read from, and MaxResult
	// bounds the result's body: the server's bookkeeping, not on the wire.
	Inputs    []PartBlob `json:"-"`
	MaxResult int64      `json:"-"`
	// Session, Round and Dataset tie a training task to what it serves.
	Session string `json:"session,omitempty"`
	Round   int    `json:"round,omitempty"`
	Dataset string `json:"dataset,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// PartBlob says which session blob holds a task's part.
type PartBlob struct {
	Part string `json:"part"`
	Blob string `json:"blob"`
}

// TaskResult is what an agent posts when a task ends: its status, a small
// JSON output, the binary parts that follow it in the same frames body (an
// update's parameters), and the task's last log lines, so a short task
// costs one request.
type TaskResult struct {
	Status string          `json:"status"` // succeeded, failed or refused
	Error  string          `json:"error,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
	Parts  []Part          `json:"parts,omitempty"`
	Logs   []LogLine       `json:"logs,omitempty"`
	// Log holds log lines as Logs does, in the compact form agents send.
	Log CompactLog `json:"log,omitempty"`
}

// TaskProgress is how far a running task is: Done of Total units, such as
// records blinded. An agent reports it while the task runs; a session shows
// its current step's progress.
type TaskProgress struct {
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"`
}

// CompactLog is log lines as a result carries them: each line is
// [ms, message], or [ms, level, message] for a level other than INFO,
// where ms is milliseconds since the line before (the first line's: since
// the Unix epoch). A short task's lines are written within milliseconds of
// each other, and their keys and times in full were most of its result.
type CompactLog []LogLine

// MarshalJSON writes the compact form.
func (c CompactLog) MarshalJSON() ([]byte, error) {
	out := make([][]any, len(c))
	var prev int64
	for i, l := range c {
		ms := l.Time.UnixMilli()
		line := []any{ms - prev}
		if l.Level != "" && l.Level != "INFO" {
			line = append(line, l.Level)
		}
		out[i] = append(line, l.Message)
		prev = ms
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the compact form.
func (c *CompactLog) UnmarshalJSON(b []byte) error {
	var raw [][]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(CompactLog, 0, len(raw))
	var ms int64
	for _, line := range raw {
		if len(line) < 2 || len(line) > 3 {
			return errors.New("a compact log line is [ms, message] or [ms, level, message]")
		}
		var delta int64
		if err := json.Unmarshal(line[0], &delta); err != nil {
			return fmt.Errorf("compact log line time: %w", err)
		}
		ms += delta
		l := LogLine{Time: time.UnixMilli(ms).UTC(), Level: "INFO"}
		if len(line) == 3 {
			if err := json.Unmarshal(line[1], &l.Level); err != nil {
				return fmt.Errorf("compact log line level: %w", err)
			}
		}
		if err := json.Unmarshal(line[len(line)-1], &l.Message); err != nil {
			return fmt.Errorf("compact log line message: %w", err)
		}
		out = append(out, l)
	}
	*c = out
	return nil
}

// LogLine is one line of a task's log, streamed by the agent. An agent
// leaves out what the server knows (the task, from the request) and the
// level when it is INFO, which the server takes for one left out: a
// result carries its task's lines, and they are much of a short task's
// bytes.
type LogLine struct {
	ID      int64     `json:"id,omitempty"`
	TaskID  string    `json:"task_id,omitempty"`
	Time    time.Time `json:"time"`
	Level   string    `json:"level,omitempty"`
	Message string    `json:"message"`
}

// Limits on what an agent may send, so a misbehaving runner cannot fill the
// server's database.
const (
	MaxLogLinesPerPost = 1000
	MaxLogLineBytes    = 4096
)

// TaskConnect opens a dataset on its runner and reports its schema, row
// count, null counts and the summaries its privacy controls allow.
const TaskConnect = "connect"

// ConnectPayload is a connect task's input.
type ConnectPayload struct {
	Dataset string          `json:"dataset"`
	URI     string          `json:"uri"`
	Privacy PrivacyControls `json:"privacy"`
}

// ConnectOutput is what a connect task reports: metadata, never rows.
type ConnectOutput struct {
	Format  string   `json:"format"`
	Files   int      `json:"files"`
	Rows    int64    `json:"rows"`
	Columns []Column `json:"columns"`
}

// TaskDeregister tells a runner that a dataset is deregistered: its
// controls stop binding the data's location (the location's privacy ledger
// stays). A dataset's changed controls reach the runner by a connect task.
const TaskDeregister = "deregister"

// DeregisterPayload is a deregister task's input.
type DeregisterPayload struct {
	Dataset string `json:"dataset"`
	URI     string `json:"uri"`
}

// Training task types: the federated statistics step before round 1, local
// training, evaluation of the global model, and prediction.
const (
	TaskStats    = "stats"
	TaskFit      = "fit"
	TaskEvaluate = "evaluate"
	TaskPredict  = "predict"
)

// ColumnType is a column's name and type, as its runner reported it.
type ColumnType struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// TrainingData says which data a training task reads and how it splits it.
type TrainingData struct {
	Session  string          `json:"session"`
	Dataset  string          `json:"dataset"`
	URI      string          `json:"uri"`
	Schema   []ColumnType    `json:"schema"`
	Privacy  PrivacyControls `json:"privacy"`
	Fraction float64         `json:"fraction"` // held out for testing
	Seed     int64           `json:"seed"`
}

// StatsPayload asks a runner for the statistics standardisation and one-hot
// encoding need.
type StatsPayload struct {
	TrainingData
	TaskType    string   `json:"task_type"`
	Target      string   `json:"target"`
	Features    []string `json:"features"`
	Categorical []string `json:"categorical"`
}

// NumericStats are sums over a numeric column's non-null training values.
// Runners build them with Add; the server merges them (internal/fl) and
// standardises with MeanStd.
type NumericStats struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
}

// Add includes one value.
func (s *NumericStats) Add(x float64) {
	s.Count++
	s.Sum += x
	s.SumSq += x * x
}

// MeanStd returns the mean and the population standard deviation (divisor
// Count, as scikit-learn's StandardScaler) of the summarised values.
//
// A standard deviation of 0 — a constant column, a single value, or no
// values at all (mean 0 then) — is returned as 1, so that standardising,
// (x − mean)/std, maps the column to 0 instead of dividing by zero; a
// constant feature carries no information either way.
//
// The variance comes from the sums as SumSq/n − mean², which loses relative
// precision about (mean/std)² × 1e-16: negligible for standardisation unless
// a column's mean dwarfs its spread by ~10⁶ (e.g. raw Unix timestamps).
func (s NumericStats) MeanStd() (mean, std float64) {
	if s.Count <= 0 {
		return 0, 1
	}
	n := float64(s.Count)
	mean = s.Sum / n
	variance := s.SumSq/n - mean*mean
	// Below 1e-14·mean² the variance is rounding dust of the subtraction
	// (a constant column), not spread; it may even come out negative.
	if !(variance > 1e-14*mean*mean) {
		return mean, 1
	}
	return mean, math.Sqrt(variance)
}

// StatsOutput is a runner's statistics: aggregates only, each over at least
// min_records_per_aggregate rows; rarer categories and classes are left out.
type StatsOutput struct {
	NTrain     int64                       `json:"n_train"`
	NTest      int64                       `json:"n_test"`
	Numeric    map[string]NumericStats     `json:"numeric"`
	Categories map[string]map[string]int64 `json:"categories"`
	Classes    map[string]int64            `json:"classes,omitempty"`
}

// TrainingSetup is what every fit and evaluate task of one client needs
// that does not change from round to round: the data to read, the model's
// spec and preprocessing, the optimiser and the DP settings. It travels as
// the tasks' "setup" part, which the runner caches by digest, so a
// round's tasks carry only their round and the global parameters.
type TrainingSetup struct {
	TrainingData
	Spec          json.RawMessage `json:"spec"`
	Preprocessing json.RawMessage `json:"preprocessing"`
	Optimizer     OptimizerConfig `json:"optimizer"`
	ProximalMu    float64         `json:"proximal_mu,omitempty"`
	// DP-SGD settings, when the session uses differential privacy.
	ClipNorm        float64 `json:"clip_norm,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
}

// RoundPayload is the JSON of a fit or evaluate task. Its parts are
// PartSetup (a TrainingSetup) and PartParams (the global parameters in the
// compact binary format).
type RoundPayload struct {
	Round int `json:"round"`
}

// Part names of training tasks and their results.
const (
	PartSetup  = "setup"
	PartParams = "params"
)

// FitOutput is a runner's counts after local training; its parameters are
// the result's PartParams part.
type FitOutput struct {
	NTrain    int64   `json:"n_train"`
	Steps     int     `json:"steps"`
	TrainLoss float64 `json:"train_loss"`
}

// ScoreBins is the number of bins of a score histogram.
const ScoreBins = 1000

// EvaluateOutput is a runner's test metrics. For binary classification it
// also sends histograms of predicted scores per class (counts only), from
// which the server computes the exact pooled ROC AUC up to binning.
type EvaluateOutput struct {
	NTest   int64              `json:"n_test"`
	Metrics map[string]float64 `json:"metrics"`
	PosHist SparseHist         `json:"pos_hist,omitempty"`
	NegHist SparseHist         `json:"neg_hist,omitempty"`
}

// SparseHist is a histogram of ScoreBins bins as [bin, count] pairs of its
// non-empty bins: a test split of a few hundred rows fills few of the
// thousand bins, and their zeros were most of an evaluation's bytes.
type SparseHist [][2]int64

// Dense returns the histogram's n bins, or false when a bin is out of range,
// repeated, or a count negative.
func (h SparseHist) Dense(n int) ([]int64, bool) {
	out := make([]int64, n)
	seen := make([]bool, n)
	for _, p := range h {
		bin, count := p[0], p[1]
		if bin < 0 || bin >= int64(n) || seen[bin] || count < 0 {
			return nil, false
		}
		seen[bin] = true
		out[bin] = count
	}
	return out, true
}

// SparseOf returns the non-empty bins of a dense histogram.
func SparseOf(dense []int64) SparseHist {
	out := SparseHist{}
	for i, c := range dense {
		if c != 0 {
			out = append(out, [2]int64{int64(i), c})
		}
	}
	return out
}

// PredictPayload asks a runner to predict every row of a dataset and write
// the predictions to its own storage.
type PredictPayload struct {
	Dataset  string          `json:"dataset"`
	URI      string          `json:"uri"`
	Schema   []ColumnType    `json:"schema"`
	Privacy  PrivacyControls `json:"privacy"`
	Document json.RawMessage `json:"document"`
	Format   string          `json:"format"` // csv or parquet
	Output   string          `json:"output"` // URI to write
}

// PredictOutput says how many rows were predicted and where they are.
type PredictOutput struct {
	Rows int64  `json:"rows"`
	Path string `json:"path"`
}
