// Package provision is the provisioning side of task runners (SPEC §2): it
// turns a validated RunnerSpec into a deployment bundle the IT administrator
// applies (a CloudFormation or ARM template honouring every advanced setting,
// the runner's bootstrap configuration and step-by-step instructions), and it
// creates or verifies the runner's storage through the official SDKs.
//
// Bundles never contain the runner's token or any service-principal secret:
// the token is a deployment parameter the administrator pastes, and the
// service-principal secrets are the server's own provisioning credentials.
package provision

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// DefaultImage is the runner's container image when the spec names no
// container_registry_url: the image built from the repository's Dockerfile.
const DefaultImage = "ghcr.io/silofl/silo:latest"

// Names of the environment variables the agent (silo runner) reads. The
// bundles set them and the READMEs document them.
const (
	EnvServer = "SILO_SERVER"
	// #nosec G101 -- the name of an environment variable
	EnvRunnerToken = "SILO_RUNNER_TOKEN"
	EnvStorageRoot = "SILO_STORAGE_ROOT"
	EnvHTTPSProxy  = "HTTPS_PROXY"
	EnvCAFile      = "SILO_CA_FILE"
	EnvVCPU        = "SILO_VCPU"
	EnvMemory      = "SILO_MEMORY"
	// EnvPolicy is the data owner's policy the runner pins: a file or a
	// storage URI (silo runner --policy).
	EnvPolicy = "SILO_POLICY"
)

// RunnerStateFolder is where, in a cloud runner's bucket or container, the
// runner keeps its privacy record (the controls bound to each location and
// its epsilon ledger): its identity must be allowed to write there.
const RunnerStateFolder = ".silo/runner-state/"

// Bundle file names.
const (
	RunnerConfigFile   = "silo-runner.json"
	ReadmeFile         = "README.md"
	CloudFormationFile = "cloudformation.json"
	ARMTemplateFile    = "azuredeploy.json"
	CAFile             = "ca.pem"
)

// BootstrapConfig is what a runner needs from the server that is not in its
// spec.
type BootstrapConfig struct {
	ServerURL string
	// RunnerToken is never written to the bundle: Bundle only uses it to
	// make sure of that, failing rather than leaking it.
	RunnerToken     string
	Workspace       string
	CABundlePEM     string // extra CAs the runner trusts for ServerURL; optional
	ProtocolVersion int    // silo.ProtocolVersion when zero

	// Image overrides DefaultImage when the spec has no container_registry_url.
	Image string
	// StorageReady says the server already created the runner's S3 bucket
	// (Storage.Ensure succeeded), so the CloudFormation template defaults to
	// referencing it instead of creating it (which would fail).
	StorageReady bool
}

// File is one file of a deployment bundle.
type File struct {
	Name string
	Data []byte
}

// DeploymentBundle is what the IT administrator downloads to deploy a runner.
type DeploymentBundle struct {
	Files []File // sorted by name
}

// File returns the contents of the named file, or nil.
func (b *DeploymentBundle) File(name string) []byte {
	for _, f := range b.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

// zipTime is every bundle entry's modification time, so the same bundle
// always zips to the same bytes.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteZip writes the bundle as a zip archive.
func (b *DeploymentBundle) WriteZip(w io.Writer) error {
	zw := zip.NewWriter(w)
	for _, f := range b.Files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: zipTime}
		h.SetMode(0o644)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return fmt.Errorf("zip %s: %w", f.Name, err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return fmt.Errorf("zip %s: %w", f.Name, err)
		}
	}
	return zw.Close()
}

// RunnerConfig is the runner's bootstrap configuration (silo-runner.json).
// It holds no credential: the token reaches the runner as SILO_RUNNER_TOKEN.
type RunnerConfig struct {
	ServerURL       string        `json:"server_url"`
	ProtocolVersion int           `json:"protocol_version"`
	Workspace       string        `json:"workspace"`
	Runner          string        `json:"runner"`
	Provider        silo.Provider `json:"provider"`
	StoragePath     string        `json:"storage_path"`
	VCPU            int           `json:"vcpu"`
	MemoryMB        int           `json:"memory_mb"`
	HTTPSProxy      string        `json:"https_proxy,omitempty"`
	CABundlePEM     string        `json:"ca_bundle_pem,omitempty"`
	// CAFile is where a deployment put CABundlePEM instead of inlining it.
	CAFile string `json:"ca_file,omitempty"`
	// TokenEnv names the variable that carries the runner's token.
	TokenEnv string `json:"token_env"`
}

