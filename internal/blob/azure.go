package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/silofl/silo"
)

// AzureStore is a blob container of the runner's storage account.
type AzureStore struct {
	client    *azblob.Client
	container string
}

// NewAzureStore returns the store for container, reached through client
// (see NewAzureClient).
func NewAzureStore(client *azblob.Client, container string) *AzureStore {
	return &AzureStore{client: client, container: container}
}

func (s *AzureStore) uri(key string) string {
	return URI{Scheme: SchemeAzure, Bucket: s.container, Path: key}.String()
}

// List implements Store. Names ending in "/" and the folder entries of
// accounts with a hierarchical namespace (Data Lake Storage, metadata
// hdi_isfolder=true) are skipped.
func (s *AzureStore) List(ctx context.Context, path string) ([]Object, error) {
	if err := checkData(s.uri(path), path); err != nil {
		return nil, err
	}
	prefix := path
	if path != "" && path[len(path)-1] != '/' {
		// path itself, if it is a blob, is the first name with prefix path.
		page, err := s.client.NewListBlobsFlatPager(s.container, &azblob.ListBlobsFlatOptions{
			Prefix: &path, MaxResults: ptr(int32(1)), Include: azblob.ListBlobsInclude{Metadata: true},
		}).NextPage(ctx)
		if err != nil {
			return nil, s.fail(ctx, opList, path, err)
		}
		if items := page.Segment.BlobItems; len(items) > 0 && deref(items[0].Name) == path && !isFolderBlob(items[0].Metadata) {
			return []Object{{Key: path, Size: blobSize(items[0])}}, nil
		}
		prefix = path + "/"
	}
	var objs []Object
	hidden := 0
	pages := s.client.NewListBlobsFlatPager(s.container, &azblob.ListBlobsFlatOptions{
		Prefix: &prefix, Include: azblob.ListBlobsInclude{Metadata: true},
	})
	for pages.More() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.fail(ctx, opList, path, err)
		}
		for _, b := range page.Segment.BlobItems {
			name := deref(b.Name)
			switch {
			case name == "" || name[len(name)-1] == '/' || isFolderBlob(b.Metadata):
			case hiddenBelow(prefix, name):
				hidden++
			default:
				objs = append(objs, Object{Key: name, Size: blobSize(b)})
			}
		}
	}
	if len(objs) == 0 {
		return nil, emptyFolder(s.uri(path), hidden)
	}
	sortObjects(objs)
	return objs, nil
}

// Open implements Store.
func (s *AzureStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	resp, err := s.client.DownloadStream(ctx, s.container, key, nil)
	if err != nil {
		return nil, s.fail(ctx, opRead, key, err)
	}
	return resp.Body, nil
}

// ReaderAt implements Store with ranged DownloadStream requests.
func (s *AzureStore) ReaderAt(ctx context.Context, obj Object) io.ReaderAt {
	return &rangeReader{ctx: ctx, obj: obj, get: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if err := checkData(s.uri(obj.Key), obj.Key); err != nil {
			return nil, err
		}
		resp, err := s.client.DownloadStream(ctx, s.container, obj.Key, &azblob.DownloadStreamOptions{
			Range: blob.HTTPRange{Offset: off, Count: n},
		})
		if err != nil {
			return nil, s.fail(ctx, opRead, obj.Key, err)
		}
		return resp.Body, nil
	}}
}

// Put implements Store as a block blob upload: the blob appears (or is
// replaced) only when its block list is committed at the end.
func (s *AzureStore) Put(ctx context.Context, key string, r io.Reader) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if _, err := s.client.UploadStream(ctx, s.container, key, r, nil); err != nil {
		return s.fail(ctx, opWrite, key, err)
	}
	return nil
}

func (s *AzureStore) checkKey(key string) error {
	if key == "" || key[len(key)-1] == '/' {
		return silo.Errorf(silo.EINVALID, "%s names a folder, not a file: give a blob's name", s.uri(key))
	}
	return checkData(s.uri(key), key)
}

