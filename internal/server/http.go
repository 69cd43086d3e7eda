package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

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
	case httpjson.IsMaxBytes(err):
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

// limitParam reads a listing's ?limit=, from 1 to most; 0 when none is
// given.
func limitParam(q url.Values, most int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, silo.FieldErrorf("limit", "limit %q must be a number from 1 to %d", v, most)
	}
	return n, nil
}
