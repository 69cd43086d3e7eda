// Package model is Silo's trained-model document and the preprocessing that
// turns a dataset's columns into model features. The runner uses it to train
// and predict next to the data; the SDK uses it to load a downloaded model
// and predict. Both apply exactly the same encoding.
package model

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Feature kinds.
const (
	Numeric     = "numeric"     // standardised with the federated mean and std; null → 0 (the mean)
	Categorical = "categorical" // one-hot over Categories; null or unseen → all zeros
)

// Feature is one input column and how it is encoded.
type Feature struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"` // column type: int, float, bool, string, timestamp
	Kind       string   `json:"kind"`
	Mean       float64  `json:"mean,omitempty"`
	Std        float64  `json:"std,omitempty"`
	Categories []string `json:"categories,omitempty"`
}

// Preprocessing is everything needed to encode rows for a model: computed
// federatedly (global statistics and the union of categories) before round 1.
type Preprocessing struct {
	Task     string    `json:"task"` // classification or regression
	Target   string    `json:"target"`
	Features []Feature `json:"features"`
	// Classes in model output order; for binary tasks the positive class is
	// Classes[1].
	Classes     []string `json:"classes,omitempty"`
	TargetType  string   `json:"target_type,omitempty"`
	Identifiers []string `json:"identifiers,omitempty"`
}

// Width is the number of model inputs the features make.
func (p *Preprocessing) Width() int {
	n := 0
	for _, f := range p.Features {
		n += f.Width()
	}
	return n
}

// FeatureNames names each model input ("age", "ward=north", …).
func (p *Preprocessing) FeatureNames() []string {
	var out []string
	for _, f := range p.Features {
		if f.Kind == Categorical {
			for _, c := range f.Categories {
				out = append(out, f.Name+"="+c)
			}
		} else {
			out = append(out, f.Name)
		}
	}
	return out
}

// Validate checks a preprocessing read from a document.
func (p *Preprocessing) Validate() error {
	if p.Task != "classification" && p.Task != "regression" {
		return fmt.Errorf("preprocessing: task %q", p.Task)
	}
	if len(p.Features) == 0 {
		return fmt.Errorf("preprocessing: no features")
	}
	for _, f := range p.Features {
		switch f.Kind {
		case Numeric:
			if f.Std <= 0 || math.IsNaN(f.Mean) || math.IsInf(f.Mean, 0) {
				return fmt.Errorf("preprocessing: feature %s has no valid mean and std", f.Name)
			}
		case Categorical:
			if len(f.Categories) == 0 {
				return fmt.Errorf("preprocessing: categorical feature %s has no categories", f.Name)
			}
		default:
			return fmt.Errorf("preprocessing: feature %s has unknown kind %q", f.Name, f.Kind)
		}
	}
	if p.Task == "classification" && len(p.Classes) < 2 {
		return fmt.Errorf("preprocessing: classification needs at least two classes")
	}
	return nil
}

// Cell is one value of a row as the encoder sees it: a number (int, float,
// bool as 0/1, timestamp as Unix seconds), a string, or null.
type Cell struct {
	Num  float64
	Str  string
	Text bool // Str holds the value
	Null bool
}

// String gives the cell's value as a category or class label: strings as
// written, integers without a decimal point, bools as true/false.
func (c Cell) String(colType string) string {
	if c.Text {
		return c.Str
	}
	switch colType {
	case "bool":
		if c.Num != 0 {
			return "true"
		}
		return "false"
	case "int":
		return strconv.FormatInt(int64(c.Num), 10)
	}
	return strconv.FormatFloat(c.Num, 'g', -1, 64)
}

// EncodeRow writes one row's model inputs into out (len Width()), reading
// cells with get.
func (p *Preprocessing) EncodeRow(get func(col string) Cell, out []float64) {
	j := 0
	for _, f := range p.Features {
		w := f.Width()
		f.Encode(get(f.Name), out[j:j+w])
		j += w
	}
}

// Width is the number of model inputs the feature makes.
func (f *Feature) Width() int {
	if f.Kind == Categorical {
		return len(f.Categories)
	}
	return 1
}

// Encode writes the feature's model inputs for cell c into out (len
// Width()).
func (f *Feature) Encode(c Cell, out []float64) {
	if f.Kind == Categorical {
		clear(out)
		if !c.Null {
			if k, ok := slices.BinarySearch(f.Categories, c.String(f.Type)); ok {
				out[k] = 1
			}
		}
		return
	}
	num := c.Num
	if c.Text { // a number written as text, e.g. read from CSV by a caller
		var err error
		if num, err = strconv.ParseFloat(strings.TrimSpace(c.Str), 64); err != nil {
			num = math.NaN()
		}
	}
	out[0] = f.Standardize(num, c.Null)
}

// Standardize is a numeric feature's model input for a number: standardised
// with the federated mean and std, and 0 (the mean) for a null, NaN or ±Inf.
func (f *Feature) Standardize(num float64, null bool) float64 {
	if null || math.IsNaN(num) || math.IsInf(num, 0) {
		return 0
	}
	return (num - f.Mean) / f.Std
}

// EncodeTarget returns the training target of a row: the class index for
// classification, the value for regression; ok is false for rows that
// cannot be used (null target, or a class the model does not know).
func (p *Preprocessing) EncodeTarget(c Cell) (float64, bool) {
	if c.Null {
		return 0, false
	}
	if p.Task == "regression" {
		if c.Text || math.IsNaN(c.Num) || math.IsInf(c.Num, 0) {
			return 0, false
		}
		return c.Num, true
	}
	k := slices.Index(p.Classes, c.String(p.TargetType))
	return float64(k), k >= 0
}

// Columns lists the dataset columns the encoding reads (features, and the
// target when withTarget).
func (p *Preprocessing) Columns(withTarget bool) []string {
	var out []string
	for _, f := range p.Features {
		out = append(out, f.Name)
	}
	if withTarget {
		out = append(out, p.Target)
	}
	return out
}

// OrderClasses sorts class labels and moves the positive class (if given)
// last, so that a binary model predicts P(positive).
func OrderClasses(classes []string, positive string) ([]string, error) {
	out := slices.Clone(classes)
	slices.SortFunc(out, compareLabels)
	if positive != "" {
		i := slices.Index(out, positive)
		if i < 0 {
			return nil, fmt.Errorf("positive_class %q is not among the classes found (%s)", positive, strings.Join(out, ", "))
		}
		out = append(append(out[:i:i], out[i+1:]...), positive)
	}
	return out, nil
}

// compareLabels sorts numeric labels numerically, others as text.
func compareLabels(a, b string) int {
	fa, ea := strconv.ParseFloat(a, 64)
	fb, eb := strconv.ParseFloat(b, 64)
	if ea == nil && eb == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}
