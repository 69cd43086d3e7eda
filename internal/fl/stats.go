package fl

import "github.com/silofl/silo"

// Federated standardisation: before round 1 every client reports per-column
// aggregates of its training rows (silo.StatsOutput), the server merges
// them, and the merged statistics — identical for every client —
// standardise the features and fix the one-hot categories and the classes.
// Counts and sums merge exactly by addition, so the merged mean and
// standard deviation are those of the pooled data, without any row leaving
// its silo.

// MergeStats combines clients' statistics into those of their pooled rows. A
// column or category missing from some clients simply counts nothing there.
// The result's maps are always non-nil and share nothing with the inputs.
func MergeStats(clients []silo.StatsOutput) silo.StatsOutput {
	out := silo.StatsOutput{
		Numeric:    map[string]silo.NumericStats{},
		Categories: map[string]map[string]int64{},
		Classes:    map[string]int64{},
	}
	for _, c := range clients {
		out.NTrain += c.NTrain
		out.NTest += c.NTest
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
