package provision

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	testToken    = "silo_rt_TOKEN-MUST-NOT-LEAK-0123456789abcdef"
	testSPSecret = "sp~SECRET-MUST-NOT-LEAK-1"
	testRTSecret = "rt~SECRET-MUST-NOT-LEAK-2"
	testCA       = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUSiloTestCA\n-----END CERTIFICATE-----\n"
)

func testConfig(ca bool) BootstrapConfig {
	cfg := BootstrapConfig{
		ServerURL:       "https://silo.acme.example",
		RunnerToken:     testToken,
		Workspace:       "acme",
		ProtocolVersion: 1,
	}
	if ca {
		cfg.CABundlePEM = testCA
	}
	return cfg
}

// bundleCases are the specs the golden files cover.
var bundleCases = []struct {
	name string
	spec silo.RunnerSpec
	ca   bool // the server has a CA bundle for runners
}{
	{"aws-new-vpc", silo.RunnerSpec{
		Name: "genomics", Provider: silo.ProviderAWS,
		StoragePath: "s3://acme-genomics-data.silo", VCPU: 16, MemoryGB: 64, Region: "eu-west-1",
		ContainerRegistryURL: "s3://acme-images/silo-runner-0.1.tar",
		ProvisionerRoleARN:   "arn:aws:iam::123456789012:role/silo/provisioner",
		RuntimeRoleARN:       "arn:aws:iam::123456789012:role/silo/runtime-genomics",
		VPCCIDR:              "10.50.0.0/16", PrivateSubnetCIDR: "10.50.64.0/18", PublicSubnetCIDR: "10.50.0.0/20", CIDRNewbits: 2,
		KMSDataKeyID:       "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		KMSSecretKeyID:     "alias/silo-secrets",
		GoldenAMIID:        "ami-0abcdef1234567890",
		EgressProxyURL:     "http://proxy.acme.internal:3128",
		EgressAllowedCIDRs: []string{"10.99.0.0/16", "192.168.5.0/24"},
	}, true},
	{"aws-existing-vpc", silo.RunnerSpec{
		Name: "clinic-2", Provider: silo.ProviderAWS, Region: "us-east-1",
		ProvisionerRoleARN:  "arn:aws:iam::210987654321:role/SiloProvisioner",
		RuntimeRoleARN:      "arn:aws:iam::210987654321:role/SiloRuntime",
		VPCID:               "vpc-0a1b2c3d4e5f60718",
		PublicSubnets:       []string{"subnet-0aaa1111bbbb2222c", "subnet-0ccc3333dddd4444e"},
		PrivateSubnets:      []string{"subnet-0eee5555ffff6666a", "subnet-0bbb7777cccc8888d"},
		ClientSecurityGroup: "sg-0123456789abcdef0",
		ServerSecurityGroup: "sg-0fedcba9876543210",
	}, false},
	{"aws-minimal", silo.RunnerSpec{Name: "r1", Provider: silo.ProviderAWS}, false},
	{"azure", silo.RunnerSpec{
		Name: "lab-3", Provider: silo.ProviderAzure, StoragePath: "lab3storage", VCPU: 2, MemoryMB: 6144, Region: "westeurope",
		ContainerRegistryURL:          "acmeregistry.azurecr.io/silo:0.1",
		ResourceGroup:                 "rg-silo-runners",
		ServicePrincipalID:            "11111111-2222-3333-4444-555555555555",
		RuntimeServicePrincipalID:     "66666666-7777-8888-9999-aaaaaaaaaaaa",
		SubscriptionID:                "bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
		TenantID:                      "01234567-89ab-cdef-0123-456789abcdef",
		SubnetID:                      "/subscriptions/bbbbbbbb-cccc-dddd-eeee-ffffffffffff/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet-silo/subnets/runners",
		ServicePrincipalSecret:        testSPSecret,
		RuntimeServicePrincipalSecret: testRTSecret,
	}, true},
	{"local", silo.RunnerSpec{Name: "laptop", Provider: silo.ProviderLocal, StoragePath: "file:///srv/silo-data", VCPU: 4, MemoryGB: 8}, true},
}

