package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/dp"
)

// The runner is the data owner's last line of defence. Before it touches
// data it resolves the dataset to its data's canonical location and applies
// the strictest of: the controls the server sent, every live dataset
// registered on that location or on one overlapping it (as connected on
// this runner), and the rules of its own policy covering it. A dataset
// registered again under another name, by anyone, therefore never loosens
// anything, and shares the same epsilon ledger.

// binding is a dataset resolved to its data's location, with what binds it
// there.
type binding struct {
	dataset  string
	location string
	eff      silo.EffectivePrivacy
}

// refused says why the runner will not do something, naming the sources
// that set the control behind the refusal.
func (b *binding) refused(field, format string, args ...any) error {
	return fmt.Errorf("refused by the runner: %s (%s set by %s)", fmt.Sprintf(format, args...), field, strings.Join(b.eff.Sources[field], ", "))
}

// locate returns the canonical location of the data uri names on this
// runner: for local files the real path (links resolved, confined to the
// storage root, never the runner's own state); for S3 and Azure the bucket
// or container and the key or prefix.
func (c *Config) locate(ctx context.Context, uri string) (string, error) {
	u, err := blob.ParseURI(uri)
	if err != nil {
		return "", err
	}
	if u.Scheme != blob.SchemeFile {
		return u.Location(), blob.CheckNotReserved(u)
	}
	store, err := blob.Open(ctx, u, c.storage())
	if err != nil {
		return "", err
	}
	real, err := store.(*blob.FileStore).RealPath(u.Path)
	if err != nil {
		return "", err
	}
	return blob.URI{Scheme: blob.SchemeFile, Path: real}.Location(), nil
}

// storage is how the runner reaches its storage: file:// confined to the
// storage root, never into the state directory.
func (c *Config) storage() blob.Config {
	s := c.Storage
	s.FileRoot = c.StorageRoot
	if dir := c.localDir(); dir != "" {
		s.FileDeny = append(s.FileDeny, dir)
	}
	return s
}

