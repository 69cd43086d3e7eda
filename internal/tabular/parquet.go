package tabular

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"runtime"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

const (
	// maxFooterBytes bounds the Parquet footer, which is read into memory
	// whole. Real footers are kilobytes to a few megabytes.
	maxFooterBytes = 256 << 20
	// pqReadBuffer is how much of a column chunk is read per ReadAt: large
	// enough for object stores, small enough to keep one per column.
	pqReadBuffer = 256 << 10
	// pqValues is how many values are decoded per call.
	pqValues = 4096
)

// pqConv says how to turn a Parquet value into a Silo value.
type pqConv uint8

const (
	convBool pqConv = iota + 1
	convInt32
	convInt64
	convUint32
	convUint64
	convFloat32
	convDouble
	convFloat16
	convDecimalInt   // INT32/INT64 unscaled decimal
	convDecimalBytes // big-endian two's complement unscaled decimal
	convDate         // INT32 days since the epoch
	convTimeUnit     // INT32/INT64 timestamp or time of day in 1/scale seconds
	convInt96        // legacy nanosecond timestamp
	convString
	convUUID
)

// pqColumn is one top-level column of a Parquet file.
type pqColumn struct {
	name     string
	leaf     int // leaf column index in row groups; -1 when not flat
	optional bool
	typ      Type   // "" when the column cannot be read
	bad      string // why it cannot be read
	conv     pqConv
	scale    float64 // divisor: 10^scale for decimals, units per second for times
}

// pqFile is one open Parquet input.
type pqFile struct {
	name   string
	file   *parquet.File
	reader io.ReaderAt // the Input, with ctx and the footer cached
	cols   []pqColumn
}

// corrupt returns the error for a file the library cannot make sense of.
func corrupt(name string, err error) error {
	return errorf(name, 0, "", "%s: corrupt or truncated Parquet file: %v", name, err)
}

// protect turns a panic inside the parquet library into an error: a corrupt
// file must not take the runner down.
func protect(name string, err *error) {
	if r := recover(); r != nil {
		msg := "the decoder failed"
		if re, ok := r.(runtime.Error); ok {
			msg += ": " + re.Error()
		}
		*err = corrupt(name, errors.New(msg))
	}
}

// pqReader is the io.ReaderAt the parquet library reads through: it serves
// the footer from memory (it was read to check it) and honours ctx.
type pqReader struct {
	ctx        context.Context
	in         Input
	footerOff  int64
	footerData []byte
}

