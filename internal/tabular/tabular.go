// Package tabular reads an organisation's tabular data where it lives: one
// file, or many files of one schema, in CSV or Parquet.
//
// It does two things, both in bounded memory whatever the file size:
//
//   - Scan ("connect" a dataset): the schema, the row count, null counts and
//     the per-column summaries that the dataset's privacy controls allow.
//   - ReadBatches (training, prediction): rows in file order, converted to
//     numbers and strings, a batch at a time, reading only the columns asked for.
//
// Rows never appear in errors: an error may name a file, a line or row
// number and a column, never a cell value. The package does no network or
// database I/O of its own; it reads through [Input], which the blob layer
// implements for file://, s3:// and azure://.
//
// # CSV rules
//
// A header row is required. Fields are separated by commas and quoted as in
// RFC 4180 (encoding/csv, no lazy quotes); every row must have as many fields
// as the header. A UTF-8 byte order mark is dropped, CRLF line ends are
// accepted, blank lines are skipped, and a gzip-compressed file is
// decompressed on the fly. Header names are trimmed of surrounding blanks.
//
// A cell is null when, after trimming spaces and tabs, it is empty or one of
// NA, N/A, NaN, null, NULL. Column types are inferred over every row in one
// pass; each non-null cell is, in this order of preference:
//
//   - int: an optional sign and decimal digits that fit in an int64, with no
//     leading zero ("0" and "-0" are ints; "007" is a string, because leading
//     zeros mark codes such as postcodes and identifiers, which must survive);
//   - float: a decimal number with a fraction and/or an exponent ("1.5",
//     ".5", "1e-3"), or an integer too large for an int64; the same
//     leading-zero rule applies; "inf" and hexadecimal floats are strings;
//   - bool: true or false in any letter case (0 and 1 are ints);
//   - timestamp: RFC 3339 ("2006-01-02T15:04:05Z07:00"), "2006-01-02",
//     "2006-01-02 15:04:05" or "2006-01-02T15:04:05" (both read as UTC), or
//     "2006-01-02 15:04:05-07:00"; up to nine digits of fractional seconds;
//   - string: anything else.
//
// A column's type is the narrowest that holds all its cells: int and float
// make float, any other mix makes string, and a column with only nulls is a
// string. Numbers, bools, timestamps and null tokens may be surrounded by
// spaces; strings are kept exactly as written.
//
// # Parquet rules
//
// Only flat columns are read: a nested (group, list, map) or repeated
// column is an error unless it is excluded. Physical and logical types map
// to: BOOLEAN → bool; INT32/INT64 (signed or unsigned) → int; FLOAT, DOUBLE,
// FLOAT16, DECIMAL and TIME (seconds since midnight) → float; BYTE_ARRAY
// (UTF8, ENUM, JSON, BSON or unannotated), UUID and plain
// FIXED_LEN_BYTE_ARRAY → string; TIMESTAMP, DATE and INT96 → timestamp.
// A floating-point NaN is null, as it is in CSV. An unsigned 64-bit value
// beyond the int64 range is an error when it is read.
//
// # Limits and memory
//
// A CSV field may hold ScanOptions.MaxFieldBytes (1 MiB by default), a row
// 64 MiB and a header 100,000 columns; the bytes are checked as they stream
// in, before encoding/csv buffers them. A scan keeps a few MiB of buffers
// plus, per column, at most MaxDistinct value hashes (about half a MiB);
// CSV parsing runs in a goroutine of its own, overlapping the summaries.
//
// Parquet files are read a page at a time, one column chunk at a time (in
// ReadBatches, one page per requested column). The footer may be 256 MiB
// and a page 128 MiB uncompressed. Every size and count that the footer and
// the page headers declare is checked against the bytes that really remain
// before the parquet library sees it, because the library allocates what
// they declare; a damaged file is an error, never gigabytes of allocation
// or a crash, and a panic inside the library becomes an error too. The
// compressed streams inside pages are left to their decompressors.
package tabular

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// Input is one file of a dataset. The blob layer (file://, s3://, azure://)
// implements it. Input needs to be safe for one reader at a time only.
type Input interface {
	// Name identifies the file in messages, e.g. "s3://b/k/part-0.csv".
	Name() string
	// Size is the file's length in bytes.
	Size() int64
	// Open starts a sequential read from the beginning of the file.
	Open(ctx context.Context) (io.ReadCloser, error)
	// ReadAt reads len(p) bytes at offset off, as io.ReaderAt does; Parquet
	// needs it to read the footer and then one column chunk at a time.
	ReadAt(p []byte, off int64) (int, error)
}

// Format is the file format of a dataset.
type Format string

