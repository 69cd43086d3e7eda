package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"gonum.org/v1/gonum/mat"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/tabular"
	"github.com/silofl/silo/model"
)

// predictionWriter writes prediction rows as CSV or Parquet: the
// identifiers, then the prediction (a label, or a value for regression),
// then the class probabilities (classification only).
type predictionWriter interface {
	write(ids []string, label string, value float64, probs []float64) error
	close() error
}

// runPredict predicts every row of a dataset, in the dataset's order, and
// writes the predictions to the runner's own storage: the identifier
// columns, then prediction and (classification) one p_<class> column per
// class. Only the count and the path go back to the server.
func runPredict(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	var p silo.PredictPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("predict task payload: %w", err)
	}
	doc, err := model.Load(bytes.NewReader(p.Document))
	if err != nil {
		return nil, err
	}
	prep := &doc.Preprocessing
	b, err := cfg.checkUse(ctx, p.Dataset, p.URI, p.Privacy, silo.SessionHFL, prep.Columns(false)...)
	if err != nil {
		return nil, err
	}
	privacy := &b.eff.Controls
	if !privacy.AllowPredictions {
		return nil, b.refused("allow_predictions", "dataset %s does not allow predictions", p.Dataset)
	}
	out, err := blob.ParseURI(p.Output)
	if err != nil {
		return nil, err
	}
	if err := cfg.checkOutput(out); err != nil {
		return nil, err
	}
	inputs, err := openDataset(ctx, cfg, p.URI)
	if err != nil {
		return nil, userError(err)
	}
	store, err := blob.Open(ctx, out, cfg.storage())
	if err != nil {
		return nil, err
	}
	// Identifier columns that exist in the data lead each output row.
	var ids []string
	types := map[string]string{}
	for _, c := range p.Schema {
		types[c.Name] = c.Type
		if slices.Contains(privacy.IdentifierColumns, c.Name) {
			ids = append(ids, c.Name)
		}
	}
	header := append(slices.Clone(ids), "prediction")
	if prep.Task == "classification" {
		for _, c := range doc.Spec.Classes {
			header = append(header, "p_"+c)
		}
	}
	pr, pw := io.Pipe()
	putDone := make(chan error, 1)
	go func() { putDone <- store.Put(ctx, out.Path, pr) }()
	var w predictionWriter
	classification := prep.Task == "classification"
	if p.Format == "parquet" {
		w = newParquetPredictions(pw, ids, header, classification)
	} else {
		w = newCSVPredictions(pw, header)
	}
	columns := append(slices.Clone(ids), prep.Columns(false)...)
	columns = uniq(columns)
	width := prep.Width()
	var rows int64
	var cols []column
	rc := newRowCells(columns)
	get := rc.get
	err = tabular.ReadBatches(ctx, inputs, schemaOf(p.Schema), columns, 4096, func(b *tabular.Batch) error {
		cols = columnsOf(b, columns, cols)
		rc.cols = cols
		x := make([]float64, b.Len*width)
		for i := 0; i < b.Len; i++ {
			rc.at(i)
			prep.EncodeRow(get, x[i*width:(i+1)*width])
		}
		pred, err := doc.Model().Predict(mat.NewDense(b.Len, width, x))
		if err != nil {
			return err
		}
		preds := doc.Interpret(pred)
		for i := 0; i < b.Len; i++ {
			idv := make([]string, len(ids))
			for j, id := range ids {
				if c := cols[j].cell(i); !c.Null {
					idv[j] = c.String(types[id])
				}
			}
			var probs []float64
			if classification {
				probs = make([]float64, len(doc.Spec.Classes))
				for j, c := range doc.Spec.Classes {
					probs[j] = preds[i].Probabilities[c]
				}
			}
			if err := w.write(idv, preds[i].Label, preds[i].Value, probs); err != nil {
				return err
			}
			rows++
		}
		return nil
	})
	if err == nil {
		err = w.close()
	}
	pw.CloseWithError(err)
	if perr := <-putDone; err == nil {
		err = perr
	}
	if err != nil {
		return nil, userError(err)
	}
	log.Info("predictions written", "dataset", p.Dataset, "rows", rows, "path", p.Output)
	return json.Marshal(silo.PredictOutput{Rows: rows, Path: p.Output})
}

