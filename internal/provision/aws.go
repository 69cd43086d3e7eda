package provision

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/silofl/silo"
)

// The network a new VPC gets when the spec names neither an existing VPC nor
// CIDRs: a /16 from the private 10.0.0.0/8 range that is rarely used by
// default elsewhere, with a /20 block of subnets for each tier. Each block is
// split with DefaultCIDRNewbits into one subnet per availability zone.
const (
	DefaultVPCCIDR           = silo.DefaultAWSVPCCIDR
	DefaultPublicSubnetCIDR  = silo.DefaultAWSPublicSubnetCIDR
	DefaultPrivateSubnetCIDR = silo.DefaultAWSPrivateSubnetCIDR
	DefaultCIDRNewbits       = silo.DefaultAWSCIDRNewbits
)

// awsZones is how many availability zones a new VPC spans: two keeps the
// runner placeable when one zone lacks capacity for its instance type.
const awsZones = 2

// rootVolumeGB is the runner instance's root volume: room for the container
// image and the runner's local scratch data.
const rootVolumeGB = 50

// al2023AMI is the public SSM parameter with the latest Amazon Linux 2023
// AMI, used when the spec names no golden AMI.
const al2023AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

// instanceTypes are the EC2 sizes a runner may get, cheapest first (an r6i
// costs about 1.31× the m6i of the same size, so the two families
// interleave). InstanceType picks the first that fits.
var instanceTypes = []struct {
	name        string
	vcpu, memGB int
}{
	{"m6i.large", 2, 8}, {"r6i.large", 2, 16},
	{"m6i.xlarge", 4, 16}, {"r6i.xlarge", 4, 32},
	{"m6i.2xlarge", 8, 32}, {"r6i.2xlarge", 8, 64},
	{"m6i.4xlarge", 16, 64}, {"r6i.4xlarge", 16, 128},
	{"m6i.8xlarge", 32, 128}, {"r6i.8xlarge", 32, 256},
	{"m6i.12xlarge", 48, 192}, {"r6i.12xlarge", 48, 384},
	{"m6i.16xlarge", 64, 256}, {"r6i.16xlarge", 64, 512},
	{"m6i.24xlarge", 96, 384}, {"r6i.24xlarge", 96, 768},
	{"m6i.32xlarge", 128, 512}, {"r6i.32xlarge", 128, 1024},
}

// InstanceType returns the cheapest m6i or r6i instance type with at least
// vcpu vCPUs and memGB GiB of memory.
func InstanceType(vcpu, memGB int) (string, error) {
	for _, it := range instanceTypes {
		if it.vcpu >= vcpu && it.memGB >= memGB {
			return it.name, nil
		}
	}
	return "", silo.FieldErrorf("vcpu", "no m6i or r6i instance has %d vCPUs and %d GB of memory: the largest is r6i.32xlarge (128 vCPUs, 1024 GB)", vcpu, memGB)
}

type obj = map[string]any

func ref(name string) obj              { return obj{"Ref": name} }
func getAtt(resource, attr string) obj { return obj{"Fn::GetAtt": []any{resource, attr}} }
func cfnSub(s string) obj              { return obj{"Fn::Sub": s} }
func cfnSelect(i int, list any) obj    { return obj{"Fn::Select": []any{strconv.Itoa(i), list}} }
func cfnCIDR(block string, n, bits int) obj {
	return obj{"Fn::Cidr": []any{block, strconv.Itoa(n), strconv.Itoa(bits)}}
}

// cfnLiteral escapes s for the text of an Fn::Sub, where "${" starts a
// substitution.
func cfnLiteral(s string) string { return strings.ReplaceAll(s, "${", "${!") }

// awsStack holds what the parts of a CloudFormation template share while it
// is being built.
type awsStack struct {
	spec      *silo.RunnerSpec
	cfg       BootstrapConfig
	rc        RunnerConfig
	bucket    string
	resources obj
	tags      []any // Key/Value tags every taggable resource gets
}

func (s *awsStack) add(name, typ string, props obj) obj {
	r := obj{"Type": typ, "Properties": props}
	s.resources[name] = r
	return r
}

