package tabular

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// pqRow covers every type Silo maps, optional and required, plain and
// dictionary-encoded.
type pqRow struct {
	ID     int64      `parquet:"id"`
	Age    *int32     `parquet:"age,optional"`
	Score  *float64   `parquet:"score,optional"`
	Ratio  *float32   `parquet:"ratio,optional"`
	Smoker *bool      `parquet:"smoker,optional"`
	City   *string    `parquet:"city,optional,dict"`
	Note   string     `parquet:"note"`
	Seen   *time.Time `parquet:"seen,optional,timestamp(millisecond)"`
	Day    *int32     `parquet:"day,optional,date"`
	Price  int64      `parquet:"price,decimal(2:18)"`
	Big    uint64     `parquet:"big"`
	Secret string     `parquet:"secret"`
}

var cities = []string{"Lyon", "Paris", "Nantes", "Lille"}

// genRows makes n deterministic rows with nulls in every optional column.
func genRows(n int) []pqRow {
	rows := make([]pqRow, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range rows {
		r := &rows[i]
		r.ID = int64(i + 1)
		if i%7 != 3 {
			r.Age = ptr(int32(20 + i%50))
		}
		if i%5 != 0 {
			r.Score = ptr(math.Round(rng.NormFloat64()*1000) / 100)
		}
		if i%11 != 0 {
			r.Ratio = ptr(float32(i%8) / 4)
		}
		if i%13 != 0 {
			r.Smoker = ptr(i%3 == 0)
		}
		if i%6 != 5 {
			r.City = ptr(cities[i%len(cities)])
		}
		r.Note = fmt.Sprintf("note %d", i)
		if i%4 != 1 {
			r.Seen = ptr(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 90 * time.Minute))
		}
		if i%9 != 2 {
			r.Day = ptr(int32(19000 + i%30))
		}
		r.Price = int64(i*37%10000) - 2000
		r.Big = uint64(i) * 1_000_003
		r.Secret = "s3cr3t-value"
	}
	return rows
}