func (r *pqReader) ReadAt(p []byte, off int64) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if off >= r.footerOff && off-r.footerOff <= int64(len(r.footerData)) {
		n := copy(p, r.footerData[off-r.footerOff:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return r.in.ReadAt(p, off)
}

// openParquet opens a Parquet input: checks its footer, decodes it and
// maps its columns. No column data is read.
func openParquet(ctx context.Context, in Input) (f *pqFile, err error) {
	name := in.Name()
	size := in.Size()
	if size == 0 {
		return nil, errorf(name, 0, "", "%s is empty", name)
	}
	if size < 12 {
		return nil, corrupt(name, fmt.Errorf("only %d bytes long", size))
	}
	var tail [8]byte
	if _, err := in.ReadAt(tail[:], size-8); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	switch string(tail[4:]) {
	case "PAR1":
	case "PARE":
		return nil, errorf(name, 0, "", "%s: encrypted Parquet files are not supported", name)
	default:
		return nil, corrupt(name, errors.New("no footer at the end of the file (was it cut short?)"))
	}
	footerLen := int64(binary.LittleEndian.Uint32(tail[:4]))
	if footerLen+12 > size {
		return nil, corrupt(name, fmt.Errorf("the footer claims %d bytes in a %d-byte file (was it cut short?)", footerLen, size))
	}
	if footerLen > maxFooterBytes {
		return nil, errorf(name, 0, "", "%s: Parquet footer of %d bytes is larger than the %s supported", name, footerLen, byteSize(maxFooterBytes))
	}
	footer := make([]byte, footerLen+8)
	footerOff := size - footerLen - 8
	if _, err := in.ReadAt(footer, footerOff); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := checkFooter(footer[:footerLen]); err != nil {
		return nil, corrupt(name, err)
	}

	defer protect(name, &err)
	r := &pqReader{ctx: ctx, in: in, footerOff: footerOff, footerData: footer}
	pf, err := parquet.OpenFile(r, size,
		parquet.SkipPageIndex(true),
		parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(pqReadBuffer),
		parquet.FileReadMode(parquet.ReadModeSync),
	)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, corrupt(name, err)
	}
	if err := checkLayout(pf, footerOff); err != nil {
		return nil, corrupt(name, err)
	}
	f = &pqFile{name: name, file: pf, reader: r}
	for _, c := range pf.Root().Columns() {
		f.cols = append(f.cols, mapColumn(c))
	}
	return f, nil
}

// checkLayout checks the footer's row counts and that every column chunk
// lies inside the file, before any is read.
func checkLayout(f *parquet.File, dataEnd int64) error {
	md := f.Metadata()
	var rows int64
	for i, rg := range md.RowGroups {
		if rg.NumRows < 0 {
			return fmt.Errorf("row group %d has %d rows", i, rg.NumRows)
		}
		rows += rg.NumRows
		for _, cc := range rg.Columns {
			m := &cc.MetaData
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			if start < 4 || m.TotalCompressedSize < 0 || start > dataEnd || m.TotalCompressedSize > dataEnd-start {
				return fmt.Errorf("row group %d has a column chunk outside the file", i)
			}
		}
	}
	if rows != md.NumRows {
		return fmt.Errorf("the row groups hold %d rows but the footer says %d", rows, md.NumRows)
	}
	return nil
}

// mapColumn maps a top-level Parquet column to a Silo type.
func mapColumn(c *parquet.Column) pqColumn {
	col := pqColumn{name: c.Name(), leaf: -1}
	switch {
	case !c.Leaf():
		col.bad = "is nested (a group, list or map); only flat columns are supported: exclude it or flatten the file"
		return col
	case c.Repeated():
		col.bad = "is repeated (a list); only flat columns are supported: exclude it or flatten the file"
		return col
	}
	col.leaf = c.Index()
	col.optional = c.Optional()
	t := c.Type()
	lt := t.LogicalType()
	var logical format.LogicalTypeValue
	if lt != nil {
		logical = lt.Value
	}
	unsupported := func() pqColumn {
		col.bad = fmt.Sprintf("has a Parquet type that is not supported (%s): exclude it or convert it", t)
		return col
	}
	set := func(typ Type, conv pqConv, scale float64) pqColumn {
		col.typ, col.conv, col.scale = typ, conv, scale
		return col
	}
	switch t.Kind() {
	case parquet.Boolean:
		if logical == nil {
			return set(Bool, convBool, 0)
		}
	case parquet.Int32, parquet.Int64:
		is64 := t.Kind() == parquet.Int64
		switch l := logical.(type) {
		case nil:
			if is64 {
				return set(Int, convInt64, 0)
			}
			return set(Int, convInt32, 0)
		case *format.IntType:
			switch {
			case l.IsSigned && is64:
				return set(Int, convInt64, 0)
			case l.IsSigned:
				return set(Int, convInt32, 0)
			case is64:
				return set(Int, convUint64, 0)
			default:
				return set(Int, convUint32, 0)
			}
		case *format.DecimalType:
			if l.Scale >= 0 && l.Scale <= 38 {
				return set(Float, convDecimalInt, math.Pow10(int(l.Scale)))
			}
		case *format.DateType:
			if !is64 {
				return set(Timestamp, convDate, 0)
			}
		case *format.TimestampType:
			if u := unitsPerSecond(l.Unit); u > 0 && is64 {
				return set(Timestamp, convTimeUnit, u)
			}
		case *format.TimeType:
			if u := unitsPerSecond(l.Unit); u > 0 {
				return set(Float, convTimeUnit, u)
			}
		}
	case parquet.Int96:
		if logical == nil {
			return set(Timestamp, convInt96, 0)
		}
	case parquet.Float:
		if logical == nil {
			return set(Float, convFloat32, 0)
		}
	case parquet.Double:
		if logical == nil {
			return set(Float, convDouble, 0)
		}
	case parquet.ByteArray, parquet.FixedLenByteArray:
		switch l := logical.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType, *format.BsonType:
			return set(String, convString, 0)
		case *format.UUIDType:
			if t.Length() == 16 {
				return set(String, convUUID, 0)
			}
		case *format.DecimalType:
			if l.Scale >= 0 && l.Scale <= 38 {
				return set(Float, convDecimalBytes, math.Pow10(int(l.Scale)))
			}
		case *format.Float16Type:
			if t.Length() == 2 {
				return set(Float, convFloat16, 0)
			}
		}
	}
	return unsupported()
}

