package httpjson_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

// TestErrorLogging: an internal error is logged in full and answered as
// "internal error" only; a request its client hung up on is not an error
// of the server's and is logged at debug level.
func TestErrorLogging(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	w := httptest.NewRecorder()
	httpjson.Error(w, httptest.NewRequest("GET", "/x", nil), log, fmt.Errorf("disk full at /var/lib/silo"))
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "disk full") || !strings.Contains(w.Body.String(), `"code": "internal"`) {
		t.Errorf("internal error answered %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"internal error\"") || !strings.Contains(logs.String(), "disk full") {
		t.Errorf("internal error not logged in full: %s", logs.String())
	}

	logs.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest("POST", "/api/v1/runner/tasks/t/result", nil).WithContext(ctx)
	httpjson.Error(httptest.NewRecorder(), r, log, fmt.Errorf("begin: %w", context.Canceled))
	if strings.Contains(logs.String(), "ERROR") || !strings.Contains(logs.String(), "level=DEBUG msg=\"request ended by its client\"") {
		t.Errorf("a request its client hung up on: %s", logs.String())
	}

	// A canceled context of the server's own, the request still live, is
	// an internal error.
	logs.Reset()
	httpjson.Error(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil), log, context.Canceled)
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a cancellation not the client's was not logged as an error: %s", logs.String())
	}

	w = httptest.NewRecorder()
	httpjson.Error(w, httptest.NewRequest("GET", "/x", nil), log, errors.Join(&silo.Error{Code: silo.EINVALID, Field: "limit", Message: "limit must be 1 to 10"}))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field": "limit"`) {
		t.Errorf("a field error answered %d %s", w.Code, w.Body)
	}
}
