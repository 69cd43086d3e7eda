package model

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/silofl/silo/internal/ml"
)

// FormatV1 identifies version 1 of the model document.
const FormatV1 = "silo-model/1"

// Document is a trained model, self-describing: what it is, how to encode
// inputs, its parameters and where it came from. It is what
// 'silo models download' writes and Load reads.
type Document struct {
	Format        string        `json:"format"`
	Spec          ml.Spec       `json:"spec"`
	Preprocessing Preprocessing `json:"preprocessing"`
	Params        []float64     `json:"params"`
	Metadata      Metadata      `json:"metadata"`

	model *ml.Model
}

// Metadata says where a model came from.
type Metadata struct {
	Session      string             `json:"session"`
	SessionName  string             `json:"session_name"`
	Round        int                `json:"round"`
	Best         bool               `json:"best"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	Datasets     []string           `json:"datasets"`
	EpsilonSpent map[string]float64 `json:"epsilon_spent,omitempty"`
	CreatedAt    time.Time          `json:"created_at"`
}

// New builds a document from a spec, preprocessing and parameters.
func New(spec ml.Spec, prep Preprocessing, params []float64, meta Metadata) (*Document, error) {
	d := &Document{Format: FormatV1, Spec: spec, Preprocessing: prep, Params: params, Metadata: meta}
	return d, d.init()
}

// Load reads and checks a model document.
func Load(r io.Reader) (*Document, error) {
	var d Document
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("not a Silo model document: %w", err)
	}
	if d.Format != FormatV1 {
		return nil, fmt.Errorf("model document format %q: this version of Silo reads %s", d.Format, FormatV1)
	}
	return &d, d.init()
}

func (d *Document) init() error {
	if err := d.Preprocessing.Validate(); err != nil {
		return err
	}
	if w := d.Preprocessing.Width(); w != d.Spec.NumFeatures {
		return fmt.Errorf("model expects %d inputs but its preprocessing makes %d", d.Spec.NumFeatures, w)
	}
	m, err := ml.LoadModel(d.Spec, d.Params)
	if err != nil {
		return err
	}
	d.model = m
	return nil
}

// Model returns the loaded model.
func (d *Document) Model() *ml.Model { return d.model }

// Prediction is one row's prediction: a class label with its probabilities,
// or a value.
type Prediction struct {
	Label         string             `json:"label,omitempty"`
	Value         float64            `json:"value"`
	Probabilities map[string]float64 `json:"probabilities,omitempty"`
}

// Predict encodes rows (column name → value: a number, bool, string, or nil
// for null) and predicts them. Missing columns count as null; the target
// column, if present, is ignored.
func (d *Document) Predict(rows []map[string]any) ([]Prediction, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	w := d.Preprocessing.Width()
	x := make([]float64, len(rows)*w)
	for i, row := range rows {
		d.Preprocessing.EncodeRow(func(col string) Cell { return cellOf(row[col]) }, x[i*w:(i+1)*w])
	}
	out, err := d.model.Predict(mat.NewDense(len(rows), w, x))
	if err != nil {
		return nil, err
	}
	return d.Interpret(out), nil
}

// Interpret turns model outputs into predictions.
func (d *Document) Interpret(out *mat.Dense) []Prediction {
	n, k := out.Dims()
	preds := make([]Prediction, n)
	for i := range preds {
		if d.Preprocessing.Task == "regression" {
			preds[i].Value = out.At(i, 0)
			continue
		}
		best := 0
		probs := make(map[string]float64, k)
		for j := 0; j < k; j++ {
			probs[d.Spec.Classes[j]] = out.At(i, j)
			if out.At(i, j) > out.At(i, best) {
				best = j
			}
		}
		preds[i] = Prediction{Label: d.Spec.Classes[best], Value: out.At(i, best), Probabilities: probs}
	}
	return preds
}

func cellOf(v any) Cell {
	switch x := v.(type) {
	case nil:
		return Cell{Null: true}
	case float64:
		return Cell{Num: x}
	case float32:
		return Cell{Num: float64(x)}
	case int:
		return Cell{Num: float64(x)}
	case int64:
		return Cell{Num: float64(x)}
	case bool:
		if x {
			return Cell{Num: 1}
		}
		return Cell{}
	case json.Number:
		f, err := x.Float64()
		return Cell{Num: f, Null: err != nil}
	case string:
		return Cell{Str: x, Text: true}
	}
	return Cell{Null: true}
}
