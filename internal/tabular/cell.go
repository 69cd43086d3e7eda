package tabular

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// trimBlank removes the spaces and tabs around a CSV cell, which are noise
// around a number, a bool, a timestamp or a null token.
func trimBlank(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isNull reports whether a trimmed CSV cell is a null token.
func isNull(t string) bool {
	switch t {
	case "", "NA", "N/A", "NaN", "null", "NULL":
		return true
	}
	return false
}

// inferType returns the type of one non-null trimmed CSV cell and, for int
// and float cells, its numeric value; see the package documentation for
// the rules. Every parse function below agrees with it: a cell inferred int
// passes parseInt and parseFloat, a float passes parseFloat, and so on.
func inferType(t string) (Type, float64) {
	if t == "" {
		return String, 0
	}
	switch c := t[0]; {
	case c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.':
		if typ, v, ok := parseNumber(t); ok {
			return typ, v
		}
		if _, ok := parseTime(t); ok {
			return Timestamp, 0
		}
	case c == 't' || c == 'T' || c == 'f' || c == 'F':
		if _, ok := parseBool(t); ok {
			return Bool, 0
		}
	}
	return String, 0
}

// join returns the narrowest type that holds values of types a and b; ""
// stands for "no value yet".
func join(a, b Type) Type {
	switch {
	case a == b || b == "":
		return a
	case a == "":
		return b
	case (a == Int || a == Float) && (b == Int || b == Float):
		return Float
	}
	return String
}

// parseNumber checks t against the decimal number grammar
//
//	[+-]? digits ( "." digits? )? ( [eE] [+-]? digits )?   |   [+-]? "." digits exponent?
//
// where the integer digits have no leading zero, and returns Int for a
// plain integer that fits in an int64, Float for any other finite number.
func parseNumber(t string) (Type, float64, bool) {
	i := 0
	if i < len(t) && (t[i] == '+' || t[i] == '-') {
		i++
	}
	start := i
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	intDigits := i - start
	if intDigits > 1 && t[start] == '0' {
		return "", 0, false
	}
	isInt := true
	fracDigits := 0
	if i < len(t) && t[i] == '.' {
		isInt = false
		i++
		j := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		fracDigits = i - j
	}
	if intDigits+fracDigits == 0 {
		return "", 0, false
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		isInt = false
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		j := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		if i == j {
			return "", 0, false
		}
	}
	if i != len(t) {
		return "", 0, false
	}
	if isInt && intDigits <= 18 { // 18 digits always fit in an int64
		var n int64
		for _, c := range []byte(t[start:]) {
			n = n*10 + int64(c-'0')
		}
		if t[0] == '-' {
			n = -n
		}
		return Int, float64(n), true
	}
	if isInt {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return Int, float64(n), true
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(v, 0) {
		return "", 0, false
	}
	return Float, v, true
}

// parseInt parses an int cell (trimmed, non-null).
func parseInt(t string) (int64, bool) {
	typ, v, ok := parseNumber(t)
	if !ok || typ != Int {
		return 0, false
	}
	if len(t) <= 15 { // |n| < 2⁵³: exact in a float64
		return int64(v), true
	}
	n, err := strconv.ParseInt(t, 10, 64)
	return n, err == nil
}

// parseFloat parses an int or float cell (trimmed, non-null).
func parseFloat(t string) (float64, bool) {
	_, v, ok := parseNumber(t)
	return v, ok
}

// parseBool parses a bool cell (trimmed, non-null): true or false in any
// letter case.
func parseBool(t string) (bool, bool) {
	switch {
	case strings.EqualFold(t, "true"):
		return true, true
	case strings.EqualFold(t, "false"):
		return false, true
	}
	return false, false
}

// timeLayouts are the timestamp spellings accepted after the date. Each
// also accepts fractional seconds, as time.Parse does after "05".
var timeLayouts = [...]string{
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
}

// parseTime parses a timestamp cell (trimmed, non-null). Times without a
// zone are UTC.
func parseTime(t string) (time.Time, bool) {
	// Cheap shape check first: time.Parse is slow to fail.
	if len(t) < 10 || t[4] != '-' || t[7] != '-' || !digits(t[0:4]) || !digits(t[5:7]) || !digits(t[8:10]) {
		return time.Time{}, false
	}
	if len(t) == 10 {
		v, err := time.Parse(time.DateOnly, t)
		return v, err == nil
	}
	if t[10] != 'T' && t[10] != ' ' {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if (layout[10] == 'T') != (t[10] == 'T') {
			continue
		}
		if v, err := time.Parse(layout, t); err == nil {
			return v, true
		}
	}
	return time.Time{}, false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// unixSeconds converts an instant to the seconds (with fraction) that a
// Batch carries, without the int64 nanosecond overflow of UnixNano.
func unixSeconds(v time.Time) float64 {
	return float64(v.Unix()) + float64(v.Nanosecond())/1e9
}
