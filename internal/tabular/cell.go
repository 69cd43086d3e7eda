package tabular

import (
	"math"
	"strconv"
	"strings"
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
	neg := false
	if i < len(t) && (t[i] == '+' || t[i] == '-') {
		neg = t[i] == '-'
		i++
	}
	// mant collects the digits, exactly while there are at most 19.
	var mant uint64
	nd := 0
	start := i
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		mant = mant*10 + uint64(t[i]-'0')
		i++
	}
	intDigits := i - start
	nd += intDigits
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
			mant = mant*10 + uint64(t[i]-'0')
			i++
		}
		fracDigits = i - j
		nd += fracDigits
	}
	if intDigits+fracDigits == 0 {
		return "", 0, false
	}
	exp := 0
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		isInt = false
		i++
		expNeg := false
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			expNeg = t[i] == '-'
			i++
		}
		j := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			if exp < 10000 {
				exp = exp*10 + int(t[i]-'0')
			}
			i++
		}
		if i == j {
			return "", 0, false
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(t) {
		return "", 0, false
	}
	if isInt && intDigits <= 18 { // 18 digits always fit in an int64
		n := int64(mant)
		if neg {
			n = -n
		}
		return Int, float64(n), true
	}
	if isInt {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return Int, float64(n), true
		}
	}
	// Exact fast path (Clinger): an integer below 2⁵³ times or divided by
	// an exactly representable power of ten rounds correctly.
	if exp -= fracDigits; nd <= 15 && exp >= -22 && exp <= 22 {
		v := float64(mant)
		if exp < 0 {
			v /= pow10[-exp]
		} else {
			v *= pow10[exp]
		}
		if neg {
			v = -v
		}
		return Float, v, true
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(v, 0) {
		return "", 0, false
	}
	return Float, v, true
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

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

// parseTime parses a timestamp cell (trimmed, non-null) into Unix seconds:
//
//	YYYY-MM-DD [ ("T" | " ") hh:mm:ss [ "." 1-9 digits ] [ "Z" | ("+" | "-") hh:mm ] ]
//
// Times without a zone are UTC. This is RFC 3339 and its common relatives,
// checked by hand: time.Parse is several times slower, and slower still to
// fail, which every non-timestamp cell of a column being inferred does.
func parseTime(t string) (float64, bool) {
	if len(t) < 10 || t[4] != '-' || t[7] != '-' || !digits(t[0:4]) || !digits(t[5:7]) || !digits(t[8:10]) {
		return 0, false
	}
	year, month, day := num(t[0:4]), num(t[5:7]), num(t[8:10])
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	secs := daysFromCivil(year, month, day) * 86400
	if len(t) == 10 {
		return float64(secs), true
	}
	if len(t) < 19 || (t[10] != 'T' && t[10] != ' ') || t[13] != ':' || t[16] != ':' ||
		!digits(t[11:13]) || !digits(t[14:16]) || !digits(t[17:19]) {
		return 0, false
	}
	hour, minute, second := num(t[11:13]), num(t[14:16]), num(t[17:19])
	if hour > 23 || minute > 59 || second > 59 {
		return 0, false
	}
	secs += hour*3600 + minute*60 + second
	rest := t[19:]
	var frac float64
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return 0, false
		}
		frac = float64(num(rest[1:n])) / math.Pow10(n-1)
		rest = rest[n:]
	}
	switch {
	case rest == "" || rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' && digits(rest[1:3]) && digits(rest[4:6]):
		oh, om := num(rest[1:3]), num(rest[4:6])
		if oh > 23 || om > 59 {
			return 0, false
		}
		offset := oh*3600 + om*60
		if rest[0] == '+' {
			offset = -offset
		}
		secs += offset
	default:
		return 0, false
	}
	return float64(secs) + frac, true
}

// num converts up to 18 ASCII digits.
func num(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

func daysIn(year, month int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days from 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