func (s *awsStack) tagged(name string) []any {
	return append([]any{obj{"Key": "Name", "Value": name}}, s.tags...)
}

func awsBundle(spec *silo.RunnerSpec, cfg BootstrapConfig) ([]File, error) {
	storage, err := StoragePath(spec, cfg.Workspace)
	if err != nil {
		return nil, err
	}
	bucket, _, err := S3Bucket(storage)
	if err != nil {
		return nil, err
	}
	rc := runnerConfig(spec, cfg, storage)
	tmpl, err := cloudFormation(spec, cfg, rc, bucket)
	if err != nil {
		return nil, err
	}
	data, err := marshal(tmpl)
	if err != nil {
		return nil, err
	}
	conf, err := marshal(rc)
	if err != nil {
		return nil, err
	}
	info := readmeData(spec, cfg, rc)
	info.Instance, _ = InstanceType(rc.VCPU, rc.MemoryMB/1024)
	readme, err := renderReadme(awsReadme, info)
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: CloudFormationFile, Data: data},
		{Name: RunnerConfigFile, Data: conf},
		{Name: ReadmeFile, Data: readme},
	}, nil
}

// cloudFormation returns the CloudFormation template of an aws runner: its
// network (an existing VPC, or a new one), security group, IAM, S3 bucket,
// token secret and a one-instance auto scaling group whose instance runs the
// runner container.
func cloudFormation(spec *silo.RunnerSpec, cfg BootstrapConfig, rc RunnerConfig, bucket string) (obj, error) {
	s := &awsStack{spec: spec, cfg: cfg, rc: rc, bucket: bucket, resources: obj{}}
	s.tags = []any{
		obj{"Key": "silo:runner", "Value": spec.Name},
		obj{"Key": "silo:workspace", "Value": cfg.Workspace},
	}
	memGB := MemoryMB(spec) / 1024
	instanceType, err := InstanceType(rc.VCPU, memGB)
	if err != nil {
		return nil, err
	}

	params := obj{
		"RunnerToken": obj{
			"Type":        "String",
			"NoEcho":      true,
			"MinLength":   1,
			"Description": "The runner's token, shown once when the runner was registered (or its token replaced). It is stored in Secrets Manager, never in this template.",
		},
		"CreateBucket": obj{
			"Type":          "String",
			"AllowedValues": []any{"true", "false"},
			"Default":       strconv.FormatBool(!cfg.StorageReady),
			"Description":   "true creates the bucket " + bucket + "; false uses it as it is (Silo already created it).",
		},
		"RootDeviceName": obj{
			"Type":        "String",
			"Default":     "/dev/xvda",
			"Description": "The image's root device; change it if a golden AMI uses another (for example /dev/sda1).",
		},
		"PolicyLocation": obj{
			"Type":                  "String",
			"Default":               "",
			"AllowedPattern":        `^(s3://[a-z0-9][a-z0-9.-]*\.silo/\S+)?$`,
			"ConstraintDescription": "an s3://<bucket>.silo/<key> URI, or empty",
			"Description":           "The data owner's policy the runner pins (" + EnvPolicy + "), such as s3://" + bucket + "/.silo/policy.json: read once when the runner starts. Empty for none.",
		},
	}
	if spec.GoldenAMIID != "" {
		params["ImageId"] = obj{"Type": "AWS::EC2::Image::Id", "Default": spec.GoldenAMIID,
			"Description": "The golden AMI the runner instance boots (golden_ami_id)."}
	} else {
		params["ImageId"] = obj{"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": al2023AMI,
			"Description": "The runner instance's AMI: the latest Amazon Linux 2023."}
	}
	if spec.ContainerRegistryURL == "" {
		params["RunnerImage"] = obj{"Type": "String", "Default": cfg.Image,
			"Description": "The silo container image the runner instance pulls."}
	}

	vpc, subnets, err := s.network()
	if err != nil {
		return nil, err
	}
	sg := s.securityGroup(vpc)
	role := s.iam()
	s.storage()

	secret := obj{
		"Name":         "silo/" + cfg.Workspace + "/" + spec.Name + "/runner-token",
		"Description":  "Token of Silo task runner " + spec.Name,
		"SecretString": ref("RunnerToken"),
		"Tags":         s.tags,
	}
	if spec.KMSSecretKeyID != "" {
		secret["KmsKeyId"] = spec.KMSSecretKeyID
	}
	s.add("RunnerTokenSecret", "AWS::SecretsManager::Secret", secret)

	groups := []any{ref(sg)}
	for _, g := range []string{spec.ClientSecurityGroup, spec.ServerSecurityGroup} {
		if g != "" {
			groups = append(groups, g)
		}
	}
	ebs := obj{"VolumeSize": rootVolumeGB, "VolumeType": "gp3", "Encrypted": true, "DeleteOnTermination": true}
	if spec.KMSDataKeyID != "" {
		ebs["KmsKeyId"] = spec.KMSDataKeyID
	}
	userData, err := s.userData()
	if err != nil {
		return nil, err
	}
	s.add("LaunchTemplate", "AWS::EC2::LaunchTemplate", obj{
		"LaunchTemplateData": obj{
			"ImageId":             ref("ImageId"),
			"InstanceType":        instanceType,
			"IamInstanceProfile":  obj{"Arn": getAtt("InstanceProfile", "Arn")},
			"SecurityGroupIds":    groups,
			"BlockDeviceMappings": []any{obj{"DeviceName": ref("RootDeviceName"), "Ebs": ebs}},
			// IMDSv2 only; two hops so the container reaches it for the
			// instance role's credentials.
			"MetadataOptions": obj{"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 2},
			"UserData":        obj{"Fn::Base64": userData},
			"TagSpecifications": []any{
				obj{"ResourceType": "instance", "Tags": s.tagged("silo-runner-" + spec.Name)},
				obj{"ResourceType": "volume", "Tags": s.tagged("silo-runner-" + spec.Name)},
			},
		},
	})
	s.add("InstanceProfile", "AWS::IAM::InstanceProfile", obj{"Roles": []any{role}})

	var asgTags []any
	for _, t := range s.tagged("silo-runner-" + spec.Name) {
		t := t.(obj)
		asgTags = append(asgTags, obj{"Key": t["Key"], "Value": t["Value"], "PropagateAtLaunch": false})
	}
	asg := s.add("RunnerGroup", "AWS::AutoScaling::AutoScalingGroup", obj{
		"MinSize":           "1",
		"MaxSize":           "1",
		"DesiredCapacity":   "1",
		"VPCZoneIdentifier": subnets,
		"LaunchTemplate":    obj{"LaunchTemplateId": ref("LaunchTemplate"), "Version": getAtt("LaunchTemplate", "LatestVersionNumber")},
		"HealthCheckType":   "EC2",
		"Tags":              asgTags,
	})
	// The instance fetches the token at boot and, in a new VPC, needs its
	// NAT route to reach the server.
	deps := []any{"RunnerTokenSecret", "RunnerPolicy"}
	if _, ok := s.resources["PrivateRoute"]; ok {
		deps = append(deps, "PrivateRoute")
	}
	asg["DependsOn"] = deps
	asg["UpdatePolicy"] = obj{"AutoScalingRollingUpdate": obj{"MinInstancesInService": "0", "MaxBatchSize": "1"}}

	meta := obj{
		"Workspace":       cfg.Workspace,
		"Runner":          spec.Name,
		"ServerURL":       cfg.ServerURL,
		"ProtocolVersion": cfg.ProtocolVersion,
		"StoragePath":     rc.StoragePath,
		"InstanceType":    instanceType,
	}
	if spec.ProvisionerRoleARN != "" {
		// The role the administrator deploys the stack with (README).
		meta["ProvisionerRoleArn"] = spec.ProvisionerRoleARN
	}
	if len(spec.PublicSubnets) > 0 {
		// The runner has no inbound side, so nothing is placed in the
		// public subnets: they hold the NAT its private subnets route through.
		meta["PublicSubnets"] = spec.PublicSubnets
	}

	t := obj{
		"AWSTemplateFormatVersion": "2010-09-09",
		"Description":              fmt.Sprintf("Silo task runner %s of workspace %s. Generated by Silo: deploy it as its README.md says.", spec.Name, cfg.Workspace),
		"Metadata":                 obj{"Silo": meta},
		"Parameters":               params,
		"Conditions": obj{
			"CreateBucket": obj{"Fn::Equals": []any{ref("CreateBucket"), "true"}},
			"HasPolicy":    obj{"Fn::Not": []any{obj{"Fn::Equals": []any{ref("PolicyLocation"), ""}}}},
		},
		"Resources": s.resources,
		"Outputs": obj{
			"BucketName":           obj{"Description": "The runner's S3 bucket", "Value": bucket},
			"VpcId":                obj{"Description": "The runner's VPC", "Value": vpc},
			"SecurityGroupId":      obj{"Description": "The runner's security group", "Value": ref(sg)},
			"RunnerTokenSecretArn": obj{"Description": "The Secrets Manager secret with the runner's token", "Value": ref("RunnerTokenSecret")},
			"AutoScalingGroupName": obj{"Description": "Terminate its instance to restart the runner (for example after replacing its token)", "Value": ref("RunnerGroup")},
		},
	}
	if spec.Region != "" {
		// A template cannot choose its region; this rule refuses to deploy
		// anywhere but the runner's.
		t["Rules"] = obj{"RunnerRegion": obj{"Assertions": []any{obj{
			"Assert":            obj{"Fn::Equals": []any{ref("AWS::Region"), spec.Region}},
			"AssertDescription": "Deploy this stack in " + spec.Region + ", the runner's region (aws cloudformation deploy --region " + spec.Region + ").",
		}}}}
	}
	return t, nil
}

// network adds the runner's network and returns its VPC and the subnets its
// instance may be placed in. With vpc_id it uses the given VPC and private
// subnets; otherwise it builds a VPC with public subnets (internet gateway,
// one NAT gateway) and private subnets in two zones, from the spec's CIDRs or
// the defaults above.
func (s *awsStack) network() (vpc any, subnets []any, err error) {
	spec := s.spec
	if spec.VPCID != "" {
		if len(spec.PrivateSubnets) == 0 {
			return nil, nil, silo.FieldErrorf("private_subnets", "an existing VPC needs at least one private subnet for the runner")
		}
		for _, id := range spec.PrivateSubnets {
			subnets = append(subnets, id)
		}
		return spec.VPCID, subnets, nil
	}

	vpcCIDR, pubCIDR, privCIDR, newbits := spec.VPCCIDR, spec.PublicSubnetCIDR, spec.PrivateSubnetCIDR, spec.CIDRNewbits
	if vpcCIDR == "" {
		vpcCIDR = DefaultVPCCIDR
		if pubCIDR == "" && privCIDR == "" {
			pubCIDR, privCIDR = DefaultPublicSubnetCIDR, DefaultPrivateSubnetCIDR
		}
	}
	if newbits == 0 {
		newbits = DefaultCIDRNewbits
	}
	block, err := netip.ParsePrefix(vpcCIDR)
	if err != nil || !block.Addr().Is4() {
		return nil, nil, silo.FieldErrorf("vpc_cidr", "vpc_cidr %q is not an IPv4 CIDR", vpcCIDR)
	}
	// Blocks not given are the VPC's first and second quarters.
	if pubCIDR == "" {
		pubCIDR = quarter(block, 0)
	}
	if privCIDR == "" {
		privCIDR = quarter(block, 1)
	}

	s.add("VPC", "AWS::EC2::VPC", obj{
		"CidrBlock": block.Masked().String(), "EnableDnsHostnames": true, "EnableDnsSupport": true,
		"Tags": s.tagged("silo-" + spec.Name),
	})
	s.add("InternetGateway", "AWS::EC2::InternetGateway", obj{"Tags": s.tagged("silo-" + spec.Name)})
	s.add("GatewayAttachment", "AWS::EC2::VPCGatewayAttachment", obj{"VpcId": ref("VPC"), "InternetGatewayId": ref("InternetGateway")})

	for _, tier := range []struct {
		name, cidr, field string
	}{{"Public", pubCIDR, "public_subnet_cidr"}, {"Private", privCIDR, "private_subnet_cidr"}} {
		bits, err := hostBits(tier.cidr, newbits)
		if err != nil {
			return nil, nil, silo.FieldErrorf(tier.field, "%s %q: %v", tier.field, tier.cidr, err)
		}
		s.add(tier.name+"RouteTable", "AWS::EC2::RouteTable", obj{"VpcId": ref("VPC"), "Tags": s.tagged("silo-" + spec.Name + "-" + strings.ToLower(tier.name))})
		for i := range awsZones {
			name := fmt.Sprintf("%sSubnet%d", tier.name, i+1)
			s.add(name, "AWS::EC2::Subnet", obj{
				"VpcId":               ref("VPC"),
				"CidrBlock":           cfnSelect(i, cfnCIDR(tier.cidr, awsZones, bits)),
				"AvailabilityZone":    cfnSelect(i, obj{"Fn::GetAZs": ""}),
				"MapPublicIpOnLaunch": false,
				"Tags":                s.tagged(fmt.Sprintf("silo-%s-%s-%d", spec.Name, strings.ToLower(tier.name), i+1)),
			})
			s.add(name+"RouteTableAssociation", "AWS::EC2::SubnetRouteTableAssociation", obj{
				"SubnetId": ref(name), "RouteTableId": ref(tier.name + "RouteTable"),
			})
			if tier.name == "Private" {
				subnets = append(subnets, ref(name))
			}
		}
	}
	s.add("PublicRoute", "AWS::EC2::Route", obj{
		"RouteTableId": ref("PublicRouteTable"), "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": ref("InternetGateway"),
	})["DependsOn"] = "GatewayAttachment"
	s.add("NatAddress", "AWS::EC2::EIP", obj{"Domain": "vpc", "Tags": s.tagged("silo-" + spec.Name + "-nat")})["DependsOn"] = "GatewayAttachment"
	// One NAT gateway, not one per zone: a runner is a single instance, and
	// a NAT gateway costs more than the redundancy is worth here.
	s.add("NatGateway", "AWS::EC2::NatGateway", obj{
		"SubnetId": ref("PublicSubnet1"), "AllocationId": getAtt("NatAddress", "AllocationId"),
		"Tags": s.tagged("silo-" + spec.Name),
	})
	s.add("PrivateRoute", "AWS::EC2::Route", obj{
		"RouteTableId": ref("PrivateRouteTable"), "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": ref("NatGateway"),
	})
	// S3 traffic stays inside AWS (and off the NAT's bill).
	s.add("S3Endpoint", "AWS::EC2::VPCEndpoint", obj{
		"VpcId": ref("VPC"), "VpcEndpointType": "Gateway",
		"ServiceName":   cfnSub("com.amazonaws.${AWS::Region}.s3"),
		"RouteTableIds": []any{ref("PrivateRouteTable")},
	})
	return ref("VPC"), subnets, nil
}

// quarter returns the n-th quarter of block.
func quarter(block netip.Prefix, n int) string {
	bits := block.Bits() + 2
	if bits > 32 {
		return block.String()
	}
	a := block.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	// #nosec G115 -- n counts subnets of a /16, far below 2^32
	v += uint32(n) << (32 - bits)
	// #nosec G115 -- the four bytes of an IPv4 address, truncation intended
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits).String()
}

