package ui

// Settings → Task Runners: the list, registration (choose a provider, then
// its form), each runner's page and its actions.
//
// The registration form is described by data (runnerFields) rather than
// written out per provider, so every field of SPEC §2 gets the same label,
// hint, default-as-placeholder and error slot. Errors come from
// (*silo.RunnerSpec).ValidateAll, which reports every field at once.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

// runnerField is one input of a runner form, named as RunnerSpec's JSON
// field (which is also the error's Field).
type runnerField struct {
	Name        string
	Label       string
	Hint        string
	Placeholder string
	Kind        string   // text, number, password, select, list
	Options     []string // for select
	Optional    bool
	Wide        bool // takes a whole row
	// Derived is shown, not entered (the Azure storage account).
	Derived string
	// Template is the default (placeholder or derived value) with {name}
	// for the runner's name ({bare}: without dashes), for silo.js to
	// follow the name as it is typed.
	Template string
}

// runnerGroup is a titled set of fields.
type runnerGroup struct {
	ID, Title, Text string
	Fields          []runnerField
}

// runnerFormData is what runner_form.html renders.
type runnerFormData struct {
	Provider silo.Provider
	Edit     *silo.Runner // the runner being edited, nil when registering
	Main     []runnerGroup
	Advanced []runnerGroup
	Action   string
	// AdvancedOpen opens the advanced settings: something there was typed
	// or is wrong.
	AdvancedOpen bool
	// Retyped names the secrets typed into a form that failed: they are
	// dropped, and the page asks to enter them again.
	Retyped map[string]bool
}

// providerInfo describes a provider on the choice page.
type providerInfo struct {
	Provider silo.Provider
	Title    string
	Text     string
}

var providerInfos = []providerInfo{
	{silo.ProviderLocal, "Local or self-managed", "Runs silo runner on a machine you manage, reading files under one folder. The server can start it for you."},
	{silo.ProviderAWS, "Amazon Web Services", "Silo prepares a CloudFormation template that runs the agent on EC2 in your account, with its own S3 bucket."},
	{silo.ProviderAzure, "Microsoft Azure", "Silo prepares an ARM template that runs the agent in Azure Container Instances, with its own storage account."},
}

