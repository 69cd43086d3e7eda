// Package runner is the task-runner agent, `silo runner`: it sits next to an
// organisation's data, dials out to the workspace server (never the other
// way), long-polls for tasks, runs them within its vCPU and memory, and sends
// back only results, metrics and logs.
package runner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/blob"
)

// Config is what an agent is started with.
type Config struct {
	ServerURL string
	Token     string
	// StorageRoot is the directory of the runner's data (local runners).
	StorageRoot string
	// CloudRoot is a cloud runner's storage root, s3://<bucket>[/prefix]
	// or azure://<container>[/prefix] in the account of Storage.Azure:
	// without a StateDir the runner keeps its state there, under
	// .silo/runner-state/, so that it outlives the runner's machine.
	CloudRoot string
	// StateDir is where the runner keeps its own record of the controls
	// bound to each data location and its privacy ledger. Empty means .silo
	// under StorageRoot, in CloudRoot (see there), or else the user's
	// configuration directory. It must survive restarts.
	StateDir string
	// Policy is the data owner's policy (silo runner --policy): a floor no
	// server, admin or custodian can loosen. Nil means the controls the
	// server sends are the floor, still bound to each data location.
	Policy *Policy
	// VCPU and MemoryMB are the runner's allowance: the agent sizes its
	// worker pool and Go memory limit from them and refuses tasks that do
	// not fit. Zero means what the machine has.
	VCPU     int
	MemoryMB int
	// Storage reaches the runner's cloud storage (S3 or Azure); file://
	// data is read under StorageRoot.
	Storage blob.Config
	// CAFile is a PEM bundle of extra roots to trust (a private CA or a
	// TLS-inspecting proxy). Proxies come from HTTPS_PROXY/NO_PROXY.
	CAFile string
	// PollWait is how long one long-poll waits for a task.
	PollWait time.Duration
	// RequestTimeout bounds each request to the server beyond what it
	// waits by design (a long-poll's PollWait): a network that drops
	// packets silently leaves a connection hanging without an error, and
	// the agent must notice and dial again. A task result, which may be a
	// large update, gets ten times as long. Zero means 30 seconds.
	RequestTimeout time.Duration
	// SetMemoryLimit applies MemoryMB as the process's Go memory limit.
	// Off when several agents share one process (tests).
	SetMemoryLimit bool
	Logger         *slog.Logger

	cache      *dataCache  // encoded training data, between rounds
	cloudState *cloudState // the state in CloudRoot, opened once by New
}

// Agent is a running task-runner agent.
type Agent struct {
	cfg    Config
	api    *client.Client
	log    *slog.Logger
	tasks  map[string]Executor
	hbTick time.Duration

	taskWG sync.WaitGroup
	freed  chan struct{} // signalled when a task releases its resources
	// claim is a token: only its holder asks the server for a task, either
	// by polling or with a task's result, so the agent never takes more
	// tasks than it has room for.
	claim chan struct{}
	parts *partCache

	mu        sync.Mutex
	running   map[string]context.CancelFunc // task id → cancel
	usedVCPU  int
	usedMemMB int
	name      string
}

// Task is a task with its binary parts. An executor that answers with parts
// of its own (an update's parameters) sets Out; one whose parts are large
// (a blinded set) writes them to files in its Dir and lists them in
// OutFiles.
type Task struct {
	*silo.Task
	Parts    client.Parts
	Out      client.Parts
	OutFiles map[string]string
	// Progress reports how far the task is (see TaskLog.Progress).
	dir    string // scratch directory, removed when the task ends
	spills string // where the agent keeps large parts
}

// Part returns one of the task's parts, read into memory if it arrived as
// a file.
func (t *Task) Part(name string) ([]byte, error) {
	if b, ok := t.Parts[name]; ok {
		return b, nil
	}
	if path, _, ok := t.PartFile(name); ok {
		return os.ReadFile(path) // #nosec G304 -- a part file the agent wrote
	}
	return nil, fmt.Errorf("%s task %s came without its %s part", t.Type, t.ID, name)
}

