package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/dp"
)

// The runner's own record of what binds its data, in its state directory
// or, for a runner with a cloud storage root, under .silo/runner-state/ in
// that storage; never sent anywhere. It is kept by data location, never by a dataset's
// name: registering the same data again under another name finds the same
// record, and the same budget.
//
//	<state dir>/locations/<hash of the location>.json
//
// holds, for one location, the controls of each dataset registered on it
// (as the server last told: at connect, or a deregistration) and the privacy
// ledger of the sessions that spent epsilon on it. A damaged file stops all
// work on the runner's data rather than being skipped: the runner fails
// closed.

// locationState is one location's record.
type locationState struct {
	Location string `json:"location"`
	// Datasets are the live datasets registered on the location, by name.
	Datasets map[string]*datasetRecord `json:"datasets"`
	// Ledger is the epsilon each session spent on the location, by session.
	Ledger map[string]*ledgerEntry `json:"ledger"`
}

// datasetRecord is what the server said about a dataset at its last
// connect.
type datasetRecord struct {
	URI       string               `json:"uri"`
	Controls  silo.PrivacyControls `json:"controls"`
	UpdatedAt time.Time            `json:"updated_at"`
}

// ledgerEntry is what one session spent on a location: the DP-SGD steps
// the runner itself ran, and the epsilon they make at Delta.
type ledgerEntry struct {
	Segments  []dp.Segment `json:"segments"`
	Delta     float64      `json:"delta"`
	Epsilon   float64      `json:"epsilon"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// stateStore is the runner's record: one file per location in a state
// directory, or every location's in one object, .silo/runner-state/state.json,
// in the runner's cloud storage. Updates are one at a time within the
// process (a mutex per place); across processes, since two runners may
// share a storage root, the directory is locked and the cloud object is
// written only if it is still the version read (see update).
type stateStore struct {
	objs stateObjects
	mu   *sync.Mutex
}

// stateObjects is where a stateStore keeps its records: a directory
// (dirState) or cloud storage (cloudState).
type stateObjects interface {
	// load returns every record by name, the version of the whole state
	// ("" for none yet), and a function to call once the records read are
	// written back or abandoned: a directory stays locked until then.
	load(ctx context.Context) (recs []stateRecord, version string, done func(), err error)
	// save writes the records changed since load returned loaded, if the
	// state is still at version, else returns blob.ErrVersionChanged.
	save(ctx context.Context, loaded, changed []stateRecord, version string) error
	// where names a record (or, with name "", the whole state) in messages.
	where(name string) string
}

// stateRecord is a stored record: its name (locationFile) and content.
type stateRecord struct {
	name string
	data []byte
}

var (
	stateMusMu sync.Mutex
	stateMus   = map[string]*sync.Mutex{}
)

func newStateStore(objs stateObjects) *stateStore {
	stateMusMu.Lock()
	defer stateMusMu.Unlock()
	mu, ok := stateMus[objs.where("")]
	if !ok {
		mu = &sync.Mutex{}
		stateMus[objs.where("")] = mu
	}
	return &stateStore{objs: objs, mu: mu}
}

// stateSnapshot is every location's record, loaded under the lock.
type stateSnapshot struct {
	locations map[string]*locationState
	changed   map[string]bool
}

// location returns loc's record, creating it.
func (s *stateSnapshot) location(loc string) *locationState {
	st, ok := s.locations[loc]
	if !ok {
		st = &locationState{Location: loc, Datasets: map[string]*datasetRecord{}, Ledger: map[string]*ledgerEntry{}}
		s.locations[loc] = st
	}
	return st
}

// maxStateAttempts bounds how often update re-reads and re-applies a change
// that another runner process's write overtook.
const maxStateAttempts = 10

// update runs fn on the state and writes back the locations fn marked
// changed. A state another process wrote since it was read (only cloud
// storage lets that happen) makes update read everything again and run fn
// again, so fn must start from what it is given each time. Since the cloud
// state is one object, a write is refused whatever location the other
// process changed: a folder's ledger read while a file inside it is
// spent on is as safe as under a directory's lock.
func (s *stateStore) update(ctx context.Context, fn func(st *stateSnapshot) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		err := s.try(ctx, fn)
		if !errors.Is(err, blob.ErrVersionChanged) {
			return err
		}
		if attempt == maxStateAttempts {
			return fmt.Errorf("the runner's state %s kept changing while it was being updated (another runner process shares it): gave up after %d attempts; the task may be retried", s.objs.where(""), attempt)
		}
		// Jittered, so that two processes do not collide again in step.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt*(10+rand.IntN(40))) * time.Millisecond): // #nosec G404 -- jitter, not a secret
		}
	}
}

// try is one read-modify-write of update.
func (s *stateStore) try(ctx context.Context, fn func(st *stateSnapshot) error) error {
	recs, version, done, err := s.objs.load(ctx)
	if err != nil {
		return err
	}
	defer done()
	st := &stateSnapshot{locations: map[string]*locationState{}, changed: map[string]bool{}}
	for _, r := range recs {
		var ls locationState
		if err := json.Unmarshal(r.data, &ls); err != nil || ls.Location == "" || locationFile(ls.Location) != r.name {
			return errDamagedState(s.objs.where(r.name))
		}
		if ls.Datasets == nil {
			ls.Datasets = map[string]*datasetRecord{}
		}
		if ls.Ledger == nil {
			ls.Ledger = map[string]*ledgerEntry{}
		}
		st.locations[ls.Location] = &ls
	}
	if err := fn(st); err != nil {
		return err
	}
	if len(st.changed) == 0 {
		return nil
	}
	var changed []stateRecord
	for _, loc := range sortedKeys(st.changed) {
		b, err := json.MarshalIndent(st.locations[loc], "", "  ")
		if err != nil {
			return err
		}
		changed = append(changed, stateRecord{name: locationFile(loc), data: b})
	}
	if err := s.objs.save(ctx, recs, changed, version); err != nil {
		if errors.Is(err, blob.ErrVersionChanged) {
			return err
		}
		return fmt.Errorf("write the runner's state: %w", err)
	}
	return nil
}

// dirState is a state directory, locked across processes while in use.
type dirState struct{ dir string }

func (d dirState) where(name string) string {
	if name == "" {
		return d.dir
	}
	return filepath.Join(d.dir, "locations", name)
}

func (d dirState) load(ctx context.Context) ([]stateRecord, string, func(), error) {
	dir := filepath.Join(d.dir, "locations")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", nil, fmt.Errorf("the runner's state directory %s: %w", d.dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(d.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- the runner's own state directory
	if err != nil {
		return nil, "", nil, fmt.Errorf("the runner's state directory %s: %w", d.dir, err)
	}
	if err := lockFile(lock); err != nil {
		_ = lock.Close()
		return nil, "", nil, fmt.Errorf("lock the runner's state %s: %w", d.dir, err)
	}
	done := func() { _ = unlockFile(lock); _ = lock.Close() } // closing releases it too
	entries, err := os.ReadDir(dir)
	if err != nil {
		done()
		return nil, "", nil, fmt.Errorf("read the runner's state %s: %w", dir, err)
	}
	var recs []stateRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name())) // #nosec G304 -- the runner's own state directory
		if err != nil {
			done()
			return nil, "", nil, fmt.Errorf("read the runner's state %s: %w", d.where(e.Name()), err)
		}
		recs = append(recs, stateRecord{name: e.Name(), data: b})
	}
	return recs, "", done, nil
}

// save writes the changed files unconditionally: the directory is locked.
func (d dirState) save(ctx context.Context, loaded, changed []stateRecord, version string) error {
	for _, r := range changed {
		if err := writeFileAtomic(d.where(r.name), r.data); err != nil {
			return err
		}
	}
	return nil
}

// cloudState is the runner's record in its cloud storage, one object,
// <storage root>/.silo/runner-state/state.json: in the data owner's own
// bucket or container, so that it outlives the machine or container the
// runner runs on. One object, so that one conditional write covers every
// location an update read.
type cloudState struct {
	recs blob.Records
	root blob.URI // the storage root
	key  string   // the object's key
}

// cloudStateObject is where, under a cloud storage root, the runner keeps
// its record.
const cloudStateObject = blob.ReservedFolder + "/runner-state/state.json"

// cloudDoc is the cloud object: each location's record, as a state
// directory's file holds it, by file name.
type cloudDoc struct {
	Locations map[string]json.RawMessage `json:"locations"`
}

// openCloudState opens the record of a runner whose storage root is root.
func openCloudState(ctx context.Context, root string, cfg blob.Config) (cloudState, error) {
	u, err := blob.ParseURI(root)
	if err != nil {
		return cloudState{}, fmt.Errorf("the runner's storage root: %s", silo.ErrorMessage(err))
	}
	store, err := blob.Open(ctx, u, cfg)
	if err != nil {
		return cloudState{}, err
	}
	recs, ok := store.(blob.Records)
	if !ok {
		return cloudState{}, fmt.Errorf("the runner cannot keep its state in %s: give it --state-dir DIR", root)
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return cloudState{recs: recs, root: u, key: prefix + cloudStateObject}, nil
}

// where is the object's URI, whichever record is meant: the object is
// what a person restores or removes.
func (c cloudState) where(string) string {
	return blob.URI{Scheme: c.root.Scheme, Bucket: c.root.Bucket, Path: c.key}.String()
}

func (c cloudState) load(ctx context.Context) ([]stateRecord, string, func(), error) {
	b, version, err := c.recs.GetRecord(ctx, c.key)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return nil, "", func() {}, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("read the runner's state: %w", err)
	}
	var doc cloudDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, "", nil, errDamagedState(c.where(""))
	}
	var recs []stateRecord
	for _, name := range sortedKeys(doc.Locations) {
		recs = append(recs, stateRecord{name: name, data: doc.Locations[name]})
	}
	return recs, version, func() {}, nil
}

func (c cloudState) save(ctx context.Context, loaded, changed []stateRecord, version string) error {
	doc := cloudDoc{Locations: map[string]json.RawMessage{}}
	for _, r := range slices.Concat(loaded, changed) { // a changed record replaces the one loaded
		doc.Locations[r.name] = r.data
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return c.recs.PutRecord(ctx, c.key, b, version)
}

// locationFile names a location's record: a hash, since locations hold
// any characters.
func locationFile(loc string) string {
	sum := sha256.Sum256([]byte(loc))
	return hex.EncodeToString(sum[:16]) + ".json"
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) // #nosec G304 -- the runner's own state directory
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// forget removes dataset's record from every location where it was
// registered with uri (the data may be gone, so its location cannot be
// resolved again). The ledgers stay.
func (s *stateStore) forget(ctx context.Context, dataset, uri string) (int, error) {
	n := 0
	err := s.update(ctx, func(st *stateSnapshot) error {
		n = 0
		for loc, ls := range st.locations {
			if r, ok := ls.Datasets[dataset]; ok && r.URI == uri {
				delete(ls.Datasets, dataset)
				st.changed[loc] = true
				n++
			}
		}
		return nil
	})
	return n, err
}

// errDamagedState is the error of a record that cannot be read back, at
// where: the runner fails closed and says how to fix it.
func errDamagedState(where string) error {
	return fmt.Errorf("the runner's state %s is damaged, so the runner refuses all work on its data rather than forget a privacy record: restore it from a backup, or remove it if you accept losing its datasets' controls and privacy ledger", where)
}

// errNoState is returned when the runner has nowhere to keep its state.
var errNoState = errors.New("the runner has no state directory: start it with --state-dir DIR (or --storage-root DIR)")

// defaultStateDir is where a runner keeps its state without --state-dir:
// .silo under a local storage root (hidden, and never data), else in the
// user's configuration directory.
func defaultStateDir(storageRoot string) (string, error) {
	if storageRoot != "" && !strings.Contains(storageRoot, "://") {
		return filepath.Join(storageRoot, ".silo"), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", errNoState
	}
	return filepath.Join(dir, "silo", "runner-state"), nil
}

// stateWhere names where the runner keeps its state, for its log.
func (c *Config) stateWhere() string {
	if dir := c.stateDir(); dir != "" {
		return dir
	}
	if c.cloudState != nil {
		return c.cloudState.where("")
	}
	return "nowhere"
}
