package ui_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/ui"
)

// uiOf lets the UI tests' browser drive a federation's server.
func uiOf(t *testing.T, f *servertest.Federation) *uiEnv {
	return &uiEnv{t: t, db: f.DB, srv: f.Srv, ts: f.TS, clock: f.Clock}
}

var editorText = regexp.MustCompile(`(?s)<textarea[^>]*id="session-config"[^>]*>(.*?)</textarea>`)

// editorValue returns what the session editor holds.
func editorValue(t *testing.T, p uiPage) string {
	t.Helper()
	m := editorText.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no session editor on the page:\n%s", p.text())
	}
	return html.UnescapeString(m[1])
}

func TestUISessionsEmptyState(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)
	p := admin.get("/sessions")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Sessions", "No sessions yet", "New session", "silo sessions create -f session.json")
	wantNoInlineCode(t, p)
	if !strings.Contains(p.Body, `href="/sessions/new"`) {
		t.Errorf("an admin's empty sessions page has no link to a new session")
	}
	if strings.Contains(p.Body, `http-equiv="refresh"`) {
		t.Errorf("the sessions page reloads itself with no session under way")
	}

	// A Data Custodian may see sessions but not create them: no button, and
	// an explanation instead.
	dc := e.join(admin.invite("dc@example.org", "168h", "data_custodian"), "Dana Custodian", "custodian password")
	p = dc.get("/sessions")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "No sessions yet", "Model Builders create sessions", "Sessions that use your datasets appear here")
	if strings.Contains(p.Body, `href="/sessions/new"`) || strings.Contains(p.text(), "New session") {
		t.Errorf("a Data Custodian is offered a new session:\n%s", p.text())
	}
	wantStatus(t, dc.get("/sessions/new"), http.StatusForbidden)
	wantStatus(t, dc.post("/sessions/new", url.Values{"config": {"{}"}}), http.StatusForbidden)
	wantStatus(t, dc.get("/sessions/sess_nothere"), http.StatusNotFound)
}

func TestUISessionEditorErrors(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)

	p := b.get("/sessions/new")
	wantStatus(t, p, http.StatusOK)
	wantNoInlineCode(t, p)
	wantText(t, p, "New session", "Reference", "fedprox", "ffnet", "No connected dataset is open to you yet")
	example := editorValue(t, p)
	if _, err := silo.ParseSessionConfig([]byte(strings.Replace(example, `"datasets": []`, `"datasets": ["x"]`, 1))); err != nil {
		t.Fatalf("the editor's example does not parse once it names a dataset: %v\n%s", err, example)
	}

	for _, tc := range []struct {
		name, config, field, message, line string
	}{
		{"unknown dataset", strings.Replace(example, `"datasets": []`, `"datasets": ["hospital_a"]`, 1), "datasets",
			`No dataset named "hospital_a"`, `Line 4: "datasets": ["hospital_a"],`},
		{"empty target", `{"name": "s", "datasets": ["a"], "rounds": 3,
  "task": {"type": "classification", "target": ""},
  "model": {"package": "glm"}}`, "task.target", "task.target is required", `Line 2: "task": {"type": "classification", "target": ""},`},
		{"unknown model", `{"name": "s", "datasets": ["a"], "rounds": 3, "task": {"type": "regression", "target": "y"},
  "model": {"package": "forest"}}`, "model.package", `Unknown model package "forest"`, `Line 2: "model": {"package": "forest"}}`},
		{"typo", `{"name": "s", "datasets": ["a"], "roundz": 3}`, "roundz", `unknown field "roundz"`, "Line 1"},
		{"syntax", "{\n  \"name\": \"s\",\n  \"rounds\": 3,,\n}", "", "invalid character", "Line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post("/sessions/new", url.Values{"config": {tc.config}})
			wantStatus(t, p, http.StatusBadRequest)
			wantNoInlineCode(t, p)
			wantText(t, p, "The session was not created", tc.message, tc.line)
			if got := editorValue(t, p); got != tc.config {
				t.Errorf("the editor holds\n%s\nwant what was typed:\n%s", got, tc.config)
			}
			field := regexp.MustCompile(`id="error-field">([^<]*)<`).FindStringSubmatch(p.Body)
			switch {
			case tc.field == "" && field != nil:
				t.Errorf("highlighted field %q, want none", field[1])
			case tc.field != "" && (field == nil || field[1] != tc.field):
				t.Errorf("highlighted field %v, want %q", field, tc.field)
			}
			if !strings.Contains(p.Body, `aria-invalid="true"`) {
				t.Errorf("the editor is not marked invalid")
			}
		})
	}
	// Nothing was created.
	if list, _ := e.db.ListSessions(context.Background(), false); len(list) != 0 {
		t.Fatalf("%d sessions created from bad configs", len(list))
	}
}

