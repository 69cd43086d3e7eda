package tabular

import (
	"cmp"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
)

// colStats accumulates what Scan reports about one column, in memory that
// does not grow with the number of rows.
type colStats struct {
	name    string
	typ     Type // CSV: the join of the cells so far; Parquet: the declared type
	summary bool // false for NoSummary columns: only nulls and count

	nulls, count int64

	// Running mean and sum of squared deviations (Welford), over the values
	// that parsed as numbers; used only if the final type is numeric.
	n        int64
	mean, m2 float64

	d *distinct // nil when the column gets no distinct count
}

func (s *colStats) addNumber(v float64) {
	s.n++
	delta := v - s.mean
	s.mean += delta / float64(s.n)
	s.m2 += delta * (v - s.mean)
}

// addCSV adds one raw CSV cell.
func (s *colStats) addCSV(raw string) {
	t := trimBlank(raw)
	if isNull(t) {
		s.nulls++
		return
	}
	s.count++
	if !s.summary {
		if s.typ != String {
			typ, _ := inferType(t)
			s.typ = join(s.typ, typ)
		}
		return
	}
	if s.typ != String {
		typ, v := inferType(t)
		s.typ = join(s.typ, typ)
		if typ == Int || typ == Float {
			s.addNumber(v)
		}
	}
	// Distinct values are tracked whatever the type so far: a column that
	// looks numeric may still turn out to be a string column.
	s.d.addString(raw)
}

// profile turns the accumulated state into the column's report, keeping
// only the summaries that the privacy controls allow.
func (s *colStats) profile(minRecords int, csv bool) ColumnProfile {
	typ := s.typ
	if typ == "" {
		typ = String // only nulls
	}
	p := ColumnProfile{Column: Column{Name: s.name, Type: typ}, Nulls: s.nulls, Count: s.count}
	if !s.summary || s.count < int64(minRecords) {
		return p
	}
	if (typ == Int || typ == Float) && s.n == s.count {
		if m := s.mean; !math.IsInf(m, 0) && !math.IsNaN(m) {
			p.Mean = &m
		}
		if s.n >= 2 {
			if sd := math.Sqrt(s.m2 / float64(s.n-1)); !math.IsInf(sd, 0) && !math.IsNaN(sd) {
				p.Std = &sd
			}
		}
	}
	if s.d != nil && (typ == Int || typ == Bool || typ == String) {
		var counts map[string]int64
		if csv && typ != String {
			counts = s.d.canonical(typ)
		} else {
			counts = s.d.counts()
		}
		// Only values seen in at least minRecords rows count, so neither
		// the distinct count nor the categories say how many rare values
		// there are.
		if n, capped := s.d.distinctCount(counts, int64(minRecords)); capped {
			p.DistinctCapped, p.MostlyUnique = true, true
		} else {
			p.Distinct = &n
			p.MostlyUnique = 2*s.d.singles(counts) > s.count
		}
		p.Categories = categories(counts, typ, int64(minRecords))
	}
	return p
}

// distinct counts distinct values in bounded memory. While a column has at
// most MaxCategories short values it keeps them with their counts (the
// categories); past that it keeps only 64-bit hashes of up to MaxDistinct
// values, then gives up counting.
type distinct struct {
	seed maphash.Seed
	strs map[string]*int64 // value → rows, while few (pointers: counting is a lookup)
	ints map[int64]*int64  // the same for Parquet int columns
	many bool              // strs/ints abandoned: too many or too long values
	seen map[uint64]int64  // value hash → rows

	capped bool
}

func newDistinct() *distinct {
	return &distinct{seed: maphash.MakeSeed(), strs: make(map[string]*int64), ints: make(map[int64]*int64)}
}

func (d *distinct) addString(s string) {
	if !d.many {
		if c := d.strs[s]; c != nil {
			*c++
			return
		}
		if len(s) <= MaxCategoryBytes && len(d.strs) < MaxCategories {
			d.strs[strings.Clone(s)] = ptrTo(1)
			return
		}
		d.giveUpExact()
	}
	if !d.capped {
		d.mark(maphash.String(d.seed, s))
	}
}