// PartFile returns the file and size of a part that arrived as a file
// (larger than the agent keeps in memory).
func (t *Task) PartFile(name string) (string, int64, bool) {
	for _, p := range t.Task.Parts {
		if p.Name == name && p.Path != "" {
			return p.Path, p.Size, true
		}
	}
	return "", 0, false
}

// Dir returns the task's scratch directory, created on first use and
// removed with everything in it once the task's result is sent.
func (t *Task) Dir() (string, error) {
	if t.dir == "" {
		if err := os.MkdirAll(t.spills, 0o700); err != nil {
			return "", err
		}
		d, err := os.MkdirTemp(t.spills, "task-*")
		if err != nil {
			return "", err
		}
		t.dir = d
	}
	return t.dir, nil
}

// cleanup removes the task's part files and scratch directory.
func (t *Task) cleanup() {
	client.RemovePartFiles(t.Task.Parts)
	if t.dir != "" {
		_ = os.RemoveAll(t.dir)
	}
}

// spillAbove is the size past which a task part goes to a file as it
// arrives, rather than into memory.
const spillAbove = 8 << 20

// Executor runs one type of task. It gets the task, a logger whose lines
// stream to the server, and the agent's config; it returns the output to
// report. Executors must honour ctx.
type Executor func(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error)

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if cfg.ServerURL == "" {
		return nil, errors.New("--server is required: the URL of the Silo server")
	}
	if cfg.Token == "" {
		return nil, errors.New("--token is required: the runner's token from 'silo runners register' or 'silo runners token NAME'")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.VCPU <= 0 {
		cfg.VCPU = runtime.NumCPU()
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 25 * time.Second
	}
	hc, err := httpClient(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	api := client.New(cfg.ServerURL, cfg.Token)
	api.HTTPClient = hc
	api.SpillDir, api.SpillAbove = cfg.spillDir(), spillAbove
	// Part files and scratch directories a previous run left are of tasks
	// that are no more.
	_ = os.RemoveAll(api.SpillDir)
	if err := os.MkdirAll(api.SpillDir, 0o700); err != nil {
		return nil, fmt.Errorf("the runner's directory for large task parts: %w", err)
	}
	api.UserAgent = "silo-runner/" + silo.Version
	a := &Agent{cfg: cfg, api: api, log: cfg.Logger, running: map[string]context.CancelFunc{}, hbTick: silo.DefaultHeartbeatInterval, freed: make(chan struct{}, 1),
		claim: make(chan struct{}, 1), parts: &partCache{},
		tasks: map[string]Executor{silo.TaskDiagnostics: runDiagnostics, silo.TaskConnect: runConnect, silo.TaskDeregister: runDeregister,
			silo.TaskStats: runStats, silo.TaskFit: runFit, silo.TaskEvaluate: runEvaluate, silo.TaskPredict: runPredict,
			silo.TaskPRLBlind: runPRLBlind, silo.TaskPRLReblind: runPRLReblind, silo.TaskPRLLink: runPRLLink}}
	a.cfg.cache = &dataCache{}
	a.claim <- struct{}{}
	switch {
	case a.cfg.StateDir == "" && a.cfg.CloudRoot != "":
		cs, err := openCloudState(context.Background(), a.cfg.CloudRoot, a.cfg.Storage)
		if err != nil {
			return nil, fmt.Errorf("the runner's state in its storage: %w", err)
		}
		a.cfg.cloudState = &cs
	case a.cfg.StateDir == "":
		if a.cfg.StateDir, err = defaultStateDir(cfg.StorageRoot); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// httpClient honours HTTPS_PROXY/NO_PROXY and trusts the system roots plus
// caFile.
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The proxy settings are read when the agent starts (not once per
	// process, as http.ProxyFromEnvironment does), so an agent started
	// again picks up changed settings.
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	// The server never compresses the runner protocol (model parameters do
	// not compress); not asking saves a header on every request.
	tr.DisableCompression = true
	if caFile != "" {
		pem, err := os.ReadFile(caFile) // #nosec G304 -- the CA bundle the operator configured
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// ErrTokenRefused means the server no longer accepts the runner's token
// (deregistered, or the token was replaced): retrying cannot help.
var ErrTokenRefused = errors.New("the server refused the runner token: the runner was deregistered or its token was replaced")

// Run connects and works until ctx ends (a clean shutdown, which waits for
// running tasks up to their own cancellation) or the server refuses the
// runner for good. Network failures are retried with backoff and jitter.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.SetMemoryLimit {
		// Leave a tenth for what the Go runtime does not count.
		debug.SetMemoryLimit(int64(a.cfg.MemoryMB) * 9 / 10 << 20)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The first heartbeat must succeed before polling: it proves the token
	// and the protocol version.
	if err := a.retry(ctx, "connect", a.heartbeat); err != nil {
		return a.stopReason(ctx, err)
	}
	policy := "none: the server's controls are the floor"
	if a.cfg.Policy != nil {
		policy = fmt.Sprintf("%d rule(s), %s", len(a.cfg.Policy.Rules), a.cfg.Policy.Digest)
	}
	a.log.Info("runner connected", "runner", a.name, "server", a.cfg.ServerURL, "vcpu", a.cfg.VCPU, "memory_mb", a.cfg.MemoryMB, "state", a.cfg.stateWhere(), "policy", policy)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.heartbeatInterval()):
			}
			if err := a.retry(ctx, "heartbeat", a.heartbeat); err != nil {
				cancel(err)
				return
			}
		}
	}()
	err := a.retry(ctx, "poll", a.pollOnce)
	cancel(err)
	wg.Wait()
	a.waitTasks()
	return a.stopReason(ctx, err)
}