// runnerFieldsFor returns the form of provider p. workspace and name fill in
// the default storage shown; edit leaves out what cannot change.
func runnerFieldsFor(p silo.Provider, workspace, name string, edit bool) (main, advanced []runnerGroup) {
	shownName := name
	if shownName == "" {
		shownName = "<name>"
	}
	nameField := runnerField{Name: "name", Label: "Name", Kind: "text", Placeholder: "e.g. hospital-a",
		Hint: "3–32 lowercase letters, digits or single dashes, starting with a letter. Unique in the workspace; used in storage names, and cannot change later."}
	vcpu := func(def int) runnerField {
		return runnerField{Name: "vcpu", Label: "vCPUs", Kind: "number", Placeholder: strconv.Itoa(def), Optional: true,
			Hint: fmt.Sprintf("Default %d. The runner never uses more.", def)}
	}
	memGB := func(def int) runnerField {
		return runnerField{Name: "memory_gb", Label: "Memory (GB)", Kind: "number", Placeholder: strconv.Itoa(def), Optional: true,
			Hint: fmt.Sprintf("Default %d GB.", def)}
	}
	switch p {
	case silo.ProviderLocal:
		basics := runnerGroup{ID: "basics", Title: "Runner", Fields: []runnerField{
			{Name: "storage_path", Label: "Storage path", Kind: "text", Placeholder: "file:///var/lib/silo/data", Wide: true,
				Hint: "The runner's data root, as file:/// and an absolute path. Datasets on this runner must be under it."},
			vcpu(silo.DefaultLocalVCPU), memGB(silo.DefaultLocalMemoryGB),
		}}
		if !edit {
			basics.Fields = append([]runnerField{nameField}, basics.Fields...)
		} else {
			basics.Fields = slices.DeleteFunc(basics.Fields, func(f runnerField) bool { return f.Name == "storage_path" })
		}
		return []runnerGroup{basics}, nil

	case silo.ProviderAWS:
		def := silo.DefaultRunnerStoragePath(silo.ProviderAWS, workspace, shownName)
		basics := runnerGroup{ID: "basics", Title: "Runner", Fields: []runnerField{
			{Name: "region", Label: "Region", Kind: "select", Options: silo.AWSRegions, Hint: "The AWS region to deploy the runner and its bucket in."},
			{Name: "storage_path", Label: "S3 bucket", Kind: "text", Placeholder: def, Optional: true, Wide: true,
				Template: silo.DefaultRunnerStoragePath(silo.ProviderAWS, workspace, "{name}"),
				Hint:     "Leave empty for the default shown, s3://<workspace>-<name>.silo. Another bucket must end in .silo. It cannot change later."},
			vcpu(silo.DefaultAWSVCPU), memGB(silo.DefaultAWSMemoryGB),
		}}
		if !edit {
			basics.Fields = append([]runnerField{nameField}, basics.Fields...)
		} else {
			basics.Fields = slices.DeleteFunc(basics.Fields, func(f runnerField) bool { return f.Name == "storage_path" })
		}
		roles := runnerGroup{ID: "roles", Title: "IAM roles", Text: "Two roles in your AWS account: one Silo's deployment uses to create the runner's resources, one the runner runs as.", Fields: []runnerField{
			{Name: "provisioner_role_arn", Label: "Provisioner role ARN", Kind: "text", Wide: true, Placeholder: "arn:aws:iam::123456789012:role/silo-provisioner",
				Hint: "arn:aws:iam::<12-digit account>:role/<path/name>"},
			{Name: "runtime_role_arn", Label: "Runtime role ARN", Kind: "text", Wide: true, Placeholder: "arn:aws:iam::123456789012:role/silo-runtime",
				Hint: "The role the runner's instance assumes to read your data."},
		}}
		advanced = []runnerGroup{
			{ID: "registry", Title: "Container image", Fields: []runnerField{
				{Name: "container_registry_url", Label: "Container registry URL", Kind: "text", Optional: true, Wide: true, Placeholder: "s3://my-images/silo-runner.tar",
					Hint: "s3://<bucket>/<image>: load the runner's image from your own bucket instead of the public one."},
			}},
			{ID: "existing-vpc", Title: "Use an existing VPC", Text: "Give all five, or leave them all empty. Cannot be combined with a new VPC.", Fields: []runnerField{
				{Name: "vpc_id", Label: "VPC ID", Kind: "text", Optional: true, Placeholder: "vpc-0a1b2c3d4e5f67890"},
				{Name: "public_subnets", Label: "Public subnets", Kind: "list", Optional: true, Placeholder: "subnet-0a1b2c3d, subnet-4e5f6a7b", Hint: "Comma-separated subnet IDs."},
				{Name: "private_subnets", Label: "Private subnets", Kind: "list", Optional: true, Placeholder: "subnet-1a2b3c4d, subnet-5e6f7a8b", Hint: "Comma-separated subnet IDs."},
				{Name: "client_security_group", Label: "Client security group", Kind: "text", Optional: true, Placeholder: "sg-0a1b2c3d4e5f67890"},
				{Name: "server_security_group", Label: "Server security group", Kind: "text", Optional: true, Placeholder: "sg-1a2b3c4d5e6f78901"},
			}},
			{ID: "new-vpc", Title: "Create a new VPC", Text: "Silo's template creates a VPC with these blocks. Give all four, or leave them all empty for the defaults shown.", Fields: []runnerField{
				{Name: "vpc_cidr", Label: "VPC CIDR", Kind: "text", Optional: true, Placeholder: silo.DefaultAWSVPCCIDR, Hint: "Between /16 and /28. Default " + silo.DefaultAWSVPCCIDR + "."},
				{Name: "private_subnet_cidr", Label: "Private subnet CIDR", Kind: "text", Optional: true, Placeholder: silo.DefaultAWSPrivateSubnetCIDR, Hint: "Inside the VPC block. Default " + silo.DefaultAWSPrivateSubnetCIDR + "."},
				{Name: "public_subnet_cidr", Label: "Public subnet CIDR", Kind: "text", Optional: true, Placeholder: silo.DefaultAWSPublicSubnetCIDR, Hint: "Inside the VPC block, not overlapping the private one. Default " + silo.DefaultAWSPublicSubnetCIDR + "."},
				{Name: "cidr_newbits", Label: "CIDR newbits", Kind: "number", Optional: true, Placeholder: strconv.Itoa(silo.DefaultAWSCIDRNewbits), Hint: fmt.Sprintf("Bits each subnet block is split by, one subnet per availability zone (1 gives 2, 2 gives 4). Default %d.", silo.DefaultAWSCIDRNewbits)},
			}},
			{ID: "kms", Title: "Encryption keys (KMS)", Fields: []runnerField{
				{Name: "kms_data_key_id", Label: "Data key", Kind: "text", Optional: true, Placeholder: "alias/silo-data", Hint: "Key ARN, key ID or alias/…; encrypts the bucket."},
				{Name: "kms_secret_key_id", Label: "Secrets key", Kind: "text", Optional: true, Placeholder: "alias/silo-secrets", Hint: "Key ARN, key ID or alias/…; encrypts the runner's token."},
			}},
			{ID: "ami", Title: "Machine image", Fields: []runnerField{
				{Name: "golden_ami_id", Label: "Golden AMI ID", Kind: "text", Optional: true, Placeholder: "ami-0a1b2c3d4e5f67890", Hint: "Your hardened image, instead of Amazon Linux."},
			}},
			{ID: "egress", Title: "Network exceptions", Fields: []runnerField{
				{Name: "egress_proxy_url", Label: "Egress proxy URL", Kind: "text", Optional: true, Placeholder: "http://proxy.example.com:3128", Hint: "The runner reaches the server and AWS through it."},
				{Name: "egress_allowed_cidrs", Label: "Extra allowed egress CIDRs", Kind: "list", Optional: true, Placeholder: "203.0.113.0/24, 198.51.100.7/32", Hint: "Comma-separated."},
			}},
		}
		return []runnerGroup{basics, roles}, advanced

	case silo.ProviderAzure:
		derived := "<name without dashes>storage"
		if name != "" {
			derived = silo.DefaultRunnerStoragePath(silo.ProviderAzure, workspace, name)
		}
		basics := runnerGroup{ID: "basics", Title: "Runner", Fields: []runnerField{
			{Name: "region", Label: "Region", Kind: "select", Options: silo.AzureRegions, Hint: "The Azure region to deploy the runner and its storage in."},
			{Name: "resource_group", Label: "Resource group", Kind: "text", Placeholder: "silo-runners", Hint: "The resource group to deploy into."},
			{Name: "storage_path", Label: "Storage account", Kind: "derived", Derived: derived, Optional: true, Template: "{bare}storage",
				Hint: "Derived from the name, not entered: the name without dashes, then “storage”."},
			vcpu(silo.DefaultAzureVCPU),
			{Name: "memory_mb", Label: "Memory (MB)", Kind: "number", Placeholder: strconv.Itoa(silo.DefaultAzureMemoryMB), Optional: true,
				Hint: fmt.Sprintf("Default %d MB. After registration it can only be decreased.", silo.DefaultAzureMemoryMB)},
		}}
		if !edit {
			basics.Fields = append([]runnerField{nameField}, basics.Fields...)
		} else {
			basics.Fields = slices.DeleteFunc(basics.Fields, func(f runnerField) bool { return f.Name == "storage_path" })
		}
		const guid = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
		secretHint := "Stored encrypted; never shown again."
		if edit {
			secretHint = "Leave empty to keep the stored secret."
		}
		principals := runnerGroup{ID: "principals", Title: "Subscription and service principals", Text: "One service principal provisions the runner's resources; the other is the identity the runner runs as.", Fields: []runnerField{
			{Name: "subscription_id", Label: "Subscription ID", Kind: "text", Placeholder: guid, Hint: "az account show --query id"},
			{Name: "tenant_id", Label: "Tenant ID", Kind: "text", Placeholder: guid, Hint: "az account show --query tenantId"},
			{Name: "service_principal_id", Label: "Provisioning service principal ID", Kind: "text", Placeholder: guid, Hint: "Its application (client) ID."},
			{Name: "service_principal_secret", Label: "Provisioning service principal secret", Kind: "password", Hint: secretHint},
			{Name: "runtime_service_principal_id", Label: "Runtime service principal ID", Kind: "text", Placeholder: guid, Hint: "Its application (client) ID."},
			{Name: "runtime_service_principal_secret", Label: "Runtime service principal secret", Kind: "password", Hint: secretHint},
		}}
		advanced = []runnerGroup{
			{ID: "registry", Title: "Container image", Fields: []runnerField{
				{Name: "container_registry_url", Label: "Container registry URL", Kind: "text", Optional: true, Wide: true, Placeholder: "acme.azurecr.io/silo-runner:1.4",
					Hint: "<registry>.azurecr.io/<image>: pull the runner's image from your own registry."},
			}},
			{ID: "network", Title: "Network", Fields: []runnerField{
				{Name: "subnet_id", Label: "Subnet ID", Kind: "text", Optional: true, Wide: true,
					Placeholder: "/subscriptions/…/resourceGroups/…/providers/Microsoft.Network/virtualNetworks/…/subnets/…",
					Hint:        "The full resource ID of the subnet to run in (az network vnet subnet show --query id)."},
			}},
		}
		return []runnerGroup{basics, principals}, advanced
	}
	return nil, nil
}

