package server

import (
	"net/http"

	"github.com/silofl/silo"
)

// Access is a route's rule: public, any signed-in user, or a permission.
type Access string

const (
	AccessPublic   Access = "public"
	AccessSignedIn Access = "signed_in"
	// AccessRunner routes take a runner token, never a user's.
	AccessRunner Access = "runner"
)

// Perm is the rule of a route that needs permission p.
func Perm(p silo.Permission) Access { return Access(p) }

// Route is one endpoint: its pattern, who may call it, and how it is
// described in the OpenAPI document. Every route the server serves is in
// Server.routes, so authorisation and documentation cannot drift apart; the
// web UI (internal/ui) declares its pages the same way and adds them with
// AddRoutes.
type Route struct {
	Method string
	Path   string
	Access Access
	// Page marks a web page rather than an API call: an anonymous visitor
	// is redirected to sign in, and errors are shown with PageError.
	Page bool
	// MaxBody, when set, bounds the body of an unsafe request, which the
	// guard then parses as a form (multipart included) before anything else
	// reads it: the CSRF check would otherwise parse an upload unbounded.
	MaxBody int64
	Summary string
	In, Out any // request and response bodies, for the OpenAPI document
	Handler http.HandlerFunc
}

// AddRoutes adds routes to those the server serves, each behind the guard
// like the API's. Call it before Handler; a route without an access rule,
// or one added after Handler, is a programming error and panics.
func (s *Server) AddRoutes(routes ...Route) {
	if s.served {
		panic("server: AddRoutes after Handler")
	}
	for _, rt := range routes {
		if rt.Access == "" {
			panic("server: route " + rt.Method + " " + rt.Path + " has no access rule")
		}
		s.routes = append(s.routes, rt)
	}
}

// RouteRule is a route's pattern and rule, for tests and docs.
type RouteRule struct {
	Method, Path, Access string
	Page                 bool
}

// Routes lists every route with its access rule.
func (s *Server) Routes() []RouteRule {
	out := make([]RouteRule, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteRule{rt.Method, rt.Path, string(rt.Access), rt.Page}
	}
	return out
}

// apiRoutes declares the JSON API.
func (s *Server) apiRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/healthz", Access: AccessPublic, Summary: "Liveness and database check", Out: health{}, Handler: s.handleHealth},
		{Method: "GET", Path: "/metrics", Access: AccessPublic, Summary: "Prometheus metrics (text format)", Handler: s.metrics.handle},
		{Method: "GET", Path: "/api/v1/openapi.json", Access: AccessPublic, Summary: "This OpenAPI document", Handler: s.handleOpenAPI},

		{Method: "POST", Path: "/api/v1/login", Access: AccessPublic, Summary: "Exchange email and password for an access token", In: loginRequest{}, Out: loginResponse{}, Handler: s.handleAPILogin},
		{Method: "GET", Path: "/api/v1/me", Access: AccessSignedIn, Summary: "The signed-in user and their permissions", Out: meResponse{}, Handler: s.handleMe},

		{Method: "GET", Path: "/api/v1/users", Access: Perm(silo.PermUsersRead), Summary: "List users", Out: []silo.User{}, Handler: s.handleListUsers},
		{Method: "GET", Path: "/api/v1/users/{email}", Access: Perm(silo.PermUsersRead), Summary: "Show a user", Out: silo.User{}, Handler: s.handleGetUser},
		{Method: "PATCH", Path: "/api/v1/users/{email}", Access: Perm(silo.PermUsersManage), Summary: "Change a user's roles, name or disabled flag", In: UserPatch{}, Out: silo.User{}, Handler: s.handlePatchUser},
		{Method: "DELETE", Path: "/api/v1/users/{email}", Access: Perm(silo.PermUsersManage), Summary: "Remove a user", Handler: s.handleDeleteUser},

		{Method: "GET", Path: "/api/v1/invites", Access: Perm(silo.PermUsersRead), Summary: "List invitations", Out: []silo.Invite{}, Handler: s.handleListInvites},
		{Method: "POST", Path: "/api/v1/invites", Access: Perm(silo.PermUsersManage), Summary: "Invite an email with roles; the response holds the single-use link", In: InviteRequest{}, Out: silo.Invite{}, Handler: s.handleCreateInvite},
		{Method: "DELETE", Path: "/api/v1/invites/{id}", Access: Perm(silo.PermUsersManage), Summary: "Revoke a pending invitation", Out: silo.Invite{}, Handler: s.handleRevokeInvite},
		{Method: "POST", Path: "/api/v1/invites/accept", Access: AccessPublic, Summary: "Accept an invitation and set a password", In: AcceptRequest{}, Out: silo.User{}, Handler: s.handleAcceptInvite},

		{Method: "GET", Path: "/api/v1/tokens", Access: Perm(silo.PermTokensOwn), Summary: "List your access tokens (?all=true: everyone's, for admins)", Out: []silo.Token{}, Handler: s.handleListTokens},
		{Method: "POST", Path: "/api/v1/tokens", Access: Perm(silo.PermTokensOwn), Summary: "Create an access token; the secret is in this response only", In: silo.TokenRequest{}, Out: silo.Token{}, Handler: s.handleCreateToken},
		{Method: "DELETE", Path: "/api/v1/tokens/{id}", Access: Perm(silo.PermTokensOwn), Summary: "Revoke a token (your own, or anyone's for admins)", Handler: s.handleRevokeToken},

		{Method: "GET", Path: "/api/v1/workspace", Access: Perm(silo.PermWorkspaceRead), Summary: "Workspace and billing information", Out: silo.Workspace{}, Handler: s.handleGetWorkspace},
		{Method: "PATCH", Path: "/api/v1/workspace", Access: Perm(silo.PermWorkspaceManage), Summary: "Edit workspace and billing information", In: WorkspacePatch{}, Out: silo.Workspace{}, Handler: s.handlePatchWorkspace},

		{Method: "GET", Path: "/api/v1/audit", Access: Perm(silo.PermAuditRead), Summary: "Audit log, newest first (?since=24h|RFC3339&limit=&before=ID; narrow with actor=, action= (a prefix), target= (a substring), outcome=)", Out: []silo.AuditEntry{}, Handler: s.handleListAudit},
	}
}
