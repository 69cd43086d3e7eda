package server_test

import (
	"context"
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
	base = waitSession(t, f.api, base.ID)
	if base.Status != silo.SessionCompleted {
		t.Fatalf("session: %s %q", base.Status, base.StatusReason)
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
	if _, err := f.api.Predict(ctx, client.PredictRequest{Session: base.ID, Dataset: "hospital_a"}); silo.ErrorCode(err) != silo.EFORBIDDEN ||
		!strings.Contains(err.Error(), "not open to you") {
		t.Fatalf("predictions on a dataset not open to the builder: %v", err)
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
