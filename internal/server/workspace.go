package server

import (
	"context"
	"net/http"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

// WorkspacePatch changes the workspace: the fields given replace the stored ones.
type WorkspacePatch struct {
	Name           *string `json:"name,omitempty"`
	BillingContact *string `json:"billing_contact,omitempty"`
	BillingEmail   *string `json:"billing_email,omitempty"`
	BillingAddress *string `json:"billing_address,omitempty"`
	Plan           *string `json:"plan,omitempty"`
}

func (s *Server) handleGetWorkspace(w http.ResponseWriter, r *http.Request) {
	ws, err := s.db.Workspace(r.Context())
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, ws)
}

func (s *Server) handlePatchWorkspace(w http.ResponseWriter, r *http.Request) {
	var p WorkspacePatch
	if err := httpjson.Decode(w, r, &p); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	ws, err := s.UpdateWorkspace(r.Context(), p)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, ws)
}

// UpdateWorkspace applies the fields set in p, validates the whole and saves
// it; the API and the UI share it.
func (s *Server) UpdateWorkspace(ctx context.Context, p WorkspacePatch) (*silo.Workspace, error) {
	ws, err := s.db.Workspace(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		src *string
		dst *string
	}{{p.Name, &ws.Name}, {p.BillingContact, &ws.BillingContact}, {p.BillingEmail, &ws.BillingEmail}, {p.BillingAddress, &ws.BillingAddress}, {p.Plan, &ws.Plan}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if err := ws.Validate(); err != nil {
		s.auditResult(ctx, "workspace.update", ws.Name, err)
		return nil, err
	}
	err = s.db.UpdateWorkspace(ctx, ws)
	s.auditResult(ctx, "workspace.update", ws.Name, err)
	return ws, err
}
