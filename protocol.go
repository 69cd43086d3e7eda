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