// specPointers maps RunnerSpec's JSON field names to its fields, by kind.
func specPointers(s *silo.RunnerSpec) (strs map[string]*string, ints map[string]*int, lists map[string]*[]string) {
	strs = map[string]*string{
		"name": &s.Name, "storage_path": &s.StoragePath, "region": &s.Region, "container_registry_url": &s.ContainerRegistryURL,
		"provisioner_role_arn": &s.ProvisionerRoleARN, "runtime_role_arn": &s.RuntimeRoleARN, "vpc_id": &s.VPCID,
		"client_security_group": &s.ClientSecurityGroup, "server_security_group": &s.ServerSecurityGroup,
		"vpc_cidr": &s.VPCCIDR, "private_subnet_cidr": &s.PrivateSubnetCIDR, "public_subnet_cidr": &s.PublicSubnetCIDR,
		"kms_data_key_id": &s.KMSDataKeyID, "kms_secret_key_id": &s.KMSSecretKeyID, "golden_ami_id": &s.GoldenAMIID,
		"egress_proxy_url": &s.EgressProxyURL, "resource_group": &s.ResourceGroup, "service_principal_id": &s.ServicePrincipalID,
		"runtime_service_principal_id": &s.RuntimeServicePrincipalID, "subscription_id": &s.SubscriptionID, "tenant_id": &s.TenantID,
		"subnet_id": &s.SubnetID, "service_principal_secret": &s.ServicePrincipalSecret,
		"runtime_service_principal_secret": &s.RuntimeServicePrincipalSecret,
	}
	ints = map[string]*int{"vcpu": &s.VCPU, "memory_gb": &s.MemoryGB, "memory_mb": &s.MemoryMB, "cidr_newbits": &s.CIDRNewbits}
	lists = map[string]*[]string{"public_subnets": &s.PublicSubnets, "private_subnets": &s.PrivateSubnets, "egress_allowed_cidrs": &s.EgressAllowedCIDRs}
	return strs, ints, lists
}