// hostBits returns the cidrBits argument of Fn::Cidr for splitting block
// with newbits: Fn::Cidr counts host bits, not the new network bits.
func hostBits(block string, newbits int) (int, error) {
	p, err := netip.ParsePrefix(block)
	if err != nil || !p.Addr().Is4() {
		return 0, fmt.Errorf("not an IPv4 CIDR")
	}
	size := p.Bits() + newbits
	switch {
	case newbits < 1:
		return 0, fmt.Errorf("cidr_newbits must be at least 1 to give a subnet per availability zone")
	case size > 28:
		return 0, fmt.Errorf("with cidr_newbits %d the subnets would be /%d, smaller than /28, the smallest AWS allows", newbits, size)
	}
	return 32 - size, nil
}

// securityGroup adds the runner's own security group: no inbound rules at
// all (the runner only dials out) and outbound HTTPS, plus the proxy's port
// and the extra egress CIDRs when the spec has them.
func (s *awsStack) securityGroup(vpc any) string {
	egress := []any{obj{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0",
		"Description": "HTTPS: the Silo server, S3 and AWS APIs"}}
	if port := proxyPort(s.spec.EgressProxyURL); port != 0 && port != 443 {
		egress = append(egress, obj{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "CidrIp": "0.0.0.0/0",
			"Description": "egress proxy " + s.spec.EgressProxyURL})
	}
	for _, c := range s.spec.EgressAllowedCIDRs {
		rule := obj{"IpProtocol": "-1", "Description": "allowed egress (egress_allowed_cidrs)"}
		if strings.Contains(c, ":") {
			rule["CidrIpv6"] = c
		} else {
			rule["CidrIp"] = c
		}
		egress = append(egress, rule)
	}
	s.add("RunnerSecurityGroup", "AWS::EC2::SecurityGroup", obj{
		"GroupDescription":    "Silo task runner " + s.spec.Name + ": outbound only",
		"VpcId":               vpc,
		"SecurityGroupEgress": egress,
		"Tags":                s.tagged("silo-runner-" + s.spec.Name),
	})
	return "RunnerSecurityGroup"
}