// Formats.
const (
	CSV     Format = "csv"
	Parquet Format = "parquet"
)

// Type is the type of a column as the rest of Silo sees it.
type Type string

// Column types.
const (
	Int       Type = "int"       // int64
	Float     Type = "float"     // float64
	Bool      Type = "bool"      // true/false
	String    Type = "string"    // text, kept as written
	Timestamp Type = "timestamp" // instant; Unix seconds in a Batch
)

// Column is a column's name and type.
type Column struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
}

// Schema lists a dataset's columns in file order.
type Schema []Column

// Lookup returns the column called name.
func (s Schema) Lookup(name string) (Column, bool) {
	for _, c := range s {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Summary limits.
const (
	// DefaultMaxFieldBytes is the largest CSV field accepted when
	// ScanOptions.MaxFieldBytes is zero.
	DefaultMaxFieldBytes = 1 << 20

	// MaxDistinct is where exact distinct counting stops: a column with more
	// distinct values reports MaxDistinct with DistinctCapped set. It bounds
	// the memory a scan uses per column.
	MaxDistinct = 10_000

	// MaxCategories is the largest number of distinct values for which a
	// column reports its Categories.
	MaxCategories = 50

	// MaxCategoryBytes is the longest value that may be a category; a longer
	// value is free text, and its column reports no Categories.
	MaxCategoryBytes = 1024
)

// ScanOptions carries a dataset's privacy controls into Scan and sets limits.
type ScanOptions struct {
	// Exclude lists columns that are never parsed or converted; in Parquet
	// they are not even read. Each must exist in the data.
	Exclude []string
	// NoSummary lists columns that get only their name, type and null count:
	// identifier columns. Each must exist in the data.
	NoSummary []string
	// AlsoExclude and AlsoNoSummary are Exclude and NoSummary for columns
	// that other rules name (another dataset on the same data, a runner
	// policy): applied where the data has them, not required to exist.
	AlsoExclude, AlsoNoSummary []string
	// MinRecordsPerAggregate is the smallest number of values a summary
	// statistic may be computed over (values below 1 count as 1). Categories
	// are reported only if every category has at least this many rows.
	MinRecordsPerAggregate int
	// MaxFieldBytes is the largest CSV field accepted, as stored in the file,
	// so that one absurd field cannot exhaust memory. Zero means
	// DefaultMaxFieldBytes.
	MaxFieldBytes int
}

// ColumnProfile is what Scan reports about one column.
type ColumnProfile struct {
	Column
	// Excluded columns were not read: Type is "" and every count is zero.
	Excluded bool  `json:"excluded,omitempty"`
	Nulls    int64 `json:"nulls"`
	Count    int64 `json:"count"` // non-null values

	// Summaries are nil when the privacy controls forbid them (NoSummary,
	// fewer than MinRecordsPerAggregate values) or when they do not apply.

	// Mean and Std (the sample standard deviation, n−1) of int and float
	// columns. Std needs two values. Neither is reported unless finite.
	Mean *float64 `json:"mean,omitempty"`
	Std  *float64 `json:"std,omitempty"`
	// Distinct counts the distinct values of string, bool and int columns
	// that occur in at least MinRecordsPerAggregate rows: rarer values are
	// not counted, so the report never says how many there are. Past
	// MaxDistinct distinct values it is nil and DistinctCapped is set.
	Distinct       *int64 `json:"distinct,omitempty"`
	DistinctCapped bool   `json:"distinct_capped,omitempty"`
	// MostlyUnique is set when more than half of the values occur only
	// once, or there are more than MaxDistinct distinct values: the column
	// tells rows apart (an identifier in disguise) and cannot be a
	// categorical feature.
	MostlyUnique bool `json:"mostly_unique,omitempty"`
	// Categories lists the values of a string, bool or int column that has
	// at most MaxCategories distinct values (each at most MaxCategoryBytes
	// long) that occur in at least MinRecordsPerAggregate rows; rarer values
	// are withheld; nil when there are none or too many values. Strings are
	// sorted bytewise, ints numerically, bools as "false", "true". One-hot
	// encoding is built from it later.
	Categories []string `json:"categories,omitempty"`
}

// Profile is the result of Scan.
type Profile struct {
	Format  Format          `json:"format"`
	Files   int             `json:"files"`
	Rows    int64           `json:"rows"`
	Columns []ColumnProfile `json:"columns"` // in file order, excluded ones included
}

// Schema returns the columns that were read, in file order: the schema to
// pass to ReadBatches.
func (p *Profile) Schema() Schema {
	s := make(Schema, 0, len(p.Columns))
	for _, c := range p.Columns {
		if !c.Excluded {
			s = append(s, c.Column)
		}
	}
	return s
}

// Batch holds up to batchSize consecutive rows of the requested columns,
// column by column. Every slice has length Len. ReadBatches reuses one Batch
// and its slices for every call of fn, so fn must copy what it keeps.
type Batch struct {
	Len int
	// Num holds int, float, bool (0 or 1), and timestamp (Unix seconds,
	// with fraction) columns; NaN where null.
	Num map[string][]float64
	// Int holds the exact values of int columns (also in Num, where values
	// beyond ±2⁵³ lose precision): identifiers must round-trip. 0 where null.
	Int map[string][]int64
	// Str holds string columns; "" where null.
	Str map[string][]string
	// Null marks null cells, for every requested column.
	Null map[string][]bool
}

// Error is a problem with the data or with the options given for it, one a
// person has to fix (as opposed to an I/O failure or a cancellation). Its
// message says what is wrong and where, never what a cell contains.
type Error struct {
	File   string // Input.Name of the file, "" when about the whole dataset
	Line   int64  // 1-based CSV line or Parquet row; 0 when not about a row
	Column string // "" when not about one column
	msg    string
}

func (e *Error) Error() string { return e.msg }

// errorf returns an *Error. Its arguments must never include cell values.
func errorf(file string, line int64, column, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Column: column, msg: fmt.Sprintf(format, args...)}
}

// DetectFormat tells the format of a file from its name and its first bytes
// (a few KiB; fewer is fine). Content decides when it is conclusive: the
// PAR1 magic means Parquet (unless a .csv file is text that happens to
// start so), gzip is a compressed CSV. Otherwise a .parquet or .pq name
// requires the magic, and any other file must be text whose first record
// parses as CSV.
func DetectFormat(name string, head []byte) (Format, error) {
	if len(head) == 0 {
		return "", errorf(name, 0, "", "%s is empty", name)
	}
	ext := path.Ext(strings.TrimSuffix(strings.ToLower(name), ".gz"))
	if len(head) >= 4 && string(head[:4]) == "PAR1" && !(ext == ".csv" && looksLikeText(head)) {
		return Parquet, nil // (a CSV file may well start with a column named PAR1)
	}
	if ext == ".parquet" || ext == ".pq" {
		return "", errorf(name, 0, "", "%s: not a Parquet file (it does not start with the PAR1 magic bytes)", name)
	}
	text := head
	if isGzip(head) {
		text = gunzipHead(head)
		if len(text) == 0 {
			return "", errorf(name, 0, "", "%s: gzip-compressed but unreadable or empty", name)
		}
	}
	if !looksLikeText(text) {
		return "", errorf(name, 0, "", "%s: not CSV or Parquet (binary content)", name)
	}
	if err := checkCSVHead(text); err != nil {
		return "", errorf(name, 0, "", "%s: not CSV or Parquet (%v)", name, err)
	}
	return CSV, nil
}

// Ignorable reports whether a file in a dataset folder is bookkeeping that
// is not data, by the Hadoop/Spark convention that such names start with
// "_" or "." (_SUCCESS, _metadata, .part-0.crc). The blob layer may use it
// when it lists a prefix.
func Ignorable(name string) bool {
	base := path.Base(name)
	return strings.HasPrefix(base, "_") || strings.HasPrefix(base, ".")
}

// headSize is how much of each file DetectFormat gets to see.
const headSize = 8 << 10

// detect reads the head of every input and returns their common format.
func detect(inputs []Input) (Format, error) {
	var format Format
	for i, in := range inputs {
		n := min(in.Size(), headSize)
		head := make([]byte, n)
		if n > 0 {
			if m, err := in.ReadAt(head, 0); m < len(head) {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return "", fmt.Errorf("reading %s: %w", in.Name(), err)
			}
		}
		f, err := DetectFormat(in.Name(), head)
		if err != nil {
			return "", err
		}
		if i > 0 && f != format {
			return "", errorf(in.Name(), 0, "", "%s is %s but %s is %s: all files of a dataset must have the same format",
				inputs[0].Name(), formatName(format), in.Name(), formatName(f))
		}
		format = f
	}
	return format, nil
}

func formatName(f Format) string {
	if f == Parquet {
		return "Parquet"
	}
	return "CSV"
}

// Scan reads every input from start to end and reports its schema, row
// count, null counts and the summaries that opts allow. All inputs must have
// the same format and the same columns in the same order; CSV column types
// are unified across files. Memory use does not grow with the data.
func Scan(ctx context.Context, inputs []Input, opts ScanOptions) (*Profile, error) {
	if len(inputs) == 0 {
		return nil, errorf("", 0, "", "the dataset has no files")
	}
	if opts.MaxFieldBytes <= 0 {
		opts.MaxFieldBytes = DefaultMaxFieldBytes
	}
	opts.MinRecordsPerAggregate = max(opts.MinRecordsPerAggregate, 1)
	format, err := detect(inputs)
	if err != nil {
		return nil, err
	}
	var p *Profile
	if format == Parquet {
		p, err = scanParquet(ctx, inputs, opts)
	} else {
		p, err = scanCSV(ctx, inputs, opts)
	}
	if err == nil && p.Rows == 0 {
		// A header alone is no data, and its names would be all a report
		// showed of the file.
		return nil, errorf("", 0, "", "the dataset has a header but no data rows: a dataset needs rows to train or analyse on")
	}
	return p, err
}

// ReadBatches streams the given columns of every input, in file order, to fn
// in batches of batchSize rows (the last one may be shorter; a batch may
// span files). schema gives the column types, normally Profile.Schema() from
// an earlier Scan; CSV cells are parsed by the rules Scan used and a cell
// that no longer fits its type is an error. Only the requested columns are
// converted (Parquet reads only their column chunks). An error returned by
// fn stops the read and is returned as is.
func ReadBatches(ctx context.Context, inputs []Input, schema Schema, columns []string, batchSize int, fn func(*Batch) error) error {
	if batchSize <= 0 {
		return fmt.Errorf("tabular: batch size %d must be positive", batchSize)
	}
	cols := make([]Column, len(columns))
	for i, name := range columns {
		c, ok := schema.Lookup(name)
		if !ok {
			return errorf("", 0, name, "column %q is not in the dataset's schema", name)
		}
		if slices.Contains(columns[:i], name) {
			return errorf("", 0, name, "column %q is requested twice", name)
		}
		switch c.Type {
		case Int, Float, Bool, String, Timestamp:
		default:
			return errorf("", 0, name, "column %q has unknown type %q", name, c.Type)
		}
		cols[i] = c
	}
	if len(inputs) == 0 {
		return nil
	}
	format, err := detect(inputs)
	if err != nil {
		return err
	}
	b := newBatcher(cols, batchSize, fn)
	if format == Parquet {
		err = readParquet(ctx, inputs, b)
	} else {
		err = readCSV(ctx, inputs, b)
	}
	if err != nil {
		return err
	}
	return b.flush()
}

// batcher fills one reusable Batch and hands it to fn whenever it is full.
type batcher struct {
	cols  []Column
	size  int
	fn    func(*Batch) error
	batch Batch
	// Per column i, the destination slices (nil when not applicable).
	num  [][]float64
	ints [][]int64
	str  [][]string
	null [][]bool
}

func newBatcher(cols []Column, size int, fn func(*Batch) error) *batcher {
	b := &batcher{
		cols: cols, size: size, fn: fn,
		batch: Batch{
			Num:  make(map[string][]float64),
			Int:  make(map[string][]int64),
			Str:  make(map[string][]string),
			Null: make(map[string][]bool),
		},
		num:  make([][]float64, len(cols)),
		ints: make([][]int64, len(cols)),
		str:  make([][]string, len(cols)),
		null: make([][]bool, len(cols)),
	}
	for i, c := range cols {
		b.null[i] = make([]bool, size)
		switch c.Type {
		case String:
			b.str[i] = make([]string, size)
		case Int:
			b.ints[i] = make([]int64, size)
			b.num[i] = make([]float64, size)
		default:
			b.num[i] = make([]float64, size)
		}
	}
	return b
}

// next returns the row index to fill, flushing a full batch first.
func (b *batcher) next() (int, error) {
	if b.batch.Len == b.size {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	b.batch.Len++
	return b.batch.Len - 1, nil
}

// room is how many rows fit before the batch is full, flushing it if it is.
func (b *batcher) room() (int, error) {
	if b.batch.Len == b.size {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	return b.size - b.batch.Len, nil
}

// flush hands a non-empty batch to fn and empties it.
func (b *batcher) flush() error {
	n := b.batch.Len
	if n == 0 {
		return nil
	}
	for i, c := range b.cols {
		b.batch.Null[c.Name] = b.null[i][:n]
		if b.num[i] != nil {
			b.batch.Num[c.Name] = b.num[i][:n]
		}
		if b.ints[i] != nil {
			b.batch.Int[c.Name] = b.ints[i][:n]
		}
		if b.str[i] != nil {
			b.batch.Str[c.Name] = b.str[i][:n]
		}
	}
	err := b.fn(&b.batch)
	b.batch.Len = 0
	return err
}
