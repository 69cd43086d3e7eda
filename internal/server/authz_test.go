package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/silofl/silo"
)

// wantRules is the expected access rule of every route. A route the server
// serves that is missing here fails TestRouteRules, so no route can be added
// without deciding who may call it.
var wantRules = map[string]string{
	"GET /healthz":             "public",
	"GET /metrics":             "public",
	"GET /api/v1/openapi.json": "public",
	"POST /api/v1/login":       "public",
	"GET /api/v1/me":           "signed_in",

	"GET /api/v1/users":            "users:read",
	"GET /api/v1/users/{email}":    "users:read",
	"PATCH /api/v1/users/{email}":  "users:manage",
	"DELETE /api/v1/users/{email}": "users:manage",

	"GET /api/v1/invites":         "users:read",
	"POST /api/v1/invites":        "users:manage",
	"DELETE /api/v1/invites/{id}": "users:manage",
	"POST /api/v1/invites/accept": "public",

	"GET /api/v1/tokens":         "tokens:own",
	"POST /api/v1/tokens":        "tokens:own",
	"DELETE /api/v1/tokens/{id}": "tokens:own",

	"GET /api/v1/workspace":   "workspace:read",
	"PATCH /api/v1/workspace": "workspace:manage",
	"GET /api/v1/audit":       "audit:read",

	"GET /api/v1/runners":                           "runners:read",
	"POST /api/v1/runners":                          "runners:manage",
	"GET /api/v1/runners/{name}":                    "runners:read",
	"PATCH /api/v1/runners/{name}":                  "runners:manage",
	"DELETE /api/v1/runners/{name}":                 "runners:manage",
	"POST /api/v1/runners/{name}/token":             "runners:manage",
	"POST /api/v1/runners/{name}/provision":         "runners:manage",
	"GET /api/v1/runners/{name}/bundle":             "runners:manage",
	"POST /api/v1/runners/{name}/start":             "runners:launch",
	"POST /api/v1/runners/{name}/stop":              "runners:launch",
	"GET /api/v1/runners/{name}/tasks":              "runners:read",
	"POST /api/v1/runners/{name}/tasks":             "runners:manage",
	"GET /api/v1/runners/{name}/logs":               "runners:read",
	"POST /api/v1/runners/{name}/tasks/{id}/cancel": "runners:manage",

	"GET /api/v1/datasets":                         "datasets:read",
	"POST /api/v1/datasets":                        "datasets:manage",
	"GET /api/v1/datasets/{name}":                  "datasets:read",
	"PATCH /api/v1/datasets/{name}":                "datasets:manage",
	"DELETE /api/v1/datasets/{name}":               "datasets:manage",
	"POST /api/v1/datasets/{name}/connect":         "datasets:manage",
	"POST /api/v1/datasets/{name}/attachments":     "datasets:manage",
	"GET /api/v1/datasets/{name}/attachments/{id}": "datasets:read",

	"GET /api/v1/sessions":              "sessions:read",
	"POST /api/v1/sessions":             "sessions:manage",
	"GET /api/v1/sessions/{id}":         "sessions:read",
	"GET /api/v1/sessions/{id}/metrics": "sessions:read",
	"POST /api/v1/sessions/{id}/cancel": "sessions:manage",
	"GET /api/v1/sessions/{id}/model":   "models:download",
	"POST /api/v1/predictions":          "predictions:run",

	// Pages of the web UI.
	"GET /static/{file}":                        "public",
	"GET /login":                                "public",
	"POST /login":                               "public",
	"POST /logout":                              "public",
	"GET /setup":                                "public",
	"POST /setup":                               "public",
	"GET /invite/{secret}":                      "public",
	"POST /invite/{secret}":                     "public",
	"GET /{$}":                                  "signed_in",
	"GET /library":                              "datasets:read",
	"GET /library/register-dataset":             "datasets:manage",
	"POST /library/register-dataset":            "datasets:manage",
	"GET /library/{name}":                       "datasets:read",
	"POST /library/{name}/privacy":              "datasets:manage",
	"POST /library/{name}/connect":              "datasets:manage",
	"POST /library/{name}/deregister":           "datasets:manage",
	"GET /sessions":                             "sessions:read",
	"GET /sessions/new":                         "sessions:manage",
	"POST /sessions/new":                        "sessions:manage",
	"GET /sessions/{id}":                        "sessions:read",
	"POST /sessions/{id}/cancel":                "sessions:manage",
	"POST /sessions/{id}/predict":               "predictions:run",
	"GET /settings":                             "signed_in",
	"GET /settings/users":                       "users:read",
	"POST /settings/invites":                    "users:manage",
	"POST /settings/invites/{id}/revoke":        "users:manage",
	"POST /settings/users/{email}/roles":        "users:manage",
	"POST /settings/users/{email}/disable":      "users:manage",
	"POST /settings/users/{email}/enable":       "users:manage",
	"POST /settings/users/{email}/remove":       "users:manage",
	"GET /settings/runners":                     "runners:read",
	"GET /settings/register-runner":             "runners:manage",
	"GET /settings/register-runner/{provider}":  "runners:manage",
	"POST /settings/register-runner/{provider}": "runners:manage",
	"GET /settings/runners/{name}":              "runners:read",
	"GET /settings/runners/{name}/edit":         "runners:manage",
	"POST /settings/runners/{name}/edit":        "runners:manage",
	"GET /settings/runners/{name}/bundle":       "runners:manage",
	"POST /settings/runners/{name}/diagnostics": "runners:manage",
	"POST /settings/runners/{name}/start":       "runners:launch",
	"POST /settings/runners/{name}/stop":        "runners:launch",
	"POST /settings/runners/{name}/token":       "runners:manage",
	"POST /settings/runners/{name}/provision":   "runners:manage",
	"POST /settings/runners/{name}/deregister":  "runners:manage",
	"GET /settings/tokens":                      "tokens:own",
	"POST /settings/tokens":                     "tokens:own",
	"POST /settings/tokens/{id}/revoke":         "tokens:own",
	"GET /settings/billing":                     "workspace:read",
	"POST /settings/billing":                    "workspace:manage",
	"GET /settings/audit":                       "audit:read",

	"POST /api/v1/runner/heartbeat":              "runner",
	"GET /api/v1/runner/tasks":                   "runner",
	"POST /api/v1/runner/tasks/{id}/result":      "runner",
	"POST /api/v1/runner/tasks/{id}/logs":        "runner",
	"POST /api/v1/runner/tasks/{id}/progress":    "runner",
	"GET /api/v1/runner/tasks/{id}/parts/{part}": "runner",
}

