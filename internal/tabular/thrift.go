package tabular

import (
	"errors"
	"fmt"
)

// checkThrift walks a Thrift compact-protocol struct (a Parquet footer)
// without decoding it, and fails if it is malformed or declares more than
// it could hold. The parquet library trusts declared list lengths and
// allocates them up front; a few corrupt bytes could ask for terabytes and
// kill the process, which no recover can catch. Every declared count must
// fit in the bytes that remain, nesting is limited, and list elements of
// struct type (the ones that decode into large Go values) are budgeted.
func checkThrift(b []byte) error {
	w := thriftWalker{b: b, structBudget: maxFooterStructs}
	if err := w.walkStruct(0); err != nil {
		return err
	}
	if w.pos != len(b) {
		return fmt.Errorf("%d unexpected bytes after the footer", len(b)-w.pos)
	}
	return nil
}

const (
	maxThriftDepth = 32
	// maxFooterStructs bounds the structs a footer may hold in lists: row
	// groups, column chunks, schema elements, key-value pairs… about a
	// million column chunks, far beyond any sensible file.
	maxFooterStructs = 4 << 20
)

type thriftWalker struct {
	b            []byte
	pos          int
	structBudget int
}

var errThriftShort = errors.New("footer ends in the middle of a value")

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
	return 0, errors.New("malformed varint in footer")
}

func (w *thriftWalker) skip(n uint64) error {
	if n > uint64(len(w.b)-w.pos) {
		return fmt.Errorf("footer declares %d bytes where %d remain", n, len(w.b)-w.pos)
	}
	w.pos += int(n)
	return nil
}

func (w *thriftWalker) count(n uint64) error {
	if n > uint64(len(w.b)-w.pos) {
		return fmt.Errorf("footer declares %d elements where %d bytes remain", n, len(w.b)-w.pos)
	}
	return nil
}

func (w *thriftWalker) walkStruct(depth int) error {
	if depth > maxThriftDepth {
		return errors.New("footer nested too deeply")
	}
	for {
		h, err := w.byte()
		if err != nil {
			return err
		}
		typ := h & 0x0f
		if typ == 0 { // stop
			return nil
		}
		if h>>4 == 0 { // long form: the field id follows
			if _, err := w.varint(); err != nil {
				return err
			}
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
		return w.skip(8)
	case 8: // binary
		n, err := w.varint()
		if err != nil {
			return err
		}
		return w.skip(n)
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
		if err := w.count(n); err != nil {
			return err
		}
		if elem == 12 {
			if w.structBudget -= int(n); w.structBudget < 0 {
				return errors.New("footer holds too many structures")
			}
		}
		for range n {
			if err := w.walkValue(elem, depth+1, true); err != nil {
				return err
			}
		}
		return nil
	case 11: // map
		n, err := w.varint()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := w.count(n); err != nil {
			return err
		}
		kv, err := w.byte()
		if err != nil {
			return err
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
		return w.walkStruct(depth + 1)
	}
	return fmt.Errorf("unknown value type %d in footer", typ)
}
