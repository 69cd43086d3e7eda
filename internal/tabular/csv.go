package tabular

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// maxRecordBytes bounds a whole CSV record (row), so that a row of many
// small fields cannot exhaust memory either; it is at least four fields'
// worth.
const maxRecordBytes = 64 << 20

// csvFile is one open CSV input, positioned after its header.
type csvFile struct {
	name    string
	header  []string
	r       *csv.Reader
	closer  io.Closer
	gzipped bool

	// The fast path (splitLines) splits plain lines itself, from the
	// buffer that r reads from.
	br        *bufio.Reader // r's buffer
	fast      bool          // whether r really reads from br
	fastLines int64         // lines the fast path read, which r did not count
	lastLine  int64         // the line the last record ended on
}

func (f *csvFile) Close() error { return f.closer.Close() }

// openCSV opens a CSV input, decompressing it if it is gzipped, drops a
// byte order mark and reads and checks the header.
func openCSV(ctx context.Context, in Input, maxField int) (*csvFile, error) {
	name := in.Name()
	if in.Size() == 0 {
		return nil, errorf(name, 0, "", "%s is empty", name)
	}
	rc, err := in.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	f := &csvFile{name: name, closer: rc}
	ok := false
	defer func() {
		if !ok {
			_ = rc.Close()
		}
	}()

	br := bufio.NewReaderSize(rc, 64<<10)
	if magic, _ := br.Peek(2); isGzip(magic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, f.error(err, 0)
		}
		f.gzipped = true
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	if _, err := br.Peek(1); err == io.EOF {
		return nil, errorf(name, 0, "", "%s is empty", name)
	}

	g := &fieldGuard{r: br, maxField: int64(maxField), maxRecord: max(maxRecordBytes, 4*int64(maxField)), line: 1, fieldLine: 1}
	f.br = bufio.NewReaderSize(g, 64<<10)
	f.r = csv.NewReader(f.br)
	f.r.ReuseRecord = true
	f.r.FieldsPerRecord = 0 // set by the header

	header, err := f.r.Read()
	if err == io.EOF {
		return nil, errorf(name, 0, "", "%s is empty", name)
	}
	if err != nil {
		return nil, f.error(err, len(header))
	}
	f.csvRecord(header)
	// encoding/csv reads from f.br itself when f.br is a large enough
	// bufio.Reader, which bufio.NewReader documents; if it ever buffered
	// on its own, the bytes it took would not match its offset.
	f.fast = g.total-int64(f.br.Buffered()) == f.r.InputOffset()
	if len(header) > maxColumns {
		return nil, errorf(name, 1, "", "%s: the header has more than %d columns", name, maxColumns)
	}
	f.header = make([]string, len(header))
	seen := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, errorf(name, 1, "", "%s: the header's column %d has no name", name, i+1)
		}
		if j, dup := seen[h]; dup {
			return nil, errorf(name, 1, h, "%s: the header names column %q twice (columns %d and %d)", name, h, j+1, i+1)
		}
		seen[h] = i
		f.header[i] = h
	}
	ok = true
	return f, nil
}

// read returns the next record that encoding/csv parses and the line it
// starts on; io.EOF at the end.
func (f *csvFile) read() ([]string, int64, error) {
	rec, err := f.r.Read()
	if err != nil {
		if err == io.EOF {
			return nil, 0, err
		}
		return nil, 0, f.error(err, len(rec))
	}
	return rec, f.csvRecord(rec), nil
}

// csvRecord notes where a record that r read starts and ends, and returns
// its first line.
func (f *csvFile) csvRecord(rec []string) int64 {
	start, _ := f.r.FieldPos(0)
	last, _ := f.r.FieldPos(len(rec) - 1)
	// Only a quoted field holds line ends; r turned each into one "\n".
	f.lastLine = int64(last) + f.fastLines + int64(strings.Count(rec[len(rec)-1], "\n"))
	return int64(start) + f.fastLines
}

