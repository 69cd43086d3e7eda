package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/silofl/silo"
)

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

// ErrorStatus returns the HTTP status for err.
func ErrorStatus(err error) int {
	if errors.Is(err, errTooLarge) {
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

// writeError writes err in the API's error shape. Internal errors are logged
// in full and reported only as "internal error".
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := silo.ErrorCode(err)
	if code == silo.EINTERNAL {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	e := &silo.Error{Code: code, Message: silo.ErrorMessage(err)}
	var se *silo.Error
	if errors.As(err, &se) {
		e.Field, e.Fields = se.Field, se.Fields
	}
	writeJSON(w, ErrorStatus(err), errorBody{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads a bounded JSON body into v, refusing unknown fields and
// trailing data so that typos are reported rather than ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONLimit(w, r, v, MaxBodyBytes)
}

// decodeJSONLimit is decodeJSON with another size limit, for the few routes
// that carry more than a form's worth (model parameters from runners).
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return silo.Errorf(silo.EINVALID, "request body must be JSON (Content-Type: application/json), not %s", ct)
	}
	if r.ContentLength > limit { // refused before reading a byte of it
		return bodyTooLarge(&http.MaxBytesError{Limit: limit})
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return silo.Errorf(silo.EINVALID, "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		if isMaxBytes(err) {
			return bodyTooLarge(err)
		}
		return silo.Errorf(silo.EINVALID, "request body has data after the JSON object")
	}
	return nil
}

// jsonError turns a decoding error into a message that says what to fix.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case isMaxBytes(err):
		return bodyTooLarge(err)
	case errors.Is(err, io.EOF):
		return silo.Errorf(silo.EINVALID, "request body is empty: send a JSON object")
	case errors.As(err, &syn):
		return silo.Errorf(silo.EINVALID, "request body is not valid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		return &silo.Error{Code: silo.EINVALID, Field: typ.Field, Message: fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &silo.Error{Code: silo.EINVALID, Field: f, Message: fmt.Sprintf("unknown field %q: check the field names in /api/v1/openapi.json", f)}
	}
	return silo.Errorf(silo.EINVALID, "request body is not valid JSON: %v", err)
}

func jsonKind(k string) string {
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

// multipartMemory is how much of a multipart form is held in memory; the
// rest of the (bounded) files goes to temporary files, removed when the
// request ends.
const multipartMemory = 8 << 20

// parseBoundedForm parses the form of a request whose body the guard has
// bounded to limit bytes (Route.MaxBody): the dataset wizard's
// attachments.
func parseBoundedForm(r *http.Request, limit int64) error {
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		err = r.ParseMultipartForm(multipartMemory)
	} else {
		err = r.ParseForm()
	}
	switch {
	case isMaxBytes(err):
		return silo.Errorf(silo.EINVALID, "the upload is larger than %d MiB in all: go back and attach fewer or smaller files (each at most %d MiB)", limit>>20, silo.MaxAttachmentBytes>>20)
	case err != nil:
		return silo.Errorf(silo.EINVALID, "the form could not be read (%v): go back and submit it again", err)
	}
	return nil
}

// securityHeaders sets headers that keep the UI out of frames, stop content
// sniffing and restrict where scripts and styles load from. Routes under
// skip (the runner protocol, which no browser renders, and whose headers
// are much of a small round's bytes) get only nosniff.
func securityHeaders(next http.Handler, skip string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(r.URL.Path, skip) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}