// proxyPort returns the TCP port of a proxy URL, 0 if there is none.
func proxyPort(proxy string) int {
	if proxy == "" {
		return 0
	}
	u, err := url.Parse(proxy)
	if err != nil {
		return 0
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// iam adds the runner's permissions and returns its role's name. The runtime
// role (runtime_role_arn) gets an inline policy for exactly what the runner
// needs; without one, the template creates the role.
func (s *awsStack) iam() any {
	spec := s.spec
	var role any
	if spec.RuntimeRoleARN != "" {
		// The instance profile and policy want the name; the path before it
		// is not part of it.
		arn := spec.RuntimeRoleARN
		role = arn[strings.LastIndex(arn, "/")+1:]
	} else {
		s.add("RuntimeRole", "AWS::IAM::Role", obj{
			"AssumeRolePolicyDocument": obj{"Version": "2012-10-17", "Statement": []any{obj{
				"Effect": "Allow", "Principal": obj{"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole",
			}}},
			// Session Manager instead of SSH: the instance has no inbound port.
			"ManagedPolicyArns": []any{cfnSub("arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore")},
			"Tags":              s.tags,
		})
		role = ref("RuntimeRole")
	}

	bucketARN := "arn:aws:s3:::" + s.bucket
	// Objects covers the runner's privacy record too: it writes it under
	// RunnerStateFolder in its bucket.
	stmts := []any{
		obj{"Sid": "Bucket", "Effect": "Allow", "Action": []any{"s3:ListBucket", "s3:GetBucketLocation"}, "Resource": bucketARN},
		obj{"Sid": "Objects", "Effect": "Allow", "Action": []any{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, "Resource": bucketARN + "/*"},
		obj{"Sid": "Token", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": ref("RunnerTokenSecret")},
		// A pinned policy may be in another bucket. "<location>s3://" split
		// on "s3://" gives "<bucket>/<key>" second, and a harmless "" when
		// the location is empty.
		obj{"Fn::If": []any{"HasPolicy", obj{"Sid": "Policy", "Effect": "Allow", "Action": "s3:GetObject",
			"Resource": obj{"Fn::Join": []any{"", []any{"arn:aws:s3:::", cfnSelect(1, obj{"Fn::Split": []any{"s3://",
				obj{"Fn::Join": []any{"", []any{ref("PolicyLocation"), "s3://"}}}}})}}}}, ref("AWS::NoValue")}},
	}
	if img := spec.ContainerRegistryURL; img != "" {
		stmts = append(stmts, obj{"Sid": "Image", "Effect": "Allow", "Action": "s3:GetObject",
			"Resource": "arn:aws:s3:::" + strings.TrimPrefix(img, "s3://")})
	}
	if spec.KMSDataKeyID != "" || spec.KMSSecretKeyID != "" {
		// Keys may be given as IDs or aliases, which IAM resources cannot
		// name; limiting use to the two services that need them is as tight.
		stmts = append(stmts, obj{"Sid": "Keys", "Effect": "Allow",
			"Action":   []any{"kms:Decrypt", "kms:GenerateDataKey"},
			"Resource": "*",
			"Condition": obj{"StringEquals": obj{"kms:ViaService": []any{
				cfnSub("s3.${AWS::Region}.amazonaws.com"),
				cfnSub("secretsmanager.${AWS::Region}.amazonaws.com"),
			}}},
		})
	}
	s.add("RunnerPolicy", "AWS::IAM::Policy", obj{
		"PolicyName":     "silo-runner-" + spec.Name,
		"Roles":          []any{role},
		"PolicyDocument": obj{"Version": "2012-10-17", "Statement": stmts},
	})
	return role
}

// storage adds the runner's bucket (when CreateBucket): private, versioned,
// encrypted with kms_data_key_id or S3-managed keys, and reachable only over
// TLS, by the runtime role among others the account allows.
func (s *awsStack) storage() {
	enc := obj{"SSEAlgorithm": "AES256"}
	if s.spec.KMSDataKeyID != "" {
		enc = obj{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": s.spec.KMSDataKeyID}
	}
	b := s.add("Bucket", "AWS::S3::Bucket", obj{
		"BucketName": s.bucket,
		"BucketEncryption": obj{"ServerSideEncryptionConfiguration": []any{obj{
			"ServerSideEncryptionByDefault": enc, "BucketKeyEnabled": s.spec.KMSDataKeyID != "",
		}}},
		"PublicAccessBlockConfiguration": obj{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"OwnershipControls":       obj{"Rules": []any{obj{"ObjectOwnership": "BucketOwnerEnforced"}}},
		"VersioningConfiguration": obj{"Status": "Enabled"},
		"Tags":                    s.tags,
	})
	// The bucket holds an organisation's data: deleting the stack must not
	// delete it.
	b["Condition"], b["DeletionPolicy"], b["UpdateReplacePolicy"] = "CreateBucket", "Retain", "Retain"

	bucketARN := "arn:aws:s3:::" + s.bucket
	stmts := []any{obj{
		"Sid": "TLSOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
		"Resource":  []any{bucketARN, bucketARN + "/*"},
		"Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
	}}
	if s.spec.RuntimeRoleARN != "" {
		stmts = append(stmts, obj{
			"Sid": "Runner", "Effect": "Allow", "Principal": obj{"AWS": s.spec.RuntimeRoleARN},
			"Action":   []any{"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
			"Resource": []any{bucketARN, bucketARN + "/*"},
		})
	}
	p := s.add("BucketPolicy", "AWS::S3::BucketPolicy", obj{
		"Bucket":         ref("Bucket"),
		"PolicyDocument": obj{"Version": "2012-10-17", "Statement": stmts},
	})
	p["Condition"] = "CreateBucket"
}

// userDataLimit is EC2's limit on user data, before base64.
const userDataLimit = 16 << 10

// userData returns the instance's boot script as an Fn::Sub: it installs
// Docker, writes the runner's configuration, fetches the token from Secrets
// Manager and runs the runner container within the spec's vCPUs and memory.
func (s *awsStack) userData() (any, error) {
	spec, rc := s.spec, s.rc
	onInstance := rc
	onInstance.CABundlePEM = ""
	const caPath = "/etc/silo/ca.pem"
	if rc.CABundlePEM != "" {
		onInstance.CAFile = caPath
	}
	conf, err := marshal(onInstance)
	if err != nil {
		return nil, err
	}
	noProxy := "169.254.169.254,169.254.170.2,localhost,127.0.0.1"

	// The script is the text of an Fn::Sub: its own ${…} are substitutions,
	// and every value from the spec or config is escaped with lit.
	var b strings.Builder
	lit := cfnLiteral
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	heredoc := func(path, content string) {
		line("cat > %s <<'SILO_EOF'", path)
		b.WriteString(lit(content))
		if !strings.HasSuffix(content, "\n") {
			b.WriteString("\n")
		}
		line("SILO_EOF")
	}
	line("#!/bin/bash")
	line("# Silo task runner %s (workspace %s). Generated by Silo; see README.md.", lit(spec.Name), lit(s.cfg.Workspace))
	line("set -euo pipefail")
	line("install -d -m 0755 /etc/silo")
	// The image runs as distroless's nonroot user (65532).
	line("install -d -m 0700 -o 65532 -g 65532 /var/lib/silo")
	if p := spec.EgressProxyURL; p != "" {
		q := lit(shellQuote(p))
		line("export HTTPS_PROXY=%s HTTP_PROXY=%s NO_PROXY=%s", q, q, noProxy)
		line("grep -q '^proxy=' /etc/dnf/dnf.conf || echo %s >> /etc/dnf/dnf.conf", lit(shellQuote("proxy="+p)))
	}
	line("command -v docker >/dev/null || dnf install -y docker")
	if p := spec.EgressProxyURL; p != "" {
		line("install -d /etc/systemd/system/docker.service.d")
		heredoc("/etc/systemd/system/docker.service.d/silo-proxy.conf",
			fmt.Sprintf("[Service]\nEnvironment=\"HTTPS_PROXY=%s\" \"HTTP_PROXY=%s\" \"NO_PROXY=%s\"\n", p, p, noProxy))
		line("systemctl daemon-reload")
	}
	line("systemctl enable --now docker")
	heredoc("/etc/silo/silo-runner.json", string(conf))
	if rc.CABundlePEM != "" {
		heredoc(caPath, rc.CABundlePEM)
	}
	env := fmt.Sprintf("%s=%s\n%s=%s\n%s=%d\n%s=%s\n", EnvServer, rc.ServerURL, EnvStorageRoot, rc.StoragePath,
		EnvVCPU, rc.VCPU, EnvMemory, memorySize(rc.MemoryMB))
	if p := spec.EgressProxyURL; p != "" {
		env += fmt.Sprintf("%s=%s\nNO_PROXY=%s\n", EnvHTTPSProxy, p, noProxy)
	}
	if rc.CABundlePEM != "" {
		env += EnvCAFile + "=" + caPath + "\n"
	}
	heredoc("/etc/silo/runner.env", env)
	// The policy's location is a parameter: substituted by CloudFormation
	// into a quoted heredoc, which the shell leaves as it is.
	line("cat >> /etc/silo/runner.env <<'SILO_EOF'")
	line("%s=${PolicyLocation}", EnvPolicy)
	line("SILO_EOF")
	if img := spec.ContainerRegistryURL; img != "" {
		// The image is a `docker save` archive in S3 (SPEC §2).
		line(`IMAGE=$(aws s3 cp %s - | docker load -q | sed -n 's/^Loaded image[^:]*: //p' | tail -n 1)`, lit(shellQuote(img)))
	} else {
		line(`IMAGE="${RunnerImage}"`)
		line(`docker pull "$IMAGE"`)
	}
	// The token goes from Secrets Manager to the container's environment
	// and is never written to disk.
	line(`SILO_RUNNER_TOKEN=$(aws secretsmanager get-secret-value --region "${AWS::Region}" --secret-id "${RunnerTokenSecret}" --query SecretString --output text)`)
	line(`export SILO_RUNNER_TOKEN`)
	line(`docker rm -f silo-runner >/dev/null 2>&1 || true`)
	line(`docker run -d --name silo-runner --restart unless-stopped --cpus %d --memory %dg \`, rc.VCPU, rc.MemoryMB/1024)
	line(`  --env-file /etc/silo/runner.env -e SILO_RUNNER_TOKEN \`)
	line(`  -v /etc/silo:/etc/silo:ro -v /var/lib/silo:/var/lib/silo \`)
	line(`  "$IMAGE" runner`)

	if b.Len() > userDataLimit {
		return nil, silo.Errorf(silo.EINVALID, "the runner's boot script is %d bytes, over EC2's %d-byte user data limit: give a CA bundle with only the CAs that sign the server's certificate", b.Len(), userDataLimit)
	}
	return cfnSub(b.String()), nil
}
