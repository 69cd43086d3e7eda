package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/sqlstore"
)

// datasetRoutes declares the dataset API.
func (s *Server) datasetRoutes() []Route {
	manage := Perm(silo.PermDatasetsManage)
	read := Perm(silo.PermDatasetsRead)
	return []Route{
		{Method: "GET", Path: "/api/v1/datasets", Access: read, Summary: "List datasets (metadata only: rows never leave their runner)", Out: []silo.Dataset{}, Handler: s.handleListDatasets},
		{Method: "POST", Path: "/api/v1/datasets", Access: manage, Summary: "Register a dataset; its runner then connects to it", In: silo.DatasetSpec{}, Out: silo.Dataset{}, Handler: s.handleRegisterDataset},
		{Method: "GET", Path: "/api/v1/datasets/{name}", Access: read, Summary: "Show a dataset: schema, row count, null counts, allowed summaries", Out: silo.Dataset{}, Handler: s.handleGetDataset},
		{Method: "PATCH", Path: "/api/v1/datasets/{name}", Access: manage, Summary: "Edit a dataset's URI, description or privacy controls (its owner or an admin); a new URI or new controls make its runner connect again", In: DatasetPatch{}, Out: silo.Dataset{}, Handler: s.handlePatchDataset},
		{Method: "DELETE", Path: "/api/v1/datasets/{name}", Access: manage, Summary: "Deregister a dataset (its owner or an admin)", Handler: s.handleDeregisterDataset},
		{Method: "POST", Path: "/api/v1/datasets/{name}/connect", Access: manage, Summary: "Connect again: the runner re-reads the data's schema", Out: silo.Dataset{}, Handler: s.handleConnectDataset},
		{Method: "POST", Path: "/api/v1/datasets/{name}/attachments", Access: manage, Summary: "Attach a metadata file (?name=FILE; body is the file, at most 10 MiB)", Out: silo.Attachment{}, Handler: s.handleAddAttachment},
		{Method: "GET", Path: "/api/v1/datasets/{name}/attachments/{id}", Access: read, Summary: "Download an attachment", Handler: s.handleGetAttachment},
	}
}

func (s *Server) handleListDatasets(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ds, err := s.db.ListDatasets(ctx)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	out := make([]*silo.Dataset, len(ds))
	onRunner := map[int64][]*sqlstore.StoredDataset{}
	for i, d := range ds {
		if _, ok := onRunner[d.RunnerID]; !ok {
			if onRunner[d.RunnerID], err = s.db.ListRunnerDatasets(ctx, d.RunnerID); err != nil {
				httpjson.Error(w, r, s.Logger, err)
				return
			}
		}
		if out[i], err = s.datasetView(ctx, d, onRunner[d.RunnerID]); err != nil {
			httpjson.Error(w, r, s.Logger, err)
			return
		}
	}
	httpjson.Write(w, http.StatusOK, out)
}

func (s *Server) handleGetDataset(w http.ResponseWriter, r *http.Request) {
	d, err := s.db.FindDataset(r.Context(), r.PathValue("name"))
	var v *silo.Dataset
	if err == nil {
		v, err = s.datasetView(r.Context(), d, nil)
	}
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, v)
}

func (s *Server) handleRegisterDataset(w http.ResponseWriter, r *http.Request) {
	var spec silo.DatasetSpec
	if err := httpjson.Decode(w, r, &spec); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	d, err := s.RegisterDataset(r.Context(), spec)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, d)
}

// RegisterDataset validates spec against its runner, stores the dataset and
// asks the runner to connect. The API, UI and quickstart share it. Controls
// left out start from the server's defaults (DefaultPrivacy), and a list of
// session types left out (null) allows the types this server runs. Every
// problem with the spec is reported at once.
func (s *Server) RegisterDataset(ctx context.Context, spec silo.DatasetSpec) (*silo.Dataset, error) {
	s.fillPrivacyDefaults(&spec.Privacy)
	var errs []error
	if err := spec.Validate(); err != nil {
		errs = append(errs, err)
	}
	var rn *sqlstore.StoredRunner
	// The runner is looked up only by a name that passed its own checks: a
	// name with a NUL byte, say, must be refused, not sent to the database.
	if spec.Runner != "" && !hasField(errs, "runner") {
		var err error
		rn, err = s.db.FindRunner(ctx, spec.Runner)
		switch {
		case silo.ErrorCode(err) == silo.ENOTFOUND:
			errs = append(errs, silo.FieldErrorf("runner", "no task runner named %q: choose one from 'silo runners list' (the web UI: Settings → Task Runners), or ask a Workspace Administrator or a Model Builder to register one", spec.Runner))
		case err != nil:
			return nil, err
		case spec.URI != "" && !hasField(errs, "uri"):
			if err := CheckDatasetURI(spec.URI, rn); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := silo.FieldErrors(errs); err != nil {
		s.auditResult(ctx, "dataset.register", spec.Name, err)
		return nil, err
	}
	d := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: spec.Name, URI: spec.URI, Description: spec.Description, Owner: silo.ActorFromContext(ctx).Name(),
		Privacy: *spec.Privacy}, RunnerID: rn.ID}
	err := s.db.CreateDataset(ctx, d)
	s.auditResult(ctx, "dataset.register", spec.Name+" on "+rn.Name, err)
	if err != nil {
		return nil, err
	}
	return s.connectDataset(ctx, d.Name)
}

