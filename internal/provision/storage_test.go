package provision

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/testsvc"
)

// Both implementations are Storage.
var (
	_ Storage = (*S3Storage)(nil)
	_ Storage = (*AzureStorage)(nil)
)

// s3Request is one request the fake S3 server saw.
type s3Request struct {
	Method, Path, Query string
	Body                string
}

// fakeS3 serves the S3 protocol with gofakes3 on 127.0.0.1:0, records every
// request, and lets fault answer a request instead of the store (a 403, say)
// when it returns true.
type fakeS3 struct {
	srv   *httptest.Server
	mu    sync.Mutex
	seen  []s3Request
	fault func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	f := &fakeS3{}
	store := gofakes3.New(s3mem.New()).Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.seen = append(f.seen, s3Request{r.Method, r.URL.Path, r.URL.RawQuery, string(body)})
		fault := f.fault
		f.mu.Unlock()
		if fault != nil && fault(w, r) {
			return
		}
		store.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeS3) client(t *testing.T, region string) *s3.Client {
	t.Helper()
	c, err := blob.NewS3Client(blob.S3Config{Region: region, Endpoint: f.srv.URL, UsePathStyle: true, AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeS3) setFault(fault func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

func (f *fakeS3) requests() []s3Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]s3Request(nil), f.seen...)
}