// splitLines moves the simple records at the front of the buffer into b,
// the common case: whole lines already in the buffer, without quotes, not
// blank, with the header's number of fields. That is what encoding/csv
// does for such lines, at a fraction of its cost: one pass over the bytes
// finds the commas, and no string is made. It stops at the first line it
// cannot take, which read (encoding/csv) then parses or reports, or when b
// is full.
func (f *csvFile) splitLines(b *recordBatch) {
	if !f.fast {
		return
	}
	buf, _ := f.br.Peek(f.br.Buffered()) // never reads, so never takes an error
	w := len(f.header)
	used := 0
	for !b.full() {
		nl := bytes.IndexByte(buf[used:], '\n')
		if nl < 0 {
			break
		}
		line := buf[used : used+nl]
		if n := len(line); n > 0 && line[n-1] == '\r' { // \r\n ends a line as \n does
			line = line[:n-1]
		}
		if len(line) == 0 || !b.addLine(line, w) {
			break
		}
		used += nl + 1
		f.fastLines++
		f.lastLine++
		b.lines = append(b.lines, f.lastLine)
	}
	_, _ = f.br.Discard(used)
}

// error turns an error from encoding/csv or the guard into an *Error that
// says where the problem is and how to fix it; fields is the length of the
// record read with it.
func (f *csvFile) error(err error, fields int) error {
	name := f.name
	var ge *guardError
	if errors.As(err, &ge) {
		switch ge.kind {
		case tooLongRecord:
			return errorf(name, ge.line, "", "row at line %d of %s is larger than %s; is the file really CSV with comma separators?", ge.line, name, byteSize(ge.limit))
		case tooManyFields:
			return errorf(name, ge.line, "", "ragged row at line %d of %s: more than %d fields, header has %d", ge.line, name, ge.limit, ge.limit)
		case tooManyColumns:
			return errorf(name, 1, "", "%s: the header has more than %d columns", name, ge.limit)
		}
		col := ""
		where := fmt.Sprintf("field %d", ge.field+1)
		if f.header == nil {
			where = fmt.Sprintf("header field %d", ge.field+1)
		} else if ge.field < len(f.header) {
			col = f.header[ge.field]
			where = fmt.Sprintf("column %q", col)
		}
		return errorf(name, ge.line, col, "field at line %d of %s, %s, is larger than %s (the limit for one field)", ge.line, name, where, byteSize(ge.limit))
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		pe.StartLine += int(f.fastLines) // r counts only the lines it read
		pe.Line += int(f.fastLines)
		switch {
		case errors.Is(pe.Err, csv.ErrFieldCount):
			return errorf(name, int64(pe.StartLine), "", "ragged row at line %d of %s: %d fields, header has %d", pe.StartLine, name, fields, len(f.header))
		case errors.Is(pe.Err, csv.ErrBareQuote):
			return errorf(name, int64(pe.Line), "", "bare quote in an unquoted field at line %d of %s (byte %d of the line): a field that contains quotes must be enclosed in quotes, with each inner quote doubled", pe.Line, name, pe.Column)
		case errors.Is(pe.Err, csv.ErrQuote):
			if pe.StartLine != pe.Line {
				return errorf(name, int64(pe.StartLine), "", "quoted field starting on line %d of %s is not closed properly (error at line %d, byte %d): a closing quote must be followed by a comma or a line end, and inner quotes must be doubled", pe.StartLine, name, pe.Line, pe.Column)
			}
			return errorf(name, int64(pe.Line), "", "misplaced quote at line %d of %s (byte %d of the line): a closing quote must be followed by a comma or a line end, and inner quotes must be doubled", pe.Line, name, pe.Column)
		}
		return errorf(name, int64(pe.Line), "", "malformed CSV at line %d of %s: %v", pe.Line, name, pe.Err)
	}
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	var fe flate.CorruptInputError
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &fe) ||
		f.gzipped && errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(name, 0, "", "%s: corrupt or truncated gzip data", name)
	}
	return fmt.Errorf("reading %s: %w", name, err)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// guardError reports a field, a record or a field count over its limit.
type guardError struct {
	kind  guardKind
	line  int64 // where the field or record starts
	field int   // 0-based index of the field in its record
	limit int64
}

type guardKind uint8

const (
	tooLongField guardKind = iota
	tooLongRecord
	tooManyFields  // a row with more fields than the header
	tooManyColumns // a header with more than maxColumns fields
)

