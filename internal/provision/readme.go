package provision

import (
	"bytes"
	"strconv"
	"strings"
	"text/template"

	"github.com/silofl/silo"
)

// readmeInfo is what the README templates see. It deliberately has no
// token field, so no template can print one.
type readmeInfo struct {
	Spec         *silo.RunnerSpec
	Workspace    string
	ServerURL    string
	Config       RunnerConfig
	MemoryGB     float64
	HasCA        bool
	Memory       string // as --memory takes it
	Image        string // default image when the spec names no registry
	CreateBucket string // the CreateBucket parameter's default
	Stack        string // CloudFormation stack / ARM deployment name
	Instance     string // aws instance type
	Account      string // azure storage account
	Registry     string // azure container registry name
	StorageRoot  string // local data directory
	// Transport says how the connection to the server is protected, as
	// the README's sentences put it.
	Transport string
}

func readmeData(spec *silo.RunnerSpec, cfg BootstrapConfig, rc RunnerConfig) readmeInfo {
	return readmeInfo{
		Spec:         spec,
		Workspace:    cfg.Workspace,
		ServerURL:    cfg.ServerURL,
		Config:       rc,
		MemoryGB:     float64(rc.MemoryMB) / 1024,
		HasCA:        cfg.CABundlePEM != "",
		Image:        cfg.Image,
		Memory:       memorySize(rc.MemoryMB),
		CreateBucket: strconv.FormatBool(!cfg.StorageReady),
		Stack:        "silo-runner-" + spec.Name,
		Transport:    transport(cfg.ServerURL),
	}
}

// transport says in words how the runner's connection is protected: only
// an https:// server URL is encrypted, and the README must not claim more.
func transport(serverURL string) string {
	if strings.HasPrefix(strings.ToLower(serverURL), "https://") {
		return "over HTTPS"
	}
	return "over plain HTTP (not encrypted: the runner's token and model updates cross the network in the clear, so serve Silo behind HTTPS before real data is used)"
}

var readmeFuncs = template.FuncMap{"shq": shellQuote}

func renderReadme(t *template.Template, info readmeInfo) ([]byte, error) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, info); err != nil {
		return nil, err
	}
	return trimLines(buf.Bytes()), nil
}

// envTable documents the variables the runner reads; every README has it.
const envTable = `
## The runner's environment

The agent is the ` + "`silo runner`" + ` binary (the container image built from Silo's
Dockerfile runs it). It takes flags or these environment variables:

| variable | meaning |
|---|---|
| SILO_SERVER | the Silo server's URL (` + "`--server`" + `) |
| SILO_RUNNER_TOKEN | the runner's token (` + "`--token`" + `); never put it in a file you share |
| SILO_STORAGE_ROOT | the runner's data root (` + "`--storage-root`" + `): file://, s3:// or azure:// |
| SILO_VCPU | the vCPUs the runner may use (` + "`--vcpu`" + `) |
| SILO_MEMORY | the memory the runner may use, such as 32GiB (` + "`--memory`" + `) |
| HTTPS_PROXY | an egress proxy for the connection to the server, if your network needs one |
| SILO_CA_FILE | a PEM file of extra CAs to trust for the server's certificate |
| SILO_POLICY | the data owner's policy the runner pins (` + "`--policy`" + `): a file, or an s3://, azure:// or file:/// URI |
| SILO_STATE_DIR | where the runner keeps its privacy record (` + "`--state-dir`" + `); by default .silo under a local root, or .silo/runner-state/ in an s3:// or azure:// root |
`

// tokenHelp tells the administrator where the token comes from.
const tokenHelp = `The runner's token was printed once, when the runner was registered (by
   ` + "`silo runners register`" + `, or on the runner's page in the web UI). If you do not
   have it, issue a new one — ` + "`silo runners token {{.Spec.Name}}`" + `, or **Issue token** in
   the Deploy section of the runner's page (Settings → Task Runners) — and use that;
   the previous one stops working.`