// splitList splits a comma-separated input (new lines count as commas),
// dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ';' }) {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func allFields(groups ...[]runnerGroup) []runnerField {
	var out []runnerField
	for _, gs := range groups {
		for _, g := range gs {
			out = append(out, g.Fields...)
		}
	}
	return out
}

// runnerSpecFromForm reads the fields of a runner form into a spec of
// provider p. Numbers that are not numbers are reported in f.
func runnerSpecFromForm(p silo.Provider, fields []runnerField, vals url.Values, f *form) silo.RunnerSpec {
	spec := silo.RunnerSpec{Provider: p}
	strs, ints, lists := specPointers(&spec)
	for _, fd := range fields {
		raw := strings.TrimSpace(vals.Get(fd.Name))
		switch {
		case fd.Kind == "derived":
		case ints[fd.Name] != nil:
			if raw == "" {
				continue
			}
			n, err := strconv.Atoi(raw)
			if err != nil {
				f.Errors[fd.Name] = fmt.Sprintf("%s must be a whole number, not %q", fd.Name, raw)
				continue
			}
			*ints[fd.Name] = n
		case lists[fd.Name] != nil:
			*lists[fd.Name] = splitList(raw)
		case strs[fd.Name] != nil:
			if fd.Kind == "password" {
				*strs[fd.Name] = vals.Get(fd.Name) // secrets are taken as typed
			} else {
				*strs[fd.Name] = raw
			}
		}
	}
	return spec
}

// runnerFormValues returns a stored runner's settings as form values.
func runnerFormValues(rn *silo.Runner) url.Values {
	spec := rn.RunnerSpec
	strs, ints, lists := specPointers(&spec)
	vals := url.Values{}
	for k, p := range strs {
		if *p != "" && !strings.HasSuffix(k, "_secret") {
			vals.Set(k, *p)
		}
	}
	for k, p := range ints {
		if *p != 0 {
			vals.Set(k, strconv.Itoa(*p))
		}
	}
	for k, p := range lists {
		if len(*p) > 0 {
			vals.Set(k, strings.Join(*p, ", "))
		}
	}
	return vals
}

// placeErrors puts each validation error next to its field when the form has
// it, else on the form as a whole. Errors already recorded for a field (a
// number that is not one) win.
func placeErrors(f *form, fields []runnerField, errs []error) {
	for _, err := range errs {
		var field string
		if e, ok := err.(*silo.Error); ok {
			field = e.Field
		}
		known := slices.ContainsFunc(fields, func(fd runnerField) bool { return fd.Name == field && fd.Kind != "derived" })
		switch {
		case known && f.Errors[field] == "":
			f.Errors[field] = silo.ErrorMessage(err)
		case known:
		case f.Error == "":
			f.Error = silo.ErrorMessage(err)
		default:
			f.Error += "; " + silo.ErrorMessage(err)
		}
	}
}

// dropSecrets clears typed secrets before a form is shown again: a page never
// carries a secret back. It returns the names of those that were typed.
func dropSecrets(f *form) map[string]bool {
	typed := map[string]bool{}
	for _, k := range []string{"service_principal_secret", "runtime_service_principal_secret"} {
		if f.Values.Get(k) != "" {
			typed[k] = true
		}
		f.Values.Del(k)
	}
	return typed
}

