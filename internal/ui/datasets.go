package ui

// Library: the datasets list, the registration wizard (SPEC §3) and each
// dataset's page.
//
// The wizard keeps no draft on the server: each step posts every earlier
// step's values as hidden fields, is validated on its own, and either shows
// its errors next to its fields or renders the next step. Attachments cannot
// travel in hidden fields, so the attachments step is also the last: its
// Connect button posts the files (multipart, bounded by the route's maxBody,
// which the guard applies before anything reads the body) together with
// everything else, registers the dataset, stores the files and lands on the
// dataset's page.

import (
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
)

// wizardMaxBody bounds the wizard's last request: its attachments, each at
// most silo.MaxAttachmentBytes, plus the form.
const wizardMaxBody = 5*silo.MaxAttachmentBytes + 1<<20

// maxWizardAttachments bounds how many files one registration attaches.
const maxWizardAttachments = 10

var wizardSteps = []string{"Task runner", "Details and privacy", "Data location", "Attachments", "Connect"}

// privacyFields are the privacy controls' form fields, named as their JSON.
var privacyFields = []string{"allowed_session_types", "allowed_users", "require_differential_privacy", "max_epsilon_per_session",
	"epsilon_budget", "delta", "min_records_per_aggregate", "identifier_columns", "excluded_columns", "allow_predictions"}

// wizardStepFields are the fields each step shows; the others it carries.
var wizardStepFields = map[int][]string{
	1: {"runner"},
	2: append([]string{"name", "description"}, privacyFields...),
	3: {"uri"},
}

// wizardCarried is every value the wizard carries between steps.
// privacy_set marks that the privacy controls were shown once, so an
// unticked box means "no" rather than "use the default".
var wizardCarried = slices.Concat([]string{"runner", "name", "description", "uri", "privacy_set"}, privacyFields)

var sessionTypeOptions = []option{
	{silo.SessionHFL, "Horizontal federated learning: same columns, rows from several organisations"},
	{silo.SessionEDA, "Exploratory statistics, differentially private"},
	{silo.SessionPRL, "Private record linkage on the identifier columns"},
	{silo.SessionVFL, "Vertical federated learning: same people, columns from several organisations"},
}

type hiddenField struct{ Name, Value string }

type wizardData struct {
	Step       int
	Steps      []string
	Runners    []*silo.Runner
	Runner     *silo.Runner // the runner chosen, from step 2 on
	Hidden     []hiddenField
	URIHelp    string
	URIExample string
	Review     []runnerSetting
	MaxMiB     int
	MaxFiles   int
}

