package fl

import (
	"github.com/silofl/silo"

	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// row is one record of a toy dataset: a numeric column that may be null, a
// second numeric column far from zero, a category and a class.
type row struct {
	x     float64
	xNull bool
	y     float64
	color string
	class string
}

func statsOf(rows []row) silo.StatsOutput {
	s := silo.StatsOutput{Numeric: map[string]silo.NumericStats{}, Categories: map[string]map[string]int64{"color": {}}, Classes: map[string]int64{}}
	for _, r := range rows {
		s.NTrain++
		if !r.xNull {
			x := s.Numeric["x"]
			x.Add(r.x)
			s.Numeric["x"] = x
		}
		y := s.Numeric["y"]
		y.Add(r.y)
		s.Numeric["y"] = y
		s.Categories["color"][r.color]++
		s.Classes[r.class]++
	}
	return s
}

func toyRows(rng *rand.Rand, n int, dyadic bool) []row {
	colors := []string{"red", "green", "blue", "teal"}
	rows := make([]row, n)
	for i := range rows {
		r := row{
			x:     5 + 2*rng.NormFloat64(),
			xNull: rng.IntN(10) == 0,
			y:     1000 + 3*rng.NormFloat64(),
			color: colors[rng.IntN(len(colors))],
			class: []string{"no", "yes"}[rng.IntN(2)],
		}
		if dyadic { // multiples of 1/8 with small magnitude: every sum is exact
			r.x = math.Round(r.x*8) / 8
			r.y = math.Round(r.y*8) / 8
		}
		rows[i] = r
	}
	return rows
}

// split cuts rows into shards of uneven sizes, one of them empty.
func split(rows []row) [][]row {
	a, b := len(rows)/7, len(rows)/2
	return [][]row{rows[:a], rows[a:a], rows[a:b], rows[b:]}
}

func TestMergeStatsExact(t *testing.T) {
	// With dyadic values every partial sum is exact, so merging the shards'
	// statistics must reproduce the whole dataset's statistics bit for bit,
	// whatever the order of addition.
	rows := toyRows(rand.New(rand.NewPCG(1, 2)), 5000, true)
	var shards []silo.StatsOutput
	for _, part := range split(rows) {
		shards = append(shards, statsOf(part))
	}
	got, want := MergeStats(shards), statsOf(rows)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged stats differ from the whole's:\n got %+v\nwant %+v", got, want)
	}
}

func TestMergeStatsReal(t *testing.T) {
	// With arbitrary reals the sums differ only by rounding; mean and std must
	// agree with a direct two-pass computation on the pooled rows to 1e-12.
	// Column y (mean 1000, std 3) shows the documented limit of sums of
	// squares: SumSq/n − mean² cancels (mean/std)² ≈ 10⁵ times, so only about
	// 1e-16·10⁵ relative precision survives, whether merged or not.
	rows := toyRows(rand.New(rand.NewPCG(3, 4)), 20000, false)
	var shards []silo.StatsOutput
	for _, part := range split(rows) {
		shards = append(shards, statsOf(part))
	}
	got := MergeStats(shards)
	whole := statsOf(rows)
	if got.NTrain != whole.NTrain || !reflect.DeepEqual(got.Categories, whole.Categories) || !reflect.DeepEqual(got.Classes, whole.Classes) {
		t.Fatalf("counts differ: %+v vs %+v", got, whole)
	}
	for col, tol := range map[string]float64{"x": 1e-12, "y": 1e-9} {
		var vals []float64
		for _, r := range rows {
			if col == "y" {
				vals = append(vals, r.y)
			} else if !r.xNull {
				vals = append(vals, r.x)
			}
		}
		wantMean, wantStd := twoPass(vals)
		if got.Numeric[col].Count != int64(len(vals)) {
			t.Errorf("%s: count %d, want %d", col, got.Numeric[col].Count, len(vals))
		}
		mean, std := got.Numeric[col].MeanStd()
		if rel(mean, wantMean) > 1e-12 || rel(std, wantStd) > tol {
			t.Errorf("%s: mean %.17g std %.17g, want %.17g %.17g", col, mean, std, wantMean, wantStd)
		}
	}
}

func twoPass(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)))
}

func rel(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }

func TestMergeStatsDisjointColumns(t *testing.T) {
	a := silo.StatsOutput{NTrain: 2, Numeric: map[string]silo.NumericStats{"age": {Count: 2, Sum: 70, SumSq: 2500}},
		Categories: map[string]map[string]int64{"ward": {"A": 2}}, Classes: map[string]int64{"0": 2}}
	b := silo.StatsOutput{NTrain: 1, Numeric: map[string]silo.NumericStats{"age": {Count: 1, Sum: 50, SumSq: 2500}, "bmi": {Count: 1, Sum: 22, SumSq: 484}},
		Categories: map[string]map[string]int64{"ward": {"B": 1}}, Classes: map[string]int64{"1": 1}}
	got := MergeStats([]silo.StatsOutput{a, b})
	want := silo.StatsOutput{NTrain: 3,
		Numeric:    map[string]silo.NumericStats{"age": {Count: 3, Sum: 120, SumSq: 5000}, "bmi": {Count: 1, Sum: 22, SumSq: 484}},
		Categories: map[string]map[string]int64{"ward": {"A": 2, "B": 1}},
		Classes:    map[string]int64{"0": 2, "1": 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got.Categories["ward"]["A"] = 99
	if a.Categories["ward"]["A"] != 2 {
		t.Error("MergeStats shares maps with its input")
	}
	if e := MergeStats(nil); e.Numeric == nil || e.Categories == nil || e.Classes == nil || e.NTrain != 0 {
		t.Errorf("MergeStats(nil) = %+v", e)
	}
}

func TestMeanStd(t *testing.T) {
	var s silo.NumericStats
	for _, x := range []float64{1, 2, 3, 4} {
		s.Add(x)
	}
	// mean 2.5; population variance ((1.5²+0.5²)·2)/4 = 1.25
	if m, sd := s.MeanStd(); m != 2.5 || math.Abs(sd-math.Sqrt(1.25)) > 1e-15 {
		t.Errorf("MeanStd(1,2,3,4) = %g, %g; want 2.5, √1.25", m, sd)
	}
	var constant silo.NumericStats
	for range 10 {
		constant.Add(0.1) // 0.1 is inexact: the variance is rounding dust
	}
	for _, c := range []struct {
		name     string
		s        silo.NumericStats
		wantMean float64
	}{
		{"empty", silo.NumericStats{}, 0},
		{"single", silo.NumericStats{Count: 1, Sum: 7, SumSq: 49}, 7},
		{"constant", constant, 0.1},
	} {
		m, sd := c.s.MeanStd()
		if math.Abs(m-c.wantMean) > 1e-15 || sd != 1 {
			t.Errorf("%s: MeanStd = %g, %g; want %g, 1", c.name, m, sd, c.wantMean)
		}
	}
}
