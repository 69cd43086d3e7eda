package server

import (
	"net/http"

	"github.com/silofl/silo"
)

// access is a route's rule: public, any signed-in user, or a permission.
type access string

const (
	accessPublic   access = "public"
	accessSignedIn access = "signed_in"
	// accessRunner routes take a runner token, never a user's.
	accessRunner access = "runner"
)

func perm(p silo.Permission) access { return access(p) }

// route is one endpoint: its pattern, who may call it, and how it is
// described in the OpenAPI document. Every route the server serves is in
// Server.routes, so authorisation and documentation cannot drift apart.
type route struct {
	method string
	path   string
	access access
	page   bool // a UI page (redirects to sign-in) rather than an API call
	// maxBody, when set, bounds the body of an unsafe request, which the
	// guard then parses as a form (multipart included) before anything else
	// reads it: the CSRF check would otherwise parse an upload unbounded.
	maxBody int64
	summary string
	in, out any // request and response bodies, for the OpenAPI document
	handler http.HandlerFunc
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
		out[i] = RouteRule{rt.method, rt.path, string(rt.access), rt.page}
	}
	return out
}

// apiRoutes declares the JSON API.
func (s *Server) apiRoutes() []route {
	return []route{
		{method: "GET", path: "/healthz", access: accessPublic, summary: "Liveness and database check", out: health{}, handler: s.handleHealth},
		{method: "GET", path: "/metrics", access: accessPublic, summary: "Prometheus metrics (text format)", handler: s.metrics.handle},
		{method: "GET", path: "/api/v1/openapi.json", access: accessPublic, summary: "This OpenAPI document", handler: s.handleOpenAPI},

		{method: "POST", path: "/api/v1/login", access: accessPublic, summary: "Exchange email and password for an access token", in: loginRequest{}, out: loginResponse{}, handler: s.handleAPILogin},
		{method: "GET", path: "/api/v1/me", access: accessSignedIn, summary: "The signed-in user and their permissions", out: meResponse{}, handler: s.handleMe},

		{method: "GET", path: "/api/v1/users", access: perm(silo.PermUsersRead), summary: "List users", out: []silo.User{}, handler: s.handleListUsers},
		{method: "GET", path: "/api/v1/users/{email}", access: perm(silo.PermUsersRead), summary: "Show a user", out: silo.User{}, handler: s.handleGetUser},
		{method: "PATCH", path: "/api/v1/users/{email}", access: perm(silo.PermUsersManage), summary: "Change a user's roles, name or disabled flag", in: userPatch{}, out: silo.User{}, handler: s.handlePatchUser},
		{method: "DELETE", path: "/api/v1/users/{email}", access: perm(silo.PermUsersManage), summary: "Remove a user", handler: s.handleDeleteUser},

		{method: "GET", path: "/api/v1/invites", access: perm(silo.PermUsersRead), summary: "List invitations", out: []silo.Invite{}, handler: s.handleListInvites},
		{method: "POST", path: "/api/v1/invites", access: perm(silo.PermUsersManage), summary: "Invite an email with roles; the response holds the single-use link", in: inviteRequest{}, out: silo.Invite{}, handler: s.handleCreateInvite},
		{method: "DELETE", path: "/api/v1/invites/{id}", access: perm(silo.PermUsersManage), summary: "Revoke a pending invitation", out: silo.Invite{}, handler: s.handleRevokeInvite},
		{method: "POST", path: "/api/v1/invites/accept", access: accessPublic, summary: "Accept an invitation and set a password", in: acceptRequest{}, out: silo.User{}, handler: s.handleAcceptInvite},

		{method: "GET", path: "/api/v1/tokens", access: perm(silo.PermTokensOwn), summary: "List your access tokens (?all=true: everyone's, for admins)", out: []silo.Token{}, handler: s.handleListTokens},
		{method: "POST", path: "/api/v1/tokens", access: perm(silo.PermTokensOwn), summary: "Create an access token; the secret is in this response only", in: silo.TokenRequest{}, out: silo.Token{}, handler: s.handleCreateToken},
		{method: "DELETE", path: "/api/v1/tokens/{id}", access: perm(silo.PermTokensOwn), summary: "Revoke a token (your own, or anyone's for admins)", handler: s.handleRevokeToken},

		{method: "GET", path: "/api/v1/workspace", access: perm(silo.PermWorkspaceRead), summary: "Workspace and billing information", out: silo.Workspace{}, handler: s.handleGetWorkspace},
		{method: "PATCH", path: "/api/v1/workspace", access: perm(silo.PermWorkspaceManage), summary: "Edit workspace and billing information", in: workspacePatch{}, out: silo.Workspace{}, handler: s.handlePatchWorkspace},

		{method: "GET", path: "/api/v1/audit", access: perm(silo.PermAuditRead), summary: "Audit log, newest first (?since=24h|RFC3339&limit=&before=ID)", out: []silo.AuditEntry{}, handler: s.handleListAudit},
	}
}