func (e *guardError) Error() string { return "CSV field or row too large" }

// maxColumns bounds the header: every column costs memory in a scan.
const maxColumns = 100_000

// fieldGuard sits between the bytes and encoding/csv, which holds a whole
// record in memory (plus about 40 bytes per field), and stops the read as
// soon as a field, a record or a record's field count exceeds its limit. It
// follows RFC 4180 quoting well enough for that: outside quotes a comma ends
// a field and a newline a record; quotes toggle. Malformed quoting confuses
// it no more than it confuses encoding/csv, which then reports the error.
//
// The guard delivers the bytes it has scanned together with its error, so
// encoding/csv parses everything before the problem (and reports an earlier
// error of its own first, or the exact field count of a ragged row that
// fits in the buffer).
type fieldGuard struct {
	r                   io.Reader
	maxField, maxRecord int64

	quoted                bool
	field, record         int64 // bytes so far in the current field and record
	fieldIdx              int
	records               int64 // records completed
	headerFields          int   // fields in the header, once it is complete
	line                  int64 // current line, 1-based
	fieldLine, recordLine int64
	err                   error
	total                 int64 // bytes delivered
}

func (g *fieldGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	g.total += int64(n)
	if e := g.scan(p[:n]); e != nil {
		g.err = e
		return n, e
	}
	return n, err
}

func (g *fieldGuard) scan(p []byte) error {
	for len(p) > 0 {
		if g.quoted {
			i := bytes.IndexByte(p, '"')
			seg := p
			if i >= 0 {
				seg = p[:i+1]
				g.quoted = false
			}
			g.line += int64(bytes.Count(seg, []byte{'\n'}))
			g.field += int64(len(seg))
			g.record += int64(len(seg))
			p = p[len(seg):]
			if err := g.check(); err != nil {
				return err
			}
			continue
		}
		// Fast path, the common case: up to the next line end there is no
		// quote and less than a field's worth of bytes, so only the field
		// that continues from before, the record and the field count can
		// be over their limits. Vectorised searches do the work.
		nl := bytes.IndexByte(p, '\n')
		line := p
		if nl >= 0 {
			line = p[:nl]
		}
		if int64(len(line)) <= g.maxField && bytes.IndexByte(line, '"') < 0 {
			if commas := bytes.Count(line, []byte{','}); commas > 0 {
				g.field += int64(bytes.IndexByte(line, ','))
				if err := g.check(); err != nil {
					return err
				}
				g.fieldIdx += commas
				if err := g.checkFields(); err != nil {
					return err
				}
				g.field = int64(len(line) - bytes.LastIndexByte(line, ',') - 1)
				g.fieldLine = g.line
			} else {
				g.field += int64(len(line))
			}
			g.record += int64(len(line))
			if err := g.check(); err != nil {
				return err
			}
			if nl < 0 {
				return nil
			}
			g.endRecord()
			p = p[nl+1:]
			continue
		}
		// Slow path: byte by byte to the next special byte.
		i := indexSpecial(p)
		if i < 0 {
			g.field += int64(len(p))
			g.record += int64(len(p))
			p = nil
		} else {
			g.field += int64(i)
			g.record += int64(i + 1)
			if err := g.check(); err != nil {
				return err
			}
			switch p[i] {
			case ',':
				g.field = 0
				g.fieldIdx++
				g.fieldLine = g.line
				if err := g.checkFields(); err != nil {
					return err
				}
			case '\n':
				g.endRecord()
			case '"':
				g.field++
				g.quoted = true
			}
			p = p[i+1:]
		}
		if err := g.check(); err != nil {
			return err
		}
	}
	return nil
}

// endRecord moves past a line end outside quotes.
func (g *fieldGuard) endRecord() {
	if g.records == 0 {
		g.headerFields = g.fieldIdx + 1
	}
	g.records++
	g.line++
	g.field, g.record, g.fieldIdx = 0, 0, 0
	g.fieldLine, g.recordLine = g.line, g.line
}