// TestUISessionPages creates, shows, predicts with and cancels sessions
// through the pages, as a Model Builder and as Data Custodians.
func TestUISessionPages(t *testing.T) {
	f := servertest.NewFederation(t)
	ctx := context.Background()
	e := uiOf(t, f)
	mb := e.browser()
	mb.signIn("mb@example.org", "password-mb@example.org")

	// The editor starts from the connected datasets; as it is, it is
	// refused for its target, which the user must choose.
	p := mb.get("/sessions/new")
	wantStatus(t, p, http.StatusOK)
	example := editorValue(t, p)
	if !strings.Contains(example, `"datasets": [
    "hospital_a",
    "hospital_b",
    "hospital_c"
  ]`) || !strings.Contains(example, `"target": "<column to predict>"`) {
		t.Fatalf("the editor's example:\n%s", example)
	}
	wantText(t, p, "hospital_a", "patient_id", "Identifier", "diagnosis", "mean_radius")
	p = mb.post("/sessions/new", url.Values{"config": {example}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "task.target", "Dataset hospital_a has no column <column to predict>")

	// Fixed, it creates the session and shows its page.
	config := strings.Replace(strings.Replace(example, "<column to predict>", "diagnosis", 1), `"rounds": 10`, `"rounds": 3`, 1)
	p = mb.post("/sessions/new", url.Values{"config": {config}})
	if p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/sessions/sess_") {
		t.Fatalf("create: status %d to %q\n%s", p.StatusCode, p.Header.Get("Location"), p.text())
	}
	id := strings.TrimPrefix(p.Header.Get("Location"), "/sessions/")
	p = mb.follow(p)
	wantText(t, p, "Session my-session is created", "my-session")
	s := servertest.WaitSession(t, f.API, id)
	if s.Status != silo.SessionCompleted {
		t.Fatalf("session %s: %s", s.Status, s.StatusReason)
	}

	p = mb.get("/sessions/" + id)
	wantStatus(t, p, http.StatusOK)
	wantNoInlineCode(t, p)
	wantText(t, p, "Completed", "Round 3 of 3", "ROC AUC and accuracy", "Test ROC AUC per client", "Clients in round 3",
		"Metrics per round", "hospital_b", "glm · family binomial", "Final model", "Best model", "Run predictions")
	if strings.Contains(p.Body, `http-equiv="refresh"`) {
		t.Errorf("a completed session's page reloads itself")
	}
	if n := strings.Count(p.Body, `<tr data-round=`); n != 3 {
		t.Errorf("the metrics table has %d rounds, want 3", n)
	}
	if n := strings.Count(p.Body, `<tr data-client=`); n != 3 {
		t.Errorf("the clients table has %d rows, want 3", n)
	}
	// Loss, ROC AUC, accuracy and three clients: a line of 3 points each.
	lines := polyline.FindAllStringSubmatch(p.Body, -1)
	if len(lines) != 6 {
		t.Fatalf("%d chart lines, want 6", len(lines))
	}
	for _, l := range lines {
		if n := len(strings.Fields(l[1])); n != 3 {
			t.Errorf("a chart line has %d points, want 3: %s", n, l[1])
		}
	}
	if !strings.Contains(p.Body, `href="/api/v1/sessions/`+id+`/model?best=true"`) {
		t.Errorf("no link to the best model")
	}

	// The download link works with the browser's sign-in.
	dl := mb.get("/api/v1/sessions/" + id + "/model")
	wantStatus(t, dl, http.StatusOK)
	if !strings.Contains(dl.Header.Get("Content-Disposition"), id+".json") {
		t.Errorf("model download: Content-Disposition %q", dl.Header.Get("Content-Disposition"))
	}

	// Predictions run on the dataset's runner.
	p = mb.post("/sessions/"+id+"/predict", url.Values{"dataset": {"hospital_a"}, "model": {"best"}, "format": {"csv"}})
	if p.StatusCode != http.StatusSeeOther {
		t.Fatalf("predict: status %d\n%s", p.StatusCode, p.text())
	}
	p = mb.follow(p)
	wantText(t, p, "Predicted 230 rows of hospital_a with the best model of my-session: written to file://"+f.Roots["a"]+"/predictions/hospital_a/")
	p = mb.follow(mb.post("/sessions/"+id+"/predict", url.Values{"dataset": {"hospital_a"}, "format": {"xlsx"}}))
	wantText(t, p, "Format must be csv or parquet")

	// The list shows it.
	p = mb.get("/sessions")
	wantText(t, p, "my-session", "Completed", "Round 3 of 3", "ROC AUC", "mb@example.org")
	if !strings.Contains(p.Body, `href="/sessions/`+id+`"`) {
		t.Errorf("the list does not link to the session")
	}

	// The custodian of its datasets sees it, without the builder's
	// controls; a custodian of no dataset does not.
	dc := e.browser()
	dc.signIn("dc@example.org", "password-dc@example.org")
	p = dc.get("/sessions/" + id)
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "my-session", "Your roles do not include downloading models")
	for _, control := range []string{`id="cancel-session"`, `id="predict-form"`, `id="download-final"`, `id="duplicate-session"`} {
		if strings.Contains(p.Body, control) {
			t.Errorf("a Data Custodian's session page has %s", control)
		}
	}
	wantText(t, dc.get("/sessions"), "my-session")
	f.AddUser("dc2@example.org", "data_custodian")
	other := e.browser()
	other.signIn("dc2@example.org", "password-dc2@example.org")
	wantStatus(t, other.get("/sessions/"+id), http.StatusNotFound)
	if p := other.get("/sessions"); strings.Contains(p.Body, id) {
		t.Errorf("a custodian of no dataset is listed the session")
	}

	// Duplicating starts the editor from the session's config.
	p = mb.get("/sessions/new?from=" + id)
	wantStatus(t, p, http.StatusOK)
	if cfg := editorValue(t, p); !strings.Contains(cfg, `"name": "my-session-2"`) || !strings.Contains(cfg, `"target": "diagnosis"`) {
		t.Errorf("the duplicate's config:\n%s", cfg)
	}

	// A long session reloads its page while it runs, and can be cancelled.
	long, err := f.API.CreateSession(ctx, servertest.SessionConfig("long", func(m map[string]any) { m["rounds"] = 1000 }))
	if err != nil {
		t.Fatal(err)
	}
	p = mb.get("/sessions/" + long.ID)
	wantText(t, p, "Cancel session")
	if !strings.Contains(p.Body, `<meta http-equiv="refresh" content="2">`) {
		t.Errorf("a running session's page does not reload itself")
	}
	p = mb.follow(mb.post("/sessions/"+long.ID+"/cancel", url.Values{}))
	wantText(t, p, "Session long is cancelled", "Cancelled", "Cancelled by mb@example.org")
	if strings.Contains(p.Body, `id="cancel-session"`) {
		t.Errorf("a cancelled session still offers to cancel it")
	}
	p = mb.follow(mb.post("/sessions/"+long.ID+"/cancel", url.Values{}))
	wantText(t, p, "is already cancelled")
}

