package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
)

// A linkage is what a prl session leaves on each runner: the row positions
// of the dataset's linked records, in the order every party shares (record
// i here is the same person as record i on every other runner). It stays
// in the runner's own storage, at
//
//	<storage>/_linkage/<session>/<dataset>.linkage
//
// where <storage> is the runner's storage root (file://), or the bucket or
// container of the dataset (s3://, azure://); the leading "_" keeps it out
// of any dataset registered on a whole folder. The file is a line of JSON
// (LinkageHeader) followed by the positions as little-endian uint64s.
//
// Other session kinds (vertical training, intersect-mode analysis) read it
// on the runner with Config.Linkage; it never leaves the runner.

// LinkageFormat names the file format.
const LinkageFormat = "silo-linkage-1"

// Linkage is one dataset's linkage.
type Linkage struct {
	Session string `json:"session"`
	Dataset string `json:"dataset"`
	// URI is the dataset's, and DatasetRows its row count when it was
	// linked: a consumer checks the data has not changed since.
	URI         string     `json:"uri"`
	DatasetRows int64      `json:"dataset_rows"`
	Keys        [][]string `json:"keys"`
	Normalize   []string   `json:"normalize,omitempty"`
	// Rows are the linked records' row positions (0-based, in the order
	// the dataset's files are read), in the common order.
	Rows []int64 `json:"-"`
}

// linkageHeader is the file's first line.
type linkageHeader struct {
	Format string `json:"format"`
	Linkage
	Records int64 `json:"records"`
}

// linkageURI is where a dataset's linkage for a session is kept.
func (c *Config) linkageURI(datasetURI, session, dataset string) (blob.URI, error) {
	if !validName(session) || !validName(dataset) {
		return blob.URI{}, fmt.Errorf("session %q or dataset %q is not a valid name", session, dataset)
	}
	u, err := blob.ParseURI(datasetURI)
	if err != nil {
		return blob.URI{}, err
	}
	name := "_linkage/" + session + "/" + dataset + ".linkage"
	if u.Scheme == blob.SchemeFile {
		if c.StorageRoot == "" {
			return blob.URI{}, errors.New("this runner has no storage root for its linkages: start it with --storage-root DIR")
		}
		return blob.URI{Scheme: blob.SchemeFile, Path: filepath.Join(c.StorageRoot, filepath.FromSlash(name))}, nil
	}
	return blob.URI{Scheme: u.Scheme, Bucket: u.Bucket, Path: name}, nil
}

func (c *Config) linkageStore(ctx context.Context, u blob.URI) (blob.Store, error) {
	return blob.Open(ctx, u, c.storage())
}

// writeLinkage stores a linkage and returns where.
func (c *Config) writeLinkage(ctx context.Context, l *Linkage) (string, error) {
	u, err := c.linkageURI(l.URI, l.Session, l.Dataset)
	if err != nil {
		return "", err
	}
	store, err := c.linkageStore(ctx, u)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		err := json.NewEncoder(w).Encode(linkageHeader{Format: LinkageFormat, Linkage: *l, Records: int64(len(l.Rows))})
		var b [8]byte
		for _, r := range l.Rows {
			if err != nil {
				break
			}
			binary.LittleEndian.PutUint64(b[:], uint64(r)) // #nosec G115 -- row positions are ≥ 0
			_, err = w.Write(b[:])
		}
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
	}()
	if err := store.Put(ctx, u.Path, pr); err != nil {
		_ = pr.CloseWithError(err)
		return "", fmt.Errorf("write the linkage to %s: %w", u, err)
	}
	return u.String(), nil
}

// Linkage reads the linkage a prl session left for a dataset on this
// runner: the row positions of the dataset's linked records, in the order
// every party of the linkage shares. uri is the dataset's URI (where its
// storage is). It is an error if the linkage is missing (the session did
// not complete) or was made for another dataset.
func (c *Config) Linkage(ctx context.Context, prlSession, dataset, uri string) (*Linkage, error) {
	u, err := c.linkageURI(uri, prlSession, dataset)
	if err != nil {
		return nil, err
	}
	store, err := c.linkageStore(ctx, u)
	if err != nil {
		return nil, err
	}
	rc, err := store.Open(ctx, u.Path)
	if err != nil {
		if silo.ErrorCode(err) == silo.ENOTFOUND {
			return nil, fmt.Errorf("no linkage of dataset %s from session %s on this runner: the linkage session must complete first", dataset, prlSession)
		}
		return nil, err
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("linkage %s: %w", u, err)
	}
	var h linkageHeader
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&h); err != nil || h.Format != LinkageFormat {
		return nil, fmt.Errorf("linkage %s is not a %s file", u, LinkageFormat)
	}
	if h.Session != prlSession || h.Dataset != dataset {
		return nil, fmt.Errorf("linkage %s was made for session %s, dataset %s", u, h.Session, h.Dataset)
	}
	if h.Records < 0 || h.Records > h.DatasetRows {
		return nil, fmt.Errorf("linkage %s claims %d records of %d rows", u, h.Records, h.DatasetRows)
	}
	l := h.Linkage
	l.Rows = make([]int64, h.Records)
	var b [8]byte
	for i := range l.Rows {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("linkage %s ends early: %w", u, err)
		}
		v := binary.LittleEndian.Uint64(b[:])
		if v >= uint64(h.DatasetRows) { // #nosec G115 -- checked ≥ 0 above
			return nil, fmt.Errorf("linkage %s names row %d of %d", u, v, h.DatasetRows)
		}
		l.Rows[i] = int64(v) // #nosec G115 -- below DatasetRows
	}
	return &l, nil
}
