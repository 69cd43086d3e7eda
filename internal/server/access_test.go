package server_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

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
