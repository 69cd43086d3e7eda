package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/silofl/silo"
)

// fakeS3 is an in-process S3 server (gofakes3) that refuses everything on
// the bucket denied.silo with 403 AccessDenied, as S3 does when the
// runner's role lacks a permission, and records what it was asked.
type fakeS3 struct {
	URL string

	mu       sync.Mutex
	ranges   []string // Range headers of GETs
	uploads  int      // multipart uploads started
	authKeys []string // the Authorization headers' credentials
}

func newFakeS3(t *testing.T, buckets ...string) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	h := gofakes3.New(backend).Server()
	f := &fakeS3{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if rg := r.Header.Get("Range"); rg != "" {
			f.ranges = append(f.ranges, rg)
		}
		if _, ok := r.URL.Query()["uploads"]; ok && r.Method == http.MethodPost {
			f.uploads++
		}
		if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
			key, _, _ := strings.Cut(cred, "/")
			f.authKeys = append(f.authKeys, key)
		}
		f.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/denied.silo") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeS3) client(t *testing.T) *s3.Client {
	t.Helper()
	c, err := NewS3Client(S3Config{Endpoint: f.URL, UsePathStyle: true, AccessKeyID: "AKIATEST", SecretAccessKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fill puts files (key: content) into st.
func fill(t *testing.T, st Store, files map[string]string) {
	t.Helper()
	for k, v := range files {
		if err := st.Put(context.Background(), k, strings.NewReader(v)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
}

var datasetFiles = map[string]string{
	"ds/part-2.csv":              "22",
	"ds/part-10.csv":             "1010",
	"ds/sub/p3.csv":              "333",
	"ds/_SUCCESS":                "",
	"ds/.part-2.csv.crc":         "c",
	"ds/_temporary/0/part-9.csv": "9",
	"ds/sub/.hidden":             "h",
	"ds.csv":                     "a,b\n1,2\n",
	"ds-other/x.csv":             "x",
	"hidden-only/_SUCCESS":       "",
}

// testStoreList checks List on a store holding datasetFiles.
func testStoreList(t *testing.T, st Store, where string) {
	t.Helper()
	ctx := context.Background()
	want := []Object{{"ds/part-10.csv", 4}, {"ds/part-2.csv", 2}, {"ds/sub/p3.csv", 3}}
	for _, p := range []string{"ds", "ds/"} {
		got, err := st.List(ctx, p)
		if err != nil {
			t.Fatalf("List(%q): %v", p, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List(%q) (-want +got):\n%s", p, diff)
		}
	}
	got, err := st.List(ctx, "ds.csv")
	if err != nil || !cmp.Equal(got, []Object{{"ds.csv", 8}}) {
		t.Errorf("List(ds.csv) = %v, %v; want the one object", got, err)
	}
	got, err = st.List(ctx, "ds/sub/p3.csv")
	if err != nil || !cmp.Equal(got, []Object{{"ds/sub/p3.csv", 3}}) {
		t.Errorf("List(ds/sub/p3.csv) = %v, %v; want the one object", got, err)
	}
	got, err = st.List(ctx, "")
	if err != nil || len(got) != 5 {
		t.Errorf("List(\"\") = %v, %v; want the 5 visible objects of the bucket", got, err)
	}
	_, err = st.List(ctx, "d")
	wantCode(t, err, silo.ENOTFOUND, "no file or folder at "+where+"/d")
	_, err = st.List(ctx, "ds.csv/")
	wantCode(t, err, silo.ENOTFOUND)
	_, err = st.List(ctx, "hidden-only")
	wantCode(t, err, silo.ENOTFOUND, "only hidden files")
}

func TestS3Store(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "data.silo")
	client := f.client(t)
	st := NewS3Store(client, "data.silo")
	fill(t, st, datasetFiles)
	// A folder placeholder, as the S3 console makes.
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data.silo"), Key: aws.String("ds/"), Body: strings.NewReader("")}); err != nil {
		t.Fatal(err)
	}
	testStoreList(t, st, "s3://data.silo")

	rc, err := st.Open(ctx, "ds.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "a,b\n1,2\n" {
		t.Fatalf("Open read %q", b)
	}
	_, err = st.Open(ctx, "ds/missing.csv")
	wantCode(t, err, silo.ENOTFOUND, "no file at s3://data.silo/ds/missing.csv")
	_, err = st.Open(ctx, "ds/")
	wantCode(t, err, silo.EINVALID, "folder")

	f.mu.Lock()
	f.ranges = nil
	f.mu.Unlock()
	testReaderAt(t, st.ReaderAt(ctx, Object{"ds.csv", 8}), []byte("a,b\n1,2\n"))
	f.mu.Lock()
	if len(f.ranges) == 0 || f.ranges[0] != "bytes=0-2" {
		t.Errorf("ReaderAt sent Range headers %q, want ranged GETs starting with bytes=0-2", f.ranges)
	}
	f.mu.Unlock()
	_, err = st.ReaderAt(ctx, Object{"ds/missing.csv", 8}).ReadAt(make([]byte, 2), 0)
	wantCode(t, err, silo.ENOTFOUND, "no file at")
}

func TestS3StoreErrors(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "data.silo")
	client := f.client(t)

	missing := NewS3Store(client, "missing.silo")
	_, err := missing.List(ctx, "ds/")
	wantCode(t, err, silo.ENOTFOUND, "bucket missing.silo does not exist — check the runner's storage_path")
	_, err = missing.List(ctx, "ds")
	wantCode(t, err, silo.ENOTFOUND, "bucket missing.silo does not exist")
	_, err = missing.Open(ctx, "x.csv")
	wantCode(t, err, silo.ENOTFOUND, "bucket missing.silo does not exist")
	wantCode(t, missing.Put(ctx, "x.csv", strings.NewReader("x")), silo.ENOTFOUND, "bucket missing.silo does not exist")

	denied := NewS3Store(client, "denied.silo")
	_, err = denied.List(ctx, "ds")
	wantCode(t, err, silo.EFORBIDDEN, "access denied to s3://denied.silo/ds: the runner's role needs s3:GetObject and s3:ListBucket on it")
	_, err = denied.Open(ctx, "ds/x.csv")
	wantCode(t, err, silo.EFORBIDDEN, "access denied to s3://denied.silo/ds/x.csv")
	_, err = denied.ReaderAt(ctx, Object{"ds/x.csv", 10}).ReadAt(make([]byte, 4), 2)
	wantCode(t, err, silo.EFORBIDDEN, "s3:GetObject")
	wantCode(t, denied.Put(ctx, "p.csv", strings.NewReader("x")), silo.EFORBIDDEN, "access denied writing s3://denied.silo/p.csv: the runner's role needs s3:PutObject")

	// Nothing listens: the message names the endpoint.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	c, err := NewS3Client(S3Config{Endpoint: dead.URL, UsePathStyle: true, AccessKeyID: "a", SecretAccessKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	c = s3.New(c.Options(), func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	_, err = NewS3Store(c, "data.silo").List(ctx, "ds")
	wantCode(t, err, silo.EINVALID, "cannot reach S3 at "+dead.URL, "connection refused")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewS3Store(client, "data.silo").List(canceled, "ds"); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context: %v", err)
	}
}

func TestS3StorePutMultipart(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "data.silo")
	st := NewS3Store(f.client(t), "data.silo")
	st.partSize = 5 << 20 // S3's minimum, to test several parts cheaply

	data := make([]byte, 11<<20+123)
	rand.Read(data)
	if err := st.Put(ctx, "predictions/big.csv", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if f.uploads != 1 {
		t.Errorf("%d multipart uploads, want 1", f.uploads)
	}
	rc, err := st.Open(ctx, "predictions/big.csv")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(data))
	}
	objs, err := st.List(ctx, "predictions/big.csv")
	if err != nil || len(objs) != 1 || objs[0].Size != int64(len(data)) {
		t.Fatalf("List = %v, %v", objs, err)
	}
	ra := st.ReaderAt(ctx, objs[0])
	p := make([]byte, 100)
	if n, err := ra.ReadAt(p, 6<<20); n != 100 || err != nil || !bytes.Equal(p, data[6<<20:6<<20+100]) {
		t.Fatalf("ReadAt across parts = %d, %v", n, err)
	}

	// A failed upload leaves no object.
	err = st.Put(ctx, "predictions/bad.csv", io.MultiReader(bytes.NewReader(data[:6<<20]), errReader{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Put from a failing reader: %v", err)
	}
	_, err = st.Open(ctx, "predictions/bad.csv")
	wantCode(t, err, silo.ENOTFOUND)
}

// fakeIMDS is an EC2 instance metadata service (IMDSv2) with one role.
func fakeIMDS(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
			io.WriteString(w, "TOKEN")
		case r.Header.Get("X-aws-ec2-metadata-token") != "TOKEN":
			http.Error(w, "no token", http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			io.WriteString(w, "silo-runner\n")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/silo-runner":
			json.NewEncoder(w).Encode(map[string]any{
				"Code": "Success", "AccessKeyId": "ASIAIMDS", "SecretAccessKey": "s", "Token": "t",
				"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestOpenS3 builds stores from runner config, with each kind of
// credentials.
func TestOpenS3(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "data.silo")
	fill(t, NewS3Store(f.client(t), "data.silo"), map[string]string{"ds/a.csv": "a"})
	u, err := ParseURI("s3://data.silo/ds/")
	if err != nil {
		t.Fatal(err)
	}
	list := func(cfg Config) ([]Object, error) {
		st, err := Open(ctx, u, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st.List(ctx, u.Path)
	}
	lastKey := func() string {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.authKeys[len(f.authKeys)-1]
	}
	cfg := Config{S3: S3Config{Endpoint: f.URL, UsePathStyle: true}}

	static := cfg
	static.S3.AccessKeyID, static.S3.SecretAccessKey = "AKIASTATIC", "s"
	if _, err := list(static); err != nil || lastKey() != "AKIASTATIC" {
		t.Errorf("static credentials: %v, signed with %s", err, lastKey())
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	if _, err := list(cfg); err != nil || lastKey() != "AKIAENV" {
		t.Errorf("environment credentials: %v, signed with %s", err, lastKey())
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	// A fake metadata service on loopback stands in for EC2's; CI disables
	// the real one for every other test.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fakeIMDS(t).URL)
	if _, err := list(cfg); err != nil || lastKey() != "ASIAIMDS" {
		t.Errorf("instance profile credentials: %v, signed with %s", err, lastKey())
	}

	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, err = list(cfg)
	wantCode(t, err, silo.EINVALID, "the runner has no AWS credentials", "AWS_ACCESS_KEY_ID")

	// The rest of the standard chain: a named profile in the shared
	// files, as 'aws configure' writes them.
	dir := t.TempDir()
	creds, conf := filepath.Join(dir, "credentials"), filepath.Join(dir, "config")
	os.WriteFile(creds, []byte("[analytics]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n"), 0o600)
	os.WriteFile(conf, []byte("[profile analytics]\nregion = eu-west-3\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_CONFIG_FILE", conf)
	t.Setenv("AWS_PROFILE", "analytics")
	if _, err := list(cfg); err != nil || lastKey() != "AKIAPROFILE" {
		t.Errorf("shared profile credentials: %v, signed with %s", err, lastKey())
	}
	if c, err := withDefaultAWSConfig(ctx, S3Config{}); err != nil || c.Region != "eu-west-3" {
		t.Errorf("region from the profile = %q, %v; want eu-west-3", c.Region, err)
	}
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))

	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	_, err = Open(ctx, u, Config{})
	wantCode(t, err, silo.EINVALID, "no AWS region")
}

func TestNewS3ClientNeedsCredentials(t *testing.T) {
	if _, err := NewS3Client(S3Config{Region: "eu-west-1"}); err == nil {
		t.Error("no credentials: no error")
	}
	if _, err := NewS3Client(S3Config{AccessKeyID: "a", SecretAccessKey: "b"}); err == nil {
		t.Error("no region and no endpoint: no error")
	}
}
