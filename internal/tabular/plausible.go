package tabular

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// A schema report is shown to every user of the workspace, so Scan must not
// turn an arbitrary file into one: column names are the one place where a
// file's bytes are shown as they are. A file whose first line is a secret
// (a key file, a token, a line of a configuration file) or a row of data (a
// CSV without a header) would otherwise come back as column names. Scan
// therefore refuses, without repeating them, names that do not look like
// column names, and a file with a header but no rows. These checks run once
// per scan on the header, never per row.

// Header plausibility limits.
const (
	// MaxColumnNameBytes is the longest column name accepted.
	MaxColumnNameBytes = 256
	// maxOddColumns is how many column names may look like something other
	// than a column name (a value, or unusual characters) before the header
	// is refused; more than half of them is refused too.
	maxOddColumns = 8
	// opaqueRun is the length from which a run of token characters is
	// checked for looking like a key or token.
	opaqueRun = 20
)

// checkHeader refuses column names that do not look like a header's. It
// never repeats a name: a refused name may be a secret.
func checkHeader(file string, names []string) error {
	odd := 0
	for i, n := range names {
		switch {
		case len(n) > MaxColumnNameBytes:
			return errorf(file, 1, "", "%s: the name of column %d is longer than %d bytes: this is not a header of column names (is the file data at all?)", file, i+1, MaxColumnNameBytes)
		case !utf8.ValidString(n) || strings.ContainsFunc(n, func(r rune) bool { return !unicode.IsGraphic(r) }):
			return errorf(file, 1, "", "%s: the name of column %d has control characters or is not UTF-8 text: this is not a header of column names", file, i+1)
		case opaque(n):
			return errorf(file, 1, "", "%s: the name of column %d is one long opaque token (like a key or a password hash), not a column name: give the file a header row of column names", file, i+1)
		case oddName(n):
			odd++
		}
	}
	if odd > maxOddColumns || 2*odd > len(names) {
		return errorf(file, 1, "", "%s: %d of the %d column names are values or contain unusual characters: the first line is not a header of column names; give the file one (names of letters, digits, spaces and _ - . ( ) / %% # & + : ?)", file, odd, len(names))
	}
	return nil
}

// oddName reports a name that is not made like a column name: it parses as
// a number, boolean or timestamp (a row of data taken for a header), or it
// has characters column names rarely have (=, $, @, {, <, |, ;, …).
func oddName(n string) bool {
	if typ, _ := inferType(trimBlank(n)); typ != String {
		return true
	}
	return strings.ContainsFunc(n, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.IsDigit(r) && !strings.ContainsRune(" _-.()[]/%#&+:?'", r)
	})
}

// opaque reports a name holding a long run of token characters (base64,
// hex) that changes between lower case, upper case, digits and symbols as
// often as random text does, or is long hex: a key, a token or a hash.
// Column names in camelCase or snake_case change class at word boundaries
// only.
func opaque(n string) bool {
	class := func(r rune) int {
		switch {
		case r >= 'a' && r <= 'z':
			return 1
		case r >= 'A' && r <= 'Z':
			return 2
		case r >= '0' && r <= '9':
			return 3
		case strings.ContainsRune("+/=_-", r):
			return 4
		}
		return 0
	}
	// A run of token characters, and within it a stretch of hex digits.
	run, switches, prev := 0, 0, 0
	hexRun, digits, letters := 0, 0, 0
	longHex := func() bool { return hexRun >= opaqueRun && digits > 0 && letters > 0 }
	check := func() bool {
		return run >= opaqueRun && float64(switches) >= 0.4*float64(run-1) || longHex()
	}
	for _, r := range n {
		c := class(r)
		if c == 0 {
			if check() {
				return true
			}
			run, switches, prev, hexRun, digits, letters = 0, 0, 0, 0, 0, 0
			continue
		}
		if run > 0 && c != prev {
			switches++
		}
		run, prev = run+1, c
		switch {
		case c == 3:
			hexRun, digits = hexRun+1, digits+1
		case strings.ContainsRune("abcdefABCDEF", r):
			hexRun, letters = hexRun+1, letters+1
		default:
			if longHex() {
				return true
			}
			hexRun, digits, letters = 0, 0, 0
		}
	}
	return check()
}
