package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	storage := cfg.Storage
	storage.FileRoot = cfg.StorageRoot
	store, err := blob.Open(ctx, u, storage)
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
// and the summaries its privacy controls allow. Excluded columns are never
// parsed; identifier columns get no summary; no statistic covers fewer than
// min_records_per_aggregate values. It reports metadata only, never a row.
func runConnect(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.ConnectPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("connect task payload: %w", err)
	}
	// The runner checks the controls itself: it does not trust the server
	// to have done so.
	if err := p.Privacy.Validate(); err != nil {
		return nil, fmt.Errorf("refusing: the dataset's privacy controls are invalid: %s", silo.ErrorMessage(err))
	}
	inputs, err := openDataset(ctx, cfg, p.URI)
	if err != nil {
		return nil, userError(err)
	}
	log.Info("opening dataset", "dataset", p.Dataset, "files", len(inputs))
	prof, err := tabular.Scan(ctx, inputs, tabular.ScanOptions{Exclude: p.Privacy.ExcludedColumns, NoSummary: p.Privacy.IdentifierColumns,
		MinRecordsPerAggregate: p.Privacy.MinRecordsPerAggregate})
	if err != nil {
		return nil, userError(err)
	}
	out := silo.ConnectOutput{Format: string(prof.Format), Files: prof.Files, Rows: prof.Rows, Columns: make([]silo.Column, len(prof.Columns))}
	ids := map[string]bool{}
	for _, c := range p.Privacy.IdentifierColumns {
		ids[c] = true
	}
	for i, c := range prof.Columns {
		col := silo.Column{Name: c.Name, Type: string(c.Type), Nulls: c.Nulls, Count: c.Count, Identifier: ids[c.Name], Excluded: c.Excluded,
			Mean: c.Mean, Std: c.Std, Distinct: c.Distinct, Categories: c.Categories}
		if c.Excluded {
			col.Type = "excluded"
		}
		if col.Identifier {
			// Identifier values never leave the runner, not even as categories.
			col.Mean, col.Std, col.Distinct, col.Categories = nil, nil, nil, nil
		}
		out.Columns[i] = col
	}
	if err := cfg.rememberPrivacy(p.Dataset, p.Privacy); err != nil {
		log.Warn("could not keep the dataset's privacy controls on the runner", "err", err)
	}
	log.Info("dataset connected", "dataset", p.Dataset, "format", out.Format, "files", out.Files, "rows", out.Rows, "columns", len(out.Columns))
	return json.Marshal(out)
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

// rememberPrivacy keeps the privacy controls a dataset was connected with in
// the runner's state directory, so later tasks are checked against what the
// custodian set, not only against what a task says.
func (c *Config) rememberPrivacy(dataset string, p silo.PrivacyControls) error {
	dir := c.stateDir()
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "datasets"), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp, path := filepath.Join(dir, "datasets", dataset+".json.tmp"), filepath.Join(dir, "datasets", dataset+".json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	defer c.kept.forget(path) // whatever a file system's clock says
	return os.Rename(tmp, path)
}

// stateDir is where the runner keeps its own state: .silo under the storage
// root (hidden names are skipped when datasets are listed).
func (c *Config) stateDir() string {
	if c.StorageRoot == "" {
		return ""
	}
	return filepath.Join(c.StorageRoot, ".silo")
}

// readStateFile reads a file of the runner's state directory.
func readStateFile(dir string, parts ...string) ([]byte, error) {
	if dir == "" {
		return nil, os.ErrNotExist
	}
	return os.ReadFile(filepath.Join(append([]string{dir}, parts...)...))
}
