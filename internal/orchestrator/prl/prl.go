// Package prl is the private record linkage session kind: it finds the
// records two or more datasets share, keyed by identifier columns, without
// any party — the server included — learning an identifier it did not hold.
//
// The protocol is Diffie–Hellman private set intersection in ristretto255
// (internal/psi), as a ring of ordinary steps. With n datasets:
//
//   - prl_blind (round 1): each runner hashes its normalised keys to the
//     group with the session's domain separator, blinds them with a secret
//     scalar that never leaves it, drops repeated keys, and sends each
//     key's set sorted by blinded value (an order its secret sets), with a
//     tag per record (a secret permutation of its rows) for the server.
//   - prl_reblind, stage s = 1 … n-1 (round s+1): runner j re-blinds the
//     set runner j-1 sent at the previous step, keeping its order; after
//     n-1 stages every set is blinded by every runner, and the last stage
//     sends each set sorted by its fully blinded values with their
//     positions.
//   - The server compares the n fully blinded sets of each key in one
//     streaming pass: values present in all of them are linked records,
//     ordered by value — the common order. Alternative keys are compared in
//     turn; a record linked by an earlier key is not linked again. It
//     checks the count against every dataset's min_records_per_aggregate.
//   - prl_link (round n+1): each runner gets the tags of its linked records
//     in the common order, turns them into row positions with its secret
//     permutation and writes the linkage to its own storage.
//
// The server learns set sizes, the overlap and (from the tags) which of a
// dataset's pseudonymous records took part in each key; never a key or a
// row. Blobs: each step's result parts, kept for the next step
// ("task/<id>/set/<q>", ".../tags/<q>", ".../final/<q>") and dropped once
// used; "links/<dataset>" for the link step.
package prl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/psi"
	"github.com/silofl/silo/internal/sqlstore"
)

// Kind is the prl session kind.
type Kind struct{}

// state is what the kind keeps between steps.
type state struct {
	// Stage is the last re-blinding stage completed (0: only blinded).
	Stage   int                     `json:"stage"`
	Clients map[string]*clientState `json:"clients"`
	// Linked is the number of linked records, once compared.
	Linked   int64 `json:"linked"`
	Compared bool  `json:"compared"`
	Done     bool  `json:"done"`
}

// clientState is what the kind knows of one dataset.
type clientState struct {
	Rows int64               `json:"rows"`
	Keys []silo.PRLKeyCounts `json:"keys"`
	// NullRows counts rows with no usable key at all.
	NullRows int64 `json:"null_rows"`
	// BlindTask is the task whose result holds the dataset's tags; Last,
	// the task whose result holds the set the client sent last.
	BlindTask string `json:"blind_task"`
	Last      string `json:"last"`
	Path      string `json:"path,omitempty"`
}

func load(s *orchestrator.Session) (*state, error) {
	st := &state{}
	if err := s.DecodeState(st); err != nil {
		return nil, err
	}
	if st.Clients == nil {
		st.Clients = map[string]*clientState{}
	}
	return st, nil
}

func (st *state) marshal() []byte {
	b, _ := json.Marshal(st) // plain data: never fails
	return b
}

func linksBlob(dataset string) string { return "links/" + dataset }

// Prepare checks the keys against every dataset: each column exists and is
// one of the dataset's identifier columns (identifiers serve linkage only,
// and only identifiers are linkage keys), and no two datasets share a
// runner (it would hold both sides' secrets).
func (Kind) Prepare(ctx context.Context, cfg *silo.SessionConfig, datasets []*silo.Dataset) error {
	runners := map[string]string{}
	for _, d := range datasets {
		if other, ok := runners[d.Runner]; ok {
			return silo.FieldErrorf("datasets", "datasets %s and %s are on the same runner (%s): a linkage needs each dataset on its own runner, which keeps its own secret", other, d.Name, d.Runner)
		}
		runners[d.Runner] = d.Name
	}
	field := "id_columns"
	for i, key := range cfg.LinkageKeys() {
		if cfg.Keys != nil {
			field = fmt.Sprintf("keys[%d]", i)
		}
		for _, d := range datasets {
			for _, col := range key[d.Name] {
				i := slices.IndexFunc(d.Columns, func(c silo.Column) bool { return c.Name == col })
				switch {
				case i < 0:
					return silo.FieldErrorf(field, "dataset %s has no column %s (its columns: %s)", d.Name, col, columnNames(d))
				case d.Columns[i].Excluded || slices.Contains(d.Privacy.ExcludedColumns, col):
					return silo.FieldErrorf(field, "column %s of dataset %s is excluded by its custodian and is never read", col, d.Name)
				case !slices.Contains(d.Privacy.IdentifierColumns, col):
					return silo.FieldErrorf(field, "column %s of dataset %s is not an identifier column: only identifier columns may be linkage keys (its identifier columns: %s); its custodian can mark it one", col, d.Name, strings.Join(d.Privacy.IdentifierColumns, ", "))
				}
			}
		}
	}
	return nil
}