// predictionsFolder is the folder at the top of a runner's storage (its
// root, bucket or container) where predictions go.
const predictionsFolder = "predictions"

// checkOutput refuses to write predictions anywhere but the predictions
// folder of the runner's storage: a server must not make a runner write
// over its data or its own state.
func (c *Config) checkOutput(out blob.URI) error {
	inside := strings.HasPrefix(out.Path, predictionsFolder+"/")
	if out.Scheme == blob.SchemeFile {
		inside = c.StorageRoot != "" && blob.LocationWithin(out.Location(), blob.URI{Scheme: blob.SchemeFile, Path: filepath.Join(c.StorageRoot, predictionsFolder)}.Location()) &&
			!strings.HasSuffix(out.Path, "/")
	}
	if !inside {
		return fmt.Errorf("refused by the runner: predictions are written only in the %s/ folder of its storage, not to %s", predictionsFolder, out)
	}
	return nil
}

func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

type csvPredictions struct {
	buf *bufio.Writer
	w   *csv.Writer
}

func newCSVPredictions(w io.Writer, header []string) *csvPredictions {
	buf := bufio.NewWriterSize(w, 1<<16)
	c := &csvPredictions{buf: buf, w: csv.NewWriter(buf)}
	_ = c.w.Write(header) // a failed write sticks in buf: close reports it
	return c
}

func (c *csvPredictions) write(ids []string, label string, value float64, probs []float64) error {
	row := append([]string(nil), ids...)
	if probs == nil {
		row = append(row, strconv.FormatFloat(value, 'g', -1, 64))
	} else {
		row = append(row, label)
		for _, p := range probs {
			row = append(row, strconv.FormatFloat(p, 'g', 6, 64))
		}
	}
	return c.w.Write(row)
}

func (c *csvPredictions) close() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.buf.Flush()
}

// parquetPredictions writes identifiers and class labels as strings, values
// and probabilities as doubles. Parquet orders a group's columns by name;
// readers address them by name.
type parquetPredictions struct {
	w      *parquet.GenericWriter[any]
	index  map[string]int
	header []string
	nIDs   int
	rows   []parquet.Row
}

func newParquetPredictions(w io.Writer, ids, header []string, classification bool) *parquetPredictions {
	g := parquet.Group{}
	for i, h := range header {
		switch {
		case i < len(ids):
			g[h] = parquet.Optional(parquet.String())
		case h == "prediction" && classification:
			g[h] = parquet.String()
		default:
			g[h] = parquet.Leaf(parquet.DoubleType)
		}
	}
	schema := parquet.NewSchema("predictions", g)
	p := &parquetPredictions{w: parquet.NewGenericWriter[any](w, schema), index: map[string]int{}, header: header, nIDs: len(ids)}
	for i, col := range schema.Columns() {
		p.index[col[0]] = i
	}
	return p
}

func (p *parquetPredictions) write(ids []string, label string, value float64, probs []float64) error {
	out := make(parquet.Row, len(p.header))
	for i, h := range p.header {
		col := p.index[h]
		switch {
		case i < p.nIDs && ids[i] == "":
			out[col] = parquet.NullValue().Level(0, 0, col)
		case i < p.nIDs:
			out[col] = parquet.ByteArrayValue([]byte(ids[i])).Level(0, 1, col)
		case h == "prediction" && probs != nil:
			out[col] = parquet.ByteArrayValue([]byte(label)).Level(0, 0, col)
		case h == "prediction":
			out[col] = parquet.DoubleValue(value).Level(0, 0, col)
		default:
			out[col] = parquet.DoubleValue(probs[i-p.nIDs-1]).Level(0, 0, col)
		}
	}
	p.rows = append(p.rows, out)
	if len(p.rows) >= 4096 {
		return p.flush()
	}
	return nil
}

func (p *parquetPredictions) flush() error {
	_, err := p.w.WriteRows(p.rows)
	p.rows = p.rows[:0]
	return err
}

func (p *parquetPredictions) close() error {
	if err := p.flush(); err != nil {
		return err
	}
	return p.w.Close()
}
