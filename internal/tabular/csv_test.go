package tabular

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestScanCSV(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		opts  ScanOptions
		want  *Profile
	}{
		{
			// BOM, CRLF, quoted commas, quotes and newlines, null tokens,
			// blanks around numbers, leading-zero codes.
			name:  "good",
			files: []string{"good.csv"},
			opts:  ScanOptions{NoSummary: []string{"id"}, MinRecordsPerAggregate: 2},
			want: &Profile{Format: CSV, Files: 1, Rows: 5, Columns: []ColumnProfile{
				{Column: Column{"id", Int}, Count: 5},
				// Distinct counts only values seen in at least 2 rows.
				{Column: Column{"age", Int}, Nulls: 1, Count: 4, Mean: ptr(38.5), Std: ptr(math.Sqrt(269.0 / 3)), Distinct: ptr[int64](0), MostlyUnique: true},
				{Column: Column{"height", Float}, Nulls: 2, Count: 3, Mean: ptr(5.17 / 3), Std: ptr(0.07505553499465135)},
				{Column: Column{"smoker", Bool}, Count: 5, Distinct: ptr[int64](2), Categories: []string{"false", "true"}},
				{Column: Column{"city", String}, Nulls: 1, Count: 4, Distinct: ptr[int64](2), Categories: []string{"Lyon", "Paris"}},
				{Column: Column{"visit", Timestamp}, Nulls: 1, Count: 4},
				{Column: Column{"note", String}, Nulls: 1, Count: 4, Distinct: ptr[int64](0), MostlyUnique: true},
				{Column: Column{"code", String}, Nulls: 1, Count: 4, Distinct: ptr[int64](2), Categories: []string{"007", "012"}},
			}},
		},
		{
			name:  "too few records for summaries",
			files: []string{"good.csv"},
			opts:  ScanOptions{Exclude: []string{"note", "visit"}, MinRecordsPerAggregate: 5},
			want: &Profile{Format: CSV, Files: 1, Rows: 5, Columns: []ColumnProfile{
				{Column: Column{"id", Int}, Count: 5, Mean: ptr(3.0), Std: ptr(math.Sqrt(2.5)), Distinct: ptr[int64](0), MostlyUnique: true},
				{Column: Column{"age", Int}, Nulls: 1, Count: 4},
				{Column: Column{"height", Float}, Nulls: 2, Count: 3},
				// true 3 times, false twice: neither in 5 rows, so not counted.
				{Column: Column{"smoker", Bool}, Count: 5, Distinct: ptr[int64](0)},
				{Column: Column{"city", String}, Nulls: 1, Count: 4},
				{Column: Column{Name: "visit"}, Excluded: true},
				{Column: Column{Name: "note"}, Excluded: true},
				{Column: Column{"code", String}, Nulls: 1, Count: 4},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Scan(context.Background(), testdata(t, tt.files...), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("profile (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanCSVUnifiesTypesAcrossFiles(t *testing.T) {
	in := func(files ...string) []Input {
		var ins []Input
		for i, f := range files {
			ins = append(ins, &memInput{fmt.Sprintf("part-%d.csv", i), []byte(f)})
		}
		return ins
	}
	tests := []struct {
		files []string
		want  []Type
	}{
		{[]string{"a,b,c\n1,x,\n", "a,b,c\n2.5,y,\n"}, []Type{Float, String, String}},
		{[]string{"a,b,c\n1,true,2024-01-01\n", "a,b,c\nx,false,2024-01-02 10:00:00\n"}, []Type{String, Bool, Timestamp}},
		{[]string{"a,b,c\n1,true,2024-01-01\n", "a,b,c\n,,\n", "a,b,c\n3,1,5\n"}, []Type{Int, String, String}},
	}
	for _, tt := range tests {
		p, err := Scan(context.Background(), in(tt.files...), ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []Type
		for _, c := range p.Columns {
			got = append(got, c.Type)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q: types (-want +got):\n%s", tt.files, diff)
		}
	}
}

func TestScanCSVErrors(t *testing.T) {
	huge := "id,text\n1," + strings.Repeat("x", 2<<20) + "\n"
	hugeQuoted := "id,text\n1,\"" + strings.Repeat("a\n", 600<<10) + "\"\n"
	wide := "a\n" + strings.Repeat(",", 70<<20) + "\n"
	field := strings.Repeat("z", 1<<20)
	names := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprint("c", i)
		}
		return strings.Join(s, ",") + "\n"
	}
	long := names(70) + strings.Repeat(field+",", 69) + field + "\n"
	manyCols := names(maxColumns + 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("a,b\n1,2\n3\n"))
	zw.Close()
	var gzOK bytes.Buffer
	zw = gzip.NewWriter(&gzOK)
	zw.Write([]byte(strings.Repeat("a,b\n1,2\n", 1000)))
	zw.Close()

	tests := []struct {
		name   string
		inputs []Input
		opts   ScanOptions
		want   string
		line   int64
	}{
		{"empty", testdata(t, "empty.csv"), ScanOptions{}, "empty.csv is empty", 0},
		{"only a BOM", []Input{&memInput{"bom.csv", []byte("\xef\xbb\xbf")}}, ScanOptions{}, "bom.csv is empty", 0},
		{"ragged", testdata(t, "ragged.csv"), ScanOptions{}, "ragged row at line 3 of ragged.csv: 2 fields, header has 3", 3},
		{"ragged gzip", []Input{&memInput{"r.csv.gz", gz.Bytes()}}, ScanOptions{}, "ragged row at line 3 of r.csv.gz: 1 fields, header has 2", 3},
		{"bare quote", testdata(t, "bare_quote.csv"), ScanOptions{}, "bare quote in an unquoted field at line 3 of bare_quote.csv", 3},
		{"unclosed quote", testdata(t, "unclosed_quote.csv"), ScanOptions{}, "quoted field starting on line 2 of unclosed_quote.csv is not closed properly", 2},
		{"duplicate header", testdata(t, "dup_header.csv"), ScanOptions{}, `dup_header.csv: the header names column "id" twice (columns 1 and 3)`, 1},
		{"empty header name", testdata(t, "empty_header.csv"), ScanOptions{}, "empty_header.csv: the header's column 2 has no name", 1},
		{"binary", testdata(t, "binary.bin"), ScanOptions{}, "binary.bin: not CSV or Parquet (binary content)", 0},
		{"different schemas", testdata(t, "schema_a.csv", "schema_b.csv"), ScanOptions{}, `schema_a.csv and schema_b.csv have different columns: column 2 is "age" in schema_a.csv but "city" in schema_b.csv`, 0},
		{"fewer columns", []Input{&memInput{"a.csv", []byte("x,y\n")}, &memInput{"b.csv", []byte("x\n")}}, ScanOptions{}, "a.csv and b.csv have different columns: a.csv has 2, b.csv has 1", 0},
		{"huge field", []Input{&memInput{"h.csv", []byte(huge)}}, ScanOptions{}, `field at line 2 of h.csv, column "text", is larger than 1 MiB`, 2},
		{"huge field, own limit", []Input{&memInput{"h.csv", []byte(huge)}}, ScanOptions{MaxFieldBytes: 1000}, `field at line 2 of h.csv, column "text", is larger than 1000 bytes`, 2},
		{"huge quoted multi-line field", []Input{&memInput{"h.csv", []byte(hugeQuoted)}}, ScanOptions{}, `field at line 2 of h.csv, column "text", is larger than 1 MiB`, 2},
		{"huge header", []Input{&memInput{"h.csv", []byte("a," + strings.Repeat("b", 2<<20))}}, ScanOptions{}, "field at line 1 of h.csv, header field 2, is larger than 1 MiB", 1},
		{"many fields", []Input{&memInput{"w.csv", []byte(wide)}}, ScanOptions{}, "ragged row at line 2 of w.csv: more than 1 fields, header has 1", 2},
		{"huge row", []Input{&memInput{"l.csv", []byte(long)}}, ScanOptions{}, "row at line 2 of l.csv is larger than 64 MiB", 2},
		{"too many columns", []Input{&memInput{"c.csv", []byte(manyCols)}}, ScanOptions{}, "c.csv: the header has more than 100000 columns", 1},
		{"unknown excluded column", testdata(t, "good.csv"), ScanOptions{Exclude: []string{"City"}}, `excluded column "City" is not in good.csv (did you mean "city"?)`, 0},
		{"unknown identifier column", testdata(t, "good.csv"), ScanOptions{NoSummary: []string{"ssn"}}, `identifier column "ssn" is not in good.csv`, 0},
		{"no files", nil, ScanOptions{}, "the dataset has no files", 0},
		{"truncated gzip", []Input{&memInput{"t.csv.gz", gzOK.Bytes()[:gzOK.Len()-6]}}, ScanOptions{}, "t.csv.gz: corrupt or truncated gzip data", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Scan(context.Background(), tt.inputs, tt.opts)
			if err == nil {
				t.Fatalf("no error; profile %+v", p)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %q is a %T, not an *Error", err, err)
			}
			if de.Line != tt.line {
				t.Errorf("Error.Line = %d, want %d", de.Line, tt.line)
			}
			if len(err.Error()) > 500 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestScanCSVGzip(t *testing.T) {
	plain := testdata(t, "good.csv")[0]
	data := make([]byte, plain.Size())
	if _, err := plain.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	want, err := Scan(context.Background(), []Input{plain}, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Scan(context.Background(), []Input{&memInput{"good.csv.gz", gz.Bytes()}}, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("gzip profile differs (-plain +gzip):\n%s", diff)
	}
}

func TestDistinctLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("many,fifty,fiftyone,long,few\n")
	for i := range 20_000 {
		long := "short"
		if i == 7 {
			long = strings.Repeat("y", MaxCategoryBytes+1)
		}
		fmt.Fprintf(&b, "v%d,c%d,c%d,%s,%d\n", i, i%50, i%51, long, i%3)
	}
	p, err := Scan(context.Background(), []Input{&memInput{"d.csv", []byte(b.String())}}, ScanOptions{MinRecordsPerAggregate: 10})
	if err != nil {
		t.Fatal(err)
	}
	cats := make([]string, 50)
	for i := range cats {
		cats[i] = fmt.Sprintf("c%d", i)
	}
	want := []ColumnProfile{
		{Column: Column{"many", String}, Count: 20_000, DistinctCapped: true, MostlyUnique: true},
		{Column: Column{"fifty", String}, Count: 20_000, Distinct: ptr[int64](50), Categories: sortedStrings(cats)},
		{Column: Column{"fiftyone", String}, Count: 20_000, Distinct: ptr[int64](51)},
		// The long value occurs once: rarer than 10 rows, it is not counted.
		{Column: Column{"long", String}, Count: 20_000, Distinct: ptr[int64](1)},
		{Column: Column{"few", Int}, Count: 20_000, Mean: ptr(19_999.0 / 20_000), Std: ptr(0.8165), Distinct: ptr[int64](3), Categories: []string{"0", "1", "2"}},
	}
	if diff := cmp.Diff(want, p.Columns, cmpopts.EquateApprox(1e-4, 0)); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
}

func sortedStrings(s []string) []string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestCategoriesCanonical(t *testing.T) {
	csv := "n,b\n+1,TRUE\n1,true\n 2 ,False\n2,false\n10,True\n"
	p, err := Scan(context.Background(), []Input{&memInput{"c.csv", []byte(csv)}}, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []ColumnProfile{
		{Column: Column{"n", Int}, Count: 5, Mean: ptr(3.2), Std: ptr(3.8340579025361627), Distinct: ptr[int64](3), Categories: []string{"1", "2", "10"}},
		{Column: Column{"b", Bool}, Count: 5, Distinct: ptr[int64](2), Categories: []string{"false", "true"}},
	}
	if diff := cmp.Diff(want, p.Columns, approx); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
}

func TestDetectFormat(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("a,b\n1,2\n"))
	zw.Close()
	tests := []struct {
		name, head string
		want       Format
		err        string
	}{
		{"x.parquet", "PAR1\x15\x04", Parquet, ""},
		{"no-extension", "PAR1\x15\x04", Parquet, ""},
		{"x.PQ", "a,b\n", "", "x.PQ: not a Parquet file"},
		{"x.csv", "a,b\n1,2\n", CSV, ""},
		{"x.txt", "a;b\n1;2\n", CSV, ""}, // one column named "a;b": still CSV
		{"x.csv", "\xef\xbb\xbfa,b\r\n", CSV, ""},
		{"x.csv", "caf\xe9,na\xefve\n", CSV, ""}, // Latin-1 is text
		{"x.csv.gz", gz.String(), CSV, ""},
		{"x.csv", "", "", "x.csv is empty"},
		{"x.csv", "a\x00b\n", "", "x.csv: not CSV or Parquet (binary content)"},
		{"x.bin", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "", "x.bin: not CSV or Parquet (binary content)"},
		{"x.csv", "a,\"b\n", "", "x.csv: not CSV or Parquet (the first line is not valid CSV"},
		{"x.csv", "a,b\"c\n", "", "x.csv: not CSV or Parquet (the first line is not valid CSV"},
		{"x.csv.gz", "\x1f\x8b\x08garbage", "", "x.csv.gz: gzip-compressed but unreadable or empty"},
	}
	for _, tt := range tests {
		got, err := DetectFormat(tt.name, []byte(tt.head))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("DetectFormat(%q, %q): %v", tt.name, tt.head, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("DetectFormat(%q, %q) error = %v, want %q", tt.name, tt.head, err, tt.err)
		case got != tt.want:
			t.Errorf("DetectFormat(%q, %q) = %q, want %q", tt.name, tt.head, got, tt.want)
		}
	}
}

func TestInferType(t *testing.T) {
	tests := []struct {
		cell string
		want Type
	}{
		{"0", Int}, {"-0", Int}, {"+42", Int}, {"9223372036854775807", Int}, {"-9223372036854775808", Int},
		{"9223372036854775808", Float}, {"1.5", Float}, {".5", Float}, {"5.", Float}, {"-1e-3", Float}, {"1E10", Float}, {"0.0", Float},
		{"007", String}, {"00.5", String}, {"1e", String}, {"1e400", String}, {"inf", String}, {"Infinity", String}, {"0x10", String},
		{"1_000", String}, {"1,5", String}, {"+", String}, {"-", String}, {".", String}, {"e5", String}, {"--1", String},
		{"true", Bool}, {"FALSE", Bool}, {"True", Bool}, {"yes", String}, {"t", String},
		{"2024-02-29", Timestamp}, {"2023-02-29", String}, {"2024-01-02T03:04:05Z", Timestamp}, {"2024-01-02T03:04:05.123+02:00", Timestamp},
		{"2024-01-02 03:04:05", Timestamp}, {"2024-01-02T03:04:05", Timestamp}, {"2024-01-02 03:04:05.5", Timestamp}, {"2024-01-02 03:04:05+01:00", Timestamp},
		{"2024-01-02X03:04:05", String}, {"2024-1-2", String}, {"20240102", Int},
		{"Paris", String}, {"é", String},
	}
	for _, tt := range tests {
		if got, _ := inferType(tt.cell); got != tt.want {
			t.Errorf("inferType(%q) = %s, want %s", tt.cell, got, tt.want)
		}
	}
	for _, null := range []string{"", "NA", "N/A", "NaN", "null", "NULL"} {
		if !isNull(null) {
			t.Errorf("%q is not null", null)
		}
	}
	for _, notNull := range []string{"na", "nan", "None", "-", "0"} {
		if isNull(notNull) {
			t.Errorf("%q is null", notNull)
		}
	}
}

func TestReadBatchesCSV(t *testing.T) {
	in := testdata(t, "good.csv")
	p, err := Scan(context.Background(), in, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID      int64
		Age     float64
		Smoker  float64
		City    string
		Visit   float64
		Note    string
		Null    []bool
		Batch   int
		Missing bool
	}
	var got []row
	batches := 0
	err = ReadBatches(context.Background(), in, p.Schema(), []string{"id", "age", "smoker", "city", "visit", "note"}, 2, func(b *Batch) error {
		batches++
		for i := range b.Len {
			got = append(got, row{
				ID: b.Int["id"][i], Age: b.Num["age"][i], Smoker: b.Num["smoker"][i], City: b.Str["city"][i],
				Visit: b.Num["visit"][i], Note: b.Str["note"][i],
				Null:  []bool{b.Null["age"][i], b.Null["city"][i], b.Null["visit"][i], b.Null["note"][i]},
				Batch: batches,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	want := []row{
		{1, 34, 1, "Paris", 1704412800, "hello, world", []bool{false, false, false, false}, 1, false},
		{2, nan, 0, "Lyon", 1704537000, "multi\nline", []bool{true, false, false, false}, 1, false},
		{3, 51, 1, "Paris", nan, `she said "hi"`, []bool{false, false, true, false}, 2, false},
		{4, 29, 0, "Lyon", 1704614400, "plain", []bool{false, false, false, false}, 2, false},
		{5, 40, 1, "", 1704672000, "", []bool{false, true, false, true}, 3, false},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestReadBatchesCSVTypeDrift(t *testing.T) {
	in := []Input{&memInput{"d.csv", []byte("id,x\n1,10\n2,secret-value-99\n")}}
	err := ReadBatches(context.Background(), in, Schema{{"id", Int}, {"x", Int}}, []string{"x"}, 10, func(*Batch) error { return nil })
	var de *Error
	if !errors.As(err, &de) || de.Line != 3 || de.Column != "x" {
		t.Fatalf("error %v (%#v), want an *Error at line 3, column x", err, de)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error reveals the cell: %v", err)
	}
	if !strings.Contains(err.Error(), `line 3 of d.csv, column "x": the value is not a valid int`) {
		t.Errorf("unexpected message: %v", err)
	}
	err = ReadBatches(context.Background(), in, Schema{{"id", Int}}, []string{"nope"}, 10, func(*Batch) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `column "nope" is not in the dataset's schema`) {
		t.Errorf("unknown column: %v", err)
	}
}

func TestScanHonoursContext(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "%d,x\n", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, in := range [][]Input{
		{&memInput{"big.csv", []byte(b.String())}},
		{&memInput{"big.parquet", writeParquet(t, genRows(20_000))}},
	} {
		if _, err := Scan(ctx, in, ScanOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Scan with a cancelled context returned %v", in[0].Name(), err)
		}
		err := ReadBatches(ctx, in, Schema{{"a", Int}, {"id", Int}}, []string{}, 10, func(*Batch) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: ReadBatches with a cancelled context returned %v", in[0].Name(), err)
		}
	}
}

// TestErrorsHideCells runs every adversarial case with a distinctive value
// in the data and checks that no error repeats it.
func TestErrorsHideCells(t *testing.T) {
	const secret = "Sm1thJohn1970"
	cases := []string{
		"a,b\n" + secret + "\n",
		"a,b\n1," + secret + "\"x\n",
		"a,b\n1,\"" + secret + "\"x\n",
		"a,b\n1,\"" + secret + "\n",
		"a,b\n" + secret + "," + secret + "," + secret + "\n",
		"a,b\n1,\"" + secret + "\"\"" + secret + "\n",
		"a,b\n" + secret + "," + strings.Repeat(secret, 100_000) + "\n",
	}
	for _, c := range cases {
		_, err := Scan(context.Background(), []Input{&memInput{"s.csv", []byte(c)}}, ScanOptions{})
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals a cell: %v", err)
		}
	}
}

func TestDetectFormatPAR1Header(t *testing.T) {
	if f, err := DetectFormat("x.csv", []byte("PAR1,PAR2\n1,2\n")); f != CSV || err != nil {
		t.Errorf("a CSV whose first column is PAR1: %q, %v", f, err)
	}
	if f, err := DetectFormat("x.data", []byte("PAR1\x15\x00\x15\x90")); f != Parquet || err != nil {
		t.Errorf("Parquet without its extension: %q, %v", f, err)
	}
}

// csvRecords is what a CSV file's records are, by eachBatch.
type csvRecords struct {
	recs  [][]string
	lines []int64
	err   string
}

// readRecords reads data with the fast path on or off.
func readRecords(t testing.TB, data []byte, fast bool) csvRecords {
	f, err := openCSV(context.Background(), &memInput{"f.csv", data}, DefaultMaxFieldBytes)
	if err != nil {
		return csvRecords{err: err.Error()}
	}
	defer f.Close()
	if !f.fast {
		t.Fatal("the fast path is off: encoding/csv no longer reads from the shared buffer")
	}
	f.fast = fast
	var r csvRecords
	err = f.eachBatch(context.Background(), func(b *recordBatch) error {
		for k := range b.len() {
			rec := make([]string, b.width)
			for j := range rec {
				rec[j] = string(b.field(k, j))
			}
			r.recs = append(r.recs, rec)
		}
		r.lines = append(r.lines, b.lines...)
		return nil
	})
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// FuzzCSVFastPathMatchesEncodingCSV: on any bytes, the fast path gives the
// records, lines and errors of encoding/csv alone.
func FuzzCSVFastPathMatchesEncodingCSV(f *testing.F) {
	for _, s := range []string{"a,b\n1,2\n", "a,b\r\n1,\"x\ny\"\n\n3,4", "a\n\"\n", "a,b\n1,b\"c\n", "a,b,c\n1,2\n3,4,5\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow := readRecords(t, data, true), readRecords(t, data, false)
		if diff := cmp.Diff(slow, fast, cmp.AllowUnexported(csvRecords{})); diff != "" {
			t.Fatalf("fast path differs from encoding/csv (-csv +fast):\n%s", diff)
		}
	})
}

// TestFastRecordMatchesEncodingCSV: the fast path (splitLines) gives the records, lines
// and errors that encoding/csv alone gives, on seeded files mixing plain
// lines with quoted and multi-line fields, CRLF, blank lines, lines across
// buffer refills, and a malformed row at the end.
func TestFastRecordMatchesEncodingCSV(t *testing.T) {
	readAll := func(data []byte, fast bool) csvRecords { return readRecords(t, data, fast) }
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 9))
		var b bytes.Buffer
		if seed%3 == 0 {
			b.WriteString("\"a\nx\",b,c\n") // a header over two lines
		} else {
			b.WriteString("a,b,c\r\n")
		}
		rows := 200 + rng.IntN(3000)
		for i := range rows {
			eol := "\n"
			if rng.IntN(4) == 0 {
				eol = "\r\n"
			}
			switch k := rng.IntN(20); {
			case k == 0:
				b.WriteString(eol) // blank
			case k == 1:
				fmt.Fprintf(&b, "%d,\"q,%d\nmore \"\"x\"\"\",%d%s", i, i, i, eol)
			case k == 2:
				fmt.Fprintf(&b, "%d,,\"\"%s", i, eol)
			case k == 3:
				fmt.Fprintf(&b, "%d,x\r,y%s", i, eol) // a lone CR is data
			default:
				fmt.Fprintf(&b, "%d,%s,%g%s", i, strings.Repeat("v", rng.IntN(60)), rng.NormFloat64(), eol)
			}
		}
		switch seed % 4 {
		case 1:
			b.WriteString("1,2\n3,4,5\n") // ragged
		case 2:
			b.WriteString("1,b\"c,3\n") // bare quote
		case 3:
			b.WriteString("1,2,3") // no final line end
		}
		data := b.Bytes()
		fast, slow := readAll(data, true), readAll(data, false)
		if diff := cmp.Diff(slow, fast, cmp.AllowUnexported(csvRecords{})); diff != "" {
			t.Fatalf("seed %d: fast path differs from encoding/csv (-csv +fast):\n%s", seed, diff)
		}
		if len(slow.recs) < rows/2 {
			t.Fatalf("seed %d: only %d records (%s)", seed, len(slow.recs), slow.err)
		}
	}
}

// TestReadBatchesCSVParallelMatchesSerial: parsing record batches in parts
// on several goroutines delivers the same batches, values and errors as one
// goroutine, including every row before a bad cell and none after it.
func TestReadBatchesCSVParallelMatchesSerial(t *testing.T) {
	schema := Schema{{"i", Int}, {"f", Float}, {"b", Bool}, {"s", String}, {"t", Timestamp}}
	names := []string{"t", "s", "i", "f", "b"}
	type result struct {
		batches []string
		err     string
	}
	read := func(data []byte, procs, batch int) result {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		var r result
		err := ReadBatches(context.Background(), []Input{&memInput{"p.csv", data}}, schema, names, batch, func(b *Batch) error {
			r.batches = append(r.batches, fmt.Sprint(b.Len, b.Num, b.Int, b.Str, b.Null))
			return nil
		})
		if err != nil {
			r.err = err.Error()
		}
		return r
	}
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 11))
		var b bytes.Buffer
		b.WriteString("i,f,b,s,t\n")
		rows := 500 + rng.IntN(4000)
		badRow := -1
		if seed%2 == 1 {
			badRow = rng.IntN(rows)
		}
		for i := range rows {
			f := strconv.FormatFloat(rng.NormFloat64(), 'g', -1, 64)
			if i == badRow {
				f = "oops"
			}
			s := fmt.Sprintf("v%d", rng.IntN(9))
			if rng.IntN(10) == 0 {
				s = fmt.Sprintf("\"q,%d\"", i)
			}
			fmt.Fprintf(&b, "%d,%s,%v,%s,2024-01-%02dT10:00:00Z\n", rng.IntN(1000)-500, f, rng.IntN(2) == 0, s, 1+rng.IntN(28))
			if rng.IntN(50) == 0 {
				b.WriteString("NA, ,null,,NA\n")
			}
		}
		batch := 1 + rng.IntN(3000)
		serial, parallel := read(b.Bytes(), 1, batch), read(b.Bytes(), 3, batch)
		if diff := cmp.Diff(serial, parallel, cmp.AllowUnexported(result{})); diff != "" {
			t.Fatalf("seed %d: parallel parsing differs (-serial +parallel):\n%s", seed, diff)
		}
		if (badRow >= 0) != (serial.err != "") {
			t.Fatalf("seed %d: bad row %d, error %q", seed, badRow, serial.err)
		}
	}
}
