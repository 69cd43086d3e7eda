package silo

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on a runner's settings (SPEC §2).
const (
	MinRunnerNameLen = 3
	MaxRunnerNameLen = 32

	MinRunnerVCPU     = 1
	MaxRunnerVCPU     = 256
	MinRunnerMemoryGB = 1       // aws, local
	MaxRunnerMemoryGB = 4096    // aws, local
	MinRunnerMemoryMB = 512     // azure
	MaxRunnerMemoryMB = 4194304 // azure: 4096 GiB

	// MaxRunnerSecretLen bounds the azure service principal secrets.
	MaxRunnerSecretLen = 1024

	// MaxAzureRunnerNameLen is how many letters and digits (dashes don't
	// count) an azure runner's name may have: its storage account,
	// <name without dashes>storage, is at most 24 characters.
	MaxAzureRunnerNameLen = 24 - len(azureStorageSuffix)

	maxRunnerSubnets     = 32
	maxRunnerEgressCIDRs = 50
)

const (
	siloBucketSuffix   = ".silo"
	azureStorageSuffix = "storage"
)

// DefaultRunnerStoragePath returns the storage path a runner of provider p
// named name gets when it gives none: s3://<workspace>-<name>.silo for aws,
// the derived storage account <name without dashes>storage for azure (which
// cannot be chosen), and "" for local (which must give one). It does not check
// that the result is valid; Validate does.
func DefaultRunnerStoragePath(p Provider, workspace, name string) string {
	switch p {
	case ProviderAWS:
		return "s3://" + workspace + "-" + name + siloBucketSuffix
	case ProviderAzure:
		return strings.ReplaceAll(name, "-", "") + azureStorageSuffix
	}
	return ""
}

var runnerNameChars = regexp.MustCompile(`^[a-z0-9-]*$`)

// ValidateRunnerName checks a runner's name: 3–32 lowercase letters, digits
// and single dashes, starting with a letter and ending with a letter or digit.
// Unique in the workspace is the store's job.
func ValidateRunnerName(name string) error {
	const rule = "use 3–32 lowercase letters, digits or single dashes, starting with a letter and ending with a letter or digit (the name is used in storage names)"
	n := utf8.RuneCountInString(name)
	switch {
	case name == "":
		return FieldErrorf("name", "runner name is required: %s, e.g. \"gpu-1\"", rule)
	case !runnerNameChars.MatchString(name):
		return FieldErrorf("name", "runner name %q may contain only lowercase letters, digits and dashes: %s%s", name, rule, runnerNameSuggestion(name))
	case n < MinRunnerNameLen || n > MaxRunnerNameLen:
		return FieldErrorf("name", "runner name %q is %d characters: %s", name, n, rule)
	case name[0] < 'a' || name[0] > 'z':
		return FieldErrorf("name", "runner name %q must start with a letter: %s%s", name, rule, runnerNameSuggestion(name))
	case name[len(name)-1] == '-':
		return FieldErrorf("name", "runner name %q must end with a letter or digit: %s%s", name, rule, runnerNameSuggestion(name))
	case strings.Contains(name, "--"):
		return FieldErrorf("name", "runner name %q must not contain \"--\": %s%s", name, rule, runnerNameSuggestion(name))
	}
	return nil
}

// runnerNameSuggestion returns ` (e.g. "fixed")` when a simple fix of name
// (lowercase, separators to single dashes, trimmed) is a valid name.
func runnerNameSuggestion(name string) string {
	fixed := strings.Map(func(r rune) rune {
		if r == '_' || r == '.' || r == ' ' {
			return '-'
		}
		return unicode.ToLower(r)
	}, name)
	for strings.Contains(fixed, "--") {
		fixed = strings.ReplaceAll(fixed, "--", "-")
	}
	fixed = strings.Trim(fixed, "-")
	if fixed == name || ValidateRunnerName(fixed) != nil {
		return ""
	}
	return fmt.Sprintf(" (e.g. %q)", fixed)
}

// Validate normalises s (trims spaces; lowercases what is case-insensitive),
// fills in the provider's defaults (SPEC §2) and checks every rule, returning
// every problem as one EINVALID *Error whose Fields name them (see
// FieldErrors). workspace is the workspace's name, used in the default AWS
// bucket.
func (s *RunnerSpec) Validate(workspace string) error {
	return FieldErrors(s.ValidateAll(workspace))
}

// ValidateAll is Validate reporting every problem, at most one per field,
// each an EINVALID *Error naming its field, so that a form can show each next
// to its field. The order is fixed: name, provider, fields of other providers,
// then the provider's fields in the order of SPEC §2's table. It returns nil
// when s is valid.
func (s *RunnerSpec) ValidateAll(workspace string) []error {
	s.normalize()
	var v fieldErrors
	if err := ValidateRunnerName(s.Name); err != nil {
		v.addErr(err)
	}
	switch s.Provider {
	case ProviderLocal, ProviderAWS, ProviderAzure:
	case "":
		v.add("provider", "provider is required: use one of %s", providerList())
		return v.errs
	default:
		v.add("provider", "unknown provider %q: use one of %s", s.Provider, providerList())
		return v.errs
	}
	s.checkForeignFields(&v)
	switch s.Provider {
	case ProviderAWS:
		s.validateAWS(&v, workspace)
	case ProviderAzure:
		s.validateAzure(&v)
	case ProviderLocal:
		s.validateLocal(&v)
	}
	return v.errs
}

