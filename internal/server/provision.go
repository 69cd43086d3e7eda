package server

import (
	"context"
	"net/http"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

func (s *Server) handleProvisionRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.provision(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, runnerView(rn))
}

// provision creates or verifies a cloud runner's storage. Success leaves it
// provisioning until its agent connects; failure marks it failed with the
// reason.
func (s *Server) provision(ctx context.Context, name string) (*sqlstore.StoredRunner, error) {
	return nil, silo.Errorf(silo.EINTERNAL, "provisioning is not built yet")
}

func (s *Server) handleRunnerBundle(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, s.Logger, silo.Errorf(silo.EINTERNAL, "deployment bundles are not built yet"))
}
