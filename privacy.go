package silo

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
)

// Session types (SPEC §4).
const (
	SessionHFL = "hfl" // horizontal federated learning
	SessionEDA = "eda" // differentially private exploratory statistics
	SessionPRL = "prl" // private record linkage
	SessionVFL = "vfl" // vertical federated learning
)

// SessionTypes lists every session type.
var SessionTypes = []string{SessionHFL, SessionEDA, SessionPRL, SessionVFL}

// PrivacyControls are set by a dataset's custodian and enforced twice: by the
// server when a session is created, and by the runner before it touches the
// data — the runner is the data owner's last line of defence.
type PrivacyControls struct {
	AllowedSessionTypes []string `json:"allowed_session_types"`
	// AllowedUsers empty means every Model Builder.
	AllowedUsers               []string `json:"allowed_users"`
	RequireDifferentialPrivacy bool     `json:"require_differential_privacy"`
	MaxEpsilonPerSession       float64  `json:"max_epsilon_per_session"`
	EpsilonBudget              float64  `json:"epsilon_budget"`
	Delta                      float64  `json:"delta"`
	MinRecordsPerAggregate     int      `json:"min_records_per_aggregate"`
	// IdentifierColumns serve only record linkage: never features or outputs.
	IdentifierColumns []string `json:"identifier_columns"`
	// ExcludedColumns are never read.
	ExcludedColumns  []string `json:"excluded_columns"`
	AllowPredictions bool     `json:"allow_predictions"`
}

// DefaultPrivacyControls are the defaults every dataset starts from, allowing
// every session type there is. A server offers only the types it runs:
// it starts datasets from DefaultPrivacyControlsFor(its session types).
func DefaultPrivacyControls() PrivacyControls {
	return DefaultPrivacyControlsFor(SessionTypes)
}

// DefaultPrivacyControlsFor are the default controls allowing sessionTypes:
// no user restriction, no DP requirement, at most ε 10 per session out of a
// budget of 50, δ 1e-5, aggregates over at least 10 records, no identifier
// or excluded columns, predictions allowed.
func DefaultPrivacyControlsFor(sessionTypes []string) PrivacyControls {
	return PrivacyControls{
		AllowedSessionTypes:    slices.Clone(sessionTypes),
		AllowedUsers:           []string{},
		MaxEpsilonPerSession:   10,
		EpsilonBudget:          50,
		Delta:                  1e-5,
		MinRecordsPerAggregate: 10,
		IdentifierColumns:      []string{},
		ExcludedColumns:        []string{},
		AllowPredictions:       true,
	}
}