// privacyValues returns privacy controls as form values.
func privacyValues(p silo.PrivacyControls) url.Values {
	v := url.Values{
		"allowed_session_types":     slices.Clone(p.AllowedSessionTypes),
		"allowed_users":             {strings.Join(p.AllowedUsers, ", ")},
		"max_epsilon_per_session":   {fmtFloat(p.MaxEpsilonPerSession)},
		"epsilon_budget":            {fmtFloat(p.EpsilonBudget)},
		"delta":                     {fmtFloat(p.Delta)},
		"min_records_per_aggregate": {strconv.Itoa(p.MinRecordsPerAggregate)},
		"identifier_columns":        {strings.Join(p.IdentifierColumns, ", ")},
		"excluded_columns":          {strings.Join(p.ExcludedColumns, ", ")},
		"privacy_set":               {"1"},
	}
	if p.RequireDifferentialPrivacy {
		v.Set("require_differential_privacy", "on")
	}
	if p.AllowPredictions {
		v.Set("allow_predictions", "on")
	}
	return v
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// privacyFromForm reads privacy controls from form values and validates
// them, recording problems in f next to their fields.
func privacyFromForm(vals url.Values, f *form) silo.PrivacyControls {
	p := silo.PrivacyControls{
		AllowedSessionTypes:        append([]string{}, vals["allowed_session_types"]...),
		AllowedUsers:               splitList(vals.Get("allowed_users")),
		RequireDifferentialPrivacy: vals.Get("require_differential_privacy") != "",
		IdentifierColumns:          splitList(vals.Get("identifier_columns")),
		ExcludedColumns:            splitList(vals.Get("excluded_columns")),
		AllowPredictions:           vals.Get("allow_predictions") != "",
	}
	bad := false
	num := func(field, eg string, dst *float64) {
		raw := strings.TrimSpace(vals.Get(field))
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			if raw == "" {
				f.Errors[field] = fmt.Sprintf("%s is required, e.g. %s", field, eg)
			} else {
				f.Errors[field] = fmt.Sprintf("%s must be a number, e.g. %s, not %q", field, eg, raw)
			}
			bad = true
			return
		}
		*dst = x
	}
	num("max_epsilon_per_session", "10", &p.MaxEpsilonPerSession)
	num("epsilon_budget", "50", &p.EpsilonBudget)
	num("delta", "1e-5", &p.Delta)
	raw := strings.TrimSpace(vals.Get("min_records_per_aggregate"))
	if n, err := strconv.Atoi(raw); err != nil {
		f.Errors["min_records_per_aggregate"] = fmt.Sprintf("min_records_per_aggregate must be a whole number, e.g. 10, not %q", raw)
		bad = true
	} else {
		p.MinRecordsPerAggregate = n
	}
	if !bad {
		if err := p.Validate(); err != nil {
			placeDatasetError(f, err)
		}
	}
	return p
}

// placeDatasetError records each of err's problems next to its field
// (privacy.X is shown at X), or on the form as a whole.
func placeDatasetError(f *form, err error) {
	fields := silo.ErrorFields(err)
	if len(fields) == 0 {
		f.Error = silo.ErrorMessage(err)
		return
	}
	for _, fe := range fields {
		field := strings.TrimPrefix(fe.Field, "privacy.")
		switch {
		case slices.Contains(wizardCarried, field) && f.Errors[field] == "":
			f.Errors[field] = fe.Message
		case slices.Contains(wizardCarried, field):
		case f.Error == "":
			f.Error = fe.Message
		default:
			f.Error += "; " + fe.Message
		}
	}
}

// datasetStepOf returns the wizard step that shows field.
func datasetStepOf(field string) int {
	field = strings.TrimPrefix(field, "privacy.")
	for step, fields := range wizardStepFields {
		if slices.Contains(fields, field) {
			return step
		}
	}
	return 4
}

// ---- Library ----

type libraryData struct {
	Datasets []*silo.Dataset
}

func (ui *UI) handleLibrary(w http.ResponseWriter, r *http.Request) {
	stored, err := ui.db.ListDatasets(r.Context())
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d := libraryData{Datasets: make([]*silo.Dataset, len(stored))}
	for i, ds := range stored {
		d.Datasets[i] = &ds.Dataset
	}
	v := ui.newView(r, "Library")
	v.Section = "library"
	v.Data = d
	ui.render(w, r, http.StatusOK, "library", v)
}

// ---- Registration wizard ----

func (ui *UI) handleDatasetWizardStart(w http.ResponseWriter, r *http.Request) {
	f := newForm(url.Values{})
	if rn := r.URL.Query().Get("runner"); rn != "" {
		f.Values.Set("runner", rn)
	}
	ui.renderWizard(w, r, http.StatusOK, 1, f)
}

