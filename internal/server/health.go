package server

import (
	"context"
	"net/http"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

type health struct {
	Status   string `json:"status"`
	Version  string `json:"version"`
	Database string `json:"database"`
	Error    string `json:"error,omitempty"`
}

// handleHealth reports ok when the database answers within two seconds.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	h := health{Status: "ok", Version: silo.Version, Database: s.db.Dialect()}
	status := http.StatusOK
	if err := s.db.Ping(ctx); err != nil {
		s.Logger.Error("health check: database", "err", err)
		h.Status, h.Error, status = "unavailable", "database is not answering", http.StatusServiceUnavailable
	}
	httpjson.Write(w, status, h)
}