// fillPrivacyDefaults gives controls that were left out the server's
// defaults, and a session-type list left out (null) the types it runs.
func (s *Server) fillPrivacyDefaults(p **silo.PrivacyControls) {
	if *p == nil {
		d := s.DefaultPrivacy()
		*p = &d
	} else if (*p).AllowedSessionTypes == nil {
		(*p).AllowedSessionTypes = s.SessionKinds()
	}
}

// hasField reports whether errs has a problem with field.
func hasField(errs []error, field string) bool {
	for _, err := range errs {
		for _, f := range silo.ErrorFields(err) {
			if f.Field == field {
				return true
			}
		}
	}
	return false
}

// CheckDatasetURI checks the URI's form and that the runner can read it: the
// scheme of its provider, and for S3 the runner's own bucket rule.
func CheckDatasetURI(raw string, rn *sqlstore.StoredRunner) error {
	u, err := blob.ParseURI(raw)
	if err != nil {
		return err
	}
	want := silo.URISchemeFor(rn.Provider)
	if u.Scheme != want {
		return silo.FieldErrorf("uri", "runner %s is a %s runner, so the data must be at a %s:// URI, not %s://", rn.Name, rn.Provider, want, u.Scheme)
	}
	if rn.Provider == silo.ProviderLocal {
		root := strings.TrimSuffix(LocalRoot(rn.StoragePath), "/")
		if u.Path != root && !strings.HasPrefix(u.Path, root+"/") {
			return silo.FieldErrorf("uri", "%s is outside runner %s's storage root %s: local runners read only under their root", raw, rn.Name, root)
		}
		if state := (blob.URI{Scheme: blob.SchemeFile, Path: root + "/.silo"}).Location(); blob.LocationWithin(u.Location(), state) {
			return silo.FieldErrorf("uri", "%s is runner %s's own state (%s), not data: it can never be a dataset", raw, rn.Name, root+"/.silo")
		}
	}
	return nil
}

// connectDataset queues a connect task on the dataset's runner and marks the
// dataset connecting.
func (s *Server) connectDataset(ctx context.Context, name string) (*silo.Dataset, error) {
	d, err := s.db.FindDataset(ctx, name)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(silo.ConnectPayload{Dataset: d.Name, URI: d.URI, Privacy: d.Privacy})
	if err != nil {
		return nil, err
	}
	// The dataset names its connect task before the task exists: a runner
	// may finish it before this function returns.
	id := "task_" + randomSecret(10)
	updated, err := s.db.UpdateDataset(ctx, name, func(d *sqlstore.StoredDataset) error {
		d.Status, d.Error, d.ConnectTask = silo.DatasetConnecting, "", id
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := s.QueueTask(ctx, d.Runner, &silo.Task{ID: id, Type: silo.TaskConnect, Payload: payload, VCPU: 1, MemoryMB: 256}); err != nil {
		return nil, err
	}
	return &updated.Dataset, nil
}

// datasetConnected records a finished connect task on its dataset: the
// schema and counts, or the runner's reason.
func (s *Server) datasetConnected(ctx context.Context, t *silo.Task) error {
	d, err := s.db.FindDatasetByConnectTask(ctx, t.ID)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return nil // superseded by a newer connect, or deregistered
	} else if err != nil {
		return err
	}
	var out silo.ConnectOutput
	if t.Status == silo.TaskSucceeded {
		if err := json.Unmarshal(t.Output, &out); err != nil {
			t.Status, t.Error = silo.TaskFailed, "the runner's report could not be read: "+err.Error()
		}
	}
	_, err = s.db.UpdateDataset(ctx, d.Name, func(d *sqlstore.StoredDataset) error {
		if d.ConnectTask != t.ID {
			return nil
		}
		if t.Status != silo.TaskSucceeded {
			d.Status, d.Error = silo.DatasetError, t.Error
			return nil
		}
		now := s.now()
		d.Status, d.Error, d.Format, d.Files, d.RowCount, d.Columns, d.ConnectedAt = silo.DatasetConnected, "", out.Format, out.Files, out.Rows, out.Columns, &now
		return nil
	})
	outcome := silo.OutcomeSuccess
	if t.Status != silo.TaskSucceeded {
		outcome = silo.OutcomeFailed
	}
	s.auditAs(ctx, "runner:"+t.Runner, "dataset.connected", d.Name, outcome, t.Error)
	return err
}

// DatasetPatch changes a dataset: the fields given replace the stored ones.
type DatasetPatch struct {
	// URI moves the dataset to other data on the same runner (to correct a
	// mistyped path, say); the runner connects to it again.
	URI         *string               `json:"uri,omitempty"`
	Description *string               `json:"description,omitempty"`
	Privacy     *silo.PrivacyControls `json:"privacy,omitempty"`
}

// CanManageDataset is the object-level rule: a custodian changes only the
// datasets they own; an admin changes any.
func CanManageDataset(ctx context.Context, d *sqlstore.StoredDataset) error {
	a := silo.ActorFromContext(ctx)
	if a.User.HasRole(silo.RoleAdmin) || strings.EqualFold(a.User.Email, d.Owner) {
		return nil
	}
	return silo.Errorf(silo.EFORBIDDEN, "only the dataset's owner (%s) or a Workspace Administrator may change dataset %s", d.Owner, d.Name)
}

func (s *Server) handlePatchDataset(w http.ResponseWriter, r *http.Request) {
	var p DatasetPatch
	if err := httpjson.Decode(w, r, &p); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	d, err := s.PatchDataset(r.Context(), r.PathValue("name"), p)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, d)
}

