package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/dp"
)

// The runner's own record of what binds its data, in its state directory,
// never sent anywhere. It is kept by data location, never by a dataset's
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

// stateStore reads and writes a state directory: one at a time within the
// process (a mutex per directory) and across processes (a file lock), since
// two runners may share a storage root.
type stateStore struct {
	dir string
	mu  *sync.Mutex
}

var (
	stateMusMu sync.Mutex
	stateMus   = map[string]*sync.Mutex{}
)

func newStateStore(dir string) *stateStore {
	stateMusMu.Lock()
	defer stateMusMu.Unlock()
	mu, ok := stateMus[dir]
	if !ok {
		mu = &sync.Mutex{}
		stateMus[dir] = mu
	}
	return &stateStore{dir: dir, mu: mu}
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

// update runs fn on the state under the lock and writes back the
// locations fn marked changed.
func (s *stateStore) update(fn func(st *stateSnapshot) error) error {
	if s.dir == "" {
		return errNoState
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := filepath.Join(s.dir, "locations")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("the runner's state directory %s: %w", s.dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- the runner's own state directory
	if err != nil {
		return fmt.Errorf("the runner's state directory %s: %w", s.dir, err)
	}
	defer lock.Close()
	if err := lockFile(lock); err != nil {
		return fmt.Errorf("lock the runner's state %s: %w", s.dir, err)
	}
	defer func() { _ = unlockFile(lock) }() // closing releases it too
	st := &stateSnapshot{locations: map[string]*locationState{}, changed: map[string]bool{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read the runner's state %s: %w", dir, err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path) // #nosec G304 -- the runner's own state directory
		if err != nil {
			return fmt.Errorf("read the runner's state %s: %w", path, err)
		}
		var ls locationState
		if err := json.Unmarshal(b, &ls); err != nil || ls.Location == "" || locationFile(ls.Location) != e.Name() {
			return fmt.Errorf("the runner's state file %s is damaged, so the runner refuses all work on its data rather than forget a privacy record: restore it from a backup, or remove it if you accept losing its datasets' controls and privacy ledger", path)
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
	for loc := range st.changed {
		if err := writeFileAtomic(filepath.Join(dir, locationFile(loc)), st.locations[loc]); err != nil {
			return fmt.Errorf("write the runner's state: %w", err)
		}
	}
	return nil
}

// locationFile names a location's record: a hash, since locations hold
// any characters.
func locationFile(loc string) string {
	sum := sha256.Sum256([]byte(loc))
	return hex.EncodeToString(sum[:16]) + ".json"
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
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
func (s *stateStore) forget(dataset, uri string) (int, error) {
	n := 0
	err := s.update(func(st *stateSnapshot) error {
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
