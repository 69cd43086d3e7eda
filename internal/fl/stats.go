package fl

import "math"

// Federated standardisation (SPEC §4): before round 1 every client reports
// per-column aggregates of its training rows, the server merges them, and the
// merged statistics — identical for every client — standardise the features
// and fix the one-hot categories and the classes. Counts and sums merge
// exactly by addition, so the merged mean and standard deviation are those
// of the pooled data, without any row leaving its silo.

// ColumnStats summarises one numeric column's non-null values.
type ColumnStats struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
}

// ClientStats is what one client reports, and what MergeStats returns.
type ClientStats struct {
	// Rows counts all rows, nulls included.
	Rows int64 `json:"rows"`
	// Numeric maps a numeric column to its statistics.
	Numeric map[string]ColumnStats `json:"numeric"`
	// Categories maps a categorical column to the count of each category.
	Categories map[string]map[string]int64 `json:"categories"`
	// Classes counts the target classes seen (classification only).
	Classes map[string]int64 `json:"classes,omitempty"`
}

// MergeStats combines clients' statistics into those of their pooled rows. A
// column or category missing from some clients simply counts nothing there.
// The result's maps are always non-nil and share nothing with the inputs.
func MergeStats(clients []ClientStats) ClientStats {
	out := ClientStats{
		Numeric:    map[string]ColumnStats{},
		Categories: map[string]map[string]int64{},
		Classes:    map[string]int64{},
	}
	for _, c := range clients {
		out.Rows += c.Rows
		for col, s := range c.Numeric {
			t := out.Numeric[col]
			t.Count += s.Count
			t.Sum += s.Sum
			t.SumSq += s.SumSq
			out.Numeric[col] = t
		}
		for col, cats := range c.Categories {
			t := out.Categories[col]
			if t == nil {
				t = map[string]int64{}
				out.Categories[col] = t
			}
			for cat, n := range cats {
				t[cat] += n
			}
		}
		for class, n := range c.Classes {
			out.Classes[class] += n
		}
	}
	return out
}

// Add includes one value in s; clients build their ColumnStats with it.
func (s *ColumnStats) Add(x float64) {
	s.Count++
	s.Sum += x
	s.SumSq += x * x
}

// MeanStd returns the mean and the population standard deviation (divisor
// Count, as scikit-learn's StandardScaler) of the summarised values.
//
// A standard deviation of 0 — a constant column, a single value, or no
// values at all (mean 0 then) — is returned as 1, so that standardising,
// (x − mean)/std, maps the column to 0 instead of dividing by zero; a
// constant feature carries no information either way.
//
// The variance comes from the sums as SumSq/n − mean², which loses relative
// precision about (mean/std)² × 1e-16: negligible for standardisation unless
// a column's mean dwarfs its spread by ~10⁶ (e.g. raw Unix timestamps).
func (s ColumnStats) MeanStd() (mean, std float64) {
	if s.Count <= 0 {
		return 0, 1
	}
	n := float64(s.Count)
	mean = s.Sum / n
	variance := s.SumSq/n - mean*mean
	// Below 1e-14·mean² the variance is rounding dust of the subtraction
	// (a constant column), not spread; it may even come out negative.
	if !(variance > 1e-14*mean*mean) {
		return mean, 1
	}
	std = math.Sqrt(variance)
	return mean, std
}
