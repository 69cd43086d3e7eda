package ml

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gonum.org/v1/gonum/mat"
)

func TestSpecValidate(t *testing.T) {
	ok := func(mod func(*Spec)) Spec {
		s := Spec{Package: PackageGLM, Task: Regression, NumFeatures: 3}
		mod(&s)
		return s
	}
	ff := func(mod func(*Spec)) Spec {
		s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: classes(2), HiddenLayers: []int{4}}
		mod(&s)
		return s
	}
	cases := []struct {
		name string
		spec Spec
		want string // "" = valid
	}{
		{"glm regression", ok(func(s *Spec) {}), ""},
		{"ffnet", ff(func(s *Spec) {}), ""},
		{"no package", ok(func(s *Spec) { s.Package = "" }), "model package is required"},
		{"bad package", ok(func(s *Spec) { s.Package = "xgboost" }), `unknown model package "xgboost"`},
		{"no task", ok(func(s *Spec) { s.Task = "" }), "task is required"},
		{"no features", ok(func(s *Spec) { s.NumFeatures = 0 }), "at least one feature"},
		{"one class", ok(func(s *Spec) { s.Task, s.Classes = Classification, []string{"a"} }), "at least 2 classes, got 1"},
		{"duplicate class", ok(func(s *Spec) { s.Task, s.Classes = Classification, []string{"a", "a"} }), `class "a" is listed twice`},
		{"binomial with 3", ok(func(s *Spec) { s.Task, s.Classes, s.Family = Classification, classes(3), FamilyBinomial }), "use multinomial"},
		{"poisson classifier", ok(func(s *Spec) { s.Task, s.Classes, s.Family = Classification, classes(2), FamilyPoisson }), "cannot model classification"},
		{"classes in regression", ok(func(s *Spec) { s.Classes = classes(2) }), "only for classification"},
		{"binomial regression", ok(func(s *Spec) { s.Family = FamilyBinomial }), "is for classification"},
		{"unknown family", ok(func(s *Spec) { s.Family = "weibull" }), `unknown family "weibull"`},
		{"tweedie power", ok(func(s *Spec) { s.Family, s.TweediePower = FamilyTweedie, 2 }), "strictly between 1 and 2"},
		{"stray tweedie power", ok(func(s *Spec) { s.TweediePower = 1.5 }), "only used with family tweedie"},
		{"negative l1", ok(func(s *Spec) { s.L1 = -1 }), "l1 must be"},
		{"nan l2", ok(func(s *Spec) { s.L2 = math.NaN() }), "l2 must be"},
		{"glm with layers", ok(func(s *Spec) { s.HiddenLayers, s.Dropout = []int{3}, 0.5 }), "hidden_layers, dropout only apply to package ffnet"},
		{"ffnet without layers", ff(func(s *Spec) { s.HiddenLayers = nil }), "at least one hidden layer"},
		{"empty layer", ff(func(s *Spec) { s.HiddenLayers = []int{4, 0} }), "hidden layer 2 has 0 units"},
		{"activation", ff(func(s *Spec) { s.Activation = "gelu" }), `unknown activation "gelu"`},
		{"dropout 1", ff(func(s *Spec) { s.Dropout = 1 }), "dropout must be in [0, 1)"},
		{"huge", ff(func(s *Spec) { s.HiddenLayers = []int{1 << 20, 1 << 20} }), "more than 67108864 parameters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestNewModelNormalisesAndCounts(t *testing.T) {
	m := mustModel(t, Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 5, Classes: classes(3), HiddenLayers: []int{4, 2}}, 1)
	want := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 5, Classes: classes(3), Family: FamilyMultinomial, HiddenLayers: []int{4, 2}, Activation: ActivationReLU}
	if diff := cmp.Diff(want, m.Spec()); diff != "" {
		t.Errorf("normalised spec (-want +got):\n%s", diff)
	}
	if got, want := m.NumParams(), 5*4+4+4*2+2+2*3+3; got != want {
		t.Errorf("NumParams %d, want %d", got, want)
	}
	bin := mustModel(t, Spec{Package: PackageGLM, Task: Classification, NumFeatures: 5, Classes: classes(2)}, 1)
	if bin.Spec().Family != FamilyBinomial || bin.NumParams() != 6 || slices.ContainsFunc(bin.Params(), func(v float64) bool { return v != 0 }) {
		t.Errorf("binary GLM: family %s, %d params %v; want binomial, 6 zeros", bin.Spec().Family, bin.NumParams(), bin.Params())
	}

	// Initialisation is deterministic per seed and scaled to the fan-in.
	big := Spec{Package: PackageFFNet, Task: Regression, NumFeatures: 200, HiddenLayers: []int{100}}
	a, b, c := mustModel(t, big, 7), mustModel(t, big, 7), mustModel(t, big, 8)
	if !slices.Equal(a.Params(), b.Params()) || slices.Equal(a.Params(), c.Params()) {
		t.Error("initial parameters are not a function of the seed")
	}
	w := a.Params()[:200*100]
	std := norm2(w) / math.Sqrt(float64(len(w)))
	if he := math.Sqrt(2.0 / 200); math.Abs(std/he-1) > 0.05 {
		t.Errorf("ReLU layer weight std %.4f, want He %.4f", std, he)
	}
}

