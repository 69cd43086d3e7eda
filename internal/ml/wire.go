package ml

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// paramsMagic starts every encoded parameter vector; the digit is the format
// version.
const paramsMagic = "SILOW1"

// paramsHeaderLen is the magic followed by the little-endian uint64 count.
const paramsHeaderLen = len(paramsMagic) + 8

// MarshalParams encodes a parameter vector in the runner↔server wire format:
// "SILOW1", the count as a little-endian uint64, then the values as
// little-endian IEEE-754 float64s — 8 bytes a parameter, exact, and a fraction
// of the size and parse time of a JSON array.
func MarshalParams(p []float64) []byte {
	b := make([]byte, paramsHeaderLen+8*len(p))
	copy(b, paramsMagic)
	binary.LittleEndian.PutUint64(b[len(paramsMagic):], uint64(len(p)))
	for i, v := range p {
		binary.LittleEndian.PutUint64(b[paramsHeaderLen+8*i:], math.Float64bits(v))
	}
	return b
}

// ParamsBytes is the size of n parameters in the wire format.
func ParamsBytes(n int) int { return paramsHeaderLen + 8*n }

// MarshalBinaryParams encodes the model's parameters with MarshalParams.
func (m *Model) MarshalBinaryParams() []byte { return MarshalParams(m.params) }

// ParseParams decodes MarshalParams' output. It rejects anything malformed —
// wrong magic, a count that disagrees with the length, more than MaxParams
// values, a NaN or infinity — so that a bad update never reaches aggregation.
func ParseParams(b []byte) ([]float64, error) {
	if len(b) < paramsHeaderLen || string(b[:len(paramsMagic)]) != paramsMagic {
		return nil, errors.New("ml: not a Silo parameter vector (missing SILOW1 header)")
	}
	count := binary.LittleEndian.Uint64(b[len(paramsMagic):])
	if count > MaxParams {
		return nil, fmt.Errorf("ml: parameter vector claims %d values, more than the limit of %d", count, MaxParams)
	}
	if want := paramsHeaderLen + 8*int(count); len(b) != want {
		return nil, fmt.Errorf("ml: parameter vector of %d values must be %d bytes, got %d", count, want, len(b))
	}
	p := make([]float64, count)
	for i := range p {
		p[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[paramsHeaderLen+8*i:]))
		if math.IsNaN(p[i]) || math.IsInf(p[i], 0) {
			return nil, fmt.Errorf("ml: parameter %d is %g; parameters must be finite", i, p[i])
		}
	}
	return p, nil
}
