package server

import (
	"context"
	"net/http"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	a := silo.ActorFromContext(r.Context())
	userID := a.User.ID
	if r.URL.Query().Get("all") == "true" {
		if !a.Can(silo.PermTokensManageAny) {
			httpjson.Error(w, r, s.Logger, silo.Errorf(silo.EFORBIDDEN, "only admins may list everyone's tokens"))
			return
		}
		userID = 0
	}
	tokens, err := s.db.ListTokens(r.Context(), userID)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(tokens))
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req silo.TokenRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	ctx := r.Context()
	t, err := s.CreateToken(ctx, silo.ActorFromContext(ctx).User, req)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, t)
}

// CreateToken makes an access token for u. A request made with a scoped token
// can only create tokens within that scope, and they are its children: they
// expire no later than it and are revoked with it, so a leaked scoped token
// that is revoked leaves nothing behind. (An unscoped token holds all of its
// user's permissions, as a browser sign-in does; tokens it creates stand on
// their own.)
func (s *Server) CreateToken(ctx context.Context, u *silo.User, req silo.TokenRequest) (*silo.Token, error) {
	a := silo.ActorFromContext(ctx)
	var held []silo.Permission
	for _, p := range silo.AllPermissions() {
		if a.Can(p) {
			held = append(held, p)
		}
	}
	if a.Scopes != nil && len(req.Scopes) == 0 {
		return nil, silo.FieldErrorf("scopes", "a scoped token can only create tokens with scopes: list them")
	}
	expires, err := req.Validate(s.now(), held)
	if err != nil {
		return nil, err
	}
	secret := silo.TokenPrefix + randomSecret(30)
	t := &silo.Token{ID: "tok_" + randomSecret(8), UserID: u.ID, UserEmail: u.Email, Name: req.Name, Scopes: req.Scopes, Hash: hashSecret(secret), ExpiresAt: expires}
	if a.Scopes != nil {
		t.ParentID = a.TokenID
	}
	err = s.db.CreateToken(ctx, t)
	s.auditResult(ctx, "token.create", t.ID+" ("+t.Name+")", err)
	if err != nil {
		return nil, err
	}
	t.Secret = secret
	return t, nil
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	if err := s.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RevokeToken revokes the caller's own token, or anyone's for admins. Another
// user's token is reported as not found to non-admins, so ids don't leak.
func (s *Server) RevokeToken(ctx context.Context, id string) error {
	a := silo.ActorFromContext(ctx)
	t, err := s.db.FindToken(ctx, id)
	if err == nil && t.UserID != a.User.ID && !a.Can(silo.PermTokensManageAny) {
		err = silo.Errorf(silo.ENOTFOUND, "no token with id %s", id)
	}
	if err == nil {
		err = s.db.RevokeToken(ctx, id)
	}
	s.auditResult(ctx, "token.revoke", id, err)
	return err
}
