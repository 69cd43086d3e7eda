package blob

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/silofl/silo"
)

// ReservedFolder is the folder of a runner's cloud storage that holds the
// runner's own files (its privacy record, a pinned policy): hidden, so that
// listing a folder skips it, and refused to every data read and write, so
// that no dataset or task can read or rewrite it.
const ReservedFolder = ".silo"

// Records reads and writes small objects that several runner processes may
// update at once, such as the runner's privacy record, with optimistic
// concurrency: a write names the version it replaces and fails with
// ErrVersionChanged if another writer came first. Unlike a Store's data
// methods it reaches ReservedFolder. S3Store and AzureStore implement it.
type Records interface {
	// GetRecord returns key's content and version (its ETag); a not_found
	// *silo.Error if there is no object at key.
	GetRecord(ctx context.Context, key string) ([]byte, string, error)
	// PutRecord writes b to key if the object there is still at version,
	// or, with version "", if there is none.
	PutRecord(ctx context.Context, key string, b []byte, version string) error
}

// ErrVersionChanged is PutRecord's error when the object changed (or
// appeared) since the version it was given was read.
var ErrVersionChanged = errors.New("the object changed since it was read")

// CheckNotReserved refuses a data URI in ReservedFolder, so that a runner
// refuses it before it records anything about it.
func CheckNotReserved(u URI) error { return checkData(u.String(), u.Path) }

// checkData refuses a data key or folder in ReservedFolder, at any depth
// (the storage root may be a prefix of the bucket).
func checkData(where, key string) error {
	if slices.Contains(strings.Split(key, "/"), ReservedFolder) {
		return silo.Errorf(silo.EINVALID, "%s is inside %s/, where the runner keeps its own record: it is never data, and no task reads or writes it", where, ReservedFolder)
	}
	return nil
}
