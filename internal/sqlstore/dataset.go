package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/silofl/silo"
)

const datasetColumns = `d.id, d.name, r.name, d.uri, d.description, d.owner, d.privacy, d.status, d.error, d.format, d.files, d.row_count, d.columns,
	d.connect_task, d.created_at, d.updated_at, d.connected_at,
	(SELECT COALESCE(SUM(l.epsilon), 0) FROM privacy_ledger l WHERE l.dataset_id = d.id), d.runner_id`

// StoredDataset is a dataset with what only the server needs: the id of the
// task connecting it.
type StoredDataset struct {
	silo.Dataset
	RunnerID    int64
	ConnectTask string
	// Deregistered is set on the deregistered datasets ListRunnerDatasets
	// returns.
	Deregistered bool
}

func scanDataset(s scanner) (*StoredDataset, error) {
	var d StoredDataset
	var privacy, columns, status string
	var created, updated int64
	var connected sql.NullInt64
	if err := s.Scan(&d.ID, &d.Name, &d.Runner, &d.URI, &d.Description, &d.Owner, &privacy, &status, &d.Error, &d.Format, &d.Files, &d.RowCount, &columns,
		&d.ConnectTask, &created, &updated, &connected, &d.EpsilonSpent, &d.RunnerID); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(privacy), &d.Privacy); err != nil {
		return nil, fmt.Errorf("dataset %d privacy: %w", d.ID, err)
	}
	if err := json.Unmarshal([]byte(columns), &d.Columns); err != nil {
		return nil, fmt.Errorf("dataset %d columns: %w", d.ID, err)
	}
	d.Status = silo.DatasetStatus(status)
	d.CreatedAt, d.UpdatedAt, d.ConnectedAt = fromMicros(created), fromMicros(updated), fromNullMicros(connected)
	if d.Columns == nil {
		d.Columns = []silo.Column{}
	}
	d.Attachments = []silo.Attachment{}
	return &d, nil
}

const datasetFrom = ` FROM datasets d JOIN runners r ON r.id = d.runner_id`

// CreateDataset stores a new dataset in status connecting. A live dataset of
// the same name is refused.
func (db *DB) CreateDataset(ctx context.Context, d *StoredDataset) error {
	privacy, err := json.Marshal(d.Privacy)
	if err != nil {
		return err
	}
	now := db.now()
	d.CreatedAt, d.UpdatedAt, d.Status = now, now, silo.DatasetConnecting
	err = db.wdb.QueryRowContext(ctx, db.q(`INSERT INTO datasets (name, runner_id, uri, description, owner, privacy, status, connect_task, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		d.Name, d.RunnerID, d.URI, d.Description, d.Owner, string(privacy), string(d.Status), d.ConnectTask, micros(now), micros(now)).Scan(&d.ID)
	if isUniqueViolation(err) {
		return silo.FieldErrorf("name", "a dataset named %q already exists: choose another name", d.Name)
	} else if err != nil {
		return fmt.Errorf("insert dataset: %w", err)
	}
	return nil
}

// FindDataset returns the live dataset called name, with its attachments'
// metadata.
func (db *DB) FindDataset(ctx context.Context, name string) (*StoredDataset, error) {
	d, err := scanDataset(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.name = ? AND d.deregistered_at IS NULL`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no dataset named %q: see 'silo datasets list'", name)
	} else if err != nil {
		return nil, err
	}
	if d.Attachments, err = db.listAttachments(ctx, d.ID); err != nil {
		return nil, err
	}
	return d, nil
}

// FindDatasetByConnectTask returns the dataset a connect task belongs to.
func (db *DB) FindDatasetByConnectTask(ctx context.Context, taskID string) (*StoredDataset, error) {
	d, err := scanDataset(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.connect_task = ? AND d.deregistered_at IS NULL`), taskID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no dataset is connecting with task %s", taskID)
	}
	return d, err
}

// DatasetsByID returns the datasets with the given ids, deregistered ones
// included (a session keeps its datasets' ids), without attachments. Ids
// with no dataset are left out.
func (db *DB) DatasetsByID(ctx context.Context, ids []int64) ([]*StoredDataset, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return db.queryDatasets(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+`) ORDER BY d.id`), args...)
}

// ListDatasets returns the live datasets by name.
func (db *DB) ListDatasets(ctx context.Context) ([]*StoredDataset, error) {
	return db.queryDatasets(ctx, `SELECT `+datasetColumns+datasetFrom+` WHERE d.deregistered_at IS NULL ORDER BY d.name`)
}

// ListRunnerDatasets returns every dataset ever registered on a runner,
// live and deregistered (Deregistered set), oldest first: privacy controls
// and the epsilon budget bind the data, whichever dataset names it.
func (db *DB) ListRunnerDatasets(ctx context.Context, runnerID int64) ([]*StoredDataset, error) {
	live, err := db.queryDatasets(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.runner_id = ? AND d.deregistered_at IS NULL ORDER BY d.id`), runnerID)
	if err != nil {
		return nil, err
	}
	dead, err := db.queryDatasets(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.runner_id = ? AND d.deregistered_at IS NOT NULL ORDER BY d.id`), runnerID)
	if err != nil {
		return nil, err
	}
	for _, d := range dead {
		d.Deregistered = true
	}
	out := append(live, dead...)
	slices.SortFunc(out, func(a, b *StoredDataset) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (db *DB) queryDatasets(ctx context.Context, query string, args ...any) ([]*StoredDataset, error) {
	rows, err := db.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*StoredDataset
	for rows.Next() {
		d, err := scanDataset(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDataset loads the live dataset called name in a transaction, lets
// change edit it, and writes it back.
func (db *DB) UpdateDataset(ctx context.Context, name string, change func(d *StoredDataset) error) (*StoredDataset, error) {
	var out *StoredDataset
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		d, err := scanDataset(tx.QueryRowContext(ctx, db.q(`SELECT `+datasetColumns+datasetFrom+` WHERE d.name = ? AND d.deregistered_at IS NULL`), name))
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no dataset named %q: see 'silo datasets list'", name)
		} else if err != nil {
			return err
		}
		if err := change(d); err != nil {
			return err
		}
		privacy, err := json.Marshal(d.Privacy)
		if err != nil {
			return err
		}
		if d.Columns == nil {
			d.Columns = []silo.Column{}
		}
		columns, err := json.Marshal(d.Columns)
		if err != nil {
			return err
		}
		d.UpdatedAt = db.now()
		_, err = tx.ExecContext(ctx, db.q(`UPDATE datasets SET uri = ?, description = ?, privacy = ?, status = ?, error = ?, format = ?, files = ?, row_count = ?, columns = ?,
			connect_task = ?, updated_at = ?, connected_at = ? WHERE id = ?`),
			d.URI, d.Description, string(privacy), string(d.Status), d.Error, d.Format, d.Files, d.RowCount, string(columns), d.ConnectTask, micros(d.UpdatedAt), nullMicros(d.ConnectedAt), d.ID)
		if err != nil {
			return fmt.Errorf("update dataset: %w", err)
		}
		out = d
		return nil
	})
	return out, err
}

// DeregisterDataset retires a dataset; its name is free again, its ledger
// and attachments are kept for the record.
func (db *DB) DeregisterDataset(ctx context.Context, name string) error {
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE datasets SET deregistered_at = ? WHERE name = ? AND deregistered_at IS NULL`), micros(db.now()), name)
	if err != nil {
		return fmt.Errorf("deregister dataset: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return silo.Errorf(silo.ENOTFOUND, "no dataset named %q: see 'silo datasets list'", name)
	}
	return nil
}