// ValidateUpdate validates s as an edit of the registered runner old (as
// stored, secrets included; it is not modified): name, provider and
// storage_path cannot change; an azure runner's memory_mb may be decreased
// but never increased. Name, provider, secrets, storage_path, vcpu and memory
// left empty keep their stored values. Then s is validated as by Validate.
func (s *RunnerSpec) ValidateUpdate(old *RunnerSpec, workspace string) error {
	if strings.TrimSpace(s.Name) == "" {
		s.Name = old.Name
	}
	if strings.TrimSpace(string(s.Provider)) == "" {
		s.Provider = old.Provider
	}
	if name := strings.TrimSpace(s.Name); name != old.Name {
		return FieldErrorf("name", "a runner's name cannot change (it is %q, not %q): to use another name, deregister this runner and register a new one", old.Name, name)
	}
	if p := Provider(strings.ToLower(strings.TrimSpace(string(s.Provider)))); p != old.Provider {
		return FieldErrorf("provider", "a runner's provider cannot change (it is %s, not %q): to move to %s, deregister this runner and register a new one", old.Provider, p, p)
	}
	oldSecrets := old.Secrets()
	for name, p := range s.Secrets() {
		if strings.TrimSpace(*p) == "" {
			*p = *oldSecrets[name]
		}
	}
	storageChanged := FieldErrorf("storage_path", "storage_path cannot change once a runner is registered (it is %q): to use other storage, register a new runner", old.StoragePath)
	if strings.TrimSpace(s.StoragePath) == "" {
		s.StoragePath = old.StoragePath
	} else {
		tmp := RunnerSpec{Provider: old.Provider, StoragePath: s.StoragePath}
		tmp.normalize()
		if tmp.StoragePath != old.StoragePath {
			return storageChanged
		}
	}
	if s.VCPU == 0 {
		s.VCPU = old.VCPU
	}
	if s.MemoryGB == 0 {
		s.MemoryGB = old.MemoryGB
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = old.MemoryMB
	}
	if err := s.Validate(workspace); err != nil {
		return err
	}
	if old.StoragePath != "" && s.StoragePath != old.StoragePath {
		return storageChanged
	}
	if s.Provider == ProviderAzure && old.MemoryMB != 0 && s.MemoryMB > old.MemoryMB {
		return FieldErrorf("memory_mb", "memory_mb can only be decreased after registration (it is %d, you asked for %d): give %d or less, or register a new runner for more memory", old.MemoryMB, s.MemoryMB, old.MemoryMB)
	}
	return nil
}

