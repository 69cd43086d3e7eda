// Package blob reads and writes an organisation's data in its task runner's
// own storage (SPEC §3): a directory on a local runner (file://), an S3
// bucket (s3://) or an Azure blob container (azure://).
//
// A dataset URI (see ParseURI) names one file or a folder of files; a Store
// lists what it names, reads it sequentially or by ranges (Parquet readers
// seek), and writes prediction files next to it. Errors a person can act on
// (no such bucket, access denied, a path escaping the storage root…) are
// *silo.Error with codes not_found, forbidden or invalid and messages that
// say what to change; a cancelled context is returned wrapped, so
// errors.Is(err, context.Canceled) holds.
package blob

import (
	"context"
	"io"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/silofl/silo"
)

// Object is a file in a Store.
type Object struct {
	// Key names the object in its store, as Open takes it: the S3 key or
	// blob name, or for a FileStore the absolute path (like URI.Path).
	Key  string
	Size int64
}

// Store is a runner's storage. FileStore, S3Store and AzureStore implement it.
type Store interface {
	// List returns the objects path names, sorted by key: the one object if
	// path is an object, else every object under path taken as a folder
	// (prefix), recursively. A trailing "/" means path must be a folder;
	// "" is the whole bucket, container or storage root. Listing a folder skips hidden names, those
	// starting with "." or "_" (such as _SUCCESS, .crc files and
	// _temporary folders left by Spark and Hadoop), at any depth below
	// path, and folder placeholder objects. If nothing is found the error
	// is a not_found *silo.Error.
	List(ctx context.Context, path string) ([]Object, error)
	// Open returns the object's content for sequential reading.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// ReaderAt returns a reader of obj's content at any offset, as columnar
	// formats need; each ReadAt is a ranged request (a read at the file
	// position for FileStore). ctx bounds every ReadAt, since io.ReaderAt
	// takes none. Reads at or past obj.Size return io.EOF.
	ReaderAt(ctx context.Context, obj Object) io.ReaderAt
	// Put writes r to key, replacing any object there. Readers never see
	// a partial object: a FileStore writes a temporary file and renames it,
	// S3 and Azure commit uploads atomically.
	Put(ctx context.Context, key string, r io.Reader) error
}

// Config is how a runner reaches its storage; Open takes from it what a
// URI's scheme needs.
type Config struct {
	// FileRoot is a local runner's storage root: file:// URIs must stay
	// inside it.
	FileRoot string
	// FileDeny lists folders under FileRoot that are never data: the
	// runner's own state. They are neither listed nor opened nor written,
	// whatever path or link leads to them.
	FileDeny []string
	// S3 reaches S3 or an S3-compatible store (Endpoint, UsePathStyle).
	// Without static credentials or a Credentials provider, or without a
	// Region, Open takes them from the AWS SDK's default chain (see
	// withDefaultAWSConfig).
	S3 S3Config
	// Azure reaches the runner's storage account: a connection string, an
	// account name and key, a token credential, a service URL with a SAS
	// token in it, or an account name alone, with azidentity's default
	// credential (managed identity, workload identity, environment).
	Azure AzureConfig
}

// Open returns the store that holds u, built from cfg. It does not contact
// the storage: a missing bucket or wrong credentials show in the first call.
func Open(ctx context.Context, u URI, cfg Config) (Store, error) {
	switch u.Scheme {
	case SchemeFile:
		if cfg.FileRoot == "" {
			return nil, silo.Errorf(silo.EINVALID, "%s is a local file, but this runner has no storage root: start it with --storage-root DIR", u)
		}
		s, err := NewFileStore(cfg.FileRoot)
		if err != nil {
			return nil, err
		}
		s.deny(cfg.FileDeny...)
		return s, nil
	case SchemeS3:
		c, err := withDefaultAWSConfig(ctx, cfg.S3)
		if err != nil {
			return nil, err
		}
		if c.Region == "" && c.Endpoint == "" {
			return nil, silo.Errorf(silo.EINVALID, "cannot read %s: the runner has no AWS region: set AWS_REGION, give its profile a region, or run it on EC2", u)
		}
		client, err := NewS3Client(c)
		if err != nil {
			return nil, err
		}
		return NewS3Store(client, u.Bucket), nil
	case SchemeAzure:
		client, err := newAzureClient(cfg.Azure)
		if err != nil {
			return nil, err
		}
		return NewAzureStore(client, u.Bucket), nil
	}
	return nil, silo.Errorf(silo.EINVALID, "unknown storage scheme %q: use %s", u.Scheme, uriForms)
}

// newAzureClient is NewAzureClient plus a service URL alone,
// whose SAS token authorises the runner (provision always has a key or
// credential, a runner may have only a SAS).
func newAzureClient(cfg AzureConfig) (*azblob.Client, error) {
	if cfg.ConnectionString == "" && cfg.AccountKey == "" && cfg.Credential == nil && hasSAS(cfg.ServiceURL) {
		c, err := azblob.NewClientWithNoCredential(cfg.ServiceURL, nil)
		if err != nil {
			return nil, silo.Errorf(silo.EINVALID, "Azure storage service URL: %v", err)
		}
		return c, nil
	}
	return NewAzureClient(cfg)
}

// isHidden reports whether a file or folder name is one List skips.
func isHidden(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// hiddenBelow reports whether key, which starts with the folder prefix, has
// a hidden name below it.
func hiddenBelow(prefix, key string) bool {
	return slices.ContainsFunc(strings.Split(key[len(prefix):], "/"), isHidden)
}

// emptyFolder is List's error when a folder holds nothing but hidden files.
func emptyFolder(where string, hidden int) error {
	if hidden > 0 {
		return silo.Errorf(silo.ENOTFOUND, "no data files in folder %s: it holds only hidden files (names starting with . or _, such as _SUCCESS), which Silo skips", where)
	}
	return silo.Errorf(silo.ENOTFOUND, "no file or folder at %s", where)
}

func sortObjects(objs []Object) {
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
