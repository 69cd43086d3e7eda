// Package server is Silo's workspace server: the JSON API under /api/v1, the
// runner protocol, sign-in, health, metrics and OpenAPI. Every route is
// declared once, with the permission it needs, in routes.go; the web UI
// (internal/ui) adds its pages to the same table with AddRoutes, so one
// guard checks every request.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/orchestrator/hfl"
	"github.com/silofl/silo/internal/orchestrator/prl"
	"github.com/silofl/silo/internal/runnerapi"
	"github.com/silofl/silo/internal/seal"
	"github.com/silofl/silo/internal/sqlstore"
)

// LeaseTTL is how long a replica's claim on a session lasts unless renewed.
const LeaseTTL = orchestrator.LeaseTTL

// MaxBodyBytes bounds JSON request bodies.
const MaxBodyBytes = httpjson.MaxBody

// Server serves the API (and the routes added to it) from a store. Set its
// exported fields before calling Handler.
type Server struct {
	Logger *slog.Logger
	Clock  silo.Clock
	// PublicURL is the base URL users reach the server at, used in invitation
	// links and to decide whether cookies are Secure. Empty means "derive it
	// from each request".
	PublicURL string
	// InternalURL is where runners the server starts itself reach it.
	InternalURL string
	// SecretKey seals secrets at rest. New sets a random one, which is lost
	// on restart; servers set a persistent one.
	SecretKey *seal.Key
	// HeartbeatInterval is how often agents report; three missed make a
	// runner offline.
	HeartbeatInterval time.Duration
	// Mailer emails invitation links; nil means links are only shown.
	Mailer *Mailer
	// Cloud is how the server reaches cloud storage to provision runners.
	Cloud CloudStorage
	// Launch starts local runners as children of the server; nil means the
	// server cannot.
	Launch Launcher
	// PageError shows the error of a Page route as a page, and PageNotFound
	// answers a path outside /api/ that no route matches, its visitor
	// authenticated. The web UI sets both (ui.New); without them such errors
	// are answered as the API's are.
	PageError    func(w http.ResponseWriter, r *http.Request, err error)
	PageNotFound http.HandlerFunc
	// LocalRunnersRoot is the only folder whose subfolders runners the
	// server starts may have as storage (silo server --local-runners-root):
	// such a runner reads files on the server's own machine, so it must
	// never reach the server's data, key or configuration. Empty means the
	// server starts no runners. Its checks at start are CheckLocalRunnersRoot.
	LocalRunnersRoot string

	// TrustedProxies are the reverse proxies whose X-Forwarded-For header
	// names the client (for sign-in throttling); from any other peer the
	// header is ignored, since a client can send anything in it.
	TrustedProxies []netip.Prefix

	db       *sqlstore.DB
	throttle *signInThrottle
	metrics  *metrics
	routes   []Route
	served   bool // Handler was called: the routes are fixed
	// agents answers the runner protocol.
	agents    *runnerapi.API
	agentsSet sync.Once // the server's settings passed to agents
	local     localRunners
	// engine drives sessions; each session type is a kind registered in New.
	engine *orchestrator.Driver
	// Replica names this server in session leases: a restarted server with
	// the same name takes its sessions back at once. New sets a random one.
	Replica string
	// runCtx is the context of Run: runners the server starts live as long
	// as it does.
	runMu  sync.Mutex
	runCtx context.Context
}

func (s *Server) backgroundContext() context.Context {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	return s.runCtx
}

// New returns a Server backed by db.
func New(db *sqlstore.DB) *Server {
	s := &Server{Logger: slog.Default(), db: db, throttle: newSignInThrottle(), metrics: newMetrics(), SecretKey: seal.NewRandomKey(),
		HeartbeatInterval: silo.DefaultHeartbeatInterval, runCtx: context.Background(), Replica: "replica_" + randomSecret(8)}
	s.engine = orchestrator.New(db)
	s.engine.Register(silo.SessionHFL, hfl.Kind{})
	s.engine.Register(silo.SessionPRL, prl.Kind{})
	s.engine.Audit = func(ctx context.Context, action, target, outcome, detail string) {
		s.auditAs(ctx, "system", action, target, outcome, detail)
	}
	s.agents = runnerapi.New(db, s.engine)
	s.agents.Audit, s.agents.Connected = s.auditAs, s.datasetConnected
	// Tasks a driver queues wake the runner's long-polls, or go straight to
	// one waiting.
	s.engine.Notify, s.engine.Claim = s.agents.Notify, s.agents.Claim
	s.AddRoutes(slices.Concat(s.apiRoutes(), s.runnerRoutes(), s.agentRoutes(), s.datasetRoutes(), s.sessionRoutes())...)
	return s
}

// SessionKinds lists the session types this server runs (the engine's
// registered kinds), in the order of silo.SessionTypes.
func (s *Server) SessionKinds() []string { return s.engine.Kinds() }

// DefaultPrivacy is the privacy controls a dataset starts from on this
// server: silo's defaults, allowing the session types the server runs.
func (s *Server) DefaultPrivacy() silo.PrivacyControls {
	return silo.DefaultPrivacyControlsFor(s.SessionKinds())
}

