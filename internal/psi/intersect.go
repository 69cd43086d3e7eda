package psi

import (
	"bytes"
	"fmt"
)

// Intersect walks n sets of pairs, each sorted by value with no value twice,
// and calls fn for every value present in all of them, in ascending order,
// with each set's index for it. It reads each set once, in step, so sets of
// any size are compared in constant memory. A set out of order is an error
// that names it.
func Intersect(sets []*PairReader, fn func(v *Element, idx []uint32) error) error {
	n := len(sets)
	if n == 0 {
		return nil
	}
	cur := make([]Pair, n)
	have := make([]bool, n)
	idx := make([]uint32, n)
	advance := func(i int) (bool, error) {
		prev := cur[i].Value
		had := have[i]
		ok, err := sets[i].Next(&cur[i])
		if err != nil {
			return false, fmt.Errorf("set %d: %w", i, err)
		}
		if ok && had && bytes.Compare(cur[i].Value[:], prev[:]) <= 0 {
			return false, fmt.Errorf("set %d is not sorted by value, or holds a value twice", i)
		}
		have[i] = ok
		return ok, nil
	}
	for i := range sets {
		if ok, err := advance(i); err != nil || !ok {
			return err
		}
	}
	for {
		// The largest current value: every set must reach it.
		top := 0
		for i := 1; i < n; i++ {
			if bytes.Compare(cur[i].Value[:], cur[top].Value[:]) > 0 {
				top = i
			}
		}
		all := true
		for i := range n {
			for bytes.Compare(cur[i].Value[:], cur[top].Value[:]) < 0 {
				if ok, err := advance(i); err != nil || !ok {
					return err
				}
			}
			if cur[i].Value != cur[top].Value {
				all = false
			}
		}
		if !all {
			continue
		}
		v := cur[top].Value
		for i := range n {
			idx[i] = cur[i].Index
		}
		if err := fn(&v, idx); err != nil {
			return err
		}
		for i := range n {
			if ok, err := advance(i); err != nil || !ok {
				return err
			}
		}
	}
}
