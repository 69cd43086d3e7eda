// Package orchestrator is Silo's session engine. A Driver takes every
// session through its lifecycle — pending, running step by step, then
// completed, failed or cancelled — and owns what all session types share:
// the lease that gives a session one driver among replicas, retries of
// store failures, resuming after a restart, cancel, runners that drop out,
// and queuing tasks. What a session type computes is its Kind: which tasks
// a step sends and how their results fold into the next step. The Driver
// persists every step before its tasks go out, so a restarted server
// resumes mid-session.
//
// The split follows Flower's message-based Strategy (a strategy configures
// a round's messages and aggregates the replies; the Grid sends them and
// waits), extended so that steps which are not training rounds — record
// linkage's exchange, an analysis protocol — are the same configure and
// aggregate pairs.
package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// Kind is a session type. Its methods are pure functions of what they are
// given — they never write the store or talk to runners — so the Driver can
// call them again after any failure.
type Kind interface {
	// Prepare checks a new session's config against its datasets (which
	// exist, are connected and allow the session) and may fill in defaults.
	Prepare(ctx context.Context, cfg *silo.SessionConfig, datasets []*silo.Dataset) error
	// Start gives the session's first step and initial state when it
	// leaves pending.
	Start(ctx context.Context, s *Session) (*Outcome, error)
	// Configure returns the task a step sends to one client, or nil when
	// the client sits the step out.
	Configure(s *Session, step Step, c *Client) (*Task, error)
	// Aggregate folds a closed step's results — every client that took part,
	// answered or not — into the next step, or the end of the session.
	Aggregate(ctx context.Context, s *Session, step Step, results []*Result) (*Outcome, error)
}

// Reporter is a kind whose metrics are not training rounds (a linkage's
// overlap per dataset): it reports them from its own state.
type Reporter interface {
	Metrics(s *Session) (any, error)
}

// Session is what a kind sees of a session.
type Session struct {
	ID      string
	Config  silo.SessionConfig
	Clients []*Client
	// State is what the kind returned last, nil before Start.
	State []byte
	// Round is the last round recorded, BestRound the best by the
	// session's metric, Latest its federated metrics.
	Round     int
	BestRound int
	Latest    map[string]float64
	db        *sqlstore.DB
	memo      map[string]any
	blobs     map[string][]byte // small blobs the driver wrote itself
}

// DecodeState decodes the kind's state into v; before Start, when there is
// none, v stays as it is.
func (s *Session) DecodeState(v any) error {
	if len(s.State) == 0 {
		return nil
	}
	if err := json.Unmarshal(s.State, v); err != nil {
		return fmt.Errorf("%s state of session %s: %w", s.Config.Type, s.ID, err)
	}
	return nil
}

// Memo returns what compute returns for key, computing it once for this
// view of the session: a kind decodes its state once per step, not once
// for each client it configures. What it returns is shared, so it must
// not be changed.
func (s *Session) Memo(key string, compute func() (any, error)) (any, error) {
	if v, ok := s.memo[key]; ok {
		return v, nil
	}
	v, err := compute()
	if err != nil {
		return nil, err
	}
	if s.memo == nil {
		s.memo = map[string]any{}
	}
	s.memo[key] = v
	return v, nil
}

// Blob reads one of the session's blobs. It must not be changed.
func (s *Session) Blob(ctx context.Context, name string) ([]byte, error) {
	if b, ok := s.blobs[name]; ok {
		return b, nil
	}
	return s.db.SessionBlob(ctx, s.ID, name)
}

// Client is one dataset of a session with its runner.
type Client struct {
	sqlstore.SessionClient
	// Data is the registered dataset: its URI, schema and privacy controls.
	Data *silo.Dataset
	// RunnerVCPU and RunnerMemoryMB are what its runner was registered with.
	RunnerVCPU     int
	RunnerMemoryMB int
}

// Step is a stage of a session: a training round's fit, a linkage's
// exchange. Its Name is also the type of the tasks it sends.
type Step struct {
	Name  string
	Round int
	// Quorum is the fewest successful answers the step can close with;
	// 0 means every client that takes part.
	Quorum int
	// Reason is the session's status reason while the step runs.
	Reason string
}

// Task is what a step sends one client.
type Task struct {
	Payload any // marshalled to JSON
	// Inputs are session blobs sent with the task as binary parts.
	Inputs []silo.PartBlob
	// VCPU and MemoryMB are what the task needs on its runner.
	VCPU, MemoryMB int
	// MaxResult bounds the body of its result (JSON and parts): what the
	// step can legitimately send back, so a runner cannot make the server
	// read more.
	MaxResult int64
}

// Result is one client's answer to a step, or the lack of one.
type Result struct {
	Client *Client
	// Task is the client's last task in the step: Status succeeded with its
	// Output, or why not (failed, refused, cancelled because late).
	Task *silo.Task
	db   *sqlstore.DB
}

// OK reports whether the client answered.
func (r *Result) OK() bool { return r.Task.Status == silo.TaskSucceeded }

// Part reads a binary part of the answer.
func (r *Result) Part(ctx context.Context, name string) ([]byte, error) {
	return r.db.SessionBlob(ctx, r.Task.Session, sqlstore.ResultBlob(r.Task.ID, name))
}

// PartInfo is the size and digest of a binary part of the answer.
func (r *Result) PartInfo(ctx context.Context, name string) (sqlstore.BlobInfo, error) {
	infos, err := r.db.SessionBlobInfos(ctx, r.Task.Session, []string{sqlstore.ResultBlob(r.Task.ID, name)})
	if err != nil {
		return sqlstore.BlobInfo{}, err
	}
	return infos[0], nil
}

// OpenPart streams a binary part of the answer (a blinded set of millions
// of values), chunk by chunk from the store. Close it when done.
func (r *Result) OpenPart(ctx context.Context, name string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(r.db.CopySessionBlob(ctx, r.Task.Session, sqlstore.ResultBlob(r.Task.ID, name), pw))
	}()
	return pr
}

// PartName is the session blob that holds a part of the answer, for a kind
// that passes it on to the next step's tasks (with KeepResults).
func (r *Result) PartName(part string) string { return sqlstore.ResultBlob(r.Task.ID, part) }

// Outcome is what Start or Aggregate decides.
type Outcome struct {
	// State replaces the kind's state.
	State []byte
	// Next is the next step; nil completes the session.
	Next *Step
	// Reason is the status reason of a completed session.
	Reason string
	// Round records a round's metrics (and sets the session's Round).
	Round     *sqlstore.SessionRound
	Latest    map[string]float64
	BestRound int
	// Epsilon is what the session has spent on each dataset so far.
	Epsilon map[string]float64
	// Refused lists the clients whose answers the kind left out, and why.
	Refused map[string]string
	// PutBlobs and DropBlobs change the session's blobs (names as in
	// sqlstore.Advance); blobs named "model/…" outlive the session.
	PutBlobs  map[string][]byte
	DropBlobs []string
	// KeepResults keeps the result parts of the closed step, which the
	// driver otherwise drops once aggregated.
	KeepResults bool
}