func columnNames(d *silo.Dataset) string {
	var names []string
	for _, c := range d.Columns {
		if !c.Excluded {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// Start blinds every dataset's keys.
func (Kind) Start(ctx context.Context, s *orchestrator.Session) (*orchestrator.Outcome, error) {
	return &orchestrator.Outcome{State: (&state{}).marshal(), Next: blindStep()}, nil
}

func blindStep() *orchestrator.Step {
	return &orchestrator.Step{Name: silo.TaskPRLBlind, Round: 1, Reason: "linking: each runner blinds its keys"}
}

func reblindStep(stage, parties int) *orchestrator.Step {
	return &orchestrator.Step{Name: silo.TaskPRLReblind, Round: stage + 1,
		Reason: fmt.Sprintf("linking: runners re-blind each other's sets (%d of %d)", stage, parties-1)}
}

func linkStep(parties int) *orchestrator.Step {
	return &orchestrator.Step{Name: silo.TaskPRLLink, Round: parties + 1, Reason: "linking: runners write their linkage"}
}

// index is a client's place in the ring.
func index(s *orchestrator.Session, dataset string) int {
	return slices.IndexFunc(s.Clients, func(c *orchestrator.Client) bool { return c.Dataset == dataset })
}

// payload is what every task of a client carries.
func payload(s *orchestrator.Session, c *orchestrator.Client) silo.PRLPayload {
	var schema []silo.ColumnType
	for _, col := range c.Data.Columns {
		if !col.Excluded {
			schema = append(schema, silo.ColumnType{Name: col.Name, Type: col.Type})
		}
	}
	var keys [][]string
	for _, k := range s.Config.LinkageKeys() {
		keys = append(keys, k[c.Dataset])
	}
	return silo.PRLPayload{Session: s.ID, Dataset: c.Dataset, URI: c.Data.URI, Schema: schema, Privacy: c.Data.Privacy, Keys: keys,
		Normalize: s.Config.Normalize, Parties: len(s.Clients), Rows: c.Data.RowCount}
}

// resources are what a linkage task asks of its runner: every vCPU it has
// (the group operations are the work), and memory for a sort buffer per
// key and the tag permutation.
func resources(c *orchestrator.Client, keys int, rows int64) (vcpu, memMB int) {
	vcpu = max(1, c.RunnerVCPU)
	memMB = 128 + 80*keys + int(8*rows>>20)
	if c.RunnerMemoryMB > 0 {
		memMB = min(memMB, c.RunnerMemoryMB)
	}
	return vcpu, memMB
}

// Configure sends each step's task: the client's keys to blind; the set of
// the client before it in the ring to re-blind; or its linked records.
func (Kind) Configure(s *orchestrator.Session, step orchestrator.Step, c *orchestrator.Client) (*orchestrator.Task, error) {
	st, err := load(s)
	if err != nil {
		return nil, err
	}
	p := payload(s, c)
	nkeys := len(p.Keys)
	switch step.Name {
	case silo.TaskPRLBlind:
		vcpu, mem := resources(c, nkeys, c.Data.RowCount)
		// The data may have grown since it was connected: room for twice
		// its rows.
		bound := int64(nkeys)*(2*c.Data.RowCount+4096)*(psi.Size+4) + 1<<20
		return &orchestrator.Task{Payload: p, VCPU: vcpu, MemoryMB: mem, MaxResult: bound}, nil
	case silo.TaskPRLReblind:
		stage := step.Round - 1
		n := len(s.Clients)
		from := s.Clients[(index(s, c.Dataset)+n-1)%n]
		origin := s.Clients[(index(s, c.Dataset)+n-stage)%n]
		fs, og := st.Clients[from.Dataset], st.Clients[origin.Dataset]
		if fs == nil || og == nil {
			return nil, fmt.Errorf("prl session %s: no set from %s to re-blind", s.ID, from.Dataset)
		}
		p.Stage = stage
		size := int64(psi.Size)
		if stage == n-1 {
			size = psi.PairSize
		}
		var bound int64 = 1 << 20
		for q := range nkeys {
			p.Records = append(p.Records, og.Keys[q].Records)
			bound += og.Keys[q].Records * size
		}
		inputs := make([]silo.PartBlob, nkeys)
		for q := range nkeys {
			inputs[q] = silo.PartBlob{Part: silo.PRLInPart(q), Blob: sqlstore.ResultBlob(fs.Last, silo.PRLSetPart(q))}
		}
		vcpu, mem := resources(c, nkeys, 0)
		return &orchestrator.Task{Payload: p, Inputs: inputs, VCPU: vcpu, MemoryMB: mem, MaxResult: bound}, nil
	case silo.TaskPRLLink:
		cs := st.Clients[c.Dataset]
		if cs == nil {
			return nil, fmt.Errorf("prl session %s: no linkage for %s", s.ID, c.Dataset)
		}
		p.Records = []int64{st.Linked}
		_, mem := resources(c, 0, 2*cs.Rows)
		return &orchestrator.Task{Payload: p, Inputs: []silo.PartBlob{{Part: silo.PRLLinksPart, Blob: linksBlob(c.Dataset)}}, VCPU: 1, MemoryMB: mem,
			MaxResult: 1 << 20}, nil
	}
	return nil, fmt.Errorf("prl has no step %q", step.Name)
}

// Aggregate checks a step's answers and moves the ring on; after the last
// re-blinding it compares the sets.
func (k Kind) Aggregate(ctx context.Context, s *orchestrator.Session, step orchestrator.Step, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	st, err := load(s)
	if err != nil {
		return nil, err
	}
	for _, r := range results {
		if !r.OK() {
			// Every dataset takes part: the driver closes a step only with
			// every answer, so this is a late or failed one.
			return nil, silo.Errorf(silo.ECONFLICT, "%s: dataset %s did not answer: %s", step.Name, r.Client.Dataset, cmpOr(r.Task.Error, r.Task.Status))
		}
	}
	switch step.Name {
	case silo.TaskPRLBlind:
		return k.finishBlind(ctx, s, st, results)
	case silo.TaskPRLReblind:
		return k.finishReblind(ctx, s, st, step, results)
	case silo.TaskPRLLink:
		return k.finishLink(s, st, results)
	}
	return nil, fmt.Errorf("prl has no step %q", step.Name)
}

// refused is the error of an answer that does not add up: a runner sent a
// set of the wrong size, or counts that contradict each other. Every
// dataset is needed, so the session fails, naming it.
func refused(ds, format string, args ...any) error {
	return silo.Errorf(silo.ECONFLICT, "dataset %s's runner sent %s: refused", ds, fmt.Sprintf(format, args...))
}

// checkPart checks a part's size.
func checkPart(ctx context.Context, r *orchestrator.Result, part string, want int64) error {
	info, err := r.PartInfo(ctx, part)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return refused(r.Client.Dataset, "no %s part", part)
	} else if err != nil {
		return err
	}
	if info.Size != want {
		return refused(r.Client.Dataset, "a %s part of %d bytes where its counts make %d", part, info.Size, want)
	}
	return nil
}

func (Kind) finishBlind(ctx context.Context, s *orchestrator.Session, st *state, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	nkeys := len(s.Config.LinkageKeys())
	for _, r := range results {
		ds := r.Client.Dataset
		var out silo.PRLBlindOutput
		if err := json.Unmarshal(r.Task.Output, &out); err != nil || len(out.Keys) != nkeys || out.Rows < 0 || out.Rows >= 1<<32 {
			return nil, refused(ds, "counts that are not those of %d keys", nkeys)
		}
		for q, kc := range out.Keys {
			if kc.Records < 0 || kc.Nulls < 0 || kc.Duplicates < 0 || kc.Records+kc.Nulls+kc.Duplicates != out.Rows {
				return nil, refused(ds, "counts of key %d that do not add up to its %d rows", q+1, out.Rows)
			}
			if err := checkPart(ctx, r, silo.PRLSetPart(q), kc.Records*psi.Size); err != nil {
				return nil, err
			}
			if err := checkPart(ctx, r, silo.PRLTagsPart(q), kc.Records*4); err != nil {
				return nil, err
			}
		}
		if out.NullRows < 0 || out.NullRows > out.Rows {
			return nil, refused(ds, "a count of rows without keys beyond its %d rows", out.Rows)
		}
		st.Clients[ds] = &clientState{Rows: out.Rows, Keys: out.Keys, NullRows: out.NullRows, BlindTask: r.Task.ID, Last: r.Task.ID}
	}
	for _, c := range s.Clients {
		cs := st.Clients[c.Dataset]
		for q, kc := range cs.Keys {
			if kc.Records == 0 {
				return nil, silo.Errorf(silo.ECONFLICT, "dataset %s has no usable value of key %d (%d rows: %d null or empty, %d repeated): nothing to link", c.Dataset, q+1, cs.Rows, kc.Nulls, kc.Duplicates)
			}
		}
	}
	return &orchestrator.Outcome{State: st.marshal(), Next: reblindStep(1, len(s.Clients)), KeepResults: true}, nil
}

func (k Kind) finishReblind(ctx context.Context, s *orchestrator.Session, st *state, step orchestrator.Step, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	n := len(s.Clients)
	stage := step.Round - 1
	last := stage == n-1
	nkeys := len(s.Config.LinkageKeys())
	o := &orchestrator.Outcome{KeepResults: true}
	byDataset := map[string]*orchestrator.Result{}
	for _, r := range results {
		byDataset[r.Client.Dataset] = r
		j := index(s, r.Client.Dataset)
		origin := st.Clients[s.Clients[(j+n-stage)%n].Dataset]
		for q := range nkeys {
			part, size := silo.PRLSetPart(q), int64(psi.Size)
			if last {
				part, size = silo.PRLFinalPart(q), psi.PairSize
			}
			if err := checkPart(ctx, r, part, origin.Keys[q].Records*size); err != nil {
				return nil, err
			}
		}
	}
	// The sets this stage re-blinded are used; the blind step's tags stay
	// for the comparison.
	for _, c := range s.Clients {
		cs := st.Clients[c.Dataset]
		if cs.Last == cs.BlindTask {
			o.DropBlobs = append(o.DropBlobs, sqlstore.ResultBlob(cs.Last, "set/*"))
		} else {
			o.DropBlobs = append(o.DropBlobs, sqlstore.ResultBlob(cs.Last, "*"))
		}
		cs.Last = byDataset[c.Dataset].Task.ID
	}
	st.Stage = stage
	if !last {
		o.State, o.Next = st.marshal(), reblindStep(stage+1, n)
		return o, nil
	}
	links, err := compare(ctx, s, st, byDataset)
	if err != nil {
		return nil, err
	}
	need, strictest := 1, ""
	for _, c := range s.Clients {
		if m := c.Data.Privacy.MinRecordsPerAggregate; m > need {
			need, strictest = m, c.Dataset
		}
	}
	if st.Linked < int64(need) {
		if strictest == "" {
			return nil, silo.Errorf(silo.ECONFLICT, "the datasets have no record in common: no linkage was kept")
		}
		return nil, silo.Errorf(silo.ECONFLICT, "the datasets have fewer records in common than dataset %s's min_records_per_aggregate (%d): no linkage was kept", strictest, need)
	}
	st.Compared = true
	o.PutBlobs = map[string][]byte{}
	for _, c := range s.Clients {
		o.PutBlobs[linksBlob(c.Dataset)] = links[c.Dataset]
		cs := st.Clients[c.Dataset]
		o.DropBlobs = append(o.DropBlobs, sqlstore.ResultBlob(cs.BlindTask, "*"))
	}
	o.KeepResults = false
	o.State, o.Next = st.marshal(), linkStep(n)
	return o, nil
}

// compare finds the records every set holds, key by key, in one streaming
// pass over the fully blinded sets; it returns each dataset's linked tags
// in the common order.
func compare(ctx context.Context, s *orchestrator.Session, st *state, last map[string]*orchestrator.Result) (map[string][]byte, error) {
	n := len(s.Clients)
	used := make([][]bool, n)
	links := make([][]byte, n)
	for i, c := range s.Clients {
		used[i] = make([]bool, st.Clients[c.Dataset].Rows)
	}
	st.Linked = 0
	for q := range s.Config.LinkageKeys() {
		sets := make([]*psi.PairReader, n)
		tags := make([][]byte, n)
		for i, c := range s.Clients {
			cs := st.Clients[c.Dataset]
			b, err := s.Blob(ctx, sqlstore.ResultBlob(cs.BlindTask, silo.PRLTagsPart(q)))
			if err != nil {
				return nil, err
			}
			tags[i] = b
			// Set i was blinded last by the runner before it in the ring.
			prev := s.Clients[(i+n-1)%n].Dataset
			rc := last[prev].OpenPart(ctx, silo.PRLFinalPart(q))
			defer rc.Close()
			sets[i] = psi.NewPairReader(rc, cs.Keys[q].Records)
		}
		row := make([]uint32, n)
		err := psi.Intersect(sets, func(_ *psi.Element, idx []uint32) error {
			for i, pos := range idx {
				if int64(pos) >= st.Clients[s.Clients[i].Dataset].Keys[q].Records {
					return refused(s.Clients[(i+n-1)%n].Dataset, "a sorted set naming position %d of a set of %d", pos, st.Clients[s.Clients[i].Dataset].Keys[q].Records)
				}
				row[i] = binary.BigEndian.Uint32(tags[i][4*pos:])
				if int64(row[i]) >= int64(len(used[i])) {
					return refused(s.Clients[i].Dataset, "a tag beyond its %d rows", len(used[i]))
				}
				if used[i][row[i]] {
					return nil // linked by an earlier key
				}
			}
			for i := range idx {
				used[i][row[i]] = true
				links[i] = binary.BigEndian.AppendUint32(links[i], row[i])
			}
			st.Linked++
			return nil
		})
		if err != nil {
			if silo.ErrorCode(err) == silo.ECONFLICT {
				return nil, err
			}
			return nil, silo.Errorf(silo.ECONFLICT, "comparing the sets of key %d: %v: a runner's sorted set was not what it should be", q+1, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	out := map[string][]byte{}
	for i, c := range s.Clients {
		out[c.Dataset] = cmpOrEmpty(links[i])
	}
	return out, nil
}

func cmpOrEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (Kind) finishLink(s *orchestrator.Session, st *state, results []*orchestrator.Result) (*orchestrator.Outcome, error) {
	for _, r := range results {
		var out silo.PRLLinkOutput
		if err := json.Unmarshal(r.Task.Output, &out); err != nil || out.Linked != st.Linked {
			return nil, refused(r.Client.Dataset, "a linkage of another size than the %d records sent", st.Linked)
		}
		st.Clients[r.Client.Dataset].Path = out.Path
	}
	st.Done = true
	o := &orchestrator.Outcome{State: st.marshal(), DropBlobs: []string{"links/*"}}
	o.Reason = fmt.Sprintf("linked %d records across %d datasets; each runner keeps its linkage", st.Linked, len(s.Clients))
	return o, nil
}

// Metrics are each dataset's overlap, once the linkage is written.
func (Kind) Metrics(s *orchestrator.Session) (any, error) {
	st, err := load(s)
	if err != nil {
		return nil, err
	}
	m := silo.LinkageMetrics{Clients: []silo.LinkageClient{}}
	if !st.Done {
		return m, nil
	}
	for _, ds := range s.Config.Datasets {
		cs := st.Clients[ds]
		if cs == nil {
			continue
		}
		lc := silo.LinkageClient{Dataset: ds, NRecords: cs.Rows, NOverlappedRecords: st.Linked}
		if cs.Rows > 0 {
			lc.FracOverlapped = float64(st.Linked) / float64(cs.Rows)
		}
		for _, kc := range cs.Keys {
			lc.NDuplicateKeys += kc.Duplicates
		}
		lc.NNullKeys = cs.NullRows
		m.Clients = append(m.Clients, lc)
	}
	return m, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
