package silo

import (
	"encoding/json"
	"time"
)

// ProtocolVersion is the version of the runner↔server wire protocol below.
// The server refuses agents that speak another version, with a message that
// says which side to upgrade.
const ProtocolVersion = 1

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
}

// HeartbeatReply tells the agent its runner's name and how often to report.
type HeartbeatReply struct {
	Runner            string       `json:"runner"`
	Status            RunnerStatus `json:"status"`
	ProtocolVersion   int          `json:"protocol_version"`
	HeartbeatInterval string       `json:"heartbeat_interval"` // a Go duration
	// CancelTasks lists running tasks the server no longer wants.
	CancelTasks []string `json:"cancel_tasks,omitempty"`
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
	// Session, Round and Dataset tie a training task to what it serves.
	Session string `json:"session,omitempty"`
	Round   int    `json:"round,omitempty"`
	Dataset string `json:"dataset,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// TaskResult is what an agent posts when a task ends.
type TaskResult struct {
	Status string          `json:"status"` // succeeded, failed or refused
	Error  string          `json:"error,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
}

// LogLine is one line of a task's log, streamed by the agent.
type LogLine struct {
	ID      int64     `json:"id,omitempty"`
	TaskID  string    `json:"task_id"`
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
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
type NumericStats struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
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

// ModelPayload carries a model to a runner: its spec and preprocessing as
// JSON, its parameters in the compact binary wire format.
type ModelPayload struct {
	Spec          json.RawMessage `json:"spec"`
	Preprocessing json.RawMessage `json:"preprocessing"`
	Params        []byte          `json:"params"`
}

// FitPayload asks a runner to train the global model on its data.
type FitPayload struct {
	TrainingData
	ModelPayload
	Round      int             `json:"round"`
	Optimizer  OptimizerConfig `json:"optimizer"`
	ProximalMu float64         `json:"proximal_mu,omitempty"`
	// DP-SGD settings, when the session uses differential privacy.
	ClipNorm        float64 `json:"clip_norm,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
}

// FitOutput is a runner's locally trained parameters (binary) and counts.
type FitOutput struct {
	Params    []byte  `json:"params"`
	NTrain    int64   `json:"n_train"`
	Steps     int     `json:"steps"`
	TrainLoss float64 `json:"train_loss"`
}

// EvaluatePayload asks a runner to score the global model on its test rows.
type EvaluatePayload struct {
	TrainingData
	ModelPayload
	Round int `json:"round"`
}

// ScoreBins is the number of bins of a score histogram.
const ScoreBins = 1000

// EvaluateOutput is a runner's test metrics. For binary classification it
// also sends histograms of predicted scores per class (counts only), from
// which the server computes the exact pooled ROC AUC up to binning.
type EvaluateOutput struct {
	NTest   int64              `json:"n_test"`
	Metrics map[string]float64 `json:"metrics"`
	PosHist []int64            `json:"pos_hist,omitempty"`
	NegHist []int64            `json:"neg_hist,omitempty"`
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
