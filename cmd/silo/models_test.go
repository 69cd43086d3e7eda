package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/model"
)

// TestModelsPredict predicts a local CSV with 'silo models predict' and
// checks every value against the SDK's Document.Predict on the same rows,
// typed as a runner reads them: identifiers first and exact, nulls, an
// unseen category, booleans and integer categories, a missing column.
func TestModelsPredict(t *testing.T) {
	prep := model.Preprocessing{Task: "classification", Target: "y", TargetType: "string", Classes: []string{"a", "b", "c"},
		Identifiers: []string{"id"},
		Features: []model.Feature{
			{Name: "age", Type: "int", Kind: model.Numeric, Mean: 40, Std: 10},
			{Name: "bmi", Type: "float", Kind: model.Numeric, Mean: 25.5, Std: 4.25},
			{Name: "ward", Type: "string", Kind: model.Categorical, Categories: []string{"north", "south"}},
			{Name: "smoker", Type: "bool", Kind: model.Categorical, Categories: []string{"false", "true"}},
			{Name: "grade", Type: "int", Kind: model.Categorical, Categories: []string{"1", "10", "2"}},
			{Name: "absent", Type: "float", Kind: model.Numeric, Mean: 1, Std: 1},
		}}
	spec := ml.Spec{Package: "ffnet", Task: ml.Classification, NumFeatures: prep.Width(), Classes: prep.Classes, HiddenLayers: []int{4}, Activation: "tanh"}
	m, err := ml.NewModel(spec, 11)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := model.New(spec, prep, m.Params(), model.Metadata{Session: "sess_test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	docPath := writeJSONFile(t, "model.json", doc)
	data := "id,age,bmi,ward,smoker,grade,y\n" +
		"9007199254740993,51,31.2,south,true,10,a\n" +
		"2,NA,,north,FALSE,2,b\n" +
		"3,29,18.75,east,,1,c\n" +
		",40,25.5,south,true,,a\n"
	in := filepath.Join(dir, "rows.csv")
	os.WriteFile(in, []byte(data), 0o600)
	want := [][]string{{"id", "prediction", "p_a", "p_b", "p_c"}}
	preds, err := doc.Predict([]map[string]any{
		{"age": 51.0, "bmi": 31.2, "ward": "south", "smoker": true, "grade": 10.0},
		{"ward": "north", "smoker": false, "grade": 2.0},
		{"age": 29.0, "bmi": 18.75, "ward": "east", "grade": 1.0},
		{"age": 40.0, "bmi": 25.5, "ward": "south", "smoker": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range preds {
		row := []string{[]string{"9007199254740993", "2", "3", ""}[i], p.Label}
		for _, c := range prep.Classes {
			row = append(row, strconv.FormatFloat(p.Probabilities[c], 'g', -1, 64))
		}
		want = append(want, row)
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"models", "predict", docPath, "--input", in}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("predictions differ from Document.Predict (-want +got):\n%s", diff)
	}

	// To a file, with --json.
	outPath := filepath.Join(dir, "predictions.csv")
	out.Reset()
	if code := run(context.Background(), []string{"models", "predict", docPath, "--input", in, "-o", outPath, "--json"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res struct {
		Rows int    `json:"rows"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Rows != 4 || res.Path != outPath {
		t.Fatalf("--json = %s (%v)", out.String(), err)
	}
	if b, _ := os.ReadFile(outPath); !strings.HasPrefix(string(b), "id,prediction,p_a,p_b,p_c\n9007199254740993,") {
		t.Fatalf("%s holds:\n%s", outPath, b)
	}

	// Mistakes say what to fix.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"models", "predict", docPath}, 2, "--input FILE is required"},
		{[]string{"models", "predict", in, "--input", in}, 1, "not a Silo model document"},
		{[]string{"models", "predict", docPath, "--input", dir}, 1, "is a directory"},
	} {
		errOut.Reset()
		if code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
