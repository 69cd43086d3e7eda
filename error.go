package silo

import (
	"errors"
	"fmt"
	"strings"
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
	// form can show the message next to it. With several problems it is the
	// first one's field.
	Field string `json:"field,omitempty"`
	// Fields lists every problem of an input that has several, one per
	// field, so a form, the CLI or a script can show them all at once
	// rather than one per attempt. Message then joins their messages.
	Fields []FieldError `json:"fields,omitempty"`
}

// FieldError is one field's problem in an Error's Fields.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
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

// FieldErrors combines errs (each an *Error naming its field, as the
// validators return them) into one EINVALID *Error whose Fields lists them
// all, or returns nil when errs is empty. An error that is not an *Error
// with a field is returned as it is, since it is not about the input.
func FieldErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	out := &Error{Code: EINVALID}
	msgs := make([]string, 0, len(errs))
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || e.Code != EINVALID || e.Field == "" {
			return err
		}
		if len(e.Fields) > 0 { // already combined: flatten
			out.Fields = append(out.Fields, e.Fields...)
		} else {
			out.Fields = append(out.Fields, FieldError{Field: e.Field, Message: e.Message})
		}
	}
	for _, f := range out.Fields {
		msgs = append(msgs, f.Message)
	}
	out.Field, out.Message = out.Fields[0].Field, strings.Join(msgs, "; ")
	return out
}

// ErrorFields returns the field problems of err: its Fields, or its one
// Field, or nothing when err is not about an input field.
func ErrorFields(err error) []FieldError {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	if len(e.Fields) > 0 {
		return e.Fields
	}
	if e.Field != "" {
		return []FieldError{{Field: e.Field, Message: e.Message}}
	}
	return nil
}

// fieldErrors collects at most one error per field, in the order found, for
// validators that report every problem of an input at once.
type fieldErrors struct {
	errs []error
	seen map[string]bool
}

func (v *fieldErrors) add(field, format string, args ...any) {
	v.addErr(FieldErrorf(field, format, args...))
}

// addErr adds err, an *Error naming its field (or several, flattened); nil
// is ignored.
func (v *fieldErrors) addErr(err error) {
	if err == nil {
		return
	}
	for _, f := range ErrorFields(err) {
		if v.seen[f.Field] {
			continue
		}
		if v.seen == nil {
			v.seen = map[string]bool{}
		}
		v.seen[f.Field] = true
		v.errs = append(v.errs, &Error{Code: EINVALID, Field: f.Field, Message: f.Message})
	}
	if len(ErrorFields(err)) == 0 {
		panic("silo: validation error without a field: " + err.Error())
	}
}

func (v *fieldErrors) has(field string) bool { return v.seen[field] }

// err returns what was collected as one error (see FieldErrors).
func (v *fieldErrors) err() error { return FieldErrors(v.errs) }
