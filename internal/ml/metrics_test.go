package ml

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gonum.org/v1/gonum/mat"
)

// binaryPred builds the two-column probabilities of P(class 1) = p.
func binaryPred(p ...float64) *mat.Dense {
	m := mat.NewDense(len(p), 2, nil)
	for i, v := range p {
		m.Set(i, 0, 1-v)
		m.Set(i, 1, v)
	}
	return m
}

func TestEvaluateHandComputed(t *testing.T) {
	approx := cmpopts.EquateApprox(0, 1e-12)
	cases := []struct {
		name    string
		task    Task
		classes int
		y       []float64
		pred    *mat.Dense
		want    Metrics
	}{{
		// Ranks of the scores .1 .35 .4 .8 are 1 2 3 4; positives hold 2 and 4:
		// AUC = (6 − 3)/(2·2) = 0.75.
		name: "binary", task: Classification, classes: 2,
		y: []float64{0, 0, 1, 1}, pred: binaryPred(.1, .4, .35, .8),
		want: Metrics{
			"roc_auc":  0.75,
			"accuracy": 0.75, // .35 is the only miss
			"log_loss": -(math.Log(.9) + math.Log(.6) + math.Log(.35) + math.Log(.8)) / 4,
			"loss":     -(math.Log(.9) + math.Log(.6) + math.Log(.35) + math.Log(.8)) / 4,
		},
	}, {
		// The tied pair (.5 positive, .5 negative) counts one half:
		// (0.5 + 1 + 1 + 1)/4.
		name: "binary ties", task: Classification, classes: 2,
		y: []float64{0, 1, 0, 1}, pred: binaryPred(.5, .5, .2, .9),
		want: Metrics{
			"roc_auc":  0.875,
			"accuracy": 0.75, // .5 vs .5 goes to the first column, class 0
			"log_loss": -(math.Log(.5) + math.Log(.5) + math.Log(.8) + math.Log(.9)) / 4,
			"loss":     -(math.Log(.5) + math.Log(.5) + math.Log(.8) + math.Log(.9)) / 4,
		},
	}, {
		name: "all scores tied", task: Classification, classes: 2,
		y: []float64{0, 1, 1}, pred: binaryPred(.3, .3, .3),
		want: Metrics{"roc_auc": 0.5, "accuracy": 1.0 / 3, "log_loss": -(math.Log(.7) + 2*math.Log(.3)) / 3, "loss": -(math.Log(.7) + 2*math.Log(.3)) / 3},
	}, {
		// A certain mistake is clipped to log(1e15), not +Inf.
		name: "clipped", task: Classification, classes: 2,
		y: []float64{1, 0}, pred: binaryPred(0, 0),
		want: Metrics{"roc_auc": 0.5, "accuracy": 0.5, "log_loss": (math.Log(1e15) - math.Log1p(-1e-15)) / 2, "loss": (math.Log(1e15) - math.Log1p(-1e-15)) / 2},
	}, {
		// One-vs-rest AUCs: class 0 → 1, class 1 → 1, class 2 → positives
		// {.6, .3} vs negatives {.1, .3}: (1 + 1 + 1 + 0.5)/4 = 0.875.
		name: "three classes", task: Classification, classes: 3,
		y: []float64{0, 1, 2, 2},
		pred: mat.NewDense(4, 3, []float64{
			.7, .2, .1,
			.2, .5, .3,
			.1, .3, .6,
			.3, .4, .3,
		}),
		want: Metrics{
			"roc_auc":  (1 + 1 + 0.875) / 3,
			"accuracy": 0.75,
			"log_loss": -(math.Log(.7) + math.Log(.5) + math.Log(.6) + math.Log(.3)) / 4,
			"loss":     -(math.Log(.7) + math.Log(.5) + math.Log(.6) + math.Log(.3)) / 4,
		},
	}, {
		name: "one class present omits roc_auc", task: Classification, classes: 2,
		y: []float64{1, 1}, pred: binaryPred(.6, .9),
		want: Metrics{"accuracy": 1, "log_loss": -(math.Log(.6) + math.Log(.9)) / 2, "loss": -(math.Log(.6) + math.Log(.9)) / 2},
	}, {
		// Residuals .5 −.5 0 −1: MSE 1.5/4, MAE 2/4; mean 2.875, SST 29.1875.
		name: "regression", task: Regression,
		y: []float64{3, -0.5, 2, 7}, pred: mat.NewDense(4, 1, []float64{2.5, 0, 2, 8}),
		want: Metrics{"loss": 0.375, "mse": 0.375, "mae": 0.5, "r2": 1 - 1.5/29.1875},
	}, {
		name: "constant target omits r2", task: Regression,
		y: []float64{2, 2}, pred: mat.NewDense(2, 1, []float64{1, 4}),
		want: Metrics{"loss": 2.5, "mse": 2.5, "mae": 1.5},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Evaluate(tc.task, tc.classes, tc.y, tc.pred)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, approx); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	cases := []struct {
		name    string
		task    Task
		classes int
		y       []float64
		pred    *mat.Dense
		want    string
	}{
		{"no rows", Classification, 2, nil, binaryPred(.5), "no rows"},
		{"length mismatch", Classification, 2, []float64{0, 1}, binaryPred(.5), "1 predictions for 2 targets"},
		{"columns", Classification, 3, []float64{0}, binaryPred(.5), "2 columns for 3 classes"},
		{"class index", Classification, 2, []float64{2}, binaryPred(.5), "not a class index"},
		{"fractional class", Classification, 2, []float64{0.5}, binaryPred(.5), "not a class index"},
		{"nan prediction", Classification, 2, []float64{1}, binaryPred(math.NaN()), "NaN"},
		{"regression columns", Regression, 0, []float64{1}, binaryPred(.5), "need 1 column"},
		{"inf target", Regression, 0, []float64{math.Inf(1)}, mat.NewDense(1, 1, []float64{1}), "+Inf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(tc.task, tc.classes, tc.y, tc.pred)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestAUCMatchesPairCount checks the rank formula against the definition,
// P(score⁺ > score⁻) + ½P(tie), on data with many ties.
func TestAUCMatchesPairCount(t *testing.T) {
	rng := newRand(20)
	const n = 300
	scores := make([]float64, n)
	pos := make([]bool, n)
	for i := range scores {
		scores[i] = float64(rng.IntN(10)) / 10
		pos[i] = rng.Float64() < scores[i]*0.8+0.1
	}
	var wins, pairs float64
	for i := range scores {
		for j := range scores {
			if pos[i] && !pos[j] {
				pairs++
				switch {
				case scores[i] > scores[j]:
					wins++
				case scores[i] == scores[j]:
					wins += 0.5
				}
			}
		}
	}
	got, ok := rocAUC(scores, pos)
	if !ok || math.Abs(got-wins/pairs) > 1e-12 {
		t.Errorf("rocAUC = %v (%v), pair count gives %v", got, ok, wins/pairs)
	}
}
