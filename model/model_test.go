package model

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo/internal/ml"
)

func testPrep() Preprocessing {
	return Preprocessing{Task: "classification", Target: "y", TargetType: "string", Classes: []string{"no", "yes"},
		Features: []Feature{
			{Name: "age", Type: "int", Kind: Numeric, Mean: 40, Std: 10},
			{Name: "ward", Type: "string", Kind: Categorical, Categories: []string{"north", "south"}},
			{Name: "smoker", Type: "bool", Kind: Categorical, Categories: []string{"false", "true"}},
		}}
}

func TestEncodeRow(t *testing.T) {
	p := testPrep()
	if p.Width() != 5 {
		t.Fatalf("width = %d, want 5", p.Width())
	}
	if diff := cmp.Diff([]string{"age", "ward=north", "ward=south", "smoker=false", "smoker=true"}, p.FeatureNames()); diff != "" {
		t.Fatal(diff)
	}
	for _, tc := range []struct {
		row  map[string]Cell
		want []float64
	}{
		{map[string]Cell{"age": {Num: 50}, "ward": {Str: "south", Text: true}, "smoker": {Num: 1}}, []float64{1, 0, 1, 0, 1}},
		// Nulls: the mean for numbers, all zeros for categories; an unseen
		// category is all zeros too; a number written as text is read.
		{map[string]Cell{"age": {Null: true}, "ward": {Str: "east", Text: true}, "smoker": {Null: true}}, []float64{0, 0, 0, 0, 0}},
		{map[string]Cell{"age": {Str: " 30 ", Text: true}}, []float64{-1, 0, 0, 0, 0}},
		{map[string]Cell{"age": {Str: "old", Text: true}}, []float64{0, 0, 0, 0, 0}},
	} {
		out := make([]float64, p.Width())
		p.EncodeRow(func(c string) Cell {
			if v, ok := tc.row[c]; ok {
				return v
			}
			return Cell{Null: true}
		}, out)
		if diff := cmp.Diff(tc.want, out); diff != "" {
			t.Errorf("%v: %s", tc.row, diff)
		}
	}
	if y, ok := p.EncodeTarget(Cell{Str: "yes", Text: true}); !ok || y != 1 {
		t.Errorf("target yes = %g %v", y, ok)
	}
	if _, ok := p.EncodeTarget(Cell{Str: "maybe", Text: true}); ok {
		t.Error("an unknown class was encoded")
	}
	reg := Preprocessing{Task: "regression"}
	if _, ok := reg.EncodeTarget(Cell{Num: math.NaN()}); ok {
		t.Error("a NaN regression target was encoded")
	}
}

func TestOrderClasses(t *testing.T) {
	for _, tc := range []struct {
		in       []string
		positive string
		want     []string
	}{
		{[]string{"b", "a"}, "", []string{"a", "b"}},
		{[]string{"10", "9", "1"}, "", []string{"1", "9", "10"}}, // numeric labels numerically
		{[]string{"malignant", "benign"}, "benign", []string{"malignant", "benign"}},
	} {
		got, err := OrderClasses(tc.in, tc.positive)
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("OrderClasses(%v, %q) = %v, %v; want %v", tc.in, tc.positive, got, err, tc.want)
		}
	}
	if _, err := OrderClasses([]string{"a", "b"}, "c"); err == nil || !strings.Contains(err.Error(), `positive_class "c"`) {
		t.Errorf("unknown positive class: %v", err)
	}
}

func TestDocumentRoundTripAndPredict(t *testing.T) {
	p := testPrep()
	spec := ml.Spec{Package: "glm", Task: ml.Classification, NumFeatures: p.Width(), Classes: p.Classes}
	// A model that says "yes" for the south ward: weight 5 on ward=south.
	params := []float64{0, 0, 5, 0, 0, -2.5}
	doc, err := New(spec, p, params, Metadata{Session: "sess_x", Round: 3})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(doc)
	loaded, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	preds, err := loaded.Predict([]map[string]any{{"ward": "south", "age": 30.0}, {"ward": "north"}, {}})
	if err != nil {
		t.Fatal(err)
	}
	if preds[0].Label != "yes" || preds[1].Label != "no" || math.Abs(preds[0].Probabilities["yes"]-1/(1+math.Exp(-2.5))) > 1e-12 {
		t.Fatalf("predictions = %+v", preds)
	}
	for _, bad := range []string{`{}`, `{"format":"silo-model/9"}`, `not json`,
		`{"format":"silo-model/1","spec":{"package":"glm","task":"classification","num_features":2,"classes":["a","b"]},"preprocessing":{"task":"classification","features":[{"name":"x","kind":"numeric","mean":0,"std":1}],"classes":["a","b"]},"params":[0,0]}`,
	} {
		if _, err := Load(strings.NewReader(bad)); err == nil {
			t.Errorf("Load(%.60s) accepted a bad document", bad)
		}
	}
}
