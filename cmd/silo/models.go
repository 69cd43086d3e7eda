package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/silofl/silo/internal/tabular"
	"github.com/silofl/silo/model"
)

const modelsUsage = `
Usage: silo models SUBCOMMAND

  download SESSION [--best] -o FILE
      Downloads a session's final (or best) model as a self-describing JSON
      document that the Go SDK and the Python client load to predict.

  predict MODEL.json --input FILE [-o predictions.csv]
      Predicts the rows of a CSV or Parquet file on this machine with a
      downloaded model. Writes CSV (to standard output without -o): the
      model's identifier columns found in the file, then prediction and,
      for classification, p_<class> for each class, as 'silo predict'
      writes on a runner, with every number at full precision.
`

func cmdModels(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "models", modelsUsage, map[string]subcommand{"download": modelsDownload, "predict": modelsPredict}, args)
}

func modelsDownload(ctx context.Context, c *cmd, args []string) error {
	best := c.flags.Bool("best", false, "the best round's model instead of the final one")
	out := c.flags.String("o", "", "file to write")
	pos, err := c.parse(args, "SESSION")
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("-o FILE is required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dirOf(*out), ".model-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := cl.DownloadModel(ctx, pos[0], *best, f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// #nosec G703 -- the --out path the user gave
	if err := os.Rename(f.Name(), *out); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]string{"session": pos[0], "path": *out})
	}
	fmt.Fprintf(c.Stdout, "Wrote the %s model of %s to %s.\n", map[bool]string{true: "best", false: "final"}[*best], pos[0], *out)
	return nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

// modelsPredict predicts the rows of a local file with a downloaded model
// document, on this machine, through the SDK's model.Document.Predict: the
// way to check a model on data of one's own, and to compare other
// implementations (the Python client's) with the SDK's.
func modelsPredict(ctx context.Context, c *cmd, args []string) error {
	input := c.flags.String("input", "", "CSV or Parquet file to predict")
	out := c.flags.String("o", "", "file to write (default: standard output)")
	pos, err := c.parse(args, "MODEL")
	if err != nil {
		return err
	}
	if *input == "" {
		return usagef("--input FILE is required: the CSV or Parquet file to predict")
	}
	// #nosec G304 G703 -- the model file the user named
	mf, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	doc, err := model.Load(mf)
	_ = mf.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	in, err := openLocalInput(*input)
	if err != nil {
		return err
	}
	defer in.f.Close()
	inputs := []tabular.Input{in}
	profile, err := tabular.Scan(ctx, inputs, tabular.ScanOptions{})
	if err != nil {
		return fmt.Errorf("read %s: %w", *input, err)
	}
	schema := profile.Schema()

	w := io.Writer(c.Stdout)
	var f *os.File
	if *out != "" {
		if f, err = os.CreateTemp(dirOf(*out), ".predictions-*"); err != nil {
			return err
		}
		defer os.Remove(f.Name()) // fails harmlessly once renamed
		w = f
	}
	buf := bufio.NewWriterSize(w, 1<<16)
	rows, err := predictLocal(ctx, doc, inputs, schema, buf)
	if err == nil {
		err = buf.Flush()
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			// #nosec G703 -- the -o path the user gave
			err = os.Rename(f.Name(), *out)
		}
	}
	if err != nil {
		return err
	}
	if *out != "" {
		if c.json {
			return c.printJSON(map[string]any{"rows": rows, "path": *out})
		}
		fmt.Fprintf(c.Stdout, "Predicted %d rows of %s; wrote them to %s\n", rows, *input, *out)
	}
	return nil
}

// predictLocal writes the predictions of every row as CSV: the model's
// identifier columns found in the data, then prediction and, for
// classification, p_<class> per class, as on a runner, but every number at
// full precision (shortest text that reads back as the same float64). It
// returns the number of rows.
func predictLocal(ctx context.Context, doc *model.Document, inputs []tabular.Input, schema tabular.Schema, w io.Writer) (int64, error) {
	prep := &doc.Preprocessing
	var ids, features []string
	for _, id := range prep.Identifiers {
		if _, ok := schema.Lookup(id); ok {
			ids = append(ids, id)
		}
	}
	for _, name := range prep.Columns(false) {
		// A feature missing from the file counts as null, as in Predict.
		if _, ok := schema.Lookup(name); ok && !slices.Contains(features, name) {
			features = append(features, name)
		}
	}
	columns := slices.Clone(ids)
	for _, name := range features {
		if !slices.Contains(columns, name) {
			columns = append(columns, name)
		}
	}
	header := append(slices.Clone(ids), "prediction")
	classification := prep.Task == "classification"
	if classification {
		for _, cl := range doc.Spec.Classes {
			header = append(header, "p_"+cl)
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return 0, err
	}
	format := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	var n int64
	err := tabular.ReadBatches(ctx, inputs, schema, columns, 4096, func(b *tabular.Batch) error {
		rows := make([]map[string]any, b.Len)
		for i := range rows {
			row := make(map[string]any, len(features))
			for _, name := range features {
				row[name] = batchValue(b, schema, name, i)
			}
			rows[i] = row
		}
		preds, err := doc.Predict(rows)
		if err != nil {
			return err
		}
		for i, p := range preds {
			rec := make([]string, 0, len(header))
			for _, id := range ids {
				rec = append(rec, idText(b, schema, id, i))
			}
			if !classification {
				rec = append(rec, format(p.Value))
			} else {
				rec = append(rec, p.Label)
				for _, cl := range doc.Spec.Classes {
					rec = append(rec, format(p.Probabilities[cl]))
				}
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		n += int64(b.Len)
		return nil
	})
	if err != nil {
		return n, err
	}
	cw.Flush()
	return n, cw.Error()
}

// batchValue is row i of a column as Predict takes it: nil for null, a
// string, a bool, or a number (timestamps in Unix seconds, as on a runner).
func batchValue(b *tabular.Batch, schema tabular.Schema, name string, i int) any {
	if b.Null[name][i] {
		return nil
	}
	col, _ := schema.Lookup(name)
	switch col.Type {
	case tabular.String:
		return b.Str[name][i]
	case tabular.Bool:
		return b.Num[name][i] != 0
	}
	return b.Num[name][i]
}

// idText is an identifier as written to the predictions: integers exactly,
// empty when null.
func idText(b *tabular.Batch, schema tabular.Schema, name string, i int) string {
	if b.Null[name][i] {
		return ""
	}
	col, _ := schema.Lookup(name)
	switch col.Type {
	case tabular.String:
		return b.Str[name][i]
	case tabular.Int:
		return strconv.FormatInt(b.Int[name][i], 10)
	case tabular.Bool:
		return strconv.FormatBool(b.Num[name][i] != 0)
	}
	return strconv.FormatFloat(b.Num[name][i], 'g', -1, 64)
}

// localInput is a file on this machine as a tabular.Input.
type localInput struct {
	f    *os.File
	name string
	size int64
}

func openLocalInput(path string) (*localInput, error) {
	// #nosec G304 G703 -- the --input file the user named
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = fmt.Errorf("%s is a directory: give one CSV or Parquet file", path)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &localInput{f: f, name: path, size: fi.Size()}, nil
}

func (l *localInput) Name() string { return l.name }
func (l *localInput) Size() int64  { return l.size }
func (l *localInput) Open(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(l.f, 0, l.size)), nil
}
func (l *localInput) ReadAt(p []byte, off int64) (int, error) { return l.f.ReadAt(p, off) }
