package server_test

import (
	"net/http/httptest"
	"testing"

	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
)

const adminEmail, adminPassword = servertest.AdminEmail, servertest.AdminPassword

// The shared test environment (servertest) under the short names this
// package's tests use.
type (
	fakeClock = servertest.Clock
	apiError  = servertest.APIError
	agents    = servertest.Agents
)

var (
	eventually       = servertest.Eventually
	eventuallySleep  = servertest.Pause
	runnerStatus     = servertest.RunnerStatus
	waitDataset      = servertest.WaitDataset
	registerHospital = servertest.RegisterHospital
	connectHospital  = servertest.ConnectHospital
	sessionConfig    = servertest.SessionConfig
	waitSession      = servertest.WaitSession
	sampleData       = servertest.SampleData
)

// env is a servertest.Env with its fields under their short names.
type env struct {
	*servertest.Env
	t      *testing.T
	db     *sqlstore.DB
	dbPath string // the SQLite file; empty on PostgreSQL
	srv    *server.Server
	ts     *httptest.Server
	clock  *fakeClock
	admin  string                // the admin's access token
	logs   *servertest.LogBuffer // everything the server logged, at debug level
}

func envOf(e *servertest.Env) *env {
	return &env{Env: e, t: e.T, db: e.DB, dbPath: e.DBPath, srv: e.Srv, ts: e.TS, clock: e.Clock, admin: e.Admin, logs: e.Logs}
}

// newEnv starts a server on a fresh store (SQLite, or PostgreSQL: see
// servertest.StoreEnv) with a bootstrapped admin.
func newEnv(t *testing.T) *env { return envOf(servertest.New(t)) }

func newAgents(t *testing.T, e *env) *agents { return servertest.NewAgents(t, e.Env) }

func (e *env) do(method, path, token string, body any, out any) int {
	e.t.Helper()
	return e.Do(method, path, token, body, out)
}

func (e *env) wantError(method, path, token string, body any, status int, code, substr string) {
	e.t.Helper()
	e.WantError(method, path, token, body, status, code, substr)
}

func (e *env) login(email, password string) string { e.t.Helper(); return e.Login(email, password) }

func (e *env) addUser(email string, roles ...string) string {
	e.t.Helper()
	return e.AddUser(email, roles...)
}
