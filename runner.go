package silo

import (
	"slices"
	"time"
)

// Provider is where a task runner's compute lives.
type Provider string

const (
	ProviderLocal Provider = "local"
	ProviderAWS   Provider = "aws"
	ProviderAzure Provider = "azure"
)

// Providers lists every provider, in the order forms show them.
var Providers = []Provider{ProviderLocal, ProviderAWS, ProviderAzure}

// RunnerStatus is a task runner's lifecycle state (SPEC §2):
// registering → provisioning → online; online ↔ offline (no heartbeat for
// three intervals); failed (with a reason); deregistered.
type RunnerStatus string

const (
	RunnerRegistering  RunnerStatus = "registering"
	RunnerProvisioning RunnerStatus = "provisioning"
	RunnerOnline       RunnerStatus = "online"
	RunnerOffline      RunnerStatus = "offline"
	RunnerFailed       RunnerStatus = "failed"
	RunnerDeregistered RunnerStatus = "deregistered"
)

// Defaults per provider (SPEC §2).
const (
	DefaultAWSVCPU       = 8
	DefaultAWSMemoryGB   = 32
	DefaultAzureVCPU     = 4
	DefaultAzureMemoryMB = 16384
	DefaultLocalVCPU     = 2
	DefaultLocalMemoryGB = 4
)

// The network an AWS runner's template creates when the spec gives none:
// a /16 whose first and second /20 are the public and private subnet
// blocks, each split with DefaultAWSCIDRNewbits into one subnet per
// availability zone. Forms show them as the defaults they are.
const (
	DefaultAWSVPCCIDR           = "10.20.0.0/16"
	DefaultAWSPublicSubnetCIDR  = "10.20.0.0/20"
	DefaultAWSPrivateSubnetCIDR = "10.20.16.0/20"
	DefaultAWSCIDRNewbits       = 1
)

// RunnerSpec is everything a user gives when registering or editing a task
// runner. Fields are flat, named as in SPEC §2, so the CLI's flags
// (--provisioner-role-arn) and its -f JSON files map onto them one to one.
// Fields of other providers must be empty.
type RunnerSpec struct {
	Name     string   `json:"name"`
	Provider Provider `json:"provider"`
	// StoragePath is the runner's data root: s3://bucket (aws; default
	// s3://<workspace>-<name>.silo), derived for azure, file:///… for local.
	StoragePath string `json:"storage_path,omitempty"`
	VCPU        int    `json:"vcpu,omitempty"`
	MemoryGB    int    `json:"memory_gb,omitempty"` // aws, local
	MemoryMB    int    `json:"memory_mb,omitempty"` // azure
	Region      string `json:"region,omitempty"`    // aws, azure

	// Advanced, aws and azure.
	ContainerRegistryURL string `json:"container_registry_url,omitempty"`

	// AWS.
	ProvisionerRoleARN  string   `json:"provisioner_role_arn,omitempty"`
	RuntimeRoleARN      string   `json:"runtime_role_arn,omitempty"`
	VPCID               string   `json:"vpc_id,omitempty"`
	PublicSubnets       []string `json:"public_subnets,omitempty"`
	PrivateSubnets      []string `json:"private_subnets,omitempty"`
	ClientSecurityGroup string   `json:"client_security_group,omitempty"`
	ServerSecurityGroup string   `json:"server_security_group,omitempty"`
	VPCCIDR             string   `json:"vpc_cidr,omitempty"`
	PrivateSubnetCIDR   string   `json:"private_subnet_cidr,omitempty"`
	PublicSubnetCIDR    string   `json:"public_subnet_cidr,omitempty"`
	CIDRNewbits         int      `json:"cidr_newbits,omitempty"`
	KMSDataKeyID        string   `json:"kms_data_key_id,omitempty"`
	KMSSecretKeyID      string   `json:"kms_secret_key_id,omitempty"`
	GoldenAMIID         string   `json:"golden_ami_id,omitempty"`
	EgressProxyURL      string   `json:"egress_proxy_url,omitempty"`
	EgressAllowedCIDRs  []string `json:"egress_allowed_cidrs,omitempty"`

	// Azure.
	ResourceGroup             string `json:"resource_group,omitempty"`
	ServicePrincipalID        string `json:"service_principal_id,omitempty"`
	RuntimeServicePrincipalID string `json:"runtime_service_principal_id,omitempty"`
	SubscriptionID            string `json:"subscription_id,omitempty"`
	TenantID                  string `json:"tenant_id,omitempty"`
	SubnetID                  string `json:"subnet_id,omitempty"`
	// Secrets: write-only. They are encrypted at rest and never returned by
	// any API, page or log; Runner reports only whether each is set.
	ServicePrincipalSecret        string `json:"service_principal_secret,omitempty"`
	RuntimeServicePrincipalSecret string `json:"runtime_service_principal_secret,omitempty"`
}

// RunnerTokenPrefix starts every runner token; user tokens start with
// TokenPrefix, so neither is accepted where the other belongs.
const RunnerTokenPrefix = "silor_"