func (g *fieldGuard) check() error {
	// +2: the quotes around a quoted field are not part of its value.
	if g.field > g.maxField+2 {
		return &guardError{kind: tooLongField, line: g.fieldLine, field: g.fieldIdx, limit: g.maxField}
	}
	if g.record > g.maxRecord {
		return &guardError{kind: tooLongRecord, line: g.recordLine, field: g.fieldIdx, limit: g.maxRecord}
	}
	return nil
}

func (g *fieldGuard) checkFields() error {
	switch {
	case g.records == 0 && g.fieldIdx >= maxColumns:
		return &guardError{kind: tooManyColumns, line: g.recordLine, limit: maxColumns}
	case g.records > 0 && g.fieldIdx >= g.headerFields:
		return &guardError{kind: tooManyFields, line: g.recordLine, limit: int64(g.headerFields)}
	}
	return nil
}

// special marks the bytes that matter to fieldGuard outside quotes.
var special = [256]bool{',': true, '\n': true, '"': true}

func indexSpecial(p []byte) int {
	for i, c := range p {
		if special[c] {
			return i
		}
	}
	return -1
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// gunzipHead decompresses as much of a gzip stream's beginning as head holds.
func gunzipHead(head []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(head))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(io.LimitReader(zr, headSize))
	return out
}

// looksLikeText rejects content with NUL bytes or more than 1% control
// characters. Invalid UTF-8 alone is accepted: Latin-1 CSV files exist, and
// their strings are kept as bytes.
func looksLikeText(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	ctl := 0
	for _, c := range b {
		switch {
		case c == 0:
			return false
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f', c == 0x7f:
			ctl++
		}
	}
	if ctl*100 > len(b) {
		return false
	}
	// A file that is mostly invalid UTF-8 with few ASCII letters is binary.
	if !utf8.Valid(b) {
		ascii := 0
		for _, c := range b {
			if c >= 0x20 && c < 0x7f || c == '\n' || c == '\r' || c == '\t' {
				ascii++
			}
		}
		if ascii*10 < len(b)*7 {
			return false
		}
	}
	return true
}

// checkCSVHead checks that the first record of head parses as CSV.
func checkCSVHead(head []byte) error {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	r := csv.NewReader(bytes.NewReader(head))
	_, err := r.Read()
	var pe *csv.ParseError
	if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrQuote) && len(head) == headSize {
		return nil // a quoted field cut off by the end of the head
	}
	if err != nil && err != io.EOF {
		if errors.As(err, &pe) {
			return fmt.Errorf("the first line is not valid CSV: %v", pe.Err)
		}
		return err
	}
	return nil
}

// scanCSV is Scan for CSV inputs: one streaming pass over every row.
func scanCSV(ctx context.Context, inputs []Input, opts ScanOptions) (*Profile, error) {
	var (
		first  *csvFile
		header []string
		stats  []*colStats
		rows   int64
	)
	for _, in := range inputs {
		f, err := openCSV(ctx, in, opts.MaxFieldBytes)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first, header = f, f.header
			if err = checkHeader(in.Name(), header); err == nil {
				stats, err = newCSVStats(header, in.Name(), opts)
			}
		} else {
			err = sameHeader(first.name, header, f.name, f.header)
		}
		if err == nil {
			var n int64
			n, err = scanCSVRows(ctx, f, stats)
			rows += n
		}
		_ = f.Close()
		if err != nil {
			return nil, err
		}
	}
	p := &Profile{Format: CSV, Files: len(inputs), Rows: rows, Columns: make([]ColumnProfile, len(header))}
	for i, s := range stats {
		if s == nil {
			p.Columns[i] = ColumnProfile{Column: Column{Name: header[i]}, Excluded: true}
			continue
		}
		p.Columns[i] = s.profile(opts.MinRecordsPerAggregate, true)
	}
	return p, nil
}

func scanCSVRows(ctx context.Context, f *csvFile, stats []*colStats) (int64, error) {
	// Columns are independent: on more than two cores, split them between
	// workers (one core is busy parsing).
	var active []int
	for i, s := range stats {
		if s != nil {
			active = append(active, i)
		}
	}
	workers := max(1, min(runtime.GOMAXPROCS(0)-1, len(active), 8))
	var rows int64
	err := f.eachBatch(ctx, func(b *recordBatch) error {
		rows += int64(b.len())
		if workers == 1 {
			addRecords(b, stats, active)
			return nil
		}
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := w*len(active)/workers, (w+1)*len(active)/workers
			wg.Go(func() { addRecords(b, stats, active[lo:hi]) })
		}
		wg.Wait()
		return nil
	})
	return rows, err
}

