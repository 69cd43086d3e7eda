package tabular

import (
	"errors"
	"fmt"
)

// The parquet library decodes Thrift structures (the footer, page headers)
// trusting every length they declare, and allocates before it reads: a few
// corrupt bytes can ask for gigabytes, or terabytes, and kill the process,
// which no recover can catch. So each structure is first walked here,
// without decoding, and refused unless everything it declares fits in the
// bytes that actually remain.

const (
	maxThriftDepth = 32
	// maxFooterStructs bounds the structs a footer may hold in lists (row
	// groups, column chunks, schema elements…), which decode into large Go
	// values: about a million column chunks, far beyond any sensible file.
	maxFooterStructs = 4 << 20
)

// errThriftShort means the bytes end before the structure does: the
// structure is truncated, or the caller gave too few bytes.
var errThriftShort = errors.New("structure ends early")

// checkFooter checks a Parquet footer (a FileMetaData structure).
func checkFooter(b []byte) error {
	w := thriftWalker{b: b, structBudget: maxFooterStructs}
	if err := w.walkStruct(0, 0); err != nil {
		if err == errThriftShort {
			err = errors.New("the footer is truncated or declares more data than it holds")
		}
		return err
	}
	if w.pos != len(b) {
		return fmt.Errorf("%d unexpected bytes after the footer", len(b)-w.pos)
	}
	return nil
}

// fieldPath names an i32 field of a struct (parent 0) or of a struct field
// of it: parent<<16 | id, where parent is that struct field's id.
type fieldPath int32

// walkPageHeader walks a page header (a PageHeader structure) at the start
// of b and returns its length and its i32 fields at depths 0 and 1.
func walkPageHeader(b []byte) (int, map[fieldPath]int64, error) {
	w := thriftWalker{b: b, structBudget: 1 << 10, fields: make(map[fieldPath]int64, 8)}
	if err := w.walkStruct(0, 0); err != nil {
		return 0, nil, err
	}
	return w.pos, w.fields, nil
}

type thriftWalker struct {
	b            []byte
	pos          int
	structBudget int
	fields       map[fieldPath]int64 // recorded i32 fields; nil for none
}

func (w *thriftWalker) byte() (byte, error) {
	if w.pos >= len(w.b) {
		return 0, errThriftShort
	}
	c := w.b[w.pos]
	w.pos++
	return c, nil
}

func (w *thriftWalker) varint() (uint64, error) {
	var x uint64
	for shift := 0; shift < 70; shift += 7 {
		c, err := w.byte()
		if err != nil {
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("malformed varint")
}

// fits checks that n bytes, or n elements of at least a byte, remain.
func (w *thriftWalker) fits(n uint64) error {
	// #nosec G115 -- len - pos is never negative
	if n > uint64(len(w.b)-w.pos) {
		return errThriftShort
	}
	return nil
}

// walkStruct walks a struct; id is the id of the field holding it (0 at
// the top).
func (w *thriftWalker) walkStruct(depth int, id int16) error {
	if depth > maxThriftDepth {
		return errors.New("structure nested too deeply")
	}
	var last int16
	for {
		h, err := w.byte()
		if err != nil {
			return err
		}
		typ := h & 0x0f
		if typ == 0 { // stop
			return nil
		}
		if delta := h >> 4; delta != 0 {
			last += int16(delta)
		} else { // long form: a zigzag i16 field id follows
			v, err := w.varint()
			if err != nil {
				return err
			}
			// #nosec G115 -- zigzag decoding of a field-id delta
			last = int16(int64(v>>1) ^ -int64(v&1))
		}
		if typ == 5 && w.fields != nil && depth <= 1 { // i32
			v, err := w.varint()
			if err != nil {
				return err
			}
			// #nosec G115 -- zigzag decoding and a field path: bit reinterpretation on purpose
			w.fields[fieldPath(int32(id)<<16|int32(uint16(last)))] = int64(int32(uint32(v>>1) ^ -uint32(v&1)))
			continue
		}
		if typ == 12 {
			if err := w.walkStruct(depth+1, last); err != nil {
				return err
			}
			continue
		}
		if err := w.walkValue(typ, depth, false); err != nil {
			return err
		}
	}
}

// walkValue skips one value of compact type typ. Bools are carried in the
// type nibble of a field header but take a byte inside containers.
func (w *thriftWalker) walkValue(typ byte, depth int, inContainer bool) error {
	switch typ {
	case 1, 2: // bool
		if inContainer {
			_, err := w.byte()
			return err
		}
		return nil
	case 3: // byte
		_, err := w.byte()
		return err
	case 4, 5, 6: // i16, i32, i64
		_, err := w.varint()
		return err
	case 7: // double
		if err := w.fits(8); err != nil {
			return err
		}
		w.pos += 8
		return nil
	case 8: // binary
		n, err := w.varint()
		if err != nil {
			return err
		}
		if err := w.fits(n); err != nil {
			return err
		}
		// #nosec G115 -- fits(n) bounded n by the bytes left
		w.pos += int(n)
		return nil
	case 9, 10: // list, set
		h, err := w.byte()
		if err != nil {
			return err
		}
		n, elem := uint64(h>>4), h&0x0f
		if n == 15 {
			if n, err = w.varint(); err != nil {
				return err
			}
		}
		return w.walkElems(n, depth, elem)
	case 11: // map
		n, err := w.varint()
		if err != nil || n == 0 {
			return err
		}
		kv, err := w.byte()
		if err != nil {
			return err
		}
		if err := w.fits(n); err != nil {
			return err
		}
		if kv>>4 == 12 || kv&0x0f == 12 {
			// #nosec G115 -- fits(n) bounded n by the bytes left
			if w.structBudget -= int(n); w.structBudget < 0 {
				return errors.New("structure holds too many elements")
			}
		}
		for range n {
			if err := w.walkValue(kv>>4, depth+1, true); err != nil {
				return err
			}
			if err := w.walkValue(kv&0x0f, depth+1, true); err != nil {
				return err
			}
		}
		return nil
	case 12: // struct
		return w.walkStruct(depth+1, 0)
	}
	return fmt.Errorf("unknown value type %d", typ)
}

// walkElems walks n container elements of type elem.
func (w *thriftWalker) walkElems(n uint64, depth int, elem byte) error {
	if err := w.fits(n); err != nil {
		return err
	}
	if elem == 12 {
		// #nosec G115 -- fits(n) bounded n by the bytes left
		if w.structBudget -= int(n); w.structBudget < 0 {
			return errors.New("structure holds too many elements")
		}
	}
	if depth+1 > maxThriftDepth {
		return errors.New("structure nested too deeply")
	}
	for range n {
		if err := w.walkValue(elem, depth+1, true); err != nil {
			return err
		}
	}
	return nil
}