// addBytes is addString for bytes that will be overwritten after the call.
func (d *distinct) addBytes(b []byte) {
	if !d.many {
		if c := d.strs[string(b)]; c != nil {
			*c++
			return
		}
		if len(b) <= MaxCategoryBytes && len(d.strs) < MaxCategories {
			d.strs[string(b)] = ptrTo(1)
			return
		}
		d.giveUpExact()
	}
	if !d.capped {
		d.mark(maphash.Bytes(d.seed, b))
	}
}

func (d *distinct) addInt(v int64) {
	if !d.many {
		if c := d.ints[v]; c != nil {
			*c++
			return
		}
		if len(d.ints) < MaxCategories {
			d.ints[v] = ptrTo(1)
			return
		}
		d.giveUpExact()
	}
	if !d.capped {
		// #nosec G115 -- the value's bits, for a distinct-count sketch
		d.mark(uint64(v))
	}
}

// giveUpExact switches from exact counts to hashes, carrying over the
// values seen so far.
func (d *distinct) giveUpExact() {
	d.many = true
	d.seen = make(map[uint64]int64, 2*MaxCategories)
	for s, c := range d.strs {
		d.seen[maphash.String(d.seed, s)] += *c
	}
	for v, c := range d.ints {
		// #nosec G115 -- the value's bits, for a distinct-count sketch
		d.seen[uint64(v)] += *c
	}
	d.strs, d.ints = nil, nil
}

func ptrTo(n int64) *int64 { return &n }

func (d *distinct) mark(h uint64) {
	if c, ok := d.seen[h]; ok {
		d.seen[h] = c + 1
		return
	}
	if len(d.seen) == MaxDistinct {
		d.capped, d.seen = true, nil
		return
	}
	d.seen[h] = 1
}

// counts returns the exact value counts, in their text form, or nil once
// there were too many.
func (d *distinct) counts() map[string]int64 {
	if d.many {
		return nil
	}
	m := make(map[string]int64, len(d.strs)+len(d.ints))
	for s, c := range d.strs {
		m[s] = *c
	}
	for v, c := range d.ints {
		m[strconv.FormatInt(v, 10)] = *c
	}
	return m
}

// canonical returns the exact counts of a CSV int or bool column keyed by
// the values' canonical spelling ("+7 " is 7, "TRUE" is true), or nil.
func (d *distinct) canonical(typ Type) map[string]int64 {
	if d.many {
		return nil
	}
	m := make(map[string]int64, len(d.strs))
	for s, c := range d.strs {
		t := trimBlank(s)
		if typ == Int {
			v, _ := parseInt(t)
			t = strconv.FormatInt(v, 10)
		} else {
			v, _ := parseBool(t)
			t = strconv.FormatBool(v)
		}
		m[t] += *c
	}
	return m
}

// distinctCount is the number of distinct values seen in at least
// minRecords rows, from the exact counts when there are some, else from the
// hashes; capped when there were too many values to count.
func (d *distinct) distinctCount(counts map[string]int64, minRecords int64) (n int64, capped bool) {
	switch {
	case d.capped:
		return 0, true
	case d.many:
		for _, c := range d.seen {
			if c >= minRecords {
				n++
			}
		}
		return n, false
	}
	for _, c := range counts {
		if c >= minRecords {
			n++
		}
	}
	return n, false
}

// singles is the number of values seen in exactly one row (not capped).
func (d *distinct) singles(counts map[string]int64) int64 {
	var n int64
	if d.many {
		for _, c := range d.seen {
			if c == 1 {
				n++
			}
		}
		return n
	}
	for _, c := range counts {
		if c == 1 {
			n++
		}
	}
	return n
}

// categories returns the sorted values of counts seen in at least
// minRecords rows (rarer ones describe few people and are withheld), nil if
// there are none.
func categories(counts map[string]int64, typ Type, minRecords int64) []string {
	cats := make([]string, 0, len(counts))
	for v, c := range counts {
		if c >= minRecords {
			cats = append(cats, v)
		}
	}
	if len(cats) == 0 {
		return nil
	}
	if typ == Int {
		slices.SortFunc(cats, func(a, b string) int {
			x, _ := strconv.ParseInt(a, 10, 64)
			y, _ := strconv.ParseInt(b, 10, 64)
			return cmp.Compare(x, y)
		})
	} else {
		slices.Sort(cats)
	}
	return cats
}
