package psi

import (
	"encoding/binary"
	"strings"
	"unicode"
)

// Normalizer applies a linkage's normalisations to key values, in the
// fixed order trim, lowercase, collapse_spaces, digits_only.
type Normalizer struct {
	trim, lower, collapse, digits bool
}

// NewNormalizer takes the option names of a session config.
func NewNormalizer(opts []string) Normalizer {
	var n Normalizer
	for _, o := range opts {
		switch o {
		case "trim":
			n.trim = true
		case "lowercase":
			n.lower = true
		case "collapse_spaces":
			n.collapse = true
		case "digits_only":
			n.digits = true
		}
	}
	return n
}

// Apply normalises one value.
func (n Normalizer) Apply(s string) string {
	if n.trim {
		s = strings.TrimSpace(s)
	}
	if n.lower {
		s = strings.ToLower(s)
	}
	if n.collapse {
		s = strings.Join(strings.Fields(s), " ")
	}
	if n.digits {
		s = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
	}
	return s
}

// Empty reports whether a normalised value carries nothing to match on:
// an empty string (after trimming or keeping digits) is treated as null.
func Empty(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) }) < 0
}

// AppendKey appends one column's value of a composite key to buf: each
// value length-prefixed, so ("ab", "c") and ("a", "bc") differ.
func AppendKey(buf []byte, value string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	return append(buf, value...)
}
