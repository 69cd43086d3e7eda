package ui_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server/servertest"
)

// TestBrowserSessions: a Model Builder follows sessions in a real browser.
// A session trained through the SDK is listed and shows its status, charts
// and round table; a second one is created through the page's JSON editor,
// refused first for the example's placeholder target, then created once the
// target is set, and followed to completion.
func TestBrowserSessions(t *testing.T) {
	f := servertest.NewFederation(t)
	ctx := context.Background()
	done, err := f.API.CreateSession(ctx, servertest.SessionConfig("breast-cancer-glm", func(m map[string]any) { m["rounds"] = 8 }))
	if err != nil {
		t.Fatal(err)
	}
	if s := servertest.WaitSession(t, f.API, done.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("session %s: %s", s.Status, s.StatusReason)
	}
	// Others, for the list: one that fails, one still running.
	bad, err := f.API.CreateSession(ctx, servertest.SessionConfig("wrong-class", func(m map[string]any) { m["task"].(map[string]any)["positive_class"] = "maybe" }))
	if err != nil {
		t.Fatal(err)
	}
	servertest.WaitSession(t, f.API, bad.ID)
	long, err := f.API.CreateSession(ctx, servertest.SessionConfig("long-run", func(m map[string]any) { m["rounds"] = 1000 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.API.CancelSession(context.Background(), long.ID) })

	br := newChromium(t)
	s := browserStory{t}
	base := f.TS.URL
	row := `tr[data-session="` + done.ID + `"]`
	s.step(br, "the model builder signs in",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/login"),
		waitText("h1", "Sign in"),
		chromedp.SendKeys("#email", "mb@example.org", chromedp.ByQuery),
		chromedp.SendKeys("#password", "password-mb@example.org", chromedp.ByQuery),
		chromedp.Click(`form[action="/login"] button[type="submit"]`, chromedp.ByQuery),
		waitText("#current-roles", "Model Builder"),
	)
	s.step(br, "opens Sessions",
		chromedp.Click(`nav.sidebar a[href="/sessions"]`, chromedp.ByQuery),
		waitText("h1", "Sessions"),
		waitText(row, "breast-cancer-glm"),
		waitText(row, "Completed"),
		waitText(row, "Round 8 of 8"),
		waitText(`tr[data-session="`+bad.ID+`"]`, "Failed"),
		waitText(`tr[data-session="`+long.ID+`"]`, "Running"),
		shot("s1-sessions-list"),
	)
	s.step(br, "opens the session",
		chromedp.Click(row+" a.row-link", chromedp.ByQuery),
		waitText("#session-name", "breast-cancer-glm"),
		waitText("#session-status", "Completed"),
		waitText("#stat-round", "Round 8 of 8"),
		chromedp.WaitVisible(".chart svg polyline.chart-line", chromedp.ByQuery),
		waitText("#round-table", "ROC AUC"),
		waitText(`#round-table tr[data-round="8"]`, "8"),
		waitText(`#client-table tr[data-client="hospital_c"]`, "hospital_c"),
		waitText("#model", "Best model"),
		shot("s2-session-page"),
	)
	var charts, lines, rounds, points int
	s.step(br, "the charts and the round table are drawn",
		chromedp.Evaluate(`document.querySelectorAll(".chart svg").length`, &charts),
		chromedp.Evaluate(`document.querySelectorAll(".chart svg polyline.chart-line").length`, &lines),
		chromedp.Evaluate(`document.querySelectorAll("#round-table tbody tr").length`, &rounds),
		chromedp.Evaluate(`document.querySelector("#chart-loss svg polyline").points.numberOfItems`, &points),
	)
	if charts != 3 || lines != 6 || rounds != 8 || points != 8 {
		t.Fatalf("session page: %d charts, %d lines, %d table rows, %d points on the loss line; want 3, 6, 8, 8", charts, lines, rounds, points)
	}

	s.step(br, "a running session's page shows its progress",
		chromedp.Navigate(base+"/sessions/"+long.ID),
		waitText("#session-status", "Running"),
		waitText("#session-state", "This page updates by itself"),
		// The page reloads every two seconds: wait with waitText, which
		// looks again after each load, never with a DOM query.
		waitText("#cancel-session", "Cancel session"),
		shot("s2b-session-running"),
	)

	s.step(br, "opens the editor from the list",
		chromedp.Navigate(base+"/sessions"),
		chromedp.Click("#new-session", chromedp.ByQuery),
		waitText("h1", "New session"),
		waitText("#ref-datasets", "hospital_a"),
		waitText(`#ref-datasets [data-dataset="hospital_a"]`, "Identifier"),
	)
	var example string
	s.step(br, "creates the example as it is: the target is refused",
		chromedp.Value("#session-config", &example, chromedp.ByQuery),
		chromedp.Click("#create-session", chromedp.ByQuery),
		waitText("#config-error", "The session was not created"),
		waitText("#error-field", "task.target"),
		waitText("#error-message", "Dataset hospital_a has no column <column to predict>"),
		waitText("#error-line", `"target": "<column to predict>"`),
		shot("s3-editor-error"),
	)
	var kept string
	s.step(br, "what was typed is kept", chromedp.Value("#session-config", &kept, chromedp.ByQuery))
	if kept != example || !strings.Contains(example, `"target": "<column to predict>"`) {
		t.Fatalf("after the error the editor holds:\n%s\nwant the example:\n%s", kept, example)
	}
	config := strings.NewReplacer(`"<column to predict>"`, `"diagnosis"`, `"name": "my-session"`, `"name": "from-the-editor"`, `"rounds": 10`, `"rounds": 4`).Replace(example)
	s.step(br, "sets the target and creates the session",
		chromedp.SetValue("#session-config", config, chromedp.ByQuery),
		chromedp.Click("#create-session", chromedp.ByQuery),
		waitText("#flash", "Session from-the-editor is created"),
		waitText("#session-name", "from-the-editor"),
	)
	s.step(br, "the page follows the session to completion",
		waitText("#session-status", "Completed"),
		waitText("#stat-round", "Round 4 of 4"),
		chromedp.WaitVisible("#chart-metric svg polyline.chart-line", chromedp.ByQuery),
		waitText(`#round-table tr[data-round="4"]`, "4"),
		shot("s4-session-from-editor"),
	)
}