// s3Error answers with an S3 error document, as S3 does.
func s3Error(w http.ResponseWriter, r *http.Request, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>`+code+`</Message><RequestId>test</RequestId></Error>`)
	}
}

func isCreateBucket(r *http.Request, bucket string) bool {
	return r.Method == http.MethodPut && r.URL.Path == "/"+bucket && r.URL.RawQuery == ""
}

func TestS3EnsureCreatesBucket(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t)
	c := f.client(t, "eu-west-1")
	const bucket = "acme-r1.silo"
	st := NewS3Storage(c, bucket, "eu-west-1")
	if err := st.Ensure(ctx); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	var creates []s3Request
	for _, r := range f.requests() {
		if r.Method == http.MethodPut && r.Path == "/"+bucket && r.Query == "" {
			creates = append(creates, r)
		}
	}
	if len(creates) != 1 || !strings.Contains(creates[0].Body, "<LocationConstraint>eu-west-1</LocationConstraint>") {
		t.Fatalf("CreateBucket requests %+v, want one with LocationConstraint eu-west-1", creates)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("bucket not there after Ensure: %v", err)
	}
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)})
	if err != nil || v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning = %q, %v; want Enabled", v.Status, err)
	}
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(ProbeKey)})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("probe object after Ensure: %v, want NotFound", err)
	}

	// Idempotent: a second Ensure verifies without creating.
	n := len(f.requests())
	if err := st.Ensure(ctx); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	for _, r := range f.requests()[n:] {
		if r.Method == http.MethodPut && r.Path == "/"+bucket {
			t.Errorf("second Ensure sent %s %s?%s", r.Method, r.Path, r.Query)
		}
	}
}

func TestS3EnsureUSEast1(t *testing.T) {
	// us-east-1 is the default location and must not be named.
	f := newFakeS3(t)
	if err := NewS3Storage(f.client(t, "us-east-1"), "acme-r2.silo", "us-east-1").Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		if r.Method == http.MethodPut && r.Path == "/acme-r2.silo" && strings.Contains(r.Body, "LocationConstraint") {
			t.Errorf("CreateBucket in us-east-1 sent a LocationConstraint: %s", r.Body)
		}
	}
}

func TestS3EnsureKeepsExistingData(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t)
	c := f.client(t, "eu-west-1")
	bucket := aws.String("acme-r3.silo")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("data/x.csv"), Body: strings.NewReader("a,b\n")}); err != nil {
		t.Fatal(err)
	}
	if err := NewS3Storage(c, *bucket, "eu-west-1").Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String("data/x.csv")})
	if err != nil {
		t.Fatalf("existing object gone: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "a,b\n" {
		t.Errorf("existing object = %q", b)
	}
}

func TestS3EnsureErrors(t *testing.T) {
	const bucket = "acme-denied.silo"
	probe := "/" + bucket + "/" + ProbeKey
	for _, c := range []struct {
		name     string
		fault    func(w http.ResponseWriter, r *http.Request) bool
		wantMsgs []string
	}{
		{"head denied", func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/"+bucket) {
				s3Error(w, r, 403, "AccessDenied")
				return true
			}
			return false
		}, []string{"bucket acme-denied.silo: access denied checking that it exists", "s3:ListBucket"}},
		{"create denied", func(w http.ResponseWriter, r *http.Request) bool {
			if isCreateBucket(r, bucket) {
				s3Error(w, r, 403, "AccessDenied")
				return true
			}
			return false
		}, []string{"bucket acme-denied.silo: access denied creating it — check the provisioner role's s3:CreateBucket permission"}},
		{"create fails", func(w http.ResponseWriter, r *http.Request) bool {
			if isCreateBucket(r, bucket) {
				s3Error(w, r, 400, "InvalidLocationConstraint")
				return true
			}
			return false
		}, []string{"bucket acme-denied.silo: no such bucket and creating it failed:", "InvalidLocationConstraint"}},
		{"name taken", func(w http.ResponseWriter, r *http.Request) bool {
			if isCreateBucket(r, bucket) {
				s3Error(w, r, 409, "BucketAlreadyExists")
				return true
			}
			return false
		}, []string{"taken by another AWS account", "choose another storage_path"}},
		{"write denied", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && r.URL.Path == probe {
				s3Error(w, r, 403, "AccessDenied")
				return true
			}
			return false
		}, []string{"access denied writing the probe object .silo/probe", "s3:PutObject"}},
		{"read denied", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && r.URL.Path == probe {
				s3Error(w, r, 403, "AccessDenied")
				return true
			}
			return false
		}, []string{"access denied reading the probe object", "s3:GetObject"}},
		{"delete denied", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodDelete && r.URL.Path == probe {
				s3Error(w, r, 403, "AccessDenied")
				return true
			}
			return false
		}, []string{"access denied deleting the probe object", "s3:DeleteObject"}},
		{"bad key", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodHead {
				s3Error(w, r, 404, "NotFound")
			} else {
				s3Error(w, r, 403, "InvalidAccessKeyId")
			}
			return true
		}, []string{"creating it: the provisioning credentials were refused (InvalidAccessKeyId)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeS3(t)
			f.setFault(c.fault)
			err := NewS3Storage(f.client(t, "eu-west-1"), bucket, "eu-west-1").Ensure(context.Background())
			if err == nil {
				t.Fatal("Ensure succeeded")
			}
			t.Log(err)
			if code := silo.ErrorCode(err); code != silo.EINVALID {
				t.Errorf("code %q, want %q: %v", code, silo.EINVALID, err)
			}
			for _, want := range c.wantMsgs {
				if !strings.Contains(silo.ErrorMessage(err), want) {
					t.Errorf("message %q lacks %q", silo.ErrorMessage(err), want)
				}
			}
		})
	}
}

func TestS3EnsureUnreachable(t *testing.T) {
	f := newFakeS3(t)
	c := f.client(t, "eu-west-1")
	f.srv.Close()
	c = s3.New(c.Options(), func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	err := NewS3Storage(c, "acme-r1.silo", "eu-west-1").Ensure(context.Background())
	if msg := silo.ErrorMessage(err); !strings.Contains(msg, "cannot reach S3") {
		t.Fatalf("Ensure = %v, want 'cannot reach S3'", err)
	}
}

func TestS3EnsureCancelled(t *testing.T) {
	f := newFakeS3(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewS3Storage(f.client(t, "eu-west-1"), "acme-r1.silo", "eu-west-1").Ensure(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure = %v, want context.Canceled", err)
	}
}

// blobEndpoint returns the BlobEndpoint of an Azure connection string.
func blobEndpoint(t *testing.T, cs string) string {
	for _, kv := range strings.Split(cs, ";") {
		if v, ok := strings.CutPrefix(kv, "BlobEndpoint="); ok {
			return v
		}
	}
	t.Fatalf("no BlobEndpoint in %q", cs)
	return ""
}

func TestAzureEnsure(t *testing.T) {
	ctx := context.Background()
	cs := testsvc.Azurite(t)

	t.Run("connection string", func(t *testing.T) {
		c, err := blob.NewAzureClient(blob.AzureConfig{ConnectionString: cs})
		if err != nil {
			t.Fatal(err)
		}
		st := NewAzureStorage(c, "ensure-cs")
		if err := st.Ensure(ctx); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if _, err := c.ServiceClient().NewContainerClient("ensure-cs").GetProperties(ctx, nil); err != nil {
			t.Fatalf("container missing after Ensure: %v", err)
		}
		if _, err := c.DownloadStream(ctx, "ensure-cs", ProbeKey, nil); !bloberror.HasCode(err, bloberror.BlobNotFound) {
			t.Errorf("probe blob after Ensure: %v, want BlobNotFound", err)
		}
		// Idempotent, and leaves existing data alone.
		if _, err := c.UploadBuffer(ctx, "ensure-cs", "data/x.csv", []byte("a,b\n"), nil); err != nil {
			t.Fatal(err)
		}
		if err := st.Ensure(ctx); err != nil {
			t.Fatalf("second Ensure: %v", err)
		}
		resp, err := c.DownloadStream(ctx, "ensure-cs", "data/x.csv", nil)
		if err != nil {
			t.Fatalf("existing blob gone: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "a,b\n" {
			t.Errorf("existing blob = %q", b)
		}
	})

	t.Run("account key", func(t *testing.T) {
		c, err := blob.NewAzureClient(blob.AzureConfig{AccountName: testsvc.AzuriteAccount, AccountKey: testsvc.AzuriteKey, ServiceURL: blobEndpoint(t, cs)})
		if err != nil {
			t.Fatal(err)
		}
		if err := NewAzureStorage(c, AzureContainer).Ensure(ctx); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		c, err := blob.NewAzureClient(blob.AzureConfig{AccountName: testsvc.AzuriteAccount, AccountKey: "d3Jvbmcga2V5", ServiceURL: blobEndpoint(t, cs)})
		if err != nil {
			t.Fatal(err)
		}
		err = NewAzureStorage(c, "ensure-denied").Ensure(ctx)
		t.Log(err)
		msg := silo.ErrorMessage(err)
		if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(msg, "blob container ensure-denied at ") ||
			!strings.Contains(msg, "creating it") || !(strings.Contains(msg, "access denied") || strings.Contains(msg, "refused")) {
			t.Fatalf("Ensure = %v, want an actionable access error", err)
		}
	})

	t.Run("read only", func(t *testing.T) {
		// A read-only SAS: what a principal with too narrow a role (say
		// Storage Blob Data Reader) sees.
		c, err := blob.NewAzureClient(blob.AzureConfig{ConnectionString: cs})
		if err != nil {
			t.Fatal(err)
		}
		if err := NewAzureStorage(c, "ensure-ro").Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		sasURL, err := c.ServiceClient().GetSASURL(
			sas.AccountResourceTypes{Service: true, Container: true, Object: true},
			sas.AccountPermissions{Read: true, List: true},
			time.Now().Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		ro, err := azblob.NewClientWithNoCredential(sasURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = NewAzureStorage(ro, "ensure-ro").Ensure(ctx)
		t.Log(err)
		if msg := silo.ErrorMessage(err); strings.Contains(msg, "sig=") {
			t.Fatalf("message %q quotes the SAS token", msg)
		}
		if msg := silo.ErrorMessage(err); !strings.Contains(msg, "access denied") || !strings.Contains(msg, "Storage Blob Data Contributor") {
			t.Fatalf("Ensure = %v, want access denied naming the role to grant", err)
		}
	})
}
