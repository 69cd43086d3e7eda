package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const datasetsUsage = `
Usage: silo datasets SUBCOMMAND

Registers datasets and their privacy controls. Rows never leave their runner:
Silo keeps only the metadata the runner reports.

  register --runner R --name N --uri U [--description D] [--privacy privacy.json]
           [--attach FILE]... [--no-wait]
                          register a dataset and wait for its runner to connect
  list                    list datasets
  show NAME               schema, row count, null counts, allowed summaries, and
                          the controls in effect on its data and who set them
  privacy NAME -f privacy.json
                          replace the privacy controls (owner or admin)
  connect NAME            have the runner read the data again
  attach NAME FILE...     attach metadata files (data dictionary, licence…)
  attachment NAME ID -o FILE
                          download an attachment
  deregister NAME         retire a dataset

URIs: file:///path (local runners, inside their storage root),
s3://bucket.silo/key-or-prefix (AWS runners), azure://container/path (Azure).
`

func cmdDatasets(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "datasets", datasetsUsage, map[string]subcommand{
		"register":   datasetsRegister,
		"list":       datasetsList,
		"show":       datasetsShow,
		"privacy":    datasetsPrivacy,
		"connect":    datasetsConnect,
		"attach":     datasetsAttach,
		"attachment": datasetsAttachment,
		"deregister": datasetsDeregister,
	}, args)
}

// readPrivacy reads privacy controls from a JSON file, refusing unknown
// fields so a typo is not silently ignored.
func readPrivacy(path string) (*silo.PrivacyControls, error) {
	// #nosec G304 G703 -- a file the user named
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := silo.DefaultPrivacyControls()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: not valid privacy controls: %v", path, err)
	}
	return &p, nil
}