func writeParquet(t testing.TB, rows []pqRow, opts ...parquet.WriterOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[pqRow](&buf, opts...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rowsCSV renders rows as CSV the way a careful exporter would.
func rowsCSV(rows []pqRow) []byte {
	var b bytes.Buffer
	b.WriteString("id,age,score,ratio,smoker,city,note,seen,day,price,big,secret\n")
	opt := func(ok bool, s func() string) string {
		if !ok {
			return ""
		}
		return s()
	}
	for _, r := range rows {
		fields := []string{
			strconv.FormatInt(r.ID, 10),
			opt(r.Age != nil, func() string { return strconv.Itoa(int(*r.Age)) }),
			opt(r.Score != nil, func() string { return strconv.FormatFloat(*r.Score, 'g', -1, 64) }),
			opt(r.Ratio != nil, func() string { return strconv.FormatFloat(float64(*r.Ratio), 'f', 2, 64) }),
			opt(r.Smoker != nil, func() string { return strconv.FormatBool(*r.Smoker) }),
			opt(r.City != nil, func() string { return *r.City }),
			r.Note,
			opt(r.Seen != nil, func() string { return r.Seen.Format(time.RFC3339) }),
			opt(r.Day != nil, func() string { return time.Unix(int64(*r.Day)*86400, 0).UTC().Format(time.DateOnly) }),
			strconv.FormatFloat(float64(r.Price)/100, 'f', 2, 64),
			strconv.FormatUint(r.Big, 10),
			r.Secret,
		}
		b.WriteString(strings.Join(fields, ","))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// expectedProfile computes, the slow obvious way, what Scan must report
// for genRows data with id as identifier and secret excluded.
func expectedProfile(rows []pqRow, format Format, minRecords int) *Profile {
	type col struct {
		name string
		typ  Type
		get  func(pqRow) (float64, string, bool) // number, text, present
	}
	cols := []col{
		{"id", Int, func(r pqRow) (float64, string, bool) { return float64(r.ID), "", true }},
		{"age", Int, func(r pqRow) (float64, string, bool) {
			if r.Age == nil {
				return 0, "", false
			}
			return float64(*r.Age), strconv.Itoa(int(*r.Age)), true
		}},
		{"score", Float, func(r pqRow) (float64, string, bool) {
			if r.Score == nil {
				return 0, "", false
			}
			return *r.Score, "", true
		}},
		{"ratio", Float, func(r pqRow) (float64, string, bool) {
			if r.Ratio == nil {
				return 0, "", false
			}
			return float64(*r.Ratio), "", true
		}},
		{"smoker", Bool, func(r pqRow) (float64, string, bool) {
			if r.Smoker == nil {
				return 0, "", false
			}
			return 0, strconv.FormatBool(*r.Smoker), true
		}},
		{"city", String, func(r pqRow) (float64, string, bool) {
			if r.City == nil {
				return 0, "", false
			}
			return 0, *r.City, true
		}},
		{"note", String, func(r pqRow) (float64, string, bool) { return 0, r.Note, true }},
		{"seen", Timestamp, func(r pqRow) (float64, string, bool) { return 0, "", r.Seen != nil }},
		{"day", Timestamp, func(r pqRow) (float64, string, bool) { return 0, "", r.Day != nil }},
		{"price", Float, func(r pqRow) (float64, string, bool) { return float64(r.Price) / 100, "", true }},
		{"big", Int, func(r pqRow) (float64, string, bool) {
			return float64(r.Big), strconv.FormatUint(r.Big, 10), true
		}},
	}
	p := &Profile{Format: format, Files: 1, Rows: int64(len(rows))}
	for _, c := range cols {
		cp := ColumnProfile{Column: Column{Name: c.name, Type: c.typ}}
		var nums []float64
		counts := map[string]int64{}
		for _, r := range rows {
			v, s, ok := c.get(r)
			if !ok {
				cp.Nulls++
				continue
			}
			cp.Count++
			nums = append(nums, v)
			counts[s]++
		}
		if c.name != "id" && cp.Count >= int64(minRecords) {
			if c.typ == Int || c.typ == Float {
				var sum float64
				for _, v := range nums {
					sum += v
				}
				mean := sum / float64(len(nums))
				var ss float64
				for _, v := range nums {
					ss += (v - mean) * (v - mean)
				}
				cp.Mean, cp.Std = ptr(mean), ptr(math.Sqrt(ss/float64(len(nums)-1)))
			}
			if c.typ == Int || c.typ == Bool || c.typ == String {
				// Only values in at least minRecords rows count or show.
				var common []string
				for s, k := range counts {
					if k >= int64(minRecords) {
						common = append(common, s)
					}
				}
				n := int64(len(common))
				cp.Distinct = &n
				var once int64
				for _, k := range counts {
					if k == 1 {
						once++
					}
				}
				cp.MostlyUnique = 2*once > cp.Count
				if len(counts) <= MaxCategories && len(common) > 0 {
					cp.Categories = common
					slices.SortFunc(cp.Categories, func(a, b string) int {
						if c.typ == Int {
							x, _ := strconv.Atoi(a)
							y, _ := strconv.Atoi(b)
							return x - y
						}
						return strings.Compare(a, b)
					})
				}
			}
		}
		p.Columns = append(p.Columns, cp)
	}
	p.Columns = append(p.Columns, ColumnProfile{Column: Column{Name: "secret"}, Excluded: true})
	return p
}

var approx = cmpopts.EquateApprox(1e-12, 1e-12)

func TestScanParquet(t *testing.T) {
	rows := genRows(1000)
	data := writeParquet(t, rows, parquet.MaxRowsPerRowGroup(128), parquet.PageBufferSize(512))
	opts := ScanOptions{Exclude: []string{"secret"}, NoSummary: []string{"id"}, MinRecordsPerAggregate: 5}

	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); n < 5 {
		t.Fatalf("test file has %d row groups, want several", n)
	}

	got, err := Scan(context.Background(), []Input{&memInput{"rows.parquet", data}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := expectedProfile(rows, Parquet, 5)
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}

	// The same data as CSV gives the same profile, up to the CSV's own
	// float formatting.
	gotCSV, err := Scan(context.Background(), []Input{&memInput{"rows.csv", rowsCSV(rows)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want.Format = CSV
	if diff := cmp.Diff(want, gotCSV, approx); diff != "" {
		t.Errorf("CSV profile (-want +got):\n%s", diff)
	}

	// Several files of one schema add up.
	half := len(rows) / 2
	two := []Input{
		&memInput{"a.parquet", writeParquet(t, rows[:half], parquet.MaxRowsPerRowGroup(100))},
		&memInput{"b.parquet", writeParquet(t, rows[half:], parquet.MaxRowsPerRowGroup(300))},
	}
	gotTwo, err := Scan(context.Background(), two, opts)
	if err != nil {
		t.Fatal(err)
	}
	want.Format, want.Files = Parquet, 2
	if diff := cmp.Diff(want, gotTwo, approx); diff != "" {
		t.Errorf("two-file profile (-want +got):\n%s", diff)
	}
}

func TestScanParquetSummariesNeedEnoughRecords(t *testing.T) {
	rows := genRows(40) // city: 4 values, some with fewer than 10 rows
	data := writeParquet(t, rows)
	got, err := Scan(context.Background(), []Input{&memInput{"rows.parquet", data}}, ScanOptions{Exclude: []string{"secret"}, NoSummary: []string{"id"}, MinRecordsPerAggregate: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(expectedProfile(rows, Parquet, 10), got, approx); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
	// Values in fewer than 10 rows are withheld from the categories and
	// not counted as distinct.
	seen := map[string]int{}
	for _, r := range rows {
		if r.City != nil {
			seen[*r.City]++
		}
	}
	for _, c := range got.Columns {
		if c.Name != "city" {
			continue
		}
		for _, v := range c.Categories {
			if seen[v] < 10 {
				t.Errorf("city's categories %v list %q, seen in %d rows", c.Categories, v, seen[v])
			}
		}
		rare := 0
		for _, n := range seen {
			if n < 10 {
				rare++
			}
		}
		if rare == 0 || c.Distinct == nil || int(*c.Distinct) != len(seen)-rare {
			t.Errorf("city: %d values, %d rare; distinct reported %v", len(seen), rare, c.Distinct)
		}
	}
}

func TestScanParquetExcludedIsNotRead(t *testing.T) {
	rows := genRows(300)
	data := writeParquet(t, rows, parquet.MaxRowsPerRowGroup(100))
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt every byte of the excluded column's chunks: a scan that
	// excludes it cannot notice, one that reads it must fail.
	bad := bytes.Clone(data)
	leaf := f.Root().Column("secret").Index()
	for _, rg := range f.Metadata().RowGroups {
		m := rg.Columns[leaf].MetaData
		start := m.DataPageOffset
		if m.DictionaryPageOffset > 0 {
			start = min(start, m.DictionaryPageOffset)
		}
		for i := start; i < start+m.TotalCompressedSize; i++ {
			bad[i] = 0xff
		}
	}
	in := []Input{&memInput{"bad.parquet", bad}}
	if _, err := Scan(context.Background(), in, ScanOptions{Exclude: []string{"secret"}}); err != nil {
		t.Fatalf("excluded column was read: %v", err)
	}
	if _, err := Scan(context.Background(), in, ScanOptions{}); err == nil {
		t.Fatal("scan of the corrupted column succeeded")
	}
	err = ReadBatches(context.Background(), in, Schema{{"id", Int}, {"secret", String}}, []string{"id"}, 64, func(*Batch) error { return nil })
	if err != nil {
		t.Fatalf("ReadBatches read a column that was not requested: %v", err)
	}
}

// nestedRow has a group and a list column.
type nestedRow struct {
	ID   int64 `parquet:"id"`
	Addr struct {
		City string `parquet:"city"`
	} `parquet:"addr"`
	Tags []string `parquet:"tags,list"`
}

func TestScanParquetErrors(t *testing.T) {
	good := writeParquet(t, genRows(500), parquet.MaxRowsPerRowGroup(100))
	var nested bytes.Buffer
	if err := parquet.Write(&nested, []nestedRow{{ID: 1, Tags: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	type otherRow struct {
		ID  int64  `parquet:"id"`
		Age string `parquet:"age"`
	}
	var other bytes.Buffer
	if err := parquet.Write(&other, []otherRow{{1, "x"}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		inputs []Input
		opts   ScanOptions
		want   string // in the error
	}{
		{"truncated by one byte", []Input{&memInput{"t.parquet", good[:len(good)-1]}}, ScanOptions{}, "t.parquet: corrupt or truncated Parquet file"},
		{"truncated to half", []Input{&memInput{"t.parquet", good[:len(good)/2]}}, ScanOptions{}, "t.parquet: corrupt or truncated Parquet file"},
		{"only the magic", []Input{&memInput{"t.parquet", []byte("PAR1")}}, ScanOptions{}, "t.parquet: corrupt or truncated Parquet file: only 4 bytes long"},
		{"empty", []Input{&memInput{"t.parquet", nil}}, ScanOptions{}, "t.parquet is empty"},
		{"parquet name, CSV content", []Input{&memInput{"t.parquet", []byte("a,b\n1,2\n")}}, ScanOptions{}, "t.parquet: not a Parquet file"},
		{"nested", []Input{&memInput{"n.parquet", nested.Bytes()}}, ScanOptions{}, `n.parquet: column "addr" is nested`},
		{"list", []Input{&memInput{"n.parquet", nested.Bytes()}}, ScanOptions{Exclude: []string{"addr"}}, `n.parquet: column "tags" is`},
		{"mixed formats", []Input{&memInput{"a.parquet", good}, &memInput{"b.csv", []byte("a\n1\n")}}, ScanOptions{}, "a.parquet is Parquet but b.csv is CSV"},
		{"different schemas", []Input{&memInput{"a.parquet", good}, &memInput{"b.parquet", other.Bytes()}}, ScanOptions{}, `a.parquet and b.parquet have different types for column "age": int in a.parquet, string in b.parquet`},
		{"unknown excluded column", []Input{&memInput{"a.parquet", good}}, ScanOptions{Exclude: []string{"Secret"}}, `excluded column "Secret" is not in a.parquet (did you mean "secret"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Scan(context.Background(), tt.inputs, tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Errorf("error %q is a %T, not an *Error", err, err)
			}
		})
	}
}

func TestScanParquetNestedExcluded(t *testing.T) {
	var nested bytes.Buffer
	if err := parquet.Write(&nested, []nestedRow{{ID: 1}, {ID: 2, Tags: []string{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := Scan(context.Background(), []Input{&memInput{"n.parquet", nested.Bytes()}}, ScanOptions{Exclude: []string{"addr", "tags"}})
	if err != nil {
		t.Fatal(err)
	}
	want := &Profile{Format: Parquet, Files: 1, Rows: 2, Columns: []ColumnProfile{
		{Column: Column{"id", Int}, Count: 2, Mean: ptr(1.5), Std: ptr(math.Sqrt(0.5)), Distinct: ptr[int64](2), MostlyUnique: true, Categories: []string{"1", "2"}},
		{Column: Column{Name: "addr"}, Excluded: true},
		{Column: Column{Name: "tags"}, Excluded: true},
	}}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
}

// TestParquetCorruptionNeverPanics damages a valid file in many ways: every
// outcome must be a profile or an error.
func TestParquetCorruptionNeverPanics(t *testing.T) {
	good := writeParquet(t, genRows(300), parquet.MaxRowsPerRowGroup(64), parquet.PageBufferSize(256))
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		bad := bytes.Clone(good)
		switch i % 3 {
		case 0: // truncate
			bad = bad[:rng.IntN(len(bad))]
		case 1: // flip bytes anywhere
			for range 1 + rng.IntN(8) {
				bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
			}
		case 2: // flip bytes in the footer
			for range 1 + rng.IntN(4) {
				bad[len(bad)-8-rng.IntN(min(400, len(bad)-8))] ^= byte(1 + rng.IntN(255))
			}
		}
		in := []Input{&memInput{"c.parquet", bad}}
		if _, err := Scan(context.Background(), in, ScanOptions{}); err != nil {
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error reveals a value: %v", err)
			}
		}
		_ = ReadBatches(context.Background(), in, Schema{{"id", Int}, {"city", String}, {"score", Float}}, []string{"id", "city", "score"}, 100, func(*Batch) error { return nil })
	}
}

func TestReadBatchesParquet(t *testing.T) {
	rows := genRows(1000)
	in := []Input{
		&memInput{"a.parquet", writeParquet(t, rows[:300], parquet.MaxRowsPerRowGroup(128), parquet.PageBufferSize(512))},
		&memInput{"b.parquet", writeParquet(t, rows[300:], parquet.MaxRowsPerRowGroup(200))},
	}
	p, err := Scan(context.Background(), in, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"city", "age", "smoker", "seen", "price", "big", "day", "ratio"}
	var got []pqRow
	sizes := []int{}
	err = ReadBatches(context.Background(), in, p.Schema(), cols, 64, func(b *Batch) error {
		sizes = append(sizes, b.Len)
		for i := range b.Len {
			var r pqRow
			if !b.Null["city"][i] {
				r.City = ptr(b.Str["city"][i])
			}
			if !b.Null["age"][i] {
				r.Age = ptr(int32(b.Int["age"][i]))
				if b.Num["age"][i] != float64(*r.Age) {
					t.Fatalf("age: Num %v, Int %v", b.Num["age"][i], *r.Age)
				}
			} else if !math.IsNaN(b.Num["age"][i]) {
				t.Fatalf("null age is %v, not NaN", b.Num["age"][i])
			}
			if !b.Null["smoker"][i] {
				r.Smoker = ptr(b.Num["smoker"][i] == 1)
			}
			if !b.Null["seen"][i] {
				r.Seen = ptr(time.UnixMilli(int64(math.Round(b.Num["seen"][i] * 1000))).UTC())
			}
			if !b.Null["day"][i] {
				r.Day = ptr(int32(b.Num["day"][i] / 86400))
			}
			if !b.Null["ratio"][i] {
				r.Ratio = ptr(float32(b.Num["ratio"][i]))
			}
			r.Price = int64(math.Round(b.Num["price"][i] * 100))
			r.Big = uint64(b.Int["big"][i])
			got = append(got, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]pqRow, len(rows))
	for i, r := range rows {
		want[i] = pqRow{City: r.City, Age: r.Age, Smoker: r.Smoker, Seen: r.Seen, Day: r.Day, Ratio: r.Ratio, Price: r.Price, Big: r.Big}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	for i, n := range sizes {
		if n != 64 && i != len(sizes)-1 {
			t.Fatalf("batch %d has %d rows; only the last may be short: %v", i, n, sizes)
		}
	}
}

func TestReadBatchesCallbackError(t *testing.T) {
	stop := errors.New("stop")
	for _, in := range [][]Input{
		{&memInput{"a.parquet", writeParquet(t, genRows(500))}},
		{&memInput{"a.csv", rowsCSV(genRows(500))}},
	} {
		calls := 0
		err := ReadBatches(context.Background(), in, Schema{{"id", Int}}, []string{"id"}, 100, func(*Batch) error {
			calls++
			if calls == 2 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 2 {
			t.Errorf("%s: ReadBatches returned %v after %d calls; want the callback's error after 2", in[0].Name(), err, calls)
		}
	}
}

func TestParquetTypeMapping(t *testing.T) {
	schema := parquet.NewSchema("t", parquet.Group{
		"i8":    parquet.Int(8),
		"u32":   parquet.Uint(32),
		"u64":   parquet.Uint(64),
		"dec":   parquet.Decimal(3, 9, parquet.Int32Type),
		"decb":  parquet.Decimal(2, 30, parquet.FixedLenByteArrayType(13)),
		"tus":   parquet.Timestamp(parquet.Microsecond),
		"tns":   parquet.Timestamp(parquet.Nanosecond),
		"tod":   parquet.Time(parquet.Millisecond),
		"uuid":  parquet.UUID(),
		"enum":  parquet.Enum(),
		"json":  parquet.JSON(),
		"bytes": parquet.Leaf(parquet.ByteArrayType),
		"i96":   parquet.Leaf(parquet.Int96Type),
		"f":     parquet.Leaf(parquet.FloatType),
	})
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[any](&buf, schema)
	unscaled := new(bytes.Buffer)
	unscaled.Write(bytes.Repeat([]byte{0xff}, 12))
	unscaled.WriteByte(0x85) // -123 in 13 bytes of two's complement
	row := parquet.Row{}
	for _, leaf := range schema.Columns() {
		var v parquet.Value
		switch leaf[0] {
		case "i8":
			v = parquet.Int32Value(-5)
		case "u32":
			v = parquet.Int32Value(-1) // 4294967295 unsigned
		case "u64":
			v = parquet.Int64Value(1 << 40)
		case "dec":
			v = parquet.Int32Value(-12345) // -12.345
		case "decb":
			v = parquet.FixedLenByteArrayValue(unscaled.Bytes())
		case "tus":
			v = parquet.Int64Value(1_700_000_000_500_000)
		case "tns":
			v = parquet.Int64Value(1_700_000_000_250_000_000)
		case "tod":
			v = parquet.Int32Value(3_600_500) // 01:00:00.5
		case "uuid":
			v = parquet.FixedLenByteArrayValue([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
		case "enum", "json", "bytes":
			v = parquet.ByteArrayValue([]byte("x"))
		case "i96":
			// 2001-01-01T00:00:01Z: Julian day 2451911, one second of nanos.
			v = parquet.Int96Value([3]uint32{1_000_000_000, 0, 2451911})
		case "f":
			v = parquet.FloatValue(float32(math.NaN()))
		}
		row = append(row, v.Level(0, 0, len(row)))
	}
	if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	in := []Input{&memInput{"types.parquet", buf.Bytes()}}
	p, err := Scan(context.Background(), in, ScanOptions{NoSummary: []string{"i8"}})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]Type{}
	for _, c := range p.Columns {
		types[c.Name] = c.Type
	}
	wantTypes := map[string]Type{
		"i8": Int, "u32": Int, "u64": Int, "dec": Float, "decb": Float, "tus": Timestamp, "tns": Timestamp,
		"tod": Float, "uuid": String, "enum": String, "json": String, "bytes": String, "i96": Timestamp, "f": Float,
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	var names []string
	for _, c := range p.Schema() {
		names = append(names, c.Name)
	}
	var got map[string]any
	err = ReadBatches(context.Background(), in, p.Schema(), names, 10, func(b *Batch) error {
		got = map[string]any{}
		for k, v := range b.Num {
			got[k] = v[0]
		}
		for k, v := range b.Str {
			got[k] = v[0]
		}
		for k, v := range b.Int {
			got[k+".int"] = v[0]
		}
		for k, v := range b.Null {
			if v[0] {
				got[k+".null"] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i8": -5.0, "i8.int": int64(-5),
		"u32": 4294967295.0, "u32.int": int64(4294967295),
		"u64": float64(1 << 40), "u64.int": int64(1 << 40),
		"dec":   -12.345,
		"decb":  -1.23,
		"tus":   1_700_000_000.5,
		"tns":   1_700_000_000.25,
		"tod":   3600.5,
		"uuid":  "12345678-9abc-def0-0123-456789abcdef",
		"enum":  "x",
		"json":  "x",
		"bytes": "x",
		"i96":   978307201.0,
		"f":     math.NaN(), "f.null": true,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs(), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

func TestFloat16(t *testing.T) {
	for _, tt := range []struct {
		bits uint16
		want float64
	}{{0x3c00, 1}, {0xc000, -2}, {0x0001, math.Ldexp(1, -24)}, {0x7bff, 65504}, {0x7c00, math.Inf(1)}} {
		if got := float16([]byte{byte(tt.bits), byte(tt.bits >> 8)}); got != tt.want {
			t.Errorf("float16(%#04x) = %v, want %v", tt.bits, got, tt.want)
		}
	}
}

// TestParquetDeclaredSizesAreChecked covers what the fuzzer found: corrupt
// sizes and counts in a footer or a page header must be refused before the
// parquet library allocates what they claim (gigabytes, or terabytes).
func TestParquetDeclaredSizesAreChecked(t *testing.T) {
	good := writeParquet(t, genRows(200))
	f, err := parquet.OpenFile(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata().RowGroups[0].Columns[0].MetaData
	off := md.DataPageOffset
	if md.DictionaryPageOffset > 0 {
		off = md.DictionaryPageOffset
	}
	hl, _, err := walkPageHeader(good[off:])
	if err != nil {
		t.Fatal(err)
	}
	var header format.PageHeader
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), good[off:off+int64(hl)], &header); err != nil {
		t.Fatal(err)
	}
	if !header.DataPageHeaderV2.Valid {
		t.Fatal("expected a v2 data page")
	}
	// withHeader changes the first page header, shortening the page by as
	// many bytes as the header grows so that it still ends with the chunk.
	withHeader := func(change func(*format.PageHeader)) []byte {
		h := header
		h.CRC = 0 // no checksum to catch the damage: only the checks can
		change(&h)
		b, err := thrift.Marshal(new(thrift.CompactProtocol), &h)
		if err != nil {
			t.Fatal(err)
		}
		if h.CompressedPageSize == header.CompressedPageSize {
			h.CompressedPageSize -= int32(len(b) - hl)
			if b, err = thrift.Marshal(new(thrift.CompactProtocol), &h); err != nil {
				t.Fatal(err)
			}
		}
		return slices.Concat(good[:off], b, good[off+int64(hl):])
	}
	// A footer whose first list claims 2³¹-1 row groups in 8 bytes.
	footer := []byte{0x49, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00}
	hugeFooter := slices.Concat([]byte("PAR1"), footer, []byte{byte(len(footer)), 0, 0, 0}, []byte("PAR1"))

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"page size", withHeader(func(h *format.PageHeader) { h.CompressedPageSize = 0x7aa8589b }), "a page claims 2057853083 bytes where the column chunk has"},
		{"uncompressed size", withHeader(func(h *format.PageHeader) { h.UncompressedPageSize = math.MaxInt32 }), "a page claims 2147483647 bytes uncompressed (the limit is 128 MiB)"},
		{"value count", withHeader(func(h *format.PageHeader) { h.DataPageHeaderV2.V.NumValues = 1 << 30 }), "a page claims 1073741824 values in a row group of 200 rows"},
		{"level sizes", withHeader(func(h *format.PageHeader) { h.DataPageHeaderV2.V.DefinitionLevelsByteLength = 1 << 20 }), "a page's levels claim more bytes than the page has"},
		{"footer list", hugeFooter, "the footer is truncated or declares more data than it holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Scan(context.Background(), []Input{&memInput{"x.parquet", tt.data}}, ScanOptions{})
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "x.parquet: corrupt or truncated Parquet file") {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
				t.Errorf("scan allocated %d MiB", n>>20)
			}
		})
	}
}
