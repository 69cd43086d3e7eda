package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/ui"
)

// newLiveEnv starts a real server with startServer, as 'silo server' does:
// on port 0, with its data in a temporary directory and the child-process
// launcher wired, so 'silo runners start' runs real `silo runner` processes
// (this test binary, see TestMain). The CLI is not signed in yet.
func newLiveEnv(t *testing.T) (*env, *runningServer) {
	t.Helper()
	t.Setenv(asCLI, "1") // before the server starts any child
	t.Setenv("SILO_SERVER", "")
	t.Setenv("SILO_TOKEN", "")
	t.Setenv("SILO_RUNNER_TOKEN", "")
	// No cloud credentials: the server leaves cloud storage to the
	// deployment bundles and never reaches out to AWS or Azure.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	logs := &syncBuffer{}
	rs, err := startServer(context.Background(), serverConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), LocalRunnersRoot: filepath.Join(dir, "runners"),
		AdminEmail: adminEmail, AdminPassword: adminPassword, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rs.Shutdown()
		// The children it started exit before their directories go.
		waitNoProcesses(t, childMarker(rs.URL))
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	e := &env{t: t, url: rs.URL, dir: dir}
	e.useConfig("admin")
	e.loginAdmin()
	return e, rs
}

// childMarker is what the command line of a runner started by the server
// at url contains.
func childMarker(url string) string { return "runner --server " + url + " " }

// runnerFields runs 'silo runners ARGS --json' and returns the object it
// printed, to check field names as scripts see them.
func (e *env) runnerFields(args ...string) map[string]any {
	e.t.Helper()
	var m map[string]any
	e.json(&m, append([]string{"runners"}, args...)...)
	return m
}

// waitStatus waits (bounded) until 'silo runners show NAME' reports status.
func (e *env) waitStatus(name string, status silo.RunnerStatus) *silo.Runner {
	e.t.Helper()
	var r silo.Runner
	waitFor(e.t, 30*time.Second, "runner "+name+" "+string(status), func() bool {
		e.json(&r, "runners", "show", name)
		if r.Status == silo.RunnerFailed && status != silo.RunnerFailed {
			e.t.Fatalf("runner %s failed: %s", name, r.StatusReason)
		}
		return r.Status == status
	})
	return &r
}

func hasKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q: %v", what, k, m)
		}
	}
}

