package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

type loginRequest struct {
	Email     string `json:"email"`
	Password  string `json:"password"`
	TokenName string `json:"token_name,omitempty"`
}

type loginResponse struct {
	Token   string     `json:"token"`
	TokenID string     `json:"token_id"`
	User    *silo.User `json:"user"`
}

// handleAPILogin exchanges a password for an access token, for the CLI.
func (s *Server) handleAPILogin(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	u, err := s.CheckCredentials(r.Context(), r, req.Email, req.Password)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	ctx := silo.NewContextWithActor(r.Context(), &silo.Actor{User: u})
	name := req.TokenName
	if name == "" {
		name = "cli"
	}
	t, err := s.CreateToken(ctx, u, silo.TokenRequest{Name: name})
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, loginResponse{Token: t.Secret, TokenID: t.ID, User: u})
}

type meResponse struct {
	User        *silo.User        `json:"user"`
	Permissions []silo.Permission `json:"permissions"`
	TokenID     string            `json:"token_id,omitempty"`
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	a := silo.ActorFromContext(r.Context())
	var perms []silo.Permission
	for _, p := range silo.AllPermissions() {
		if a.Can(p) {
			perms = append(perms, p)
		}
	}
	httpjson.Write(w, http.StatusOK, meResponse{User: a.User, Permissions: perms, TokenID: a.TokenID})
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.db.ListUsers(r.Context())
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(users))
}

// userByPath finds the user named by the {email} path value (an email or a
// numeric id).
func (s *Server) userByPath(ctx context.Context, r *http.Request) (*silo.User, error) {
	v := r.PathValue("email")
	email, err := silo.NormalizeEmail(v)
	if err != nil {
		return nil, silo.Errorf(silo.ENOTFOUND, "no user %q: give the user's email address", v)
	}
	return s.db.FindUserByEmail(ctx, email)
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.userByPath(r.Context(), r)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, u)
}

// UserPatch changes a user: the fields given replace the stored ones.
type UserPatch struct {
	Name     *string  `json:"name,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	Disabled *bool    `json:"disabled,omitempty"`
}

func (s *Server) handlePatchUser(w http.ResponseWriter, r *http.Request) {
	var p UserPatch
	if err := httpjson.Decode(w, r, &p); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	u, err := s.UpdateUser(r.Context(), r, p)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, u)
}

// UpdateUser applies p to the user in the path, all or nothing; the API and
// the UI share it. Each aspect changed is audited.
func (s *Server) UpdateUser(ctx context.Context, r *http.Request, p UserPatch) (*silo.User, error) {
	u, err := s.userByPath(ctx, r)
	if err != nil {
		return nil, err
	}
	var roles []silo.Role
	var changes []string
	if p.Roles != nil {
		if roles, err = silo.ParseRoles(p.Roles); err != nil {
			return nil, err
		}
		changes = append(changes, "user.set_roles")
	}
	if p.Disabled != nil {
		if *p.Disabled {
			changes = append(changes, "user.disable")
		} else {
			changes = append(changes, "user.enable")
		}
	}
	var name string
	if p.Name != nil {
		name = strings.TrimSpace(*p.Name)
		if err := silo.ValidateUserName(name); err != nil {
			return nil, err
		}
		changes = append(changes, "user.rename")
	}
	updated, err := s.db.UpdateUser(ctx, u.ID, func(u *silo.User) {
		if roles != nil {
			u.Roles = roles
		}
		if p.Disabled != nil {
			u.Disabled = *p.Disabled
		}
		if p.Name != nil {
			u.Name = name
		}
	})
	for _, action := range changes {
		target := u.Email
		if action == "user.set_roles" {
			target += " → " + strings.Join(silo.RoleNames(roles), ",")
		}
		s.auditResult(ctx, action, target, err)
	}
	return updated, err
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	if _, err := s.RemoveUser(r.Context(), r); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RemoveUser deletes the user in the path (never the last active admin)
// and returns them; the API and the UI share it.
func (s *Server) RemoveUser(ctx context.Context, r *http.Request) (*silo.User, error) {
	u, err := s.userByPath(ctx, r)
	if err == nil {
		_, err = s.db.DeleteUser(ctx, u.ID)
		s.auditResult(ctx, "user.remove", u.Email, err)
	}
	return u, err
}

// CreateFirstAdmin creates the first admin from the one-time setup page,
// with an email already normalised and a password already checked; it is
// refused (conflict) once the workspace has a user, even when two requests
// race. The new admin is the actor of its audit entry.
func (s *Server) CreateFirstAdmin(ctx context.Context, email, password string) (*silo.User, error) {
	hash, err := hashPassword(password)
	if err != nil {
		return nil, err
	}
	u := &silo.User{Email: email, Roles: []silo.Role{silo.RoleAdmin}, PasswordHash: hash}
	err = s.db.CreateFirstAdmin(ctx, u)
	s.auditResult(silo.NewContextWithActor(ctx, &silo.Actor{User: u}), "user.create_first_admin", email, err)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// nonNil makes an empty listing encode as [] rather than null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
