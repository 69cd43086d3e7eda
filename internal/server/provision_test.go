package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/provision"
	"github.com/silofl/silo/internal/testsvc"
)

const spSecret, runtimeSecret = "sp-Secret-value-1234", "runtime-Secret-value-5678"

func awsSpec(name string) silo.RunnerSpec {
	return silo.RunnerSpec{Name: name, Provider: silo.ProviderAWS, Region: "eu-west-1",
		ProvisionerRoleARN: "arn:aws:iam::123456789012:role/silo-provisioner", RuntimeRoleARN: "arn:aws:iam::123456789012:role/silo-runtime",
		VPCCIDR: "10.1.0.0/16", PrivateSubnetCIDR: "10.1.0.0/20", PublicSubnetCIDR: "10.1.16.0/20", CIDRNewbits: 2,
		KMSDataKeyID: "alias/silo-data", GoldenAMIID: "ami-0123456789abcdef0"}
}

func azureSpec(name string) silo.RunnerSpec {
	return silo.RunnerSpec{Name: name, Provider: silo.ProviderAzure, Region: "westeurope", ResourceGroup: "silo-rg",
		ServicePrincipalID: "11111111-2222-3333-4444-555555555555", RuntimeServicePrincipalID: "66666666-7777-8888-9999-000000000000",
		SubscriptionID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", TenantID: "ffffffff-1111-2222-3333-444444444444",
		ServicePrincipalSecret: spSecret, RuntimeServicePrincipalSecret: runtimeSecret}
}

