package runner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/psi"
	"github.com/silofl/silo/internal/tabular"
)

// The private record linkage executors. A runner blinds its own keys with a
// secret scalar that never leaves it, re-blinds the sets of the runner
// before it in the ring, and finally writes the linkage the server found to
// its own storage. What it sends is blinded values (which no one can
// recompute from a guessed key without every runner's scalar), the tags
// that let the server tell its records apart (a secret permutation of its
// rows), and counts; never a key, a hash of one, or a row position.
//
// Its state for a session — the scalar, the seed of the tag permutation, the
// row count, and the digest of each set it re-blinded — lives in
// <state dir>/prl/<session>/<dataset>.json for the session's life, so a
// task run again after a restart blinds with the same scalar; heartbeats
// learn when the session ended and remove it.

// prlState is a runner's state for one dataset of one linkage.
type prlState struct {
	Scalar string `json:"scalar"` // hex
	Seed   string `json:"seed"`   // hex, 32 bytes: the tag permutation
	Rows   int64  `json:"rows"`   // the dataset's rows when it was blinded
	// Reblinded holds, for each re-blinding stage, the digest of the sets
	// it re-blinded: each stage re-blinds one input, however often its task
	// is sent, so the scalar is never an oracle for chosen values.
	Reblinded map[string]string `json:"reblinded,omitempty"`

	path   string
	scalar *psi.Scalar
	seed   [32]byte
}

// prlDir is where the runner keeps its linkage state for a session.
func (c *Config) prlDir(session string) string {
	return filepath.Join(c.localDir(), "prl", session)
}

// loadPRL reads the state of a dataset in a session; with create, a blind
// step's, a fresh scalar and seed are made when there is none.
func (c *Config) loadPRL(session, dataset string, create bool) (*prlState, error) {
	if c.localDir() == "" {
		return nil, errors.New("refused by the runner: record linkage keeps a secret on the runner for the session's life, and this runner has no state directory: start it with --storage-root DIR")
	}
	if !validName(session) || !validName(dataset) {
		return nil, fmt.Errorf("refused by the runner: session %q or dataset %q is not a valid name", session, dataset)
	}
	st := &prlState{path: filepath.Join(c.prlDir(session), dataset+".json")}
	b, err := os.ReadFile(st.path)
	switch {
	case errors.Is(err, os.ErrNotExist) && create:
		k, err := psi.NewScalar()
		if err != nil {
			return nil, err
		}
		if _, err := rand.Read(st.seed[:]); err != nil {
			return nil, err
		}
		st.scalar, st.Scalar, st.Seed = k, hex.EncodeToString(k.Bytes()), hex.EncodeToString(st.seed[:])
		return st, st.save()
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("refused by the runner: it holds no secret of session %s for dataset %s (its blinding step never ran here, or the session ended)", session, dataset)
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("linkage state %s: %w", st.path, err)
	}
	kb, err := hex.DecodeString(st.Scalar)
	if err == nil {
		st.scalar, err = psi.ParseScalar(kb)
	}
	if sb, serr := hex.DecodeString(st.Seed); serr != nil || len(sb) != 32 {
		err = errors.Join(err, errors.New("bad permutation seed"))
	} else {
		copy(st.seed[:], sb)
	}
	if err != nil {
		return nil, fmt.Errorf("linkage state %s: %w", st.path, err)
	}
	return st, nil
}

// save writes the state atomically, readable by the runner only.
func (st *prlState) save() error {
	if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := st.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, st.path)
}