var awsReadme = template.Must(template.New("aws").Funcs(readmeFuncs).Parse(`# Silo task runner {{.Spec.Name}} on AWS

This bundle deploys the task runner **{{.Spec.Name}}** of the Silo workspace
**{{.Workspace}}** into your AWS account{{with .Spec.Region}}, in **{{.}}**{{end}}. The runner only
dials out, {{.Transport}}, to {{.ServerURL}}; nothing connects to it.

| file | what |
|---|---|
| cloudformation.json | the CloudFormation template |
| silo-runner.json | the runner's bootstrap configuration (no credentials); the instance gets a copy in /etc/silo |
| README.md | this file |

## What the template creates
{{if .Spec.VPCID}}
- **Network**: your VPC {{.Spec.VPCID}}; the runner is placed in the private subnets
  {{range $i, $s := .Spec.PrivateSubnets}}{{if $i}}, {{end}}{{$s}}{{end}}{{with .Spec.PublicSubnets}} (the public subnets
  {{range $i, $s := .}}{{if $i}}, {{end}}{{$s}}{{end}} are recorded in the template's metadata: they hold the NAT the
  private subnets route through){{end}}.
{{- else}}
- **Network**: a new VPC {{or .Spec.VPCCIDR "10.20.0.0/16 (default)"}} over two availability zones: public
  subnets from {{or .Spec.PublicSubnetCIDR "the first quarter of the VPC (default 10.20.0.0/20)"}}, private subnets from
  {{or .Spec.PrivateSubnetCIDR "the second quarter of the VPC (default 10.20.16.0/20)"}}, each block split with
  cidr_newbits {{if .Spec.CIDRNewbits}}{{.Spec.CIDRNewbits}}{{else}}1 (default){{end}}; an internet gateway, one NAT gateway and an S3 gateway endpoint.
{{- end}}
- **Security group**: no inbound rules; outbound HTTPS (443) to anywhere
  {{- with .Spec.EgressProxyURL}}, the egress proxy {{.}}{{end}}
  {{- with .Spec.EgressAllowedCIDRs}}, and everything to {{range $i, $c := .}}{{if $i}}, {{end}}{{$c}}{{end}}{{end}}.
  {{- if or .Spec.ClientSecurityGroup .Spec.ServerSecurityGroup}} The instance also gets your security groups
  {{- with .Spec.ClientSecurityGroup}} {{.}} (client){{end}}{{if and .Spec.ClientSecurityGroup .Spec.ServerSecurityGroup}} and{{end}}{{with .Spec.ServerSecurityGroup}} {{.}} (server){{end}}.{{end}}
- **IAM**: {{if .Spec.RuntimeRoleARN}}an inline policy on your runtime role {{.Spec.RuntimeRoleARN}}, which
  becomes the instance's role{{else}}a runtime role for the instance{{end}}: read and write its bucket, read its token secret
  {{- if .Spec.ContainerRegistryURL}}, read its image archive{{end}}{{if or .Spec.KMSDataKeyID .Spec.KMSSecretKeyID}}, use the KMS keys through S3 and
  Secrets Manager (the keys' policies must allow the account's IAM principals, as the default key policy does){{end}}.
- **Bucket** {{.Config.StoragePath}} (parameter CreateBucket): private, versioned, TLS only,
  encrypted with {{with .Spec.KMSDataKeyID}}the KMS key {{.}}{{else}}S3-managed keys{{end}}. It is kept when the stack is deleted.
- **Secret**: the runner token in Secrets Manager{{with .Spec.KMSSecretKeyID}}, encrypted with the KMS key {{.}}{{end}}.
- **Instance**: one {{.Instance}} in an auto scaling group (it is replaced if it fails), booting
  {{with .Spec.GoldenAMIID}}your golden AMI {{.}} (it needs bash, the AWS CLI, and Docker or dnf to install it){{else}}the latest Amazon Linux 2023{{end}} with an encrypted root volume{{with .Spec.KMSDataKeyID}} (KMS key {{.}}){{end}},
  IMDSv2 only. Its boot script installs Docker and runs the runner container from
  {{with .Spec.ContainerRegistryURL}}the image archive {{.}} (a ` + "`docker save`" + ` file){{else}}the image in parameter RunnerImage{{end}},
  limited to {{.Config.VCPU}} vCPUs and {{.MemoryGB}} GB of memory{{with .Spec.EgressProxyURL}}, with HTTPS_PROXY={{.}}{{end}}.

## Deploy

1. Sign in to AWS with the AWS CLI, with permission to create the resources above.
{{- with .Spec.ProvisionerRoleARN}} The
   command below has CloudFormation act as the provisioner role {{.}}
   (its trust policy must allow cloudformation.amazonaws.com to assume it).{{end}}
2. ` + tokenHelp + `
3. Run these commands, pasting the runner token at the prompt (it is not echoed, and it stays
   out of your shell history):

~~~sh
read -rsp 'Runner token: ' SILO_RUNNER_TOKEN; echo
aws cloudformation deploy \
{{- with .Spec.Region}}
  --region {{.}} \{{end}}
  --stack-name {{.Stack}} \
  --template-file cloudformation.json \
  --capabilities CAPABILITY_IAM \
{{- with .Spec.ProvisionerRoleARN}}
  --role-arn {{.}} \{{end}}
  --tags silo:workspace={{.Workspace}} silo:runner={{.Spec.Name}} \
  --parameter-overrides RunnerToken="$SILO_RUNNER_TOKEN"
unset SILO_RUNNER_TOKEN
~~~

   In the CloudFormation console instead: create a stack from cloudformation.json and paste
   the token into the parameter **RunnerToken**.

4. The runner shows as online in Silo a few minutes after the stack completes.

Parameters (add NAME=VALUE after --parameter-overrides to change one):

| parameter | default | meaning |
|---|---|---|
| RunnerToken | (none: required) | the runner's token; stored in Secrets Manager, never shown |
| CreateBucket | {{.CreateBucket}} | true creates the bucket; false uses it as it is (when Silo has already created it, this defaults to false) |
| ImageId | {{with .Spec.GoldenAMIID}}{{.}}{{else}}latest Amazon Linux 2023{{end}} | the instance's AMI |
| RootDeviceName | /dev/xvda | the AMI's root device |
| PolicyLocation | (none) | the data owner's policy the runner pins, an s3:// URI (see "Pin a policy") |
{{- if not .Spec.ContainerRegistryURL}}
| RunnerImage | {{.Image}} | the silo container image (build it from Silo's Dockerfile and push it where the instance can pull it) |
{{- end}}

## The runner's privacy record

The runner keeps its own record of the privacy controls bound to each data location and
of the epsilon spent on each (its privacy ledger) in your bucket, under
{{.Config.StoragePath}}/.silo/runner-state/, not on the instance: a replaced instance carries on
with the same record and budget. The instance's role must be allowed to write there; the IAM
policy above allows it to read and write the bucket. No dataset can be registered on, read or
write anything under .silo/. The bucket is versioned: if an object there is damaged, the runner
refuses all work on its data, saying which one, until you restore an earlier version (or delete
it, accepting the loss of that location's controls and ledger).

## Pin a policy

A policy is the data owner's floor of privacy controls, by storage prefix, that no server,
admin or custodian can loosen (see "The runner's policy" in Silo's docs/privacy.md). Put it in
the bucket, under .silo/ where no task reads or writes, and give its location as the parameter
PolicyLocation:

~~~sh
aws s3 cp policy.json {{.Config.StoragePath}}/.silo/policy.json
~~~

then deploy as above with ` + "`PolicyLocation={{.Config.StoragePath}}/.silo/policy.json`" + ` added after
--parameter-overrides. The runner reads it once when it starts, with its role (which the
template allows to read that object), and refuses to start if it is missing or invalid. After
changing the policy, replace the instance as for a new token.

## Replace the token

Deploy again as above with the new token, then replace the instance so it reads it:

~~~sh
aws autoscaling start-instance-refresh{{with .Spec.Region}} --region {{.}}{{end}} \
  --auto-scaling-group-name "$(aws cloudformation describe-stacks{{with .Spec.Region}} --region {{.}}{{end}} --stack-name {{.Stack}} \
    --query "Stacks[0].Outputs[?OutputKey=='AutoScalingGroupName'].OutputValue" --output text)"
~~~

## Remove

~~~sh
aws cloudformation delete-stack{{with .Spec.Region}} --region {{.}}{{end}} --stack-name {{.Stack}}
~~~

The bucket and its data stay; delete them yourself when you no longer need them.
` + envTable + `
The instance sets SILO_SERVER={{.ServerURL}}, SILO_STORAGE_ROOT={{.Config.StoragePath}}
{{- with .Spec.EgressProxyURL}}, HTTPS_PROXY={{.}}{{end}}{{if .HasCA}}, SILO_CA_FILE=/etc/silo/ca.pem{{end}}, SILO_POLICY (parameter
PolicyLocation) and the token from Secrets Manager.
`))

