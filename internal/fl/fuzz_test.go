package fl

import (
	"math"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
)

// FuzzRunnerResults: whatever a runner answers to a stats, fit or evaluate
// task, the checks either refuse it or accept something sound — positive
// row counts, updates of the model's shape with finite, bounded parameters,
// a pooled AUC between 0 and 1 — and never panic.
func FuzzRunnerResults(f *testing.F) {
	params := ml.MarshalParams([]float64{0.5, -1, 2})
	f.Add([]byte(`{"n_train":10,"n_test":2,"numeric":{"x":{"count":10,"sum":3,"sum_sq":9}},"classes":{"a":4,"b":6}}`), params)
	f.Add([]byte(`{"n_train":8,"steps":3}`), params)
	f.Add([]byte(`{"n_test":3,"metrics":{"accuracy":0.5},"pos_hist":[[1,1]],"neg_hist":[[0,2]]}`), []byte(nil))
	f.Add([]byte(`{"n_train":-1}`), []byte("SILOW1"))
	f.Fuzz(func(t *testing.T, b, p []byte) {
		if so, err := CheckStats(b); err == nil {
			if so.NTrain <= 0 || so.NTest < 0 {
				t.Fatalf("accepted statistics with %d training and %d test rows", so.NTrain, so.NTest)
			}
			for col, st := range so.Numeric {
				if st.Count > so.NTrain || math.IsNaN(st.Sum) || math.IsInf(st.SumSq, 0) {
					t.Fatalf("accepted impossible statistics for %s: %+v", col, st)
				}
			}
		}
		if out, ps, err := CheckUpdate(b, p, 3); err == nil {
			if len(ps) != 3 || out.NTrain <= 0 {
				t.Fatalf("accepted an update of %d parameters from %d rows", len(ps), out.NTrain)
			}
			for _, v := range ps {
				if math.IsNaN(v) || math.Abs(v) > MaxParam {
					t.Fatalf("accepted parameter %g", v)
				}
			}
		}
		if ev, err := CheckEvaluation(b); err == nil {
			if ev.Pos != nil && (len(ev.Pos) != silo.ScoreBins || HistTotal(ev.Pos, ev.Neg) != ev.NTest) {
				t.Fatalf("accepted histograms of %d rows for %d test rows", HistTotal(ev.Pos, ev.Neg), ev.NTest)
			}
			fed, ok := PoolEvaluations([]Evaluation{ev}, true)
			if !ok {
				t.Fatalf("no pooled metrics from an accepted evaluation %+v", ev)
			}
			if auc := fed["roc_auc"]; ev.Pos != nil && !(auc >= 0 && auc <= 1) {
				t.Fatalf("pooled AUC %g from histograms %v / %v", auc, ev.Pos, ev.Neg)
			}
		}
	})
}
