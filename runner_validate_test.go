package silo_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo"
)

const (
	testWorkspace = "acme"
	// secretMarker is set as every secret in TestRunnerSpecSecretsNeverInMessages.
	secretMarker = "Zq~SECRET-MARKER-7f3a"
)

func awsRunner() silo.RunnerSpec {
	return silo.RunnerSpec{
		Name:               "runner1",
		Provider:           silo.ProviderAWS,
		ProvisionerRoleARN: "arn:aws:iam::123456789012:role/silo-provisioner",
		RuntimeRoleARN:     "arn:aws:iam::123456789012:role/silo/runtime",
		Region:             "eu-west-1",
	}
}

func azureRunner() silo.RunnerSpec {
	return silo.RunnerSpec{
		Name:                          "runner1",
		Provider:                      silo.ProviderAzure,
		Region:                        "westeurope",
		ResourceGroup:                 "silo-runners",
		ServicePrincipalID:            "11111111-2222-3333-4444-555555555555",
		RuntimeServicePrincipalID:     "11111111-2222-3333-4444-666666666666",
		SubscriptionID:                "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
		TenantID:                      "ffffffff-0000-1111-2222-333333333333",
		ServicePrincipalSecret:        "sp-secret-value",
		RuntimeServicePrincipalSecret: "rt-secret-value",
	}
}

func localRunner() silo.RunnerSpec {
	return silo.RunnerSpec{
		Name:        "runner1",
		Provider:    silo.ProviderLocal,
		StoragePath: "file:///var/lib/silo/runner1",
	}
}

// existingVPC fills in a complete existing-VPC setting.
func existingVPC(s *silo.RunnerSpec) {
	s.VPCID = "vpc-0a1b2c3d4e5f67890"
	s.PublicSubnets = []string{"subnet-0a1b2c3d", "subnet-0a1b2c3d4e5f67891"}
	s.PrivateSubnets = []string{"subnet-1a2b3c4d"}
	s.ClientSecurityGroup = "sg-0a1b2c3d4e5f67890"
	s.ServerSecurityGroup = "sg-1a2b3c4d"
}

// newVPC fills in a complete new-VPC setting.
func newVPC(s *silo.RunnerSpec) {
	s.VPCCIDR = "10.0.0.0/16"
	s.PrivateSubnetCIDR = "10.0.0.0/17"
	s.PublicSubnetCIDR = "10.0.128.0/17"
	s.CIDRNewbits = 2
}

type runnerRow struct {
	name      string
	base      func() silo.RunnerSpec
	workspace string // default testWorkspace
	mut       func(*silo.RunnerSpec)
	// field and msg: some error of ValidateAll is about field and contains
	// msg. An empty field means the spec is valid.
	field, msg string
}