func providerList() string {
	names := make([]string, len(Providers))
	for i, p := range Providers {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// normalize trims every field, drops empty list entries and lowercases what
// is case-insensitive. It is idempotent.
func (s *RunnerSpec) normalize() {
	for _, p := range []*string{
		&s.Name, &s.StoragePath, &s.Region, &s.ContainerRegistryURL,
		&s.ProvisionerRoleARN, &s.RuntimeRoleARN, &s.VPCID,
		&s.ClientSecurityGroup, &s.ServerSecurityGroup, &s.VPCCIDR,
		&s.PrivateSubnetCIDR, &s.PublicSubnetCIDR, &s.KMSDataKeyID,
		&s.KMSSecretKeyID, &s.GoldenAMIID, &s.EgressProxyURL,
		&s.ResourceGroup, &s.ServicePrincipalID, &s.RuntimeServicePrincipalID,
		&s.SubscriptionID, &s.TenantID, &s.SubnetID,
		&s.ServicePrincipalSecret, &s.RuntimeServicePrincipalSecret,
	} {
		*p = strings.TrimSpace(*p)
	}
	s.Provider = Provider(strings.ToLower(strings.TrimSpace(string(s.Provider))))
	s.PublicSubnets = normalizeList(s.PublicSubnets, true)
	s.PrivateSubnets = normalizeList(s.PrivateSubnets, true)
	s.EgressAllowedCIDRs = normalizeList(s.EgressAllowedCIDRs, false)
	s.Region = strings.ToLower(s.Region)
	if s.Provider == ProviderAzure {
		// Azure's display names ("West Europe") name the same regions.
		s.Region = strings.Join(strings.Fields(s.Region), "")
	}
	for _, p := range []*string{
		&s.VPCID, &s.ClientSecurityGroup, &s.ServerSecurityGroup, &s.GoldenAMIID,
		&s.ServicePrincipalID, &s.RuntimeServicePrincipalID, &s.SubscriptionID, &s.TenantID,
	} {
		*p = strings.ToLower(*p)
	}
	for _, p := range []*string{&s.KMSDataKeyID, &s.KMSSecretKeyID} {
		if !strings.ContainsAny(*p, ":/") { // a bare key ID, not an ARN or alias
			*p = strings.ToLower(*p)
		}
	}
	if rest, ok := cutPrefixFold(s.StoragePath, "s3://"); ok {
		s.StoragePath = "s3://" + strings.TrimRight(rest, "/")
	} else if rest, ok := cutPrefixFold(s.StoragePath, "file://"); ok {
		p := strings.TrimRight(rest, "/")
		if p == "" && rest != "" {
			p = "/"
		}
		s.StoragePath = "file://" + p
	}
	if rest, ok := cutPrefixFold(s.ContainerRegistryURL, "s3://"); ok {
		s.ContainerRegistryURL = "s3://" + rest
	} else if host, image, ok := strings.Cut(s.ContainerRegistryURL, "/"); ok && !strings.Contains(host, ":") {
		// Registry host names are case-insensitive; image paths are not.
		s.ContainerRegistryURL = strings.ToLower(host) + "/" + image
	}
}

func normalizeList(list []string, lower bool) []string {
	var out []string
	for _, e := range list {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if lower {
			e = strings.ToLower(e)
		}
		out = append(out, e)
	}
	return out
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// providerField is a field that only some providers take.
type providerField struct {
	name      string
	providers []Provider
	set       func(*RunnerSpec) bool
	hint      string
}

// providerFields lists the provider-specific fields in RunnerSpec's order.
var providerFields = func() []providerField {
	aws := []Provider{ProviderAWS}
	azure := []Provider{ProviderAzure}
	str := func(f func(*RunnerSpec) string) func(*RunnerSpec) bool {
		return func(s *RunnerSpec) bool { return f(s) != "" }
	}
	return []providerField{
		{"memory_gb", []Provider{ProviderAWS, ProviderLocal}, func(s *RunnerSpec) bool { return s.MemoryGB != 0 }, "azure runners take memory_mb"},
		{"memory_mb", azure, func(s *RunnerSpec) bool { return s.MemoryMB != 0 }, "aws and local runners take memory_gb"},
		{"region", []Provider{ProviderAWS, ProviderAzure}, str(func(s *RunnerSpec) string { return s.Region }), ""},
		{"container_registry_url", []Provider{ProviderAWS, ProviderAzure}, str(func(s *RunnerSpec) string { return s.ContainerRegistryURL }), ""},
		{"provisioner_role_arn", aws, str(func(s *RunnerSpec) string { return s.ProvisionerRoleARN }), ""},
		{"runtime_role_arn", aws, str(func(s *RunnerSpec) string { return s.RuntimeRoleARN }), ""},
		{"vpc_id", aws, str(func(s *RunnerSpec) string { return s.VPCID }), ""},
		{"public_subnets", aws, func(s *RunnerSpec) bool { return len(s.PublicSubnets) > 0 }, ""},
		{"private_subnets", aws, func(s *RunnerSpec) bool { return len(s.PrivateSubnets) > 0 }, ""},
		{"client_security_group", aws, str(func(s *RunnerSpec) string { return s.ClientSecurityGroup }), ""},
		{"server_security_group", aws, str(func(s *RunnerSpec) string { return s.ServerSecurityGroup }), ""},
		{"vpc_cidr", aws, str(func(s *RunnerSpec) string { return s.VPCCIDR }), ""},
		{"private_subnet_cidr", aws, str(func(s *RunnerSpec) string { return s.PrivateSubnetCIDR }), ""},
		{"public_subnet_cidr", aws, str(func(s *RunnerSpec) string { return s.PublicSubnetCIDR }), ""},
		{"cidr_newbits", aws, func(s *RunnerSpec) bool { return s.CIDRNewbits != 0 }, ""},
		{"kms_data_key_id", aws, str(func(s *RunnerSpec) string { return s.KMSDataKeyID }), ""},
		{"kms_secret_key_id", aws, str(func(s *RunnerSpec) string { return s.KMSSecretKeyID }), ""},
		{"golden_ami_id", aws, str(func(s *RunnerSpec) string { return s.GoldenAMIID }), ""},
		{"egress_proxy_url", aws, str(func(s *RunnerSpec) string { return s.EgressProxyURL }), ""},
		{"egress_allowed_cidrs", aws, func(s *RunnerSpec) bool { return len(s.EgressAllowedCIDRs) > 0 }, ""},
		{"resource_group", azure, str(func(s *RunnerSpec) string { return s.ResourceGroup }), ""},
		{"service_principal_id", azure, str(func(s *RunnerSpec) string { return s.ServicePrincipalID }), ""},
		{"runtime_service_principal_id", azure, str(func(s *RunnerSpec) string { return s.RuntimeServicePrincipalID }), ""},
		{"subscription_id", azure, str(func(s *RunnerSpec) string { return s.SubscriptionID }), ""},
		{"tenant_id", azure, str(func(s *RunnerSpec) string { return s.TenantID }), ""},
		{"subnet_id", azure, str(func(s *RunnerSpec) string { return s.SubnetID }), ""},
		{"service_principal_secret", azure, str(func(s *RunnerSpec) string { return s.ServicePrincipalSecret }), ""},
		{"runtime_service_principal_secret", azure, str(func(s *RunnerSpec) string { return s.RuntimeServicePrincipalSecret }), ""},
	}
}()

// checkForeignFields refuses fields that s's provider does not take. The
// messages never quote the values (some are secrets).
func (s *RunnerSpec) checkForeignFields(v *fieldErrors) {
	for _, f := range providerFields {
		if slices.Contains(f.providers, s.Provider) || !f.set(s) {
			continue
		}
		names := make([]string, len(f.providers))
		for i, p := range f.providers {
			names[i] = string(p)
		}
		hint := ""
		if f.hint != "" {
			hint = " (" + f.hint + ")"
		}
		v.add(f.name, "%s applies only to %s runners, not %s ones: remove it%s", f.name, strings.Join(names, " and "), s.Provider, hint)
	}
}

// checkRange applies def to a zero *val and checks min ≤ *val ≤ max.
func checkRange(v *fieldErrors, field string, val *int, def, min, max int, unit string) {
	if *val == 0 {
		*val = def
		return
	}
	if *val < min || *val > max {
		v.add(field, "%s %d is out of range: use %d–%d%s, or leave it empty for the default, %d", field, *val, min, max, unit, def)
	}
}

// regionSuggestion returns a region of list that r is a simple misspelling
// of: an AWS availability zone (us-east-1a), or the same letters and digits
// with other punctuation (us_east_1, east-us).
func regionSuggestion(r string, list []string) string {
	if n := len(r); n > 1 && r[n-1] >= 'a' && r[n-1] <= 'z' && slices.Contains(list, r[:n-1]) {
		return r[:n-1]
	}
	key := alnumOnly(r)
	if key == "" {
		return ""
	}
	for _, c := range list {
		if alnumOnly(c) == key {
			return c
		}
	}
	return ""
}

func alnumOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(s))
}

func didYouMean(suggestion string) string {
	if suggestion == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", suggestion)
}

// ---- AWS ----

// awsPartition returns the ARN partition of an AWS region code.
func awsPartition(region string) string {
	switch {
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	}
	return "aws"
}

var awsPartitions = []string{"aws", "aws-us-gov", "aws-cn"}

var (
	awsAccountID = regexp.MustCompile(`^[0-9]{12}$`)
	iamNameChars = regexp.MustCompile(`^[\w+=,.@-]+$`)
	ipLike       = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$`)
	uuidRE       = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	kmsMRKRE     = regexp.MustCompile(`^mrk-[0-9a-f]{32}$`)
	kmsAliasRE   = regexp.MustCompile(`^alias/[A-Za-z0-9:/_-]+$`)
)

// splitARN splits arn:partition:service:region:account:resource, checking
// the partition and account.
func splitARN(arn string) (partition, service, region, resource, problem string) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return "", "", "", "", "it is not an ARN (arn:<partition>:<service>:<region>:<account>:<resource>)"
	}
	if !slices.Contains(awsPartitions, parts[1]) {
		return "", "", "", "", fmt.Sprintf("partition %q is not one of %s", parts[1], strings.Join(awsPartitions, ", "))
	}
	if !awsAccountID.MatchString(parts[4]) {
		return "", "", "", "", fmt.Sprintf("account ID %q must be 12 digits", parts[4])
	}
	return parts[1], parts[2], parts[3], parts[5], ""
}

// roleARNProblem checks an IAM role ARN, returning its partition or what is
// wrong with it.
func roleARNProblem(arn string) (partition, problem string) {
	partition, service, region, resource, problem := splitARN(arn)
	if problem != "" {
		return "", problem
	}
	if service != "iam" {
		return "", fmt.Sprintf("it is an ARN of service %q, not iam", service)
	}
	if region != "" {
		return "", fmt.Sprintf("IAM ARNs have no region (remove %q)", region)
	}
	rest, ok := strings.CutPrefix(resource, "role/")
	if !ok {
		return "", fmt.Sprintf("it names %q, not a role (the part after the account must start with role/)", resource)
	}
	segs := strings.Split(rest, "/")
	name := segs[len(segs)-1]
	switch {
	case name == "":
		return "", "the role name is missing"
	case len(name) > 64:
		return "", fmt.Sprintf("the role name is %d characters; IAM allows at most 64", len(name))
	case !iamNameChars.MatchString(name):
		return "", fmt.Sprintf("role name %q may contain only letters, digits and + = , . @ _ -", name)
	}
	if p := "/" + rest[:len(rest)-len(name)]; len(p) > 512 {
		return "", fmt.Sprintf("the role path is %d characters; IAM allows at most 512", len(p))
	}
	for _, seg := range segs[:len(segs)-1] {
		if seg == "" {
			return "", "the role path has an empty segment (//)"
		}
		if !iamNameChars.MatchString(seg) {
			return "", fmt.Sprintf("role path segment %q may contain only letters, digits and + = , . @ _ -", seg)
		}
	}
	return partition, ""
}

// checkRoleARN checks a required role ARN field, returning its partition
// when it is valid.
func checkRoleARN(v *fieldErrors, field, val, what string) string {
	const form = "arn:aws:iam::<12-digit account ID>:role/<name> (or role/<path>/<name>; partitions aws-us-gov and aws-cn too)"
	if val == "" {
		v.add(field, "%s is required: give the ARN of %s, %s, e.g. arn:aws:iam::123456789012:role/silo-%s", field, what, form, strings.TrimSuffix(field, "_role_arn"))
		return ""
	}
	partition, problem := roleARNProblem(val)
	if problem != "" {
		v.add(field, "%s %q is not a valid IAM role ARN: %s; use %s, as shown on the role's IAM console page", field, val, problem, form)
		return ""
	}
	return partition
}

// S3BucketProblem returns what is wrong with an S3 bucket name, or "" (AWS
// naming rules; the .silo suffix is checked separately). The blob layer
// uses it for dataset URIs too.
func S3BucketProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Sprintf("it must be 3–63 characters long (it has %d)", utf8.RuneCountInString(b))
	}
	for _, r := range b {
		if r >= 'A' && r <= 'Z' {
			return "it must be lowercase"
		}
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Sprintf("it may contain only lowercase letters, digits, dots and hyphens, not %q", r)
		}
	}
	isAlnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return "it must start and end with a letter or digit"
	}
	if strings.Contains(b, "..") {
		return "it must not contain two dots in a row"
	}
	if strings.Contains(b, ".-") || strings.Contains(b, "-.") {
		return "it must not have a dot next to a hyphen"
	}
	if ipLike.MatchString(b) {
		return "it must not be formatted like an IP address"
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Sprintf("it must not start with %q, which AWS reserves", p)
		}
	}
	for _, p := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, p) {
			return fmt.Sprintf("it must not end with %q, which AWS reserves", p)
		}
	}
	return ""
}

// s3KeyProblem returns what is wrong with an S3 key or prefix, or "". Keys
// are limited to S3's "safe" characters plus + = @ :.
func s3KeyProblem(k string) string {
	if len(k) > 1024 {
		return fmt.Sprintf("it is %d bytes; S3 allows at most 1024", len(k))
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "" {
			return "it must not contain empty segments (//)"
		}
		if seg == "." || seg == ".." {
			return "it must not contain . or .. segments"
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!-_.*'()+=@:", r)) {
				return fmt.Sprintf("it may contain only letters, digits, / and ! - _ . * ' ( ) + = @ :, not %q", r)
			}
		}
	}
	return ""
}

// awsResourceID matches AWS resource IDs: prefix- plus 8 or 17 hex digits.
func awsResourceID(prefix, id string) bool {
	hex, ok := strings.CutPrefix(id, prefix+"-")
	if !ok || len(hex) != 8 && len(hex) != 17 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkAWSID(v *fieldErrors, field, val, prefix, what string) {
	if val != "" && !awsResourceID(prefix, val) {
		v.add(field, "%s %q is not %s ID: use %s- followed by 8 or 17 hexadecimal digits, e.g. %s-0a1b2c3d4e5f67890", field, val, what, prefix, prefix)
	}
}

func checkSubnetList(v *fieldErrors, field string, list []string) {
	if len(list) > maxRunnerSubnets {
		v.add(field, "%s lists %d subnets: give at most %d", field, len(list), maxRunnerSubnets)
		return
	}
	for i, id := range list {
		if !awsResourceID("subnet", id) {
			v.add(field, "%s entry %q is not a subnet ID: use subnet- followed by 8 or 17 hexadecimal digits, e.g. subnet-0a1b2c3d4e5f67890", field, id)
			return
		}
		if slices.Contains(list[:i], id) {
			v.add(field, "%s lists subnet %q twice: give each subnet once", field, id)
			return
		}
	}
}

// ipv4CIDRProblem parses a canonical IPv4 CIDR block, or says what is wrong
// (a sentence fragment following the quoted value).
func ipv4CIDRProblem(val string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(val)
	if err != nil {
		if a, err := netip.ParseAddr(val); err == nil && a.Is4() {
			eg, _ := a.Prefix(24)
			return p, fmt.Sprintf("is an address, not a CIDR block: add the prefix length, e.g. %s", eg)
		}
		return p, "is not a CIDR block: use an IPv4 block in the form a.b.c.d/n, e.g. 10.0.0.0/16"
	}
	if !p.Addr().Is4() {
		return p, "is not IPv4: use an IPv4 block, e.g. 10.0.0.0/16"
	}
	if m := p.Masked(); m != p || m.String() != val {
		return p, fmt.Sprintf("is not in canonical form (host bits must be zero): use %s", m)
	}
	return p, ""
}

// checkCIDR checks an optional CIDR field, reporting whether it is valid.
func checkCIDR(v *fieldErrors, field, val string) (netip.Prefix, bool) {
	if val == "" {
		return netip.Prefix{}, false
	}
	p, problem := ipv4CIDRProblem(val)
	if problem != "" {
		v.add(field, "%s %q %s", field, val, problem)
		return p, false
	}
	return p, true
}

// halves splits p into its two halves.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	a := p.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n += 1 << (31 - p.Bits())
	// #nosec G115 -- the four bytes of an IPv4 address, truncation intended
	hi := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return netip.PrefixFrom(p.Addr(), p.Bits()+1), netip.PrefixFrom(hi, p.Bits()+1)
}

// kmsKeyProblem checks a KMS key reference, returning the region of a key
// or alias ARN, or what is wrong.
func kmsKeyProblem(val string) (region, problem string) {
	if strings.HasPrefix(val, "arn:") {
		partition, service, region, resource, problem := splitARN(val)
		if problem != "" {
			return "", problem
		}
		if service != "kms" {
			return "", fmt.Sprintf("it is an ARN of service %q, not kms", service)
		}
		if !slices.Contains(AWSRegions, region) {
			return "", fmt.Sprintf("%q is not an AWS region code", region)
		}
		if awsPartition(region) != partition {
			return "", fmt.Sprintf("region %s is not in partition %s", region, partition)
		}
		if id, ok := strings.CutPrefix(resource, "key/"); ok {
			if !uuidRE.MatchString(id) && !kmsMRKRE.MatchString(id) {
				return "", fmt.Sprintf("key ID %q is not a key ID (a lowercase UUID, or mrk- and 32 hex digits for a multi-Region key)", id)
			}
		} else if strings.HasPrefix(resource, "alias/") {
			if p := kmsAliasProblem(resource); p != "" {
				return "", p
			}
		} else {
			return "", fmt.Sprintf("it names %q, neither key/<key ID> nor alias/<name>", resource)
		}
		return region, ""
	}
	if strings.HasPrefix(val, "alias/") {
		return "", kmsAliasProblem(val)
	}
	if !uuidRE.MatchString(val) && !kmsMRKRE.MatchString(val) {
		return "", "it is not a key ARN, key ID or alias"
	}
	return "", ""
}

func kmsAliasProblem(alias string) string {
	if len(alias) > 256 {
		return fmt.Sprintf("the alias is %d characters; KMS allows at most 256", len(alias))
	}
	if !kmsAliasRE.MatchString(alias) {
		return "an alias is alias/ followed by letters, digits and / _ - :"
	}
	return ""
}

func (s *RunnerSpec) validateAWS(v *fieldErrors, workspace string) {
	provPart := checkRoleARN(v, "provisioner_role_arn", s.ProvisionerRoleARN, "the IAM role Silo assumes to provision the runner")
	runPart := checkRoleARN(v, "runtime_role_arn", s.RuntimeRoleARN, "the IAM role the runner runs as")
	if provPart != "" && runPart != "" && provPart != runPart {
		v.add("runtime_role_arn", "runtime_role_arn is in partition %s but provisioner_role_arn is in %s: both roles must be in the partition of the runner's region", runPart, provPart)
	}

	const regionHelp = "use a region code such as us-east-1, eu-west-1 or ap-southeast-2 (the code, not the display name; see the region menu of the AWS console or `aws ec2 describe-regions`)"
	regionOK := false
	switch {
	case s.Region == "":
		v.add("region", "region is required for aws runners: %s", regionHelp)
	case !slices.Contains(AWSRegions, s.Region):
		if n := len(s.Region); n > 1 && s.Region[n-1] >= 'a' && s.Region[n-1] <= 'z' && slices.Contains(AWSRegions, s.Region[:n-1]) {
			v.add("region", "region %q is an availability zone, not a region: use its region, %q", s.Region, s.Region[:n-1])
		} else {
			v.add("region", "region %q is not an AWS region code%s: %s", s.Region, didYouMean(regionSuggestion(s.Region, AWSRegions)), regionHelp)
		}
	default:
		regionOK = true
		part := awsPartition(s.Region)
		for _, r := range []struct{ field, part string }{{"provisioner_role_arn", provPart}, {"runtime_role_arn", runPart}} {
			if r.part != "" && r.part != part {
				v.add("region", "region %q is in partition %s but %s is in partition %s: the region and both roles must be in the same partition", s.Region, part, r.field, r.part)
				break
			}
		}
	}

	s.validateAWSStorage(v, workspace)
	checkRange(v, "vcpu", &s.VCPU, DefaultAWSVCPU, MinRunnerVCPU, MaxRunnerVCPU, "")
	checkRange(v, "memory_gb", &s.MemoryGB, DefaultAWSMemoryGB, MinRunnerMemoryGB, MaxRunnerMemoryGB, " GB")

	if u := s.ContainerRegistryURL; u != "" {
		const form = "s3://<bucket>/<image>, e.g. s3://acme-images/silo-runner.tar"
		rest, ok := strings.CutPrefix(u, "s3://")
		bucket, image, _ := strings.Cut(rest, "/")
		if !ok || bucket == "" || image == "" {
			v.add("container_registry_url", "container_registry_url %q must be %s", u, form)
		} else if p := S3BucketProblem(bucket); p != "" {
			v.add("container_registry_url", "container_registry_url %q: bucket %q is not a valid S3 bucket name: %s", u, bucket, p)
		} else if p := s3KeyProblem(image); p != "" {
			v.add("container_registry_url", "container_registry_url %q: image %q is not a valid S3 key: %s", u, image, p)
		}
	}

	s.validateAWSNetwork(v)

	for _, f := range []struct {
		field string
		val   *string
	}{{"kms_data_key_id", &s.KMSDataKeyID}, {"kms_secret_key_id", &s.KMSSecretKeyID}} {
		if *f.val == "" {
			continue
		}
		region, problem := kmsKeyProblem(*f.val)
		switch {
		case problem != "":
			v.add(f.field, "%s %q is not a KMS key: %s; use a key ARN (arn:aws:kms:<region>:<account>:key/<key ID>), a key ID (e.g. 1234abcd-12ab-34cd-56ef-1234567890ab) or an alias (alias/<name>)", f.field, *f.val, problem)
		case regionOK && region != "" && region != s.Region:
			v.add(f.field, "%s %q is in region %s but the runner is in %s: KMS keys are regional, use a key in %s", f.field, *f.val, region, s.Region, s.Region)
		}
	}

	if s.GoldenAMIID != "" && !awsResourceID("ami", s.GoldenAMIID) {
		v.add("golden_ami_id", "golden_ami_id %q is not an AMI ID: use ami- followed by 8 or 17 hexadecimal digits, e.g. ami-0a1b2c3d4e5f67890", s.GoldenAMIID)
	}

	if s.EgressProxyURL != "" {
		checkProxyURL(v, s.EgressProxyURL)
	}
	if len(s.EgressAllowedCIDRs) > maxRunnerEgressCIDRs {
		v.add("egress_allowed_cidrs", "egress_allowed_cidrs lists %d blocks: give at most %d (merge adjacent blocks)", len(s.EgressAllowedCIDRs), maxRunnerEgressCIDRs)
	}
	for i, c := range s.EgressAllowedCIDRs {
		if _, problem := ipv4CIDRProblem(c); problem != "" {
			v.add("egress_allowed_cidrs", "egress_allowed_cidrs entry %q %s", c, problem)
			break
		}
		if slices.Contains(s.EgressAllowedCIDRs[:i], c) {
			v.add("egress_allowed_cidrs", "egress_allowed_cidrs lists %s twice: give each block once", c)
			break
		}
	}
}

func (s *RunnerSpec) validateAWSStorage(v *fieldErrors, workspace string) {
	if s.StoragePath == "" {
		if v.has("name") {
			return // no default without a valid name
		}
		bucket := workspace + "-" + s.Name + siloBucketSuffix
		if p := S3BucketProblem(bucket); p != "" {
			v.add("storage_path", "the default bucket name %q (<workspace>-<name>.silo) is not a valid S3 bucket name: %s; give storage_path explicitly, e.g. s3://%s.silo, or choose a shorter runner name", bucket, p, s.Name)
			return
		}
		s.StoragePath = "s3://" + bucket
		return
	}
	rest, ok := strings.CutPrefix(s.StoragePath, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !ok || bucket == "" {
		v.add("storage_path", "storage_path %q must be an S3 URL, s3://<bucket>.silo optionally followed by /<prefix>, or empty for the default (s3://<workspace>-<name>.silo)", s.StoragePath)
		return
	}
	if p := S3BucketProblem(bucket); p != "" {
		v.add("storage_path", "storage_path %q: bucket %q is not a valid S3 bucket name: %s", s.StoragePath, bucket, p)
		return
	}
	if !strings.HasSuffix(bucket, siloBucketSuffix) {
		v.add("storage_path", "bucket %q must end in %q (e.g. s3://%s%s): Silo only uses buckets named for it", bucket, siloBucketSuffix, bucket, siloBucketSuffix)
		return
	}
	if prefix != "" {
		if p := s3KeyProblem(prefix); p != "" {
			v.add("storage_path", "storage_path %q: prefix %q is not valid: %s", s.StoragePath, prefix, p)
		}
	}
}

var (
	existingVPCFields = []string{"vpc_id", "public_subnets", "private_subnets", "client_security_group", "server_security_group"}
	newVPCFields      = []string{"vpc_cidr", "private_subnet_cidr", "public_subnet_cidr", "cidr_newbits"}
)

func (s *RunnerSpec) validateAWSNetwork(v *fieldErrors) {
	set := map[string]bool{
		"vpc_id":                s.VPCID != "",
		"public_subnets":        len(s.PublicSubnets) > 0,
		"private_subnets":       len(s.PrivateSubnets) > 0,
		"client_security_group": s.ClientSecurityGroup != "",
		"server_security_group": s.ServerSecurityGroup != "",
		"vpc_cidr":              s.VPCCIDR != "",
		"private_subnet_cidr":   s.PrivateSubnetCIDR != "",
		"public_subnet_cidr":    s.PublicSubnetCIDR != "",
		"cidr_newbits":          s.CIDRNewbits != 0,
	}
	var existing, created []string
	for _, f := range existingVPCFields {
		if set[f] {
			existing = append(existing, f)
		}
	}
	for _, f := range newVPCFields {
		if set[f] {
			created = append(created, f)
		}
	}
	if len(existing) > 0 && len(created) > 0 {
		v.add(created[0], "%s cannot be combined with %s: a runner uses either an existing VPC (%s) or a new one Silo creates (%s), not both; clear one of the two groups",
			strings.Join(created, ", "), strings.Join(existing, ", "), strings.Join(existingVPCFields, ", "), strings.Join(newVPCFields, ", "))
	}

	// Existing VPC.
	checkAWSID(v, "vpc_id", s.VPCID, "vpc", "a VPC")
	checkSubnetList(v, "public_subnets", s.PublicSubnets)
	checkSubnetList(v, "private_subnets", s.PrivateSubnets)
	for _, id := range s.PrivateSubnets {
		if slices.Contains(s.PublicSubnets, id) {
			v.add("private_subnets", "subnet %q is listed in both public_subnets and private_subnets: a subnet is either public or private, list it once", id)
			break
		}
	}
	checkAWSID(v, "client_security_group", s.ClientSecurityGroup, "sg", "a security group")
	checkAWSID(v, "server_security_group", s.ServerSecurityGroup, "sg", "a security group")
	if len(existing) > 0 && len(created) == 0 {
		for _, f := range existingVPCFields {
			if !set[f] {
				what := "its ID"
				if strings.HasSuffix(f, "subnets") {
					what = "at least one subnet ID"
				}
				v.add(f, "%s is required when using an existing VPC (you gave %s): give %s, or clear %s to let Silo create a VPC", f, strings.Join(existing, ", "), what, strings.Join(existing, ", "))
			}
		}
	}

	// New VPC.
	vpc, vpcOK := checkCIDR(v, "vpc_cidr", s.VPCCIDR)
	if vpcOK && (vpc.Bits() < 16 || vpc.Bits() > 28) {
		v.add("vpc_cidr", "vpc_cidr %s is a /%d: AWS VPC blocks must be between /16 and /28, e.g. 10.0.0.0/16", vpc, vpc.Bits())
	}
	type subnet struct {
		field string
		p     netip.Prefix
	}
	var subnets []subnet
	for _, f := range []struct{ field, val string }{{"private_subnet_cidr", s.PrivateSubnetCIDR}, {"public_subnet_cidr", s.PublicSubnetCIDR}} {
		p, ok := checkCIDR(v, f.field, f.val)
		switch {
		case !ok:
		case p.Bits() > 28:
			v.add(f.field, "%s %s is a /%d: AWS subnets must be /28 or larger", f.field, p, p.Bits())
		case vpcOK && (p.Bits() < vpc.Bits() || !vpc.Contains(p.Addr())):
			v.add(f.field, "%s %s is not inside vpc_cidr %s: choose a block within the VPC's", f.field, p, vpc)
		default:
			subnets = append(subnets, subnet{f.field, p})
		}
	}
	if len(subnets) == 2 && subnets[0].p.Overlaps(subnets[1].p) {
		eg := ""
		if vpcOK && vpc.Bits() < 28 {
			lo, hi := halves(vpc)
			eg = fmt.Sprintf(", e.g. %s and %s", lo, hi)
		}
		v.add("public_subnet_cidr", "public_subnet_cidr %s overlaps private_subnet_cidr %s: choose two separate blocks inside vpc_cidr%s", subnets[1].p, subnets[0].p, eg)
	}
	if n := s.CIDRNewbits; n != 0 {
		if n < 1 || n > 12 {
			v.add("cidr_newbits", "cidr_newbits %d must be between 1 and 12: it is how many bits each subnet block is split by, one subnet per availability zone (e.g. 2 gives 4 subnets)", n)
		} else {
			for _, sn := range subnets {
				if b := sn.p.Bits(); b+n > 28 {
					if b == 28 {
						v.add("cidr_newbits", "%s %s is already a /28, AWS's smallest subnet, so it cannot be split into per-availability-zone subnets: give a /27 or larger block", sn.field, sn.p)
					} else {
						v.add("cidr_newbits", "cidr_newbits %d would split %s %s into /%d subnets, smaller than AWS's minimum /28: use at most %d, or a larger block", n, sn.field, sn.p, b+n, 28-b)
					}
					break
				}
			}
		}
	}
	if len(created) > 0 && len(existing) == 0 {
		for _, f := range newVPCFields {
			if !set[f] {
				eg := map[string]string{"vpc_cidr": "10.0.0.0/16", "private_subnet_cidr": "10.0.0.0/17", "public_subnet_cidr": "10.0.128.0/17", "cidr_newbits": "2 (4 subnets per block, one per availability zone)"}[f]
				v.add(f, "%s is required when Silo creates a new VPC (you gave %s): give it, e.g. %s, or clear %s to use the default network", f, strings.Join(created, ", "), eg, strings.Join(created, ", "))
			}
		}
	}
}

func checkProxyURL(v *fieldErrors, raw string) {
	const eg = "e.g. http://proxy.example.com:3128"
	u, err := url.Parse(raw)
	shown := raw
	if err == nil {
		shown = u.Redacted()
	} else if strings.Contains(raw, "@") {
		shown = "(not shown: it may contain credentials)"
	}
	switch {
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" || u.Host == "":
		v.add("egress_proxy_url", "egress_proxy_url %q must be an http:// or https:// URL with a host, %s", shown, eg)
	case u.User != nil:
		v.add("egress_proxy_url", "egress_proxy_url %q must not contain credentials (runner settings are not secret): let the proxy allow the runner by address instead", shown)
	case u.Hostname() == "":
		v.add("egress_proxy_url", "egress_proxy_url %q has no host name, %s", shown, eg)
	case u.Port() != "" && !validPort(u.Port()):
		v.add("egress_proxy_url", "egress_proxy_url %q: port %q must be 1–65535, %s", shown, u.Port(), eg)
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		v.add("egress_proxy_url", "egress_proxy_url %q must be only scheme, host and port (no path, query or fragment), %s", shown, eg)
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// ---- Azure ----

var (
	acrNameRE = regexp.MustCompile(`^[a-z0-9]{5,50}$`)
	// An image repository path with an optional tag and digest
	// (distribution reference grammar, without a registry host).
	imageRefRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::\w[\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`)
	subnetIDRE = regexp.MustCompile(`^/(?i:subscriptions)/([^/]+)/(?i:resourcegroups)/([^/]+)/(?i:providers)/(?i:microsoft\.network)/(?i:virtualnetworks)/([^/]+)/(?i:subnets)/([^/]+)$`)
	vnetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]$`)
	subnetRE   = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`)
)

