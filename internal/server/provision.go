package server

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/provision"
	"github.com/silofl/silo/internal/sqlstore"
)

// CloudStorage is how the server reaches cloud storage to create or verify a
// runner's bucket or container when it is registered. Nil parts mean the
// server has no credentials for that cloud: the runner's deployment bundle
// then creates the storage itself, and the runner says so.
type CloudStorage struct {
	S3 *blob.S3Config
	// Azure reaches one storage account (for example Azurite, or a shared
	// account): each runner gets a container named after its derived
	// storage-account name in it.
	Azure *blob.AzureConfig
}

func (s *Server) handleProvisionRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.Provision(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, s.RunnerView(rn))
}

// Provision creates or verifies a cloud runner's storage. Success (or no
// credentials to try with) leaves it provisioning until its agent connects;
// a storage error marks it failed with the reason.
func (s *Server) Provision(ctx context.Context, name string) (*sqlstore.StoredRunner, error) {
	rn, err := s.findRunnerToChange(ctx, name)
	if err != nil {
		return nil, err
	}
	if rn.Provider == silo.ProviderLocal {
		return nil, silo.Errorf(silo.EINVALID, "runner %s is local: it has no cloud storage to provision", name)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	status, reason := silo.RunnerProvisioning, ""
	storage, where, err := s.cloudStorage(rn)
	switch {
	case err != nil:
		status, reason = silo.RunnerFailed, "storage: "+silo.ErrorMessage(err)
	case storage == nil:
		reason = "the server has no " + where + " credentials to create the storage itself: download the deployment bundle ('silo runners bundle " + name + "'); its template creates the storage"
	default:
		if err := storage.Ensure(ctx); err != nil {
			status, reason = silo.RunnerFailed, "storage "+where+": "+silo.ErrorMessage(err)+"; fix it and run 'silo runners provision "+name+"'"
		} else {
			reason = "storage " + where + " is ready: apply the deployment bundle ('silo runners bundle " + name + "') to start the agent"
		}
	}
	updated, err := s.db.UpdateRunner(context.WithoutCancel(ctx), name, func(r *sqlstore.StoredRunner) error {
		if r.Status == silo.RunnerOnline || r.Status == silo.RunnerOffline {
			// A connected agent already proves the deployment works; only
			// a storage failure is worth reporting over it.
			if status != silo.RunnerFailed {
				return nil
			}
		}
		r.Status, r.StatusReason = status, reason
		return nil
	})
	outcome := silo.OutcomeSuccess
	if status == silo.RunnerFailed {
		outcome = silo.OutcomeFailed
	}
	s.audit(ctx, "runner.provision", name, outcome, reason)
	return updated, err
}

// cloudStorage returns the runner's storage and a description of it, or nil
// when the server has no credentials for its cloud.
func (s *Server) cloudStorage(rn *sqlstore.StoredRunner) (provision.Storage, string, error) {
	switch rn.Provider {
	case silo.ProviderAWS:
		bucket, _, err := provision.S3Bucket(rn.StoragePath)
		if err != nil {
			return nil, rn.StoragePath, err
		}
		if s.Cloud.S3 == nil {
			return nil, "AWS", nil
		}
		cfg := *s.Cloud.S3
		if cfg.Endpoint == "" {
			cfg.Region = rn.Region
		}
		client, err := blob.NewS3Client(cfg)
		if err != nil {
			return nil, "s3://" + bucket, err
		}
		return provision.NewS3Storage(client, bucket, rn.Region), "s3://" + bucket, nil
	case silo.ProviderAzure:
		if s.Cloud.Azure == nil {
			return nil, "Azure", nil
		}
		client, err := blob.NewAzureClient(*s.Cloud.Azure)
		if err != nil {
			return nil, "Azure", err
		}
		container := provision.AzureStorageAccount(rn.Name)
		return provision.NewAzureStorage(client, container), "azure://" + container, nil
	}
	return nil, "", silo.Errorf(silo.EINVALID, "provider %s has no cloud storage", rn.Provider)
}

// handleRunnerBundle serves the deployment bundle: the template honouring
// every setting, the runner's bootstrap configuration and a README. It holds
// no secret: the runner token is a deployment parameter. ?server_url= gives
// the URL the runner dials; without it, --public-url, else the request's.
func (s *Server) handleRunnerBundle(w http.ResponseWriter, r *http.Request) {
	b, err := s.RunnerBundle(r.Context(), r.PathValue("name"), s.BundleServerURL(r, r.URL.Query().Get("server_url")))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("name")+`-deployment.zip"`)
	_, _ = w.Write(b) // #nosec G705 -- a zip archive sent as an attachment, never rendered as HTML
}

// BundleServerURL is the server URL a bundle carries: the one asked for,
// else --public-url, else the address the request came in at.
func (s *Server) BundleServerURL(r *http.Request, asked string) string {
	if asked = strings.TrimSpace(asked); asked != "" {
		return strings.TrimRight(asked, "/")
	}
	return s.BaseURL(r)
}

// RunnerBundle builds a runner's deployment bundle as a zip, for a runner
// that dials serverURL; a cloud runner is refused a URL only this machine
// can reach. The API and the UI share it.
func (s *Server) RunnerBundle(ctx context.Context, name, serverURL string) ([]byte, error) {
	rn, err := s.db.FindRunner(ctx, name)
	if err != nil {
		return nil, err
	}
	ws, err := s.db.Workspace(ctx)
	if err != nil {
		return nil, err
	}
	spec := rn.RunnerSpec // secrets stay sealed: the bundle never needs them
	b, err := provision.Bundle(&spec, provision.BootstrapConfig{ServerURL: serverURL, Workspace: ws.Name,
		StorageReady: rn.Provider == silo.ProviderAWS && s.Cloud.S3 != nil && rn.Status != silo.RunnerFailed})
	if err != nil {
		s.auditResult(ctx, "runner.bundle_download", name, err)
		return nil, err
	}
	var buf bytes.Buffer
	if err := b.WriteZip(&buf); err != nil {
		return nil, err
	}
	s.audit(ctx, "runner.bundle_download", name, silo.OutcomeSuccess, "server URL "+serverURL)
	return buf.Bytes(), nil
}