func runnerRows() []runnerRow {
	aws, azure, local := awsRunner, azureRunner, localRunner
	long := func(n int) string { return strings.Repeat("a", n) }
	rows := []runnerRow{
		{name: "aws baseline", base: aws},
		{name: "azure baseline", base: azure},
		{name: "local baseline", base: local},

		// Name.
		{name: "name empty", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "" }, field: "name", msg: "runner name is required"},
		{name: "name 2 chars", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "ab" }, field: "name", msg: `"ab" is 2 characters: use 3–32`},
		{name: "name 3 chars", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "a-1" }},
		{name: "name 32 chars", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = long(32) }},
		{name: "name 33 chars", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = long(33) }, field: "name", msg: "is 33 characters"},
		{name: "name uppercase", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "Runner1" }, field: "name", msg: `may contain only lowercase letters, digits and dashes: use 3–32 lowercase letters, digits or single dashes, starting with a letter and ending with a letter or digit (the name is used in storage names) (e.g. "runner1")`},
		{name: "name underscore", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "gpu_runner" }, field: "name", msg: `"gpu_runner" may contain only lowercase letters, digits and dashes`},
		{name: "name underscore suggestion", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "gpu_runner" }, field: "name", msg: `(e.g. "gpu-runner")`},
		{name: "name starts with digit", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "1runner" }, field: "name", msg: "must start with a letter"},
		{name: "name starts with dash", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "-runner" }, field: "name", msg: "must start with a letter"},
		{name: "name ends with dash", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "runner-" }, field: "name", msg: "must end with a letter or digit"},
		{name: "name double dash", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "run--ner" }, field: "name", msg: `must not contain "--"`},
		{name: "name trimmed", base: aws, mut: func(s *silo.RunnerSpec) { s.Name = "  runner1\t" }},

		// Provider.
		{name: "provider empty", base: aws, mut: func(s *silo.RunnerSpec) { s.Provider = "" }, field: "provider", msg: "provider is required: use one of local, aws, azure"},
		{name: "provider unknown", base: aws, mut: func(s *silo.RunnerSpec) { s.Provider = "gcp" }, field: "provider", msg: `unknown provider "gcp"`},
		{name: "provider case-insensitive", base: aws, mut: func(s *silo.RunnerSpec) { s.Provider = " AWS " }},

		// Resources.
		{name: "vcpu 1", base: aws, mut: func(s *silo.RunnerSpec) { s.VCPU = 1 }},
		{name: "vcpu 256", base: azure, mut: func(s *silo.RunnerSpec) { s.VCPU = 256 }},
		{name: "vcpu 257", base: aws, mut: func(s *silo.RunnerSpec) { s.VCPU = 257 }, field: "vcpu", msg: "vcpu 257 is out of range: use 1–256, or leave it empty for the default, 8"},
		{name: "vcpu negative", base: local, mut: func(s *silo.RunnerSpec) { s.VCPU = -1 }, field: "vcpu", msg: "default, 2"},
		{name: "vcpu azure too many", base: azure, mut: func(s *silo.RunnerSpec) { s.VCPU = 1000 }, field: "vcpu", msg: "default, 4"},
		{name: "memory_gb 1", base: local, mut: func(s *silo.RunnerSpec) { s.MemoryGB = 1 }},
		{name: "memory_gb 4096", base: aws, mut: func(s *silo.RunnerSpec) { s.MemoryGB = 4096 }},
		{name: "memory_gb 4097", base: aws, mut: func(s *silo.RunnerSpec) { s.MemoryGB = 4097 }, field: "memory_gb", msg: "use 1–4096 GB"},
		{name: "memory_gb negative", base: local, mut: func(s *silo.RunnerSpec) { s.MemoryGB = -4 }, field: "memory_gb", msg: "memory_gb -4 is out of range"},
		{name: "memory_mb 512", base: azure, mut: func(s *silo.RunnerSpec) { s.MemoryMB = 512 }},
		{name: "memory_mb 511", base: azure, mut: func(s *silo.RunnerSpec) { s.MemoryMB = 511 }, field: "memory_mb", msg: "use 512–4194304 MB, or leave it empty for the default, 16384"},
		{name: "memory_mb max", base: azure, mut: func(s *silo.RunnerSpec) { s.MemoryMB = 4194304 }},
		{name: "memory_mb max+1", base: azure, mut: func(s *silo.RunnerSpec) { s.MemoryMB = 4194305 }, field: "memory_mb", msg: "out of range"},

		// Fields of other providers.
		{name: "aws memory_mb", base: aws, mut: func(s *silo.RunnerSpec) { s.MemoryMB = 4096 }, field: "memory_mb", msg: "memory_mb applies only to azure runners, not aws ones: remove it (aws and local runners take memory_gb)"},
		{name: "azure memory_gb", base: azure, mut: func(s *silo.RunnerSpec) { s.MemoryGB = 16 }, field: "memory_gb", msg: "memory_gb applies only to aws and local runners, not azure ones: remove it (azure runners take memory_mb)"},
		{name: "local region", base: local, mut: func(s *silo.RunnerSpec) { s.Region = "eu-west-1" }, field: "region", msg: "region applies only to aws and azure runners"},
		{name: "local container registry", base: local, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://images/x" }, field: "container_registry_url", msg: "applies only to aws and azure runners"},
		{name: "local role arn", base: local, mut: func(s *silo.RunnerSpec) { s.ProvisionerRoleARN = awsRunner().ProvisionerRoleARN }, field: "provisioner_role_arn", msg: "applies only to aws runners, not local ones"},
		{name: "aws resource_group", base: aws, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "rg" }, field: "resource_group", msg: "resource_group applies only to azure runners"},
		{name: "aws subnet_id", base: aws, mut: func(s *silo.RunnerSpec) { s.SubnetID = "x" }, field: "subnet_id", msg: "subnet_id applies only to azure runners"},
		{name: "aws tenant_id", base: aws, mut: func(s *silo.RunnerSpec) { s.TenantID = azureRunner().TenantID }, field: "tenant_id", msg: "applies only to azure"},
		{name: "aws secret", base: aws, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = "x" }, field: "service_principal_secret", msg: "service_principal_secret applies only to azure runners"},
		{name: "local runtime secret", base: local, mut: func(s *silo.RunnerSpec) { s.RuntimeServicePrincipalSecret = "x" }, field: "runtime_service_principal_secret", msg: "applies only to azure runners"},
		{name: "azure vpc_id", base: azure, mut: func(s *silo.RunnerSpec) { s.VPCID = "vpc-0a1b2c3d" }, field: "vpc_id", msg: "vpc_id applies only to aws runners, not azure ones"},
		{name: "azure egress cidrs", base: azure, mut: func(s *silo.RunnerSpec) { s.EgressAllowedCIDRs = []string{"10.0.0.0/8"} }, field: "egress_allowed_cidrs", msg: "applies only to aws runners"},
		{name: "azure cidr_newbits", base: azure, mut: func(s *silo.RunnerSpec) { s.CIDRNewbits = 2 }, field: "cidr_newbits", msg: "applies only to aws runners"},

		// AWS roles.
		{name: "provisioner role required", base: aws, mut: func(s *silo.RunnerSpec) { s.ProvisionerRoleARN = "" }, field: "provisioner_role_arn", msg: "provisioner_role_arn is required: give the ARN of the IAM role Silo assumes to provision the runner"},
		{name: "runtime role required", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = " " }, field: "runtime_role_arn", msg: "e.g. arn:aws:iam::123456789012:role/silo-runtime"},
		{name: "role not an arn", base: aws, mut: func(s *silo.RunnerSpec) { s.ProvisionerRoleARN = "silo-provisioner" }, field: "provisioner_role_arn", msg: `"silo-provisioner" is not a valid IAM role ARN: it is not an ARN`},
		{name: "role account short", base: aws, mut: func(s *silo.RunnerSpec) { s.ProvisionerRoleARN = "arn:aws:iam::12345:role/x" }, field: "provisioner_role_arn", msg: `account ID "12345" must be 12 digits`},
		{name: "role partition", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws-eu:iam::123456789012:role/x" }, field: "runtime_role_arn", msg: `partition "aws-eu" is not one of aws, aws-us-gov, aws-cn`},
		{name: "role other service", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:sts::123456789012:assumed-role/x/y" }, field: "runtime_role_arn", msg: `service "sts", not iam`},
		{name: "role with region", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam:eu-west-1:123456789012:role/x" }, field: "runtime_role_arn", msg: `IAM ARNs have no region (remove "eu-west-1")`},
		{name: "role is a user", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:user/bob" }, field: "runtime_role_arn", msg: `it names "user/bob", not a role`},
		{name: "role name missing", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/" }, field: "runtime_role_arn", msg: "role name is missing"},
		{name: "role name bad char", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/silo runtime" }, field: "runtime_role_arn", msg: `role name "silo runtime" may contain only letters, digits and + = , . @ _ -`},
		{name: "role name 64", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/" + long(64) }},
		{name: "role name 65", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/" + long(65) }, field: "runtime_role_arn", msg: "65 characters; IAM allows at most 64"},
		{name: "role name all chars", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/a+b=c,d.e@f_g-H9" }},
		{name: "role path", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/team/ml/silo-runtime" }},
		{name: "role path empty segment", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/team//x" }, field: "runtime_role_arn", msg: "empty segment (//)"},
		{name: "role path bad segment", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/te am/x" }, field: "runtime_role_arn", msg: `path segment "te am"`},
		{name: "role path 512", base: aws, mut: func(s *silo.RunnerSpec) {
			s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/" + strings.Repeat("p/", 255) + "x"
		}},
		{name: "role path too long", base: aws, mut: func(s *silo.RunnerSpec) {
			s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/" + strings.Repeat("p/", 256) + "x"
		}, field: "runtime_role_arn", msg: "role path is 513 characters; IAM allows at most 512"},
		{name: "govcloud", base: aws, mut: func(s *silo.RunnerSpec) {
			s.ProvisionerRoleARN = "arn:aws-us-gov:iam::123456789012:role/p"
			s.RuntimeRoleARN = "arn:aws-us-gov:iam::123456789012:role/r"
			s.Region = "us-gov-west-1"
		}},
		{name: "china", base: aws, mut: func(s *silo.RunnerSpec) {
			s.ProvisionerRoleARN = "arn:aws-cn:iam::123456789012:role/p"
			s.RuntimeRoleARN = "arn:aws-cn:iam::123456789012:role/r"
			s.Region = "cn-northwest-1"
		}},
		{name: "roles in different partitions", base: aws, mut: func(s *silo.RunnerSpec) { s.RuntimeRoleARN = "arn:aws-cn:iam::123456789012:role/r" }, field: "runtime_role_arn", msg: "runtime_role_arn is in partition aws-cn but provisioner_role_arn is in aws"},
		{name: "region in other partition", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "cn-north-1" }, field: "region", msg: `region "cn-north-1" is in partition aws-cn but provisioner_role_arn is in partition aws`},

		// AWS region.
		{name: "aws region required", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "" }, field: "region", msg: "region is required for aws runners: use a region code such as us-east-1, eu-west-1 or ap-southeast-2"},
		{name: "aws region unknown", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "eu-west-9" }, field: "region", msg: `region "eu-west-9" is not an AWS region code: use a region code such as`},
		{name: "aws region display name", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "US East (N. Virginia)" }, field: "region", msg: "aws ec2 describe-regions"},
		{name: "aws region typo", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "us_east_1" }, field: "region", msg: `(did you mean "us-east-1"?)`},
		{name: "aws availability zone", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "eu-west-1b" }, field: "region", msg: `"eu-west-1b" is an availability zone, not a region: use its region, "eu-west-1"`},
		{name: "aws region azure name", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "westeurope" }, field: "region", msg: "not an AWS region code"},
		{name: "aws region uppercase", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "EU-WEST-1" }},
		{name: "aws region mx-central-1", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "mx-central-1" }},
		{name: "aws region ap-southeast-7", base: aws, mut: func(s *silo.RunnerSpec) { s.Region = "ap-southeast-7" }},

		// AWS storage.
		{name: "s3 custom bucket", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my-data.silo" }},
		{name: "s3 custom bucket with prefix", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my-data.silo/runs/2026" }},
		{name: "s3 bucket not .silo", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my-data" }, field: "storage_path", msg: `bucket "my-data" must end in ".silo" (e.g. s3://my-data.silo): Silo only uses buckets named for it`},
		{name: "s3 bucket .silo inside", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my.silo.data/x" }, field: "storage_path", msg: `bucket "my.silo.data" must end in ".silo"`},
		{name: "s3 other scheme", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "https://my-data.silo.s3.amazonaws.com" }, field: "storage_path", msg: "must be an S3 URL, s3://<bucket>.silo optionally followed by /<prefix>"},
		{name: "s3 no bucket", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3:///x" }, field: "storage_path", msg: "must be an S3 URL"},
		{name: "s3 uppercase bucket", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://My-Data.silo" }, field: "storage_path", msg: `bucket "My-Data.silo" is not a valid S3 bucket name: it must be lowercase`},
		{name: "s3 bucket underscore", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my_data.silo" }, field: "storage_path", msg: `not '_'`},
		{name: "s3 bucket 63", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://" + long(58) + ".silo" }},
		{name: "s3 bucket 64", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://" + long(59) + ".silo" }, field: "storage_path", msg: "it must be 3–63 characters long (it has 64)"},
		{name: "s3 bucket starts with dash", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://-data.silo" }, field: "storage_path", msg: "must start and end with a letter or digit"},
		{name: "s3 bucket two dots", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my..data.silo" }, field: "storage_path", msg: "two dots in a row"},
		{name: "s3 bucket dot dash", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://my-.data.silo" }, field: "storage_path", msg: "dot next to a hyphen"},
		{name: "s3 bucket reserved prefix", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://xn--data.silo" }, field: "storage_path", msg: `must not start with "xn--", which AWS reserves`},
		{name: "s3 prefix empty segment", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://data.silo/a//b" }, field: "storage_path", msg: `prefix "a//b" is not valid: it must not contain empty segments`},
		{name: "s3 prefix dot-dot", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://data.silo/a/../b" }, field: "storage_path", msg: "must not contain . or .. segments"},
		{name: "s3 prefix bad char", base: aws, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://data.silo/a b" }, field: "storage_path", msg: `not ' '`},
		{name: "default bucket too long", base: aws, workspace: long(32), mut: func(s *silo.RunnerSpec) { s.Name = "r" + long(31) }, field: "storage_path", msg: "is not a valid S3 bucket name: it must be 3–63 characters long (it has 70); give storage_path explicitly, e.g. s3://r" + long(31) + ".silo, or choose a shorter runner name"},
		{name: "default bucket just fits", base: aws, workspace: long(25), mut: func(s *silo.RunnerSpec) { s.Name = long(32) }},
		{name: "long names with explicit bucket", base: aws, workspace: long(32), mut: func(s *silo.RunnerSpec) { s.Name = long(32); s.StoragePath = "s3://data.silo" }},

		// AWS container registry.
		{name: "aws registry", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://acme-images/silo/runner-1.4.tar" }},
		{name: "aws registry no image", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://acme-images" }, field: "container_registry_url", msg: `"s3://acme-images" must be s3://<bucket>/<image>`},
		{name: "aws registry docker", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "docker.io/silo/runner" }, field: "container_registry_url", msg: "must be s3://<bucket>/<image>"},
		{name: "aws registry bad bucket", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://Images/x.tar" }, field: "container_registry_url", msg: `bucket "Images" is not a valid S3 bucket name`},
		{name: "aws registry ip bucket", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://192.168.1.10/x.tar" }, field: "container_registry_url", msg: "formatted like an IP address"},
		{name: "aws registry bad image", base: aws, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "s3://images/x//y" }, field: "container_registry_url", msg: `image "x//y" is not a valid S3 key`},

		// Existing VPC.
		{name: "existing vpc", base: aws, mut: existingVPC},
		{name: "existing vpc ids normalised", base: aws, mut: func(s *silo.RunnerSpec) {
			existingVPC(s)
			s.VPCID = " VPC-0A1B2C3D "
			s.PublicSubnets = []string{"", " SUBNET-0A1B2C3D "}
		}},
		{name: "vpc_id bad", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.VPCID = "vpc-123" }, field: "vpc_id", msg: `vpc_id "vpc-123" is not a VPC ID: use vpc- followed by 8 or 17 hexadecimal digits`},
		{name: "vpc_id not hex", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.VPCID = "vpc-0a1b2c3g" }, field: "vpc_id", msg: "not a VPC ID"},
		{name: "public subnet bad", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.PublicSubnets = []string{"subnet-xyz"} }, field: "public_subnets", msg: `public_subnets entry "subnet-xyz" is not a subnet ID`},
		{name: "private subnet bad", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.PrivateSubnets = []string{"sg-1a2b3c4d"} }, field: "private_subnets", msg: `"sg-1a2b3c4d" is not a subnet ID`},
		{name: "public subnet duplicate", base: aws, mut: func(s *silo.RunnerSpec) {
			existingVPC(s)
			s.PublicSubnets = []string{"subnet-0a1b2c3d", "subnet-0A1B2C3D"}
		}, field: "public_subnets", msg: `lists subnet "subnet-0a1b2c3d" twice`},
		{name: "subnet public and private", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.PrivateSubnets = []string{"subnet-0a1b2c3d"} }, field: "private_subnets", msg: `subnet "subnet-0a1b2c3d" is listed in both public_subnets and private_subnets`},
		{name: "too many subnets", base: aws, mut: func(s *silo.RunnerSpec) {
			existingVPC(s)
			s.PublicSubnets = nil
			for i := range 33 {
				s.PublicSubnets = append(s.PublicSubnets, fmt.Sprintf("subnet-%08x", i))
			}
		}, field: "public_subnets", msg: "give at most 32"},
		{name: "client sg bad", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.ClientSecurityGroup = "sg-zz" }, field: "client_security_group", msg: `client_security_group "sg-zz" is not a security group ID: use sg- followed by 8 or 17 hexadecimal digits`},
		{name: "server sg bad", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.ServerSecurityGroup = "group-1" }, field: "server_security_group", msg: "not a security group ID"},
		{name: "existing vpc needs vpc_id", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.VPCID = "" }, field: "vpc_id", msg: "vpc_id is required when using an existing VPC (you gave public_subnets, private_subnets, client_security_group, server_security_group)"},
		{name: "existing vpc needs private subnets", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.PrivateSubnets = []string{" "} }, field: "private_subnets", msg: "private_subnets is required when using an existing VPC (you gave vpc_id, public_subnets, client_security_group, server_security_group): give at least one subnet ID"},
		{name: "existing vpc needs server sg", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); s.ServerSecurityGroup = "" }, field: "server_security_group", msg: "server_security_group is required when using an existing VPC"},
		{name: "existing and new vpc", base: aws, mut: func(s *silo.RunnerSpec) { existingVPC(s); newVPC(s) }, field: "vpc_cidr", msg: "vpc_cidr, private_subnet_cidr, public_subnet_cidr, cidr_newbits cannot be combined with vpc_id, public_subnets, private_subnets, client_security_group, server_security_group: a runner uses either an existing VPC"},
		{name: "vpc_id and vpc_cidr", base: aws, mut: func(s *silo.RunnerSpec) { s.VPCID = "vpc-0a1b2c3d"; s.VPCCIDR = "10.0.0.0/16" }, field: "vpc_cidr", msg: "not both"},

		// New VPC.
		{name: "new vpc", base: aws, mut: newVPC},
		{name: "new vpc /16 subnets newbits 12 too many", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = 12 }, field: "cidr_newbits", msg: "cidr_newbits 12 would split private_subnet_cidr 10.0.0.0/17 into /29 subnets, smaller than AWS's minimum /28: use at most 11"},
		{name: "new vpc newbits 11 just fits", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = 11 }},
		{name: "new vpc small, /28 subnets", base: aws, mut: func(s *silo.RunnerSpec) {
			s.VPCCIDR, s.PrivateSubnetCIDR, s.PublicSubnetCIDR, s.CIDRNewbits = "10.0.0.0/24", "10.0.0.0/26", "10.0.0.64/26", 2
		}},
		{name: "new vpc newbits 3 too many", base: aws, mut: func(s *silo.RunnerSpec) {
			s.VPCCIDR, s.PrivateSubnetCIDR, s.PublicSubnetCIDR, s.CIDRNewbits = "10.0.0.0/24", "10.0.0.0/26", "10.0.0.64/26", 3
		}, field: "cidr_newbits", msg: "into /29 subnets, smaller than AWS's minimum /28: use at most 2"},
		{name: "subnet already /28", base: aws, mut: func(s *silo.RunnerSpec) {
			s.VPCCIDR, s.PrivateSubnetCIDR, s.PublicSubnetCIDR, s.CIDRNewbits = "10.0.0.0/24", "10.0.0.0/28", "10.0.0.64/26", 1
		}, field: "cidr_newbits", msg: "private_subnet_cidr 10.0.0.0/28 is already a /28, AWS's smallest subnet"},
		{name: "newbits 0 with cidrs", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = 0 }, field: "cidr_newbits", msg: "cidr_newbits is required when Silo creates a new VPC"},
		{name: "newbits 13", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = 13 }, field: "cidr_newbits", msg: "cidr_newbits 13 must be between 1 and 12"},
		{name: "newbits negative", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = -2 }, field: "cidr_newbits", msg: "must be between 1 and 12"},
		{name: "newbits 1", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.CIDRNewbits = 1 }},
		{name: "vpc /15", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "10.0.0.0/15" }, field: "vpc_cidr", msg: "vpc_cidr 10.0.0.0/15 is a /15: AWS VPC blocks must be between /16 and /28"},
		{name: "vpc /29", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "10.0.0.0/29" }, field: "vpc_cidr", msg: "is a /29"},
		{name: "vpc host bits", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "10.0.0.1/16" }, field: "vpc_cidr", msg: `vpc_cidr "10.0.0.1/16" is not in canonical form (host bits must be zero): use 10.0.0.0/16`},
		{name: "vpc address", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "10.0.3.7" }, field: "vpc_cidr", msg: "is an address, not a CIDR block: add the prefix length, e.g. 10.0.3.0/24"},
		{name: "vpc ipv6", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "fd00::/48" }, field: "vpc_cidr", msg: "is not IPv4"},
		{name: "vpc garbage", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "10.0.0.0/33" }, field: "vpc_cidr", msg: "is not a CIDR block: use an IPv4 block in the form a.b.c.d/n"},
		{name: "private subnet host bits", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PrivateSubnetCIDR = "10.0.0.5/17" }, field: "private_subnet_cidr", msg: "use 10.0.0.0/17"},
		{name: "public subnet not ipv4", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PublicSubnetCIDR = "::ffff:10.0.128.0/113" }, field: "public_subnet_cidr", msg: "is not IPv4"},
		{name: "subnet outside vpc", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PublicSubnetCIDR = "10.1.0.0/24" }, field: "public_subnet_cidr", msg: "public_subnet_cidr 10.1.0.0/24 is not inside vpc_cidr 10.0.0.0/16"},
		{name: "subnet larger than vpc", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PrivateSubnetCIDR = "10.0.0.0/15" }, field: "private_subnet_cidr", msg: "is not inside vpc_cidr"},
		{name: "subnet /29", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PrivateSubnetCIDR = "10.0.0.0/29" }, field: "private_subnet_cidr", msg: "is a /29: AWS subnets must be /28 or larger"},
		{name: "subnets overlap", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PublicSubnetCIDR = "10.0.0.0/18" }, field: "public_subnet_cidr", msg: "public_subnet_cidr 10.0.0.0/18 overlaps private_subnet_cidr 10.0.0.0/17: choose two separate blocks inside vpc_cidr, e.g. 10.0.0.0/17 and 10.0.128.0/17"},
		{name: "subnets equal", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.PublicSubnetCIDR = s.PrivateSubnetCIDR }, field: "public_subnet_cidr", msg: "overlaps"},
		{name: "new vpc needs subnets", base: aws, mut: func(s *silo.RunnerSpec) { s.VPCCIDR = "10.0.0.0/16" }, field: "private_subnet_cidr", msg: "private_subnet_cidr is required when Silo creates a new VPC (you gave vpc_cidr)"},
		{name: "new vpc needs vpc_cidr", base: aws, mut: func(s *silo.RunnerSpec) { newVPC(s); s.VPCCIDR = "" }, field: "vpc_cidr", msg: "vpc_cidr is required when Silo creates a new VPC"},

		// KMS.
		{name: "kms key id", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab" }},
		{name: "kms key id uppercase", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "1234ABCD-12AB-34CD-56EF-1234567890AB" }},
		{name: "kms multi-region key id", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSSecretKeyID = "mrk-1234abcd12ab34cd56ef1234567890ab" }},
		{name: "kms alias", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "alias/silo/data_key-1" }},
		{name: "kms key arn", base: aws, mut: func(s *silo.RunnerSpec) {
			s.KMSDataKeyID = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		}},
		{name: "kms alias arn", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSSecretKeyID = "arn:aws:kms:eu-west-1:123456789012:alias/silo-secrets" }},
		{name: "kms key other region", base: aws, mut: func(s *silo.RunnerSpec) {
			s.KMSDataKeyID = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		}, field: "kms_data_key_id", msg: "is in region us-east-1 but the runner is in eu-west-1: KMS keys are regional, use a key in eu-west-1"},
		{name: "kms key arn bad id", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "arn:aws:kms:eu-west-1:123456789012:key/my-key" }, field: "kms_data_key_id", msg: `key ID "my-key" is not a key ID`},
		{name: "kms arn bad region", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "arn:aws:kms:mars-1:123456789012:alias/x" }, field: "kms_data_key_id", msg: `"mars-1" is not an AWS region code`},
		{name: "kms arn partition", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "arn:aws:kms:cn-north-1:123456789012:alias/x" }, field: "kms_data_key_id", msg: "region cn-north-1 is not in partition aws"},
		{name: "kms arn other service", base: aws, mut: func(s *silo.RunnerSpec) {
			s.KMSDataKeyID = "arn:aws:s3:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		}, field: "kms_data_key_id", msg: `service "s3", not kms`},
		{name: "kms arn other resource", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "arn:aws:kms:eu-west-1:123456789012:grant/x" }, field: "kms_data_key_id", msg: "neither key/<key ID> nor alias/<name>"},
		{name: "kms alias empty", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "alias/" }, field: "kms_data_key_id", msg: "an alias is alias/ followed by"},
		{name: "kms alias too long", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSDataKeyID = "alias/" + long(251) }, field: "kms_data_key_id", msg: "KMS allows at most 256"},
		{name: "kms garbage", base: aws, mut: func(s *silo.RunnerSpec) { s.KMSSecretKeyID = "my-key" }, field: "kms_secret_key_id", msg: `kms_secret_key_id "my-key" is not a KMS key: it is not a key ARN, key ID or alias; use a key ARN (arn:aws:kms:<region>:<account>:key/<key ID>)`},

		// Golden AMI.
		{name: "ami 17", base: aws, mut: func(s *silo.RunnerSpec) { s.GoldenAMIID = "ami-0a1b2c3d4e5f67890" }},
		{name: "ami 8 uppercase", base: aws, mut: func(s *silo.RunnerSpec) { s.GoldenAMIID = "AMI-0A1B2C3D" }},
		{name: "ami bad", base: aws, mut: func(s *silo.RunnerSpec) { s.GoldenAMIID = "ami-12345" }, field: "golden_ami_id", msg: `golden_ami_id "ami-12345" is not an AMI ID: use ami- followed by 8 or 17 hexadecimal digits`},

		// Network exceptions.
		{name: "proxy http", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "http://proxy.example.com:3128" }},
		{name: "proxy https slash", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "HTTPS://10.0.0.5/" }},
		{name: "proxy other scheme", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "socks5://proxy:1080" }, field: "egress_proxy_url", msg: `egress_proxy_url "socks5://proxy:1080" must be an http:// or https:// URL with a host, e.g. http://proxy.example.com:3128`},
		{name: "proxy no scheme", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "proxy.example.com:3128" }, field: "egress_proxy_url", msg: "must be an http:// or https:// URL with a host"},
		{name: "proxy no host", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "http://:3128" }, field: "egress_proxy_url", msg: "has no host name"},
		{name: "proxy credentials", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "http://bob:hunter2@proxy:3128" }, field: "egress_proxy_url", msg: `"http://bob:xxxxx@proxy:3128" must not contain credentials`},
		{name: "proxy port", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "http://proxy:99999" }, field: "egress_proxy_url", msg: `port "99999" must be 1–65535`},
		{name: "proxy path", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressProxyURL = "http://proxy:3128/pac" }, field: "egress_proxy_url", msg: "must be only scheme, host and port"},
		{name: "egress cidrs", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressAllowedCIDRs = []string{"203.0.113.0/24", " 198.51.100.7/32", ""} }},
		{name: "egress cidr host bits", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressAllowedCIDRs = []string{"203.0.113.9/24"} }, field: "egress_allowed_cidrs", msg: `egress_allowed_cidrs entry "203.0.113.9/24" is not in canonical form (host bits must be zero): use 203.0.113.0/24`},
		{name: "egress cidr garbage", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressAllowedCIDRs = []string{"10.0.0.0/8", "example.com"} }, field: "egress_allowed_cidrs", msg: `entry "example.com" is not a CIDR block`},
		{name: "egress cidr duplicate", base: aws, mut: func(s *silo.RunnerSpec) { s.EgressAllowedCIDRs = []string{"10.0.0.0/8", "10.0.0.0/8"} }, field: "egress_allowed_cidrs", msg: "lists 10.0.0.0/8 twice"},
		{name: "egress cidrs too many", base: aws, mut: func(s *silo.RunnerSpec) {
			for i := range 51 {
				s.EgressAllowedCIDRs = append(s.EgressAllowedCIDRs, fmt.Sprintf("10.0.%d.0/24", i))
			}
		}, field: "egress_allowed_cidrs", msg: "lists 51 blocks: give at most 50"},

		// Azure region and resource group.
		{name: "azure region required", base: azure, mut: func(s *silo.RunnerSpec) { s.Region = "" }, field: "region", msg: "region is required for azure runners: use a region name such as westeurope, eastus or uksouth"},
		{name: "azure region unknown", base: azure, mut: func(s *silo.RunnerSpec) { s.Region = "narnia" }, field: "region", msg: `region "narnia" is not an Azure region name: use`},
		{name: "azure region typo", base: azure, mut: func(s *silo.RunnerSpec) { s.Region = "west-europe" }, field: "region", msg: `(did you mean "westeurope"?)`},
		{name: "azure region aws code", base: azure, mut: func(s *silo.RunnerSpec) { s.Region = "eu-west-1" }, field: "region", msg: "az account list-locations"},
		{name: "azure region display name", base: azure, mut: func(s *silo.RunnerSpec) { s.Region = "Sweden Central" }},
		{name: "resource group required", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "" }, field: "resource_group", msg: "resource_group is required for azure runners"},
		{name: "resource group 90", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = long(90) }},
		{name: "resource group 91", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = long(91) }, field: "resource_group", msg: "it must be 1–90 characters (it has 91)"},
		{name: "resource group 90 runes", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = strings.Repeat("é", 90) }},
		{name: "resource group unicode", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "Grüne_(prod)-Ωmega.1" }},
		{name: "resource group period", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "silo." }, field: "resource_group", msg: `resource_group "silo." is not a valid Azure resource group name: it must not end with a period`},
		{name: "resource group slash", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "silo/rg" }, field: "resource_group", msg: `not '/'`},
		{name: "resource group invalid utf8", base: azure, mut: func(s *silo.RunnerSpec) { s.ResourceGroup = "rg\xff" }, field: "resource_group", msg: "not valid UTF-8"},

		// Azure IDs.
		{name: "guids uppercase", base: azure, mut: func(s *silo.RunnerSpec) { s.TenantID = "FFFFFFFF-0000-1111-2222-333333333333" }},
		{name: "service principal id required", base: azure, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalID = "" }, field: "service_principal_id", msg: "service_principal_id is required for azure runners: give the application (client) ID"},
		{name: "service principal id bad", base: azure, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalID = "silo-provisioner" }, field: "service_principal_id", msg: `service_principal_id "silo-provisioner" is not a GUID: use the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`},
		{name: "runtime principal id bad", base: azure, mut: func(s *silo.RunnerSpec) { s.RuntimeServicePrincipalID = "{11111111-2222-3333-4444-666666666666}" }, field: "runtime_service_principal_id", msg: "is not a GUID"},
		{name: "subscription id bad", base: azure, mut: func(s *silo.RunnerSpec) { s.SubscriptionID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeee" }, field: "subscription_id", msg: "is not a GUID"},
		{name: "subscription id required", base: azure, mut: func(s *silo.RunnerSpec) { s.SubscriptionID = "" }, field: "subscription_id", msg: "az account show --query id"},
		{name: "tenant id bad", base: azure, mut: func(s *silo.RunnerSpec) { s.TenantID = "ffffffff-0000-1111-2222-33333333333g" }, field: "tenant_id", msg: "is not a GUID"},
		{name: "tenant id zero", base: azure, mut: func(s *silo.RunnerSpec) { s.TenantID = "00000000-0000-0000-0000-000000000000" }, field: "tenant_id", msg: "tenant_id is the all-zero GUID, a placeholder"},

		// Azure secrets.
		{name: "secret required", base: azure, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = "" }, field: "service_principal_secret", msg: "service_principal_secret is required for azure runners: give a client secret of the service principal in service_principal_id"},
		{name: "runtime secret required", base: azure, mut: func(s *silo.RunnerSpec) { s.RuntimeServicePrincipalSecret = "  " }, field: "runtime_service_principal_secret", msg: "runtime_service_principal_secret is required"},
		{name: "secret 1024", base: azure, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = strings.Repeat("s", 1024) }},
		{name: "secret too long", base: azure, mut: func(s *silo.RunnerSpec) { s.ServicePrincipalSecret += strings.Repeat("s", 1024) }, field: "service_principal_secret", msg: "characters, more than 1024: paste only the secret's value"},
		{name: "secret with newline", base: azure, mut: func(s *silo.RunnerSpec) { s.RuntimeServicePrincipalSecret += "\nclientId=x" }, field: "runtime_service_principal_secret", msg: "contains a line break or other control character"},

		// Azure storage.
		{name: "azure storage given as derived", base: azure, mut: func(s *silo.RunnerSpec) { s.StoragePath = "runner1storage" }},
		{name: "azure storage given", base: azure, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://x.silo" }, field: "storage_path", msg: `storage_path is derived for azure runners (<name without dashes>storage, here "runner1storage") and cannot be chosen: leave it empty`},
		{name: "azure name 17", base: azure, mut: func(s *silo.RunnerSpec) { s.Name = "abcdefgh-ijklmnopq" }},
		{name: "azure name 18", base: azure, mut: func(s *silo.RunnerSpec) { s.Name = "abcdefghijklmnopqr" }, field: "name", msg: `runner name "abcdefghijklmnopqr" is too long for an azure runner: its storage account name "abcdefghijklmnopqrstorage" would be 25 characters, and Azure allows at most 24; use a name of at most 17 letters and digits (dashes don't count)`},

		// Azure container registry.
		{name: "acr", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "acmeregistry.azurecr.io/silo/runner:1.4" }},
		{name: "acr registry 5 and 50", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "acme1.azurecr.io/a" }},
		{name: "acr registry 51", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = long(51) + ".azurecr.io/a" }, field: "container_registry_url", msg: "must be 5–50 letters and digits"},
		{name: "acr uppercase host", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "ACME01.AzureCR.io/silo-runner" }},
		{name: "acr digest", base: azure, mut: func(s *silo.RunnerSpec) {
			s.ContainerRegistryURL = "acme1.azurecr.io/silo-runner@sha256:" + strings.Repeat("ab", 32)
		}},
		{name: "acr scheme", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "https://acme.azurecr.io/silo" }, field: "container_registry_url", msg: "must not include a scheme: use <registry>.azurecr.io/<image>[:tag]"},
		{name: "acr other host", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "docker.io/silo/runner" }, field: "container_registry_url", msg: `"docker.io/silo/runner" must be <registry>.azurecr.io/<image>[:tag]`},
		{name: "acr no image", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "acme.azurecr.io" }, field: "container_registry_url", msg: "must be <registry>.azurecr.io/<image>"},
		{name: "acr short registry", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "abcd.azurecr.io/x" }, field: "container_registry_url", msg: `registry name "abcd" must be 5–50 letters and digits`},
		{name: "acr registry dash", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "ac-me.azurecr.io/x" }, field: "container_registry_url", msg: "5–50 letters and digits"},
		{name: "acr bad image", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "acme1.azurecr.io/Silo:1.4" }, field: "container_registry_url", msg: `image "Silo:1.4" is not a valid image name`},
		{name: "acr bad tag", base: azure, mut: func(s *silo.RunnerSpec) { s.ContainerRegistryURL = "acme1.azurecr.io/silo:-x" }, field: "container_registry_url", msg: "not a valid image name"},

		// Azure subnet.
		{name: "subnet id", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/silo-vnet/subnets/runners"
		}},
		{name: "subnet id lowercase words", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/SUBSCRIPTIONS/AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee/resourcegroups/Net_RG(1)/providers/microsoft.network/virtualnetworks/v1/subnets/s_"
		}},
		{name: "subnet id short", base: azure, mut: func(s *silo.RunnerSpec) { s.SubnetID = "subnet-0a1b2c3d" }, field: "subnet_id", msg: `subnet_id "subnet-0a1b2c3d" is not a subnet resource ID: give the full ID, /subscriptions/<subscription ID>/resourceGroups/<resource group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>`},
		{name: "subnet id vnet only", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/silo-vnet"
		}, field: "subnet_id", msg: "is not a subnet resource ID"},
		{name: "subnet id bad subscription", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/prod/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/silo-vnet/subnets/runners"
		}, field: "subnet_id", msg: `subscription "prod" is not a GUID`},
		{name: "subnet id bad resource group", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/resourceGroups/net-rg./providers/Microsoft.Network/virtualNetworks/silo-vnet/subnets/runners"
		}, field: "subnet_id", msg: `resource group "net-rg." is not valid: it must not end with a period`},
		{name: "subnet id bad vnet", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/-vnet/subnets/runners"
		}, field: "subnet_id", msg: `virtual network name "-vnet" is not valid`},
		{name: "subnet id bad subnet", base: azure, mut: func(s *silo.RunnerSpec) {
			s.SubnetID = "/subscriptions/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/runners."
		}, field: "subnet_id", msg: `subnet name "runners." is not valid`},

		// Local storage.
		{name: "local storage required", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "" }, field: "storage_path", msg: "storage_path is required for local runners: give the runner's data root as file:///<absolute path>, e.g. file:///var/lib/silo/data"},
		{name: "local storage normalised", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = " FILE:///srv/silo/ " }},
		{name: "local storage other scheme", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "s3://data.silo" }, field: "storage_path", msg: `storage_path "s3://data.silo" must be a file:/// URL naming the runner's data root`},
		{name: "local storage bare path", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "/srv/silo" }, field: "storage_path", msg: "must be a file:/// URL"},
		{name: "local storage host", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file://server/srv/silo" }, field: "storage_path", msg: "must be file:// followed by an absolute path (three slashes in all, no host)"},
		{name: "local storage relative", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file://" }, field: "storage_path", msg: "absolute path"},
		{name: "local storage dot-dot", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file:///srv/silo/../etc" }, field: "storage_path", msg: `storage_path "file:///srv/silo/../etc" must not contain .. segments: give the resolved absolute path, e.g. file:///srv/etc`},
		{name: "local storage unclean", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file:///srv//silo/./data" }, field: "storage_path", msg: "is not a clean path: use file:///srv/silo/data"},
		{name: "local storage root", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file:///" }, field: "storage_path", msg: "is the whole file system"},
		{name: "local storage control", base: local, mut: func(s *silo.RunnerSpec) { s.StoragePath = "file:///srv/a\x00b" }, field: "storage_path", msg: "control characters"},
	}
	return rows
}

func TestRunnerSpecValidateRows(t *testing.T) {
	for _, r := range runnerRows() {
		t.Run(r.name, func(t *testing.T) {
			ws := r.workspace
			if ws == "" {
				ws = testWorkspace
			}
			spec := r.base()
			if r.mut != nil {
				r.mut(&spec)
			}
			errs := spec.ValidateAll(ws)
			checkRunnerErrors(t, errs)

			// Validate returns ValidateAll's errors as one, all of them.
			spec2 := r.base()
			if r.mut != nil {
				r.mut(&spec2)
			}
			err := spec2.Validate(ws)
			if len(errs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, ValidateAll = none", err)
				}
			} else if diff := cmp.Diff(silo.FieldErrors(errs), err); diff != "" {
				t.Errorf("Validate differs from ValidateAll() (-all +validate):\n%s", diff)
			}

			if r.field == "" {
				for _, err := range errs {
					t.Errorf("unexpected error: %s: %v", err.(*silo.Error).Field, err)
				}
				// A valid spec stays valid and unchanged when validated again.
				again := spec
				if err := again.Validate(ws); err != nil {
					t.Errorf("revalidating: %v", err)
				}
				if diff := cmp.Diff(spec, again); diff != "" {
					t.Errorf("revalidating changed the spec (-first +second):\n%s", diff)
				}
				return
			}
			for _, err := range errs {
				e := err.(*silo.Error)
				if e.Field == r.field && strings.Contains(e.Message, r.msg) {
					return
				}
			}
			t.Errorf("no error on %s containing %q; got:", r.field, r.msg)
			for _, err := range errs {
				t.Errorf("  %s: %v", err.(*silo.Error).Field, err)
			}
		})
	}
}

// checkRunnerErrors checks that every error is an EINVALID *silo.Error
// naming a field, with at most one error per field.
func checkRunnerErrors(t testing.TB, errs []error) {
	t.Helper()
	seen := map[string]bool{}
	for _, err := range errs {
		var e *silo.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v (%T) is not a *silo.Error", err, err)
		}
		if e.Code != silo.EINVALID || e.Field == "" || e.Message == "" {
			t.Fatalf("error %#v: want code %q, a field and a message", e, silo.EINVALID)
		}
		if seen[e.Field] {
			t.Fatalf("two errors on field %s: %v", e.Field, errs)
		}
		seen[e.Field] = true
	}
}

func TestRunnerSpecSecretsNeverInMessages(t *testing.T) {
	for _, r := range runnerRows() {
		ws := r.workspace
		if ws == "" {
			ws = testWorkspace
		}
		spec := r.base()
		spec.ServicePrincipalSecret = secretMarker
		spec.RuntimeServicePrincipalSecret = secretMarker + "-runtime"
		if r.mut != nil {
			r.mut(&spec)
		}
		for _, err := range spec.ValidateAll(ws) {
			if strings.Contains(err.Error(), "SECRET-MARKER") {
				t.Errorf("row %q: error message reveals a secret: %v", r.name, err)
			}
		}
	}
	// Updates too.
	old := azureRunner()
	if err := old.Validate(testWorkspace); err != nil {
		t.Fatal(err)
	}
	for i, mut := range []func(*silo.RunnerSpec){
		func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = secretMarker + strings.Repeat("x", 2000) },
		func(s *silo.RunnerSpec) { s.RuntimeServicePrincipalSecret = secretMarker + "\nmore" },
		func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = secretMarker; s.Name = "other" },
		func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = secretMarker; s.MemoryMB = 1 << 20 },
	} {
		spec := azureRunner()
		mut(&spec)
		if err := spec.ValidateUpdate(&old, testWorkspace); err == nil {
			t.Errorf("update %d: no error", i)
		} else if strings.Contains(err.Error(), "SECRET-MARKER") {
			t.Errorf("update error reveals a secret: %v", err)
		}
	}
}

func TestRunnerSpecDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   silo.RunnerSpec
		want silo.RunnerSpec
	}{{
		name: "aws",
		in:   awsRunner(),
		want: func() silo.RunnerSpec {
			s := awsRunner()
			s.StoragePath = "s3://acme-runner1.silo"
			s.VCPU = 8
			s.MemoryGB = 32
			return s
		}(),
	}, {
		name: "aws normalised",
		in: func() silo.RunnerSpec {
			s := awsRunner()
			s.Name = " runner1 "
			s.Provider = "Aws"
			s.Region = " EU-West-1"
			s.StoragePath = "S3://data.silo/runs/"
			s.VCPU = 16
			s.KMSDataKeyID = "1234ABCD-12AB-34CD-56EF-1234567890AB"
			s.KMSSecretKeyID = " alias/Silo "
			s.GoldenAMIID = "AMI-0A1B2C3D"
			s.ContainerRegistryURL = "S3://images/Runner.tar"
			existingVPC(&s)
			s.PublicSubnets = []string{" subnet-0A1B2C3D", "", "subnet-0a1b2c3d4e5f67891 "}
			s.ClientSecurityGroup = "SG-0A1B2C3D4E5F67890"
			s.EgressAllowedCIDRs = []string{"", " 10.0.0.0/8 "}
			return s
		}(),
		want: func() silo.RunnerSpec {
			s := awsRunner()
			s.StoragePath = "s3://data.silo/runs"
			s.VCPU = 16
			s.MemoryGB = 32
			s.KMSDataKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
			s.KMSSecretKeyID = "alias/Silo"
			s.GoldenAMIID = "ami-0a1b2c3d"
			s.ContainerRegistryURL = "s3://images/Runner.tar"
			existingVPC(&s)
			s.EgressAllowedCIDRs = []string{"10.0.0.0/8"}
			return s
		}(),
	}, {
		name: "azure",
		in: func() silo.RunnerSpec {
			s := azureRunner()
			s.Name = "gpu-runner-1"
			s.Region = "West Europe"
			s.ServicePrincipalID = strings.ToUpper(s.ServicePrincipalID)
			s.TenantID = " " + strings.ToUpper(s.TenantID) + " "
			s.ServicePrincipalSecret = " sp-secret-value\n"
			s.ContainerRegistryURL = "ACME1.azurecr.io/silo/runner:Latest"
			return s
		}(),
		want: func() silo.RunnerSpec {
			s := azureRunner()
			s.Name = "gpu-runner-1"
			s.StoragePath = "gpurunner1storage"
			s.VCPU = 4
			s.MemoryMB = 16384
			// Only the host is case-insensitive.
			s.ContainerRegistryURL = "acme1.azurecr.io/silo/runner:Latest"
			return s
		}(),
	}, {
		name: "local",
		in:   localRunner(),
		want: func() silo.RunnerSpec {
			s := localRunner()
			s.VCPU = silo.DefaultLocalVCPU
			s.MemoryGB = silo.DefaultLocalMemoryGB
			return s
		}(),
	}, {
		name: "local normalised",
		in: func() silo.RunnerSpec {
			s := localRunner()
			s.StoragePath = "File:///srv/silo//"
			s.MemoryGB = 64
			return s
		}(),
		want: func() silo.RunnerSpec {
			s := localRunner()
			s.StoragePath = "file:///srv/silo"
			s.VCPU = 2
			s.MemoryGB = 64
			return s
		}(),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in
			if err := got.Validate(testWorkspace); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("spec after Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunnerSpecValidateAllReportsEveryField(t *testing.T) {
	s := awsRunner()
	s.Name = "Bad_Name"
	s.Region = "mars-1"
	s.VCPU = 1000
	s.VPCID = "vpc-0a1b2c3d"
	s.GoldenAMIID = "ami-x"
	s.TenantID = "x"
	errs := s.ValidateAll(testWorkspace)
	checkRunnerErrors(t, errs)
	var fields []string
	for _, err := range errs {
		fields = append(fields, err.(*silo.Error).Field)
	}
	// Name, then foreign fields, then the aws table's order. The default
	// storage path needs a valid name, so storage_path is not reported.
	want := []string{"name", "tenant_id", "region", "vcpu", "public_subnets", "private_subnets", "client_security_group", "server_security_group", "golden_ami_id"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s\n%v", diff, errs)
	}
	if err := s.Validate(testWorkspace); err.(*silo.Error).Field != "name" {
		t.Errorf("Validate = %v, want the name error first", err)
	}

	// An unknown provider stops after the provider.
	s = azureRunner()
	s.Provider = "gcp"
	s.Name = "x"
	errs = s.ValidateAll(testWorkspace)
	checkRunnerErrors(t, errs)
	if len(errs) != 2 || errs[0].(*silo.Error).Field != "name" || errs[1].(*silo.Error).Field != "provider" {
		t.Errorf("ValidateAll = %v, want name and provider errors", errs)
	}

	// Azure: every required field at once.
	s = silo.RunnerSpec{Name: "runner1", Provider: silo.ProviderAzure}
	errs = s.ValidateAll(testWorkspace)
	checkRunnerErrors(t, errs)
	fields = nil
	for _, err := range errs {
		fields = append(fields, err.(*silo.Error).Field)
	}
	want = []string{"region", "resource_group", "service_principal_id", "runtime_service_principal_id", "subscription_id", "tenant_id", "service_principal_secret", "runtime_service_principal_secret"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("azure fields (-want +got):\n%s", diff)
	}
}

func TestValidateRunnerName(t *testing.T) {
	for _, name := range []string{"abc", "a-1", "gpu-runner-1", strings.Repeat("z", 32)} {
		if err := silo.ValidateRunnerName(name); err != nil {
			t.Errorf("ValidateRunnerName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "ab", strings.Repeat("z", 33), "A-1", "1ab", "ab-", "a--b", "a b", "añb", " abc"} {
		err := silo.ValidateRunnerName(name)
		var e *silo.Error
		if !errors.As(err, &e) || e.Field != "name" || e.Code != silo.EINVALID {
			t.Errorf("ValidateRunnerName(%q) = %#v, want an invalid error on name", name, err)
		}
	}
}

func TestRunnerSpecValidateUpdate(t *testing.T) {
	registered := func(base func() silo.RunnerSpec, mut func(*silo.RunnerSpec)) silo.RunnerSpec {
		s := base()
		if mut != nil {
			mut(&s)
		}
		if err := s.Validate(testWorkspace); err != nil {
			t.Fatal(err)
		}
		return s
	}
	oldAzure := registered(azureRunner, func(s *silo.RunnerSpec) { s.MemoryMB = 8192 })
	oldAWS := registered(awsRunner, nil)
	oldLocal := registered(localRunner, nil)

	tests := []struct {
		name        string
		old         silo.RunnerSpec
		edit        func(*silo.RunnerSpec)
		field, msg  string
		check       func(t *testing.T, s silo.RunnerSpec)
		keepSecrets bool
	}{
		{name: "azure unchanged", old: oldAzure},
		{name: "azure memory decreased", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.MemoryMB = 4096 }},
		{name: "azure memory same", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.MemoryMB = 8192 }},
		{name: "azure memory increased", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.MemoryMB = 8193 },
			field: "memory_mb", msg: "memory_mb can only be decreased after registration (it is 8192, you asked for 8193): give 8192 or less, or register a new runner"},
		{name: "azure memory empty keeps", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.MemoryMB = 0 },
			check: func(t *testing.T, s silo.RunnerSpec) {
				if s.MemoryMB != 8192 {
					t.Errorf("memory_mb = %d, want the stored 8192", s.MemoryMB)
				}
			}},
		{name: "azure memory below minimum", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.MemoryMB = 100 }, field: "memory_mb", msg: "out of range"},
		{name: "secrets empty keep stored", old: oldAzure, edit: func(s *silo.RunnerSpec) {
			s.ServicePrincipalSecret = ""
			s.RuntimeServicePrincipalSecret = " "
		}, check: func(t *testing.T, s silo.RunnerSpec) {
			if s.ServicePrincipalSecret != oldAzure.ServicePrincipalSecret || s.RuntimeServicePrincipalSecret != oldAzure.RuntimeServicePrincipalSecret {
				t.Errorf("secrets not kept")
			}
		}},
		{name: "secret replaced", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.ServicePrincipalSecret = "new-secret" },
			check: func(t *testing.T, s silo.RunnerSpec) {
				if s.ServicePrincipalSecret != "new-secret" || s.RuntimeServicePrincipalSecret != oldAzure.RuntimeServicePrincipalSecret {
					t.Errorf("secrets = %q, %q", s.ServicePrincipalSecret, s.RuntimeServicePrincipalSecret)
				}
			}},
		{name: "name changed", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.Name = "runner2" },
			field: "name", msg: `a runner's name cannot change (it is "runner1", not "runner2"): to use another name, deregister this runner and register a new one`},
		{name: "provider changed", old: oldAWS, edit: func(s *silo.RunnerSpec) { *s = localRunner() },
			field: "provider", msg: "a runner's provider cannot change (it is aws, not \"local\"): to move to local, deregister this runner and register a new one"},
		{name: "provider case only", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.Provider = "AWS" }},
		{name: "name and provider empty keep", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.Name, s.Provider = "", "" },
			check: func(t *testing.T, s silo.RunnerSpec) {
				if s.Name != "runner1" || s.Provider != silo.ProviderAWS {
					t.Errorf("name, provider = %q, %q; want the stored ones", s.Name, s.Provider)
				}
			}},
		{name: "aws storage changed", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.StoragePath = "s3://other.silo" },
			field: "storage_path", msg: `storage_path cannot change once a runner is registered (it is "s3://acme-runner1.silo"): to use other storage, register a new runner`},
		{name: "aws storage same, spelled differently", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.StoragePath = " S3://acme-runner1.silo/ " }},
		{name: "aws storage empty keeps", old: registered(awsRunner, func(s *silo.RunnerSpec) { s.StoragePath = "s3://custom.silo" }),
			check: func(t *testing.T, s silo.RunnerSpec) {
				if s.StoragePath != "s3://custom.silo" {
					t.Errorf("storage_path = %q, want the stored one", s.StoragePath)
				}
			}},
		{name: "aws vcpu changed", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.VCPU = 64; s.MemoryGB = 256 }},
		{name: "aws invalid edit", old: oldAWS, edit: func(s *silo.RunnerSpec) { s.Region = "nowhere" }, field: "region", msg: "not an AWS region code"},
		{name: "local storage changed", old: oldLocal, edit: func(s *silo.RunnerSpec) { s.StoragePath = "file:///elsewhere" }, field: "storage_path", msg: "cannot change"},
		{name: "azure storage given", old: oldAzure, edit: func(s *silo.RunnerSpec) { s.StoragePath = "otherstorage" }, field: "storage_path", msg: "cannot change"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The edit starts from what the API returns: the stored spec
			// with its secrets redacted.
			s := tt.old
			s.ServicePrincipalSecret, s.RuntimeServicePrincipalSecret = "", ""
			s.StoragePath = ""
			if tt.edit != nil {
				tt.edit(&s)
			}
			old := tt.old
			err := s.ValidateUpdate(&old, testWorkspace)
			if diff := cmp.Diff(tt.old, old); diff != "" {
				t.Errorf("ValidateUpdate changed old (-before +after):\n%s", diff)
			}
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateUpdate = %v", err)
				}
				if tt.check != nil {
					tt.check(t, s)
				}
				if s.ServicePrincipalSecret == "" && tt.old.ServicePrincipalSecret != "" {
					t.Errorf("secret lost")
				}
				return
			}
			var e *silo.Error
			if !errors.As(err, &e) || e.Code != silo.EINVALID || e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("ValidateUpdate = %#v, want %s error containing %q", err, tt.field, tt.msg)
			}
		})
	}
}