func parseProvider(s string) (silo.Provider, bool) {
	p := silo.Provider(s)
	return p, slices.Contains(silo.Providers, p)
}

func (ui *UI) workspaceName(ctx context.Context) string {
	ws, err := ui.db.Workspace(ctx)
	if err != nil {
		return "silo"
	}
	return ws.Name
}

// ---- List ----

// runnersPage is how many runners the runners page shows at a time.
const runnersPage = 100

// runnersPageData is a page of the runners page: the runners, the name
// after which it starts (none on the first page), the next page's
// (none on the last) and how many runners there are in all.
type runnersPageData struct {
	Runners       []*silo.Runner
	After, Next   string
	Total, Online int
}

func (ui *UI) handleRunnersPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := runnersPageData{After: r.URL.Query().Get("after")}
	stored, err := ui.db.ListRunners(ctx, sqlstore.RunnerQuery{After: d.After, Limit: runnersPage})
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	if d.Total, d.Online, err = ui.db.CountRunners(ctx); err != nil {
		ui.renderError(w, r, err)
		return
	}
	for _, rn := range stored {
		d.Runners = append(d.Runners, ui.srv.RunnerView(rn))
	}
	if len(stored) >= runnersPage {
		d.Next = stored[len(stored)-1].Name
	}
	v := ui.settingsView(r, "Task Runners", "runners")
	v.Data = d
	ui.render(w, r, http.StatusOK, "runners", v)
}

// ---- Registration ----

func (ui *UI) handleRunnerProviders(w http.ResponseWriter, r *http.Request) {
	v := ui.settingsView(r, "Register a task runner", "runners")
	v.Data = providerInfos
	ui.render(w, r, http.StatusOK, "runner_providers", v)
}

// renderRunnerForm shows the registration or edit form of provider p.
func (ui *UI) renderRunnerForm(w http.ResponseWriter, r *http.Request, status int, p silo.Provider, f *form, edit *silo.Runner) {
	ws := ui.workspaceName(r.Context())
	name := f.Get("name")
	if edit != nil {
		name = edit.Name
	} else if silo.ValidateRunnerName(name) != nil {
		name = ""
	}
	d := runnerFormData{Provider: p, Edit: edit, Action: "/settings/register-runner/" + string(p)}
	d.Main, d.Advanced = runnerFieldsFor(p, ws, name, edit != nil)
	for _, fd := range allFields(d.Advanced) {
		if f.Get(fd.Name) != "" || f.Err(fd.Name) != "" {
			d.AdvancedOpen = true
		}
	}
	if typed := dropSecrets(f); len(f.Errors) > 0 || f.Error != "" {
		d.Retyped = typed
	}
	if edit != nil && edit.Provider == silo.ProviderAzure {
		for i, fd := range d.Main[0].Fields {
			if fd.Name == "memory_mb" {
				d.Main[0].Fields[i].Hint = fmt.Sprintf("Now %d MB. It can only be decreased: a runner that needs more memory is registered anew.", edit.MemoryMB)
			}
		}
	}
	title := "Register a task runner"
	if edit != nil {
		d.Action = "/settings/runners/" + url.PathEscape(edit.Name) + "/edit"
		title = "Edit " + edit.Name
	}
	v := ui.settingsView(r, title, "runners")
	v.Form = f
	v.Data = d
	ui.render(w, r, status, "runner_form", v)
}

func (ui *UI) handleRunnerNew(w http.ResponseWriter, r *http.Request) {
	p, ok := parseProvider(r.PathValue("provider"))
	if !ok {
		ui.renderError(w, r, silo.Errorf(silo.ENOTFOUND, "there is no provider %q: choose local, aws or azure", r.PathValue("provider")))
		return
	}
	ui.renderRunnerForm(w, r, http.StatusOK, p, newForm(nil), nil)
}