// AddAttachment stores an attachment's bytes and fills in its id and time.
func (db *DB) AddAttachment(ctx context.Context, datasetID int64, a *silo.Attachment, data []byte) error {
	a.UploadedAt, a.Size = db.now(), int64(len(data))
	err := db.wdb.QueryRowContext(ctx, db.q(`INSERT INTO dataset_attachments (dataset_id, name, content_type, size, data, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		datasetID, a.Name, a.ContentType, a.Size, data, a.UploadedBy, micros(a.UploadedAt)).Scan(&a.ID)
	if err != nil {
		return fmt.Errorf("store attachment: %w", err)
	}
	return nil
}

func (db *DB) listAttachments(ctx context.Context, datasetID int64) ([]silo.Attachment, error) {
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT id, name, content_type, size, uploaded_by, uploaded_at FROM dataset_attachments WHERE dataset_id = ? ORDER BY id`), datasetID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []silo.Attachment{}
	for rows.Next() {
		var a silo.Attachment
		var at int64
		if err := rows.Scan(&a.ID, &a.Name, &a.ContentType, &a.Size, &a.UploadedBy, &at); err != nil {
			return nil, err
		}
		a.UploadedAt = fromMicros(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Attachment returns one attachment of a dataset with its bytes.
func (db *DB) Attachment(ctx context.Context, datasetID, id int64) (*silo.Attachment, []byte, error) {
	var a silo.Attachment
	var at int64
	var data []byte
	err := db.rdb.QueryRowContext(ctx, db.q(`SELECT id, name, content_type, size, uploaded_by, uploaded_at, data FROM dataset_attachments WHERE dataset_id = ? AND id = ?`), datasetID, id).
		Scan(&a.ID, &a.Name, &a.ContentType, &a.Size, &a.UploadedBy, &at, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, silo.Errorf(silo.ENOTFOUND, "no attachment %d on this dataset", id)
	} else if err != nil {
		return nil, nil, err
	}
	a.UploadedAt = fromMicros(at)
	return &a, data, nil
}

// FindDatasets returns the live datasets called names, by name, without
// their attachments: what a session's driver reads of its datasets at each
// step, in one query. A name with no live dataset is missing from the map.
func (db *DB) FindDatasets(ctx context.Context, names []string) (map[string]*StoredDataset, error) {
	out := make(map[string]*StoredDataset, len(names))
	rows, err := db.queryR(ctx, sqlDatasetsByName, db.listArg(names))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDataset(rows)
		if err != nil {
			return nil, err
		}
		out[d.Name] = d
	}
	return out, rows.Err()
}

var sqlDatasetsByName = prepared(`SELECT ` + datasetColumns + datasetFrom + ` WHERE IN_LIST(d.name) AND d.deregistered_at IS NULL`)
