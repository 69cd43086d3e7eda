package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/runnerapi"
)

// argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes), which
// keeps a sign-in around tens of milliseconds on a small machine.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// hashPassword returns a PHC-format argon2id hash of pw.
func hashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkPassword reports whether pw matches the PHC-format hash.
func checkPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	// #nosec G115 -- a stored hash is 32 bytes
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when an email is unknown, so a wrong email and
// a wrong password take the same time.
var dummyHash, _ = hashPassword("silo-timing-equaliser")

// randomSecret returns n random bytes as lower-case base32 (no padding).
func randomSecret(n int) string { return silo.RandomID(n) }

// hashSecret returns the SHA-256 of a high-entropy secret (token, invite
// link, cookie). Such secrets need no slow hash: they cannot be guessed.
func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const loginCookie = "silo_session"

// authenticate returns the actor of r, or nil for an anonymous request, and
// the browser sign-in when the actor came from a cookie.
func (s *Server) authenticate(r *http.Request) (*silo.Actor, *silo.Login, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, nil, silo.Errorf(silo.EUNAUTHORIZED, "Authorization header must be \"Bearer <token>\"")
		}
		a, err := s.actorForToken(ctx, strings.TrimSpace(secret))
		return a, nil, err
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" {
		return nil, nil, nil
	}
	l, err := s.db.FindLogin(ctx, hashSecret(c.Value))
	if silo.ErrorCode(err) == silo.EUNAUTHORIZED {
		return nil, nil, nil // an expired cookie is just a signed-out browser
	} else if err != nil {
		return nil, nil, err
	}
	u, err := s.db.FindUserByID(ctx, l.UserID)
	if silo.ErrorCode(err) == silo.ENOTFOUND || (err == nil && u.Disabled) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	return &silo.Actor{User: u}, l, nil
}

var errBadToken = silo.Errorf(silo.EUNAUTHORIZED, "access token is not valid (revoked, expired or mistyped): create a new one with 'silo tokens create' or sign in again")

func (s *Server) actorForToken(ctx context.Context, secret string) (*silo.Actor, error) {
	if !strings.HasPrefix(secret, silo.TokenPrefix) {
		return nil, errBadToken
	}
	t, err := s.db.FindTokenByHash(ctx, hashSecret(secret))
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return nil, errBadToken
	} else if err != nil {
		return nil, err
	}
	now := s.now()
	if !t.Active(now) {
		return nil, errBadToken
	}
	u, err := s.db.FindUserByID(ctx, t.UserID)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "the account %s is disabled", u.Email)
	}
	// Record use at most every minute, to spare the single SQLite writer.
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		if err := s.db.TouchToken(ctx, t.ID, now); err != nil {
			s.Logger.Warn("record token use", "token_id", t.ID, "err", err)
		}
	}
	a := &silo.Actor{User: u, TokenID: t.ID}
	if len(t.Scopes) > 0 {
		a.Scopes = t.Scopes
	}
	return a, nil
}

type loginKey struct{}

// LoginFromContext returns the browser sign-in of the request, if any.
func LoginFromContext(ctx context.Context) *silo.Login {
	l, _ := ctx.Value(loginKey{}).(*silo.Login)
	return l
}

// signedIn returns r with its actor and browser sign-in (if any) in its
// context, as the guard adds them, for pages outside the route table (the
// not-found page) that show who is signed in.
func (s *Server) signedIn(r *http.Request) *http.Request {
	a, l, err := s.authenticate(r)
	if err != nil || a == nil {
		return r
	}
	ctx := silo.NewContextWithActor(r.Context(), a)
	if l != nil {
		ctx = context.WithValue(ctx, loginKey{}, l)
	}
	return r.WithContext(ctx)
}

// guard authenticates the request and enforces the route's access rule and,
// for browser sign-ins, CSRF protection on every unsafe method.
func (s *Server) guard(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(err error) {
			if rt.Page && s.PageError != nil {
				s.PageError(w, r, err)
			} else {
				httpjson.Error(w, r, s.Logger, err)
			}
		}
		if rt.Access == AccessRunner {
			rn, err := s.authenticateRunner(r)
			if err != nil {
				fail(err)
				return
			}
			rt.Handler(w, r.WithContext(runnerapi.WithRunner(r.Context(), rn)))
			return
		}
		actor, login, err := s.authenticate(r)
		if err != nil {
			fail(err)
			return
		}
		ctx := r.Context()
		if actor != nil {
			ctx = silo.NewContextWithActor(ctx, actor)
		}
		if login != nil {
			ctx = context.WithValue(ctx, loginKey{}, login)
		}
		r = r.WithContext(ctx)
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead
		if unsafe && rt.MaxBody > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
			if err := parseBoundedForm(r, rt.MaxBody); err != nil {
				fail(err)
				return
			}
		}
		if unsafe {
			if err := s.checkCSRF(r, login); err != nil {
				fail(err)
				return
			}
		}
		if rt.Access != AccessPublic {
			if actor == nil {
				if rt.Page {
					http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
					return
				}
				fail(silo.Errorf(silo.EUNAUTHORIZED, "sign in first: send \"Authorization: Bearer <token>\" (see 'silo login')"))
				return
			}
			if rt.Access != AccessSignedIn && !actor.Can(silo.Permission(rt.Access)) {
				err := silo.Errorf(silo.EFORBIDDEN, "you do not have permission to do this (it needs %s, which your roles%s do not grant)", rt.Access, scopeNote(actor))
				if unsafe {
					s.audit(ctx, "access.denied", r.Method+" "+r.URL.Path, silo.OutcomeDenied, string(rt.Access))
				}
				fail(err)
				return
			}
		}
		rt.Handler(w, r)
	})
}

