package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/silofl/silo"
)

// TestUIFirstHourPages: what a newcomer read on the pages, without a
// browser. The browser walk (TestBrowserFirstHour) follows the same path
// through clicks.
func TestUIFirstHourPages(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)

	// An invitation waiting to be accepted is pending, not done.
	b.invite("someone@example.org", "", "model_builder")
	p := b.get("/")
	step := regexp.MustCompile(`(?s)<li class="step[^"]*">\s*<span class="step-mark">.*?Invite your team.*?</li>`).FindString(p.Body)
	if step == "" || strings.Contains(step, "Done") || !strings.Contains(step, "Pending") || !strings.Contains(step, "1 invitation waiting to be accepted") {
		t.Errorf("dashboard step for a pending invitation:\n%s", step)
	}
	wantText(t, p, "Recent sessions", "No sessions yet.")

	// The privacy controls offer only the session types the server runs.
	if got := strings.Join(e.srv.SessionKinds(), ","); got != "hfl,prl" {
		t.Fatalf("session kinds = %s", got)
	}
	p = b.post("/settings/register-runner/local", url.Values{"name": {"hospital-a"}, "storage_path": {"file://" + t.TempDir()}})
	wantStatus(t, p, http.StatusCreated)
	p = b.post("/library/register-dataset", url.Values{"step": {"1"}, "runner": {"hospital-a"}})
	boxes := regexp.MustCompile(`<input type="checkbox" name="allowed_session_types" value="(\w+)"( checked)?`).FindAllStringSubmatch(p.Body, -1)
	if len(boxes) != 2 || boxes[0][1] != "hfl" || boxes[0][2] == "" || boxes[1][1] != "prl" || boxes[1][2] == "" {
		t.Errorf("session types offered by the wizard: %q, want hfl and prl, ticked", boxes)
	}
	wantText(t, p, "The session types this server runs.")

	// The new-VPC fields show the template's real defaults.
	p = b.get("/settings/register-runner/aws")
	for _, want := range []string{silo.DefaultAWSVPCCIDR, silo.DefaultAWSPrivateSubnetCIDR, silo.DefaultAWSPublicSubnetCIDR} {
		if !strings.Contains(p.Body, `placeholder="`+want+`"`) {
			t.Errorf("the AWS form does not show the default %s as a placeholder", want)
		}
	}
	if strings.Contains(p.Body, `placeholder="10.0.0.0/17"`) {
		t.Error("the AWS form still shows a placeholder that is not the default")
	}

	// A page that is not there points at pages, not at commands.
	for path, back := range map[string]string{"/library/nope": "Go to the Library", "/sessions/sess_nope": "Go to Sessions", "/settings/runners/nope": "Go to Task Runners"} {
		p = b.get(path)
		wantStatus(t, p, http.StatusNotFound)
		if strings.Contains(p.text(), "'silo ") || !strings.Contains(p.text(), back) {
			t.Errorf("%s: the not-found page says:\n%s", path, p.text())
		}
	}

	// The audit log filters by actor, action, target and outcome, and its
	// pager keeps the filters.
	b.post("/settings/users/"+url.PathEscape(uiAdminEmail)+"/remove", url.Values{}) // refused: the last admin
	p = b.get("/settings/audit?action=user.&outcome=failed")
	wantText(t, p, "user.remove")
	if strings.Contains(p.text(), "user.invite") || strings.Contains(p.text(), "auth.login") {
		t.Errorf("filtered audit log shows other entries:\n%s", p.text())
	}
	for i := 0; i < 60; i++ {
		b.post("/settings/users/"+url.PathEscape(uiAdminEmail)+"/remove", url.Values{})
	}
	p = b.get("/settings/audit?action=user.remove")
	older := regexp.MustCompile(`href="(/settings/audit\?[^"]+)">Older entries`).FindStringSubmatch(p.Body)
	if older == nil || !strings.Contains(older[1], "action=user.remove") || !strings.Contains(older[1], "before=") {
		t.Fatalf("the audit pager does not keep the filter: %v", older)
	}
	p = b.get(strings.ReplaceAll(older[1], "&amp;", "&"))
	wantStatus(t, p, http.StatusOK)
	if strings.Contains(p.text(), "auth.login") {
		t.Errorf("the second page lost the filter")
	}
	wantText(t, b.get("/settings/audit?outcome=bogus"), `Outcome "bogus": use success, failed or denied`)

	entries, err := e.db.ListAudit(context.Background(), silo.AuditFilter{Action: "user.remove", Limit: 1000})
	if err != nil || len(entries) < 61 {
		t.Fatalf("audit entries: %d, %v", len(entries), err)
	}
}