// Validate checks p and normalises its lists (trimmed, de-duplicated, emails
// lower-cased), reporting every problem at once (see FieldErrors).
func (p *PrivacyControls) Validate() error {
	var v fieldErrors
	var err error
	if p.AllowedSessionTypes, err = cleanList(p.AllowedSessionTypes, "allowed_session_types", func(s string) error {
		if !slices.Contains(SessionTypes, s) {
			return fmt.Errorf("unknown session type %q: use %s", s, strings.Join(SessionTypes, ", "))
		}
		return nil
	}); err != nil {
		v.addErr(err)
	} else if len(p.AllowedSessionTypes) == 0 {
		v.add("privacy.allowed_session_types", "allow at least one session type (%s); to stop all use of a dataset, deregister it", strings.Join(SessionTypes, ", "))
	}
	for i, u := range p.AllowedUsers {
		if strings.TrimSpace(u) == "" || u == AllowNobody {
			continue // dropped by cleanList; "no one" is a value of its own
		}
		e, err := NormalizeEmail(u)
		if err != nil {
			v.add("privacy.allowed_users", "allowed_users: %s", ErrorMessage(err))
			break
		}
		p.AllowedUsers[i] = e
	}
	if !v.has("privacy.allowed_users") {
		if p.AllowedUsers, err = cleanList(p.AllowedUsers, "allowed_users", nil); err != nil {
			v.addErr(err)
		}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if !finite(p.MaxEpsilonPerSession) || p.MaxEpsilonPerSession <= 0 {
		v.add("privacy.max_epsilon_per_session", "max_epsilon_per_session must be a positive number (e.g. 10)")
	}
	if !finite(p.EpsilonBudget) || p.EpsilonBudget <= 0 {
		v.add("privacy.epsilon_budget", "epsilon_budget must be a positive number (e.g. 50)")
	}
	if !v.has("privacy.max_epsilon_per_session") && !v.has("privacy.epsilon_budget") && p.MaxEpsilonPerSession > p.EpsilonBudget {
		v.add("privacy.max_epsilon_per_session", "max_epsilon_per_session (%g) cannot exceed the dataset's epsilon_budget (%g)", p.MaxEpsilonPerSession, p.EpsilonBudget)
	}
	if !finite(p.Delta) || p.Delta <= 0 || p.Delta >= 1e-2 {
		v.add("privacy.delta", "delta must be above 0 and below 0.01 (typically 1e-5, well under 1/number of records)")
	}
	if p.MinRecordsPerAggregate < 1 || p.MinRecordsPerAggregate > 1_000_000 {
		v.add("privacy.min_records_per_aggregate", "min_records_per_aggregate must be between 1 and 1000000 (e.g. 10)")
	}
	if p.IdentifierColumns, err = cleanList(p.IdentifierColumns, "identifier_columns", nonEmptyColumn); err != nil {
		v.addErr(err)
	}
	if p.ExcludedColumns, err = cleanList(p.ExcludedColumns, "excluded_columns", nonEmptyColumn); err != nil {
		v.addErr(err)
	}
	for _, c := range p.IdentifierColumns {
		if slices.Contains(p.ExcludedColumns, c) {
			v.add("privacy.identifier_columns", "column %q is both an identifier and excluded: excluded columns are never read, so it cannot serve record linkage; choose one", c)
			break
		}
	}
	return v.err()
}

func nonEmptyColumn(s string) error {
	if len(s) > 256 {
		return fmt.Errorf("column name %.40q… is longer than 256 characters", s)
	}
	return nil
}

// cleanList trims, drops empty and duplicate entries and checks each.
func cleanList(in []string, field string, check func(string) error) ([]string, error) {
	out := []string{}
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" || slices.Contains(out, s) {
			continue
		}
		if check != nil {
			if err := check(s); err != nil {
				return nil, FieldErrorf("privacy."+field, "%s: %v", field, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// AllowsUser reports whether email may use the dataset in a session.
func (p *PrivacyControls) AllowsUser(email string) bool {
	return len(p.AllowedUsers) == 0 || slices.Contains(p.AllowedUsers, strings.ToLower(email))
}

// AllowsSessionType reports whether sessions of type t may use the dataset.
func (p *PrivacyControls) AllowsSessionType(t string) bool {
	return slices.Contains(p.AllowedSessionTypes, t)
}

// AllowNobody is the AllowedUsers of controls merged from sources that each
// name users with none in common: no one may use the data. An empty list
// already means everyone, so "no one" needs a value of its own; it is not an
// email, so no user matches it and no custodian can set it.
const AllowNobody = "(nobody)"

// Merge returns the strictest of p and q, field by field: the session types
// and users both allow (an empty user list allows everyone, so it yields to
// the other list; two lists with no one in common allow AllowNobody),
// differential privacy if either requires it, the smaller epsilons and
// delta, the larger min_records_per_aggregate, every identifier and excluded
// column of either (a column excluded by one and an identifier in the other
// is excluded: never read is stricter than linkage only), and predictions
// only if both allow them.
//
// A zero epsilon, budget, delta or min_records means "not set" (valid
// controls have none; a policy rule's floor may leave them out), so Merge
// with a partial floor tightens only what the floor sets.
func (p PrivacyControls) Merge(q PrivacyControls) PrivacyControls {
	out := PrivacyControls{
		AllowedSessionTypes:        []string{},
		AllowedUsers:               mergeUsers(p.AllowedUsers, q.AllowedUsers),
		RequireDifferentialPrivacy: p.RequireDifferentialPrivacy || q.RequireDifferentialPrivacy,
		MaxEpsilonPerSession:       minSet(p.MaxEpsilonPerSession, q.MaxEpsilonPerSession),
		EpsilonBudget:              minSet(p.EpsilonBudget, q.EpsilonBudget),
		Delta:                      minSet(p.Delta, q.Delta),
		MinRecordsPerAggregate:     max(p.MinRecordsPerAggregate, q.MinRecordsPerAggregate),
		ExcludedColumns:            union(p.ExcludedColumns, q.ExcludedColumns),
		AllowPredictions:           p.AllowPredictions && q.AllowPredictions,
	}
	for _, t := range p.AllowedSessionTypes {
		if slices.Contains(q.AllowedSessionTypes, t) && !slices.Contains(out.AllowedSessionTypes, t) {
			out.AllowedSessionTypes = append(out.AllowedSessionTypes, t)
		}
	}
	out.IdentifierColumns = []string{}
	for _, c := range union(p.IdentifierColumns, q.IdentifierColumns) {
		if !slices.Contains(out.ExcludedColumns, c) {
			out.IdentifierColumns = append(out.IdentifierColumns, c)
		}
	}
	return out
}

func mergeUsers(a, b []string) []string {
	switch {
	case len(a) == 0:
		return append([]string{}, b...)
	case len(b) == 0:
		return append([]string{}, a...)
	}
	out := []string{}
	for _, u := range a {
		if slices.Contains(b, u) && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return []string{AllowNobody}
	}
	return out
}

// minSet is the smaller of two numbers, a number ≤ 0 counting as not set.
func minSet(a, b float64) float64 {
	switch {
	case !(a > 0):
		return b
	case !(b > 0):
		return a
	}
	return math.Min(a, b)
}

func union(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// PrivacySource is one set of controls that binds some data, and who set it
// ("dataset hospital_a", "policy rule crm (s3://bank.silo/crm/)").
type PrivacySource struct {
	Name     string
	Controls PrivacyControls
}

// EffectivePrivacy is what binds a dataset's data: the strictest of its own
// controls, those of every other live dataset on the same data, and its
// runner's policy — with, for each field, who made it that strict.
type EffectivePrivacy struct {
	Controls PrivacyControls `json:"controls"`
	// Sources names, by field (its JSON name), the sources that set the
	// field's value: the first source (the dataset itself) unless another
	// tightened it; for lists, every source that added to or cut them.
	Sources map[string][]string `json:"sources"`
}

// privacyFields lists the fields of PrivacyControls by JSON name, with
// whether a value leaves the field unrestricted (lists merged by union or
// intersection: a source that then changes it sets it alone).
var privacyFields = []struct {
	name  string
	get   func(p *PrivacyControls) any
	loose func(p *PrivacyControls) bool
}{
	{"allowed_session_types", func(p *PrivacyControls) any { return p.AllowedSessionTypes },
		func(p *PrivacyControls) bool { return len(p.AllowedSessionTypes) == len(SessionTypes) }},
	{"allowed_users", func(p *PrivacyControls) any { return p.AllowedUsers }, func(p *PrivacyControls) bool { return len(p.AllowedUsers) == 0 }},
	{"require_differential_privacy", func(p *PrivacyControls) any { return p.RequireDifferentialPrivacy }, nil},
	{"max_epsilon_per_session", func(p *PrivacyControls) any { return p.MaxEpsilonPerSession }, nil},
	{"epsilon_budget", func(p *PrivacyControls) any { return p.EpsilonBudget }, nil},
	{"delta", func(p *PrivacyControls) any { return p.Delta }, nil},
	{"min_records_per_aggregate", func(p *PrivacyControls) any { return p.MinRecordsPerAggregate }, nil},
	{"identifier_columns", func(p *PrivacyControls) any { return p.IdentifierColumns }, func(p *PrivacyControls) bool { return len(p.IdentifierColumns) == 0 }},
	{"excluded_columns", func(p *PrivacyControls) any { return p.ExcludedColumns }, func(p *PrivacyControls) bool { return len(p.ExcludedColumns) == 0 }},
	{"allow_predictions", func(p *PrivacyControls) any { return p.AllowPredictions }, nil},
}

// PrivacyFieldNames lists the fields of PrivacyControls by JSON name, in
// the order pages show them.
func PrivacyFieldNames() []string {
	out := make([]string, len(privacyFields))
	for i, f := range privacyFields {
		out[i] = f.name
	}
	return out
}

// Strictest merges sources, first to last, into the controls that bind the
// data, recording who set each field. The first source is normally the
// dataset's own controls: it keeps every field no later source tightened.
func Strictest(sources ...PrivacySource) EffectivePrivacy {
	if len(sources) == 0 {
		return EffectivePrivacy{Controls: DefaultPrivacyControls(), Sources: map[string][]string{}}
	}
	eff := EffectivePrivacy{Controls: sources[0].Controls.Merge(sources[0].Controls), Sources: map[string][]string{}}
	for _, f := range privacyFields {
		eff.Sources[f.name] = []string{sources[0].Name}
	}
	for _, src := range sources[1:] {
		next := eff.Controls.Merge(src.Controls)
		for _, f := range privacyFields {
			if reflect.DeepEqual(f.get(&eff.Controls), f.get(&next)) {
				continue
			}
			if f.loose == nil || f.loose(&eff.Controls) {
				eff.Sources[f.name] = []string{src.Name}
			} else if !slices.Contains(eff.Sources[f.name], src.Name) {
				eff.Sources[f.name] = append(eff.Sources[f.name], src.Name)
			}
		}
		eff.Controls = next
	}
	return eff
}

// privacyFieldHelp is each PrivacyControls field in a line; 'silo datasets
// register -h' shows it, docs/privacy.md has the whole story.
// TestPrivacyFieldHelp keeps it complete.
var privacyFieldHelp = map[string]string{
	"allowed_session_types":        "session types that may use the dataset, of " + strings.Join(SessionTypes, ", "),
	"allowed_users":                "emails of the Model Builders who may use it; empty: every Model Builder",
	"require_differential_privacy": "true: sessions must train with differential privacy",
	"max_epsilon_per_session":      "the most epsilon one session may spend on it",
	"epsilon_budget":               "the most epsilon all sessions together may spend on it",
	"delta":                        "the delta of differential privacy; above 0 and below 0.01",
	"min_records_per_aggregate":    "the fewest records any statistic or model update may cover (1–1000000)",
	"identifier_columns":           "columns used only for record linkage: never features, targets or outputs",
	"excluded_columns":             "columns the runner never reads",
	"allow_predictions":            "true: trained models may predict on it (results stay on the runner)",
}

// PrivacyFieldHelp describes a PrivacyControls field (by its JSON name).
func PrivacyFieldHelp(field string) string { return privacyFieldHelp[field] }
