package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/psi"
)

// prlRunner is a runner's config over one dataset (email and phone its
// identifier columns) and a way to run linkage tasks on it.
type prlRunner struct {
	t    *testing.T
	cfg  *Config
	root string
	log  *TaskLog
	kept silo.PrivacyControls
}

func newPRLRunner(t *testing.T) *prlRunner {
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("email,phone,spend\n")
	for i := range 40 {
		fmt.Fprintf(&b, "Person%d@Example.org,+1 555 %04d,%d\n", i, i, i%9)
	}
	if err := os.WriteFile(filepath.Join(root, "d.csv"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &prlRunner{t: t, cfg: &Config{StorageRoot: root, VCPU: 2, cache: &dataCache{}}, root: root, log: newTaskLog(nil, "t", slog.New(slog.DiscardHandler))}
	r.kept = silo.DefaultPrivacyControls()
	r.kept.IdentifierColumns = []string{"email", "phone"}
	if err := connect(r.cfg, "d", r.uri(), r.kept); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *prlRunner) uri() string { return "file://" + filepath.Join(r.root, "d.csv") }

func (r *prlRunner) payload(session string, keys ...string) silo.PRLPayload {
	// The task claims every column is an identifier; the runner knows better.
	lenient := silo.DefaultPrivacyControls()
	lenient.IdentifierColumns = []string{"email", "phone", "spend"}
	var k [][]string
	for _, key := range keys {
		k = append(k, []string{key})
	}
	return silo.PRLPayload{Session: session, Dataset: "d", URI: "file://" + filepath.Join(r.root, "d.csv"), Privacy: lenient, Parties: 2, Keys: k,
		Normalize: []string{"trim", "lowercase"},
		Schema:    []silo.ColumnType{{Name: "email", Type: "string"}, {Name: "phone", Type: "string"}, {Name: "spend", Type: "int"}}}
}

func (r *prlRunner) run(exec Executor, session string, p silo.PRLPayload, parts client.Parts) (*Task, json.RawMessage, error) {
	b, _ := json.Marshal(p)
	task := &Task{Task: &silo.Task{ID: "task_" + silo.RandomID(4), Type: "prl", Session: session, Dataset: "d", Payload: b, VCPU: 2},
		Parts: parts, spills: r.cfg.spillDir()}
	r.t.Cleanup(task.cleanup)
	out, err := exec(context.Background(), task, r.log, r.cfg)
	return task, out, err
}

// TestLinkageRunnerRefuses: whatever a task says, the runner links only on
// identifier columns of datasets that allow prl; it never lets a task of
// one session use another's scalar, never re-blinds two different inputs
// for one stage, and refuses sets of the wrong size or of values that are
// not group elements.
func TestLinkageRunnerRefuses(t *testing.T) {
	r := newPRLRunner(t)
	if _, _, err := r.run(runPRLBlind, "sess_a", r.payload("sess_a", "spend"), nil); err == nil || !strings.Contains(err.Error(), "not one of its identifier columns") {
		t.Fatalf("a non-identifier key: %v", err)
	}
	r.kept.ExcludedColumns, r.kept.IdentifierColumns = []string{"phone"}, []string{"email"}
	if err := connect(r.cfg, "d", r.uri(), r.kept); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.run(runPRLBlind, "sess_a", r.payload("sess_a", "phone"), nil); err == nil || !strings.Contains(err.Error(), "is excluded") {
		t.Fatalf("an excluded key: %v", err)
	}
	r.kept.ExcludedColumns, r.kept.IdentifierColumns, r.kept.AllowedSessionTypes = nil, []string{"email", "phone"}, []string{"hfl"}
	if err := connect(r.cfg, "d", r.uri(), r.kept); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.run(runPRLBlind, "sess_a", r.payload("sess_a", "email"), nil); err == nil || !strings.Contains(err.Error(), "does not allow prl sessions") {
		t.Fatalf("a dataset that does not allow prl: %v", err)
	}
	r.kept.AllowedSessionTypes = []string{"prl"}
	if err := connect(r.cfg, "d", r.uri(), r.kept); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.run(runPRLReblind, "sess_a", r.payload("sess_a", "email"), nil); err == nil || !strings.Contains(err.Error(), "holds no secret of session sess_a") {
		t.Fatalf("a re-blind before any blind: %v", err)
	}

	// Session A blinds.
	task, out, err := r.run(runPRLBlind, "sess_a", r.payload("sess_a", "email"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var bo silo.PRLBlindOutput
	json.Unmarshal(out, &bo)
	if bo.Rows != 40 || bo.Keys[0].Records != 40 {
		t.Fatalf("blind output %s", out)
	}
	setA, _ := os.ReadFile(task.OutFiles[silo.PRLSetPart(0)])
	if len(setA) != 40*psi.Size {
		t.Fatalf("set of %d bytes", len(setA))
	}
	stA, _ := r.cfg.loadPRL("sess_a", "d", false)

	// A task of session B naming session A in its payload is refused: a
	// second session cannot reach the first one's scalar.
	p := r.payload("sess_a", "email")
	p.Stage, p.Records = 1, []int64{1}
	probe := make([]byte, psi.Size)
	copy(probe, setA[:psi.Size])
	if _, _, err := r.run(runPRLReblind, "sess_b", p, client.Parts{silo.PRLInPart(0): probe}); err == nil || !strings.Contains(err.Error(), "payload names sess_a") {
		t.Fatalf("session B using session A's scalar: %v", err)
	}
	// Session B's own blind uses a new scalar: its values differ.
	taskB, _, err := r.run(runPRLBlind, "sess_b", r.payload("sess_b", "email"), nil)
	if err != nil {
		t.Fatal(err)
	}
	setB, _ := os.ReadFile(taskB.OutFiles[silo.PRLSetPart(0)])
	stB, _ := r.cfg.loadPRL("sess_b", "d", false)
	if stA.scalar.Fingerprint() == stB.scalar.Fingerprint() || bytes.Contains(setB, setA[:psi.Size]) {
		t.Fatal("two sessions blind with the same scalar")
	}

	// Re-blinding: the size must be what the task announces, every value a
	// group element, and one stage re-blinds one input only.
	p = r.payload("sess_a", "email")
	p.Stage, p.Records = 1, []int64{3}
	if _, _, err := r.run(runPRLReblind, "sess_a", p, client.Parts{silo.PRLInPart(0): setB[:2*psi.Size]}); err == nil || !strings.Contains(err.Error(), "not the 3 values") {
		t.Fatalf("a set of the wrong size: %v", err)
	}
	garbage := bytes.Repeat([]byte{0xff}, 3*psi.Size)
	if _, _, err := r.run(runPRLReblind, "sess_a", p, client.Parts{silo.PRLInPart(0): garbage}); err == nil || !strings.Contains(err.Error(), "not ristretto255 group elements") {
		t.Fatalf("values that are not group elements: %v", err)
	}
	if _, _, err := r.run(runPRLReblind, "sess_a", p, client.Parts{silo.PRLInPart(0): setB[:3*psi.Size]}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.run(runPRLReblind, "sess_a", p, client.Parts{silo.PRLInPart(0): setB[:3*psi.Size]}); err != nil {
		t.Fatalf("the same input again (a retried task) was refused: %v", err)
	}
	if _, _, err := r.run(runPRLReblind, "sess_a", p, client.Parts{silo.PRLInPart(0): setB[3*psi.Size : 6*psi.Size]}); err == nil || !strings.Contains(err.Error(), "already re-blinded with other sets") {
		t.Fatalf("another input for a stage already done: %v", err)
	}

	// The session's state goes when it ends.
	if got := r.cfg.prlSessions(); len(got) != 2 {
		t.Fatalf("sessions with state: %v", got)
	}
	if err := r.cfg.dropPRLSession("sess_a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.cfg.prlDir("sess_a")); !os.IsNotExist(err) {
		t.Fatalf("session A's state is still there: %v", err)
	}
	if got := r.cfg.prlSessions(); len(got) != 1 || got[0] != "sess_b" {
		t.Fatalf("sessions with state: %v", got)
	}
}

// BenchmarkPRLBlind blinds a dataset's keys as a linkage's first step does
// (go test -bench PRLBlind -cpuprofile shows where the time goes).
func BenchmarkPRLBlind(b *testing.B) {
	root := b.TempDir()
	var sb strings.Builder
	sb.WriteString("email,phone,spend\n")
	for i := range 20000 {
		fmt.Fprintf(&sb, "Person%d@Example.org,+1 555 %04d,%d\n", i, i, i%9)
	}
	os.WriteFile(filepath.Join(root, "d.csv"), []byte(sb.String()), 0o600)
	r := &prlRunner{t: &testing.T{}, cfg: &Config{StorageRoot: root, VCPU: 2, cache: &dataCache{}}, root: root, log: newTaskLog(nil, "t", slog.New(slog.DiscardHandler))}
	r.kept = silo.DefaultPrivacyControls()
	r.kept.IdentifierColumns = []string{"email", "phone"}
	connect(r.cfg, "d", r.uri(), r.kept)
	for b.Loop() {
		task, _, err := r.run(runPRLBlind, "sess_bench", r.payload("sess_bench", "email"), nil)
		if err != nil {
			b.Fatal(err)
		}
		task.cleanup()
	}
}