// prlSessions lists the sessions the runner keeps linkage state for.
func (c *Config) prlSessions() []string {
	if c.localDir() == "" {
		return nil
	}
	entries, _ := os.ReadDir(filepath.Join(c.localDir(), "prl"))
	var out []string
	for _, e := range entries {
		if e.IsDir() && validName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// dropPRLSession removes a session's linkage state: it ended.
func (c *Config) dropPRLSession(session string) error {
	if c.localDir() == "" || !validName(session) {
		return nil
	}
	return os.RemoveAll(c.prlDir(session))
}

// validName accepts dataset names as file names: no path tricks.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return s[0] != '.'
}

// checkLinkage is the runner's own check of a linkage task, whatever the
// server asked: the controls that bind the dataset's data (see guard.go)
// must allow prl sessions, and every key column must be one of its
// identifier columns — as its custodian connected it or the runner's policy
// says, never because the task's own controls say so — and not excluded:
// identifiers serve record linkage only, and only identifiers may.
func (c *Config) checkLinkage(ctx context.Context, t *Task, p *silo.PRLPayload) error {
	if p.Session != t.Session || p.Dataset != t.Dataset {
		return fmt.Errorf("refused by the runner: the task is for session %s, dataset %s, but its payload names %s, %s", t.Session, t.Dataset, p.Session, p.Dataset)
	}
	b, err := c.checkUse(ctx, p.Dataset, p.URI, p.Privacy, silo.SessionPRL)
	if err != nil {
		return err
	}
	ids, err := c.trustedIdentifiers(ctx, b)
	if err != nil {
		return err
	}
	if len(p.Keys) == 0 {
		return fmt.Errorf("refused by the runner: the linkage names no key columns of dataset %s", p.Dataset)
	}
	for _, key := range p.Keys {
		if len(key) == 0 {
			return fmt.Errorf("refused by the runner: a key of the linkage names no column of dataset %s", p.Dataset)
		}
		for _, col := range key {
			if slices.Contains(b.eff.Controls.ExcludedColumns, col) {
				return b.refused("excluded_columns", "column %s of dataset %s is excluded and is never read", col, p.Dataset)
			}
			if !slices.Contains(ids, col) {
				return fmt.Errorf("refused by the runner: column %s of dataset %s is not one of its identifier columns (%s): only identifier columns may be linkage keys", col, p.Dataset, strings.Join(ids, ", "))
			}
		}
	}
	if p.Parties < 2 {
		return fmt.Errorf("refused by the runner: a linkage needs two or more parties, not %d", p.Parties)
	}
	return nil
}

// trustedIdentifiers are the identifier columns of a bound dataset that do
// not come from the task: those it was connected with on this runner, and
// those of the runner's policy rules for its location.
func (c *Config) trustedIdentifiers(ctx context.Context, b *binding) ([]string, error) {
	var ids []string
	state, err := c.state(ctx)
	if err != nil {
		return nil, err
	}
	err = state.update(ctx, func(st *stateSnapshot) error {
		ids = nil
		if ls := st.locations[b.location]; ls != nil && ls.Datasets[b.dataset] != nil {
			ids = append(ids, ls.Datasets[b.dataset].Controls.IdentifierColumns...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rules, err := c.Policy.sources(b.location)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		ids = append(ids, r.Controls.IdentifierColumns...)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// prlTask reads and checks a linkage task's payload and the runner's state.
func (c *Config) prlTask(ctx context.Context, t *Task, create bool) (*silo.PRLPayload, *prlState, error) {
	var p silo.PRLPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, nil, fmt.Errorf("%s task payload: %w", t.Type, err)
	}
	if err := c.checkLinkage(ctx, t, &p); err != nil {
		return nil, nil, err
	}
	st, err := c.loadPRL(p.Session, p.Dataset, create)
	return &p, st, err
}

// workers is how many goroutines a task's group operations use: the vCPUs
// it reserved, at most the runner's.
func workers(t *Task, cfg *Config) int {
	return max(1, min(t.VCPU, cfg.VCPU))
}

// keyValue is a cell of a key column as text: numbers in their shortest
// exact form, so 42 in one dataset matches "42" in another.
func keyValue(c *column, ints []int64, typ string, i int) (string, bool) {
	if c.null[i] {
		return "", false
	}
	switch typ {
	case string(tabular.String):
		return c.str[i], true
	case string(tabular.Int):
		return strconv.FormatInt(ints[i], 10), true
	case string(tabular.Bool):
		return strconv.FormatBool(c.num[i] != 0), true
	}
	return strconv.FormatFloat(c.num[i], 'f', -1, 64), true
}

// runPRLBlind hashes each row's keys to the group with the session's domain
// separator and blinds them with the runner's secret scalar, drops repeated
// keys (the first row keeps its key), and sends each key's set sorted by
// blinded value — an order set by the secret, which says nothing of the
// rows — with its tags.
func runPRLBlind(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	p, st, err := cfg.prlTask(ctx, t, true)
	if err != nil {
		return nil, err
	}
	types := map[string]string{}
	for _, c := range p.Schema {
		types[c.Name] = c.Type
	}
	var columns []string
	for _, key := range p.Keys {
		for _, col := range key {
			if _, ok := types[col]; !ok {
				return nil, fmt.Errorf("dataset %s has no column %s: check id_columns (or keys) against 'silo datasets show %s'", p.Dataset, col, p.Dataset)
			}
			if !slices.Contains(columns, col) {
				columns = append(columns, col)
			}
		}
	}
	dir, err := t.Dir()
	if err != nil {
		return nil, err
	}
	norm := psi.NewNormalizer(p.Normalize)
	hashers := make([]*psi.Hasher, len(p.Keys))
	sorters := make([]*psi.Sorter, len(p.Keys))
	out := silo.PRLBlindOutput{Keys: make([]silo.PRLKeyCounts, len(p.Keys))}
	for q := range p.Keys {
		hashers[q] = psi.NewHasher(fmt.Sprintf("%s:%d", p.Session, q))
		sorters[q] = psi.NewSorter(dir, 0)
		defer sorters[q].Close()
	}
	nw := workers(t, cfg)
	// Each batch's keys are encoded by the reader, then hashed and blinded
	// by nw workers, each a contiguous share of the batch.
	type job struct {
		key   []byte
		row   uint32
		which int
	}
	var jobs []job
	results := make([]psi.Pair, 0, 4096)
	inputs, err := openDataset(ctx, cfg, p.URI)
	if err != nil {
		return nil, userError(err)
	}
	var rows int64
	var cols []column
	var buf []byte
	nullRows := int64(0)
	err = tabular.ReadBatches(ctx, inputs, schemaOf(p.Schema), columns, 4096, func(b *tabular.Batch) error {
		if rows+int64(b.Len) > 1<<32-1 {
			return fmt.Errorf("dataset %s has more than %d rows: too many to link", p.Dataset, uint32(1<<32-1))
		}
		cols = columnsOf(b, columns, cols)
		jobs = jobs[:0]
		buf = buf[:0]
		for i := range b.Len {
			usable := false
			for q, key := range p.Keys {
				start := len(buf)
				ok := true
				for _, col := range key {
					k := slices.Index(columns, col)
					v, present := keyValue(&cols[k], b.Int[col], types[col], i)
					if present {
						v = norm.Apply(v)
					}
					if !present || psi.Empty(v) {
						ok = false
						break
					}
					buf = psi.AppendKey(buf, v)
				}
				if !ok {
					buf = buf[:start]
					out.Keys[q].Nulls++
					continue
				}
				usable = true
				jobs = append(jobs, job{key: buf[start:len(buf):len(buf)], row: uint32(rows) + uint32(i), which: q}) // #nosec G115 -- rows < 2^32, checked above
			}
			if !usable {
				nullRows++
			}
		}
		results = slices.Grow(results[:0], len(jobs))[:len(jobs)]
		var wg sync.WaitGroup
		share := (len(jobs) + nw - 1) / nw
		for w := 0; w*share < len(jobs); w++ {
			lo, hi := w*share, min(len(jobs), (w+1)*share)
			wg.Go(func() {
				for j := lo; j < hi; j++ {
					results[j] = psi.Pair{Value: hashers[jobs[j].which].Blind(st.scalar, jobs[j].key), Index: jobs[j].row}
				}
			})
		}
		wg.Wait()
		for j := range jobs {
			if err := sorters[jobs[j].which].Add(results[j]); err != nil {
				return err
			}
		}
		rows += int64(b.Len)
		log.Progress(rows, max(rows, p.Rows), "records blinded")
		return ctx.Err()
	})
	if err != nil {
		return nil, userError(err)
	}
	if st.Rows != 0 && st.Rows != rows {
		return nil, fmt.Errorf("dataset %s has %d rows now, %d when this linkage began: its data changed; create the session again", p.Dataset, rows, st.Rows)
	}
	st.Rows = rows
	if err := st.save(); err != nil {
		return nil, err
	}
	out.Rows, out.NullRows = rows, nullRows
	perm := permutation(st.seed, rows)
	t.OutFiles = map[string]string{}
	for q, s := range sorters {
		setPath, tagPath := filepath.Join(dir, fmt.Sprintf("set-%d.bin", q)), filepath.Join(dir, fmt.Sprintf("tags-%d.bin", q))
		n, dups, err := writeSet(s, setPath, tagPath, perm)
		if err != nil {
			return nil, err
		}
		out.Keys[q].Records, out.Keys[q].Duplicates = n, dups
		t.OutFiles[silo.PRLSetPart(q)], t.OutFiles[silo.PRLTagsPart(q)] = setPath, tagPath
		log.Info("key blinded", "key", q+1, "records", n, "null_or_empty", out.Keys[q].Nulls, "duplicates_dropped", dups)
	}
	log.Info("blinded", "dataset", p.Dataset, "rows", rows, "rows_without_any_key", nullRows)
	return json.Marshal(out)
}

// writeSet writes a key's sorted blinded values (set) and their records'
// tags, keeping the first row of each repeated value.
func writeSet(s *psi.Sorter, setPath, tagPath string, perm []uint32) (n, dups int64, err error) {
	sf, err := os.Create(setPath) // #nosec G304 -- in the task's scratch directory
	if err != nil {
		return 0, 0, err
	}
	defer sf.Close()
	tf, err := os.Create(tagPath) // #nosec G304 -- in the task's scratch directory
	if err != nil {
		return 0, 0, err
	}
	defer tf.Close()
	sw, tw := bufio.NewWriterSize(sf, 1<<20), bufio.NewWriterSize(tf, 1<<18)
	var last psi.Element
	first := true
	var tag [4]byte
	err = s.Each(func(p *psi.Pair) error {
		if !first && p.Value == last {
			dups++
			return nil
		}
		first, last = false, p.Value
		n++
		binary.BigEndian.PutUint32(tag[:], perm[p.Index])
		if _, err := sw.Write(p.Value[:]); err != nil {
			return err
		}
		_, err := tw.Write(tag[:])
		return err
	})
	if err == nil {
		err = errors.Join(sw.Flush(), tw.Flush(), sf.Close(), tf.Close())
	}
	return n, dups, err
}

// permutation is the secret permutation of a dataset's rows that gives each
// record its tag: Fisher–Yates driven by ChaCha8 from the state's seed, so
// the link step can invert it without having kept it.
func permutation(seed [32]byte, rows int64) []uint32 {
	r := mrand.NewChaCha8(seed)
	perm := make([]uint32, rows)
	for i := range perm {
		perm[i] = uint32(i) // #nosec G115 -- rows < 2^32
	}
	for i := len(perm) - 1; i > 0; i-- {
		// Lemire's bounded draw, written out so the permutation never
		// depends on a library's choice of method.
		bound := uint64(i + 1)
		hi, lo := mulUint64(r.Uint64(), bound)
		if lo < bound {
			thresh := -bound % bound
			for lo < thresh {
				hi, lo = mulUint64(r.Uint64(), bound)
			}
		}
		perm[i], perm[hi] = perm[hi], perm[i]
	}
	return perm
}

func mulUint64(x, y uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	x0, x1 := x&mask32, x>>32
	y0, y1 := y&mask32, y>>32
	w0 := x0 * y0
	t := x1*y0 + w0>>32
	w1, w2 := t&mask32, t>>32
	w1 += x0 * y1
	return x1*y1 + w2 + w1>>32, x * y
}

// partReader opens a task part whether it arrived in memory or as a file.
func partReader(t *Task, name string) (io.ReadCloser, int64, error) {
	if path, size, ok := t.PartFile(name); ok {
		f, err := os.Open(path) // #nosec G304 -- a part file the agent wrote
		return f, size, err
	}
	b, ok := t.Parts[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s task %s came without its %s part", t.Type, t.ID, name)
	}
	return io.NopCloser(bytesReader(b)), int64(len(b)), nil
}

// runPRLReblind multiplies every value of the sets the previous runner in
// the ring sent by this runner's scalar, keeping their order; the last
// stage sends each set sorted by its fully blinded values, with each
// value's position, for the server to compare. Values that are not group
// elements are refused, and each stage re-blinds one input only.
func runPRLReblind(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	p, st, err := cfg.prlTask(ctx, t, false)
	if err != nil {
		return nil, err
	}
	if p.Stage < 1 || p.Stage >= p.Parties || len(p.Records) != len(p.Keys) {
		return nil, fmt.Errorf("refused by the runner: re-blinding stage %d of %d parties with %d set sizes for %d keys makes no sense", p.Stage, p.Parties, len(p.Records), len(p.Keys))
	}
	last := p.Stage == p.Parties-1
	dir, err := t.Dir()
	if err != nil {
		return nil, err
	}
	var total int64
	for _, n := range p.Records {
		total += n
	}
	nw := workers(t, cfg)
	digest := sha256.New()
	t.OutFiles = map[string]string{}
	var done int64
	for q := range p.Keys {
		in, size, err := partReader(t, silo.PRLInPart(q))
		if err != nil {
			return nil, err
		}
		defer in.Close()
		if size != p.Records[q]*psi.Size {
			return nil, fmt.Errorf("refused by the runner: the set of key %d holds %d bytes, not the %d values of %d bytes announced", q+1, size, p.Records[q], psi.Size)
		}
		name, path := silo.PRLSetPart(q), filepath.Join(dir, fmt.Sprintf("set-%d.bin", q))
		if last {
			name, path = silo.PRLFinalPart(q), filepath.Join(dir, fmt.Sprintf("final-%d.bin", q))
		}
		f, err := os.Create(path) // #nosec G304 -- in the task's scratch directory
		if err != nil {
			return nil, err
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		var sorter *psi.Sorter
		if last {
			sorter = psi.NewSorter(dir, 0)
			defer sorter.Close()
		}
		const chunk = 16384
		vals := make([]psi.Element, chunk)
		outs := make([]psi.Element, chunk)
		r := bufio.NewReaderSize(io.TeeReader(in, digest), 1<<20)
		var pos int64
		for pos < p.Records[q] {
			n := int(min(chunk, p.Records[q]-pos))
			for i := range n {
				if _, err := io.ReadFull(r, vals[i][:]); err != nil {
					return nil, fmt.Errorf("reading the set of key %d: %w", q+1, err)
				}
			}
			var bad sync.Map
			var wg sync.WaitGroup
			share := (n + nw - 1) / nw
			for k := 0; k*share < n; k++ {
				lo, hi := k*share, min(n, (k+1)*share)
				wg.Go(func() {
					for i := lo; i < hi; i++ {
						v, err := psi.Reblind(st.scalar, &vals[i])
						if err != nil {
							bad.Store(i, true)
						}
						outs[i] = v
					}
				})
			}
			wg.Wait()
			nbad := 0
			bad.Range(func(any, any) bool { nbad++; return true })
			if nbad > 0 {
				return nil, fmt.Errorf("refused by the runner: the set of key %d from the previous runner holds values that are not ristretto255 group elements (%d in one block): it was not blinded honestly", q+1, nbad)
			}
			for i := range n {
				if last {
					if err := sorter.Add(psi.Pair{Value: outs[i], Index: uint32(pos) + uint32(i)}); err != nil { // #nosec G115 -- sets hold < 2^32 values
						return nil, err
					}
				} else if _, err := w.Write(outs[i][:]); err != nil {
					return nil, err
				}
			}
			pos += int64(n)
			done += int64(n)
			log.Progress(done, total, "records blinded")
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if last {
			var rec [psi.PairSize]byte
			err := sorter.Each(func(pr *psi.Pair) error {
				pr.Put(rec[:])
				_, err := w.Write(rec[:])
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		if err := errors.Join(w.Flush(), f.Close()); err != nil {
			return nil, err
		}
		t.OutFiles[name] = path
	}
	// One input per stage: a different set sent for a stage already done
	// would make the scalar an oracle for chosen values.
	sum := hex.EncodeToString(digest.Sum(nil))
	stage := strconv.Itoa(p.Stage)
	if prev, ok := st.Reblinded[stage]; ok && prev != sum {
		t.OutFiles = nil
		return nil, fmt.Errorf("refused by the runner: stage %d of session %s was already re-blinded with other sets; it re-blinds one input only", p.Stage, p.Session)
	}
	if st.Reblinded == nil {
		st.Reblinded = map[string]string{}
	}
	st.Reblinded[stage] = sum
	if err := st.save(); err != nil {
		return nil, err
	}
	log.Info("re-blinded", "stage", p.Stage, "of", p.Parties-1, "records", total)
	return json.Marshal(map[string]any{"records": p.Records})
}

// runPRLLink turns the tags of the linked records, in the common order,
// back into the dataset's row positions and writes them to the runner's
// own storage as the session's linkage. Only the count and the path go
// back.
func runPRLLink(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	p, st, err := cfg.prlTask(ctx, t, false)
	if err != nil {
		return nil, err
	}
	if len(p.Records) != 1 {
		return nil, errors.New("refused by the runner: a link task announces the size of its one part")
	}
	in, size, err := partReader(t, silo.PRLLinksPart)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	n := p.Records[0]
	if size != n*4 || n > st.Rows {
		return nil, fmt.Errorf("refused by the runner: the linkage part holds %d bytes for %d records of a dataset of %d rows", size, n, st.Rows)
	}
	perm := permutation(st.seed, st.Rows)
	inverse := make([]uint32, len(perm))
	for row, tag := range perm {
		inverse[tag] = uint32(row) // #nosec G115 -- rows < 2^32
	}
	perm = nil
	rows := make([]int64, n)
	seen := make([]bool, st.Rows)
	r := bufio.NewReaderSize(in, 1<<20)
	var tag [4]byte
	for i := range rows {
		if _, err := io.ReadFull(r, tag[:]); err != nil {
			return nil, fmt.Errorf("reading the linkage: %w", err)
		}
		v := int64(binary.BigEndian.Uint32(tag[:]))
		if v >= st.Rows || seen[inverse[v]] {
			return nil, fmt.Errorf("refused by the runner: the linkage names a record twice or one this dataset does not have")
		}
		seen[inverse[v]] = true
		rows[i] = int64(inverse[v])
		if i%65536 == 0 {
			log.Progress(int64(i), n, "records linked")
		}
	}
	path, err := cfg.writeLinkage(ctx, &Linkage{Session: p.Session, Dataset: p.Dataset, URI: p.URI, DatasetRows: st.Rows, Keys: p.Keys, Normalize: p.Normalize, Rows: rows})
	if err != nil {
		return nil, err
	}
	log.Info("linkage written", "dataset", p.Dataset, "linked", n, "path", path)
	return json.Marshal(silo.PRLLinkOutput{Linked: n, Path: path})
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
