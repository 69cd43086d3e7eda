package server_test

import (
	"bytes"
	"context"
	"html"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// TestPrivacyControlsGateUse: a Model Builder whom a dataset's privacy
// controls leave out cannot train on it or predict with it, nor run a
// session type it does not allow; once the custodian lets them in, they can.
func TestPrivacyControlsGateUse(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	base, err := f.api.CreateSession(ctx, sessionConfig("before", func(m map[string]any) { m["rounds"] = 1 }))
	if err != nil {
		t.Fatal(err)
	}
	// A session that does not use hospital_a, to predict on it with.
	other, err := f.api.CreateSession(ctx, sessionConfig("b-and-c", func(m map[string]any) { m["rounds"] = 1; m["datasets"] = []string{"hospital_b", "hospital_c"} }))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*silo.Session{base, other} {
		if s = waitSession(t, f.api, s.ID); s.Status != silo.SessionCompleted {
			t.Fatalf("session: %s %q", s.Status, s.StatusReason)
		}
	}
	setPrivacy := func(edit func(p *silo.PrivacyControls)) {
		t.Helper()
		d, err := f.dc.GetDataset(ctx, "hospital_a")
		if err != nil {
			t.Fatal(err)
		}
		p := d.Privacy
		edit(&p)
		if _, err := f.dc.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &p}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "hospital_a to connect again", func() bool {
			d, _ := f.dc.GetDataset(ctx, "hospital_a")
			return d.Status == silo.DatasetConnected
		})
	}

	setPrivacy(func(p *silo.PrivacyControls) { p.AllowedUsers = []string{"dc@example.org"}; p.AllowPredictions = true })
	if _, err := f.api.CreateSession(ctx, sessionConfig("left-out", nil)); silo.ErrorCode(err) != silo.EINVALID ||
		!strings.Contains(err.Error(), "dataset hospital_a is not open to mb@example.org") {
		t.Fatalf("a session on a dataset not open to its builder: %v", err)
	}
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: other.ID, Dataset: "hospital_a"}); silo.ErrorCode(err) != silo.EFORBIDDEN ||
		!strings.Contains(err.Error(), "not open to you") {
		t.Fatalf("predictions on a dataset not open to the builder: %v", err)
	}
	// Nor with a session on it (TestAllowedUsersHideSessions).
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: base.ID, Dataset: "hospital_b"}); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Fatalf("predictions with a session on a dataset not open to the builder: %v", err)
	}

	setPrivacy(func(p *silo.PrivacyControls) {
		p.AllowedUsers = []string{"mb@example.org"}
		p.AllowedSessionTypes = []string{"eda"}
	})
	if _, err := f.api.CreateSession(ctx, sessionConfig("wrong-type", nil)); silo.ErrorCode(err) != silo.EINVALID ||
		!strings.Contains(err.Error(), "dataset hospital_a does not allow hfl sessions") {
		t.Fatalf("a session type the dataset does not allow: %v", err)
	}

	setPrivacy(func(p *silo.PrivacyControls) { p.AllowedSessionTypes = []string{"hfl"} })
	s, err := f.api.CreateSession(ctx, sessionConfig("let-in", func(m map[string]any) { m["rounds"] = 1 }))
	if err != nil {
		t.Fatalf("allowed again: %v", err)
	}
	if s = waitSession(t, f.api, s.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("session once allowed: %s %q", s.Status, s.StatusReason)
	}
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: base.ID, Dataset: "hospital_a"}); err != nil {
		t.Fatalf("predictions once allowed: %v", err)
	}
}