// bind resolves a dataset and computes what binds it. sent is what the
// server sent for it. A connect (connecting) records sent as the dataset's
// controls on the location first; any other task needs the dataset to have
// been connected on this runner, at the same location.
func (c *Config) bind(ctx context.Context, dataset, uri string, sent silo.PrivacyControls, connecting bool) (*binding, error) {
	if err := sent.Validate(); err != nil {
		return nil, fmt.Errorf("refused by the runner: the privacy controls the server sent for dataset %s are invalid: %s", dataset, silo.ErrorMessage(err))
	}
	loc, err := c.locate(ctx, uri)
	if err != nil {
		return nil, userError(err)
	}
	rules, err := c.Policy.sources(loc)
	if err != nil {
		return nil, err
	}
	b := &binding{dataset: dataset, location: loc}
	var sources []silo.PrivacySource
	state, err := c.state(ctx)
	if err != nil {
		return nil, err
	}
	err = state.update(ctx, func(st *stateSnapshot) error {
		sources = []silo.PrivacySource{{Name: "dataset " + dataset, Controls: sent}}
		if connecting {
			st.location(loc).Datasets[dataset] = &datasetRecord{URI: uri, Controls: sent, UpdatedAt: time.Now().UTC()}
			st.changed[loc] = true
		} else if ls := st.locations[loc]; ls == nil || ls.Datasets[dataset] == nil {
			return fmt.Errorf("refused by the runner: dataset %s (%s) was never connected on this runner, or was deregistered: connect it first ('silo datasets connect %s')", dataset, loc, dataset)
		}
		for _, l := range sortedLocations(st) {
			if !blob.LocationsOverlap(loc, l.Location) {
				continue
			}
			for _, name := range sortedKeys(l.Datasets) {
				src := "dataset " + name
				switch {
				case name == dataset && l.Location == loc:
					src += " (as connected)"
				case l.Location != loc:
					src += " (on " + l.Location + ")"
				}
				sources = append(sources, silo.PrivacySource{Name: src, Controls: l.Datasets[name].Controls})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.eff = silo.Strictest(append(sources, rules...)...)
	return b, nil
}

func sortedLocations(st *stateSnapshot) []*locationState {
	out := make([]*locationState, 0, len(st.locations))
	for _, k := range sortedKeys(st.locations) {
		out = append(out, st.locations[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkUse binds a task's dataset and refuses a session type, a column or
// a use the effective controls forbid.
func (c *Config) checkUse(ctx context.Context, dataset, uri string, sent silo.PrivacyControls, sessionType string, columns ...string) (*binding, error) {
	b, err := c.bind(ctx, dataset, uri, sent, false)
	if err != nil {
		return nil, err
	}
	p := &b.eff.Controls
	if !p.AllowsSessionType(sessionType) {
		return nil, b.refused("allowed_session_types", "dataset %s does not allow %s sessions (allowed: %s)", dataset, sessionType, strings.Join(p.AllowedSessionTypes, ", "))
	}
	for _, col := range columns {
		if col == "" {
			continue
		}
		if slices.Contains(p.ExcludedColumns, col) {
			return nil, b.refused("excluded_columns", "column %s of dataset %s is excluded and is never read", col, dataset)
		}
		if slices.Contains(p.IdentifierColumns, col) {
			return nil, b.refused("identifier_columns", "column %s of dataset %s is an identifier: it serves record linkage only, never as a feature or target", col, dataset)
		}
	}
	return b, nil
}

// minRecords is the effective min_records_per_aggregate (at least 1).
func (b *binding) minRecords() int64 { return int64(max(b.eff.Controls.MinRecordsPerAggregate, 1)) }

// reserveEpsilon charges the location's ledger, before training, for seg
// more DP-SGD steps of session: the runner computes the epsilon itself from
// the steps it will run, and refuses a round that would take the session
// past max_epsilon_per_session or the location past its epsilon budget,
// whatever the server's ledger says. It returns the session's epsilon on
// the location after the round and a function that settles the charge to
// the steps really run (0 when training failed).
func (c *Config) reserveEpsilon(ctx context.Context, b *binding, session string, seg dp.Segment) (float64, func(steps int), error) {
	p := &b.eff.Controls
	var eps float64
	state, err := c.state(ctx)
	if err != nil {
		return 0, nil, err
	}
	err = state.update(ctx, func(st *stateSnapshot) error {
		var others []float64
		for _, l := range sortedLocations(st) {
			if !blob.LocationsOverlap(b.location, l.Location) {
				continue
			}
			for _, s := range sortedKeys(l.Ledger) {
				if s != session || l.Location != b.location {
					others = append(others, l.Ledger[s].Epsilon)
				}
			}
		}
		ls := st.location(b.location)
		entry := ls.Ledger[session]
		if entry == nil {
			entry = &ledgerEntry{}
		}
		segments := append(slices.Clone(entry.Segments), seg)
		eps = dp.EpsilonOf(segments, p.Delta)
		if math.IsInf(eps, 1) || math.IsNaN(eps) {
			return b.refused("require_differential_privacy", "the noise this session asks for (noise multiplier %g) gives no differential privacy guarantee on %s", seg.NoiseMultiplier, b.location)
		}
		if err := dp.CheckBudget(p.EpsilonBudget, p.MaxEpsilonPerSession, others, eps); err != nil {
			field := "epsilon_budget"
			if errors.Is(err, dp.ErrSessionLimit) {
				field = "max_epsilon_per_session"
			}
			return b.refused(field, "session %s would spend ε=%.4g on %s (δ=%g, counted by the runner from the %d DP-SGD steps it would have run): %v",
				session, eps, b.location, p.Delta, stepsOf(segments), err)
		}
		entry.Segments, entry.Delta, entry.Epsilon, entry.UpdatedAt = segments, p.Delta, eps, time.Now().UTC()
		ls.Ledger[session] = entry
		st.changed[b.location] = true
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	settle := func(steps int) {
		if steps == seg.Steps {
			return
		}
		// Settled even when the task was cancelled: the charge is what
		// stands otherwise.
		_ = state.update(context.WithoutCancel(ctx), func(st *stateSnapshot) error {
			entry := st.location(b.location).Ledger[session]
			if entry == nil || len(entry.Segments) == 0 {
				return nil
			}
			// Only fewer steps than charged are settled: a charge never
			// shrinks below what ran.
			last := &entry.Segments[len(entry.Segments)-1]
			last.Steps = min(last.Steps, max(steps, 0))
			entry.Epsilon = dp.EpsilonOf(entry.Segments, entry.Delta)
			st.changed[b.location] = true
			return nil
		})
	}
	return eps, settle, nil
}

func stepsOf(segments []dp.Segment) int {
	n := 0
	for _, s := range segments {
		n += s.Steps
	}
	return n
}

// state is the runner's state store: its state directory, else its cloud
// storage root.
func (c *Config) state(ctx context.Context) (*stateStore, error) {
	if dir := c.stateDir(); dir != "" {
		return newStateStore(dirState{dir}), nil
	}
	if c.CloudRoot == "" {
		return nil, errNoState
	}
	if c.cloudState == nil {
		cs, err := openCloudState(ctx, c.CloudRoot, c.Storage)
		if err != nil {
			return nil, err
		}
		return newStateStore(cs), nil
	}
	return newStateStore(*c.cloudState), nil
}