// Bundle builds the deployment bundle for a validated spec. It is
// deterministic: the same inputs give the same bytes.
func Bundle(spec *silo.RunnerSpec, cfg BootstrapConfig) (*DeploymentBundle, error) {
	if spec == nil {
		return nil, silo.Errorf(silo.EINVALID, "no runner spec")
	}
	if err := silo.CheckRunnerServerURL(spec.Provider, cfg.ServerURL); err != nil {
		return nil, err
	}
	if cfg.ProtocolVersion == 0 {
		cfg.ProtocolVersion = silo.ProtocolVersion
	}
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	var (
		files []File
		err   error
	)
	switch spec.Provider {
	case silo.ProviderAWS:
		files, err = awsBundle(spec, cfg)
	case silo.ProviderAzure:
		files, err = azureBundle(spec, cfg)
	case silo.ProviderLocal:
		files, err = localBundle(spec, cfg)
	default:
		return nil, silo.FieldErrorf("provider", "unknown provider %q: use local, aws or azure", spec.Provider)
	}
	if err != nil {
		return nil, err
	}
	b := &DeploymentBundle{Files: files}
	slices.SortFunc(b.Files, func(x, y File) int { return strings.Compare(x.Name, y.Name) })
	if err := checkNoSecrets(b, spec, cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// checkNoSecrets is the last line of defence: a bundle is handed to people
// and stored in places the server does not control, so it must never carry
// the runner's token or a service-principal secret.
func checkNoSecrets(b *DeploymentBundle, spec *silo.RunnerSpec, cfg BootstrapConfig) error {
	secrets := []string{cfg.RunnerToken, spec.ServicePrincipalSecret, spec.RuntimeServicePrincipalSecret}
	for _, f := range b.Files {
		for _, s := range secrets {
			// Very short strings could occur by chance; real secrets are long.
			if len(s) >= 8 && bytes.Contains(f.Data, []byte(s)) {
				return fmt.Errorf("deployment bundle for runner %s: %s would contain a secret", spec.Name, f.Name)
			}
		}
	}
	return nil
}

// runnerConfig fills RunnerConfig from spec and cfg; storage is the
// runner's effective storage path.
func runnerConfig(spec *silo.RunnerSpec, cfg BootstrapConfig, storage string) RunnerConfig {
	return RunnerConfig{
		ServerURL:       cfg.ServerURL,
		ProtocolVersion: cfg.ProtocolVersion,
		Workspace:       cfg.Workspace,
		Runner:          spec.Name,
		Provider:        spec.Provider,
		StoragePath:     storage,
		VCPU:            VCPU(spec),
		MemoryMB:        MemoryMB(spec),
		HTTPSProxy:      spec.EgressProxyURL,
		CABundlePEM:     cfg.CABundlePEM,
		TokenEnv:        EnvRunnerToken,
	}
}

// VCPU returns the spec's vCPUs, or its provider's default.
func VCPU(spec *silo.RunnerSpec) int {
	switch {
	case spec.VCPU > 0:
		return spec.VCPU
	case spec.Provider == silo.ProviderAWS:
		return silo.DefaultAWSVCPU
	case spec.Provider == silo.ProviderAzure:
		return silo.DefaultAzureVCPU
	default:
		return silo.DefaultLocalVCPU
	}
}

// MemoryMB returns the spec's memory in MiB whichever unit its provider
// uses, or its provider's default.
func MemoryMB(spec *silo.RunnerSpec) int {
	switch spec.Provider {
	case silo.ProviderAzure:
		if spec.MemoryMB > 0 {
			return spec.MemoryMB
		}
		return silo.DefaultAzureMemoryMB
	case silo.ProviderAWS:
		if spec.MemoryGB > 0 {
			return spec.MemoryGB * 1024
		}
		return silo.DefaultAWSMemoryGB * 1024
	default:
		if spec.MemoryGB > 0 {
			return spec.MemoryGB * 1024
		}
		return silo.DefaultLocalMemoryGB * 1024
	}
}

// StoragePath returns the runner's effective storage path: the spec's, or
// the provider's derived default (s3://<workspace>-<name>.silo for aws,
// azure://<account>/silo for azure).
func StoragePath(spec *silo.RunnerSpec, workspace string) (string, error) {
	switch spec.Provider {
	case silo.ProviderAzure:
		// Always derived: SPEC §2 shows it but does not let users enter it.
		acct := AzureStorageAccount(spec.Name)
		if acct == "" {
			return "", silo.FieldErrorf("name", "runner name %q gives no valid Azure storage account name", spec.Name)
		}
		return "azure://" + acct + "/" + AzureContainer, nil
	case silo.ProviderAWS:
		if spec.StoragePath != "" {
			return spec.StoragePath, nil
		}
		if workspace == "" || spec.Name == "" {
			return "", silo.FieldErrorf("storage_path", "no storage path, and no workspace and runner name to derive s3://<workspace>-<name>.silo from")
		}
		return "s3://" + workspace + "-" + spec.Name + ".silo", nil
	default:
		return spec.StoragePath, nil
	}
}

// AzureContainer is the blob container that holds a runner's data.
const AzureContainer = "silo"

// AzureStorageAccount derives an Azure runner's storage account name from
// its name (SPEC §2: "<name without dashes>storage"); "" if the result is
// not a valid account name (3–24 lowercase letters and digits).
func AzureStorageAccount(runner string) string {
	name := strings.ReplaceAll(runner, "-", "") + "storage"
	if len(name) < 3 || len(name) > 24 {
		return ""
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return ""
		}
	}
	return name
}

// S3Bucket returns the bucket and key prefix of an s3:// storage path.
func S3Bucket(storagePath string) (bucket, prefix string, err error) {
	u, err := url.Parse(storagePath)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", silo.FieldErrorf("storage_path", "storage path %q must be s3://<bucket>", storagePath)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// marshal encodes v as indented JSON with a final newline. HTML escaping is
// off so shell scripts in templates stay readable (">" not "\u003e").
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// memorySize formats MiB as the agent's --memory flag takes it.
func memorySize(mb int) string {
	if mb%1024 == 0 {
		return strconv.Itoa(mb/1024) + "GiB"
	}
	return strconv.Itoa(mb) + "MiB"
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