// resourceGroupProblem returns what is wrong with an Azure resource group
// name, or "".
func resourceGroupProblem(rg string) string {
	if !utf8.ValidString(rg) {
		return "it is not valid UTF-8"
	}
	if n := utf8.RuneCountInString(rg); n < 1 || n > 90 {
		return fmt.Sprintf("it must be 1–90 characters (it has %d)", n)
	}
	for _, r := range rg {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_()-.", r) {
			return fmt.Sprintf("it may contain only letters, digits, underscores, parentheses, hyphens and periods, not %q", r)
		}
	}
	if strings.HasSuffix(rg, ".") {
		return "it must not end with a period"
	}
	return ""
}

func (s *RunnerSpec) validateAzure(v *fieldErrors) {
	const regionHelp = "use a region name such as westeurope, eastus or uksouth (see the Name column of `az account list-locations -o table`)"
	switch {
	case s.Region == "":
		v.add("region", "region is required for azure runners: %s", regionHelp)
	case !slices.Contains(AzureRegions, s.Region):
		v.add("region", "region %q is not an Azure region name%s: %s", s.Region, didYouMean(regionSuggestion(s.Region, AzureRegions)), regionHelp)
	}

	switch {
	case s.ResourceGroup == "":
		v.add("resource_group", "resource_group is required for azure runners: give the name of the resource group to deploy the runner into, e.g. silo-runners")
	default:
		if p := resourceGroupProblem(s.ResourceGroup); p != "" {
			v.add("resource_group", "resource_group %q is not a valid Azure resource group name: %s", s.ResourceGroup, p)
		}
	}

	for _, f := range []struct {
		field, val, what string
	}{
		{"service_principal_id", s.ServicePrincipalID, "the application (client) ID of the service principal Silo provisions with (`az ad sp list --display-name <name> --query [].appId`)"},
		{"runtime_service_principal_id", s.RuntimeServicePrincipalID, "the application (client) ID of the service principal the runner runs as"},
		{"subscription_id", s.SubscriptionID, "the ID of the subscription to deploy into (`az account show --query id`)"},
		{"tenant_id", s.TenantID, "the ID of your Microsoft Entra tenant (`az account show --query tenantId`)"},
	} {
		switch {
		case f.val == "":
			v.add(f.field, "%s is required for azure runners: give %s", f.field, f.what)
		case !uuidRE.MatchString(f.val):
			v.add(f.field, "%s %q is not a GUID: use the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hexadecimal digits); it is %s", f.field, f.val, f.what)
		case strings.Trim(f.val, "0-") == "":
			v.add(f.field, "%s is the all-zero GUID, a placeholder: give %s", f.field, f.what)
		}
	}

	// Secrets: messages never include the value.
	for _, f := range []struct {
		field, val, whose string
	}{
		{"service_principal_secret", s.ServicePrincipalSecret, "service_principal_id"},
		{"runtime_service_principal_secret", s.RuntimeServicePrincipalSecret, "runtime_service_principal_id"},
	} {
		n := utf8.RuneCountInString(f.val)
		switch {
		case f.val == "":
			v.add(f.field, "%s is required for azure runners: give a client secret of the service principal in %s (it is stored encrypted and never shown again)", f.field, f.whose)
		case n > MaxRunnerSecretLen:
			v.add(f.field, "%s is %d characters, more than %d: paste only the secret's value, not a whole credentials file", f.field, n, MaxRunnerSecretLen)
		case strings.ContainsFunc(f.val, unicode.IsControl):
			v.add(f.field, "%s contains a line break or other control character: paste only the secret's value", f.field)
		}
	}

	checkRange(v, "vcpu", &s.VCPU, DefaultAzureVCPU, MinRunnerVCPU, MaxRunnerVCPU, "")
	checkRange(v, "memory_mb", &s.MemoryMB, DefaultAzureMemoryMB, MinRunnerMemoryMB, MaxRunnerMemoryMB, " MB")

	if !v.has("name") {
		derived := DefaultRunnerStoragePath(ProviderAzure, "", s.Name)
		ok := true
		if len(derived) > 24 {
			v.add("name", "runner name %q is too long for an azure runner: its storage account name %q would be %d characters, and Azure allows at most 24; use a name of at most %d letters and digits (dashes don't count)", s.Name, derived, len(derived), MaxAzureRunnerNameLen)
			ok = false
		}
		if s.StoragePath != "" && s.StoragePath != derived {
			v.add("storage_path", "storage_path is derived for azure runners (<name without dashes>storage, here %q) and cannot be chosen: leave it empty", derived)
			ok = false
		}
		if ok {
			s.StoragePath = derived
		}
	}

	if u := s.ContainerRegistryURL; u != "" {
		const form = "<registry>.azurecr.io/<image>[:tag], e.g. acme.azurecr.io/silo-runner:1.4"
		host, image, _ := strings.Cut(u, "/")
		registry, ok := strings.CutSuffix(host, ".azurecr.io")
		switch {
		case strings.Contains(u, "://"):
			v.add("container_registry_url", "container_registry_url %q must not include a scheme: use %s", u, form)
		case !ok || image == "":
			v.add("container_registry_url", "container_registry_url %q must be %s", u, form)
		case !acrNameRE.MatchString(registry):
			v.add("container_registry_url", "container_registry_url %q: registry name %q must be 5–50 letters and digits", u, registry)
		case !imageRefRE.MatchString(image):
			v.add("container_registry_url", "container_registry_url %q: image %q is not a valid image name: use lowercase path components (letters, digits, . _ -) separated by /, with an optional :tag, as in %s", u, image, form)
		}
	}

	if id := s.SubnetID; id != "" {
		const form = "/subscriptions/<subscription ID>/resourceGroups/<resource group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet> (`az network vnet subnet show --query id`)"
		m := subnetIDRE.FindStringSubmatch(id)
		switch {
		case m == nil:
			v.add("subnet_id", "subnet_id %q is not a subnet resource ID: give the full ID, %s", id, form)
		case !uuidRE.MatchString(strings.ToLower(m[1])):
			v.add("subnet_id", "subnet_id %q: subscription %q is not a GUID; give the full ID, %s", id, m[1], form)
		case resourceGroupProblem(m[2]) != "":
			v.add("subnet_id", "subnet_id %q: resource group %q is not valid: %s", id, m[2], resourceGroupProblem(m[2]))
		case !vnetNameRE.MatchString(m[3]):
			v.add("subnet_id", "subnet_id %q: virtual network name %q is not valid: it must be 2–64 letters, digits, _ . -, starting with a letter or digit and ending with a letter, digit or _", id, m[3])
		case !subnetRE.MatchString(m[4]):
			v.add("subnet_id", "subnet_id %q: subnet name %q is not valid: it must be 1–80 letters, digits, _ . -, starting with a letter or digit and ending with a letter, digit or _", id, m[4])
		}
	}
}