func (ui *UI) renderWizard(w http.ResponseWriter, r *http.Request, status, step int, f *form) {
	d := wizardData{Step: step, Steps: wizardSteps, MaxMiB: silo.MaxAttachmentBytes >> 20, MaxFiles: maxWizardAttachments}
	runners, err := ui.listRunners(r)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d.Runners = runners
	if name := f.Get("runner"); name != "" {
		for _, rn := range runners {
			if rn.Name == name {
				d.Runner = rn
			}
		}
	}
	if d.Runner == nil && step > 1 {
		step, d.Step = 1, 1
	}
	shown := wizardStepFields[step]
	for _, k := range wizardCarried {
		if slices.Contains(shown, k) {
			continue
		}
		for _, val := range f.Values[k] {
			d.Hidden = append(d.Hidden, hiddenField{k, val})
		}
	}
	if rn := d.Runner; rn != nil {
		switch rn.Provider {
		case silo.ProviderLocal:
			root := strings.TrimSuffix(server.LocalRoot(rn.StoragePath), "/")
			d.URIHelp = "A file or a folder under file://" + root + " (the runner's storage root): one CSV or Parquet file, or a folder of files with one schema."
			d.URIExample = "file://" + root + "/patients.csv"
		case silo.ProviderAWS:
			d.URIHelp = "An object or a prefix in S3, as s3://<bucket>/<path>: one CSV or Parquet file, or a prefix of files with one schema. The runner reads it with its runtime role."
			d.URIExample = strings.TrimSuffix(rn.StoragePath, "/") + "/data/patients.parquet"
		case silo.ProviderAzure:
			d.URIHelp = "A blob or a folder in the runner's storage account " + rn.StoragePath + ", as azure://<container>/<path>: one CSV or Parquet file, or a folder of files with one schema."
			d.URIExample = "azure://data/patients.parquet"
		}
	}
	if step == 4 {
		d.Review = wizardReview(f, d.Runner)
	}
	v := ui.newView(r, "Register a dataset")
	v.Section = "library"
	v.Form = f
	v.Data = d
	ui.render(w, r, status, "dataset_new", v)
}

// wizardReview summarises the earlier steps on the last one.
func wizardReview(f *form, rn *silo.Runner) []runnerSetting {
	yesNo := func(k string) string {
		if f.Get(k) != "" {
			return "Yes"
		}
		return "No"
	}
	or := func(s, none string) string {
		if strings.TrimSpace(s) == "" {
			return none
		}
		return s
	}
	runner := ""
	if rn != nil {
		runner = rn.Name + " (" + providerTitle(rn.Provider) + ")"
	}
	return []runnerSetting{
		{Label: "Task runner", Value: runner},
		{Label: "Name", Value: f.Get("name"), Code: true},
		{Label: "Description", Value: or(f.Get("description"), "—")},
		{Label: "Data", Value: f.Get("uri"), Code: true},
		{Label: "Session types", Value: strings.Join(f.Values["allowed_session_types"], ", ")},
		{Label: "Allowed users", Value: or(f.Get("allowed_users"), "Every Model Builder")},
		{Label: "Differential privacy required", Value: yesNo("require_differential_privacy")},
		{Label: "Epsilon", Value: "at most " + f.Get("max_epsilon_per_session") + " per session, " + f.Get("epsilon_budget") + " in all (δ " + f.Get("delta") + ")"},
		{Label: "Min. records per aggregate", Value: f.Get("min_records_per_aggregate")},
		{Label: "Identifier columns", Value: or(f.Get("identifier_columns"), "None")},
		{Label: "Excluded columns", Value: or(f.Get("excluded_columns"), "None")},
		{Label: "Predictions", Value: yesNo("allow_predictions")},
	}
}