func (ui *UI) handleRunnerCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, ok := parseProvider(r.PathValue("provider"))
	if !ok {
		ui.renderError(w, r, silo.Errorf(silo.ENOTFOUND, "there is no provider %q: choose local, aws or azure", r.PathValue("provider")))
		return
	}
	if !ui.parseForm(w, r) {
		return
	}
	main, advanced := runnerFieldsFor(p, "", "", false)
	fields := allFields(main, advanced)
	f := newForm(url.Values{})
	for _, fd := range fields {
		if v, ok := r.PostForm[fd.Name]; ok && fd.Kind != "derived" {
			f.Values[fd.Name] = v
		}
	}
	spec := runnerSpecFromForm(p, fields, f.Values, f)
	check := spec // ValidateAll normalises and fills defaults: keep spec as typed
	errs := check.ValidateAll(ui.workspaceName(ctx))
	placeErrors(f, fields, errs)
	if len(f.Errors) > 0 || f.Error != "" {
		ui.renderRunnerForm(w, r, http.StatusBadRequest, p, f, nil)
		return
	}
	rn, err := ui.srv.RegisterRunner(ctx, spec)
	if err != nil {
		ui.logInternal(r, err)
		f.fail(err, fieldNames(fields)...)
		ui.renderRunnerForm(w, r, httpjson.Status(err), p, f, nil)
		return
	}
	if rn.Token != "" {
		// A local runner's token exists only now: show it in this response.
		ui.renderRunnerPage(w, r, http.StatusCreated, rn.Name, &flash{Kind: "success", Message: "Task runner " + rn.Name + " is registered."}, rn.Token)
		return
	}
	msg := "Task runner " + rn.Name + " is registered."
	if rn.Status == silo.RunnerProvisioning {
		msg += " Next, download its deployment bundle and apply it in your " + providerTitle(rn.Provider) + " account."
	}
	ui.redirectFlash(w, r, runnerPath(rn.Name), "success", msg)
}

func fieldNames(fields []runnerField) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		out = append(out, f.Name)
	}
	return out
}

func runnerPath(name string) string { return "/settings/runners/" + url.PathEscape(name) }

// ---- Edit ----

func (ui *UI) handleRunnerEdit(w http.ResponseWriter, r *http.Request) {
	rn, err := ui.db.FindRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	view := ui.srv.RunnerView(rn)
	ui.renderRunnerForm(w, r, http.StatusOK, rn.Provider, newForm(runnerFormValues(view)), view)
}

func (ui *UI) handleRunnerUpdate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	stored, err := ui.db.FindRunner(ctx, r.PathValue("name"))
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	old := ui.srv.RunnerView(stored)
	if !ui.parseForm(w, r) {
		return
	}
	main, advanced := runnerFieldsFor(old.Provider, "", old.Name, true)
	fields := allFields(main, advanced)
	f := newForm(url.Values{})
	for _, fd := range fields {
		if v, ok := r.PostForm[fd.Name]; ok {
			f.Values[fd.Name] = v
		}
	}
	next := runnerSpecFromForm(old.Provider, fields, f.Values, f)
	next.Name, next.StoragePath = old.Name, old.StoragePath
	// Check every field at once first; secrets left empty keep the stored
	// ones, so stand-ins take their place in this check.
	check := next
	for name, p := range check.Secrets() {
		if *p == "" && slices.Contains(old.SecretsSet, name) {
			*p = "kept"
		}
	}
	if check.VCPU == 0 {
		check.VCPU = old.VCPU
	}
	if check.MemoryGB == 0 {
		check.MemoryGB = old.MemoryGB
	}
	if check.MemoryMB == 0 {
		check.MemoryMB = old.MemoryMB
	}
	placeErrors(f, fields, check.ValidateAll(ui.workspaceName(ctx)))
	if len(f.Errors) == 0 && f.Error == "" {
		_, err = ui.srv.EditRunner(ctx, old.Name, next)
		if err == nil {
			ui.redirectFlash(w, r, runnerPath(old.Name), "success", "Settings of "+old.Name+" saved.")
			return
		}
		ui.logInternal(r, err)
		f.fail(err, fieldNames(fields)...)
	}
	ui.renderRunnerForm(w, r, http.StatusBadRequest, old.Provider, f, old)
}

// ---- Runner page ----

type runnerPageData struct {
	Runner *silo.Runner
	Tasks  []taskRow
	// LogTask is the latest task with log lines, Logs its last lines.
	LogTask *silo.Task
	Logs    []silo.LogLine
	// Token is a token just issued, shown once, with the command that uses it.
	Token       string
	Command     string
	ServerURL   string
	StorageRoot string
	CanLaunch   bool // this server can start local runners, and the viewer may
	Running     bool // started by this server and running
	Settings    []runnerSetting
	// BundleURL is the server URL the Deploy section's download offers:
	// what was typed, else this server's address when a runner's network
	// can reach it, else "" (the page then asks for it, saying why).
	BundleURL string
	// BundleError says why the bundle was refused, next to the field.
	BundleError string
}

// runnerSetting is one row of a runner's settings.
type runnerSetting struct {
	Label, Value string
	Secret       bool // show only whether it is set
	Code         bool
}

const runnerLogLines = 60

func (ui *UI) handleRunnerPage(w http.ResponseWriter, r *http.Request) {
	ui.renderRunnerPage(w, r, http.StatusOK, r.PathValue("name"), nil, "")
}