// addRecords adds the batch's cells of the given columns. A cell is seen
// as a string over the batch's bytes without a copy: colStats keeps no
// cell beyond the call (distinct copies the values it keeps).
func addRecords(b *recordBatch, stats []*colStats, cols []int) {
	for k := range b.len() {
		for _, i := range cols {
			stats[i].addCSV(view(b.field(k, i)))
		}
	}
}

// view is b as a string without a copy; b must not change while the
// string is in use.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b)) // #nosec G103 -- read-only view of a batch buffer that outlives the call
}

// offset is a position in a record batch's buffer. A batch is full at
// batchBytes, and the field guard bounds one record at maxRecord, so a
// buffer stays far below 4 GiB; past it is a bug, not data.
func offset(n int) uint32 {
	if n < 0 || n > math.MaxUint32 {
		panic(fmt.Sprintf("tabular: record batch offset %d out of range", n))
	}
	return uint32(n) // #nosec G115 -- checked just above
}

// recordBatch is a run of consecutive records and the lines they start
// on, held as bytes without a pointer per field: field j of record k is
// buf[offs[k·(w+1)+j] : offs[k·(w+1)+j+1]−1], each field being followed by
// one comma in buf. Records cross from the reading goroutine to the
// parsing one in these, and a string per field (the garbage collector's
// work for each) took a quarter of a read.
type recordBatch struct {
	width int
	buf   []byte
	offs  []uint32
	lines []int64
	err   error // what ended the file early; nil at its end
}

// Batches of records cross between goroutines; these bound their size.
const (
	batchRecords = 1024
	batchBytes   = 4 << 20
)

// newRecordBatch starts small: its buffers grow to what the file needs on
// the first batches and are reused after that, so a small file does not
// pay for the largest batch.
func newRecordBatch(width int) *recordBatch {
	return &recordBatch{
		width: width,
		buf:   make([]byte, 0, 64<<10),
		offs:  make([]uint32, 0, min(batchRecords, 64)*(width+1)),
		lines: make([]int64, 0, 64),
	}
}

func (b *recordBatch) reset() {
	b.buf, b.offs, b.lines, b.err = b.buf[:0], b.offs[:0], b.lines[:0], nil
}

func (b *recordBatch) len() int { return len(b.lines) }

func (b *recordBatch) full() bool { return len(b.lines) >= batchRecords || len(b.buf) >= batchBytes }

// field returns field j of record k, valid until the batch is reused.
func (b *recordBatch) field(k, j int) []byte {
	o := b.offs[k*(b.width+1)+j:]
	return b.buf[o[0] : o[1]-1]
}

// addLine splits a plain line (no line end) into a record, reporting false,
// and adding nothing, if it holds a quote or does not have w fields.
func (b *recordBatch) addLine(line []byte, w int) bool {
	base := len(b.buf)
	mark := len(b.offs)
	b.offs = append(b.offs, offset(base))
	fields := 1
	for i, c := range line {
		switch c {
		case ',':
			b.offs = append(b.offs, offset(base+i+1))
			fields++
		case '"':
			b.offs = b.offs[:mark]
			return false
		}
	}
	if fields != w {
		b.offs = b.offs[:mark]
		return false
	}
	b.buf = append(append(b.buf, line...), ',')
	b.offs = append(b.offs, offset(len(b.buf)))
	return true
}

// addRecord adds a record that encoding/csv parsed.
func (b *recordBatch) addRecord(rec []string, line int64) {
	for _, s := range rec {
		b.offs = append(b.offs, offset(len(b.buf)))
		b.buf = append(append(b.buf, s...), ',')
	}
	b.offs = append(b.offs, offset(len(b.buf)))
	b.lines = append(b.lines, line)
}