// writeJSONFile writes v as JSON into a new file in a temporary directory.
func writeJSONFile(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunnersRegisterLocal covers registering local runners with field
// flags, the token shown once, the --json contract (SPEC §5), listing and
// editing.
func TestRunnersRegisterLocal(t *testing.T) {
	e, _ := newLiveEnv(t)
	root := filepath.Join(t.TempDir(), "edge-1")

	check(t, []string{"runners", "list", "empty"}, e.run("", "runners", "list"), 0,
		[]string{"No task runners yet. Register one with: silo runners register --provider local --name NAME --storage-path file://"}, nil)
	if r := e.run("", "runners", "list", "--json"); r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("empty runners list --json = %d %q", r.code, r.out)
	}

	out := e.ok("runners", "register", "--provider", "local", "--name", "edge-1", "--storage-path", "file://"+root, "--vcpu", "1", "--memory-gb", "1")
	token := regexp.MustCompile(silo.RunnerTokenPrefix + `\S+`).FindString(out)
	for _, want := range []string{"Registered local runner edge-1 (registering).", "shown once", "silo runner --server " + e.url + " --token " + token + " --storage-root " + root, "silo runners start edge-1"} {
		if token == "" || !strings.Contains(out, want) {
			t.Errorf("runners register lacks %q:\n%s", want, out)
		}
	}
	// The token is shown once: never again by show or list.
	for _, args := range [][]string{{"runners", "show", "edge-1"}, {"runners", "show", "edge-1", "--json"}, {"runners", "list"}, {"runners", "list", "--json"}} {
		if out := e.ok(args...); strings.Contains(out, silo.RunnerTokenPrefix) {
			t.Errorf("silo %s shows a runner token:\n%s", strings.Join(args, " "), out)
		}
	}

	// --json: the fields of SPEC §5, the token this once; defaults filled in.
	m := e.runnerFields("register", "--provider", "local", "--name", "edge-2", "--storage-path", "file://"+root+"-2/")
	hasKeys(t, "runners register --json", m, "name", "provider", "status", "storage_path", "vcpu", "memory_gb", "status_reason", "token")
	if m["name"] != "edge-2" || m["provider"] != "local" || m["status"] != "registering" || m["storage_path"] != "file://"+root+"-2" ||
		m["vcpu"] != float64(silo.DefaultLocalVCPU) || m["memory_gb"] != float64(silo.DefaultLocalMemoryGB) ||
		!strings.HasPrefix(m["token"].(string), silo.RunnerTokenPrefix) || m["status_reason"] == "" {
		t.Errorf("runners register --json = %v", m)
	}
	if _, ok := m["memory_mb"]; ok {
		t.Errorf("a local runner has memory_mb: %v", m)
	}
	m = e.runnerFields("show", "edge-1", "--json")
	hasKeys(t, "runners show --json", m, "name", "provider", "status", "storage_path", "vcpu", "memory_gb", "status_reason")
	if _, ok := m["token"]; ok || m["vcpu"] != 1.0 || m["memory_gb"] != 1.0 || m["storage_path"] != "file://"+root {
		t.Errorf("runners show --json = %v", m)
	}
	var list []map[string]any
	e.json(&list, "runners", "list")
	if len(list) != 2 {
		t.Fatalf("runners list --json = %v", list)
	}
	for _, r := range list {
		hasKeys(t, "runners list --json", r, "name", "provider", "status", "storage_path", "vcpu", "memory_gb", "status_reason")
	}

	out = e.ok("runners", "list")
	for _, re := range []string{
		`(?m)^NAME\s+PROVIDER\s+STATUS\s+VCPU\s+MEMORY\s+STORAGE\s+LAST HEARTBEAT$`,
		`(?m)^edge-1\s+local\s+registering\s+1\s+1 GB\s+file://` + regexp.QuoteMeta(root) + `\s+never$`,
		`(?m)^edge-2\s+local\s+registering\s+2\s+4 GB\s+file://\S+-2\s+never$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("runners list does not match %s:\n%s", re, out)
		}
	}
	out = e.ok("runners", "show", "edge-1")
	for _, re := range []string{`(?m)^name:\s+edge-1$`, `(?m)^provider:\s+local$`, `(?m)^status:\s+registering$`, `(?m)^reason:\s+waiting for the agent`,
		`(?m)^storage_path:\s+file://` + regexp.QuoteMeta(root) + `$`, `(?m)^vcpu:\s+1$`, `(?m)^memory_gb:\s+1$`, `(?m)^last heartbeat:\s+never$`, `(?m)^registered:\s.* by admin@example\.org$`,
		`(?m)^policy:\s+none pinned: the server's privacy controls are the floor$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("runners show does not match %s:\n%s", re, out)
		}
	}

	// Edit: flags given replace the stored fields, the rest stay.
	out = e.ok("runners", "edit", "edge-1", "--vcpu", "3")
	if !regexp.MustCompile(`(?m)^vcpu:\s+3$`).MatchString(out) || !regexp.MustCompile(`(?m)^memory_gb:\s+1$`).MatchString(out) {
		t.Fatalf("runners edit --vcpu 3:\n%s", out)
	}
	edits := writeJSONFile(t, "edit.json", map[string]any{"vcpu": 4, "memory_gb": 2})
	if m := e.runnerFields("edit", "edge-1", "-f", edits, "--vcpu", "5"); m["vcpu"] != 5.0 || m["memory_gb"] != 2.0 {
		t.Errorf("runners edit -f with --vcpu = %v", m)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		errOut string
	}{
		{[]string{"runners", "edit", "edge-1"}, 2, "nothing to change"},
		{[]string{"runners", "edit", "edge-1", "--storage-path", "file:///elsewhere"}, 1, "silo: storage_path cannot change once a runner is registered"},
		{[]string{"runners", "edit", "edge-1", "--vcpu", "999"}, 1, "silo: vcpu 999 is out of range"},
		{[]string{"runners", "edit", "nosuch", "--vcpu", "2"}, 1, `silo: no task runner named "nosuch"`},
	} {
		r := e.run("", tc.args...)
		check(t, tc.args, r, tc.code, nil, []string{tc.errOut})
	}
	if m := e.runnerFields("show", "edge-1"); m["vcpu"] != 5.0 || m["storage_path"] != "file://"+root {
		t.Errorf("refused edits changed the runner: %v", m)
	}
}

// TestRunnersRegisterErrors checks that mistakes are one clear line (exit 1)
// or a usage error (exit 2), and JSON naming the field with --json.
func TestRunnersRegisterErrors(t *testing.T) {
	e, _ := newLiveEnv(t)
	e.ok("runners", "register", "--provider", "local", "--name", "taken", "--storage-path", "file:///srv/taken")
	unknown := writeJSONFile(t, "runner.json", map[string]any{"name": "edge-9", "provider": "local", "storage_path": "file:///srv/e", "colour": "blue"})
	wrongType := writeJSONFile(t, "typed.json", map[string]any{"name": "edge-9", "provider": "local", "storage_path": "file:///srv/e", "vcpu": "eight"})
	notJSON := filepath.Join(t.TempDir(), "runner.yaml")
	os.WriteFile(notJSON, []byte("name: edge-9\n"), 0o600)

	for _, tc := range []struct {
		args   []string
		code   int
		errOut string
		field  string // with --json
	}{
		{[]string{"--provider", "local", "--name", "Edge_1", "--storage-path", "file:///srv/e"}, 1, `silo: runner name "Edge_1" may contain only lowercase letters, digits and dashes`, "name"},
		{[]string{"--provider", "local", "--name", "ab", "--storage-path", "file:///srv/e"}, 1, `runner name "ab" is 2 characters`, "name"},
		{[]string{"--provider", "local", "--name", "taken", "--storage-path", "file:///srv/e"}, 1, `silo: a task runner named "taken" already exists`, "name"},
		{[]string{"--provider", "local", "--name", "edge-9", "--storage-path", "/srv/e"}, 1, `silo: storage_path "/srv/e" must be a file:/// URL`, "storage_path"},
		{[]string{"--provider", "local", "--name", "edge-9", "--storage-path", "file:///srv/../etc"}, 1, "must not contain .. segments", "storage_path"},
		{[]string{"--provider", "local", "--name", "edge-9"}, 1, "storage_path is required for local runners", "storage_path"},
		{[]string{"--provider", "local", "--name", "edge-9", "--storage-path", "file:///srv/e", "--region", "eu-west-1"}, 1, "region applies only to aws and azure runners", "region"},
		{[]string{"--provider", "gcp", "--name", "edge-9"}, 1, `silo: unknown provider "gcp": use one of local, aws, azure`, "provider"},
		{[]string{"--provider", "aws", "--name", "edge-9", "--storage-path", "s3://my-bucket", "--region", "eu-west-1",
			"--provisioner-role-arn", "arn:aws:iam::123456789012:role/p", "--runtime-role-arn", "arn:aws:iam::123456789012:role/r"}, 1, ".silo", "storage_path"},
		{[]string{"-f", unknown}, 1, `unknown runner field "colour"`, "colour"},
		{[]string{"-f", wrongType}, 1, "must be a number, not string", "vcpu"},
		{[]string{"-f", notJSON}, 1, "is not a JSON object of runner fields", ""},
		{[]string{"-f", filepath.Join(t.TempDir(), "missing.json")}, 1, "missing.json", ""},
	} {
		args := append([]string{"runners", "register"}, tc.args...)
		r := e.run("", args...)
		check(t, args, r, tc.code, nil, []string{tc.errOut})
		if strings.Count(r.err, "\n") != 1 || !strings.HasPrefix(r.err, "silo: ") || r.out != "" {
			t.Errorf("silo %s: error is not one line on stderr:\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.out, r.err)
		}
		r = e.run("", append(args, "--json")...)
		if r.code != tc.code || r.out != "" {
			t.Errorf("silo %s --json: exit %d, stdout %q", strings.Join(args, " "), r.code, r.out)
			continue
		}
		if jerr := jsonError(t, r.err); jerr.Code != silo.EINVALID || jerr.Field != tc.field || !strings.Contains(jerr.Message, strings.TrimPrefix(tc.errOut, "silo: ")) {
			t.Errorf("silo %s --json: error %+v, want code invalid, field %q", strings.Join(args, " "), jerr, tc.field)
		}
	}

	// Mistakes in the command line itself: exit 2 with the usage.
	for _, tc := range []struct {
		args   []string
		errOut string
	}{
		{[]string{"runners", "register", "--name", "edge-9", "--storage-path", "file:///srv/e"}, "silo runners register: --name and --provider (local, aws or azure) are required"},
		{[]string{"runners", "register", "--provider", "local"}, "--name and --provider"},
		{[]string{"runners", "register", "--provider", "local", "--name", "edge-9", "--colour", "blue"}, "flag provided but not defined: -colour"},
		{[]string{"runners", "register", "--provider", "local", "--name", "edge-9", "--vcpu", "many"}, `invalid value "many" for flag -vcpu`},
		{[]string{"runners", "show"}, "silo runners show: missing NAME"},
		{[]string{"runners", "frob"}, `unknown subcommand "frob"`},
	} {
		r := e.run("", tc.args...)
		check(t, tc.args, r, 2, nil, []string{tc.errOut, "Usage: silo runners SUBCOMMAND"})
		r = e.run("", append(tc.args, "--json")...)
		if jerr := jsonError(t, r.err); r.code != 2 || jerr.Code != silo.EINVALID || !strings.Contains(jerr.Message, tc.errOut) {
			t.Errorf("silo %s --json: %d %+v", strings.Join(tc.args, " "), r.code, jerr)
		}
	}
	var list []silo.Runner
	e.json(&list, "runners", "list")
	if len(list) != 1 {
		t.Fatalf("refused registrations left runners behind: %+v", list)
	}
	check(t, []string{"show missing"}, e.run("", "runners", "show", "nosuch"), 1, nil, []string{`silo: no task runner named "nosuch": see 'silo runners list'`})
	if r := e.run("", "runners", "show", "nosuch", "--json"); r.code != 1 || jsonError(t, r.err).Code != silo.ENOTFOUND {
		t.Fatalf("show missing --json: %d %s", r.code, r.err)
	}
}

// TestRunnersCloud registers aws and azure runners. Provisioning their
// storage may not be wired (or reachable) here, so it checks only what
// registration itself guarantees: the fields, the defaults, and that no
// secret and no token is ever shown.
func TestRunnersCloud(t *testing.T) {
	e, _ := newLiveEnv(t)
	var ws silo.Workspace
	e.json(&ws, "workspace", "show")

	// AWS from a file, one field overridden by a flag.
	file := writeJSONFile(t, "runner.json", map[string]any{
		"name": "cloud-aws", "provider": "aws", "region": "eu-west-1", "vcpu": 4,
		"provisioner_role_arn": "arn:aws:iam::123456789012:role/silo-provisioner",
		"runtime_role_arn":     "arn:aws:iam::123456789012:role/silo/runtime",
		"private_subnets":      []string{"subnet-1a2b3c4d"}, "public_subnets": []string{"subnet-0a1b2c3d"},
		"vpc_id": "vpc-0a1b2c3d4e5f67890", "client_security_group": "sg-0a1b2c3d", "server_security_group": "sg-1a2b3c4d",
	})
	// The token is printed this once: the deployment takes it.
	r := e.run("", "runners", "register", "-f", file, "--region", "eu-central-1", "--json")
	if r.code == 0 {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.out), &m); err != nil {
			t.Fatalf("register aws --json: %v\n%s", err, r.out)
		}
		if tok, _ := m["token"].(string); !strings.HasPrefix(tok, silo.RunnerTokenPrefix) {
			t.Errorf("register of an aws runner printed no token: %v", m)
		}
	} else if strings.Count(r.err, "\n") != 1 {
		t.Errorf("register aws failed with more than one line: %s", r.err)
	}
	m := e.runnerFields("show", "cloud-aws", "--json")
	hasKeys(t, "aws runners show --json", m, "name", "provider", "status", "storage_path", "vcpu", "memory_gb", "status_reason")
	want := map[string]any{"name": "cloud-aws", "provider": "aws", "region": "eu-central-1", "vcpu": 4.0, "memory_gb": float64(silo.DefaultAWSMemoryGB),
		"storage_path": "s3://" + ws.Name + "-cloud-aws.silo", "vpc_id": "vpc-0a1b2c3d4e5f67890"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("aws runner %s = %v, want %v", k, m[k], v)
		}
	}
	if st := silo.RunnerStatus(m["status"].(string)); !slices.Contains([]silo.RunnerStatus{silo.RunnerProvisioning, silo.RunnerFailed, silo.RunnerRegistering}, st) {
		t.Errorf("aws runner status right after registration = %s", st)
	}
	if _, ok := m["token"]; ok {
		t.Errorf("aws runners show --json has a token: %v", m)
	}
	check(t, []string{"start aws"}, e.run("", "runners", "start", "cloud-aws"), 1, nil, []string{"silo: runner cloud-aws is a aws runner: only local runners can be started by the server"})

	// Azure with its secrets: stored, never shown.
	const spSecret, rtSecret = "sp~Azure-SECRET-value-1", "rt~Azure-SECRET-value-2"
	azure := []string{"--provider", "azure", "--name", "azure-eu", "--region", "West Europe", "--resource-group", "silo-runners",
		"--service-principal-id", "11111111-2222-3333-4444-555555555555", "--runtime-service-principal-id", "11111111-2222-3333-4444-666666666666",
		"--subscription-id", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "--tenant-id", "ffffffff-0000-1111-2222-333333333333",
		"--service-principal-secret", spSecret, "--runtime-service-principal-secret", rtSecret}
	outputs := []string{}
	r = e.run("", append([]string{"runners", "register"}, azure...)...)
	outputs = append(outputs, r.err)
	check(t, []string{"register azure"}, r, 0, []string{"Its token (shown once", silo.RunnerTokenPrefix, "silo runners bundle azure-eu -o azure-eu.zip --server-url URL"}, nil)
	for _, secret := range []string{spSecret, rtSecret} {
		if strings.Contains(r.out, secret) {
			t.Fatalf("register shows a secret:\n%s", r.out)
		}
	}
	m = e.runnerFields("show", "azure-eu", "--json")
	hasKeys(t, "azure runners show --json", m, "name", "provider", "status", "storage_path", "vcpu", "memory_mb", "status_reason")
	if m["region"] != "westeurope" || m["storage_path"] != "azureeustorage" || m["vcpu"] != float64(silo.DefaultAzureVCPU) || m["memory_mb"] != float64(silo.DefaultAzureMemoryMB) {
		t.Errorf("azure runner = %v", m)
	}
	if _, ok := m["memory_gb"]; ok {
		t.Errorf("an azure runner has memory_gb: %v", m)
	}
	if _, ok := m["token"]; ok {
		t.Errorf("azure runners show --json has a token: %v", m)
	}
	secretNames := []string{"runtime_service_principal_secret", "service_principal_secret"}
	var shown silo.Runner
	e.json(&shown, "runners", "show", "azure-eu")
	if !slices.Equal(shown.SecretsSet, secretNames) {
		t.Errorf("runners show --json: secrets_set = %v, want %v", shown.SecretsSet, secretNames)
	}
	var list []silo.Runner
	e.json(&list, "runners", "list")
	for _, r := range list {
		if r.Name == "azure-eu" && !slices.Equal(r.SecretsSet, secretNames) {
			t.Errorf("runners list --json: secrets_set = %v, want %v", r.SecretsSet, secretNames)
		}
	}
	if out := e.ok("runners", "show", "azure-eu"); !regexp.MustCompile(`(?m)^secrets set:\s+runtime_service_principal_secret, service_principal_secret$`).MatchString(out) {
		t.Errorf("runners show does not say which secrets are set:\n%s", out)
	}

	// Memory may go down, never up.
	r = e.run("", "runners", "edit", "azure-eu", "--memory-mb", "32768")
	check(t, []string{"edit", "memory up"}, r, 1, nil, []string{"silo: memory_mb can only be decreased after registration (it is 16384, you asked for 32768)"})
	outputs = append(outputs, r.out, r.err)
	r = e.run("", "runners", "edit", "azure-eu", "--memory-mb", "32768", "--json")
	if jerr := jsonError(t, r.err); r.code != 1 || jerr.Field != "memory_mb" || jerr.Code != silo.EINVALID {
		t.Errorf("edit memory up --json: %d %+v", r.code, jerr)
	}
	r = e.run("", "runners", "edit", "azure-eu", "--memory-mb", "8192", "--json")
	outputs = append(outputs, r.out, r.err)
	var edited silo.Runner
	if err := json.Unmarshal([]byte(r.out), &edited); r.code != 0 || err != nil || edited.MemoryMB != 8192 {
		t.Fatalf("edit memory down: %d %s %s", r.code, r.out, r.err)
	}
	if !slices.Equal(edited.SecretsSet, secretNames) {
		t.Errorf("an edit that gave no secrets lost them: secrets_set = %v", edited.SecretsSet)
	}
	r = e.run("", "runners", "edit", "azure-eu", "--memory-mb", "1024", "--service-principal-secret", "x", "--region", "mars")
	check(t, []string{"edit bad region"}, r, 1, nil, []string{"mars"})
	outputs = append(outputs, r.out, r.err)
	// A cloud runner's bundle needs the URL its network reaches the server
	// at: this test server is on loopback, so without one it is refused.
	zipPath := filepath.Join(t.TempDir(), "azure-eu.zip")
	r = e.run("", "runners", "bundle", "azure-eu", "-o", zipPath)
	check(t, []string{"bundle of a loopback server"}, r, 1, nil, []string{"cannot reach this server at http://127.0.0.1:", "--public-url", "--server-url URL"})
	if _, err := os.Stat(zipPath); err == nil {
		t.Errorf("a refused bundle was written")
	}
	// The deployment bundle holds no secret either, and its README says
	// where the token came from.
	outputs = append(outputs, e.ok("runners", "bundle", "azure-eu", "-o", zipPath, "--server-url", "https://silo.example.org"))
	contents := zipContents(t, zipPath)
	outputs = append(outputs, contents...)
	if all := strings.Join(contents, "\n"); !strings.Contains(all, "over HTTPS, to\nhttps://silo.example.org") || !strings.Contains(all, "printed once, when the runner was registered") {
		t.Errorf("the bundle does not carry the server URL given, or its README misstates the token:\n%.1500s", all)
	}
	check(t, []string{"bundle without -o"}, e.run("", "runners", "bundle", "azure-eu"), 2, nil, []string{"-o FILE is required"})
	for _, args := range [][]string{
		{"runners", "provision", "azure-eu"}, {"runners", "provision", "azure-eu", "--json"},
		{"runners", "show", "azure-eu"}, {"runners", "show", "azure-eu", "--json"},
		{"runners", "list"}, {"runners", "list", "--json"}, {"runners", "list", "--all", "--json"},
		{"audit", "list", "--json"},
	} {
		outputs = append(outputs, e.ok(args...))
	}
	for _, out := range outputs {
		for _, secret := range []string{spSecret, rtSecret, "SECRET-value"} {
			if strings.Contains(out, secret) {
				t.Fatalf("an output shows a secret:\n%s", out)
			}
		}
		if strings.Contains(out, silo.RunnerTokenPrefix) {
			t.Fatalf("an output shows a runner token:\n%s", out)
		}
	}
}