// stopReason turns how Run ended into its error: nil for a requested stop.
func (a *Agent) stopReason(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if errors.Is(err, context.Canceled) || err == nil {
		a.log.Info("runner stopped")
		return nil
	}
	return err
}

// fatal reports whether err must stop the agent rather than be retried.
func fatal(err error) bool {
	code := silo.ErrorCode(err)
	return errors.Is(err, ErrTokenRefused) || code == silo.EUNAUTHORIZED || code == silo.ECONFLICT || errors.Is(err, context.Canceled)
}

// retry calls fn until ctx ends or fn fails for good, backing off
// exponentially with full jitter after failures (0.5 s doubling to 30 s).
// fn returning nil means "call again at once".
func (a *Agent) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	const base, maxDelay = 500 * time.Millisecond, 30 * time.Second
	failures := 0
	for {
		err := fn(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if what == "connect" || what == "heartbeat" {
				return nil
			}
			failures = 0
			continue
		}
		if silo.ErrorCode(err) == silo.EUNAUTHORIZED {
			return fmt.Errorf("%w (%s)", ErrTokenRefused, silo.ErrorMessage(err))
		}
		if fatal(err) {
			return err
		}
		failures++
		delay := min(maxDelay, base<<min(failures-1, 10))
		delay = time.Duration(rand.Int64N(int64(delay)) + 1) // #nosec G404 -- jitter
		a.log.Warn("server unreachable, retrying", "during", what, "attempt", failures, "in", delay.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

func (a *Agent) heartbeatInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hbTick
}

func (a *Agent) heartbeat(ctx context.Context) error {
	host, _ := os.Hostname()
	a.mu.Lock()
	var running []string
	for id := range a.running {
		running = append(running, id)
	}
	a.mu.Unlock()
	slices.Sort(running)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	hb := silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: silo.Version, Hostname: host,
		VCPU: a.cfg.VCPU, MemoryMB: a.cfg.MemoryMB, RunningTasks: running, Sessions: a.cfg.prlSessions()}
	if a.cfg.Policy != nil {
		hb.Policy = &a.cfg.Policy.RunnerPolicy
	}
	reply, err := a.api.Heartbeat(ctx, hb)
	if err != nil {
		return err
	}
	for _, id := range reply.EndedSessions {
		// The session ended: its secret and files go.
		if err := a.cfg.dropPRLSession(id); err != nil {
			a.log.Warn("remove the state of an ended session", "session", id, "err", err)
		} else {
			a.log.Info("removed the state of an ended session", "session", id)
		}
	}
	a.mu.Lock()
	a.name = reply.Runner
	if d, err := time.ParseDuration(reply.HeartbeatInterval); err == nil && d > 0 {
		a.hbTick = d
	}
	for _, id := range reply.CancelTasks {
		if cancel, ok := a.running[id]; ok {
			cancel()
		}
	}
	a.mu.Unlock()
	return nil
}