func (ui *UI) handleDatasetWizard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !ui.parseForm(w, r) {
		return
	}
	f := newForm(url.Values{})
	for _, k := range wizardCarried {
		if v, ok := r.PostForm[k]; ok {
			f.Values[k] = v
		}
	}
	step, _ := strconv.Atoi(r.PostForm.Get("step"))
	if step < 1 || step > 4 {
		step = 1
	}
	if r.PostForm.Get("back") != "" {
		ui.renderWizard(w, r, http.StatusOK, max(step-1, 1), f)
		return
	}
	fail := func(step int) { ui.renderWizard(w, r, http.StatusBadRequest, step, f) }

	// Every step checks the runner: it may be gone since step 1.
	name := strings.TrimSpace(f.Get("runner"))
	if name == "" {
		f.Errors["runner"] = "choose the task runner next to the data"
		fail(1)
		return
	}
	rn, err := ui.db.FindRunner(ctx, name)
	if err != nil {
		ui.logInternal(r, err)
		f.Errors["runner"] = forWeb(silo.ErrorMessage(err))
		fail(1)
		return
	}
	switch step {
	case 1:
		if f.Get("privacy_set") == "" {
			for k, v := range privacyValues(ui.srv.DefaultPrivacy()) {
				f.Values[k] = v
			}
		}
		ui.renderWizard(w, r, http.StatusOK, 2, f)
	case 2:
		if ui.checkWizardDetails(r, f); len(f.Errors) > 0 || f.Error != "" {
			fail(2)
			return
		}
		ui.renderWizard(w, r, http.StatusOK, 3, f)
	case 3:
		uri := strings.TrimSpace(f.Get("uri"))
		f.Values.Set("uri", uri)
		if uri == "" {
			f.Errors["uri"] = "give the data's location, e.g. " + silo.URISchemeFor(rn.Provider) + "://…"
		} else if err := server.CheckDatasetURI(uri, rn); err != nil {
			f.Errors["uri"] = silo.ErrorMessage(err)
		}
		if len(f.Errors) > 0 {
			fail(3)
			return
		}
		ui.renderWizard(w, r, http.StatusOK, 4, f)
	case 4:
		ui.wizardConnect(w, r, f)
	}
}

// checkWizardDetails checks step 2: name, description and privacy controls.
func (ui *UI) checkWizardDetails(r *http.Request, f *form) silo.PrivacyControls {
	name := strings.TrimSpace(f.Get("name"))
	f.Values.Set("name", name)
	if err := silo.ValidateDatasetName(name); err != nil {
		f.Errors["name"] = silo.ErrorMessage(err)
	} else if _, err := ui.db.FindDataset(r.Context(), name); err == nil {
		f.Errors["name"] = fmt.Sprintf("a dataset named %q already exists: choose another name", name)
	}
	if len(strings.TrimSpace(f.Get("description"))) > 4000 {
		f.Errors["description"] = "description must be at most 4000 characters"
	}
	return privacyFromForm(f.Values, f)
}

// wizardConnect is the last step: check the attachments, register the
// dataset, store its attachments and go to its page.
func (ui *UI) wizardConnect(w http.ResponseWriter, r *http.Request, f *form) {
	ctx := r.Context()
	var files []*multipart.FileHeader
	if r.MultipartForm != nil {
		for _, fh := range r.MultipartForm.File["attachments"] {
			if fh.Filename == "" && fh.Size == 0 {
				continue // no file chosen
			}
			files = append(files, fh)
		}
	}
	switch {
	case len(files) > maxWizardAttachments:
		f.Errors["attachments"] = fmt.Sprintf("attach at most %d files at once; add more from the dataset's page later", maxWizardAttachments)
	default:
		for _, fh := range files {
			if fh.Size > silo.MaxAttachmentBytes {
				f.Errors["attachments"] = fmt.Sprintf("%s is %s, more than %d MiB: attach a smaller file", fh.Filename, humanBytes(fh.Size), silo.MaxAttachmentBytes>>20)
				break
			}
			if fh.Size == 0 {
				f.Errors["attachments"] = fh.Filename + " is empty"
				break
			}
		}
	}
	if len(f.Errors) > 0 {
		ui.renderWizard(w, r, http.StatusBadRequest, 4, f)
		return
	}
	privacy := ui.checkWizardDetails(r, f)
	if len(f.Errors) > 0 || f.Error != "" {
		ui.renderWizard(w, r, http.StatusBadRequest, 2, f)
		return
	}
	spec := silo.DatasetSpec{Name: f.Get("name"), Runner: f.Get("runner"), URI: f.Get("uri"), Description: f.Get("description"), Privacy: &privacy}
	d, err := ui.srv.RegisterDataset(ctx, spec)
	if err != nil {
		ui.logInternal(r, err)
		var field string
		if e, ok := err.(*silo.Error); ok {
			field = e.Field
		}
		step := datasetStepOf(field)
		placeDatasetError(f, err)
		ui.renderWizard(w, r, httpjson.Status(err), step, f)
		return
	}
	var failed []string
	for _, fh := range files {
		file, err := fh.Open()
		if err == nil {
			_, err = ui.srv.AddAttachment(ctx, d.Name, fh.Filename, fh.Header.Get("Content-Type"), file)
			_ = file.Close()
		}
		if err != nil {
			ui.logInternal(r, err)
			failed = append(failed, fh.Filename+": "+silo.ErrorMessage(err))
		}
	}
	msg := "Dataset " + d.Name + " is registered: the runner is reading the data…"
	if n := len(files) - len(failed); n > 0 {
		msg = fmt.Sprintf("Dataset %s is registered with %s: the runner is reading the data…", d.Name, plural(n, "attachment"))
	}
	if len(failed) > 0 {
		ui.redirectFlash(w, r, datasetPath(d.Name), "error", msg+" Some attachments were not stored ("+strings.Join(failed, "; ")+"): add them again with 'silo datasets attach'.")
		return
	}
	ui.redirectFlash(w, r, datasetPath(d.Name), "success", msg)
}

