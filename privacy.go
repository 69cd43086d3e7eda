package silo

import (
	"fmt"
	"math"
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

// DefaultPrivacyControls are SPEC §3's example, the starting point of every
// dataset.
func DefaultPrivacyControls() PrivacyControls {
	return PrivacyControls{
		AllowedSessionTypes:    slices.Clone(SessionTypes),
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
// lower-cased).
func (p *PrivacyControls) Validate() error {
	var err error
	if p.AllowedSessionTypes, err = cleanList(p.AllowedSessionTypes, "allowed_session_types", func(s string) error {
		if !slices.Contains(SessionTypes, s) {
			return fmt.Errorf("unknown session type %q: use hfl, eda, prl or vfl", s)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(p.AllowedSessionTypes) == 0 {
		return FieldErrorf("privacy.allowed_session_types", "allow at least one session type (hfl, eda, prl, vfl); to stop all use of a dataset, deregister it")
	}
	for i, u := range p.AllowedUsers {
		if strings.TrimSpace(u) == "" {
			continue // dropped by cleanList
		}
		e, err := NormalizeEmail(u)
		if err != nil {
			return FieldErrorf("privacy.allowed_users", "allowed_users: %s", ErrorMessage(err))
		}
		p.AllowedUsers[i] = e
	}
	if p.AllowedUsers, err = cleanList(p.AllowedUsers, "allowed_users", nil); err != nil {
		return err
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if !finite(p.MaxEpsilonPerSession) || p.MaxEpsilonPerSession <= 0 {
		return FieldErrorf("privacy.max_epsilon_per_session", "max_epsilon_per_session must be a positive number (e.g. 10)")
	}
	if !finite(p.EpsilonBudget) || p.EpsilonBudget <= 0 {
		return FieldErrorf("privacy.epsilon_budget", "epsilon_budget must be a positive number (e.g. 50)")
	}
	if p.MaxEpsilonPerSession > p.EpsilonBudget {
		return FieldErrorf("privacy.max_epsilon_per_session", "max_epsilon_per_session (%g) cannot exceed the dataset's epsilon_budget (%g)", p.MaxEpsilonPerSession, p.EpsilonBudget)
	}
	if !finite(p.Delta) || p.Delta <= 0 || p.Delta >= 1e-2 {
		return FieldErrorf("privacy.delta", "delta must be above 0 and below 0.01 (typically 1e-5, well under 1/number of records)")
	}
	if p.MinRecordsPerAggregate < 1 || p.MinRecordsPerAggregate > 1_000_000 {
		return FieldErrorf("privacy.min_records_per_aggregate", "min_records_per_aggregate must be between 1 and 1000000 (e.g. 10)")
	}
	if p.IdentifierColumns, err = cleanList(p.IdentifierColumns, "identifier_columns", nonEmptyColumn); err != nil {
		return err
	}
	if p.ExcludedColumns, err = cleanList(p.ExcludedColumns, "excluded_columns", nonEmptyColumn); err != nil {
		return err
	}
	for _, c := range p.IdentifierColumns {
		if slices.Contains(p.ExcludedColumns, c) {
			return FieldErrorf("privacy.identifier_columns", "column %q is both an identifier and excluded: excluded columns are never read, so it cannot serve record linkage; choose one", c)
		}
	}
	return nil
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
