package blob

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/silofl/silo"
)

// defaultAWSCredentials returns the credentials of a runner whose config
// gives none: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with
// AWS_SESSION_TOKEN) if set, else the EC2 instance profile's, through
// IMDSv2 — where Silo's AWS bundle runs the runner. This is the part of the
// SDK's default chain runners need; the whole chain (shared config files,
// SSO, web identity) is in github.com/aws/aws-sdk-go-v2/config, which is
// not a dependency. Callers with other needs set S3Config.Credentials.
func defaultAWSCredentials() aws.CredentialsProvider {
	client := &http.Client{
		Timeout: 5 * time.Second,
		// The metadata service is link-local: never through HTTPS_PROXY,
		// and off EC2 fail fast.
		Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext},
	}
	return aws.NewCredentialsCache(envOrInstanceProfile{client: client},
		func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute })
}

type envOrInstanceProfile struct{ client *http.Client }

// #nosec G101 -- help text, not a credential
const noCredsHelp = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the runner, give it static credentials in its configuration, or run it on EC2 with an instance profile (as Silo's AWS bundle does)"

func (p envOrInstanceProfile) Retrieve(ctx context.Context) (aws.Credentials, error) {
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id != "" && secret != "" {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "EnvConfigCredentials"}, nil
	}
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		return aws.Credentials{}, silo.Errorf(silo.EINVALID, "the runner has no AWS credentials (and the instance metadata service is disabled): %s", noCredsHelp)
	}
	creds, err := p.instanceProfile(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return aws.Credentials{}, ctx.Err()
		}
		return aws.Credentials{}, silo.Errorf(silo.EINVALID, "the runner has no AWS credentials: none in its environment, and no EC2 instance profile (%v): %s", err, noCredsHelp)
	}
	return creds, nil
}

// instanceProfile gets the instance role's credentials from the EC2
// instance metadata service, version 2 (session tokens).
func (p envOrInstanceProfile) instanceProfile(ctx context.Context) (aws.Credentials, error) {
	base := strings.TrimSuffix(os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "/")
	if base == "" {
		base = "http://169.254.169.254"
	}
	token, err := p.imds(ctx, http.MethodPut, base+"/latest/api/token", "")
	if err != nil {
		return aws.Credentials{}, err
	}
	// #nosec G101 -- a metadata path, not a credential
	const credsPath = "/latest/meta-data/iam/security-credentials/"
	roles, err := p.imds(ctx, http.MethodGet, base+credsPath, token)
	if err != nil {
		return aws.Credentials{}, err
	}
	role, _, _ := strings.Cut(strings.TrimSpace(roles), "\n")
	if role == "" {
		return aws.Credentials{}, fmt.Errorf("the instance has no IAM role")
	}
	body, err := p.imds(ctx, http.MethodGet, base+credsPath+role, token)
	if err != nil {
		return aws.Credentials{}, err
	}
	var c struct {
		Code            string
		Message         string
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		Token           string
		Expiration      time.Time
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return aws.Credentials{}, fmt.Errorf("instance role %s: %v", role, err)
	}
	if c.Code != "Success" || c.AccessKeyID == "" {
		return aws.Credentials{}, fmt.Errorf("instance role %s: %s %s", role, c.Code, c.Message)
	}
	return aws.Credentials{
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.Token,
		Source: "EC2RoleProvider", CanExpire: true, Expires: c.Expiration,
	}, nil
}

// imds makes one metadata request: PUT for a session token, GET with one.
func (p envOrInstanceProfile) imds(ctx context.Context, method, url, token string) (string, error) {
	// #nosec G704 -- only the EC2 instance-metadata address
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "", err
	}
	if token == "" {
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	} else {
		req.Header.Set("X-aws-ec2-metadata-token", token)
	}
	// #nosec G704 -- as above
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("instance metadata service: %s %s: %s", method, req.URL.Path, resp.Status)
	}
	return string(b), nil
}
