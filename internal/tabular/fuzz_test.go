package tabular

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// FuzzInferType checks that cell inference never panics and agrees with the
// parse functions that ReadBatches uses: a cell inferred int parses as an
// int and as a float with the same value, a float parses as a float but not
// an int, and so on; a string parses as nothing else.
func FuzzInferType(f *testing.F) {
	for _, s := range []string{"0", "-0", "+12", "007", "1.5", ".5", "5.", "1e5", "1e400", "9223372036854775808",
		"-9223372036854775809", "true", "FALSE", "2024-02-29", "2024-01-02T03:04:05.5+01:00", "2024-01-02 03:04:05",
		"NaN", "NA", "inf", "0x1p-2", " 42 ", "abc", "", "1900-02-29", "2000-02-29 23:59:59.999999999-23:59",
		"1969-12-31T23:59:59Z", "0001-01-01", "9999-12-31T23:59:59.5+14:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cell string) {
		tr := trimBlank(cell)
		if isNull(tr) {
			return
		}
		typ, v := inferType(tr)
		i, okInt := parseInt(tr)
		fl, okFloat := parseFloat(tr)
		_, okBool := parseBool(tr)
		_, okTime := parseTime(tr)
		switch typ {
		case Int:
			if !okInt || !okFloat || float64(i) != v || fl != v {
				t.Fatalf("%q: inferred int %v, parseInt %v %v, parseFloat %v %v", tr, v, i, okInt, fl, okFloat)
			}
			if again, w := inferType(strconv.FormatInt(i, 10)); again != Int || w != v {
				t.Fatalf("%q: the canonical form of int %d infers as %s %v", tr, i, again, w)
			}
		case Float:
			if okInt || !okFloat || fl != v || math.IsInf(v, 0) || math.IsNaN(v) {
				t.Fatalf("%q: inferred float %v, parseInt %v, parseFloat %v %v", tr, v, okInt, fl, okFloat)
			}
			if sv, err := strconv.ParseFloat(tr, 64); err != nil || sv != v {
				t.Fatalf("%q: float %v but strconv says %v %v", tr, v, sv, err)
			}
		case Bool:
			if !okBool || okFloat || okTime {
				t.Fatalf("%q: inferred bool but parseBool %v, parseFloat %v, parseTime %v", tr, okBool, okFloat, okTime)
			}
		case Timestamp:
			if !okTime || okFloat || okBool {
				t.Fatalf("%q: inferred timestamp but parseTime %v, parseFloat %v, parseBool %v", tr, okTime, okFloat, okBool)
			}
		case String:
			if okInt || okFloat || okBool || okTime {
				t.Fatalf("%q: inferred string but parses as int %v, float %v, bool %v, timestamp %v", tr, okInt, okFloat, okBool, okTime)
			}
		default:
			t.Fatalf("%q: unknown type %q", tr, typ)
		}
		// The hand-written timestamp parser agrees with time.Parse.
		secs, ok := parseTime(tr)
		ref, refOK := refParseTime(tr)
		if ok != refOK || ok && math.Abs(secs-ref) > 1e-6 {
			t.Fatalf("%q: parseTime = %v %v, time.Parse = %v %v", tr, secs, ok, ref, refOK)
		}
		// Types only widen.
		for _, other := range []Type{"", Int, Float, Bool, String, Timestamp} {
			j := join(other, typ)
			if j != join(typ, other) || (j != typ && j != other && j != Float && j != String) {
				t.Fatalf("join(%q, %q) = %q", other, typ, j)
			}
		}
	})
}