var azureReadme = template.Must(template.New("azure").Funcs(readmeFuncs).Parse(`# Silo task runner {{.Spec.Name}} on Azure

This bundle deploys the task runner **{{.Spec.Name}}** of the Silo workspace
**{{.Workspace}}** into your Azure subscription{{with .Spec.SubscriptionID}} {{.}}{{end}}{{with .Spec.ResourceGroup}}, resource group
**{{.}}**{{end}}{{with .Spec.Region}}, in **{{.}}**{{end}}. The runner only dials out, {{.Transport}}, to
{{.ServerURL}}; nothing connects to it.

| file | what |
|---|---|
| azuredeploy.json | the ARM template |
| silo-runner.json | the runner's bootstrap configuration (no credentials) |
| README.md | this file |

## What the template creates

- **Storage account** {{.Account}} with the blob container silo ({{.Config.StoragePath}}):
  HTTPS and TLS 1.2 only, no public blob access, blob versioning and 7-day soft delete.
- **Managed identity** {{.Spec.Name}}-identity, the runner's identity, with Storage Blob Data
  Contributor on the storage account{{with .Spec.RuntimeServicePrincipalID}}; the runtime service principal {{.}}
  (its object ID) gets the same role{{end}}.
- **Container instance** {{.Spec.Name}}: the runner container with {{.Config.VCPU}} vCPUs and {{.MemoryGB}} GB of memory,
  no public IP, restarted if it stops, from {{with .Spec.ContainerRegistryURL}}{{.}} (pulled with the managed
  identity, which gets AcrPull on the registry {{$.Registry}}){{else}}the image in parameter containerImage{{end}}
  {{- with .Spec.SubnetID}}, in your subnet {{.}} (the subnet must be delegated to
  Microsoft.ContainerInstance/containerGroups and route outbound HTTPS){{end}}. The token is passed as a secure
  environment variable, which Azure never shows.

## Deploy

1. Sign in with the Azure CLI as an administrator{{with .Spec.ServicePrincipalID}}, or as the provisioning service principal:
   ` + "`az login --service-principal --username {{.}}{{with $.Spec.TenantID}} --tenant {{.}}{{end}} --password <its secret>`" + `{{end}}.
{{- with .Spec.SubscriptionID}}
   Then select the subscription: ` + "`az account set --subscription {{.}}`" + `.{{end}}
2. ` + tokenHelp + `
3. Run these commands, pasting the runner token at the prompt (it is not echoed, and it stays
   out of your shell history):

~~~sh
az group create --name {{or .Spec.ResourceGroup "<resource-group>"}} --location {{or .Spec.Region "<region>"}}
read -rsp 'Runner token: ' SILO_RUNNER_TOKEN; echo
az deployment group create \
  --name {{.Stack}} \
  --resource-group {{or .Spec.ResourceGroup "<resource-group>"}} \
  --template-file azuredeploy.json \
  --parameters runnerToken="$SILO_RUNNER_TOKEN"
unset SILO_RUNNER_TOKEN
~~~

   In the Azure portal instead: Deploy a custom template, load azuredeploy.json and paste
   the token into the parameter **runnerToken**.

4. The runner shows as online in Silo a few minutes after the deployment completes.

Parameters (add NAME=VALUE after --parameters to change one):

| parameter | meaning |
|---|---|
| runnerToken | (required) the runner's token, a securestring: never shown or logged by Azure |
| location | the region (default {{or .Spec.Region "the resource group's"}}) |
| storageAccountName | the storage account (default {{.Account}}; Silo expects this name) |
{{- if not .Spec.ContainerRegistryURL}}
| containerImage | the silo container image (default {{.Image}}; build it from Silo's Dockerfile and push it where Azure can pull it) |
{{- else}}
| registryResourceGroup | the resource group of the registry {{.Registry}} (default: this one) |
{{- end}}
| tenantId | the Azure AD tenant of the runner's identity |
| policyLocation | the data owner's policy the runner pins, an azure:// URI in its storage account (see "Pin a policy"; default none) |
{{- with .Spec.RuntimeServicePrincipalID}}
| runtimeServicePrincipalId | the object ID of the runtime service principal granted access to the storage |
{{- end}}
{{- with .Spec.SubnetID}}
| subnetId | the subnet the container instance joins |
{{- end}}

## The runner's privacy record

The runner keeps its own record of the privacy controls bound to each data location and
of the epsilon spent on each (its privacy ledger) in its storage account, in the container
silo under .silo/runner-state/, not in the container instance: a replaced instance carries on
with the same record and budget. Its identity must be allowed to write there; Storage Blob
Data Contributor allows it. No dataset can be registered on, read or write anything under
.silo/. If a blob there is damaged, the runner refuses all work on its data, saying which one,
until you restore it (from a previous version) or delete it, accepting the loss of that
location's controls and ledger.

## Pin a policy

A policy is the data owner's floor of privacy controls, by storage prefix, that no server,
admin or custodian can loosen (see "The runner's policy" in Silo's docs/privacy.md). Put it in
the storage account, under .silo/ where no task reads or writes, and give its location as the
parameter policyLocation:

~~~sh
az storage blob upload --auth-mode login --account-name {{.Account}} --container-name silo \
  --name .silo/policy.json --file policy.json
~~~

then deploy as above with ` + "`policyLocation=azure://silo/.silo/policy.json`" + ` added after
--parameters. The runner reads it once when it starts, with its managed identity, and refuses
to start if it is missing or invalid. After changing the policy, deploy again or restart the
container group.

## Replace the token

Deploy again as above with the new token: the container group restarts with it.

## Remove

~~~sh
az container delete --resource-group {{or .Spec.ResourceGroup "<resource-group>"}} --name {{.Spec.Name}} --yes
~~~

The storage account and its data stay; delete them yourself when you no longer need them.
` + envTable + `
The container gets SILO_SERVER={{.ServerURL}}, SILO_STORAGE_ROOT={{.Config.StoragePath}}
{{- if .HasCA}}, SILO_CA_FILE=/etc/silo/ca.pem{{end}}, SILO_POLICY (parameter policyLocation), AZURE_CLIENT_ID and
AZURE_TENANT_ID (its managed identity) and the token.
`))