// renderRunnerPage shows a runner; token, when set, is a token issued by
// this request, shown once.
func (ui *UI) renderRunnerPage(w http.ResponseWriter, r *http.Request, status int, name string, fl *flash, token string) {
	ctx := r.Context()
	stored, err := ui.db.FindRunner(ctx, name)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	rn := ui.srv.RunnerView(stored)
	d := runnerPageData{Runner: rn, Token: token, ServerURL: ui.srv.BaseURL(r),
		CanLaunch: ui.srv.CanStartRunners() && silo.ActorFromContext(ctx).Can(silo.PermRunnersLaunch), Running: ui.srv.LocalRunnerRunning(rn.Name)}
	if bundleErr, ok := r.Context().Value(bundleErrorKey{}).(bundleError); ok {
		d.BundleURL, d.BundleError = bundleErr.url, bundleErr.msg
	} else if silo.CheckRunnerServerURL(rn.Provider, d.ServerURL) == nil {
		d.BundleURL = d.ServerURL
	}
	if rn.Provider == silo.ProviderLocal {
		d.StorageRoot = server.LocalRoot(rn.StoragePath)
	}
	if token != "" {
		d.Command = "silo runner --server " + d.ServerURL + " --token " + token
		if d.StorageRoot != "" {
			d.Command += " --storage-root " + d.StorageRoot
		}
	}
	tasks, err := ui.db.ListTasks(ctx, stored.ID, 10)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	access := ui.srv.TaskAccess(ctx)
	tasks = access.Views(tasks)
	for _, t := range tasks {
		d.Tasks = append(d.Tasks, taskRow{Task: t, Summary: taskSummary(t)})
	}
	for _, t := range tasks[:min(len(tasks), 5)] {
		if !access.Details(t) {
			continue
		}
		lines, err := ui.db.ListTaskLogs(ctx, []string{t.ID}, 0, 5000)
		if err != nil {
			ui.renderError(w, r, err)
			return
		}
		if len(lines) > 0 {
			d.LogTask, d.Logs = t, lines[max(0, len(lines)-runnerLogLines):]
			break
		}
	}
	d.Settings = runnerSettings(rn)
	v := ui.settingsView(r, rn.Name+" · Task Runners", "runners")
	v.Data = d
	if fl != nil {
		v.Flash = fl
	}
	// While a task is under way on a connected runner, follow it.
	if token == "" && rn.Status == silo.RunnerOnline {
		for _, t := range tasks {
			if t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
				v.Refresh = 3
				break
			}
		}
	}
	ui.render(w, r, status, "runner", v)
}

// taskRow is a task as the runner page lists it.
type taskRow struct {
	*silo.Task
	Summary string // what it reported, in a line
}

// taskSummary says in a line what a finished task reported.
func taskSummary(t *silo.Task) string {
	if t.Status != silo.TaskSucceeded || len(t.Output) == 0 {
		return ""
	}
	switch t.Type {
	case silo.TaskDiagnostics:
		var d struct {
			AgentVersion    string `json:"agent_version"`
			OS              string `json:"os"`
			VCPU            int    `json:"vcpu"`
			MemoryMB        int    `json:"memory_mb"`
			StorageRoot     string `json:"storage_root"`
			StorageWritable bool   `json:"storage_writable"`
			StorageFreeMB   int64  `json:"storage_free_mb"`
		}
		if json.Unmarshal(t.Output, &d) != nil {
			return ""
		}
		parts := []string{fmt.Sprintf("%d vCPU · %d MB", d.VCPU, d.MemoryMB)}
		if d.StorageRoot != "" {
			st := "storage writable"
			if !d.StorageWritable {
				st = "storage read-only"
			}
			if d.StorageFreeMB > 0 {
				st += fmt.Sprintf(", %s free", humanBytes(d.StorageFreeMB<<20))
			}
			parts = append(parts, st)
		}
		if d.OS != "" {
			parts = append(parts, d.OS)
		}
		return strings.Join(parts, " · ")
	case silo.TaskConnect:
		var out silo.ConnectOutput
		if json.Unmarshal(t.Output, &out) != nil {
			return ""
		}
		return fmt.Sprintf("%d rows, %s (%s)", out.Rows, plural(len(out.Columns), "column"), formatTitle(out.Format))
	}
	return ""
}

// runnerSettings lists a runner's settings for its page, in the form's
// order; secrets only say whether they are set.
func runnerSettings(rn *silo.Runner) []runnerSetting {
	main, advanced := runnerFieldsFor(rn.Provider, "", rn.Name, true)
	vals := runnerFormValues(rn)
	out := []runnerSetting{{Label: "Provider", Value: providerTitle(rn.Provider)}}
	storage := "Storage path"
	switch rn.Provider {
	case silo.ProviderAWS:
		storage = "S3 bucket"
	case silo.ProviderAzure:
		storage = "Storage account"
	}
	out = append(out, runnerSetting{Label: storage, Value: rn.StoragePath, Code: true})
	for _, fd := range allFields(main, advanced) {
		set := runnerSetting{Label: fd.Label, Value: vals.Get(fd.Name), Code: fd.Kind == "text" || fd.Kind == "list"}
		if fd.Name == "region" || fd.Name == "resource_group" {
			set.Code = false
		}
		if fd.Kind == "password" {
			set.Secret = true
			set.Value = ""
			if slices.Contains(rn.SecretsSet, fd.Name) {
				set.Value = "set"
			}
		}
		if set.Value == "" && fd.Optional && !set.Secret {
			continue
		}
		if set.Value == "" {
			set.Value = "—"
			set.Code = false
		}
		out = append(out, set)
	}
	return out
}

