package silo

import (
	"unicode"
	"unicode/utf8"
)

// CheckText refuses a name, label or description that is not valid UTF-8
// or holds a control character (NUL, escape sequences, C1 controls) or a
// bidirectional override: such text has no place in a name, it corrupts
// logs, terminals and exports, can make one name look like another, and
// PostgreSQL refuses NUL outright. Multi-line text (descriptions,
// addresses) may hold line breaks and tabs.
func CheckText(field, s string, multiline bool) error {
	if !utf8.ValidString(s) {
		return FieldErrorf(field, "%s is not valid UTF-8 text", field)
	}
	for i, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return FieldErrorf(field, "%s must not contain control characters (found %U at byte %d): remove it", field, r, i)
		}
	}
	return nil
}

// ValidateUserName checks the display name of a user (optional).
func ValidateUserName(name string) error {
	if len(name) > 200 {
		return FieldErrorf("name", "name must be at most 200 characters")
	}
	return CheckText("name", name, false)
}
