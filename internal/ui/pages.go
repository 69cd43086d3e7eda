package ui

import (
	"fmt"
	"net/http"

	"github.com/silofl/silo"
)

// step is one item of the dashboard's getting-started checklist.
type step struct {
	Title, Text  string
	Href, Action string // where to do it, when it can be done today
	Done         bool
	Soon         bool   // the feature is not built yet
	Pending      string // under way, not done: what it waits for
}

type dashboardData struct {
	Name           string
	Users, Admins  int
	PendingInvites int
	Tokens         int
	Runners        int
	RunnersOnline  int
	Steps          []step
	Done           int
	// Recent are the latest sessions the user may see, newest first.
	Recent      []sessionRow
	MoreRecent  bool
	CanSessions bool
}

// dashboardSessions is how many recent sessions the dashboard lists.
const dashboardSessions = 5

func (ui *UI) handleDashboard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a := silo.ActorFromContext(ctx)
	d := dashboardData{Name: a.User.Name}
	if d.Name == "" {
		d.Name = a.User.Email
	}
	users, err := ui.db.ListUsers(ctx)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d.Users = len(users)
	for _, u := range users {
		if u.IsActiveAdmin() {
			d.Admins++
		}
	}
	if a.Can(silo.PermUsersRead) {
		invites, err := ui.srv.ListInvites(ctx)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		for _, i := range invites {
			if i.Status == silo.InvitePending {
				d.PendingInvites++
			}
		}
	}
	tokens, err := ui.db.ListTokens(ctx, a.User.ID)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	for _, t := range tokens {
		if t.Active(ui.now()) {
			d.Tokens++
		}
	}
	if d.Runners, d.RunnersOnline, err = ui.db.CountRunners(r.Context()); err != nil {
		ui.renderError(w, r, err)
		return
	}

	if a.Can(silo.PermUsersManage) {
		// Done when someone has joined: an invitation still pending is a
		// step under way, not one done.
		st := step{Title: "Invite your team",
			Text: "Invite a Data Custodian from each organisation that holds data, and the Model Builders who will train with it.",
			Href: "/settings/users", Action: "Invite people", Done: d.Users > 1}
		if !st.Done && d.PendingInvites > 0 {
			st.Pending = fmt.Sprintf("%d invitation%s waiting to be accepted", d.PendingInvites, map[bool]string{true: "", false: "s"}[d.PendingInvites == 1])
			st.Action = "See invitations"
		}
		d.Steps = append(d.Steps, st)
	}
	if a.Can(silo.PermRunnersManage) {
		href := "/settings/register-runner"
		if d.Runners > 0 {
			href = "/settings/runners"
		}
		d.Steps = append(d.Steps, step{Title: "Register a task runner",
			Text: "Each organisation runs a task runner next to its own storage. It only dials out to this server, and only model updates leave it.",
			Href: href, Action: "Register a runner", Done: d.Runners > 0})
	}
	if a.Can(silo.PermDatasetsManage) {
		datasets, err := ui.db.ListDatasets(ctx)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		href := "/library/register-dataset"
		if len(datasets) > 0 {
			href = "/library"
		}
		d.Steps = append(d.Steps, step{Title: "Register a dataset",
			Text: "Describe a dataset a task runner can read, and set its privacy controls. The data itself never leaves your organisation.",
			Href: href, Action: "Register a dataset", Done: len(datasets) > 0})
	}
	if a.Can(silo.PermSessionsManage) {
		sessions, err := ui.db.ListSessions(ctx, false)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		href := "/sessions/new"
		if len(sessions) > 0 {
			href = "/sessions"
		}
		d.Steps = append(d.Steps, step{Title: "Create a training session",
			Text: "Train a model across the registered datasets: each runner trains on its own data and this server aggregates the updates, round by round.",
			Href: href, Action: "New session", Done: len(sessions) > 0})
	}
	d.Steps = append(d.Steps, step{Title: "Create an access token",
		Text: "Use the silo command line, the Go SDK or your own scripts with a token instead of your password.",
		Href: "/settings/tokens", Action: "Create a token", Done: d.Tokens > 0})
	for _, st := range d.Steps {
		if st.Done {
			d.Done++
		}
	}
	if d.CanSessions = a.Can(silo.PermSessionsRead); d.CanSessions {
		rows, err := ui.sessionRows(r)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		d.MoreRecent = len(rows) > dashboardSessions
		d.Recent = rows[:min(len(rows), dashboardSessions)]
	}
	v := ui.newView(r, "Dashboard")
	v.Section = "dashboard"
	v.Data = d
	ui.render(w, r, http.StatusOK, "dashboard", v)
}

// handleSettings sends the user to the first settings page they may see.
func (ui *UI) handleSettings(w http.ResponseWriter, r *http.Request) {
	v := ui.newView(r, "Settings")
	if len(v.Tabs) == 0 {
		ui.renderError(w, r, silo.Errorf(silo.EFORBIDDEN, "your roles give you no settings to see or change"))
		return
	}
	http.Redirect(w, r, v.Tabs[0].Path, http.StatusSeeOther)
}

// settingsView returns a view for a settings page.
func (ui *UI) settingsView(r *http.Request, title, tab string) *view {
	v := ui.newView(r, title)
	v.Section, v.Tab = "settings", tab
	return v
}