func TestRouteRules(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for _, rt := range e.srv.Routes() {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		want, ok := wantRules[key]
		if !ok {
			t.Errorf("route %s has no expected rule in wantRules: decide who may call it and add it", key)
		} else if want != rt.Access {
			t.Errorf("route %s: rule %q, want %q", key, rt.Access, want)
		}
	}
	for key := range wantRules {
		if !seen[key] {
			t.Errorf("wantRules lists %s but the server has no such route", key)
		}
	}
}

// TestRouteAuthorization calls every route as every role, as an anonymous
// caller and with a scoped token, and checks the answer is allowed or refused
// exactly as the permission matrix says.
func TestRouteAuthorization(t *testing.T) {
	e := newEnv(t)
	tokens := map[string]string{
		"admin":          e.admin,
		"model_builder":  e.addUser("mb@example.org", "model_builder"),
		"data_custodian": e.addUser("dc@example.org", "data_custodian"),
	}
	roles := map[string][]silo.Role{
		"admin":          {silo.RoleAdmin},
		"model_builder":  {silo.RoleModelBuilder},
		"data_custodian": {silo.RoleDataCustodian},
	}
	// An admin's token scoped to runners:read may do only that.
	var scoped silo.Token
	if st := e.do("POST", "/api/v1/tokens", e.admin, map[string]any{"name": "ro", "scopes": []string{"runners:read"}}, &scoped); st != 201 {
		t.Fatalf("create scoped token: %d", st)
	}
	tokens["scoped"] = scoped.Secret

	fill := strings.NewReplacer("{email}", "nobody@example.org", "{id}", "999999", "{secret}", "not-a-secret", "{file}", "silo.css", "{name}", "none", "{$}", "")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, rt := range e.srv.Routes() {
		for _, who := range []string{"anonymous", "admin", "model_builder", "data_custodian", "scoped"} {
			req, _ := http.NewRequest(rt.Method, e.ts.URL+fill.Replace(rt.Path), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if who != "anonymous" {
				req.Header.Set("Authorization", "Bearer "+tokens[who])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			unauth := resp.StatusCode == http.StatusUnauthorized ||
				(rt.Page && resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"))
			forbidden := resp.StatusCode == http.StatusForbidden

			var allowed bool
			switch {
			case rt.Access == "public":
				// Sign-in answers 401 to wrong credentials; that is not a refusal by rule.
				if forbidden {
					t.Errorf("%s %s as %s: public route answered 403", rt.Method, rt.Path, who)
				}
				continue
			case rt.Access == "runner":
				// Runner routes take a runner token; every user is refused.
				if !unauth {
					t.Errorf("%s %s as %s: status %d, want 401 (runner token required)", rt.Method, rt.Path, who, resp.StatusCode)
				}
				continue
			case who == "anonymous":
				if !unauth {
					t.Errorf("%s %s as anonymous: status %d, want sign-in required", rt.Method, rt.Path, resp.StatusCode)
				}
				continue
			case who == "scoped":
				allowed = rt.Access == "runners:read" || rt.Access == "signed_in"
			case rt.Access == "signed_in":
				allowed = true
			default:
				allowed = silo.Can(roles[who], silo.Permission(rt.Access))
			}
			if unauth {
				t.Errorf("%s %s as %s: status %d, signed-in caller treated as anonymous", rt.Method, rt.Path, who, resp.StatusCode)
			} else if allowed && forbidden {
				t.Errorf("%s %s as %s: forbidden, want allowed (%s)", rt.Method, rt.Path, who, rt.Access)
			} else if !allowed && !forbidden {
				t.Errorf("%s %s as %s: status %d, want 403 (%s)", rt.Method, rt.Path, who, resp.StatusCode, rt.Access)
			}
		}
	}
}