// TestRunnersLocalLifecycle has the server start a local runner as a child
// process and walks it through the CLI: online, check, tasks, logs, stop,
// a new token, deregister.
func TestRunnersLocalLifecycle(t *testing.T) {
	e, rs := newLiveEnv(t)
	root := filepath.Join(e.dir, "runners", "edge-1") // created by the launcher
	e.ok("runners", "register", "--provider", "local", "--name", "edge-1", "--storage-path", "file://"+root, "--vcpu", "2", "--memory-gb", "1")

	check(t, []string{"tasks none"}, e.run("", "runners", "tasks", "edge-1"), 0, []string{"Runner edge-1 has had no tasks yet. Try: silo runners check edge-1"}, nil)
	check(t, []string{"logs none"}, e.run("", "runners", "logs", "edge-1"), 0, []string{"No task logs from edge-1 yet."}, nil)
	check(t, []string{"stop not started"}, e.run("", "runners", "stop", "edge-1"), 1, nil, []string{"silo: runner edge-1 is not running under this server"})
	// A runner that never connected cannot run diagnostics: said at once,
	// with how to start it, and no task is left in its queue.
	check(t, []string{"check never connected"}, e.run("", "runners", "check", "edge-1"), 1, nil,
		[]string{"silo: runner edge-1 is not online (registering: waiting for the agent to connect", "silo runners start edge-1"})
	check(t, []string{"tasks after check"}, e.run("", "runners", "tasks", "edge-1"), 0, []string{"has had no tasks yet"}, nil)

	check(t, []string{"start"}, e.run("", "runners", "start", "edge-1"), 0, []string{"Runner edge-1 is starting under the server"}, nil)
	check(t, []string{"start twice"}, e.run("", "runners", "start", "edge-1"), 1, nil, []string{"silo: runner edge-1 is already running under this server"})
	r := e.waitStatus("edge-1", silo.RunnerOnline)
	if r.LastHeartbeat == nil || r.AgentVCPU != 2 || r.AgentMemoryMB != 1024 || r.AgentVersion != silo.Version {
		t.Errorf("online runner = %+v", r)
	}
	if _, err := os.Stat("/proc/self/cmdline"); err == nil && len(processesWith(childMarker(rs.URL))) == 0 {
		t.Errorf("no child runner process of %s", rs.URL)
	}
	out := e.ok("runners", "show", "edge-1")
	if !regexp.MustCompile(`(?m)^agent:\s+version \S+, 2 vCPU, 1024 MB$`).MatchString(out) || strings.Contains(out, "last heartbeat:  never") {
		t.Errorf("runners show of an online runner:\n%s", out)
	}

	out = e.ok("runners", "check", "edge-1", "--wait", "30s")
	var diag struct {
		StorageRoot     string `json:"storage_root"`
		StorageWritable bool   `json:"storage_writable"`
		VCPU            int    `json:"vcpu"`
		MemoryMB        int    `json:"memory_mb"`
	}
	body, ok := strings.CutPrefix(out, "Runner edge-1 is healthy:\n")
	if err := json.Unmarshal([]byte(body), &diag); !ok || err != nil || diag.StorageRoot != root || !diag.StorageWritable || diag.VCPU != 2 || diag.MemoryMB != 1024 {
		t.Fatalf("runners check:\n%s", out)
	}
	var task silo.Task
	e.json(&task, "runners", "check", "edge-1", "--wait", "30s")
	if task.Status != silo.TaskSucceeded || task.Type != silo.TaskDiagnostics || task.Runner != "edge-1" {
		t.Fatalf("runners check --json = %+v", task)
	}

	out = e.ok("runners", "tasks", "edge-1")
	if !regexp.MustCompile(`(?m)^ID\s+TYPE\s+STATUS\s+CREATED\s+FINISHED\s+ERROR$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+task.ID+`\s+diagnostics\s+succeeded\s.*\s-$`).MatchString(out) || strings.Count(out, "succeeded") != 2 {
		t.Errorf("runners tasks:\n%s", out)
	}
	out = e.ok("runners", "logs", "edge-1")
	for _, re := range []string{
		`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO  ` + task.ID + ` task started type=diagnostics`,
		`(?m)^.* INFO  ` + task.ID + ` storage root checked root=` + regexp.QuoteMeta(root) + ` writable=true`,
		`(?m)^.* INFO  ` + task.ID + ` task succeeded$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("runners logs does not match %s:\n%s", re, out)
		}
	}
	var lines []silo.LogLine
	e.json(&lines, "runners", "logs", "edge-1", "--task", task.ID)
	if len(lines) != 3 || lines[0].TaskID != task.ID {
		t.Errorf("runners logs --task %s --json = %+v", task.ID, lines)
	}
	check(t, []string{"logs other task"}, e.run("", "runners", "logs", "edge-1", "--task", "task_nope"), 1, nil, []string{"silo: runner edge-1 has no task task_nope"})

	// Stopping ends the child process (stop waits for it).
	check(t, []string{"stop"}, e.run("", "runners", "stop", "edge-1"), 0, []string{"Runner edge-1 was stopped (online until the server notices the missed heartbeats)."}, nil)
	if pids := processesWith(childMarker(rs.URL)); len(pids) > 0 {
		t.Errorf("child runner processes %v still run after stop", pids)
	}
	check(t, []string{"stop again"}, e.run("", "runners", "stop", "edge-1"), 1, nil, []string{"is not running under this server"})
	// Stopped but not yet noticed (still online): a check that gets no
	// answer gives up after --wait and cancels its task.
	r = e.waitStatus("edge-1", silo.RunnerOnline)
	res := e.run("", "runners", "check", "edge-1", "--wait", "1s")
	check(t, []string{"check unanswered"}, res, 1, nil, []string{"no result from runner edge-1 after 1s: task task_", "is cancelled"})
	var tasks []silo.Task
	e.json(&tasks, "runners", "tasks", "edge-1")
	if len(tasks) == 0 || tasks[0].Type != silo.TaskDiagnostics || tasks[0].Status != silo.TaskCancelled {
		t.Errorf("the unanswered check's task = %+v, want a cancelled diagnostics task", tasks[:min(len(tasks), 1)])
	}

	// A new token, shown once; the old one stops working.
	out = e.ok("runners", "token", "edge-1")
	tok := regexp.MustCompile(silo.RunnerTokenPrefix + `\S+`).FindString(out)
	if tok == "" || !strings.Contains(out, "Runner edge-1 (online) has a new token.") || !strings.Contains(out, "shown once; the old one no longer works") {
		t.Fatalf("runners token:\n%s", out)
	}
	rc := client.New(e.url, tok)
	if _, err := rc.Heartbeat(context.Background(), silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); err != nil {
		t.Fatalf("heartbeat with the new token: %v", err)
	}
	m := e.runnerFields("token", "edge-1", "--json")
	if tok2, _ := m["token"].(string); !strings.HasPrefix(tok2, silo.RunnerTokenPrefix) || tok2 == tok {
		t.Fatalf("runners token --json = %v", m)
	}
	if _, err := rc.Heartbeat(context.Background(), silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("heartbeat with a replaced token: %v", err)
	}

	// Started again, then deregistered: the child stops with it.
	restarted := time.Now()
	e.ok("runners", "start", "edge-1")
	waitFor(t, 30*time.Second, "edge-1 back online", func() bool {
		var r silo.Runner
		e.json(&r, "runners", "show", "edge-1")
		return r.Status == silo.RunnerOnline && r.LastHeartbeat != nil && r.LastHeartbeat.After(restarted)
	})
	check(t, []string{"deregister"}, e.run("", "runners", "deregister", "edge-1"), 0, []string{"Runner edge-1 is deregistered; its token no longer works."}, nil)
	waitNoProcesses(t, childMarker(rs.URL))
	check(t, []string{"show deregistered"}, e.run("", "runners", "show", "edge-1"), 1, nil, []string{`silo: no task runner named "edge-1"`})
	check(t, []string{"deregister again"}, e.run("", "runners", "deregister", "edge-1"), 1, nil, []string{`silo: no task runner named "edge-1"`})
	var all []silo.Runner
	e.json(&all, "runners", "list", "--all")
	if len(all) != 1 || all[0].Status != silo.RunnerDeregistered {
		t.Fatalf("runners list --all after deregister = %+v", all)
	}
	check(t, []string{"list after deregister"}, e.run("", "runners", "list"), 0, []string{"No task runners yet."}, nil)
}