// pollOnce waits for one task and starts it. While every worker is busy it
// does not ask for more.
func (a *Agent) pollOnce(ctx context.Context) error {
	for a.busy() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.freed:
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.claim:
	}
	defer func() { a.claim <- struct{}{} }()
	if a.busy() { // a task came with a result meanwhile
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.PollWait+a.cfg.RequestTimeout)
	t, parts, err := a.api.PollTask(pctx, a.cfg.PollWait, a.parts.digests())
	cancel()
	if err != nil || t == nil {
		return err
	}
	a.start(ctx, t, parts)
	return nil
}

// busy reports whether all vCPUs are taken.
func (a *Agent) busy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.usedVCPU >= a.cfg.VCPU
}

// fits reserves t's resources, or says why it cannot run here.
func (a *Agent) fits(t *silo.Task) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case t.VCPU > a.cfg.VCPU:
		return fmt.Sprintf("task needs %d vCPU but this runner has %d: register a larger runner or ask for less", t.VCPU, a.cfg.VCPU)
	case t.MemoryMB > a.cfg.MemoryMB:
		return fmt.Sprintf("task needs %d MB of memory but this runner has %d MB: register a larger runner or ask for less", t.MemoryMB, a.cfg.MemoryMB)
	case a.usedMemMB+t.MemoryMB > a.cfg.MemoryMB:
		return fmt.Sprintf("task needs %d MB of memory but only %d MB of this runner's %d MB are free", t.MemoryMB, a.cfg.MemoryMB-a.usedMemMB, a.cfg.MemoryMB)
	}
	a.usedVCPU += max(t.VCPU, 1)
	a.usedMemMB += t.MemoryMB
	return ""
}

func (a *Agent) release(t *silo.Task) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.usedVCPU -= max(t.VCPU, 1)
	a.usedMemMB -= t.MemoryMB
	delete(a.running, t.ID)
	select {
	case a.freed <- struct{}{}:
	default:
	}
}

// start runs t in its own goroutine, or refuses it at once.
func (a *Agent) start(ctx context.Context, st *silo.Task, parts client.Parts) {
	t := &Task{Task: st, spills: a.cfg.spillDir()}
	exec, ok := a.tasks[t.Type]
	reason := ""
	if !ok {
		reason = fmt.Sprintf("this runner (version %s) does not know task type %q: upgrade it", silo.Version, t.Type)
	} else if reason = a.fits(st); reason == "" {
		var err error
		if t.Parts, err = a.resolveParts(ctx, st, parts); err != nil {
			a.release(st)
			reason = err.Error()
		}
	}
	if reason != "" {
		a.log.Warn("task refused", "task", t.ID, "type", t.Type, "reason", reason)
		t.cleanup()
		go a.finish(ctx, context.WithoutCancel(ctx), t, silo.TaskResult{Status: silo.TaskRefused, Error: reason}, nil, nil)
		return
	}
	tctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.running[t.ID] = cancel
	a.mu.Unlock()
	a.taskWG.Add(1)
	go func() {
		defer a.taskWG.Done()
		defer cancel()
		defer t.cleanup()
		log := newTaskLog(a.api, t.ID, a.log)
		defer log.stopProgress()
		log.Info("task started", "type", t.Type, "vcpu", t.VCPU, "memory_mb", t.MemoryMB)
		out, err := exec(tctx, t, log, &a.cfg)
		res := silo.TaskResult{Status: silo.TaskSucceeded, Output: out}
		if err != nil {
			res = silo.TaskResult{Status: silo.TaskFailed, Error: err.Error()}
			t.Out, t.OutFiles = nil, nil
			log.Error("task failed", "err", err)
		} else {
			log.Info("task succeeded")
		}
		for name, path := range t.OutFiles {
			res.Parts = append(res.Parts, silo.Part{Name: name, Path: path})
		}
		// Report even while shutting down: the result is worth a last try.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 11*time.Minute)
		defer rcancel()
		res.Log = log.take()
		a.finish(ctx, rctx, t, res, t.Out, st)
	}()
}

