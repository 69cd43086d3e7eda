package tabular

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

const (
	// maxPageBytes bounds a page's declared uncompressed size, which the
	// library allocates before decompressing. Writers aim at about 1 MiB.
	maxPageBytes = 128 << 20
	// maxPageValues bounds a data page's declared value count, which sizes
	// the level buffers: the library allocates a byte per value.
	maxPageValues = 1 << 27
	// maxPageHeaderBytes bounds a page header (statistics included).
	maxPageHeaderBytes = 16 << 20
)

// PageHeader fields (parquet.thrift): top-level, or in data_page_header
// (5), dictionary_page_header (7) and data_page_header_v2 (8).
const (
	fieldUncompressed   fieldPath = 0<<16 | 2
	fieldCompressed     fieldPath = 0<<16 | 3
	fieldV1Values       fieldPath = 5<<16 | 1
	fieldDictValues     fieldPath = 7<<16 | 1
	fieldV2Values       fieldPath = 8<<16 | 1
	fieldV2Nulls        fieldPath = 8<<16 | 2
	fieldV2Rows         fieldPath = 8<<16 | 3
	fieldV2DefLevelSize fieldPath = 8<<16 | 5
	fieldV2RepLevelSize fieldPath = 8<<16 | 6
)

// pageGuard is the io.ReaderAt one column chunk's pages are read through.
// It sees the chunk's bytes before the library does, in order, and checks
// every page header as its bytes go by: sizes and counts must fit in the
// chunk and in the limits above. A header that does not is refused as
// corrupt before the library can act on it. It costs no extra reads except
// for a header that straddles the end of a read.
type pageGuard struct {
	r        io.ReaderAt
	end      int64 // end of the chunk
	next     int64 // offset of the next page header not yet checked
	maxRows  int64 // rows in the row group: a flat column has as many values
	err      error
	scratch  []byte
	name     string
	column   string
	rowGroup int
}

func (g *pageGuard) ReadAt(p []byte, off int64) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.ReadAt(p, off)
	for g.next < off+int64(n) && g.next < g.end {
		var h []byte
		if g.next >= off {
			h = p[g.next-off : n]
		}
		if cerr := g.checkHeader(h); cerr != nil {
			g.err = cerr
			return 0, cerr
		}
	}
	return n, err
}

// checkHeader checks the page header at g.next, starting with the bytes
// in h (which may be too few or none) and reading more as needed.
func (g *pageGuard) checkHeader(h []byte) error {
	window := int64(4 << 10)
	for {
		hl, fields, err := walkPageHeader(h)
		if err == errThriftShort && int64(len(h)) < g.end-g.next {
			if int64(len(h)) >= maxPageHeaderBytes {
				return g.corrupt("page header larger than %s", byteSize(maxPageHeaderBytes))
			}
			window = min(max(window, 4*int64(len(h))), g.end-g.next, maxPageHeaderBytes)
			if int64(cap(g.scratch)) < window {
				g.scratch = make([]byte, window)
			}
			h = g.scratch[:window]
			if n, err := g.r.ReadAt(h, g.next); n < len(h) {
				if err == nil || errors.Is(err, io.EOF) {
					return g.corrupt("the data ends early (was it cut short?)")
				}
				return err
			}
			continue
		}
		if err != nil {
			if err == errThriftShort {
				return g.corrupt("the data ends early (was it cut short?)")
			}
			return g.corrupt("malformed page header: %v", err)
		}
		cs, us := fields[fieldCompressed], fields[fieldUncompressed]
		switch {
		case cs < 0 || cs > g.end-g.next-int64(hl):
			return g.corrupt("a page claims %d bytes where the column chunk has %d left", cs, g.end-g.next-int64(hl))
		case us < 0 || us > maxPageBytes:
			return g.corrupt("a page claims %d bytes uncompressed (the limit is %s)", us, byteSize(maxPageBytes))
		}
		for _, f := range []fieldPath{fieldV1Values, fieldV2Values, fieldV2Nulls, fieldV2Rows} {
			if v := fields[f]; v < 0 || v > g.maxRows || v > maxPageValues {
				return g.corrupt("a page claims %d values in a row group of %d rows", v, g.maxRows)
			}
		}
		if v := fields[fieldDictValues]; v < 0 || v > 8*max(us, cs)+8 {
			return g.corrupt("a dictionary page claims %d values in %d bytes", v, us)
		}
		if d, r := fields[fieldV2DefLevelSize], fields[fieldV2RepLevelSize]; d < 0 || r < 0 || d+r > cs {
			return g.corrupt("a page's levels claim more bytes than the page has")
		}
		g.next += int64(hl) + cs
		return nil
	}
}

func (g *pageGuard) corrupt(format string, args ...any) error {
	return corrupt(g.name, fmt.Errorf("column %q of row group %d: %s", g.column, g.rowGroup, fmt.Sprintf(format, args...)))
}

// chunkReader reads one column chunk's pages and values, a page at a time,
// through a pageGuard.
type chunkReader struct {
	name   string
	pages  *parquet.FilePages
	page   parquet.Page
	values parquet.ValueReader
}

func openChunk(f *pqFile, g int, rg parquet.RowGroup, col *pqColumn) (r *chunkReader, err error) {
	defer protect(f.name, &err)
	cc, ok := rg.ColumnChunks()[col.leaf].(*parquet.FileColumnChunk)
	if !ok {
		return nil, fmt.Errorf("tabular: unexpected column chunk type %T", rg.ColumnChunks()[col.leaf])
	}
	md := f.file.Metadata().RowGroups[g].Columns[col.leaf].MetaData
	// Where the library starts reading the chunk (FilePages.init).
	start := md.DataPageOffset
	if md.DictionaryPageOffset != 0 {
		start = md.DictionaryPageOffset
	}
	guard := &pageGuard{
		r: f.reader, next: start, end: start + md.TotalCompressedSize, maxRows: rg.NumRows(),
		name: f.name, column: col.name, rowGroup: g,
	}
	return &chunkReader{name: f.name, pages: cc.PagesFrom(guard)}, nil
}

// readPage returns the next page, which the caller must release.
func (r *chunkReader) readPage() (p parquet.Page, err error) {
	defer protect(r.name, &err)
	return r.pages.ReadPage()
}

// readValues reads values of the current page, moving to the next page
// when it is exhausted. Values of a call stay valid until the next call.
func (r *chunkReader) readValues(buf []parquet.Value) (n int, err error) {
	defer protect(r.name, &err)
	for {
		if r.values == nil {
			p, err := r.pages.ReadPage()
			if err != nil {
				return 0, err
			}
			r.page, r.values = p, p.Values()
		}
		n, err := r.values.ReadValues(buf)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			return 0, io.ErrNoProgress
		}
		if err != io.EOF {
			return 0, err
		}
		r.release()
	}
}

func (r *chunkReader) release() {
	if r.page != nil {
		parquet.Release(r.page)
		r.page, r.values = nil, nil
	}
}

func (r *chunkReader) close() {
	defer func() { recover() }() // a corrupt page may fail again on release
	r.release()
	_ = r.pages.Close()
}