func datasetsRegister(ctx context.Context, c *cmd, args []string) error {
	var spec silo.DatasetSpec
	c.flags.StringVar(&spec.Runner, "runner", "", "task runner next to the data")
	c.flags.StringVar(&spec.Name, "name", "", "dataset name")
	c.flags.StringVar(&spec.URI, "uri", "", "where the data is")
	c.flags.StringVar(&spec.Description, "description", "", "what the data is")
	privacy := c.flags.String("privacy", "", "privacy controls JSON file (default: every session type allowed, min_records_per_aggregate 10)")
	var attach listFlag
	c.flags.Var(&attach, "attach", "metadata file to attach (repeatable)")
	noWait := c.flags.Bool("no-wait", false, "return once registered, without waiting for the runner")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if spec.Runner == "" || spec.Name == "" || spec.URI == "" {
		return usagef("--runner, --name and --uri are required")
	}
	if *privacy != "" {
		p, err := readPrivacy(*privacy)
		if err != nil {
			return err
		}
		spec.Privacy = p
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	d, err := cl.RegisterDataset(ctx, spec)
	if err != nil {
		return err
	}
	for _, f := range attach {
		if err := attachFile(ctx, cl, d.Name, f); err != nil {
			return err
		}
	}
	if !*noWait {
		if d, err = waitConnected(ctx, c, cl, d.Name); err != nil {
			return err
		}
	}
	return c.printDataset(d)
}

// waitConnected waits (up to 5 minutes) for the runner to connect a dataset.
func waitConnected(ctx context.Context, c *cmd, cl *client.Client, name string) (*silo.Dataset, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		d, err := cl.GetDataset(ctx, name)
		if err != nil || d.Status != silo.DatasetConnecting {
			return d, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("runner %s has not connected dataset %s after 5 minutes: is it online? see 'silo runners show %s'", d.Runner, name, d.Runner)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func attachFile(ctx context.Context, cl *client.Client, dataset, path string) error {
	// #nosec G304 G703 -- a file the user named
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ct := mime.TypeByExtension(filepath.Ext(path))
	_, err = cl.AddAttachment(ctx, dataset, filepath.Base(path), ct, data)
	return err
}

func datasetsList(ctx context.Context, c *cmd, args []string) error {
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	ds, err := cl.ListDatasets(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(ds)
	}
	if len(ds) == 0 {
		fmt.Fprintln(c.Stdout, "No datasets yet. Register one with: silo datasets register --runner R --name N --uri file:///…")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "NAME\tRUNNER\tSTATUS\tROWS\tCOLUMNS\tOWNER\tURI")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.Name, d.Runner, d.Status, d.RowCount, len(d.Columns), d.Owner, d.URI)
	}
	return tw.Flush()
}

func datasetsShow(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	d, err := cl.GetDataset(ctx, pos[0])
	if err != nil {
		return err
	}
	return c.printDataset(d)
}

// printDataset shows a dataset: its state, then its columns.
func (c *cmd) printDataset(d *silo.Dataset) error {
	if c.json {
		return c.printJSON(d)
	}
	fmt.Fprintf(c.Stdout, "%s on runner %s: %s\n", d.Name, d.Runner, d.Status)
	if d.Error != "" {
		fmt.Fprintf(c.Stdout, "error: %s\n", d.Error)
	}
	fmt.Fprintf(c.Stdout, "uri: %s\nowner: %s\n", d.URI, d.Owner)
	if d.Description != "" {
		fmt.Fprintf(c.Stdout, "description: %s\n", d.Description)
	}
	if d.Status == silo.DatasetConnected {
		fmt.Fprintf(c.Stdout, "%d rows in %d %s file(s)\n\n", d.RowCount, d.Files, d.Format)
		tw := c.table()
		fmt.Fprintln(tw, "COLUMN\tTYPE\tNULLS\tMEAN\tSTD\tDISTINCT\tNOTE")
		for _, col := range d.Columns {
			note := ""
			switch {
			case col.Excluded:
				note = "excluded: never read"
			case col.Identifier:
				note = "identifier: linkage only"
			case len(col.Categories) > 0:
				note = "categories: " + strings.Join(col.Categories, ", ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", col.Name, col.Type, col.Nulls, fmtFloat(col.Mean), fmtFloat(col.Std), fmtInt(col.Distinct), note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	p := d.Privacy
	users := "every Model Builder"
	if len(p.AllowedUsers) > 0 {
		users = strings.Join(p.AllowedUsers, ", ")
	}
	fmt.Fprintf(c.Stdout, "\nprivacy: sessions %s; users: %s; epsilon ≤ %g per session, budget %g; aggregates over ≥ %d records; predictions %s\n",
		strings.Join(p.AllowedSessionTypes, ","), users, p.MaxEpsilonPerSession, p.EpsilonBudget, p.MinRecordsPerAggregate, map[bool]string{true: "allowed", false: "not allowed"}[p.AllowPredictions])
	if e := d.Effective; e != nil {
		// What binds the data: the strictest of this dataset's controls,
		// every other dataset on the same data and the runner's policy.
		fmt.Fprintf(c.Stdout, "\nin effect on this data (epsilon spent on it: %g):\n", d.EpsilonSpent)
		tw := c.table()
		fmt.Fprintln(tw, "CONTROL\tVALUE\tSET BY")
		var values map[string]any
		b, _ := json.Marshal(e.Controls)
		_ = json.Unmarshal(b, &values)
		for _, f := range silo.PrivacyFieldNames() {
			v, _ := json.Marshal(values[f])
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f, v, strings.Join(e.Sources[f], ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, a := range d.Attachments {
		fmt.Fprintf(c.Stdout, "attachment %d: %s (%s, %d bytes)\n", a.ID, a.Name, a.ContentType, a.Size)
	}
	return nil
}

func fmtFloat(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'g', 4, 64)
}

func fmtInt(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}

func datasetsPrivacy(ctx context.Context, c *cmd, args []string) error {
	file := c.flags.String("f", "", "privacy controls JSON file")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	if *file == "" {
		return usagef("-f privacy.json is required")
	}
	p, err := readPrivacy(*file)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	d, err := cl.UpdateDataset(ctx, pos[0], client.DatasetUpdate{Privacy: p})
	if err != nil {
		return err
	}
	if d, err = waitConnected(ctx, c, cl, d.Name); err != nil {
		return err
	}
	return c.printDataset(d)
}

func datasetsConnect(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	d, err := cl.ConnectDataset(ctx, pos[0])
	if err == nil {
		d, err = waitConnected(ctx, c, cl, d.Name)
	}
	if err != nil {
		return err
	}
	return c.printDataset(d)
}

func datasetsAttach(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME", "FILE...")
	if err != nil {
		return err
	}
	for _, f := range pos[1:] {
		if err := attachFile(ctx, cl, pos[0], f); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "Attached %s to %s.\n", filepath.Base(f), pos[0])
	}
	return nil
}

func datasetsAttachment(ctx context.Context, c *cmd, args []string) error {
	out := c.flags.String("o", "", "file to write")
	pos, err := c.parse(args, "NAME", "ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil || *out == "" {
		return usagef("give the attachment's numeric ID (see 'silo datasets show %s') and -o FILE", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := cl.DownloadAttachment(ctx, pos[0], id, &buf); err != nil {
		return err
	}
	// #nosec G703 -- the --out path the user gave
	return os.WriteFile(*out, buf.Bytes(), 0o600)
}

func datasetsDeregister(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	if err := cl.DeregisterDataset(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Dataset %s is deregistered.\n", pos[0])
	return nil
}
