package silo

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// RunnerPolicy is the data owner's policy, pinned on its runner with
// `silo runner --policy FILE`: rules by storage prefix, each a floor of
// privacy controls that no server, admin or custodian can loosen. The runner
// applies the strictest of the rules covering the data, every live dataset
// on the same data, and what the server sent; it reports the policy in its
// heartbeats so that users see what binds their data.
type RunnerPolicy struct {
	Rules []PolicyRule `json:"rules"`
	// RefuseUnmatched makes the runner refuse all data that no rule covers.
	RefuseUnmatched bool `json:"refuse_unmatched,omitempty"`
	// Digest is the SHA-256 of the policy file, set by the runner, so an
	// operator can check which policy a runner holds.
	Digest string `json:"digest,omitempty"`
}

// PolicyRule is one rule of a RunnerPolicy: a storage prefix and the floor
// of privacy controls for the data under it. Fields left out do not
// restrict; allow_predictions is true unless given.
type PolicyRule struct {
	// Name identifies the rule in refusals; optional.
	Name string `json:"name,omitempty"`
	// Prefix is the storage the rule covers: file:///srv/a/,
	// s3://bank.silo/crm/ or azure://container/path/. A prefix covers
	// itself and everything below it, by whole path segments.
	Prefix                     string   `json:"prefix"`
	AllowedSessionTypes        []string `json:"allowed_session_types,omitempty"`
	AllowedUsers               []string `json:"allowed_users,omitempty"`
	RequireDifferentialPrivacy bool     `json:"require_differential_privacy,omitempty"`
	MaxEpsilonPerSession       float64  `json:"max_epsilon_per_session,omitempty"`
	EpsilonBudget              float64  `json:"epsilon_budget,omitempty"`
	Delta                      float64  `json:"delta,omitempty"`
	MinRecordsPerAggregate     int      `json:"min_records_per_aggregate,omitempty"`
	IdentifierColumns          []string `json:"identifier_columns,omitempty"`
	ExcludedColumns            []string `json:"excluded_columns,omitempty"`
	AllowPredictions           *bool    `json:"allow_predictions,omitempty"`
}

// Title names the rule in messages: its name, else its number (1-based i),
// and its prefix.
func (r *PolicyRule) Title(i int) string {
	if r.Name != "" {
		return fmt.Sprintf("policy rule %q (%s)", r.Name, r.Prefix)
	}
	return fmt.Sprintf("policy rule %d (%s)", i+1, r.Prefix)
}

// Floor returns the rule as privacy controls to Merge with others: what it
// leaves out does not restrict (every session type and user, zero numbers,
// predictions allowed).
func (r *PolicyRule) Floor() PrivacyControls {
	p := PrivacyControls{
		AllowedSessionTypes:        slices.Clone(SessionTypes),
		AllowedUsers:               append([]string{}, r.AllowedUsers...),
		RequireDifferentialPrivacy: r.RequireDifferentialPrivacy,
		MaxEpsilonPerSession:       r.MaxEpsilonPerSession,
		EpsilonBudget:              r.EpsilonBudget,
		Delta:                      r.Delta,
		MinRecordsPerAggregate:     r.MinRecordsPerAggregate,
		IdentifierColumns:          append([]string{}, r.IdentifierColumns...),
		ExcludedColumns:            append([]string{}, r.ExcludedColumns...),
		AllowPredictions:           r.AllowPredictions == nil || *r.AllowPredictions,
	}
	if r.AllowedSessionTypes != nil {
		p.AllowedSessionTypes = append([]string{}, r.AllowedSessionTypes...)
	}
	return p
}

// Validate checks the rule's controls (the prefix's form is checked where
// storage URIs are parsed) and normalises its lists as PrivacyControls does.
// i is the rule's index, for messages.
func (r *PolicyRule) Validate(i int) error {
	where := fmt.Sprintf("rule %d", i+1)
	if r.Name != "" {
		where = fmt.Sprintf("rule %d (%q)", i+1, r.Name)
	}
	bad := func(format string, args ...any) error {
		return Errorf(EINVALID, "policy %s: %s", where, fmt.Sprintf(format, args...))
	}
	r.Name, r.Prefix = strings.TrimSpace(r.Name), strings.TrimSpace(r.Prefix)
	if len(r.Name) > 64 {
		return bad("name is longer than 64 characters")
	}
	if r.Prefix == "" {
		return bad("prefix is required: the storage the rule covers, e.g. file:///srv/a/ or s3://bank.silo/crm/")
	}
	if r.AllowedSessionTypes != nil && len(r.AllowedSessionTypes) == 0 {
		return bad("allowed_session_types is empty: list the session types allowed (hfl, eda, prl, vfl), or leave the field out to allow all; to refuse all use, leave the data out of the runner's storage")
	}
	for _, t := range r.AllowedSessionTypes {
		if !slices.Contains(SessionTypes, t) {
			return bad("unknown session type %q in allowed_session_types: use hfl, eda, prl or vfl", t)
		}
	}
	for k, u := range r.AllowedUsers {
		e, err := NormalizeEmail(u)
		if err != nil {
			return bad("allowed_users: %s", ErrorMessage(err))
		}
		r.AllowedUsers[k] = e
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(r.MaxEpsilonPerSession) || r.MaxEpsilonPerSession < 0:
		return bad("max_epsilon_per_session must be a positive number (e.g. 2), or left out")
	case !finite(r.EpsilonBudget) || r.EpsilonBudget < 0:
		return bad("epsilon_budget must be a positive number (e.g. 20), or left out")
	case r.MaxEpsilonPerSession > 0 && r.EpsilonBudget > 0 && r.MaxEpsilonPerSession > r.EpsilonBudget:
		return bad("max_epsilon_per_session (%g) cannot exceed epsilon_budget (%g)", r.MaxEpsilonPerSession, r.EpsilonBudget)
	case !finite(r.Delta) || r.Delta < 0 || r.Delta >= 1e-2:
		return bad("delta must be above 0 and below 0.01 (typically 1e-6), or left out")
	case r.MinRecordsPerAggregate < 0 || r.MinRecordsPerAggregate > 1_000_000:
		return bad("min_records_per_aggregate must be between 1 and 1000000, or left out")
	}
	for _, cols := range []*[]string{&r.IdentifierColumns, &r.ExcludedColumns} {
		var clean []string
		for _, c := range *cols {
			c = strings.TrimSpace(c)
			if c == "" || len(c) > 256 {
				return bad("column names must be 1 to 256 characters")
			}
			if !slices.Contains(clean, c) {
				clean = append(clean, c)
			}
		}
		*cols = clean
	}
	if r.AllowedSessionTypes == nil && len(r.AllowedUsers) == 0 && !r.RequireDifferentialPrivacy && r.MaxEpsilonPerSession == 0 && r.EpsilonBudget == 0 &&
		r.Delta == 0 && r.MinRecordsPerAggregate == 0 && len(r.IdentifierColumns) == 0 && len(r.ExcludedColumns) == 0 && r.AllowPredictions == nil {
		return bad("the rule sets no control: give at least one of allowed_session_types, allowed_users, require_differential_privacy, max_epsilon_per_session, epsilon_budget, delta, min_records_per_aggregate, identifier_columns, excluded_columns, allow_predictions")
	}
	return nil
}