func scopeNote(a *silo.Actor) string {
	if a.Scopes != nil {
		return " or this token's scopes"
	}
	return ""
}

// checkCSRF protects cookie-authenticated requests: the form field
// csrf_token or header X-CSRF-Token must match the sign-in's token. Requests
// without a sign-in (bearer tokens, the sign-in form itself) carry no ambient
// credential, but a cross-site Origin is still refused, so another site
// cannot sign a browser in to an account of its choosing. "Origin: null"
// is refused too: browsers send it from sandboxed frames, data: and file:
// pages and after cross-site redirects, never from this site's own pages
// (their Referrer-Policy is same-origin). Without an Origin, a browser's
// Sec-Fetch-Site saying cross-site is refused.
func (s *Server) checkCSRF(r *http.Request, l *silo.Login) error {
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if origin == "null" || err != nil || u.Host != r.Host {
			return silo.Errorf(silo.EFORBIDDEN, "cross-site request refused: this site's forms and API accept requests only from its own pages")
		}
	} else if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return silo.Errorf(silo.EFORBIDDEN, "cross-site request refused: this site's forms and API accept requests only from its own pages")
	}
	if l == nil {
		return nil
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf_token")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(l.CSRF)) != 1 {
		return silo.Errorf(silo.EFORBIDDEN, "the form has expired or did not come from this site: reload the page and try again")
	}
	return nil
}

// StartLogin signs a browser in: it stores a new sign-in and sets its cookie.
func (s *Server) StartLogin(w http.ResponseWriter, r *http.Request, u *silo.User) error {
	secret := randomSecret(32)
	l := &silo.Login{Hash: hashSecret(secret), UserID: u.ID, CSRF: randomSecret(20), ExpiresAt: s.now().Add(silo.LoginTTL)}
	if err := s.db.CreateLogin(r.Context(), l); err != nil {
		return err
	}
	// #nosec G124 -- Secure whenever served over TLS or behind an https public URL (TestSecureCookies)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: secret, Path: "/", HttpOnly: true, Secure: s.SecureCookies(r),
		SameSite: http.SameSiteLaxMode, Expires: l.ExpiresAt})
	return nil
}

// EndLogin signs a browser out.
func (s *Server) EndLogin(w http.ResponseWriter, r *http.Request) {
	if l := LoginFromContext(r.Context()); l != nil {
		if err := s.db.DeleteLogin(r.Context(), l.Hash); err != nil {
			s.Logger.Warn("sign out", "err", err)
		}
	}
	// #nosec G124 -- as above: Secure whenever TLS is in front
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.SecureCookies(r), SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// CheckCredentials verifies an email and password, throttled per account
// and client address (see signInThrottle).
func (s *Server) CheckCredentials(ctx context.Context, r *http.Request, email, password string) (*silo.User, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	keys := throttleKeys(email, s.clientAddr(r))
	now := s.now()
	wait, correctMayPass := s.throttle.wait(keys, now)
	if wait > 0 && !correctMayPass {
		s.auditAs(ctx, email, "auth.login", email, silo.OutcomeDenied, "throttled: too many failed sign-ins")
		return nil, errThrottled(wait)
	}
	u, err := s.db.FindUserByEmail(ctx, email)
	if err != nil && silo.ErrorCode(err) != silo.ENOTFOUND {
		return nil, err
	}
	hash := dummyHash
	if u != nil {
		hash = u.PasswordHash
	}
	if !checkPassword(hash, password) || u == nil || u.Disabled {
		s.throttle.fail(keys, now)
		s.auditAs(ctx, email, "auth.login", email, silo.OutcomeFailed, "wrong email or password")
		if wait > 0 { // checked only because the pair signed in before: say no more than to anyone throttled
			return nil, errThrottled(wait)
		}
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "wrong email or password")
	}
	s.throttle.succeed(keys, now)
	s.auditAs(ctx, u.Email, "auth.login", u.Email, silo.OutcomeSuccess, "")
	return u, nil
}