var localReadme = template.Must(template.New("local").Funcs(readmeFuncs).Parse(`# Silo task runner {{.Spec.Name}} (self-managed)

This bundle configures the task runner **{{.Spec.Name}}** of the Silo workspace **{{.Workspace}}**
on a machine you manage. The runner only dials out, {{.Transport}}, to {{.ServerURL}};
nothing connects to it.

| file | what |
|---|---|
| silo-runner.json | the runner's bootstrap configuration (no credentials) |
{{- if .HasCA}}
| ca.pem | the CAs to trust for the server's certificate |
{{- end}}
| README.md | this file |

## Run

1. Install the silo binary on the machine that holds the data (or use the container image
   built from Silo's Dockerfile).
2. ` + tokenHelp + `
3. Run the runner, pasting the token at the prompt (it is not echoed, and it stays out of
   your shell history):

~~~sh
read -rsp 'Runner token: ' SILO_RUNNER_TOKEN; echo
{{if .HasCA}}SILO_CA_FILE="$PWD/ca.pem" {{end}}silo runner --server {{shq .ServerURL}} --token "$SILO_RUNNER_TOKEN" \
  --storage-root {{shq .StorageRoot}} --vcpu {{.Config.VCPU}} --memory {{.Memory}}
~~~

The runner uses at most {{.Config.VCPU}} vCPUs and {{.MemoryGB}} GB of memory, and reads its data under
{{.StorageRoot}}.
` + envTable))

// trimLines removes trailing spaces, which templates leave and Markdown
// would read as line breaks.
func trimLines(b []byte) []byte {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return []byte(strings.Join(lines, "\n"))
}
