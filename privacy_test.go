package silo

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPrivacyControlsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p *PrivacyControls)
		field  string // "" for valid
		msg    string
	}{
		{"defaults", func(p *PrivacyControls) {}, "", ""},
		{"no session types", func(p *PrivacyControls) { p.AllowedSessionTypes = nil }, "privacy.allowed_session_types", "at least one"},
		{"unknown session type", func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"hfl", "gan"} }, "privacy.allowed_session_types", `unknown session type "gan"`},
		{"bad user", func(p *PrivacyControls) { p.AllowedUsers = []string{"bob"} }, "privacy.allowed_users", "not a valid email"},
		{"zero epsilon", func(p *PrivacyControls) { p.MaxEpsilonPerSession = 0 }, "privacy.max_epsilon_per_session", "positive"},
		{"negative budget", func(p *PrivacyControls) { p.EpsilonBudget = -1 }, "privacy.epsilon_budget", "positive"},
		{"per-session above budget", func(p *PrivacyControls) { p.MaxEpsilonPerSession, p.EpsilonBudget = 20, 10 }, "privacy.max_epsilon_per_session", "cannot exceed"},
		{"delta too big", func(p *PrivacyControls) { p.Delta = 0.5 }, "privacy.delta", "below 0.01"},
		{"delta zero", func(p *PrivacyControls) { p.Delta = 0 }, "privacy.delta", "above 0"},
		{"min records zero", func(p *PrivacyControls) { p.MinRecordsPerAggregate = 0 }, "privacy.min_records_per_aggregate", "between 1"},
		{"identifier also excluded", func(p *PrivacyControls) { p.IdentifierColumns, p.ExcludedColumns = []string{"id"}, []string{"id"} }, "privacy.identifier_columns", "both an identifier and excluded"},
		{"boundary epsilon equal budget", func(p *PrivacyControls) { p.MaxEpsilonPerSession, p.EpsilonBudget = 5, 5 }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPrivacyControls()
			tc.change(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error = %#v, want field %s containing %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestPrivacyControlsNormalise(t *testing.T) {
	p := DefaultPrivacyControls()
	p.AllowedUsers = []string{" Ada@Example.org", "ada@example.org", ""}
	p.IdentifierColumns = []string{"id", " id ", "mrn"}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ada@example.org"}, p.AllowedUsers); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"id", "mrn"}, p.IdentifierColumns); diff != "" {
		t.Error(diff)
	}
	if !p.AllowsUser("ADA@example.org") || p.AllowsUser("eve@example.org") {
		t.Error("AllowsUser")
	}
	open := DefaultPrivacyControls()
	if !open.AllowsUser("anyone@example.org") || !open.AllowsSessionType(SessionHFL) {
		t.Error("empty allowed_users must allow every Model Builder")
	}
}

func TestDatasetSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		spec  DatasetSpec
		field string
	}{
		{DatasetSpec{Name: "hospital_a", Runner: "r1", URI: "file:///data/a.csv"}, ""},
		{DatasetSpec{Name: "Hospital A", Runner: "r1", URI: "file:///data/a.csv"}, "name"},
		{DatasetSpec{Name: "ab", Runner: "r1", URI: "file:///data/a.csv"}, "name"},
		{DatasetSpec{Name: "hospital_a", URI: "file:///data/a.csv"}, "runner"},
		{DatasetSpec{Name: "hospital_a", Runner: "r1"}, "uri"},
		{DatasetSpec{Name: "hospital_a", Runner: "r1", URI: "file:///a", Privacy: &PrivacyControls{}}, "privacy.allowed_session_types"},
	} {
		err := tc.spec.Validate()
		if got := fieldOf(err); got != tc.field {
			t.Errorf("%+v: field %q (%v), want %q", tc.spec, got, err, tc.field)
		}
	}
	s := DatasetSpec{Name: "hospital_a", Runner: "r1", URI: "file:///a"}
	if s.Validate(); s.Privacy == nil || s.Privacy.MinRecordsPerAggregate != 10 {
		t.Fatalf("default privacy controls not applied: %+v", s.Privacy)
	}
}

func fieldOf(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Field
	}
	if err != nil {
		return "?"
	}
	return ""
}
