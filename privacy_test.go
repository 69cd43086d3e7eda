package silo

import (
	"slices"
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

// TestPrivacyMerge: the strictest of two sets of controls, field by field.
func TestPrivacyMerge(t *testing.T) {
	base := DefaultPrivacyControls()
	with := func(change func(p *PrivacyControls)) PrivacyControls {
		p := DefaultPrivacyControls()
		change(&p)
		return p
	}
	for _, tc := range []struct {
		name string
		a, b PrivacyControls
		want PrivacyControls
	}{
		{"same", base, base, base},
		{"session types intersect",
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"hfl", "eda"} }),
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"eda", "prl"} }),
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"eda"} })},
		{"disjoint session types allow none",
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"hfl"} }),
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{"eda"} }),
			with(func(p *PrivacyControls) { p.AllowedSessionTypes = []string{} })},
		{"everyone yields to a list",
			base,
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"ada@example.org"} }),
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"ada@example.org"} })},
		{"a list yields to nobody else: users intersect",
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"ada@example.org", "bob@example.org"} }),
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"bob@example.org", "cy@example.org"} }),
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"bob@example.org"} })},
		{"disjoint users allow no one (not everyone)",
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"ada@example.org"} }),
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{"bob@example.org"} }),
			with(func(p *PrivacyControls) { p.AllowedUsers = []string{AllowNobody} })},
		{"DP required by either",
			base,
			with(func(p *PrivacyControls) { p.RequireDifferentialPrivacy = true }),
			with(func(p *PrivacyControls) { p.RequireDifferentialPrivacy = true })},
		{"smaller epsilons and delta, larger min records",
			with(func(p *PrivacyControls) {
				p.MaxEpsilonPerSession, p.EpsilonBudget, p.Delta, p.MinRecordsPerAggregate = 2, 50, 1e-6, 5
			}),
			with(func(p *PrivacyControls) {
				p.MaxEpsilonPerSession, p.EpsilonBudget, p.Delta, p.MinRecordsPerAggregate = 10, 20, 1e-5, 30
			}),
			with(func(p *PrivacyControls) {
				p.MaxEpsilonPerSession, p.EpsilonBudget, p.Delta, p.MinRecordsPerAggregate = 2, 20, 1e-6, 30
			})},
		{"zero means not set (a partial floor)",
			with(func(p *PrivacyControls) { p.MaxEpsilonPerSession, p.EpsilonBudget, p.Delta = 3, 9, 1e-5 }),
			PrivacyControls{AllowedSessionTypes: SessionTypes, MinRecordsPerAggregate: 40, AllowPredictions: true},
			with(func(p *PrivacyControls) {
				p.MaxEpsilonPerSession, p.EpsilonBudget, p.Delta, p.MinRecordsPerAggregate = 3, 9, 1e-5, 40
			})},
		{"columns unite; excluded beats identifier",
			with(func(p *PrivacyControls) {
				p.IdentifierColumns, p.ExcludedColumns = []string{"id", "ssn"}, []string{"notes"}
			}),
			with(func(p *PrivacyControls) { p.IdentifierColumns, p.ExcludedColumns = []string{"email"}, []string{"ssn"} }),
			with(func(p *PrivacyControls) {
				p.IdentifierColumns, p.ExcludedColumns = []string{"id", "email"}, []string{"notes", "ssn"}
			})},
		{"predictions only if both allow",
			base,
			with(func(p *PrivacyControls) { p.AllowPredictions = false }),
			with(func(p *PrivacyControls) { p.AllowPredictions = false })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.a.Merge(tc.b)); diff != "" {
				t.Errorf("a.Merge(b) (-want +got):\n%s", diff)
			}
			// The strictest of two does not depend on their order.
			ab, ba := tc.a.Merge(tc.b), tc.b.Merge(tc.a)
			for _, l := range []*[]string{&ab.AllowedSessionTypes, &ba.AllowedSessionTypes, &ab.AllowedUsers, &ba.AllowedUsers, &ab.IdentifierColumns, &ba.IdentifierColumns, &ab.ExcludedColumns, &ba.ExcludedColumns} {
				slices.Sort(*l)
			}
			if diff := cmp.Diff(ab, ba); diff != "" {
				t.Errorf("merge depends on the order (-a.b +b.a):\n%s", diff)
			}
			// Merging can only tighten: what the result allows, both allow.
			m := tc.a.Merge(tc.b)
			for _, u := range []string{"ada@example.org", "bob@example.org", "cy@example.org", "zed@example.org"} {
				if m.AllowsUser(u) && !(tc.a.AllowsUser(u) && tc.b.AllowsUser(u)) {
					t.Errorf("merged controls allow %s, which one side does not", u)
				}
			}
			for _, st := range SessionTypes {
				if m.AllowsSessionType(st) && !(tc.a.AllowsSessionType(st) && tc.b.AllowsSessionType(st)) {
					t.Errorf("merged controls allow %s sessions, which one side does not", st)
				}
			}
		})
	}
}

