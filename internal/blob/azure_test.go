package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/testsvc"
)

// newAzurite returns a client of an Azurite blob service and a new,
// uniquely named container in it (the service may be shared).
func newAzurite(t *testing.T) (*azblob.Client, string, string) {
	t.Helper()
	cs := testsvc.Azurite(t)
	client, err := NewAzureClient(AzureConfig{ConnectionString: cs})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	container := "blob-test-" + hex.EncodeToString(b)
	ctx := context.Background()
	if _, err := client.CreateContainer(ctx, container, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.DeleteContainer(context.Background(), container, nil) })
	return client, container, cs
}

func TestAzureStore(t *testing.T) {
	ctx := context.Background()
	client, container, _ := newAzurite(t)
	st := NewAzureStore(client, container)
	fill(t, st, datasetFiles)
	// A folder entry, as accounts with a hierarchical namespace list them.
	if _, err := client.UploadBuffer(ctx, container, "ds/sub", nil, &azblob.UploadBufferOptions{Metadata: map[string]*string{"hdi_isfolder": ptr("true")}}); err != nil {
		t.Fatal(err)
	}
	testStoreList(t, st, "azure://"+container)

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
	wantCode(t, err, silo.ENOTFOUND, "no file at azure://"+container+"/ds/missing.csv")

	testReaderAt(t, st.ReaderAt(ctx, Object{"ds.csv", 8}), []byte("a,b\n1,2\n"))
	_, err = st.ReaderAt(ctx, Object{"ds/missing.csv", 8}).ReadAt(make([]byte, 2), 0)
	wantCode(t, err, silo.ENOTFOUND, "no file at")

	// Put replaces, and streams more than one block.
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if err := st.Put(ctx, "predictions/out.csv", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "predictions/out.csv", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "predictions/")
	if err != nil || len(objs) != 1 || objs[0].Size != int64(len(data)) {
		t.Fatalf("List(predictions/) = %v, %v", objs, err)
	}
	p := make([]byte, 1000)
	if n, err := st.ReaderAt(ctx, objs[0]).ReadAt(p, 2<<20); n != 1000 || err != nil || !bytes.Equal(p, data[2<<20:2<<20+1000]) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	wantCode(t, st.Put(ctx, "predictions/", strings.NewReader("")), silo.EINVALID, "folder")
}

func TestAzureStoreErrors(t *testing.T) {
	ctx := context.Background()
	client, container, cs := newAzurite(t)

	missing := NewAzureStore(client, "no-such-container")
	_, err := missing.List(ctx, "ds/")
	wantCode(t, err, silo.ENOTFOUND, "container no-such-container does not exist in storage account devstoreaccount1")
	_, err = missing.List(ctx, "ds")
	wantCode(t, err, silo.ENOTFOUND, "container no-such-container does not exist")
	_, err = missing.Open(ctx, "x.csv")
	wantCode(t, err, silo.ENOTFOUND, "container no-such-container does not exist")
	wantCode(t, missing.Put(ctx, "x.csv", strings.NewReader("x")), silo.ENOTFOUND, "container no-such-container does not exist")

	// A wrong account key: Azurite refuses the signature.
	wrong := strings.Replace(cs, "AccountKey="+testsvc.AzuriteKey, "AccountKey="+strings.Repeat("A", 86)+"==", 1)
	wc, err := NewAzureClient(AzureConfig{ConnectionString: wrong})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewAzureStore(wc, container).List(ctx, "ds")
	wantCode(t, err, silo.EFORBIDDEN, "credentials were refused")

	// A service URL alone, with a read-only SAS token in it.
	sasURL, err := client.ServiceClient().GetSASURL(sas.AccountResourceTypes{Container: true, Object: true},
		sas.AccountPermissions{Read: true, List: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, NewAzureStore(client, container), map[string]string{"ds/a.csv": "a"})
	st, err := Open(ctx, URI{Scheme: SchemeAzure, Bucket: container, Path: "ds"}, Config{Azure: AzureConfig{ServiceURL: sasURL}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.List(ctx, "ds"); err != nil || len(got) != 1 {
		t.Errorf("List with a SAS URL = %v, %v", got, err)
	}
	err = st.Put(ctx, "ds/p.csv", strings.NewReader("p"))
	wantCode(t, err, silo.EFORBIDDEN, "access denied writing azure://"+container+"/ds/p.csv", "Storage Blob Data Contributor")
	if strings.Contains(silo.ErrorMessage(err), "sig=") {
		t.Errorf("message %q shows the SAS token", silo.ErrorMessage(err))
	}

	// Nothing listens.
	dead, err := azblob.NewClientWithNoCredential("http://127.0.0.1:1/devstoreaccount1", &azblob.ClientOptions{ClientOptions: policy.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewAzureStore(dead, container).List(ctx, "ds")
	wantCode(t, err, silo.EINVALID, "cannot reach the Azure storage account at http://127.0.0.1:1/devstoreaccount1")
}

func TestOpenAzure(t *testing.T) {
	ctx := context.Background()
	client, container, cs := newAzurite(t)
	fill(t, NewAzureStore(client, container), map[string]string{"ds/a.csv": "a"})
	u, err := ParseURI("azure://" + container + "/ds")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimSuffix(client.URL(), "/")
	for name, cfg := range map[string]AzureConfig{
		"connection string": {ConnectionString: cs},
		"account and key":   {AccountName: testsvc.AzuriteAccount, AccountKey: testsvc.AzuriteKey, ServiceURL: endpoint},
	} {
		st, err := Open(ctx, u, Config{Azure: cfg})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := st.List(ctx, u.Path); err != nil || len(got) != 1 {
			t.Errorf("%s: List = %v, %v", name, got, err)
		}
	}
}