func unitsPerSecond(u format.TimeUnit) float64 {
	switch u.Value.(type) {
	case *format.MilliSeconds:
		return 1e3
	case *format.MicroSeconds:
		return 1e6
	case *format.NanoSeconds:
		return 1e9
	}
	return 0
}

// pqValue is one converted value: num for every type but string, i for
// ints, s for strings (valid until the next read), null when null.
type pqValue struct {
	num  float64
	i    int64
	s    []byte
	null bool
}

// convert converts v according to col, or fails for a value that has no
// Silo equivalent (an unsigned 64-bit integer beyond the int64 range). v is
// a pointer: copying a parquet.Value into this large function per value
// stalled on store forwarding.
func (col *pqColumn) convert(v *parquet.Value, out *pqValue, uuid *[36]byte) error {
	*out = pqValue{}
	if v.IsNull() {
		out.null, out.num = true, math.NaN()
		return nil
	}
	switch col.conv {
	case convBool:
		if v.Boolean() {
			out.num = 1
		}
	case convInt32:
		out.i = int64(v.Int32())
		out.num = float64(out.i)
	case convInt64:
		out.i = v.Int64()
		out.num = float64(out.i)
	case convUint32:
		// #nosec G115 -- Parquet stores UINT_32 in INT32 bits
		out.i = int64(uint32(v.Int32()))
		out.num = float64(out.i)
	case convUint64:
		// #nosec G115 -- Parquet stores UINT_64 in INT64 bits; checked below
		u := uint64(v.Int64())
		if u > math.MaxInt64 {
			return errors.New("an unsigned value is beyond the int64 range; exclude the column or store it as a string")
		}
		out.i = int64(u)
		out.num = float64(out.i)
	case convFloat32:
		out.num = float64(v.Float())
	case convDouble:
		out.num = v.Double()
	case convFloat16:
		out.num = float16(v.ByteArray())
	case convDecimalInt:
		if v.Kind() == parquet.Int32 {
			out.num = float64(v.Int32()) / col.scale
		} else {
			out.num = float64(v.Int64()) / col.scale
		}
	case convDecimalBytes:
		out.num = bigEndianSigned(v.ByteArray()) / col.scale
	case convDate:
		out.num = float64(v.Int32()) * 86400
	case convTimeUnit:
		var n int64
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		} else {
			n = v.Int64()
		}
		s := n / int64(col.scale)
		out.num = float64(s) + float64(n-s*int64(col.scale))/col.scale
	case convInt96:
		t := v.Int96()
		// #nosec G115 -- INT96 nanoseconds: the two words' bits
		nanos := int64(uint64(t[1])<<32 | uint64(t[0]))
		days := int64(t[2]) - 2440588 // Julian day of 1970-01-01
		out.num = float64(days*86400) + float64(nanos)/1e9
	case convString:
		out.s = v.ByteArray()
	case convUUID:
		b := v.ByteArray()
		hex.Encode(uuid[0:8], b[0:4])
		uuid[8] = '-'
		hex.Encode(uuid[9:13], b[4:6])
		uuid[13] = '-'
		hex.Encode(uuid[14:18], b[6:8])
		uuid[18] = '-'
		hex.Encode(uuid[19:23], b[8:10])
		uuid[23] = '-'
		hex.Encode(uuid[24:36], b[10:16])
		out.s = uuid[:]
	}
	if math.IsNaN(out.num) {
		out.null = true // NaN is null, as in CSV
	}
	return nil
}