func bundleFor(t *testing.T, i int) *DeploymentBundle {
	t.Helper()
	c := bundleCases[i]
	spec := c.spec
	b, err := Bundle(&spec, testConfig(c.ca))
	if err != nil {
		t.Fatalf("%s: Bundle: %v", c.name, err)
	}
	return b
}

func TestBundleGolden(t *testing.T) {
	for i, c := range bundleCases {
		t.Run(c.name, func(t *testing.T) {
			b := bundleFor(t, i)
			var names []string
			for _, f := range b.Files {
				names = append(names, f.Name)
				golden := filepath.Join("testdata", c.name+"_"+f.Name+".golden")
				if *update {
					if err := os.WriteFile(golden, f.Data, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if diff := cmp.Diff(string(want), string(f.Data)); diff != "" {
					t.Errorf("%s differs from %s (-want +got; go test -update rewrites it):\n%s", f.Name, golden, diff)
				}
			}
			want := map[silo.Provider][]string{
				silo.ProviderAWS:   {ReadmeFile, CloudFormationFile, RunnerConfigFile},
				silo.ProviderAzure: {ReadmeFile, ARMTemplateFile, RunnerConfigFile},
				silo.ProviderLocal: {ReadmeFile, CAFile, RunnerConfigFile},
			}[c.spec.Provider]
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBundleDeterministic(t *testing.T) {
	for i, c := range bundleCases {
		a, b := bundleFor(t, i), bundleFor(t, i)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two bundles of the same spec differ", c.name)
		}
	}
}

func TestBundleJSON(t *testing.T) {
	for i, c := range bundleCases {
		b := bundleFor(t, i)
		for _, f := range b.Files {
			if !strings.HasSuffix(f.Name, ".json") {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(f.Data, &v); err != nil {
				t.Errorf("%s/%s is not a JSON object: %v", c.name, f.Name, err)
			}
		}
		var rc RunnerConfig
		if err := json.Unmarshal(b.File(RunnerConfigFile), &rc); err != nil {
			t.Fatal(err)
		}
		if rc.ServerURL != "https://silo.acme.example" || rc.Workspace != "acme" || rc.Runner != c.spec.Name ||
			rc.ProtocolVersion != 1 || rc.TokenEnv != EnvRunnerToken || rc.VCPU == 0 || rc.MemoryMB == 0 || rc.StoragePath == "" {
			t.Errorf("%s: runner config %+v lacks a field", c.name, rc)
		}
		if (rc.CABundlePEM == testCA) != c.ca {
			t.Errorf("%s: CA bundle %q, want it iff the config has one", c.name, rc.CABundlePEM)
		}
	}
}

// TestCloudFormationStructure checks what golden files cannot show at a
// glance: the token is a NoEcho parameter that only the secret uses, and the
// boot script substitutes nothing but the template's own names.
func TestCloudFormationStructure(t *testing.T) {
	for i, c := range bundleCases {
		if c.spec.Provider != silo.ProviderAWS {
			continue
		}
		var tmpl struct {
			Parameters map[string]map[string]any
			Resources  map[string]struct {
				Type       string
				Properties map[string]any
			}
			Metadata struct{ Silo struct{ StoragePath string } }
		}
		raw := bundleFor(t, i).File(CloudFormationFile)
		if err := json.Unmarshal(raw, &tmpl); err != nil {
			t.Fatal(err)
		}
		if p := tmpl.Parameters["RunnerToken"]; p["NoEcho"] != true || p["Default"] != nil {
			t.Errorf("%s: RunnerToken parameter %v, want NoEcho and no default", c.name, p)
		}
		if n := strings.Count(string(raw), `"Ref": "RunnerToken"`); n != 1 {
			t.Errorf("%s: RunnerToken referenced %d times, want once (by the secret)", c.name, n)
		}
		secret := tmpl.Resources["RunnerTokenSecret"]
		if secret.Type != "AWS::SecretsManager::Secret" || !reflect.DeepEqual(secret.Properties["SecretString"], map[string]any{"Ref": "RunnerToken"}) {
			t.Errorf("%s: RunnerTokenSecret = %+v", c.name, secret)
		}
		lt := tmpl.Resources["LaunchTemplate"].Properties["LaunchTemplateData"].(map[string]any)
		script := lt["UserData"].(map[string]any)["Fn::Base64"].(map[string]any)["Fn::Sub"].(string)
		for _, m := range regexp.MustCompile(`\$\{([^}]*)\}`).FindAllStringSubmatch(script, -1) {
			if !strings.HasPrefix(m[1], "!") && !slices.Contains([]string{"AWS::Region", "RunnerTokenSecret", "RunnerImage", "PolicyLocation"}, m[1]) {
				t.Errorf("%s: boot script substitutes unexpected ${%s}", c.name, m[1])
			}
		}
		for name, r := range tmpl.Resources {
			if r.Type == "" || r.Properties == nil {
				t.Errorf("%s: resource %s has no Type or Properties", c.name, name)
			}
		}

		// The policy's location is optional and becomes SILO_POLICY, in a
		// quoted heredoc the shell does not expand.
		if p := tmpl.Parameters["PolicyLocation"]; p["Type"] != "String" || p["Default"] != "" {
			t.Errorf("%s: PolicyLocation parameter %v, want an optional string", c.name, p)
		}
		if !strings.Contains(script, "cat >> /etc/silo/runner.env <<'SILO_EOF'\n"+EnvPolicy+"=${PolicyLocation}\nSILO_EOF\n") {
			t.Errorf("%s: the boot script does not pass PolicyLocation as %s:\n%s", c.name, EnvPolicy, script)
		}
		pattern := regexp.MustCompile(tmpl.Parameters["PolicyLocation"]["AllowedPattern"].(string))
		for loc, ok := range map[string]bool{"": true, "s3://acme.silo/.silo/policy.json": true, "s3://acme/p.json": false,
			"s3://acme.silo/p.json\nSILO_EOF": false, "/etc/policy.json": false} {
			if pattern.MatchString(loc) != ok {
				t.Errorf("%s: PolicyLocation %q allowed = %v, want %v", c.name, loc, !ok, ok)
			}
		}

		// The runtime role may write the runner's privacy record, and
		// read the pinned policy wherever it is.
		var stmts []any
		json.Unmarshal(mustJSON(tmpl.Resources["RunnerPolicy"].Properties["PolicyDocument"].(map[string]any)["Statement"]), &stmts)
		bucket, _, _ := S3Bucket(tmpl.Metadata.Silo.StoragePath)
		stateARN := "arn:aws:s3:::" + bucket + "/" + RunnerStateFolder + "locations/0123.json"
		writes := false
		var policyStmt any
		for _, st := range stmts {
			st := st.(map[string]any)
			if f, ok := st["Fn::If"].([]any); ok && f[0] == "HasPolicy" {
				policyStmt = f[1]
				continue
			}
			res, _ := st["Resource"].(string)
			acts, _ := st["Action"].([]any)
			if st["Effect"] == "Allow" && slices.Contains(acts, any("s3:PutObject")) && slices.Contains(acts, any("s3:GetObject")) &&
				strings.HasSuffix(res, "*") && strings.HasPrefix(stateARN, strings.TrimSuffix(res, "*")) {
				writes = true
			}
		}
		if !writes {
			t.Errorf("%s: the runtime role may not read and write %s: %v", c.name, stateARN, stmts)
		}
		want := map[string]any{"Sid": "Policy", "Effect": "Allow", "Action": "s3:GetObject", "Resource": map[string]any{"Fn::Join": []any{"", []any{"arn:aws:s3:::",
			map[string]any{"Fn::Select": []any{"1", map[string]any{"Fn::Split": []any{"s3://", map[string]any{"Fn::Join": []any{"", []any{map[string]any{"Ref": "PolicyLocation"}, "s3://"}}}}}}}}}}}
		if diff := cmp.Diff(want, policyStmt); diff != "" {
			t.Errorf("%s: the statement reading the pinned policy (-want +got):\n%s", c.name, diff)
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestARMStructure(t *testing.T) {
	var raw []byte
	for i, c := range bundleCases {
		if c.spec.Provider == silo.ProviderAzure {
			raw = bundleFor(t, i).File(ARMTemplateFile)
		}
	}
	var tmpl struct {
		Schema     string `json:"$schema"`
		Parameters map[string]map[string]any
		Resources  []map[string]any
	}
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	if tmpl.Schema != "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#" {
		t.Errorf("$schema = %q", tmpl.Schema)
	}
	if p := tmpl.Parameters["runnerToken"]; p["type"] != "securestring" || p["defaultValue"] != nil {
		t.Errorf("runnerToken parameter %v, want a securestring without default", p)
	}
	if !strings.Contains(string(raw), `"secureValue": "[parameters('runnerToken')]"`) {
		t.Error("the token does not reach the container as a secure value")
	}
	types := map[string]bool{}
	for _, r := range tmpl.Resources {
		types[r["type"].(string)] = true
	}
	for _, want := range []string{
		"Microsoft.Storage/storageAccounts", "Microsoft.Storage/storageAccounts/blobServices/containers",
		"Microsoft.ManagedIdentity/userAssignedIdentities", "Microsoft.Authorization/roleAssignments",
		"Microsoft.ContainerInstance/containerGroups",
	} {
		if !types[want] {
			t.Errorf("no %s resource", want)
		}
	}
	if !strings.Contains(string(raw), `"defaultValue": "lab3storage"`) {
		t.Error("storage account is not named <name without dashes>storage")
	}

	// The policy's location is optional and becomes SILO_POLICY.
	if p := tmpl.Parameters["policyLocation"]; p["type"] != "string" || p["defaultValue"] != "" {
		t.Errorf("policyLocation parameter %v, want an optional string", p)
	}
	if !regexp.MustCompile(`"name": "` + EnvPolicy + `",\s*"value": "\[parameters\('policyLocation'\)\]"`).Match(raw) {
		t.Errorf("the container does not get %s from policyLocation", EnvPolicy)
	}
	// The runner's identity may write its privacy record: a data role
	// that writes, on the whole storage account.
	writes := false
	for _, r := range tmpl.Resources {
		props, _ := r["properties"].(map[string]any)
		if r["type"] == "Microsoft.Authorization/roleAssignments" && strings.Contains(fmt.Sprint(props["roleDefinitionId"]), blobContributor) &&
			r["scope"] == "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]" &&
			strings.Contains(fmt.Sprint(props["principalId"]), "principalId") {
			writes = true
		}
	}
	if !writes {
		t.Errorf("the runner's identity gets no Storage Blob Data Contributor on its storage account, so cannot write %s", RunnerStateFolder)
	}
}

// Fields of RunnerSpec that need not appear verbatim in the provider's
// template, and why.
var notInTemplate = map[string]string{
	"Name":                          "identifies the runner; the golden files show where it is used",
	"Provider":                      "selects the template",
	"ServicePrincipalSecret":        "a secret: it must never appear (TestBundleHasNoSecrets)",
	"RuntimeServicePrincipalSecret": "a secret: it must never appear (TestBundleHasNoSecrets)",
}

// Fields the templates transform, with the text the transformed value
// must appear as in the compacted template.
var transformed = map[string]struct {
	why  string
	want func(s *silo.RunnerSpec) string
}{
	"VCPU": {"a container limit (docker --cpus on AWS, the ACI cpu request on Azure)", func(s *silo.RunnerSpec) string {
		if s.Provider == silo.ProviderAzure {
			return fmt.Sprintf(`"cpu":%d`, s.VCPU)
		}
		return fmt.Sprintf("--cpus %d", s.VCPU)
	}},
	"MemoryGB": {"docker's --memory limit (and the instance type's size)", func(s *silo.RunnerSpec) string {
		return fmt.Sprintf("--memory %dg", s.MemoryGB)
	}},
	"MemoryMB": {"ACI takes memory in GB", func(s *silo.RunnerSpec) string {
		return fmt.Sprintf(`"memoryInGB":%g`, float64(s.MemoryMB)/1024)
	}},
	"CIDRNewbits": {"Fn::Cidr takes host bits: 32 − (block prefix + newbits)", func(s *silo.RunnerSpec) string {
		bits, _ := hostBits(s.PrivateSubnetCIDR, s.CIDRNewbits)
		return fmt.Sprintf(`"Fn::Cidr":[%q,"2","%d"]`, s.PrivateSubnetCIDR, bits)
	}},
}

// TestTemplatesHonourEverySetting walks every field of RunnerSpec so a new
// setting cannot be silently ignored: each non-empty one must show up in the
// provider's template, unless it is listed above with its reason.
func TestTemplatesHonourEverySetting(t *testing.T) {
	typ := reflect.TypeFor[silo.RunnerSpec]()
	covered := map[string]bool{}
	for i, c := range bundleCases {
		template := map[silo.Provider]string{silo.ProviderAWS: CloudFormationFile, silo.ProviderAzure: ARMTemplateFile}[c.spec.Provider]
		if template == "" {
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, bundleFor(t, i).File(template)); err != nil {
			t.Fatal(err)
		}
		data := compact.String()
		v := reflect.ValueOf(c.spec)
		for j := range typ.NumField() {
			f, fv := typ.Field(j), v.Field(j)
			if fv.IsZero() {
				continue
			}
			if _, ok := notInTemplate[f.Name]; ok {
				continue
			}
			covered[f.Name] = true
			var wants []string
			switch {
			case transformed[f.Name].want != nil:
				wants = []string{transformed[f.Name].want(&c.spec)}
			case fv.Kind() == reflect.Slice:
				for k := range fv.Len() {
					wants = append(wants, fmt.Sprint(fv.Index(k).Interface()))
				}
			default:
				wants = []string{fmt.Sprint(fv.Interface())}
			}
			for _, w := range wants {
				if !strings.Contains(data, w) {
					t.Errorf("%s: %s = %v: %q does not appear in %s", c.name, f.Name, fv.Interface(), w, template)
				}
			}
		}
	}
	// Every field is either exercised by some case or explicitly excused.
	for j := range typ.NumField() {
		name := typ.Field(j).Name
		if _, ok := notInTemplate[name]; !ok && !covered[name] {
			t.Errorf("RunnerSpec.%s is set in no aws or azure test case", name)
		}
	}
}

func TestBundleHasNoSecrets(t *testing.T) {
	for i, c := range bundleCases {
		b := bundleFor(t, i)
		var zipped bytes.Buffer
		if err := b.WriteZip(&zipped); err != nil {
			t.Fatal(err)
		}
		for _, f := range append(b.Files, File{Name: "(zip)", Data: zipped.Bytes()}) {
			for _, s := range []string{testToken, testSPSecret, testRTSecret, "MUST-NOT-LEAK"} {
				if bytes.Contains(f.Data, []byte(s)) {
					t.Errorf("%s: %s contains the secret %q", c.name, f.Name, s)
				}
			}
		}
	}
}

// TestBundleRefusesToLeak checks the last line of defence: were a secret to
// end up in a file, Bundle fails instead of returning it.
func TestBundleRefusesToLeak(t *testing.T) {
	cfg := testConfig(false)
	cfg.ServerURL = "https://silo.example/?" + testToken
	spec := silo.RunnerSpec{Name: "r1", Provider: silo.ProviderLocal, StoragePath: "file:///data"}
	if _, err := Bundle(&spec, cfg); err == nil || strings.Contains(err.Error(), testToken) {
		t.Fatalf("Bundle = %v, want an error that does not quote the token", err)
	}
	spec = silo.RunnerSpec{Name: "r1", Provider: silo.ProviderAzure, ResourceGroup: testSPSecret, ServicePrincipalSecret: testSPSecret}
	if _, err := Bundle(&spec, testConfig(false)); err == nil {
		t.Fatal("Bundle returned a bundle with the service principal's secret in it")
	}
}

func TestWriteZipRoundTrip(t *testing.T) {
	for i, c := range bundleCases {
		b := bundleFor(t, i)
		var buf, again bytes.Buffer
		if err := b.WriteZip(&buf); err != nil {
			t.Fatal(err)
		}
		b.WriteZip(&again)
		if !bytes.Equal(buf.Bytes(), again.Bytes()) {
			t.Errorf("%s: zipping twice gives different bytes", c.name)
		}
		zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		var got []File
		for _, zf := range zr.File {
			r, err := zf.Open()
			if err != nil {
				t.Fatal(err)
			}
			var data bytes.Buffer
			data.ReadFrom(r)
			r.Close()
			got = append(got, File{Name: zf.Name, Data: data.Bytes()})
		}
		if diff := cmp.Diff(b.Files, got); diff != "" {
			t.Errorf("%s: zip round trip (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestBundleEmptyOptionalFields(t *testing.T) {
	// Specs as thin as validation could let through must not panic, and
	// must give a bundle or a *silo.Error.
	for _, spec := range []silo.RunnerSpec{
		{Name: "r1", Provider: silo.ProviderAWS},
		{Name: "r1", Provider: silo.ProviderAWS, VPCCIDR: "10.1.0.0/16"},
		{Name: "r1", Provider: silo.ProviderAWS, VPCID: "vpc-1"},
		{Name: "r1", Provider: silo.ProviderAWS, VPCCIDR: "not a cidr"},
		{Name: "r1", Provider: silo.ProviderAWS, VCPU: 1000},
		{Name: "r1", Provider: silo.ProviderAzure},
		{Name: "Not_Valid_For_Azure_Storage", Provider: silo.ProviderAzure},
		{Name: "r1", Provider: silo.ProviderLocal},
		{Name: "r1", Provider: "gcp"},
		{},
	} {
		_, err := Bundle(&spec, BootstrapConfig{Workspace: "w"})
		if err != nil && silo.ErrorCode(err) == silo.EINTERNAL {
			t.Errorf("%+v: %v, want a *silo.Error", spec, err)
		}
	}
	if _, err := Bundle(&silo.RunnerSpec{Name: "r1", Provider: silo.ProviderAWS}, BootstrapConfig{}); err == nil {
		t.Error("aws runner without storage path or workspace: no error")
	}
	if _, err := Bundle(nil, BootstrapConfig{}); err == nil {
		t.Error("nil spec: no error")
	}
}

func TestInstanceType(t *testing.T) {
	for _, c := range []struct {
		vcpu, mem int
		want      string
	}{
		{1, 1, "m6i.large"}, {2, 16, "r6i.large"}, {4, 32, "r6i.xlarge"}, {8, 32, "m6i.2xlarge"},
		{8, 33, "r6i.2xlarge"}, {16, 64, "m6i.4xlarge"}, {3, 100, "r6i.4xlarge"}, {128, 1024, "r6i.32xlarge"},
	} {
		if got, err := InstanceType(c.vcpu, c.mem); got != c.want || err != nil {
			t.Errorf("InstanceType(%d, %d) = %q, %v; want %q", c.vcpu, c.mem, got, err, c.want)
		}
	}
	if _, err := InstanceType(129, 1); err == nil {
		t.Error("InstanceType(129, 1): no error")
	}
}

func TestStorageNames(t *testing.T) {
	if got := AzureStorageAccount("lab-3"); got != "lab3storage" {
		t.Errorf("AzureStorageAccount(lab-3) = %q", got)
	}
	if got := AzureStorageAccount("a-very-long-runner-name"); got != "" {
		t.Errorf("AzureStorageAccount of a too long name = %q, want empty", got)
	}
	got, err := StoragePath(&silo.RunnerSpec{Name: "r1", Provider: silo.ProviderAWS}, "acme")
	if got != "s3://acme-r1.silo" || err != nil {
		t.Errorf("default aws storage path = %q, %v", got, err)
	}
	if b, p, err := S3Bucket("s3://acme-r1.silo/runs"); b != "acme-r1.silo" || p != "runs" || err != nil {
		t.Errorf("S3Bucket = %q, %q, %v", b, p, err)
	}
	if _, _, err := S3Bucket("file:///x"); err == nil {
		t.Error("S3Bucket(file:///x): no error")
	}
}

func TestStorageReadyReferencesBucket(t *testing.T) {
	cfg := testConfig(false)
	cfg.StorageReady = true
	b, err := Bundle(&silo.RunnerSpec{Name: "r1", Provider: silo.ProviderAWS}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct{ Parameters map[string]map[string]any }
	if err := json.Unmarshal(b.File(CloudFormationFile), &tmpl); err != nil {
		t.Fatal(err)
	}
	if got := tmpl.Parameters["CreateBucket"]["Default"]; got != "false" {
		t.Errorf("CreateBucket default = %v, want false once Silo created the bucket", got)
	}
	if !bytes.Contains(b.File(ReadmeFile), []byte("| CreateBucket | false |")) {
		t.Error("README does not show CreateBucket's default as false")
	}
}

// TestBundleServerURL: a cloud runner deployed from a bundle dials the URL
// in it from another network, so a loopback address (what a server without
// --public-url sees when fetched on its own machine) is refused with a way
// out; a local runner may use one. The README calls the connection HTTPS
// only when it is.
func TestBundleServerURL(t *testing.T) {
	aws := bundleCases[0].spec
	local := silo.RunnerSpec{Name: "laptop", Provider: silo.ProviderLocal, StoragePath: "file:///srv/data"}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "https://[::1]:8443", "http://0.0.0.0:8080", "http://169.254.10.1", "", "ftp://silo.example.org", "https://silo.example.org/?x=1"} {
		cfg := testConfig(false)
		cfg.ServerURL = u
		_, err := Bundle(&aws, cfg)
		if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "--public-url") && !strings.Contains(err.Error(), "http:// or https://") {
			t.Errorf("aws bundle with server URL %q: %v, want a refusal that says how to give the server's URL", u, err)
		}
		if e, ok := err.(*silo.Error); ok && e.Field != "server_url" {
			t.Errorf("server URL %q: field %q, want server_url", u, e.Field)
		}
	}
	cfg := testConfig(false)
	cfg.ServerURL = "http://127.0.0.1:8080"
	if _, err := Bundle(&local, cfg); err != nil {
		t.Errorf("a local runner on this machine may dial loopback: %v", err)
	}
	cfg.ServerURL = "http://silo.internal.example:8080"
	b, err := Bundle(&aws, cfg)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b.File(ReadmeFile))
	if !strings.Contains(readme, "over plain HTTP (not encrypted") || strings.Contains(readme, "over HTTPS") {
		t.Errorf("an http:// server URL is not HTTPS, and the README must not say it is:\n%s", readme[:min(len(readme), 600)])
	}
	cfg.ServerURL = "https://silo.example.org"
	b, _ = Bundle(&aws, cfg)
	if !strings.Contains(string(b.File(ReadmeFile)), "dials out, over HTTPS, to https://silo.example.org") {
		t.Errorf("an https:// server URL: README does not say so")
	}
}
