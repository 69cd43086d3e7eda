package silo

import "context"

// Actor is who a request acts as: a signed-in user, possibly narrowed by a
// scoped token.
type Actor struct {
	User *User
	// Scopes, when non-nil, narrows the user's permissions (a scoped token).
	Scopes []Permission
	// TokenID is set when the request authenticated with an access token.
	TokenID string
}

// Can reports whether the actor may do p: the user's roles grant it and, for
// a scoped token, the scope includes it.
func (a *Actor) Can(p Permission) bool {
	if a == nil || a.User == nil || a.User.Disabled {
		return false
	}
	if !Can(a.User.Roles, p) {
		return false
	}
	return a.Scopes == nil || containsPerm(a.Scopes, p)
}

// Name returns how the actor appears in the audit log.
func (a *Actor) Name() string {
	if a == nil || a.User == nil {
		return "anonymous"
	}
	return a.User.Email
}

type actorKey struct{}

// NewContextWithActor returns ctx carrying a.
func NewContextWithActor(ctx context.Context, a *Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFromContext returns the actor in ctx, or nil.
func ActorFromContext(ctx context.Context) *Actor {
	a, _ := ctx.Value(actorKey{}).(*Actor)
	return a
}