// TestAllowedUsersHideSessions: a dataset's allowed_users keep its sessions
// from other builders. A Model Builder not allowed on every dataset of a
// session cannot list it, see it, read its metrics, download its model or
// predict with it, through the API or the UI; admins can, and so can the
// custodian of its data, but not another custodian.
func TestAllowedUsersHideSessions(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	d, err := f.dc.GetDataset(ctx, "hospital_a")
	if err != nil {
		t.Fatal(err)
	}
	p := d.Privacy
	p.AllowedUsers = []string{"mb@example.org"}
	if _, err := f.dc.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &p}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hospital_a to connect again", func() bool {
		d, _ := f.dc.GetDataset(ctx, "hospital_a")
		return d.Status == silo.DatasetConnected
	})
	s, err := f.api.CreateSession(ctx, sessionConfig("private", func(m map[string]any) { m["rounds"] = 1 }))
	if err != nil {
		t.Fatal(err)
	}
	if s = waitSession(t, f.api, s.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("session: %s %q", s.Status, s.StatusReason)
	}

	otherToken := f.addUser("mb2@example.org", "model_builder")
	other := client.New(f.ts.URL, otherToken)
	dc2Token := f.addUser("dc2@example.org", "data_custodian")
	for who, c := range map[string]*client.Client{"another builder": other, "another custodian": client.New(f.ts.URL, dc2Token)} {
		if _, err := c.GetSession(ctx, s.ID); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Errorf("%s got the session: %v", who, err)
		}
		if _, err := c.SessionMetrics(ctx, s.ID); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Errorf("%s got the metrics: %v", who, err)
		}
		if err := c.DownloadModel(ctx, s.ID, false, io.Discard); err == nil {
			t.Errorf("%s downloaded the model", who)
		}
		if list, err := c.ListSessions(ctx); err != nil || slices.ContainsFunc(list, func(x *silo.Session) bool { return x.ID == s.ID }) {
			t.Errorf("%s lists the session: %v", who, err)
		}
	}
	if _, err := other.Predict(ctx, client.PredictRequest{Session: s.ID, Dataset: "hospital_b"}); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Errorf("another builder predicted with the session: %v", err)
	}
	for _, path := range []string{"/api/v1/sessions/" + s.ID + "/model", "/sessions/" + s.ID} {
		if st := f.do("GET", path, otherToken, nil, nil); st != http.StatusNotFound {
			t.Errorf("GET %s as another builder: %d, want 404", path, st)
		}
	}
	// Its builder, an admin and the data's custodian still see it all.
	for who, c := range map[string]*client.Client{"its builder": f.api, "an admin": f.admin, "the custodian": f.dc} {
		if _, err := c.GetSession(ctx, s.ID); err != nil {
			t.Errorf("%s: %v", who, err)
		}
		if m, err := c.SessionMetrics(ctx, s.ID); err != nil || len(m.Federated) != 1 {
			t.Errorf("%s: metrics %+v, %v", who, m, err)
		}
	}
	for who, c := range map[string]*client.Client{"its builder": f.api, "an admin": f.admin} {
		if err := c.DownloadModel(ctx, s.ID, false, io.Discard); err != nil {
			t.Errorf("%s: model: %v", who, err)
		}
	}
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: s.ID, Dataset: "hospital_b"}); err != nil {
		t.Errorf("its builder: predict: %v", err)
	}
}