// PatchDataset edits a dataset; a privacy change is audited with the old and
// new controls, and a privacy or URI change makes the runner connect again,
// since what it may report, or the data itself, changed. Every problem with
// the patch is reported at once.
func (s *Server) PatchDataset(ctx context.Context, name string, p DatasetPatch) (*silo.Dataset, error) {
	var errs []error
	if p.Privacy != nil {
		if p.Privacy.AllowedSessionTypes == nil {
			p.Privacy.AllowedSessionTypes = s.SessionKinds()
		}
		if err := p.Privacy.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Description != nil {
		if err := silo.ValidateDatasetDescription(strings.TrimSpace(*p.Description)); err != nil {
			errs = append(errs, err)
		}
	}
	if p.URI != nil {
		u := strings.TrimSpace(*p.URI)
		p.URI = &u
		if u == "" {
			errs = append(errs, silo.FieldErrorf("uri", "uri cannot be empty: give where the data is, e.g. file:///srv/data/patients.csv"))
		}
	}
	if err := silo.FieldErrors(errs); err != nil {
		if p.Privacy != nil {
			s.auditResult(ctx, "dataset.privacy", name, err)
		} else {
			s.auditResult(ctx, "dataset.edit", name, err)
		}
		return nil, err
	}
	var before silo.PrivacyControls
	var oldURI string
	d, err := s.db.UpdateDataset(ctx, name, func(d *sqlstore.StoredDataset) error {
		if err := CanManageDataset(ctx, d); err != nil {
			return err
		}
		before, oldURI = d.Privacy, d.URI
		if p.URI != nil && *p.URI != d.URI {
			rn, err := s.db.FindRunner(ctx, d.Runner)
			if err != nil {
				return err
			}
			if err := CheckDatasetURI(*p.URI, rn); err != nil {
				return err
			}
			d.URI = *p.URI
		}
		if p.Description != nil {
			d.Description = strings.TrimSpace(*p.Description)
		}
		if p.Privacy != nil {
			d.Privacy = *p.Privacy
		}
		return nil
	})
	moved := err == nil && d.URI != oldURI
	if p.Privacy != nil {
		old, _ := json.Marshal(before)
		now, _ := json.Marshal(p.Privacy)
		detail := ""
		if err == nil {
			detail = "from " + string(old) + " to " + string(now)
		}
		s.auditResult(ctx, "dataset.privacy", name, err)
		if err == nil {
			s.audit(ctx, "dataset.privacy.detail", name, silo.OutcomeSuccess, detail)
		}
	}
	if p.URI != nil || p.Privacy == nil {
		s.auditResult(ctx, "dataset.edit", name, err)
	}
	if moved {
		s.audit(ctx, "dataset.uri", name, silo.OutcomeSuccess, "from "+oldURI+" to "+d.URI)
	}
	if err != nil {
		return nil, err
	}
	if p.Privacy != nil || moved {
		return s.connectDataset(ctx, name)
	}
	return &d.Dataset, nil
}

func (s *Server) handleDeregisterDataset(w http.ResponseWriter, r *http.Request) {
	if err := s.DeregisterDataset(r.Context(), r.PathValue("name")); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeregisterDataset retires a dataset for its owner or an admin; the API
// and the UI share it.
func (s *Server) DeregisterDataset(ctx context.Context, name string) error {
	d, err := s.db.FindDataset(ctx, name)
	if err == nil {
		err = CanManageDataset(ctx, d)
	}
	if err == nil {
		err = s.db.DeregisterDataset(ctx, name)
	}
	s.auditResult(ctx, "dataset.deregister", name, err)
	if err != nil {
		return err
	}
	// The runner keeps every live dataset's controls bound to its data
	// until told otherwise: tell it. (Its privacy ledger stays.)
	payload, _ := json.Marshal(silo.DeregisterPayload{Dataset: d.Name, URI: d.URI})
	if _, err := s.QueueTask(ctx, d.Runner, &silo.Task{Type: silo.TaskDeregister, Payload: payload, VCPU: 1, MemoryMB: 16, Dataset: d.Name}); err != nil {
		s.Logger.Warn("tell the runner a dataset is deregistered", "dataset", name, "runner", d.Runner, "err", err)
	}
	return nil
}

func (s *Server) handleConnectDataset(w http.ResponseWriter, r *http.Request) {
	out, err := s.ReconnectDataset(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, out)
}

// ReconnectDataset has the runner read a dataset again, for its owner or an
// admin; the API and the UI share it.
func (s *Server) ReconnectDataset(ctx context.Context, name string) (*silo.Dataset, error) {
	d, err := s.db.FindDataset(ctx, name)
	if err == nil {
		err = CanManageDataset(ctx, d)
	}
	var out *silo.Dataset
	if err == nil {
		out, err = s.connectDataset(ctx, d.Name)
	}
	s.auditResult(ctx, "dataset.connect", name, err)
	return out, err
}

func (s *Server) handleAddAttachment(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := s.AddAttachment(ctx, r.PathValue("name"), r.URL.Query().Get("name"), r.Header.Get("Content-Type"), http.MaxBytesReader(w, r.Body, silo.MaxAttachmentBytes))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, a)
}

// AddAttachment stores a metadata file on a dataset; the API and UI share it.
func (s *Server) AddAttachment(ctx context.Context, dataset, name, contentType string, body io.Reader) (*silo.Attachment, error) {
	d, err := s.db.FindDataset(ctx, dataset)
	if err == nil {
		err = CanManageDataset(ctx, d)
	}
	name = path.Base(strings.ReplaceAll(strings.TrimSpace(name), "\\", "/"))
	if err == nil && (name == "" || name == "." || name == "/" || len(name) > 200) {
		err = silo.FieldErrorf("name", "give the attachment a file name (?name=dictionary.pdf), at most 200 characters")
	}
	if err == nil {
		err = silo.CheckText("name", name, false)
	}
	var data []byte
	if err == nil {
		data, err = io.ReadAll(body)
		if httpjson.IsMaxBytes(err) {
			err = silo.Errorf(silo.EINVALID, "attachment %s is larger than %d MiB", name, silo.MaxAttachmentBytes>>20)
		} else if err == nil && len(data) == 0 {
			err = silo.Errorf(silo.EINVALID, "attachment %s is empty", name)
		}
	}
	if mt, _, perr := mime.ParseMediaType(contentType); perr != nil || contentType == "" {
		contentType = http.DetectContentType(data)
	} else {
		contentType = mt
	}
	a := &silo.Attachment{Name: name, ContentType: contentType, UploadedBy: silo.ActorFromContext(ctx).Name()}
	if err == nil {
		err = s.db.AddAttachment(ctx, d.ID, a, data)
	}
	s.auditResult(ctx, "dataset.attachment.upload", dataset+"/"+name, err)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *Server) handleGetAttachment(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	dataset := r.PathValue("name")
	d, err := s.db.FindDataset(ctx, dataset)
	var a *silo.Attachment
	var data []byte
	if err == nil {
		id, perr := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if perr != nil {
			err = silo.Errorf(silo.ENOTFOUND, "no attachment %q on dataset %s", r.PathValue("id"), dataset)
		} else {
			a, data, err = s.db.Attachment(ctx, d.ID, id)
		}
	}
	target := dataset + "/" + r.PathValue("id")
	if a != nil {
		target = dataset + "/" + a.Name
	}
	s.auditResult(ctx, "dataset.attachment.download", target, err)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	// Served as a download, never rendered: an attachment is user content.
	w.Header().Set("Content-Type", a.ContentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.Header().Set("Last-Modified", a.UploadedAt.Format(time.RFC1123))
	_, _ = w.Write(data)
}