func TestRegionLists(t *testing.T) {
	for name, list := range map[string][]string{"AWSRegions": silo.AWSRegions, "AzureRegions": silo.AzureRegions} {
		if !slices.IsSorted(list) {
			t.Errorf("%s is not sorted", name)
		}
		if len(slices.Compact(slices.Clone(list))) != len(list) {
			t.Errorf("%s has duplicates", name)
		}
		for _, r := range list {
			if r != strings.ToLower(r) || strings.ContainsAny(r, " \t") {
				t.Errorf("%s: %q is not lowercase without spaces", name, r)
			}
		}
	}
	for _, r := range []string{"us-east-1", "ap-southeast-7", "mx-central-1", "il-central-1", "ca-west-1", "us-gov-west-1", "cn-north-1"} {
		if !slices.Contains(silo.AWSRegions, r) {
			t.Errorf("AWSRegions lacks %s", r)
		}
	}
	for _, r := range []string{"eastus", "eastus2", "westeurope", "uksouth", "swedencentral"} {
		if !slices.Contains(silo.AzureRegions, r) {
			t.Errorf("AzureRegions lacks %s", r)
		}
	}
}

func FuzzRunnerSpecValidate(f *testing.F) {
	f.Add(uint8(1), "runner1", "s3://acme-runner1.silo", "10.0.0.0/16", "10.0.0.0/17", "10.0.128.0/17", 2, "arn:aws:iam::123456789012:role/silo")
	f.Add(uint8(1|16|32|64|128), "runner1", "s3://acme-runner1.silo", "10.0.0.0/16", "10.0.0.0/17", "10.0.128.0/17", 2, "arn:aws:kms:eu-west-1:123456789012:alias/x")
	f.Add(uint8(2|16), "runner1", "", "West Europe", "rg", "11111111-2222-3333-4444-555555555555", 16384, "vnet")
	f.Add(uint8(1), "runner1", "s3://x.silo/a/../b", "10.0.0.1/16", "10.0.0.0/29", "fd00::/8", 13, "arn:aws-cn:iam::1:role/a//b")
	f.Add(uint8(2), "gpu-runner-1", "", "westeurope", "silo-rg", "11111111-2222-3333-4444-555555555555", 0, "acme1.azurecr.io/silo:1")
	f.Add(uint8(0), "runner1", "file:///srv/silo", "", "", "", 0, "")
	f.Add(uint8(0), "r", "file://../x", "", "", "", -1, "alias/")
	f.Fuzz(func(t *testing.T, p uint8, name, storage, cidrA, cidrB, cidrC string, newbits int, arn string) {
		build := func() silo.RunnerSpec {
			s := silo.RunnerSpec{
				Name:        name,
				Provider:    silo.Providers[int(p)%len(silo.Providers)],
				StoragePath: storage,
			}
			switch s.Provider {
			case silo.ProviderAWS:
				s.ProvisionerRoleARN = arn
				s.RuntimeRoleARN = "arn:aws:iam::123456789012:role/silo"
				s.Region = "eu-west-1"
				s.VPCCIDR, s.PrivateSubnetCIDR, s.PublicSubnetCIDR, s.CIDRNewbits = cidrA, cidrB, cidrC, newbits
				// The high bits of p choose which other fields get fuzzed
				// values, so that valid specs are reachable too.
				if p&8 != 0 {
					s.VPCID, s.PublicSubnets = cidrB, []string{cidrC}
				}
				if p&16 != 0 {
					s.KMSDataKeyID = arn
				}
				if p&32 != 0 {
					s.ContainerRegistryURL = storage
				}
				if p&64 != 0 {
					s.EgressProxyURL = arn
				}
				if p&128 != 0 {
					s.EgressAllowedCIDRs = []string{cidrA, cidrC}
				}
			case silo.ProviderAzure:
				s.Region = cidrA
				s.ResourceGroup = cidrB
				s.ServicePrincipalID = cidrC
				s.RuntimeServicePrincipalID = "11111111-2222-3333-4444-666666666666"
				s.SubscriptionID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
				s.TenantID = "ffffffff-0000-1111-2222-333333333333"
				s.ServicePrincipalSecret = secretMarker + arn
				s.RuntimeServicePrincipalSecret = secretMarker
				s.MemoryMB = newbits
				if p&16 != 0 {
					s.SubnetID = "/subscriptions/" + cidrC + "/resourceGroups/" + cidrB + "/providers/Microsoft.Network/virtualNetworks/" + arn + "/subnets/x"
				}
				if p&32 != 0 {
					s.ContainerRegistryURL = arn
				}
			case silo.ProviderLocal:
				s.VCPU = newbits
				if p&8 != 0 {
					s.Region = cidrA // a foreign field
				}
			}
			return s
		}
		s := build()
		errs := s.ValidateAll("acme")
		checkRunnerErrors(t, errs)
		s2 := build()
		err := s2.Validate("acme")
		if len(errs) == 0 {
			if err != nil {
				t.Fatalf("Validate = %v but ValidateAll found nothing", err)
			}
			// Normalisation is idempotent: a valid spec stays valid and
			// unchanged.
			again := s
			if err := again.Validate("acme"); err != nil {
				t.Fatalf("revalidating %+v: %v", s, err)
			}
			if diff := cmp.Diff(s, again); diff != "" {
				t.Fatalf("revalidating changed the spec:\n%s", diff)
			}
			// And it is its own valid update.
			upd := s
			if err := upd.ValidateUpdate(&s, "acme"); err != nil {
				t.Fatalf("ValidateUpdate with itself: %v", err)
			}
			return
		}
		var e *silo.Error
		if !errors.As(err, &e) || e.Code != silo.EINVALID || e.Field == "" {
			t.Fatalf("Validate = %#v, want an invalid *silo.Error with a field", err)
		}
		if diff := cmp.Diff(silo.FieldErrors(errs), err); diff != "" {
			t.Fatalf("Validate differs from ValidateAll():\n%s", diff)
		}
		if !strings.Contains(name+storage+cidrA+cidrB+cidrC+arn, "SECRET-MARKER") {
			for _, err := range errs {
				if strings.Contains(err.Error(), "SECRET-MARKER") {
					t.Fatalf("secret in message: %v", err)
				}
			}
		}
	})
}
