package silo

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in internal/server and back in the SDK.
const (
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	ETOOMANY      = "too_many_requests"
	EINTERNAL     = "internal"
)

// Error is an error meant for the user: its Message says what was wrong and,
// where it can, how to fix it. Anything that is not an *Error is reported to
// users as "internal error" and only logged in full.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the input field the error is about, when there is one, so a
	// form can show the message next to it.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error about one input field.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the message of its
// *Error, or "internal error" so that internals never reach a user.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