// CheckRunnerServerURL checks the server URL a runner of provider p is given: an
// http(s) URL with a host and nothing after its path. A cloud runner dials
// it from another network, so a loopback, unspecified or link-local address
// (127.0.0.1, localhost, 0.0.0.0, ::1, 169.254.x.x) — which would point the
// runner at itself — is refused, saying how to give the real one.
func CheckRunnerServerURL(p Provider, raw string) error {
	const how = "start the server with --public-url https://example.org (the address users and runners reach it at), or give the URL with 'silo runners bundle NAME --server-url URL' (the web UI: the Server URL field of the runner's Deploy section)"
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return FieldErrorf("server_url", "the bundle needs this server's URL: %s", how)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		// The URL is not quoted: whatever follows the host may be a secret
		// pasted by mistake.
		return FieldErrorf("server_url", "the server URL must be an http:// or https:// URL with a host and nothing after its path (no credentials, query or fragment), such as https://example.org")
	}
	if p == ProviderLocal {
		return nil
	}
	host := strings.ToLower(u.Hostname())
	local := host == "localhost" || strings.HasSuffix(host, ".localhost")
	if ip, err := netip.ParseAddr(host); err == nil {
		local = ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast()
	}
	if local {
		return FieldErrorf("server_url", "a %s runner cannot reach this server at %s://%s: that address means the runner's own machine. Give the URL its network reaches the server at: %s", p, u.Scheme, u.Host, how)
	}
	return nil
}