// GetRecord implements Records.
func (s *AzureStore) GetRecord(ctx context.Context, key string) ([]byte, string, error) {
	resp, err := s.client.DownloadStream(ctx, s.container, key, nil)
	if err != nil {
		return nil, "", s.fail(ctx, opRead, key, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", s.fail(ctx, opRead, key, err)
	}
	return b, string(deref(resp.ETag)), nil
}

// PutRecord implements Records with a conditional upload (If-Match, or
// If-None-Match: * for a new blob), which Azure checks atomically.
func (s *AzureStore) PutRecord(ctx context.Context, key string, b []byte, version string) error {
	cond := &blob.ModifiedAccessConditions{IfNoneMatch: ptr(azcore.ETagAny)}
	if version != "" {
		cond = &blob.ModifiedAccessConditions{IfMatch: ptr(azcore.ETag(version))}
	}
	_, err := s.client.UploadBuffer(ctx, s.container, key, b, &azblob.UploadBufferOptions{
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond},
	})
	if bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists) {
		return fmt.Errorf("writing %s: %w", s.uri(key), ErrVersionChanged)
	}
	if err != nil {
		return s.fail(ctx, opWrite, key, err)
	}
	return nil
}

// fail turns an SDK error into one a person can act on.
func (s *AzureStore) fail(ctx context.Context, o op, key string, err error) error {
	where := s.uri(key)
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", o.doing(), where, ctx.Err())
	}
	var re *azcore.ResponseError
	isResp := errors.As(err, &re)
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return silo.Errorf(silo.ENOTFOUND, "container %s does not exist in storage account %s — check the URI's container (the runner's data is in its own storage account)", s.container, s.account())
	case bloberror.HasCode(err, bloberror.BlobNotFound) || o == opRead && isResp && re.StatusCode == 404:
		return silo.Errorf(silo.ENOTFOUND, "no file at %s", where)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.InvalidAuthenticationInfo, bloberror.NoAuthenticationInformation) ||
		// Azurite says AuthorizationFailure for a bad signature.
		isResp && re.StatusCode == 403 && strings.Contains(err.Error(), "failed to authenticate"):
		return silo.Errorf(silo.EFORBIDDEN, "the runner's Azure credentials were refused %s %s: check its storage account key, SAS token or service principal", o.doing(), where)
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch, bloberror.InsufficientAccountPermissions) || isResp && re.StatusCode == 403:
		if o == opWrite {
			return silo.Errorf(silo.EFORBIDDEN, "access denied writing %s: the runner's identity needs the Storage Blob Data Contributor role on the storage account (or a SAS token allowing write)", where)
		}
		return silo.Errorf(silo.EFORBIDDEN, "access denied to %s: the runner's identity needs the Storage Blob Data Reader role on the storage account (or a SAS token allowing read and list), and the account's firewall must admit the runner's network", where)
	case bloberror.HasCode(err, bloberror.AccountIsDisabled):
		return silo.Errorf(silo.EINVALID, "the storage account %s is disabled: enable it in the Azure portal", s.account())
	case !isResp:
		return silo.Errorf(silo.EINVALID, "cannot reach the Azure storage account at %s %s (%v): check the runner's network and proxy (HTTPS_PROXY) and its storage account", s.endpoint(), where, netCause(err))
	}
	return silo.Errorf(silo.EINTERNAL, "Azure storage failed %s %s: HTTP %d %s", o.doing(), where, re.StatusCode, re.ErrorCode)
}

// endpoint is the client's service URL without its query, which may hold a
// SAS token: messages must not carry credentials.
func (s *AzureStore) endpoint() string {
	u, err := url.Parse(s.client.URL())
	if err != nil {
		return "(unparsable service URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return strings.TrimSuffix(u.String(), "/")
}

// account is the storage account's name: the host's first label, or the
// first path segment for emulators (http://127.0.0.1:10000/devstoreaccount1).
func (s *AzureStore) account() string {
	u, err := url.Parse(s.client.URL())
	if err != nil {
		return "(unknown)"
	}
	if first, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/"); first != "" {
		return first
	}
	name, _, _ := strings.Cut(u.Hostname(), ".")
	return name
}

func isFolderBlob(md map[string]*string) bool {
	for k, v := range md {
		if strings.EqualFold(k, "hdi_isfolder") && v != nil && strings.EqualFold(*v, "true") {
			return true
		}
	}
	return false
}

func blobSize(b *container.BlobItem) int64 {
	if b.Properties == nil {
		return 0
	}
	return deref(b.Properties.ContentLength)
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
