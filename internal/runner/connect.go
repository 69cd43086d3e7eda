package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/tabular"
)

// input adapts a blob object to tabular.Input.
type input struct {
	store blob.Store
	obj   blob.Object
	name  string
	ra    io.ReaderAt
}

func (i *input) Name() string { return i.name }
func (i *input) Size() int64  { return i.obj.Size }
func (i *input) Open(ctx context.Context) (io.ReadCloser, error) {
	return i.store.Open(ctx, i.obj.Key)
}
func (i *input) ReadAt(p []byte, off int64) (int, error) { return i.ra.ReadAt(p, off) }

// openDataset lists the files a dataset URI names on this runner's storage.
func openDataset(ctx context.Context, cfg *Config, uri string) ([]tabular.Input, error) {
	u, err := blob.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	store, err := blob.Open(ctx, u, cfg.storage())
	if err != nil {
		return nil, err
	}
	objs, err := store.List(ctx, u.Path)
	if err != nil {
		return nil, err
	}
	inputs := make([]tabular.Input, len(objs))
	for i, o := range objs {
		name := blob.URI{Scheme: u.Scheme, Bucket: u.Bucket, Path: o.Key}.String()
		inputs[i] = &input{store: store, obj: o, name: name, ra: store.ReaderAt(ctx, o)}
	}
	return inputs, nil
}

// runConnect opens a dataset and reports its schema, row count, null counts
// and the summaries the controls that bind its data allow: the strictest
// of those the server sent, those of every other dataset on the same data,
// and the runner's policy. The controls sent are recorded first, so a
// dataset binds its data from the moment it is registered. Excluded columns
// are never parsed; identifier columns get no summary; no statistic covers
// fewer than min_records_per_aggregate values. It reports metadata only,
// never a row.
func runConnect(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.ConnectPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("connect task payload: %w", err)
	}
	b, err := cfg.bind(ctx, p.Dataset, p.URI, p.Privacy, true)
	if err != nil {
		return nil, err
	}
	eff := &b.eff.Controls
	inputs, err := openDataset(ctx, cfg, p.URI)
	if err != nil {
		return nil, userError(err)
	}
	log.Info("opening dataset", "dataset", p.Dataset, "files", len(inputs))
	// The dataset's own columns must exist (a misspelt control must not
	// let a column through); those of other datasets and of the policy
	// apply where they exist.
	prof, err := tabular.Scan(ctx, inputs, tabular.ScanOptions{
		Exclude: p.Privacy.ExcludedColumns, NoSummary: p.Privacy.IdentifierColumns,
		AlsoExclude: eff.ExcludedColumns, AlsoNoSummary: eff.IdentifierColumns,
		MinRecordsPerAggregate: eff.MinRecordsPerAggregate})
	if err != nil {
		return nil, userError(err)
	}
	out := silo.ConnectOutput{Format: string(prof.Format), Files: prof.Files, Rows: prof.Rows, Columns: make([]silo.Column, len(prof.Columns))}
	for i, c := range prof.Columns {
		col := silo.Column{Name: c.Name, Type: string(c.Type), Nulls: c.Nulls, Count: c.Count, Identifier: slices.Contains(eff.IdentifierColumns, c.Name), Excluded: c.Excluded,
			Mean: c.Mean, Std: c.Std, Distinct: c.Distinct, Categories: c.Categories, MostlyUnique: c.MostlyUnique}
		if c.Excluded {
			col.Type = "excluded"
		}
		if col.Identifier {
			// Identifier values never leave the runner, not even as categories.
			col.Mean, col.Std, col.Distinct, col.Categories, col.MostlyUnique = nil, nil, nil, nil, false
		}
		out.Columns[i] = col
	}
	log.Info("dataset connected", "dataset", p.Dataset, "location", b.location, "format", out.Format, "files", out.Files, "rows", out.Rows, "columns", len(out.Columns),
		"min_records_per_aggregate", eff.MinRecordsPerAggregate)
	return json.Marshal(out)
}

// runDeregister forgets a deregistered dataset's controls: they stop
// binding its data. The data's privacy ledger stays.
func runDeregister(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.DeregisterPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("deregister task payload: %w", err)
	}
	state, err := cfg.state(ctx)
	if err != nil {
		return nil, err
	}
	n, err := state.forget(ctx, p.Dataset, p.URI)
	if err != nil {
		return nil, err
	}
	log.Info("dataset deregistered", "dataset", p.Dataset, "records", n)
	return json.Marshal(map[string]int{"records": n})
}

// userError reports a data or storage problem by its message alone (already
// free of cell values), without Go's wrapping.
func userError(err error) error {
	var te *tabular.Error
	if errors.As(err, &te) {
		return te
	}
	if silo.ErrorCode(err) != silo.EINTERNAL {
		return errors.New(silo.ErrorMessage(err))
	}
	return err
}

// localDir is the runner's own directory on its machine: StateDir, else
// .silo under a local storage root (a hidden name, and denied to every
// dataset and task), else the user's configuration directory. Record
// linkage secrets and large task parts are kept there, and the privacy
// record unless the runner keeps it in its cloud storage (see stateDir).
func (c *Config) localDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	dir, _ := defaultStateDir(c.StorageRoot)
	return dir
}

// stateDir is the directory of the runner's privacy record: localDir, or
// none for a runner with a cloud storage root and no StateDir, which keeps
// the record in that storage so that it outlives the machine.
func (c *Config) stateDir() string {
	if c.StateDir == "" && c.CloudRoot != "" {
		return ""
	}
	return c.localDir()
}

// spillDir is where the agent writes task parts too large to hold in
// memory, and tasks their scratch files: under localDir, or the system's
// temporary directory for a runner without one.
func (c *Config) spillDir() string {
	if dir := c.localDir(); dir != "" {
		return filepath.Join(dir, "tmp")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("silo-runner-%d", os.Getpid()))
}
