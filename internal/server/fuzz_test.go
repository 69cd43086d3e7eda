package server

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
)

// FuzzRunnerResults: whatever a runner answers to a stats, fit or evaluate
// task, the server's checks either refuse it or accept something sound —
// positive row counts, updates of the model's shape with finite, bounded
// parameters, a pooled AUC between 0 and 1 — and never panic.
func FuzzRunnerResults(f *testing.F) {
	f.Add([]byte(`{"n_train":10,"n_test":2,"numeric":{"x":{"count":10,"sum":3,"sum_sq":9}},"classes":{"a":4,"b":6}}`))
	params, _ := json.Marshal(ml.MarshalParams([]float64{0.5, -1, 2}))
	f.Add([]byte(`{"params":` + string(params) + `,"n_train":8,"steps":3}`))
	f.Add([]byte(`{"n_test":3,"metrics":{"accuracy":0.5},"pos_hist":[1,0],"neg_hist":[0,2]}`))
	f.Add([]byte(`{"params":"AAAA","n_train":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		task := &silo.Task{Output: b}
		var so silo.StatsOutput
		if checkStats(task, &so) == nil {
			if so.NTrain <= 0 || so.NTest < 0 {
				t.Fatalf("accepted statistics with %d training and %d test rows", so.NTrain, so.NTest)
			}
			for col, st := range so.Numeric {
				if st.Count > so.NTrain || math.IsNaN(st.Sum) || math.IsInf(st.SumSq, 0) {
					t.Fatalf("accepted impossible statistics for %s: %+v", col, st)
				}
			}
		}
		if out, p, err := checkUpdate(task, 3); err == nil {
			if len(p) != 3 || out.NTrain <= 0 {
				t.Fatalf("accepted an update of %d parameters from %d rows", len(p), out.NTrain)
			}
			for _, v := range p {
				if math.IsNaN(v) || math.Abs(v) > maxParam {
					t.Fatalf("accepted parameter %g", v)
				}
			}
		}
		var eo silo.EvaluateOutput
		// The histograms finishEvaluate pools: as many rows as the client
		// claims, within bounds.
		if json.Unmarshal(b, &eo) == nil && len(eo.PosHist) == len(eo.NegHist) && eo.NTest > 0 && eo.NTest <= maxTestRows && histTotal(eo.PosHist, eo.NegHist) == eo.NTest {
			if auc, ok := histogramAUC(eo.PosHist, eo.NegHist); ok && !(auc >= 0 && auc <= 1) {
				t.Fatalf("pooled AUC %g from histograms %v / %v", auc, eo.PosHist, eo.NegHist)
			}
		}
	})
}