// ---- Local ----

func (s *RunnerSpec) validateLocal(v *fieldErrors) {
	const eg = "e.g. file:///var/lib/silo/data"
	switch sp := s.StoragePath; {
	case sp == "":
		v.add("storage_path", "storage_path is required for local runners: give the runner's data root as file:///<absolute path>, %s", eg)
	case !strings.HasPrefix(sp, "file://"):
		v.add("storage_path", "storage_path %q must be a file:/// URL naming the runner's data root, %s (local runners support no other scheme)", sp, eg)
	default:
		p := strings.TrimPrefix(sp, "file://")
		switch {
		case !strings.HasPrefix(p, "/"):
			v.add("storage_path", "storage_path %q must be file:// followed by an absolute path (three slashes in all, no host), %s", sp, eg)
		case strings.ContainsFunc(p, unicode.IsControl) || !utf8.ValidString(p):
			v.add("storage_path", "storage_path %q contains control characters or invalid UTF-8: give a plain absolute path, %s", sp, eg)
		case slices.Contains(strings.Split(p, "/"), ".."):
			v.add("storage_path", "storage_path %q must not contain .. segments: give the resolved absolute path, e.g. file://%s", sp, path.Clean(p))
		case path.Clean(p) != p:
			v.add("storage_path", "storage_path %q is not a clean path: use file://%s", sp, path.Clean(p))
		case p == "/":
			v.add("storage_path", "storage_path %q is the whole file system: give a directory for the runner's data, %s", sp, eg)
		}
	}
	checkRange(v, "vcpu", &s.VCPU, DefaultLocalVCPU, MinRunnerVCPU, MaxRunnerVCPU, "")
	checkRange(v, "memory_gb", &s.MemoryGB, DefaultLocalMemoryGB, MinRunnerMemoryGB, MaxRunnerMemoryGB, " GB")
}