// TestTaskListingsLeakNothing: a runner's task list, its task logs and its
// UI page show every reader the tasks' metadata only. A session's task
// details (a prediction's output, log lines) go only to those who may see
// the session; payloads (global models, privacy controls) and one client's
// statistics, model updates and evaluations go to no one. Tried as a second
// builder whom the dataset's allowed_users leave out, a custodian of other
// data, a token scoped to runners:read, and the session's own builder.
func TestTaskListingsLeakNothing(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	d, err := f.dc.GetDataset(ctx, "hospital_a")
	if err != nil {
		t.Fatal(err)
	}
	p := d.Privacy
	p.AllowedUsers = []string{"mb@example.org"}
	if _, err := f.dc.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &p}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hospital_a to connect again", func() bool {
		d, _ := f.dc.GetDataset(ctx, "hospital_a")
		return d.Status == silo.DatasetConnected
	})
	// Diagnostics first, then the session, then a prediction: the newest
	// task, whose log the runner page shows, serves the session.
	diag, err := f.api.QueueDiagnostics(ctx, "hospital-a", 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "diagnostics", func() bool {
		ts, _ := f.admin.RunnerTasks(ctx, "hospital-a")
		return slices.ContainsFunc(ts, func(x *silo.Task) bool { return x.ID == diag.ID && x.Status == silo.TaskSucceeded })
	})
	f.clock.Add(time.Minute)
	s, err := f.api.CreateSession(ctx, sessionConfig("private", func(m map[string]any) { m["rounds"] = 1 }))
	if err != nil {
		t.Fatal(err)
	}
	if s = waitSession(t, f.api, s.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("session: %s %q", s.Status, s.StatusReason)
	}
	f.clock.Add(time.Minute)
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: s.ID, Dataset: "hospital_a"}); err != nil {
		t.Fatal(err)
	}
	// Every kind of task ran on hospital-a, and logged.
	all, _ := f.admin.RunnerTasks(ctx, "hospital-a")
	kinds := map[string]*silo.Task{}
	for _, task := range all {
		kinds[task.Type] = task
	}
	for _, kind := range []string{silo.TaskConnect, silo.TaskStats, silo.TaskFit, silo.TaskEvaluate, silo.TaskPredict, silo.TaskDiagnostics} {
		if kinds[kind] == nil {
			t.Fatalf("no %s task on hospital-a: %v", kind, all)
		}
	}
	// The log lines only the session's tasks wrote (every task logs some
	// lines such as "task succeeded").
	common := map[string]bool{}
	diagLogs, _ := f.admin.RunnerLogs(ctx, "hospital-a", diag.ID, 0)
	for _, l := range diagLogs {
		common[l.Message] = true
	}
	var sessionLines []string
	for _, kind := range []string{silo.TaskStats, silo.TaskFit, silo.TaskEvaluate, silo.TaskPredict} {
		lines, err := f.admin.RunnerLogs(ctx, "hospital-a", kinds[kind].ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if !common[l.Message] {
				sessionLines = append(sessionLines, l.Message)
			}
		}
	}
	if len(sessionLines) == 0 {
		t.Fatal("the session's tasks logged nothing of their own")
	}

	var scoped silo.Token
	f.do("POST", "/api/v1/tokens", f.env.admin, map[string]any{"name": "monitor", "scopes": []string{"runners:read"}}, &scoped)
	readers := []struct {
		who         string
		token       string
		sessionSeen bool // may see the session's task details
		datasets    bool // may read datasets (the connect report)
	}{
		{"another builder", f.addUser("mb2@example.org", "model_builder"), false, true},
		{"another custodian", f.addUser("dc2@example.org", "data_custodian"), false, true},
		{"an admin's runners:read token", scoped.Secret, false, false},
		{"the session's builder", f.login("mb@example.org", "password-mb@example.org"), true, true},
	}
	for _, rd := range readers {
		c := client.New(f.ts.URL, rd.token)
		tasks, err := c.RunnerTasks(ctx, "hospital-a")
		if err != nil || len(tasks) != len(all) {
			t.Fatalf("%s: %d tasks, %v", rd.who, len(tasks), err)
		}
		for _, task := range tasks {
			if task.Payload != nil {
				t.Errorf("%s sees the payload of a %s task", rd.who, task.Type)
			}
			var want bool
			switch task.Type {
			case silo.TaskDiagnostics:
				want = true
			case silo.TaskConnect:
				want = rd.datasets
			case silo.TaskPredict:
				want = rd.sessionSeen
			}
			if (task.Output != nil) != want {
				t.Errorf("%s: %s task output shown = %v, want %v: %s", rd.who, task.Type, task.Output != nil, want, task.Output)
			}
			if task.ID == "" || task.Status == "" || task.CreatedAt.IsZero() || (task.Type == silo.TaskFit && (task.Session != s.ID || task.Round != 1 || task.Dataset != "hospital_a")) {
				t.Errorf("%s: metadata missing from %+v", rd.who, task)
			}
		}
		logs, err := c.RunnerLogs(ctx, "hospital-a", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var fromSession int
		for _, l := range logs {
			if l.TaskID == kinds[silo.TaskFit].ID || l.TaskID == kinds[silo.TaskStats].ID || l.TaskID == kinds[silo.TaskPredict].ID {
				fromSession++
			}
		}
		if (fromSession > 0) != rd.sessionSeen {
			t.Errorf("%s sees %d log lines of the session's tasks", rd.who, fromSession)
		}
		_, err = c.RunnerLogs(ctx, "hospital-a", kinds[silo.TaskFit].ID, 0)
		if (err == nil) != rd.sessionSeen {
			t.Errorf("%s asking for the fit task's logs: %v", rd.who, err)
		}
		// The runner's page.
		var page bytes.Buffer
		req, _ := http.NewRequest("GET", f.ts.URL+"/settings/runners/hospital-a", nil)
		req.Header.Set("Authorization", "Bearer "+rd.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&page, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: runner page %d", rd.who, resp.StatusCode)
		}
		shown := 0
		for _, l := range sessionLines {
			if strings.Contains(page.String(), html.EscapeString(l)) {
				shown++
			}
		}
		if (shown > 0) != rd.sessionSeen {
			t.Errorf("%s reads %d of the session tasks' log lines on the runner page", rd.who, shown)
		}
	}
}
