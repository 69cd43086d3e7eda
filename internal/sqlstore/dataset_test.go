package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

func TestDatasets(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r := mustRunner(t, db, "runner-1")
		d := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "hospital_a", URI: "file:///data/a.csv", Owner: "dc@example.org", Privacy: silo.DefaultPrivacyControls()},
			RunnerID: r.ID, ConnectTask: "task_1"}
		if err := db.CreateDataset(ctx, d); err != nil {
			t.Fatal(err)
		}
		dup := *d
		wantCode(t, db.CreateDataset(ctx, &dup), silo.EINVALID)

		got, err := db.FindDataset(ctx, "hospital_a")
		if err != nil || got.Runner != "runner-1" || got.Status != silo.DatasetConnecting || got.Privacy.MinRecordsPerAggregate != 10 || len(got.Columns) != 0 {
			t.Fatalf("FindDataset = %+v, %v", got, err)
		}
		byTask, err := db.FindDatasetByConnectTask(ctx, "task_1")
		if err != nil || byTask.ID != d.ID {
			t.Fatalf("FindDatasetByConnectTask = %v, %v", byTask, err)
		}
		mean := 4.5
		upd, err := db.UpdateDataset(ctx, "hospital_a", func(d *sqlstore.StoredDataset) error {
			now := c.now()
			d.Status, d.RowCount, d.Format, d.Files, d.ConnectedAt = silo.DatasetConnected, 569, "csv", 1, &now
			d.Columns = []silo.Column{{Name: "age", Type: "int", Count: 569, Mean: &mean}, {Name: "id", Type: "string", Identifier: true}}
			d.Privacy.ExcludedColumns = []string{"ssn"}
			return nil
		})
		if err != nil || upd.RowCount != 569 {
			t.Fatal(err)
		}
		got, _ = db.FindDataset(ctx, "hospital_a")
		if got.Status != silo.DatasetConnected || got.RowCount != 569 || *got.Columns[0].Mean != 4.5 || !got.Columns[1].Identifier || got.ConnectedAt == nil || got.Privacy.ExcludedColumns[0] != "ssn" {
			t.Fatalf("after update = %+v", got)
		}

		c.add(time.Minute)
		a := &silo.Attachment{Name: "dictionary.csv", ContentType: "text/csv", UploadedBy: "dc@example.org"}
		if err := db.AddAttachment(ctx, d.ID, a, []byte("col,meaning\nage,years\n")); err != nil {
			t.Fatal(err)
		}
		got, _ = db.FindDataset(ctx, "hospital_a")
		if len(got.Attachments) != 1 || got.Attachments[0].Size != 22 {
			t.Fatalf("attachments = %+v", got.Attachments)
		}
		meta, data, err := db.Attachment(ctx, d.ID, a.ID)
		if err != nil || string(data) != "col,meaning\nage,years\n" || meta.Name != "dictionary.csv" {
			t.Fatalf("Attachment = %+v %q %v", meta, data, err)
		}
		_, _, err = db.Attachment(ctx, d.ID+1, a.ID)
		wantCode(t, err, silo.ENOTFOUND)

		list, _ := db.ListDatasets(ctx)
		if len(list) != 1 {
			t.Fatalf("ListDatasets = %d", len(list))
		}
		if err := db.DeregisterDataset(ctx, "hospital_a"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.DeregisterDataset(ctx, "hospital_a"), silo.ENOTFOUND)
		_, err = db.FindDataset(ctx, "hospital_a")
		wantCode(t, err, silo.ENOTFOUND)
		// The name is free again.
		again := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "hospital_a", URI: "file:///data/b.csv", Owner: "dc@example.org", Privacy: silo.DefaultPrivacyControls()}, RunnerID: r.ID}
		if err := db.CreateDataset(ctx, again); err != nil {
			t.Fatal(err)
		}
	})
}
