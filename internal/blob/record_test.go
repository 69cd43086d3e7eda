package blob

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/silofl/silo"
)

// recordStore is a store with records, as S3Store and AzureStore are.
type recordStore interface {
	Store
	Records
}

// testRecords checks a store's conditional records and that its data
// methods never reach ReservedFolder, against a real server.
func testRecords(t *testing.T, st recordStore) {
	t.Helper()
	ctx := context.Background()
	const key = "root/.silo/runner-state/locations/a.json"
	_, _, err := st.GetRecord(ctx, key)
	wantCode(t, err, silo.ENOTFOUND, "no file at")

	if err := st.PutRecord(ctx, key, []byte("1"), ""); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := st.PutRecord(ctx, key, []byte("x"), ""); !errors.Is(err, ErrVersionChanged) {
		t.Fatalf("creating an existing record: %v, want ErrVersionChanged", err)
	}
	b, v1, err := st.GetRecord(ctx, key)
	if err != nil || string(b) != "1" || v1 == "" {
		t.Fatalf("GetRecord = %q, %q, %v", b, v1, err)
	}
	if err := st.PutRecord(ctx, key, []byte("2"), v1); err != nil {
		t.Fatalf("replace at the version read: %v", err)
	}
	if err := st.PutRecord(ctx, key, []byte("stale"), v1); !errors.Is(err, ErrVersionChanged) {
		t.Fatalf("replace at a stale version: %v, want ErrVersionChanged", err)
	}
	if b, _, _ := st.GetRecord(ctx, key); string(b) != "2" {
		t.Fatalf("after a refused write the record is %q, want 2", b)
	}

	// Writers that each add one to a counter: none is lost.
	const counter, writers = "root/.silo/runner-state/counter", 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				b, v, err := st.GetRecord(ctx, counter)
				if silo.ErrorCode(err) == silo.ENOTFOUND {
					b, v, err = []byte("0"), "", nil
				}
				if err != nil {
					errs <- err
					return
				}
				n, _ := strconv.Atoi(string(b))
				err = st.PutRecord(ctx, counter, []byte(strconv.Itoa(n+1)), v)
				if errors.Is(err, ErrVersionChanged) {
					continue
				}
				errs <- err
				return
			}
			errs <- fmt.Errorf("no write landed in 50 attempts")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if b, _, _ := st.GetRecord(ctx, counter); string(b) != strconv.Itoa(writers) {
		t.Fatalf("counter = %s after %d conditional increments: an update was lost", b, writers)
	}

	// No data method reaches the runner's own folder.
	fill(t, st, map[string]string{"root/data.csv": "a\n1\n"})
	for _, p := range []string{"root/.silo", "root/.silo/", "root/.silo/runner-state", ".silo/"} {
		_, err := st.List(ctx, p)
		wantCode(t, err, silo.EINVALID, "where the runner keeps its own record")
	}
	_, err = st.Open(ctx, key)
	wantCode(t, err, silo.EINVALID, "where the runner keeps its own record")
	_, err = st.ReaderAt(ctx, Object{key, 1}).ReadAt(make([]byte, 1), 0)
	wantCode(t, err, silo.EINVALID, "where the runner keeps its own record")
	err = st.Put(ctx, key, strings.NewReader("{}"))
	wantCode(t, err, silo.EINVALID, "where the runner keeps its own record")
	if b, _, _ := st.GetRecord(ctx, key); string(b) != "2" {
		t.Fatalf("a data write changed the record to %q", b)
	}
	objs, err := st.List(ctx, "root")
	if err != nil || len(objs) != 1 || objs[0].Key != "root/data.csv" {
		t.Fatalf("List(root) = %v, %v: want only the data, never the record", objs, err)
	}
}

func TestS3Records(t *testing.T) {
	f := newFakeS3(t, "data.silo")
	testRecords(t, NewS3Store(f.client(t), "data.silo"))
}

func TestAzureRecords(t *testing.T) {
	client, container, _ := newAzurite(t)
	testRecords(t, NewAzureStore(client, container))
}