// TestStrictestSources: the effective controls name who set each field.
func TestStrictestSources(t *testing.T) {
	own := DefaultPrivacyControls()
	own.IdentifierColumns = []string{"id"}
	lenient := DefaultPrivacyControls()
	lenient.MinRecordsPerAggregate, lenient.MaxEpsilonPerSession = 1, 50
	lenient.EpsilonBudget = 100
	strict := DefaultPrivacyControls()
	strict.MinRecordsPerAggregate, strict.IdentifierColumns = 50, []string{"ssn"}
	rule := PolicyRule{Name: "crm", Prefix: "s3://bank.silo/crm/", RequireDifferentialPrivacy: true, AllowedSessionTypes: []string{"hfl"}}
	eff := Strictest(
		PrivacySource{"dataset b", lenient},
		PrivacySource{"dataset a", strict},
		PrivacySource{"dataset c", own},
		PrivacySource{rule.Title(0), rule.Floor()},
	)
	if eff.Controls.MinRecordsPerAggregate != 50 || eff.Controls.MaxEpsilonPerSession != 10 || !eff.Controls.RequireDifferentialPrivacy ||
		!slices.Equal(eff.Controls.AllowedSessionTypes, []string{"hfl"}) || !slices.Equal(eff.Controls.IdentifierColumns, []string{"ssn", "id"}) {
		t.Fatalf("effective = %+v", eff.Controls)
	}
	want := map[string][]string{
		"allowed_session_types":        {`policy rule "crm" (s3://bank.silo/crm/)`},
		"allowed_users":                {"dataset b"},
		"require_differential_privacy": {`policy rule "crm" (s3://bank.silo/crm/)`},
		"max_epsilon_per_session":      {"dataset a"},
		"epsilon_budget":               {"dataset a"},
		"delta":                        {"dataset b"},
		"min_records_per_aggregate":    {"dataset a"},
		"identifier_columns":           {"dataset a", "dataset c"},
		"excluded_columns":             {"dataset b"},
		"allow_predictions":            {"dataset b"},
	}
	if diff := cmp.Diff(want, eff.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

// TestPolicyRuleValidate: a policy rule's mistakes are errors that say
// which rule and how to fix it.
func TestPolicyRuleValidate(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name string
		rule PolicyRule
		msg  string // "" for valid
	}{
		{"valid", PolicyRule{Prefix: "file:///srv/a/", MinRecordsPerAggregate: 20}, ""},
		{"valid predictions off", PolicyRule{Prefix: "s3://bank.silo/crm/", AllowPredictions: &no}, ""},
		{"no prefix", PolicyRule{MinRecordsPerAggregate: 20}, "prefix is required"},
		{"sets nothing", PolicyRule{Prefix: "file:///srv/a/"}, "sets no control"},
		{"empty types", PolicyRule{Prefix: "file:///srv/a/", AllowedSessionTypes: []string{}}, "allowed_session_types is empty"},
		{"unknown type", PolicyRule{Prefix: "file:///srv/a/", AllowedSessionTypes: []string{"gan"}}, `unknown session type "gan"`},
		{"bad user", PolicyRule{Prefix: "file:///srv/a/", AllowedUsers: []string{"bob"}}, "allowed_users"},
		{"negative epsilon", PolicyRule{Prefix: "file:///srv/a/", MaxEpsilonPerSession: -1}, "max_epsilon_per_session must be a positive"},
		{"per session above budget", PolicyRule{Prefix: "file:///srv/a/", MaxEpsilonPerSession: 5, EpsilonBudget: 2}, "cannot exceed"},
		{"delta too big", PolicyRule{Prefix: "file:///srv/a/", Delta: 0.5}, "delta must be above 0"},
		{"min records too big", PolicyRule{Prefix: "file:///srv/a/", MinRecordsPerAggregate: 2_000_000}, "min_records_per_aggregate"},
		{"empty column", PolicyRule{Prefix: "file:///srv/a/", ExcludedColumns: []string{" "}}, "column names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate(1)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "rule 2") {
				t.Fatalf("error %v, want rule 2 and %q", err, tc.msg)
			}
		})
	}
}