func providerTitle(p silo.Provider) string {
	switch p {
	case silo.ProviderAWS:
		return "AWS"
	case silo.ProviderAzure:
		return "Azure"
	case silo.ProviderLocal:
		return "Local"
	}
	return string(p)
}

// ---- Runner actions ----

// bundleError carries a refused bundle's URL and reason to the runner page
// shown in its place.
type (
	bundleError    struct{ url, msg string }
	bundleErrorKey struct{}
)

// handleRunnerBundle serves the deployment bundle for the server URL typed
// in the Deploy section, or shows the runner's page again with the reason
// next to the field: a browser must not save an error as the zip.
func (ui *UI) handleRunnerBundle(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	asked := strings.TrimSpace(r.URL.Query().Get("server_url"))
	b, err := ui.srv.RunnerBundle(r.Context(), name, ui.srv.BundleServerURL(r, asked))
	if err != nil {
		if silo.ErrorCode(err) != silo.EINVALID {
			ui.renderError(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), bundleErrorKey{}, bundleError{asked, silo.ErrorMessage(err)})
		ui.renderRunnerPage(w, r.WithContext(ctx), http.StatusBadRequest, name, nil, "")
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`-deployment.zip"`)
	_, _ = w.Write(b) // #nosec G705 -- a zip archive sent as an attachment, never rendered as HTML
}

func (ui *UI) handleRunnerDiagnostics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	t, err := ui.srv.QueueTask(r.Context(), name, &silo.Task{Type: silo.TaskDiagnostics, VCPU: 1, MemoryMB: 16})
	msg := ""
	if err == nil {
		msg = "Diagnostics task " + t.ID + " is queued: the runner checks its storage and resources when it next asks for work."
	}
	ui.redirectResult(w, r, runnerPath(name), msg, err)
}

func (ui *UI) handleRunnerStart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, err := ui.srv.StartLocalRunner(r.Context(), name)
	ui.redirectResult(w, r, runnerPath(name), "Runner "+name+" is starting under the server with a new token; it turns online when its agent connects.", err)
}

func (ui *UI) handleRunnerStop(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, err := ui.srv.StopLocalRunner(r.Context(), name)
	ui.redirectResult(w, r, runnerPath(name), "Runner "+name+" is stopped; it turns offline after three missed heartbeats.", err)
}

func (ui *UI) handleRunnerToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rn, err := ui.srv.RotateRunnerToken(r.Context(), name)
	if err != nil {
		ui.redirectResult(w, r, runnerPath(name), "", err)
		return
	}
	// The new token exists only now: show it in this response.
	ui.renderRunnerPage(w, r, http.StatusOK, name, &flash{Kind: "success", Message: "The token of " + name + " is replaced: the old one stopped working."}, rn.Token)
}

func (ui *UI) handleRunnerProvision(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rn, err := ui.srv.Provision(r.Context(), name)
	if err != nil {
		ui.redirectResult(w, r, runnerPath(name), "", err)
		return
	}
	kind, msg := "success", "Provisioning retried: "+rn.StatusReason
	if rn.Status == silo.RunnerFailed {
		kind, msg = "error", "Provisioning failed again: "+rn.StatusReason
	}
	ui.redirectFlash(w, r, runnerPath(name), kind, msg)
}

func (ui *UI) handleRunnerDeregister(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, err := ui.srv.DeregisterRunner(r.Context(), name)
	if err != nil {
		ui.redirectResult(w, r, runnerPath(name), "", err)
		return
	}
	ui.redirectFlash(w, r, "/settings/runners", "success", "Task runner "+name+" is deregistered: its token stopped working and its queued tasks were cancelled.")
}

// listRunners returns the registered task runners as the API shows them,
// secrets redacted.
func (ui *UI) listRunners(r *http.Request) ([]*silo.Runner, error) {
	stored, err := ui.db.ListRunners(r.Context(), sqlstore.RunnerQuery{})
	if err != nil {
		return nil, err
	}
	out := make([]*silo.Runner, len(stored))
	for i, rn := range stored {
		out[i] = ui.srv.RunnerView(rn)
	}
	return out, nil
}