// resolveParts completes a task's parts: those the server did not send
// because the agent said it held them come from the cache (or, evicted
// meanwhile, from the server); new ones are cached.
func (a *Agent) resolveParts(ctx context.Context, t *silo.Task, parts client.Parts) (client.Parts, error) {
	if parts == nil {
		parts = client.Parts{}
	}
	for _, p := range t.Parts {
		if !p.Cached {
			if b, ok := parts[p.Name]; ok && silo.HasDigest(b, p.Digest) {
				a.parts.put(silo.Digest(b), b)
			}
			continue
		}
		if b, ok := a.parts.get(p.Digest); ok {
			parts[p.Name] = b
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 10*a.cfg.RequestTimeout)
		b, err := a.api.TaskPart(fctx, t.ID, p.Name)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("fetch part %s of task %s: %w", p.Name, t.ID, err)
		}
		if !silo.HasDigest(b, p.Digest) {
			return nil, fmt.Errorf("part %s of task %s changed since it was sent: the session moved on", p.Name, t.ID)
		}
		parts[p.Name] = b
		a.parts.put(silo.Digest(b), b)
	}
	return parts, nil
}

// finish reports a task's result and frees its resources. When the agent
// may ask for work (it holds the claim token and is not stopping), the
// report also asks for the next task, which starts as soon as this one's
// resources are free: a round costs one request.
func (a *Agent) finish(agentCtx, ctx context.Context, t *Task, res silo.TaskResult, out client.Parts, reserved *silo.Task) {
	claimed := false
	if agentCtx.Err() == nil {
		select {
		case <-a.claim:
			claimed = true
		default:
		}
	}
	next, parts := a.report(agentCtx, ctx, t, res, out, claimed)
	if reserved != nil {
		a.release(reserved)
	}
	if next != nil {
		a.start(agentCtx, next, parts)
	}
	if claimed {
		a.claim <- struct{}{}
	}
}

// report sends a task's result, retrying with backoff while the server is
// unreachable (a restart, a network cut): a finished round of training is
// worth keeping. The server's own refusals (the task was cancelled or
// belongs to no one) are final. With withNext the server may answer with
// the next task.
// While the agent shuts down (agentCtx done) it tries for 15 seconds only.
func (a *Agent) report(agentCtx, ctx context.Context, t *Task, res silo.TaskResult, out client.Parts, withNext bool) (*silo.Task, client.Parts) {
	const base, maxDelay, giveUp, giveUpStopping = 500 * time.Millisecond, 10 * time.Second, 10 * time.Minute, 15 * time.Second
	start := time.Now()
	for attempt := 0; ; attempt++ {
		var next *client.NextTask
		if withNext && agentCtx.Err() == nil {
			next = &client.NextTask{Wait: a.cfg.PollWait, Have: a.parts.digests(), Until: agentCtx}
		}
		actx, cancel := context.WithTimeout(ctx, 10*a.cfg.RequestTimeout+a.cfg.PollWait)
		nt, parts, err := a.api.ReportTask(actx, t.ID, res, out, next)
		cancel()
		if err == nil {
			return nt, parts
		}
		code := silo.ErrorCode(err)
		late := time.Since(start) > giveUp || (agentCtx.Err() != nil && time.Since(start) > giveUpStopping)
		if code == silo.ECONFLICT || code == silo.ENOTFOUND || code == silo.EINVALID || code == silo.EUNAUTHORIZED || ctx.Err() != nil || late {
			a.log.Warn("task result not delivered", "task", t.ID, "err", err)
			return nil, nil
		}
		delay := time.Duration(rand.Int64N(int64(min(maxDelay, base<<min(attempt, 10)))) + 1) // #nosec G404 -- jitter
		a.log.Warn("server unreachable, retrying the task result", "task", t.ID, "in", delay.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
	}
}

// waitTasks waits for running tasks to notice cancellation and report.
func (a *Agent) waitTasks() { a.taskWG.Wait() }
