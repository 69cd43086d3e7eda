package psi

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Pair is a blinded value with the index of what it stands for (a row, or a
// position in a set), the unit every sort and merge of a linkage works on.
type Pair struct {
	Value Element
	Index uint32
}

// PairSize is a Pair's size on disk and on the wire: the value, then the
// index big-endian.
const PairSize = Size + 4

// Put encodes p into b (PairSize bytes).
func (p *Pair) Put(b []byte) {
	copy(b, p.Value[:])
	binary.BigEndian.PutUint32(b[Size:], p.Index)
}

// Get decodes p from b.
func (p *Pair) Get(b []byte) {
	copy(p.Value[:], b)
	p.Index = binary.BigEndian.Uint32(b[Size:])
}

// Compare orders pairs by value, then index.
func Compare(a, b *Pair) int {
	if c := bytes.Compare(a.Value[:], b.Value[:]); c != 0 {
		return c
	}
	switch {
	case a.Index < b.Index:
		return -1
	case a.Index > b.Index:
		return 1
	}
	return 0
}

// Sorter sorts pairs in bounded memory: it holds up to Limit pairs, and
// past that writes sorted runs to files in Dir and merges them at the end.
type Sorter struct {
	Dir   string
	Limit int

	buf  []Pair
	runs []string
	n    int64
}

// DefaultSortLimit is the pairs a Sorter holds before it writes a run:
// 72 MiB of pairs.
const DefaultSortLimit = 2 << 20

// NewSorter returns a sorter writing its runs under dir.
func NewSorter(dir string, limit int) *Sorter {
	if limit <= 0 {
		limit = DefaultSortLimit
	}
	return &Sorter{Dir: dir, Limit: limit}
}

// Len is the number of pairs added.
func (s *Sorter) Len() int64 { return s.n }

// Runs is the number of sorted runs written to disk so far.
func (s *Sorter) Runs() int { return len(s.runs) }

// Add adds pairs.
func (s *Sorter) Add(ps ...Pair) error {
	for len(ps) > 0 {
		room := s.Limit - len(s.buf)
		k := min(room, len(ps))
		s.buf = append(s.buf, ps[:k]...)
		s.n += int64(k)
		ps = ps[k:]
		if len(s.buf) >= s.Limit {
			if err := s.spill(); err != nil {
				return err
			}
		}
	}
	return nil
}

// spill writes the buffer as a sorted run.
func (s *Sorter) spill() error {
	slices.SortFunc(s.buf, func(a, b Pair) int { return Compare(&a, &b) })
	f, err := os.CreateTemp(s.Dir, "run-*.bin")
	if err != nil {
		return fmt.Errorf("sorted run: %w", err)
	}
	s.runs = append(s.runs, f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	var b [PairSize]byte
	for i := range s.buf {
		s.buf[i].Put(b[:])
		if _, err := w.Write(b[:]); err != nil {
			_ = f.Close()
			return fmt.Errorf("sorted run: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sorted run: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.buf = s.buf[:0]
	return nil
}

// Each calls fn with every pair in order. It may be called once.
func (s *Sorter) Each(fn func(p *Pair) error) error {
	slices.SortFunc(s.buf, func(a, b Pair) int { return Compare(&a, &b) })
	if len(s.runs) == 0 {
		for i := range s.buf {
			if err := fn(&s.buf[i]); err != nil {
				return err
			}
		}
		return nil
	}
	h := &mergeHeap{}
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close() // read-only
		}
	}()
	for _, name := range s.runs {
		f, err := os.Open(name) // #nosec G304 -- a run this sorter wrote
		if err != nil {
			return err
		}
		files = append(files, f)
		src := &pairSource{r: NewPairReader(bufio.NewReaderSize(f, 256<<10), -1)}
		if err := src.next(); err != nil {
			return err
		}
		if src.ok {
			h.items = append(h.items, src)
		}
	}
	if len(s.buf) > 0 {
		h.items = append(h.items, &pairSource{mem: s.buf, p: s.buf[0], ok: true, i: 1})
	}
	heap.Init(h)
	for h.Len() > 0 {
		top := h.items[0]
		p := top.p
		if err := fn(&p); err != nil {
			return err
		}
		if err := top.next(); err != nil {
			return err
		}
		if top.ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return nil
}

// Close removes the sorter's runs.
func (s *Sorter) Close() error {
	var errs []error
	for _, name := range s.runs {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.runs, s.buf = nil, nil
	return errors.Join(errs...)
}

// pairSource is one sorted input of a merge: a run on disk or the buffer.
type pairSource struct {
	r   *PairReader
	mem []Pair
	i   int
	p   Pair
	ok  bool
}

func (s *pairSource) next() error {
	if s.r == nil {
		s.ok = s.i < len(s.mem)
		if s.ok {
			s.p = s.mem[s.i]
			s.i++
		}
		return nil
	}
	var err error
	s.ok, err = s.r.Next(&s.p)
	return err
}

type mergeHeap struct{ items []*pairSource }

func (h *mergeHeap) Len() int           { return len(h.items) }
func (h *mergeHeap) Less(i, j int) bool { return Compare(&h.items[i].p, &h.items[j].p) < 0 }
func (h *mergeHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)         { h.items = append(h.items, x.(*pairSource)) }
func (h *mergeHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// PairReader reads encoded pairs from a stream.
type PairReader struct {
	r    io.Reader
	left int64 // pairs still expected; -1: until the end
	buf  [PairSize]byte
}

// NewPairReader reads n pairs from r (n < 0: until r ends).
func NewPairReader(r io.Reader, n int64) *PairReader {
	return &PairReader{r: r, left: n}
}

// Next reads the next pair; false at the end.
func (r *PairReader) Next(p *Pair) (bool, error) {
	if r.left == 0 {
		return false, nil
	}
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		if errors.Is(err, io.EOF) && r.left < 0 {
			return false, nil
		}
		return false, fmt.Errorf("reading pairs: %w", err)
	}
	if r.left > 0 {
		r.left--
	}
	p.Get(r.buf[:])
	return true, nil
}
