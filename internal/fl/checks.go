package fl

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
)

// A runner's answers are checked before they touch the global model: a
// hostile or broken runner's garbage is left out of its round, never
// averaged into everyone's model.

// MaxParam bounds every parameter of an update: a model whose weights reach
// it has diverged, or the update is hostile.
const MaxParam = 1e6

// MaxTestRows bounds a client's claimed test rows: more is a lie.
const MaxTestRows = 1 << 40

// CheckStats decodes a client's statistics and refuses impossible ones
// (negative or inconsistent counts, non-finite sums), which would corrupt
// every client's standardisation.
func CheckStats(output []byte) (silo.StatsOutput, error) {
	var out silo.StatsOutput
	if err := json.Unmarshal(output, &out); err != nil {
		return out, fmt.Errorf("unreadable statistics: %v", err)
	}
	if out.NTrain <= 0 || out.NTest < 0 {
		return out, fmt.Errorf("statistics claim %d training and %d test rows", out.NTrain, out.NTest)
	}
	for col, st := range out.Numeric {
		if st.Count < 0 || st.Count > out.NTrain || math.IsNaN(st.Sum+st.SumSq) || math.IsInf(st.Sum+st.SumSq, 0) || st.SumSq < 0 {
			return out, fmt.Errorf("impossible statistics for column %s", col)
		}
	}
	counts := []map[string]int64{out.Classes}
	for _, c := range out.Categories {
		counts = append(counts, c)
	}
	for _, m := range counts {
		for _, n := range m {
			if n < 0 || n > out.NTrain {
				return out, fmt.Errorf("impossible category count %d for %d rows", n, out.NTrain)
			}
		}
	}
	return out, nil
}

// CheckUpdate decodes a client's update — its counts and its parameters —
// and refuses one that could corrupt the global model: unreadable, the
// wrong shape, non-finite or absurd values, or no training rows behind it.
func CheckUpdate(output, params []byte, n int) (silo.FitOutput, []float64, error) {
	var out silo.FitOutput
	if err := json.Unmarshal(output, &out); err != nil {
		return out, nil, fmt.Errorf("unreadable update: %v", err)
	}
	p, err := ml.ParseParams(params)
	if err != nil {
		return out, nil, fmt.Errorf("unreadable parameters: %v", err)
	}
	if len(p) != n {
		return out, nil, fmt.Errorf("update has %d parameters, the model has %d", len(p), n)
	}
	if out.NTrain <= 0 || out.Steps < 0 {
		return out, nil, fmt.Errorf("update claims %d training rows and %d steps", out.NTrain, out.Steps)
	}
	for i, v := range p {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > MaxParam {
			return out, nil, fmt.Errorf("parameter %d is %g: the local model diverged (lower the learning rate) or the update is corrupt", i, v)
		}
	}
	return out, p, nil
}

// Evaluation is one client's checked test metrics, with its score
// histograms when it sent consistent ones (binary classification).
type Evaluation struct {
	NTest    int64
	Metrics  map[string]float64
	Pos, Neg []int64
}

// CheckEvaluation decodes a client's test metrics; non-finite values are
// left out, and missing or inconsistent histograms are left nil (the round
// then averages the clients' ROC AUC instead of pooling it).
func CheckEvaluation(output []byte) (Evaluation, error) {
	var out silo.EvaluateOutput
	if err := json.Unmarshal(output, &out); err != nil {
		return Evaluation{}, fmt.Errorf("unreadable metrics: %v", err)
	}
	if out.NTest <= 0 || out.NTest > MaxTestRows {
		return Evaluation{}, fmt.Errorf("metrics claim %d test rows", out.NTest)
	}
	ev := Evaluation{NTest: out.NTest, Metrics: map[string]float64{}}
	for k, v := range out.Metrics {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			ev.Metrics[k] = v
		}
	}
	p, okp := out.PosHist.Dense(silo.ScoreBins)
	q, okq := out.NegHist.Dense(silo.ScoreBins)
	if okp && okq && len(out.PosHist)+len(out.NegHist) > 0 && HistTotal(p, q) == out.NTest {
		ev.Pos, ev.Neg = p, q
	}
	return ev, nil
}

// PoolEvaluations combines clients' test metrics into federated ones: each
// metric averaged weighted by test rows, and for classification the ROC AUC
// pooled over every client's test rows from the histograms when all of them
// sent one. It reports false when there is nothing to pool.
func PoolEvaluations(evals []Evaluation, classification bool) (map[string]float64, bool) {
	fed := map[string]float64{}
	var total float64
	pos, neg := make([]int64, silo.ScoreBins), make([]int64, silo.ScoreBins)
	hist := true
	for _, ev := range evals {
		w := float64(ev.NTest)
		for k, v := range ev.Metrics {
			fed[k] += w * v
		}
		total += w
		if ev.Pos == nil {
			hist = false
			continue
		}
		for i := range pos {
			pos[i] += ev.Pos[i]
			neg[i] += ev.Neg[i]
		}
	}
	if total == 0 {
		return nil, false
	}
	for k := range fed {
		fed[k] /= total
	}
	if hist && classification {
		if auc, ok := HistogramAUC(pos, neg); ok {
			fed["roc_auc"] = auc // pooled over every client's test rows, not averaged
		}
	}
	return fed, true
}

// HistTotal counts the rows of a pair of histograms; negative or absurd
// bins make it disagree with any real row count.
func HistTotal(pos, neg []int64) int64 {
	var n int64
	for i := range pos {
		if pos[i] < 0 || neg[i] < 0 || pos[i] > MaxTestRows || neg[i] > MaxTestRows {
			return -1 // also keeps the sum from wrapping round to a plausible count
		}
		n += pos[i] + neg[i]
	}
	return n
}

// HistogramAUC is the ROC AUC of scores binned by class (ties within a bin
// count half), the Mann–Whitney statistic over the pooled test rows.
func HistogramAUC(pos, neg []int64) (float64, bool) {
	var np, nn int64
	for i := range pos {
		np += pos[i]
		nn += neg[i]
	}
	if np == 0 || nn == 0 {
		return 0, false
	}
	var below, sum float64
	for i := range pos {
		sum += float64(pos[i]) * (below + float64(neg[i])/2)
		below += float64(neg[i])
	}
	return sum / (float64(np) * float64(nn)), true
}
