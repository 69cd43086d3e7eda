package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

// InviteRequest invites an email with roles; ExpiresIn is a duration (default 7 days).
type InviteRequest struct {
	Email     string   `json:"email"`
	Roles     []string `json:"roles"`
	ExpiresIn string   `json:"expires_in,omitempty"`
}

// AcceptRequest accepts an invitation by its link's secret, setting a password.
type AcceptRequest struct {
	Token    string `json:"token"`
	Name     string `json:"name,omitempty"`
	Password string `json:"password"`
}

func (s *Server) handleListInvites(w http.ResponseWriter, r *http.Request) {
	invites, err := s.ListInvites(r.Context())
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(invites))
}

// ListInvites lists every invitation with its status now.
func (s *Server) ListInvites(ctx context.Context) ([]*silo.Invite, error) {
	invites, err := s.db.ListInvites(ctx)
	now := s.now()
	for _, i := range invites {
		i.Status = i.StatusAt(now)
	}
	return invites, err
}

func (s *Server) handleCreateInvite(w http.ResponseWriter, r *http.Request) {
	var req InviteRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	inv, err := s.CreateInvite(r.Context(), r, req)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, inv)
}

// CreateInvite validates and stores an invitation and returns it with its
// link, which exists only in this response. The API and the UI share it.
func (s *Server) CreateInvite(ctx context.Context, r *http.Request, req InviteRequest) (*silo.Invite, error) {
	email, err := silo.NormalizeEmail(req.Email)
	if err != nil {
		return nil, err
	}
	roles, err := silo.ParseRoles(req.Roles)
	if err != nil {
		return nil, err
	}
	ttl := silo.DefaultInviteTTL
	if req.ExpiresIn != "" {
		if ttl, err = time.ParseDuration(req.ExpiresIn); err != nil || ttl < time.Minute || ttl > 90*24*time.Hour {
			return nil, silo.FieldErrorf("expires_in", "expiry %q must be a duration between 1m and 2160h (90 days), such as 168h", req.ExpiresIn)
		}
	}
	base, err := s.linkBase(r)
	if err != nil {
		s.auditResult(ctx, "user.invite", email, err)
		return nil, err
	}
	secret := randomSecret(24)
	inv := &silo.Invite{Email: email, Roles: roles, CreatedBy: silo.ActorFromContext(ctx).Name(), ExpiresAt: s.now().Add(ttl), TokenHash: hashSecret(secret)}
	err = s.db.CreateInvite(ctx, inv)
	s.auditResult(ctx, "user.invite", email+" as "+strings.Join(silo.RoleNames(roles), ","), err)
	if err != nil {
		return nil, err
	}
	inv.Status = silo.InvitePending
	inv.Link = base + "/invite/" + secret
	s.mailInvite(ctx, inv)
	return inv, nil
}

func (s *Server) handleRevokeInvite(w http.ResponseWriter, r *http.Request) {
	inv, err := s.RevokeInvite(r.Context(), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, inv)
}

// RevokeInvite withdraws a pending invitation by its id, so its link stops
// working, and records it in the audit log.
func (s *Server) RevokeInvite(ctx context.Context, idText string) (*silo.Invite, error) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return nil, silo.Errorf(silo.ENOTFOUND, "no invitation %q: invitation ids are numbers (see 'silo users invites')", idText)
	}
	inv, err := s.db.RevokeInvite(ctx, id)
	target := idText
	if inv != nil {
		target = inv.Email
		inv.Status = silo.InviteRevoked
	}
	s.auditResult(ctx, "invite.revoke", target, err)
	return inv, err
}

// InviteBySecret finds the invitation of a link's secret, in any state.
func (s *Server) InviteBySecret(ctx context.Context, secret string) (*silo.Invite, error) {
	return s.db.FindInviteByTokenHash(ctx, hashSecret(strings.TrimSpace(secret)))
}

func (s *Server) handleAcceptInvite(w http.ResponseWriter, r *http.Request) {
	var req AcceptRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	u, err := s.AcceptInvite(r.Context(), req)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, u)
}

// AcceptInvite checks the password and uses the invitation.
func (s *Server) AcceptInvite(ctx context.Context, req AcceptRequest) (*silo.User, error) {
	if err := silo.ValidatePassword(req.Password); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.Name)
	if err := silo.ValidateUserName(name); err != nil {
		return nil, err
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		return nil, err
	}
	u, err := s.db.AcceptInvite(ctx, hashSecret(strings.TrimSpace(req.Token)), name, hash)
	if err != nil {
		s.auditAs(ctx, "anonymous", "invite.accept", "", silo.OutcomeFailed, silo.ErrorMessage(err))
		return nil, err
	}
	s.auditAs(ctx, u.Email, "invite.accept", u.Email, silo.OutcomeSuccess, "")
	return u, nil
}
