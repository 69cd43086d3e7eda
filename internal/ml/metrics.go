package ml

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Metrics maps a metric name to its value. Classification reports "loss"
// (= "log_loss"), "accuracy" and "roc_auc"; regression reports "loss"
// (= "mse"), "mae" and "r2". A metric that is undefined on the data — ROC AUC
// when only one class is present, R² when the target is constant — is left
// out rather than reported as NaN, which JSON cannot carry.
type Metrics map[string]float64

// logLossEps clips probabilities in the log loss so that one confident
// mistake costs log(1e15) ≈ 34.5 rather than +Inf.
const logLossEps = 1e-15

// Evaluate scores predictions against the truth. For classification, yTrue
// holds class indices and pred is n×classes probabilities (binary: two
// columns, the positive class second); ROC AUC is exact with ties given
// midranks, and for more than two classes it is the macro average of the
// one-vs-rest AUCs of the classes present. For regression pred is n×1.
func Evaluate(task Task, classes int, yTrue []float64, pred *mat.Dense) (Metrics, error) {
	n := len(yTrue)
	if n == 0 {
		return nil, errors.New("ml: no rows to evaluate")
	}
	if pred == nil || pred.IsEmpty() {
		return nil, errors.New("ml: no predictions to evaluate")
	}
	r, c := pred.Dims()
	if r != n {
		return nil, fmt.Errorf("ml: %d predictions for %d targets", r, n)
	}
	for i := 0; i < r; i++ {
		if j := firstNonFinite(pred.RawRowView(i)); j >= 0 {
			return nil, fmt.Errorf("ml: prediction %d of row %d is %g", j, i, pred.At(i, j))
		}
	}
	switch task {
	case Classification:
		if classes < 2 {
			return nil, fmt.Errorf("ml: classification needs at least 2 classes, got %d", classes)
		}
		if c != classes {
			return nil, fmt.Errorf("ml: predictions have %d columns for %d classes", c, classes)
		}
		h := head{kind: headSoftmax, classes: classes}
		for i, y := range yTrue {
			if err := h.checkTarget(y); err != nil {
				return nil, fmt.Errorf("ml: target of row %d: %w", i, err)
			}
		}
		return classificationMetrics(classes, yTrue, pred), nil
	case Regression:
		if c != 1 {
			return nil, fmt.Errorf("ml: regression predictions need 1 column, got %d", c)
		}
		if i := firstNonFinite(yTrue); i >= 0 {
			return nil, fmt.Errorf("ml: target of row %d is %g", i, yTrue[i])
		}
		return regressionMetrics(yTrue, pred.RawMatrix()), nil
	default:
		return nil, fmt.Errorf("ml: unknown task %q", task)
	}
}

func classificationMetrics(k int, y []float64, pred *mat.Dense) Metrics {
	n := len(y)
	logLoss, correct := 0.0, 0
	for i, yi := range y {
		row := pred.RawRowView(i)
		p := min(max(row[int(yi)], logLossEps), 1-logLossEps)
		logLoss -= math.Log(p)
		if argmax(row) == int(yi) {
			correct++
		}
	}
	logLoss /= float64(n)
	m := Metrics{"loss": logLoss, "log_loss": logLoss, "accuracy": float64(correct) / float64(n)}

	scores := make([]float64, n)
	pos := make([]bool, n)
	classAUC := func(c int) (float64, bool) {
		for i, yi := range y {
			scores[i] = pred.At(i, c)
			pos[i] = int(yi) == c
		}
		return rocAUC(scores, pos)
	}
	if k == 2 {
		if auc, ok := classAUC(1); ok {
			m["roc_auc"] = auc
		}
		return m
	}
	sum, count := 0.0, 0
	for c := 0; c < k; c++ {
		if auc, ok := classAUC(c); ok {
			sum += auc
			count++
		}
	}
	if count > 0 {
		m["roc_auc"] = sum / float64(count)
	}
	return m
}

// argmax returns the first index of the largest value.
func argmax(v []float64) int {
	best := 0
	for j, x := range v {
		if x > v[best] {
			best = j
		}
	}
	return best
}

// rocAUC is the exact area under the ROC curve: the Mann–Whitney statistic
// with tied scores given their average rank, which counts a tied
// positive/negative pair as half correct. It reports false when either class
// is absent.
func rocAUC(scores []float64, pos []bool) (float64, bool) {
	n := len(scores)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	var nPos, rankSum float64
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && scores[idx[hi]] == scores[idx[lo]] {
			hi++
		}
		mid := float64(lo+hi+1) / 2 // ranks lo+1 … hi averaged
		for _, i := range idx[lo:hi] {
			if pos[i] {
				nPos++
				rankSum += mid
			}
		}
		lo = hi
	}
	nNeg := float64(n) - nPos
	if nPos == 0 || nNeg == 0 {
		return 0, false
	}
	return (rankSum - nPos*(nPos+1)/2) / (nPos * nNeg), true
}

func regressionMetrics(y []float64, pred rawMatrix) Metrics {
	n := float64(len(y))
	mean := 0.0
	for _, v := range y {
		mean += v
	}
	mean /= n
	var sse, sae, sst float64
	for i, v := range y {
		d := v - pred.Data[i*pred.Stride]
		sse += d * d
		sae += math.Abs(d)
		sst += (v - mean) * (v - mean)
	}
	m := Metrics{"loss": sse / n, "mse": sse / n, "mae": sae / n}
	if sst > 0 {
		m["r2"] = 1 - sse/sst
	}
	return m
}
