package ui

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// The page of a private record linkage (prl) session: its step and
// progress while it runs, each dataset's overlap once it completed.

type linkageKey struct {
	Columns []fact // dataset → its columns
}

type linkagePageData struct {
	Session    *silo.Session
	Active     bool
	CanCancel  bool
	CanManage  bool
	Progress   *silo.StepProgress
	Percent    int
	Keys       []linkageKey
	Normalize  string
	Overlaps   []silo.LinkageClient
	ConfigJSON string
}

func (ui *UI) linkagePage(w http.ResponseWriter, r *http.Request, ss *sqlstore.StoredSession) {
	ctx := r.Context()
	sess := ui.srv.SessionView(ctx, ss)
	a := silo.ActorFromContext(ctx)
	d := linkagePageData{Session: sess, Active: !sess.Status.Done(), CanManage: a.Can(silo.PermSessionsManage), Progress: sess.Progress,
		ConfigJSON: configText(&sess.Config), Normalize: strings.Join(sess.Config.Normalize, ", ")}
	d.CanCancel = d.Active && d.CanManage
	if p := d.Progress; p != nil && p.Total > 0 {
		d.Percent = int(min(p.Done, p.Total) * 100 / p.Total)
	}
	for _, k := range sess.Config.LinkageKeys() {
		var key linkageKey
		for _, ds := range sess.Config.Datasets {
			key.Columns = append(key.Columns, fact{Label: ds, Value: strings.Join(k[ds], " + ")})
		}
		d.Keys = append(d.Keys, key)
	}
	if d.Normalize == "" {
		d.Normalize = "none: values are compared exactly"
	}
	m, err := ui.srv.Metrics(ctx, ss)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	if lm, ok := m.(silo.LinkageMetrics); ok {
		d.Overlaps = lm.Clients
	}
	v := ui.newView(r, sess.Name+" · Sessions")
	v.Section = "sessions"
	v.Data = d
	if d.Active {
		v.Refresh = 2
	}
	ui.render(w, r, http.StatusOK, "session_prl", v)
}

// percent shows a fraction as a percentage.
func percent(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }
