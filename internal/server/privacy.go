package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/sqlstore"
)

// Privacy controls bind data, not a dataset's name. The runner enforces
// this whatever the server says (internal/runner/guard.go); the server
// applies the same rule when a session is created, so that users get a
// refusal up front with the reason, and shows what binds each dataset:
// the strictest of its own controls, those of every other live dataset on
// the same runner whose data overlaps it (the same file, a folder holding
// it, a file inside it), and the rules of the runner's policy that cover
// it. Every dataset ever registered on overlapping data, live or not,
// shares one epsilon budget.
//
// The server knows locations only as written (it cannot resolve links on a
// runner's machine); the runner resolves them, so a path through a link is
// bound there too.

// dataLocation is the location of a dataset's data as written.
func dataLocation(d *sqlstore.StoredDataset) string {
	u, err := blob.ParseURI(d.URI)
	if err != nil {
		return d.URI // registered datasets always parse; be strict if not
	}
	return u.Location()
}

// dataBinding is what the server knows binds a dataset's data.
type dataBinding struct {
	eff silo.EffectivePrivacy
	// sameData lists every dataset, live or deregistered, on data that
	// overlaps it, itself included: they share one epsilon budget.
	sameData []*sqlstore.StoredDataset
	// refused, when set, is why the runner's policy refuses the data.
	refused string
}

// bindData computes d's dataBinding. onRunner lists the runner's datasets
// (ListRunnerDatasets), or nil to load them.
func (s *Server) bindData(ctx context.Context, d *sqlstore.StoredDataset, onRunner []*sqlstore.StoredDataset) (*dataBinding, error) {
	if onRunner == nil {
		var err error
		if onRunner, err = s.db.ListRunnerDatasets(ctx, d.RunnerID); err != nil {
			return nil, err
		}
	}
	loc := dataLocation(d)
	b := &dataBinding{}
	sources := []silo.PrivacySource{{Name: "dataset " + d.Name, Controls: d.Privacy}}
	for _, o := range onRunner {
		ol := dataLocation(o)
		if !blob.LocationsOverlap(loc, ol) {
			continue
		}
		b.sameData = append(b.sameData, o)
		if o.ID == d.ID || o.Deregistered {
			continue
		}
		name := "dataset " + o.Name
		switch {
		case ol == loc:
			name += " (the same data)"
		case blob.LocationWithin(loc, ol):
			name += " (a folder holding it)"
		default:
			name += " (data inside it)"
		}
		sources = append(sources, silo.PrivacySource{Name: name, Controls: o.Privacy})
	}
	rn, err := s.db.FindRunner(ctx, d.Runner)
	if err != nil {
		return nil, err
	}
	if pol := rn.Policy; pol != nil {
		matched := false
		for i := range pol.Rules {
			r := &pol.Rules[i]
			u, err := blob.ParseURI(r.Prefix)
			if err != nil || !blob.LocationsOverlap(loc, u.Location()) {
				continue
			}
			matched = true
			sources = append(sources, silo.PrivacySource{Name: r.Title(i) + " of runner " + rn.Name, Controls: r.Floor()})
		}
		if !matched && pol.RefuseUnmatched {
			b.refused = fmt.Sprintf("runner %s's policy covers no storage holding %s, and refuses data outside its rules", rn.Name, loc)
		}
	}
	b.eff = silo.Strictest(sources...)
	return b, nil
}

// spent returns what every session has spent on the binding's data,
// except the session given, one entry per dataset and session.
func (s *Server) spent(ctx context.Context, b *dataBinding, exceptSession string) ([]float64, error) {
	var out []float64
	for _, o := range b.sameData {
		e, err := s.db.LedgerSpent(ctx, o.ID, exceptSession)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	return out, nil
}

// DatasetView is the API's view of a dataset: with what binds its data and
// the epsilon spent on that data by any dataset naming it, and reserved by
// running sessions. The UI shows it.
func (s *Server) DatasetView(ctx context.Context, d *sqlstore.StoredDataset) (*silo.Dataset, error) {
	return s.datasetView(ctx, d, nil)
}

func (s *Server) datasetView(ctx context.Context, d *sqlstore.StoredDataset, onRunner []*sqlstore.StoredDataset) (*silo.Dataset, error) {
	b, err := s.bindData(ctx, d, onRunner)
	if err != nil {
		return nil, err
	}
	spent, err := s.spent(ctx, b, "")
	if err != nil {
		return nil, err
	}
	v := d.Dataset
	v.Effective = &b.eff
	v.EpsilonSpent = 0
	for _, e := range spent {
		v.EpsilonSpent += e
	}
	for _, o := range b.sameData {
		r, err := s.db.LedgerReserved(ctx, o.ID)
		if err != nil {
			return nil, err
		}
		v.EpsilonReserved += r
	}
	return &v, nil
}

// sourcesOf names who set a field of effective controls, for messages.
func sourcesOf(b *dataBinding, field string) string {
	return strings.Join(b.eff.Sources[field], ", ")
}