func datasetPath(name string) string { return "/library/" + url.PathEscape(name) }

// humanBytes writes a size for people: 532 bytes, 12.4 KB, 3.1 MB.
func humanBytes(n int64) string {
	switch {
	case n < 1000:
		return plural(int(n), "byte")
	case n < 1000*1000:
		return fmt.Sprintf("%.1f KB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// ---- Dataset page ----

type datasetPageData struct {
	Dataset   *silo.Dataset
	Runner    *silo.Runner // nil when it is gone
	CanManage bool
	EditOpen  bool
	Privacy   []runnerSetting
	// Effective is what binds the data, field by field, and who set it.
	Effective []effectiveSetting
}

// effectiveSetting is one field of the controls that bind a dataset's data.
type effectiveSetting struct {
	runnerSetting
	SetBy    string
	Stricter bool // set by another dataset or the runner's policy
}

// effectiveSettings lists effective controls with who set each field.
func effectiveSettings(name string, eff *silo.EffectivePrivacy) []effectiveSetting {
	var out []effectiveSetting
	for i, rs := range privacySettings(eff.Controls) {
		by := eff.Sources[silo.PrivacyFieldNames()[i]]
		out = append(out, effectiveSetting{runnerSetting: rs, SetBy: strings.Join(by, ", "),
			Stricter: len(by) != 1 || by[0] != "dataset "+name})
	}
	return out
}

func (ui *UI) handleDatasetPage(w http.ResponseWriter, r *http.Request) {
	ui.renderDatasetPage(w, r, http.StatusOK, r.PathValue("name"), nil)
}

// formatTitle names a data format as people write it.
func formatTitle(f string) string {
	switch strings.ToLower(f) {
	case "csv":
		return "CSV"
	case "parquet":
		return "Parquet"
	}
	return f
}

// renderDatasetPage shows a dataset; f, when set, is a privacy form that
// failed.
func (ui *UI) renderDatasetPage(w http.ResponseWriter, r *http.Request, status int, name string, f *form) {
	ctx := r.Context()
	stored, err := ui.db.FindDataset(ctx, name)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	ds, err := ui.srv.DatasetView(ctx, stored)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d := datasetPageData{Dataset: ds, Privacy: privacySettings(ds.Privacy), Effective: effectiveSettings(ds.Name, ds.Effective)}
	if rn, err := ui.db.FindRunner(ctx, ds.Runner); err == nil {
		d.Runner = ui.srv.RunnerView(rn)
	}
	a := silo.ActorFromContext(ctx)
	d.CanManage = a.Can(silo.PermDatasetsManage) && server.CanManageDataset(ctx, stored) == nil
	v := ui.newView(r, ds.Name+" · Library")
	v.Section = "library"
	if f == nil {
		vals := privacyValues(ds.Privacy)
		vals.Set("description", ds.Description)
		vals.Set("uri", ds.URI)
		f = newForm(vals)
		d.EditOpen = r.URL.Query().Get("edit") == "privacy"
	} else {
		d.EditOpen = true
	}
	v.Form = f
	v.Data = d
	if ds.Status == silo.DatasetConnecting && f.Error == "" && len(f.Errors) == 0 {
		v.Refresh = 2
	}
	ui.render(w, r, status, "dataset", v)
}

// privacySettings lists privacy controls for reading.
func privacySettings(p silo.PrivacyControls) []runnerSetting {
	list := func(l []string, none string) string {
		if len(l) == 0 {
			return none
		}
		return strings.Join(l, ", ")
	}
	yes := func(b bool) string {
		if b {
			return "Yes"
		}
		return "No"
	}
	return []runnerSetting{
		{Label: "Session types", Value: list(p.AllowedSessionTypes, "None")},
		{Label: "Allowed users", Value: list(p.AllowedUsers, "Every Model Builder")},
		{Label: "Differential privacy required", Value: yes(p.RequireDifferentialPrivacy)},
		{Label: "Max. epsilon per session", Value: fmtFloat(p.MaxEpsilonPerSession)},
		{Label: "Epsilon budget", Value: fmtFloat(p.EpsilonBudget)},
		{Label: "Delta", Value: fmtFloat(p.Delta)},
		{Label: "Min. records per aggregate", Value: strconv.Itoa(p.MinRecordsPerAggregate)},
		{Label: "Identifier columns", Value: list(p.IdentifierColumns, "None"), Code: len(p.IdentifierColumns) > 0},
		{Label: "Excluded columns", Value: list(p.ExcludedColumns, "None"), Code: len(p.ExcludedColumns) > 0},
		{Label: "Predictions", Value: yes(p.AllowPredictions)},
	}
}

func (ui *UI) handleDatasetPrivacy(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if !ui.parseForm(w, r) {
		return
	}
	f := newForm(url.Values{})
	for _, k := range append([]string{"description", "uri"}, privacyFields...) {
		if v, ok := r.PostForm[k]; ok {
			f.Values[k] = v
		}
	}
	desc := strings.TrimSpace(f.Get("description"))
	if len(desc) > 4000 {
		f.Errors["description"] = "description must be at most 4000 characters"
	}
	p := privacyFromForm(f.Values, f)
	if len(f.Errors) > 0 || f.Error != "" {
		ui.renderDatasetPage(w, r, http.StatusBadRequest, name, f)
		return
	}
	patch := server.DatasetPatch{Description: &desc, Privacy: &p}
	if _, ok := f.Values["uri"]; ok {
		uri := strings.TrimSpace(f.Get("uri"))
		patch.URI = &uri
	}
	_, err := ui.srv.PatchDataset(ctx, name, patch)
	switch code := silo.ErrorCode(err); {
	case err == nil:
		ui.redirectFlash(w, r, datasetPath(name), "success", "Dataset "+name+" saved; the runner is reading the data again.")
	case code == silo.EINVALID:
		placeDatasetError(f, err)
		ui.renderDatasetPage(w, r, http.StatusBadRequest, name, f)
	default:
		ui.redirectResult(w, r, datasetPath(name), "", err)
	}
}

func (ui *UI) handleDatasetConnect(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, err := ui.srv.ReconnectDataset(r.Context(), name)
	ui.redirectResult(w, r, datasetPath(name), "Connecting "+name+" again: the runner is reading the data…", err)
}

func (ui *UI) handleDatasetDeregister(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := ui.srv.DeregisterDataset(r.Context(), name); err != nil {
		ui.redirectResult(w, r, datasetPath(name), "", err)
		return
	}
	ui.redirectFlash(w, r, "/library", "success", "Dataset "+name+" is deregistered: sessions can no longer use it. Its data is untouched in its storage.")
}
