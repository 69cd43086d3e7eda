package blob

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/silofl/silo"
)

// #nosec G101 -- help text, not a credential
const noCredsHelp = "give the runner AWS credentials the standard way: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws (AWS_PROFILE, SSO included), a web identity token (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), a container role, or an EC2 instance profile (as Silo's AWS bundle does)"

// withDefaultAWSConfig completes c from the AWS SDK's default chain where
// it gives no credentials or region: environment variables, the shared
// config and credentials files (profiles, SSO), web identity, ECS/EKS
// container credentials and the EC2 instance role, and the region from the
// environment, the profile or the instance's metadata. It is the chain every
// AWS tool follows, so a runner is configured like any of them.
func withDefaultAWSConfig(ctx context.Context, c S3Config) (S3Config, error) {
	needCreds := c.Credentials == nil && c.AccessKeyID == "" && c.SecretAccessKey == ""
	if !needCreds && (c.Region != "" || c.Endpoint != "") {
		return c, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return c, silo.Errorf(silo.EINVALID, "the runner's AWS configuration could not be read: %v; fix it (AWS_PROFILE, ~/.aws/config) or %s", err, noCredsHelp)
	}
	if cfg.Region == "" && c.Region == "" && c.Endpoint == "" && !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		// On EC2 without AWS_REGION: the instance's own region. Off EC2
		// this fails fast, and the caller says a region is missing.
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if out, err := imds.NewFromConfig(cfg).GetRegion(rctx, nil); err == nil {
			cfg.Region = out.Region
		}
		cancel()
	}
	if needCreds {
		c.Credentials = explainedCredentials{cfg.Credentials}
	}
	if c.Region == "" {
		c.Region = cfg.Region
	}
	return c, nil
}

// explainedCredentials says, when no source in the chain has credentials,
// where the runner looked and how to give it some.
type explainedCredentials struct{ p aws.CredentialsProvider }

func (e explainedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if e.p == nil {
		return aws.Credentials{}, silo.Errorf(silo.EINVALID, "the runner has no AWS credentials: %s", noCredsHelp)
	}
	creds, err := e.p.Retrieve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return aws.Credentials{}, ctx.Err()
		}
		return aws.Credentials{}, silo.Errorf(silo.EINVALID, "the runner has no AWS credentials (%s): %s", shorten(err), noCredsHelp)
	}
	return creds, nil
}

// shorten keeps an SDK error readable in one line.
func shorten(err error) string {
	s := fmt.Sprint(err)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