// fakeS3 is a real S3 wire-protocol server in-process; deny makes it answer
// 403 AccessDenied to every request, as a bucket policy would.
func fakeS3(t *testing.T) (*httptest.Server, *bool) {
	deny := new(bool)
	backend := gofakes3.New(s3mem.New()).Server()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if *deny {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, deny
}

func TestProvisionAWS(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	api := client.New(e.ts.URL, e.admin)

	// Without AWS credentials the server says the bundle will create the
	// bucket. The runner's token is in this response, once, for the
	// deployment (the bundle never holds it).
	r, err := api.RegisterRunner(ctx, awsSpec("aws-one"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != silo.RunnerProvisioning || !strings.Contains(r.StatusReason, "no AWS credentials") || r.StoragePath != "s3://silo-aws-one.silo" || !strings.HasPrefix(r.Token, silo.RunnerTokenPrefix) {
		t.Fatalf("registered without credentials = %s %q %s token=%q", r.Status, r.StatusReason, r.StoragePath, r.Token)
	}

	s3srv, deny := fakeS3(t)
	e.srv.Cloud.S3 = &blob.S3Config{Endpoint: s3srv.URL, UsePathStyle: true, AccessKeyID: "key", SecretAccessKey: "secret"}
	r, err = api.ProvisionRunner(ctx, "aws-one")
	if err != nil || r.Status != silo.RunnerProvisioning || !strings.Contains(r.StatusReason, "s3://silo-aws-one.silo is ready") {
		t.Fatalf("provision = %+v, %v", r, err)
	}
	s3c, _ := blob.NewS3Client(*e.srv.Cloud.S3)
	if err := provision.NewS3Storage(s3c, "silo-aws-one.silo", "eu-west-1").Ensure(ctx); err != nil {
		t.Fatalf("bucket not usable after provisioning: %v", err)
	}

	// A bucket the provisioner may not touch fails the runner with the reason.
	*deny = true
	r, err = api.RegisterRunner(ctx, awsSpec("aws-two"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != silo.RunnerFailed || !strings.Contains(strings.ToLower(r.StatusReason), "access denied") || !strings.Contains(r.StatusReason, "silo runners provision aws-two") {
		t.Fatalf("denied bucket = %s %q", r.Status, r.StatusReason)
	}
	*deny = false
	if r, _ = api.ProvisionRunner(ctx, "aws-two"); r.Status != silo.RunnerProvisioning {
		t.Fatalf("retry after fixing access = %s %q", r.Status, r.StatusReason)
	}

	// A cloud bundle needs the server's address as the runner's network
	// sees it: this test server is on loopback, which would point the
	// runner at itself, so without one it is refused, saying how to give it.
	var buf bytes.Buffer
	err = api.DownloadRunnerBundle(ctx, "aws-one", "", &buf)
	if e, ok := err.(*silo.Error); !ok || e.Code != silo.EINVALID || e.Field != "server_url" || !strings.Contains(e.Message, "--server-url") || !strings.Contains(e.Message, "--public-url") {
		t.Fatalf("a cloud bundle for a loopback server: %v", err)
	}
	// The bundle is a zip with the template; it names the settings.
	if err := api.DownloadRunnerBundle(ctx, "aws-one", "https://silo.example.org", &buf); err != nil {
		t.Fatal(err)
	}
	files := unzip(t, buf.Bytes())
	tmpl := files["cloudformation.json"]
	for _, want := range []string{"10.1.0.0/16", "alias/silo-data", "ami-0123456789abcdef0", "silo-aws-one.silo", "https://silo.example.org"} {
		if !strings.Contains(tmpl+files["silo-runner.json"], want) {
			t.Errorf("bundle does not mention %q", want)
		}
	}
	var parsed map[string]any
	if err := json.Unmarshal([]byte(tmpl), &parsed); err != nil || parsed["Resources"] == nil {
		t.Fatalf("cloudformation.json does not parse as a template: %v", err)
	}
	_, err = api.ProvisionRunner(ctx, "nope")
	wantCode(t, err, silo.ENOTFOUND)
}

// TestAzureSecrets registers an Azure runner against Azurite and proves its
// service-principal secrets never leave the server: not in any response,
// listing, bundle or audit entry.
func TestAzureSecrets(t *testing.T) {
	conn := testsvc.Azurite(t)
	e := newEnv(t)
	var logs bytes.Buffer
	e.srv.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv.Cloud.Azure = &blob.AzureConfig{ConnectionString: conn}
	ctx := context.Background()
	api := client.New(e.ts.URL, e.admin)

	r, err := api.RegisterRunner(ctx, azureSpec("azure-eu"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != silo.RunnerProvisioning || !strings.Contains(r.StatusReason, "azure://azureeustorage is ready") || r.StoragePath != "azureeustorage" {
		t.Fatalf("registered = %s %q %s", r.Status, r.StatusReason, r.StoragePath)
	}
	if got := strings.Join(r.SecretsSet, ","); got != "runtime_service_principal_secret,service_principal_secret" {
		t.Fatalf("secrets_set = %q", got)
	}
	// Memory may go down, never up; an edit that leaves secrets out keeps them.
	if _, err := api.EditRunner(ctx, "azure-eu", map[string]any{"memory_mb": 32768}); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("memory increase: %v", err)
	}
	r, err = api.EditRunner(ctx, "azure-eu", map[string]any{"memory_mb": 8192})
	if err != nil || r.MemoryMB != 8192 || len(r.SecretsSet) != 2 {
		t.Fatalf("memory decrease = %+v, %v", r, err)
	}

	var seen []string
	collect := func(v any) {
		b, _ := json.Marshal(v)
		seen = append(seen, string(b))
	}
	collect(r)
	list, _ := api.ListRunners(ctx, false)
	collect(list)
	got, _ := api.GetRunner(ctx, "azure-eu")
	collect(got)
	audit, _ := api.ListAudit(ctx, client.AuditQuery{Limit: 100})
	collect(audit)
	var buf bytes.Buffer
	if err := api.DownloadRunnerBundle(ctx, "azure-eu", "https://silo.example.org", &buf); err != nil {
		t.Fatal(err)
	}
	for name, body := range unzip(t, buf.Bytes()) {
		seen = append(seen, name+": "+body)
	}
	seen = append(seen, logs.String())
	for _, s := range seen {
		if strings.Contains(s, spSecret) || strings.Contains(s, runtimeSecret) {
			t.Fatalf("a service-principal secret leaked: %.200s", s)
		}
	}
}

func unzip(t *testing.T, b []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("bundle is not a zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		data, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = string(data)
	}
	return out
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if silo.ErrorCode(err) != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
}