// ---- Charts ----

var polyline = regexp.MustCompile(`<polyline class="chart-line"[^>]*points="([^"]*)"`)

func chartPoints(ys ...float64) []ui.ChartPoint {
	out := make([]ui.ChartPoint, len(ys))
	for i, y := range ys {
		out[i] = ui.ChartPoint{X: float64(i + 1), Y: y}
	}
	return out
}

// wantWellFormed checks the chart parses as XML (every tag closed, every
// text escaped) and has no inline style.
func wantWellFormed(t *testing.T, out string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader("<div>" + out + "</div>"))
	for {
		_, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed: %v\n%s", err, out)
			}
			break
		}
	}
	if m := inlineCode.FindString(out); m != "" {
		t.Errorf("chart has inline code the CSP blocks: %q", m)
	}
	for _, bad := range []string{"NaN", "Inf"} {
		if strings.Contains(out, bad) {
			t.Errorf("chart output contains %s:\n%s", bad, out)
		}
	}
}

func TestLineChart(t *testing.T) {
	out := string(ui.LineChart(ui.Chart{Title: "Loss <per> round", YLabel: "Loss & more", Width: 460, Height: 250,
		Series: []ui.ChartSeries{{Name: "Loss", Points: chartPoints(0.69, 0.41, 0.3, 0.25, 0.22)}}, Mark: 5, MarkLabel: "best"}))
	wantWellFormed(t, out)
	lines := polyline.FindAllStringSubmatch(out, -1)
	if len(lines) != 1 || len(strings.Fields(lines[0][1])) != 5 {
		t.Fatalf("want one polyline of 5 points, got %q", lines)
	}
	for _, want := range []string{
		`<svg class="chart-svg" viewBox="0 0 460 250"`, `<title>Loss &lt;per&gt; round</title>`, `>Loss &amp; more</text>`, `>Round</text>`,
		`>1</text>`, `>5</text>`, // rounds
		`>0.2</text>`, `>0.7</text>`, // values
		`class="chart-mark"`, `<title>Loss · round 2: 0.4100</title>`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("chart lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chart-legend") {
		t.Errorf("a single series gets a legend")
	}
	// Points go right as rounds increase, and up as values increase.
	var xs, ys []float64
	for _, p := range strings.Fields(lines[0][1]) {
		var x, y float64
		if _, err := fmt.Sscanf(p, "%f,%f", &x, &y); err != nil {
			t.Fatal(err)
		}
		xs, ys = append(xs, x), append(ys, y)
	}
	for i := 1; i < len(xs); i++ {
		if !(xs[i] > xs[i-1]) || !(ys[i] > ys[i-1]) { // SVG's y grows downwards; the loss falls
			t.Errorf("points out of order: %v %v", xs, ys)
		}
	}

	t.Run("several series get a legend, names escaped", func(t *testing.T) {
		out := string(ui.LineChart(ui.Chart{Title: "Per client", Width: 900, Height: 260, Series: []ui.ChartSeries{
			{Name: "hospital_a", Points: chartPoints(0.9, 0.95, 0.97)},
			{Name: "<b>b</b>", Points: chartPoints(0.8, 0.85, 0.9)},
		}}))
		wantWellFormed(t, out)
		if n := len(polyline.FindAllString(out, -1)); n != 2 {
			t.Errorf("%d polylines, want 2", n)
		}
		if !strings.Contains(out, `class="chart-legend"`) || !strings.Contains(out, "&lt;b&gt;b&lt;/b&gt;</li>") || strings.Contains(out, "<b>") {
			t.Errorf("legend:\n%s", out)
		}
		if !strings.Contains(out, `chart-series chart-s1`) {
			t.Errorf("the second series has no colour of its own")
		}
	})
	t.Run("one round", func(t *testing.T) {
		out := string(ui.LineChart(ui.Chart{Title: "t", Width: 460, Height: 250, Series: []ui.ChartSeries{{Name: "Loss", Points: chartPoints(0.5)}}}))
		wantWellFormed(t, out)
		if polyline.MatchString(out) {
			t.Errorf("a single value drew a line")
		}
		if n := strings.Count(out, "<circle"); n != 1 {
			t.Errorf("%d dots, want 1", n)
		}
		if !strings.Contains(out, `>1</text>`) || strings.Contains(out, `>0</text>`) || strings.Contains(out, `>2</text>`) {
			t.Errorf("round ticks of a one-round chart:\n%s", out)
		}
	})
	t.Run("constant values", func(t *testing.T) {
		out := string(ui.LineChart(ui.Chart{Title: "t", Width: 460, Height: 250, Series: []ui.ChartSeries{{Name: "Accuracy", Points: chartPoints(1, 1, 1, 1)}}}))
		wantWellFormed(t, out)
		lines := polyline.FindAllStringSubmatch(out, -1)
		if len(lines) != 1 {
			t.Fatalf("%d lines", len(lines))
		}
		pts := strings.Fields(lines[0][1])
		y0 := pts[0][strings.Index(pts[0], ","):]
		for _, p := range pts {
			if !strings.HasSuffix(p, y0) {
				t.Errorf("a constant series is not flat: %v", pts)
			}
		}
		if !strings.Contains(out, `>1.00</text>`) {
			t.Errorf("the constant's value is not among the ticks:\n%s", out)
		}
	})
	t.Run("missing values split the line", func(t *testing.T) {
		out := string(ui.LineChart(ui.Chart{Title: "t", Width: 460, Height: 250, Series: []ui.ChartSeries{
			{Name: "a", Points: chartPoints(1, 2, math.NaN(), 4, 5, math.Inf(1), 7)},
		}}))
		wantWellFormed(t, out)
		lines := polyline.FindAllStringSubmatch(out, -1)
		if len(lines) != 2 || len(strings.Fields(lines[0][1])) != 2 || len(strings.Fields(lines[1][1])) != 2 {
			t.Errorf("want two lines of 2 points, got %q", lines)
		}
		if n := strings.Count(out, "<circle"); n != 5 {
			t.Errorf("%d dots, want 5 (the lone last value too)", n)
		}
	})
	t.Run("no values", func(t *testing.T) {
		out := string(ui.LineChart(ui.Chart{Title: "t", Width: 460, Height: 250, Series: []ui.ChartSeries{{Name: "a", Points: chartPoints(math.NaN())}}}))
		wantWellFormed(t, out)
		if !strings.Contains(out, "No values to show yet") || polyline.MatchString(out) {
			t.Errorf("empty chart:\n%s", out)
		}
	})
	t.Run("many rounds", func(t *testing.T) {
		ys := make([]float64, 200)
		for i := range ys {
			ys[i] = 1 / float64(i+1)
		}
		out := string(ui.LineChart(ui.Chart{Title: "t", Width: 460, Height: 250, Series: []ui.ChartSeries{{Name: "a", Points: chartPoints(ys...)}}}))
		wantWellFormed(t, out)
		ticks := regexp.MustCompile(`<text x="[0-9.]+" y="[0-9.]+" text-anchor="middle">(\d+)</text>`).FindAllStringSubmatch(out, -1)
		if len(ticks) < 3 || len(ticks) > 12 || ticks[0][1] != "1" {
			t.Errorf("round ticks for 200 rounds: %q", ticks)
		}
		if strings.Count(out, "<circle") != 0 {
			t.Errorf("200 rounds drew a dot each")
		}
	})
}