// fakeClock is a settable clock shared by a server and its store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// agentEnv is a server on a settable clock for agents run as separate
// processes: the test decides when their heartbeats are overdue.
type agentEnv struct {
	url   string
	srv   *server.Server
	admin *client.Client
	clock *fakeClock
}

func newAgentEnv(t *testing.T) *agentEnv {
	t.Helper()
	ctx := context.Background()
	clock := &fakeClock{t: time.Now().UTC()}
	db := sqlstore.New(filepath.Join(t.TempDir(), "silo.db"))
	db.Clock = clock.Now
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.AddRoutes(ui.New(srv)...)
	srv.Clock = clock.Now
	srv.Logger = slog.New(slog.DiscardHandler)
	// Agents heartbeat this often (the server tells them), so one notices
	// its deregistration quickly.
	srv.HeartbeatInterval = 500 * time.Millisecond
	if _, _, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	login, err := client.New(ts.URL, "").Login(ctx, client.LoginRequest{Email: adminEmail, Password: adminPassword})
	if err != nil {
		t.Fatal(err)
	}
	return &agentEnv{url: ts.URL, srv: srv, admin: client.New(ts.URL, login.Token), clock: clock}
}

// agentProcess is `silo runner` running as a separate process.
type agentProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

// startAgent runs this test binary as `silo runner ARGS`.
func startAgent(t *testing.T, args ...string) *agentProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"runner"}, args...)...)
	cmd.Env = append(os.Environ(), asCLI+"=1", "SILO_RUNNER_TOKEN=", "SILO_LOG_LEVEL=info")
	p := &agentProcess{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exited waits (bounded) for the process to end and returns its exit code.
func (p *agentProcess) exited(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		t.Fatalf("silo runner did not exit within 20s; stderr:\n%s", p.stderr)
		return -1
	}
}