// Runner is a registered task runner as the API returns it.
type Runner struct {
	RunnerSpec
	ID           int64        `json:"id"`
	Status       RunnerStatus `json:"status"`
	StatusReason string       `json:"status_reason"`
	CreatedBy    string       `json:"created_by"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
	// What the agent last reported.
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	AgentVersion  string     `json:"agent_version,omitempty"`
	AgentVCPU     int        `json:"agent_vcpu,omitempty"`
	AgentMemoryMB int        `json:"agent_memory_mb,omitempty"`
	// Policy is the data owner's policy the agent holds (silo runner
	// --policy); nil when none is pinned and the server's controls are the
	// floor.
	Policy *RunnerPolicy `json:"policy,omitempty"`
	// Secrets set, by field name; their values never leave the server.
	SecretsSet []string `json:"secrets_set,omitempty"`
	// Token is the runner's credential, present only in the response that
	// registers a runner (or rotates its token).
	Token string `json:"token,omitempty"`
}

// Secrets returns the write-only fields of s by name, set or not.
func (s *RunnerSpec) Secrets() map[string]*string {
	return map[string]*string{
		"service_principal_secret":         &s.ServicePrincipalSecret,
		"runtime_service_principal_secret": &s.RuntimeServicePrincipalSecret,
	}
}

// MemoryBudgetMB is the memory the runner was registered with, in MB,
// whichever unit its provider takes.
func (s *RunnerSpec) MemoryBudgetMB() int {
	if s.MemoryMB > 0 {
		return s.MemoryMB
	}
	return s.MemoryGB * 1024
}

// Redact clears every secret of s, keeping their names in r.SecretsSet.
func (r *Runner) Redact() {
	r.SecretsSet = nil
	for name, p := range r.Secrets() {
		if *p != "" {
			r.SecretsSet = append(r.SecretsSet, name)
			*p = ""
		}
	}
	slices.Sort(r.SecretsSet)
}

// runnerFieldHelp is each RunnerSpec field in a line: which providers take
// it, its form and its default. 'silo runners register -h' shows it;
// docs/runners.md has the whole rule. TestRunnerFieldHelp keeps it complete.
var runnerFieldHelp = map[string]string{ // #nosec G101 -- help text naming fields, no credentials
	"name":                             "3–32 lowercase letters, digits and single dashes, starting with a letter; unique; used in storage names",
	"provider":                         "local, aws or azure",
	"storage_path":                     "local: file:///<data root> (required); aws: s3://<bucket>.silo[/prefix] (default s3://<workspace>-<name>.silo); azure: derived, leave empty",
	"vcpu":                             "vCPUs the runner may use (default: local 2, aws 8, azure 4)",
	"memory_gb":                        "local, aws: memory in GB (default: local 4, aws 32)",
	"memory_mb":                        "azure: memory in MB (default 16384; after registration it may only go down)",
	"region":                           "aws: region code such as eu-west-1; azure: region name such as westeurope",
	"container_registry_url":           "aws, azure (advanced): the runner's image, s3://<bucket>/<image> (aws) or <registry>.azurecr.io/<image> (azure)",
	"provisioner_role_arn":             "aws (required): arn:aws:iam::<12 digits>:role/<name>, the role that deploys the runner",
	"runtime_role_arn":                 "aws (required): arn:aws:iam::<12 digits>:role/<name>, the role the runner runs as",
	"vpc_id":                           "aws, existing VPC: vpc- and hex digits",
	"public_subnets":                   "aws, existing VPC: subnet IDs (subnet- and hex digits), comma-separated",
	"private_subnets":                  "aws, existing VPC: subnet IDs (subnet- and hex digits), comma-separated",
	"client_security_group":            "aws, existing VPC: security group ID (sg- and hex digits)",
	"server_security_group":            "aws, existing VPC: security group ID (sg- and hex digits)",
	"vpc_cidr":                         "aws, new VPC: an IPv4 block from /16 to /28, such as 10.0.0.0/16",
	"private_subnet_cidr":              "aws, new VPC: an IPv4 block inside vpc_cidr, such as 10.0.0.0/17",
	"public_subnet_cidr":               "aws, new VPC: an IPv4 block inside vpc_cidr, not overlapping the private one",
	"cidr_newbits":                     "aws, new VPC: 1–12, the bits each subnet block is split by (one subnet per availability zone)",
	"kms_data_key_id":                  "aws (advanced): KMS key for the bucket and disks: key ARN, key ID or alias/<name>",
	"kms_secret_key_id":                "aws (advanced): KMS key for the token secret: key ARN, key ID or alias/<name>",
	"golden_ami_id":                    "aws (advanced): the instance's image, ami- and hex digits",
	"egress_proxy_url":                 "aws (advanced): http(s)://host:port of the proxy the runner goes out through",
	"egress_allowed_cidrs":             "aws (advanced): extra IPv4 blocks the runner may reach, comma-separated",
	"resource_group":                   "azure (required): the resource group to deploy into",
	"service_principal_id":             "azure (required): GUID of the service principal that deploys the runner",
	"runtime_service_principal_id":     "azure (required): GUID of the service principal the runner runs as",
	"subscription_id":                  "azure (required): GUID of the subscription",
	"tenant_id":                        "azure (required): GUID of the Microsoft Entra tenant",
	"subnet_id":                        "azure (advanced): full resource ID of the subnet the runner joins",
	"service_principal_secret":         "azure (required): client secret of service_principal_id; stored encrypted, never shown again",
	"runtime_service_principal_secret": "azure (required): client secret of runtime_service_principal_id; stored encrypted, never shown again",
}

// RunnerFieldHelp describes a RunnerSpec field (by its JSON name) in a line.
func RunnerFieldHelp(field string) string { return runnerFieldHelp[field] }