func TestParamsAreCopies(t *testing.T) {
	m := mustModel(t, Spec{Package: PackageGLM, Task: Regression, NumFeatures: 2}, 1)
	p := m.Params()
	p[0] = 42
	if m.Params()[0] != 0 {
		t.Error("mutating Params() changed the model")
	}
	in := []float64{1, 2, 3}
	if err := m.SetParams(in); err != nil {
		t.Fatal(err)
	}
	in[0] = 42
	if m.Params()[0] != 1 {
		t.Error("mutating the SetParams argument changed the model")
	}
	if err := m.SetParams([]float64{1, 2}); err == nil || !strings.Contains(err.Error(), "got 2 parameters, the model has 3") {
		t.Errorf("short vector: %v", err)
	}
	if err := m.SetParams([]float64{1, math.Inf(-1), 3}); err == nil || !strings.Contains(err.Error(), "parameter 1 is -Inf") {
		t.Errorf("infinite parameter: %v", err)
	}
}

func TestLoadModelRoundTrip(t *testing.T) {
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: []string{"lo", "mid", "hi"}, HiddenLayers: []int{5}, Activation: ActivationTanh, Dropout: 0.2, L2: 1e-3}
	m := mustModel(t, s, 3)
	d := Dataset{X: randomX(newRand(1), 40, 3), Y: randomTargets(newRand(2), m.Spec(), 40)}
	train(t, m, d, TrainOptions{Optimizer: adam(0.01, 8, 2)})

	// Through JSON (spec) and the wire format (params), as a model document would go.
	doc, err := json.Marshal(m.Spec())
	if err != nil {
		t.Fatal(err)
	}
	var spec Spec
	if err := json.Unmarshal(doc, &spec); err != nil {
		t.Fatal(err)
	}
	params, err := ParseParams(m.MarshalBinaryParams())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadModel(spec, params)
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := m.Predict(d.X)
	p2, _ := loaded.Predict(d.X)
	if !mat.Equal(p1, p2) {
		t.Error("the loaded model predicts differently")
	}
	if !strings.Contains(string(doc), `"hidden_layers":[5]`) || !strings.Contains(string(doc), `"family":"multinomial"`) {
		t.Errorf("spec JSON %s lacks the session-config field names", doc)
	}
}

func TestWireFormat(t *testing.T) {
	p := []float64{1.5, -0, math.SmallestNonzeroFloat64, -math.MaxFloat64, 1e-300}
	b := MarshalParams(p)
	wantHead := append([]byte("SILOW1"), 5, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(b[:14], wantHead) || len(b) != 14+8*5 {
		t.Fatalf("header % x, length %d", b[:14], len(b))
	}
	if !bytes.Equal(b[14:22], []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f}) { // 1.5, little-endian
		t.Errorf("first value encodes as % x", b[14:22])
	}
	got, err := ParseParams(b)
	if err != nil || !slices.Equal(got, p) || math.Signbit(got[1]) != math.Signbit(p[1]) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if got, err := ParseParams(MarshalParams(nil)); err != nil || len(got) != 0 {
		t.Errorf("empty vector: %v, %v", got, err)
	}

	nan := MarshalParams([]float64{0, math.NaN()})
	huge := slices.Clone(b)
	huge[13] = 0xff
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":     {nil, "missing SILOW1 header"},
		"magic":     {append([]byte("SILOW2"), b[6:]...), "missing SILOW1 header"},
		"truncated": {b[:len(b)-1], "must be 54 bytes, got 53"},
		"trailing":  {append(slices.Clone(b), 0), "must be 54 bytes, got 55"},
		"nan":       {nan, "parameter 1 is NaN"},
		"count":     {huge, "more than the limit"},
	} {
		if _, err := ParseParams(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tc.want)
		}
	}
}

func TestNewDataset(t *testing.T) {
	d, err := NewDataset([]float64{1, 2, 3, 4, 5, 6}, 3, []float64{0, 1})
	if err != nil || d.Len() != 2 || d.X.At(1, 0) != 4 {
		t.Fatalf("NewDataset: %v, %v", d, err)
	}
	if _, err := NewDataset([]float64{1, 2, 3}, 2, []float64{0, 1}); err == nil {
		t.Error("mismatched lengths accepted")
	}
}