// BootstrapAdmin creates the first admin when the workspace has no users yet.
// It returns the user and whether it was created; with existing users it does
// nothing, so it is safe on every start.
func (s *Server) BootstrapAdmin(ctx context.Context, email, password string) (*silo.User, bool, error) {
	email, err := silo.NormalizeEmail(email)
	if err != nil {
		return nil, false, fmt.Errorf("admin email: %w", err)
	}
	if err := silo.ValidatePassword(password); err != nil {
		return nil, false, fmt.Errorf("admin password: %w", err)
	}
	if n, err := s.db.CountUsers(ctx); err != nil {
		return nil, false, err
	} else if n > 0 {
		u, err := s.db.FindUserByEmail(ctx, email)
		return u, false, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return nil, false, err
	}
	u := &silo.User{Email: email, Roles: []silo.Role{silo.RoleAdmin}, PasswordHash: hash}
	if err := s.db.CreateFirstAdmin(ctx, u); err != nil {
		return nil, false, err
	}
	s.auditAs(ctx, "system", "user.create_first_admin", u.Email, silo.OutcomeSuccess, "")
	return u, true, nil
}

// configureEngine passes the server's settings, set after New, to the
// session engine and the runner protocol.
func (s *Server) configureEngine() {
	s.engine.Logger, s.engine.Clock, s.engine.Replica = s.Logger, s.Clock, s.Replica
	s.configureAgents()
}

// configureAgents passes the server's settings to the runner protocol,
// once: by the time Run starts, runners may already be calling.
func (s *Server) configureAgents() {
	s.agentsSet.Do(func() {
		s.agents.Logger, s.agents.Clock, s.agents.HeartbeatInterval = s.Logger, s.Clock, s.HeartbeatInterval
	})
}

// Handler returns the HTTP handler for every route.
func (s *Server) Handler() http.Handler {
	s.configureEngine()
	s.served = true
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.Method+" "+rt.Path, s.metrics.wrap(rt.Method+" "+rt.Path, s.guard(rt)))
	}
	mux.Handle("/", s.metrics.wrap("unmatched", http.HandlerFunc(s.notFound)))
	return securityHeaders(mux, runnerapi.Prefix)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if s.PageNotFound != nil && !strings.HasPrefix(r.URL.Path, "/api/") {
		s.PageNotFound(w, s.signedIn(r))
		return
	}
	httpjson.Error(w, r, s.Logger, silo.Errorf(silo.ENOTFOUND, "no API route %s %s: see /api/v1/openapi.json", r.Method, r.URL.Path))
}

// now is the server's clock.
func (s *Server) now() time.Time { return s.Clock.Now() }

// DB is the server's store, for the web UI's pages, which read it as the
// API's handlers do.
func (s *Server) DB() *sqlstore.DB { return s.db }

// audit records a change made by the request's actor.
func (s *Server) audit(ctx context.Context, action, target, outcome, detail string) {
	s.auditAs(ctx, silo.ActorFromContext(ctx).Name(), action, target, outcome, detail)
}

func (s *Server) auditAs(ctx context.Context, actor, action, target, outcome, detail string) {
	e := &silo.AuditEntry{Actor: actor, Action: action, Target: target, Outcome: outcome, Detail: detail}
	// The change has happened; losing the entry must not undo it, but it is
	// logged loudly. WithoutCancel: a client hanging up must not lose it.
	if err := s.db.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.Logger.Error("audit append failed", "action", action, "target", target, "err", err)
	}
}

// auditResult records a change with the outcome err implies.
func (s *Server) auditResult(ctx context.Context, action, target string, err error) {
	switch code := silo.ErrorCode(err); code {
	case "":
		s.audit(ctx, action, target, silo.OutcomeSuccess, "")
	case silo.EFORBIDDEN, silo.EUNAUTHORIZED:
		s.audit(ctx, action, target, silo.OutcomeDenied, silo.ErrorMessage(err))
	default:
		s.audit(ctx, action, target, silo.OutcomeFailed, silo.ErrorMessage(err))
	}
}

// BaseURL returns the base URL for links, from PublicURL or the request.
func (s *Server) BaseURL(r *http.Request) string {
	if s.PublicURL != "" {
		return strings.TrimRight(s.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// linkBase is the base URL of links the server hands to other people
// (invitations, which carry a secret): PublicURL. Without one, the request's
// Host is trusted only when it names the loopback (a server used on its own
// machine, as the quickstart's) or the address the server listens on, since
// anyone can put any Host in a request, and a link built from it would send
// the invited person, and the secret, to another site.
func (s *Server) linkBase(r *http.Request) (string, error) {
	if s.PublicURL != "" {
		return strings.TrimRight(s.PublicURL, "/"), nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	listen, _ := url.Parse(s.InternalURL)
	if host == "localhost" || (ip != nil && ip.IsLoopback()) || (listen != nil && listen.Host != "" && listen.Host == r.Host) {
		return s.BaseURL(r), nil
	}
	return "", silo.Errorf(silo.ECONFLICT, "invitation links need the address users reach this server at, and it cannot take it from this request (for %q): start the server with --public-url https://… (or SILO_PUBLIC_URL)", r.Host)
}

// SecureCookies reports whether cookies must carry the Secure flag.
func (s *Server) SecureCookies(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.PublicURL, "https://")
}