// eachBatch reads f's records in a goroutine, a batch at a time, and calls
// fn with each batch in the calling goroutine, so that splitting CSV and
// using the records overlap. Three batches circulate between the two, so
// the memory is bounded and reused.
func (f *csvFile) eachBatch(ctx context.Context, fn func(*recordBatch) error) error {
	ch := make(chan *recordBatch, 1)
	free := make(chan *recordBatch, 3)
	for range 3 {
		free <- newRecordBatch(len(f.header))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ch)
		for {
			var b *recordBatch
			select {
			case b = <-free:
			case <-stop:
				return
			}
			b.reset()
			for {
				if f.splitLines(b); b.full() {
					break
				}
				rec, line, err := f.read()
				if err != nil {
					if err != io.EOF {
						b.err = err
					}
					select {
					case ch <- b:
					case <-stop:
					}
					return
				}
				b.addRecord(rec, line)
				if b.full() {
					break
				}
			}
			if err := ctx.Err(); err != nil {
				b.err = err
			}
			select {
			case ch <- b:
			case <-stop:
				return
			}
			if b.err != nil {
				return
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for b := range ch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.len() > 0 {
			if err := fn(b); err != nil {
				return err
			}
		}
		if b.err != nil {
			return b.err
		}
		free <- b
	}
	return nil
}

// newCSVStats prepares one accumulator per column, nil for excluded ones.
func newCSVStats(header []string, file string, opts ScanOptions) ([]*colStats, error) {
	excluded, noSummary, err := checkOptionColumns(header, file, opts)
	if err != nil {
		return nil, err
	}
	stats := make([]*colStats, len(header))
	for i, name := range header {
		if excluded[name] {
			continue
		}
		s := &colStats{name: name, summary: !noSummary[name]}
		if s.summary {
			s.d = newDistinct()
		}
		stats[i] = s
	}
	return stats, nil
}

// checkOptionColumns checks that the Exclude and NoSummary columns exist: a
// misspelt privacy control must not silently let a column through.
func checkOptionColumns(names []string, file string, opts ScanOptions) (excluded, noSummary map[string]bool, err error) {
	set := func(option string, cols []string) (map[string]bool, error) {
		m := make(map[string]bool, len(cols))
		for _, c := range cols {
			found := false
			for _, n := range names {
				if n == c {
					found = true
					break
				}
			}
			if !found {
				hint := ""
				for _, n := range names {
					if strings.EqualFold(n, c) {
						hint = fmt.Sprintf(" (did you mean %q?)", n)
						break
					}
				}
				return nil, errorf(file, 0, c, "%s column %q is not in %s%s", option, c, file, hint)
			}
			m[c] = true
		}
		return m, nil
	}
	if excluded, err = set("excluded", opts.Exclude); err != nil {
		return nil, nil, err
	}
	if noSummary, err = set("identifier", opts.NoSummary); err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		if slices.Contains(opts.AlsoExclude, n) {
			excluded[n] = true
		} else if slices.Contains(opts.AlsoNoSummary, n) {
			noSummary[n] = true
		}
	}
	return excluded, noSummary, nil
}

// sameHeader checks that a later file has the first file's columns.
func sameHeader(firstName string, first []string, name string, cols []string) error {
	for i := range min(len(first), len(cols)) {
		if first[i] != cols[i] {
			return errorf(name, 0, cols[i], "%s and %s have different columns: column %d is %q in %s but %q in %s",
				firstName, name, i+1, first[i], firstName, cols[i], name)
		}
	}
	if len(first) != len(cols) {
		return errorf(name, 0, "", "%s and %s have different columns: %s has %d, %s has %d",
			firstName, name, firstName, len(first), name, len(cols))
	}
	return nil
}

