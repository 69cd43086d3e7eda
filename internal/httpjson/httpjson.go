// Package httpjson is the JSON side of Silo's HTTP routes, shared by the
// API (internal/server) and the runner protocol (internal/runnerapi): the
// one map from error codes to HTTP statuses, the error shape, and bounded
// decoding that says what to fix.
package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/silofl/silo"
)

// MaxBody bounds a JSON request body unless its route says otherwise.
const MaxBody = 1 << 20

// statusOf maps error codes to HTTP statuses: the one place that does.
var statusOf = map[string]int{
	silo.EINVALID:      http.StatusBadRequest,
	silo.ENOTFOUND:     http.StatusNotFound,
	silo.ECONFLICT:     http.StatusConflict,
	silo.EUNAUTHORIZED: http.StatusUnauthorized,
	silo.EFORBIDDEN:    http.StatusForbidden,
	silo.ETOOMANY:      http.StatusTooManyRequests,
	silo.EINTERNAL:     http.StatusInternalServerError,
}

// Status returns the HTTP status for err.
func Status(err error) int {
	if errors.Is(err, ErrTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	if st, ok := statusOf[silo.ErrorCode(err)]; ok {
		return st
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error *silo.Error `json:"error"`
}

// Error writes err in the API's error shape. Internal errors are logged in
// full and reported only as "internal error".
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := silo.ErrorCode(err)
	switch {
	case code != silo.EINTERNAL:
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client hung up (a runner's connection cut): nothing failed
		// here, and nobody reads the answer.
		log.Debug("request ended by its client", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	e := &silo.Error{Code: code, Message: silo.ErrorMessage(err)}
	var se *silo.Error
	if errors.As(err, &se) {
		e.Field, e.Fields = se.Field, se.Fields
	}
	Write(w, Status(err), errorBody{e})
}

// Write writes v as the response's JSON body with status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Decode reads a JSON body of at most MaxBody bytes into v, refusing
// unknown fields and trailing data so that typos are reported rather than
// ignored.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	return DecodeLimit(w, r, v, MaxBody)
}

// DecodeLimit is Decode with another size limit.
func DecodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return silo.Errorf(silo.EINVALID, "request body must be JSON (Content-Type: application/json), not %s", ct)
	}
	if r.ContentLength > limit { // refused before reading a byte of it
		return TooLarge(&http.MaxBytesError{Limit: limit})
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return silo.Errorf(silo.EINVALID, "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		if IsMaxBytes(err) {
			return TooLarge(err)
		}
		return silo.Errorf(silo.EINVALID, "request body has data after the JSON object")
	}
	return nil
}

// decodeError turns a decoding error into a message that says what to fix.
func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case IsMaxBytes(err):
		return TooLarge(err)
	case errors.Is(err, io.EOF):
		return silo.Errorf(silo.EINVALID, "request body is empty: send a JSON object")
	case errors.As(err, &syn):
		return silo.Errorf(silo.EINVALID, "request body is not valid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		return &silo.Error{Code: silo.EINVALID, Field: typ.Field, Message: fmt.Sprintf("field %q must be %s, not %s", typ.Field, kind(typ.Type.Kind().String()), typ.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &silo.Error{Code: silo.EINVALID, Field: f, Message: fmt.Sprintf("unknown field %q: check the field names in /api/v1/openapi.json", f)}
	}
	return silo.Errorf(silo.EINVALID, "request body is not valid JSON: %v", err)
}

func kind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return "a number"
}

// ErrTooLarge marks the errors that answer 413 Request Entity Too Large.
var ErrTooLarge = errors.New("")

// TooLarge reports a request body over its route's limit, naming the limit
// that applied (that of an http.MaxBytesError in err, else MaxBody).
func TooLarge(err error) error {
	limit := int64(MaxBody)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		limit = mbe.Limit
	}
	size := fmt.Sprintf("%d bytes", limit)
	if limit%(1<<20) == 0 {
		size = fmt.Sprintf("%d MiB", limit>>20)
	}
	return fmt.Errorf("%w%w", &silo.Error{Code: silo.EINVALID, Message: "request body is larger than " + size}, ErrTooLarge)
}

// IsMaxBytes reports whether err came from http.MaxBytesReader.
func IsMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
