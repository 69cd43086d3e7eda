package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server/servertest"
)

// TestUILinkagePage: a record linkage written in the session editor runs,
// and its page shows each dataset's overlap (hospital B's thirty patients
// referred from A, half of them in lower case, which normalisation
// reconciles); a duplicate starts from the linkage's own fields.
func TestUILinkagePage(t *testing.T) {
	f := servertest.NewFederation(t)
	e := uiOf(t, f)
	mb := e.browser()
	mb.signIn("mb@example.org", "password-mb@example.org")
	config := `{"name": "link-referrals", "type": "prl", "datasets": ["hospital_a", "hospital_b"],
  "id_columns": {"hospital_a": ["patient_id"], "hospital_b": ["patient_id"]}, "normalize": ["trim", "lowercase"]}`
	p := mb.post("/sessions/new", url.Values{"config": {config}})
	if p.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: status %d\n%s", p.StatusCode, p.text())
	}
	id := strings.TrimPrefix(p.Header.Get("Location"), "/sessions/")
	s := servertest.WaitSession(t, f.API, id)
	if s.Status != silo.SessionCompleted {
		t.Fatalf("linkage %s: %s", s.Status, s.StatusReason)
	}
	p = mb.get("/sessions/" + id)
	wantStatus(t, p, http.StatusOK)
	wantNoInlineCode(t, p)
	wantText(t, p, "private record linkage", "Completed", "Overlap", "hospital_a", "hospital_b", "230", "190", "30", "13.0 %", "15.8 %", "patient_id", "trim, lowercase", "_linkage/"+id)
	if n := strings.Count(p.Body, `<tr data-dataset=`); n != 2 {
		t.Errorf("the overlap table has %d rows, want 2", n)
	}
	p = mb.get("/sessions/new?from=" + id)
	v := editorValue(t, p)
	if !strings.Contains(v, `"type": "prl"`) || strings.Contains(v, `"rounds"`) || strings.Contains(v, `"task"`) {
		t.Fatalf("a duplicate's editor:\n%s", v)
	}

	// A key that is not an identifier column is refused in the editor,
	// naming the rule.
	bad := strings.ReplaceAll(config, `["patient_id"]`, `["mean_radius"]`)
	p = mb.post("/sessions/new", url.Values{"config": {bad}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "id_columns", "not an identifier column")
}