// The offset is RFC 3339's, hours 00–23: time.Parse also takes +24:00.
var timestampShape = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):\d{2})?)?$`)

// refParseTime is parseTime by time.Parse, the reference.
func refParseTime(t string) (float64, bool) {
	if !timestampShape.MatchString(t) {
		return 0, false // time.Parse's leniencies: one-digit hours, "," for ".", …
	}
	layouts := []string{time.DateOnly, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"}
	for _, l := range layouts {
		if v, err := time.Parse(l, t); err == nil && len(t) >= 10 && digits(t[:4]) {
			return float64(v.Unix()) + float64(v.Nanosecond())/1e9, true
		}
	}
	return 0, false
}

// FuzzScanCSV checks that any bytes give a profile or an *Error, never a
// panic, and that no error quotes a cell of 8 bytes or more.
func FuzzScanCSV(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.csv")
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{"a,b\n1,2\n", "a\n\"x\"\"y\"\n", "a,b\nsecretvalue1,\"unterminated\n", "x,y\r\n1,2\r\n3\r\n",
		"\xef\xbb\xbfa\n1\n", "a,a\n", ",\n", "a,b\n\"q\"x,1\n", "h1,h2\nsecretvalue2\"oops\",x\n"} {
		f.Add([]byte(s))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("a,b,c\n1,x,2024-01-01\n2,y,\n"))
	zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		in := []Input{&memInput{"f.csv", data}}
		p, err := Scan(ctx, in, ScanOptions{MaxFieldBytes: 4096, MinRecordsPerAggregate: 2})
		if err == nil {
			if p == nil {
				t.Fatal("no profile and no error")
			}
			for _, c := range p.Columns {
				if c.Count+c.Nulls != p.Rows {
					t.Fatalf("column %q: %d values + %d nulls in %d rows", c.Name, c.Count, c.Nulls, p.Rows)
				}
			}
			// What Scan accepts, ReadBatches reads, with the same types.
			var names []string
			for _, c := range p.Schema() {
				names = append(names, c.Name)
			}
			var rows int64
			err := ReadBatches(ctx, in, p.Schema(), names, 7, func(b *Batch) error {
				rows += int64(b.Len)
				return nil
			})
			if err != nil {
				t.Fatalf("Scan accepted the data but ReadBatches failed: %v", err)
			}
			if rows != p.Rows {
				t.Fatalf("ReadBatches read %d rows, Scan counted %d", rows, p.Rows)
			}
			return
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("error %v is a %T, not an *Error", err, err)
		}
		if leak := leakedCell(data, err.Error()); leak != "" {
			t.Fatalf("error %q quotes the cell %q", err, leak)
		}
	})
}

// leakedCell returns a field of the data rows, 8 bytes or longer, that msg
// contains, unless it is also part of the header (column names may be
// named in errors) or of the file name.
func leakedCell(data []byte, msg string) string {
	sep := func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == '"' }
	head, rest, _ := bytes.Cut(data, []byte("\n"))
	header := strings.FieldsFunc(string(head), sep)
	for _, cell := range strings.FieldsFunc(string(rest), sep) {
		cell = strings.TrimSpace(cell)
		if len(cell) < 8 || !utf8.ValidString(cell) || !strings.Contains(msg, cell) {
			continue
		}
		named := strings.Contains("f.csv", cell)
		for _, h := range header {
			named = named || strings.Contains(h, cell)
		}
		if !named {
			return cell
		}
	}
	return ""
}

// FuzzScanParquet checks that damaged Parquet gives an error, never a panic
// or an unbounded allocation.
func FuzzScanParquet(f *testing.F) {
	f.Add(writeParquet(f, genRows(20)))
	f.Add(writeParquet(f, genRows(50), parquet.MaxRowsPerRowGroup(10), parquet.PageBufferSize(64)))
	f.Add(writeParquet(f, genRows(30), parquet.DataPageVersion(1), parquet.Compression(&parquet.Zstd)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		in := []Input{&memInput{"f.parquet", data}}
		p, err := Scan(ctx, in, ScanOptions{})
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v is a %T, not an *Error", err, err)
			}
			return
		}
		var names []string
		for _, c := range p.Schema() {
			names = append(names, c.Name)
		}
		_ = ReadBatches(ctx, in, p.Schema(), names, 16, func(*Batch) error { return nil })
	})
}
