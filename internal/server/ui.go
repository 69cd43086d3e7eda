package server

import (
	"net/http"

	"github.com/silofl/silo"
)

// uiRoutes declares the web UI's pages.
func (s *Server) uiRoutes() []route { return nil }

// renderError shows err as a page.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	http.Error(w, silo.ErrorMessage(err), ErrorStatus(err))
}

func (s *Server) renderNotFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "page not found", http.StatusNotFound)
}