// float16 decodes an IEEE 754 half-precision float (little-endian).
func float16(b []byte) float64 {
	if len(b) != 2 {
		return math.NaN()
	}
	h := binary.LittleEndian.Uint16(b)
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// bigEndianSigned decodes a big-endian two's complement integer as a float.
func bigEndianSigned(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	if len(b) <= 8 {
		var n int64
		if b[0]&0x80 != 0 {
			n = -1
		}
		for _, c := range b {
			n = n<<8 | int64(c)
		}
		return float64(n)
	}
	x := new(big.Int).SetBytes(b)
	if b[0]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	v, _ := new(big.Float).SetInt(x).Float64()
	return v
}

// sameParquetSchema checks f against the first file, widening int to float
// in types where the files differ that way.
func sameParquetSchema(first, f *pqFile, types []Type, skip map[string]bool) error {
	for i := range min(len(first.cols), len(f.cols)) {
		a, b := first.cols[i], f.cols[i]
		if a.name != b.name {
			return errorf(f.name, 0, b.name, "%s and %s have different columns: column %d is %q in %s but %q in %s",
				first.name, f.name, i+1, a.name, first.name, b.name, f.name)
		}
		if skip[a.name] {
			continue
		}
		if b.bad != "" {
			return errorf(f.name, 0, b.name, "%s: column %q %s", f.name, b.name, b.bad)
		}
		if a.typ == b.typ {
			continue
		}
		if t := join(types[i], b.typ); b.typ != "" && (t == Float || t == Int) {
			types[i] = t
			continue
		}
		return errorf(f.name, 0, b.name, "%s and %s have different types for column %q: %s in %s, %s in %s",
			first.name, f.name, a.name, typeName(a), first.name, typeName(b), f.name)
	}
	if len(first.cols) != len(f.cols) {
		return errorf(f.name, 0, "", "%s and %s have different columns: %s has %d, %s has %d",
			first.name, f.name, first.name, len(first.cols), f.name, len(f.cols))
	}
	return nil
}

func typeName(c pqColumn) string {
	if c.typ == "" {
		return "unsupported"
	}
	return string(c.typ)
}

// scanParquet is Scan for Parquet inputs: each footer gives the schema and
// row count; column chunks are then read one at a time, a page at a time,
// and each file is dropped before the next is opened.
func scanParquet(ctx context.Context, inputs []Input, opts ScanOptions) (*Profile, error) {
	first, err := openParquet(ctx, inputs[0])
	if err != nil {
		return nil, err
	}
	names := make([]string, len(first.cols))
	for i, c := range first.cols {
		names[i] = c.name
	}
	if err := checkHeader(first.name, names); err != nil {
		return nil, err
	}
	excluded, noSummary, err := checkOptionColumns(names, first.name, opts)
	if err != nil {
		return nil, err
	}
	stats := make([]*colStats, len(names))
	types := make([]Type, len(names))
	for i, c := range first.cols {
		types[i] = c.typ
		if excluded[c.name] {
			continue
		}
		if c.bad != "" {
			return nil, errorf(first.name, 0, c.name, "%s: column %q %s", first.name, c.name, c.bad)
		}
		s := &colStats{name: c.name, typ: c.typ, summary: !noSummary[c.name]}
		if s.summary && (s.typ == Int || s.typ == Bool || s.typ == String) {
			s.d = newDistinct()
		}
		stats[i] = s
	}
	var rows int64
	for k, in := range inputs {
		f := first
		if k > 0 {
			if f, err = openParquet(ctx, in); err != nil {
				return nil, err
			}
			if err := sameParquetSchema(first, f, types, excluded); err != nil {
				return nil, err
			}
		}
		rows += f.file.NumRows()
		for g, rg := range f.file.RowGroups() {
			for i, s := range stats {
				if s == nil {
					continue
				}
				s.typ = types[i] // int widened to float by a later file
				if err := scanChunk(ctx, f, g, rg, i, s); err != nil {
					return nil, err
				}
			}
		}
	}
	p := &Profile{Format: Parquet, Files: len(inputs), Rows: rows, Columns: make([]ColumnProfile, len(names))}
	for i, s := range stats {
		if s == nil {
			p.Columns[i] = ColumnProfile{Column: Column{Name: names[i]}, Excluded: true}
			continue
		}
		s.typ = types[i]
		p.Columns[i] = s.profile(opts.MinRecordsPerAggregate, false)
	}
	return p, nil
}

// scanChunk adds column i of row group g to s.
func scanChunk(ctx context.Context, f *pqFile, g int, rg parquet.RowGroup, i int, s *colStats) error {
	col := &f.cols[i]
	want := rg.NumRows()
	valuesNeeded := s.summary && s.typ != Timestamp || col.conv == convFloat32 || col.conv == convDouble || col.conv == convFloat16
	if !valuesNeeded && !col.optional {
		s.count += want // required and nothing to summarise: nothing to read
		return nil
	}
	r, err := openChunk(f, g, rg, col)
	if err != nil {
		return chunkError(ctx, f, g, col, err)
	}
	defer r.close()
	var got int64
	if !valuesNeeded {
		// Null counts only: the pages' definition levels, not the values.
		for {
			p, err := r.readPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				return chunkError(ctx, f, g, col, err)
			}
			n, nulls := p.NumRows(), p.NumNulls()
			parquet.Release(p)
			got += n
			s.nulls += nulls
			s.count += n - nulls
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	} else {
		buf := make([]parquet.Value, pqValues)
		var v pqValue
		var uuid [36]byte
		for {
			n, err := r.readValues(buf)
			for k := range buf[:n] {
				if err := col.convert(&buf[k], &v, &uuid); err != nil {
					return errorf(f.name, got+1, col.name, "%s, row group %d, column %q: %v", f.name, g, col.name, err)
				}
				got++
				if v.null {
					s.nulls++
					continue
				}
				s.count++
				if !s.summary {
					continue
				}
				switch s.typ {
				case Int:
					s.addNumber(v.num)
					s.d.addInt(v.i)
				case Float:
					s.addNumber(v.num)
				case Bool:
					if v.num != 0 {
						s.d.addString("true")
					} else {
						s.d.addString("false")
					}
				case String:
					s.d.addBytes(v.s)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return chunkError(ctx, f, g, col, err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if got != want {
		return corrupt(f.name, fmt.Errorf("column %q of row group %d holds %d values for %d rows", col.name, g, got, want))
	}
	return nil
}

func chunkError(ctx context.Context, f *pqFile, g int, col *pqColumn, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the data ends early (was it cut short?)")
	}
	return corrupt(f.name, fmt.Errorf("column %q of row group %d: %w", col.name, g, err))
}

// readParquet is ReadBatches for Parquet inputs: row group by row group,
// the requested columns side by side, each one page at a time.
func readParquet(ctx context.Context, inputs []Input, b *batcher) error {
	for _, in := range inputs {
		f, err := openParquet(ctx, in)
		if err != nil {
			return err
		}
		idx := make([]int, len(b.cols))
		for i, c := range b.cols {
			idx[i] = -1
			for j, fc := range f.cols {
				if fc.name == c.Name {
					idx[i] = j
				}
			}
			if idx[i] < 0 {
				return errorf(f.name, 0, c.Name, "%s has no column %q", f.name, c.Name)
			}
			fc := f.cols[idx[i]]
			if fc.bad != "" {
				return errorf(f.name, 0, c.Name, "%s: column %q %s", f.name, c.Name, fc.bad)
			}
			if fc.typ != c.Type && !(fc.typ == Int && c.Type == Float) {
				return errorf(f.name, 0, c.Name, "%s: column %q is %s but was %s when the dataset was connected; reconnect it", f.name, c.Name, fc.typ, c.Type)
			}
		}
		var row int64
		for g, rg := range f.file.RowGroups() {
			if err := readRowGroup(ctx, f, g, rg, idx, row, b); err != nil {
				return err
			}
			row += rg.NumRows()
		}
	}
	return nil
}

func readRowGroup(ctx context.Context, f *pqFile, g int, rg parquet.RowGroup, idx []int, firstRow int64, b *batcher) error {
	readers := make([]*chunkReader, len(idx))
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.close()
			}
		}
	}()
	for i, j := range idx {
		r, err := openChunk(f, g, rg, &f.cols[j])
		if err != nil {
			return chunkError(ctx, f, g, &f.cols[j], err)
		}
		readers[i] = r
	}
	buf := make([]parquet.Value, min(pqValues, b.size))
	var v pqValue
	var uuid [36]byte
	left := rg.NumRows()
	row := firstRow
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		room, err := b.room()
		if err != nil {
			return err
		}
		n := int(min(int64(room), left))
		start := b.batch.Len
		for i, r := range readers {
			col := &f.cols[idx[i]]
			for got := 0; got < n; {
				m, err := r.readValues(buf[:min(len(buf), n-got)])
				if k, cerr := b.setParquetValues(i, start+got, col, buf[:m], &v, &uuid); cerr != nil {
					at := row + int64(got+k) + 1
					return errorf(f.name, at, col.name, "%s, row %d, column %q: %v", f.name, at, col.name, cerr)
				}
				got += m
				if got < n && err != nil {
					if err == io.EOF {
						err = fmt.Errorf("fewer values than its %d rows", rg.NumRows())
					}
					return chunkError(ctx, f, g, col, err)
				}
			}
		}
		b.batch.Len += n
		left -= int64(n)
		row += int64(n)
	}
	for i, r := range readers {
		if m, err := r.readValues(buf[:1]); m > 0 || err != io.EOF {
			if err == nil || m > 0 {
				err = fmt.Errorf("more values than its %d rows", rg.NumRows())
			}
			return chunkError(ctx, f, g, &f.cols[idx[i]], err)
		}
	}
	return nil
}

// setParquetValues converts vals into rows start, start+1, … of column i,
// returning the index of the value that failed with its error. Doubles,
// ints and bools, the common columns, have loops of their own that give
// what convert and setParquet give, without a call per value: the call
// was a third of a Parquet read. v and uuid are convert's scratch space.
func (b *batcher) setParquetValues(i, start int, col *pqColumn, vals []parquet.Value, v *pqValue, uuid *[36]byte) (int, error) {
	n := len(vals)
	null := b.null[i][start : start+n]
	if num := b.num[i]; num != nil {
		num = num[start : start+n]
		var ints []int64
		if b.ints[i] != nil {
			ints = b.ints[i][start : start+n]
		}
		switch col.conv {
		case convDouble:
			if ints != nil {
				break
			}
			for k := range vals {
				pv := &vals[k]
				d := math.NaN()
				if !pv.IsNull() {
					d = pv.Double()
				}
				if d != d { // null or NaN
					null[k], num[k] = true, math.NaN()
					continue
				}
				null[k], num[k] = false, d
			}
			return 0, nil
		case convInt32, convInt64:
			for k := range vals {
				pv := &vals[k]
				var x int64
				switch {
				case pv.IsNull():
					null[k], num[k] = true, math.NaN()
					if ints != nil {
						ints[k] = 0
					}
					continue
				case col.conv == convInt32:
					x = int64(pv.Int32())
				default:
					x = pv.Int64()
				}
				null[k], num[k] = false, float64(x)
				if ints != nil {
					ints[k] = x
				}
			}
			return 0, nil
		case convBool:
			if ints != nil {
				break
			}
			for k := range vals {
				pv := &vals[k]
				switch {
				case pv.IsNull():
					null[k], num[k] = true, math.NaN()
				case pv.Boolean():
					null[k], num[k] = false, 1
				default:
					null[k], num[k] = false, 0
				}
			}
			return 0, nil
		}
	}
	for k := range vals {
		if err := col.convert(&vals[k], v, uuid); err != nil {
			return k, err
		}
		b.setParquet(i, start+k, v)
	}
	return 0, nil
}

// setParquet stores a converted value in row r of column i.
func (b *batcher) setParquet(i, r int, v *pqValue) {
	b.null[i][r] = v.null
	if s := b.str[i]; s != nil {
		if v.null {
			s[r] = ""
		} else {
			s[r] = string(v.s)
		}
		return
	}
	b.num[i][r] = v.num
	if v.null {
		b.num[i][r] = math.NaN()
	}
	if ints := b.ints[i]; ints != nil {
		ints[r] = v.i
	}
}