// TestRunnerProcess runs the agent as a real separate process: it comes
// online with the resources given, stops cleanly on SIGTERM (and the server
// then marks it offline), and exits non-zero when its token is refused.
func TestRunnerProcess(t *testing.T) {
	a := newAgentEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := a.admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "edge-1", Provider: silo.ProviderLocal, StoragePath: "file://" + dir, VCPU: 1, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A task queued before the agent starts: it claims it right after it
	// connects. (Queued while the agent runs, a task claimed just as a
	// heartbeat is on its way would be failed as "lost" by the server.)
	task, err := a.admin.QueueDiagnostics(ctx, "edge-1", 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--server", a.url, "--token", reg.Token, "--storage-root", dir, "--vcpu", "1", "--memory", "256MiB"}
	p := startAgent(t, args...)
	var r *silo.Runner
	waitFor(t, 30*time.Second, "edge-1 online", func() bool {
		if r, err = a.admin.GetRunner(ctx, "edge-1"); err != nil {
			t.Fatal(err)
		}
		return r.Status == silo.RunnerOnline
	})
	if r.AgentVCPU != 1 || r.AgentMemoryMB != 256 {
		t.Errorf("agent reported %d vCPU, %d MB; want 1, 256", r.AgentVCPU, r.AgentMemoryMB)
	}
	// The task ran in the process.
	waitFor(t, 30*time.Second, "diagnostics done", func() bool {
		ts, err := a.admin.RunnerTasks(ctx, "edge-1")
		if err != nil {
			t.Fatal(err)
		}
		if st := ts[0].Status; st != silo.TaskQueued && st != silo.TaskRunning && st != silo.TaskSucceeded {
			t.Fatalf("diagnostics task %s: %s", st, ts[0].Error)
		}
		return ts[0].ID == task.ID && ts[0].Status == silo.TaskSucceeded
	})

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exited(t); code != 0 || !strings.Contains(p.stderr.String(), "runner stopped") {
		t.Fatalf("after SIGTERM: exit %d, stderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "runner connected") || !strings.Contains(p.stderr.String(), "memory_mb=256") {
		t.Errorf("agent log:\n%s", p.stderr)
	}
	// Three heartbeat intervals later the server marks it offline.
	a.clock.Add(3*a.srv.HeartbeatInterval + time.Second)
	if err := a.srv.CheckRunners(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ = a.admin.GetRunner(ctx, "edge-1"); r.Status != silo.RunnerOffline || !strings.Contains(r.StatusReason, "no heartbeat since") {
		t.Fatalf("stopped runner = %s %q, want offline", r.Status, r.StatusReason)
	}

	if r.Policy != nil {
		t.Errorf("a runner without --policy shows policy %+v", r.Policy)
	}
	// Restarted with the data owner's policy, it is online again and the
	// server shows the policy it pins; deregistered, it stops by itself.
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(`{"rules": [{"name": "all", "prefix": "file://`+dir+`/", "min_records_per_aggregate": 50}]}`), 0o600)
	p = startAgent(t, append(args, "--policy", policy)...)
	waitFor(t, 30*time.Second, "edge-1 online again", func() bool {
		r, _ = a.admin.GetRunner(ctx, "edge-1")
		return r.Status == silo.RunnerOnline && r.Policy != nil
	})
	if len(r.Policy.Rules) != 1 || r.Policy.Rules[0].MinRecordsPerAggregate != 50 || !strings.HasPrefix(r.Policy.Digest, "sha256:") {
		t.Errorf("pinned policy = %+v", r.Policy)
	}
	if _, err := a.admin.DeregisterRunner(ctx, "edge-1"); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t); code != 1 || !strings.Contains(p.stderr.String(), "refused") {
		t.Fatalf("after deregistration: exit %d, stderr:\n%s", code, p.stderr)
	}
	// A deregistered runner's token is refused at once, not retried.
	p = startAgent(t, args...)
	if code := p.exited(t); code != 1 || !strings.Contains(p.stderr.String(), "silo runner: the server refused the runner token") {
		t.Fatalf("with a deregistered token: exit %d, stderr:\n%s", code, p.stderr)
	}
	if n := strings.Count(p.stderr.String(), "retrying"); n > 0 {
		t.Errorf("a refused token was retried:\n%s", p.stderr)
	}
}

// TestRunnerFlags covers the mistakes `silo runner` finds before it
// connects: exit 2 with a message naming the flag.
func TestRunnerFlags(t *testing.T) {
	t.Setenv("SILO_SERVER", "")
	t.Setenv("SILO_RUNNER_TOKEN", "")
	t.Setenv("SILO_MEMORY", "")
	t.Setenv("SILO_VCPU", "")
	t.Setenv("SILO_LOG_LEVEL", "")
	server := []string{"--server", "http://127.0.0.1:1"}
	badPolicy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(badPolicy, []byte(`{"rules": [{"prefix": "file:///srv/a/", "min_record": 5}]}`), 0o600)
	for _, tc := range []struct {
		args   []string
		code   int
		errOut string
	}{
		{server, 2, "--token is required: the runner's token from 'silo runners register'"},
		{[]string{"--token", "silor_x"}, 2, "--server is required"},
		{append([]string{"--token", "silor_x", "--memory", "lots"}, server...), 2, `silo runner: --memory: "lots" is not a size such as 4GiB or 512MiB`},
		{append([]string{"--token", "silor_x", "--memory", "0"}, server...), 2, "--memory: \"0\" is not a size"},
		{append([]string{"--token", "silor_x", "--memory", "1.5GiB"}, server...), 2, "--memory: \"1.5GiB\" is not a size"},
		{append([]string{"--token", "silor_x", "--memory", "-1G"}, server...), 2, "--memory: \"-1G\" is not a size"},
		{append([]string{"--token", "silor_x", "--memory", "GiB"}, server...), 2, "--memory: \"GiB\" is not a size"},
		{append([]string{"--token", "silor_x", "--vcpu", "two"}, server...), 2, `--vcpu "two" must be a whole number`},
		{append([]string{"--token", "silor_x", "--vcpu", "-1"}, server...), 2, `--vcpu "-1" must be a whole number`},
		{append([]string{"--token", "silor_x", "--frob"}, server...), 2, "flag provided but not defined: -frob"},
		{append([]string{"--token", "silor_x", "extra"}, server...), 2, `unexpected argument "extra"`},
		{append([]string{"--token", "silor_x", "--ca-file", "/nonexistent/ca.pem"}, server...), 2, "read CA bundle"},
		{append([]string{"--token", "silor_x", "--policy", "/nonexistent/policy.json"}, server...), 2, "silo runner: --policy: policy /nonexistent/policy.json"},
		{append([]string{"--token", "silor_x", "--policy", badPolicy}, server...), 2, `--policy: policy ` + badPolicy + `: unknown key "min_record"`},
		{append([]string{"--token", "silor_x", "--policy", "file:///nonexistent/policy.json"}, server...), 2, "silo runner: --policy: policy /nonexistent/policy.json"},
		{append([]string{"--token", "silor_x", "--policy", "s3://bank/policy.json"}, server...), 2, `silo runner: --policy: policy s3://bank/policy.json: URI "s3://bank/policy.json": bucket "bank" must end in ".silo"`},
		{append([]string{"--token", "silor_x", "--storage-root", "azure://acct"}, server...), 2, "names no container, where the runner keeps its privacy record"},
		{[]string{"-h"}, 0, ""},
	} {
		args := append([]string{"runner"}, tc.args...)
		var out, errb syncBuffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
		check(t, args, result{out.String(), errb.String(), code}, tc.code, nil, []string{tc.errOut})
	}
	t.Setenv("SILO_MEMORY", "many")
	var out, errb syncBuffer
	if code := run(context.Background(), []string{"runner", "--server", "http://127.0.0.1:1", "--token", "silor_x"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), `--memory: "many"`) {
		t.Errorf("SILO_MEMORY=many: exit %d, %s", code, errb.String())
	}

	for in, want := range map[string]int{"4GiB": 4096, "4G": 4096, "4gb": 4096, " 2 GiB ": 2048, "512MiB": 512, "512M": 512, "512mb": 512, "300": 300} {
		if got, err := parseMemoryMB(in); err != nil || got != want {
			t.Errorf("parseMemoryMB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// zipContents returns the text of every file in the zip at path.
func zipContents(t *testing.T, path string) []string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("bundle %s: %v", path, err)
	}
	defer zr.Close()
	var texts []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	if len(texts) == 0 {
		t.Fatalf("bundle %s is empty", path)
	}
	return texts
}

// TestServerLocalRunnersRoot: the server refuses, at start, a folder for
// runners that overlaps its own files, and says why.
func TestServerLocalRunnersRoot(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, root := range []string{data, filepath.Join(data, "runners"), dir} {
		var out, errb syncBuffer
		code := run(context.Background(), []string{"server", "--addr", "127.0.0.1:0", "--data", data, "--local-runners-root", root}, strings.NewReader(""), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "--local-runners-root "+root+" overlaps") || !strings.Contains(errb.String(), "the server's own") {
			t.Errorf("--local-runners-root %s: exit %d, %s", root, code, errb.String())
		}
	}
	rs, err := startServer(context.Background(), serverConfig{Addr: "127.0.0.1:0", DataDir: data, LocalRunnersRoot: filepath.Join(dir, "runners"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Shutdown()
	if rs.Server.LocalRunnersRoot != filepath.Join(dir, "runners") {
		t.Errorf("the server's folder for runners is %q", rs.Server.LocalRunnersRoot)
	}
}