// readCSV is ReadBatches for CSV inputs.
func readCSV(ctx context.Context, inputs []Input, b *batcher) error {
	for _, in := range inputs {
		// Scan enforced the dataset's field limit; here the guard only
		// protects memory from a file changed since.
		f, err := openCSV(ctx, in, maxRecordBytes)
		if err != nil {
			return err
		}
		err = readCSVFile(ctx, f, b)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func readCSVFile(ctx context.Context, f *csvFile, b *batcher) error {
	pos := make([]int, len(b.cols))
	for i, c := range b.cols {
		pos[i] = -1
		for j, h := range f.header {
			if h == c.Name {
				pos[i] = j
			}
		}
		if pos[i] < 0 {
			return errorf(f.name, 0, c.Name, "%s has no column %q", f.name, c.Name)
		}
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	if workers == 1 {
		return f.eachBatch(ctx, func(rb *recordBatch) error {
			for k := range rb.len() {
				r, err := b.next()
				if err != nil {
					return err
				}
				for i, c := range b.cols {
					if err := b.setCSV(i, r, c, rb.field(k, pos[i])); err != nil {
						return f.cellError(rb.lines[k], c, err)
					}
				}
			}
			return nil
		})
	}
	// On more cores, each record batch is parsed straight into b, its rows
	// split between workers (while the reading goroutine splits the next
	// batch): they write disjoint rows of the same column slices. A batch
	// that would overflow b is parsed in two steps, with b handed to fn in
	// between. Rows before a bad cell are delivered exactly as a serial
	// read delivers them; rows after it never are.
	bad := make([]int, workers)
	cols := make([]int, workers)
	errs := make([]error, workers)
	return f.eachBatch(ctx, func(rb *recordBatch) error {
		for from := 0; from < rb.len(); {
			room, err := b.room()
			if err != nil {
				return err
			}
			n := min(room, rb.len()-from)
			at := b.batch.Len
			var wg sync.WaitGroup
			for w := range workers {
				lo, hi := from+w*n/workers, from+(w+1)*n/workers
				wg.Go(func() { bad[w], cols[w], errs[w] = b.parseCSV(rb, lo, hi, at+lo-from, pos) })
			}
			wg.Wait()
			for w := range workers {
				if errs[w] != nil {
					b.batch.Len += bad[w] - from
					c := b.cols[cols[w]]
					return f.cellError(rb.lines[bad[w]], c, errs[w])
				}
			}
			b.batch.Len += n
			from += n
		}
		return nil
	})
}

func (f *csvFile) cellError(line int64, c Column, err error) error {
	return errorf(f.name, line, c.Name, "line %d of %s, column %q: %v", line, f.name, c.Name, err)
}

// parseCSV parses records [lo, hi) of rb into rows at, at+1, … of b,
// returning, for the first bad cell, its record, its column and its error.
func (b *batcher) parseCSV(rb *recordBatch, lo, hi, at int, pos []int) (int, int, error) {
	for k := lo; k < hi; k++ {
		for i, c := range b.cols {
			if err := b.setCSV(i, at+k-lo, c, rb.field(k, pos[i])); err != nil {
				return k, i, err
			}
		}
	}
	return hi, 0, nil
}

// setCSV converts one raw cell into row r of column i. Numbers are parsed
// from the bytes in place; only a string column's cell becomes a string.
func (b *batcher) setCSV(i, r int, c Column, cell []byte) error {
	raw := view(cell)
	t := trimBlank(raw)
	if isNull(t) {
		b.null[i][r] = true
		switch c.Type {
		case String:
			b.str[i][r] = ""
		case Int:
			b.ints[i][r] = 0
			b.num[i][r] = math.NaN()
		default:
			b.num[i][r] = math.NaN()
		}
		return nil
	}
	b.null[i][r] = false
	switch c.Type {
	case String:
		b.str[i][r] = string(cell)
		return nil
	case Int:
		v, ok := parseInt(t)
		if !ok {
			return errNotType(c.Type)
		}
		b.ints[i][r] = v
		b.num[i][r] = float64(v)
	case Float:
		v, ok := parseFloat(t)
		if !ok {
			return errNotType(c.Type)
		}
		b.num[i][r] = v
	case Bool:
		v, ok := parseBool(t)
		if !ok {
			return errNotType(c.Type)
		}
		b.num[i][r] = 0
		if v {
			b.num[i][r] = 1
		}
	case Timestamp:
		v, ok := parseTime(t)
		if !ok {
			return errNotType(c.Type)
		}
		b.num[i][r] = v
	}
	return nil
}

func errNotType(t Type) error {
	return fmt.Errorf("the value is not a valid %s, as the column was when the dataset was connected; reconnect it", t)
}
