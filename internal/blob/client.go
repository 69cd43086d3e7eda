package blob

// The S3 and Azure clients every user of a runner's storage builds: the
// runner reading its data, and the server provisioning that storage (which
// is why they live here, below provision).

import (
	"errors"
	"fmt"
	neturl "net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/silofl/silo"
)

// S3Config says how to reach S3 or an S3-compatible store.
type S3Config struct {
	Region string
	// Endpoint is an S3-compatible store's URL; empty means AWS.
	Endpoint string
	// UsePathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, as most S3-compatible stores need.
	UsePathStyle bool

	// Static credentials, or Credentials (for example an assumed role's).
	AccessKeyID, SecretAccessKey, SessionToken string
	Credentials                                aws.CredentialsProvider
}

// NewS3Client returns an S3 client for cfg.
func NewS3Client(cfg S3Config) (*s3.Client, error) {
	opts := s3.Options{Region: cfg.Region, UsePathStyle: cfg.UsePathStyle, Credentials: cfg.Credentials}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
		if opts.Region == "" {
			opts.Region = "us-east-1" // S3-compatible stores ignore it, but signing needs one
		}
		// Only send checksums S3 requires: many S3-compatible stores do
		// not understand the newer default trailing checksums.
		opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	if opts.Region == "" {
		return nil, silo.FieldErrorf("region", "an S3 client needs a region")
	}
	if opts.Credentials == nil {
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, silo.Errorf(silo.EINVALID, "no S3 credentials: give an access key and secret, or a credentials provider")
		}
		opts.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	}
	return s3.New(opts), nil
}

// S3Describe shortens an S3 error to its status, code and message when it
// has them; the SDK's full text repeats the operation and request IDs. Provisioning
// reports errors the same way.
func S3Describe(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("HTTP %d %s: %s", S3Status(err), ae.ErrorCode(), ae.ErrorMessage())
	}
	return err.Error()
}

// S3Status is the HTTP status of an S3 error, or 0.
func S3Status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// S3Code is the error code of an S3 error (AccessDenied…), or "".
func S3Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// AzureConfig says how to reach an Azure storage account: a connection
// string, or an account with its key or a token credential (for example a
// service principal's).
type AzureConfig struct {
	ConnectionString string

	AccountName string
	AccountKey  string
	Credential  azcore.TokenCredential
	// ServiceURL is the blob endpoint; default https://<account>.blob.core.windows.net/.
	ServiceURL string
}

// NewAzureClient returns a blob client for cfg.
func NewAzureClient(cfg AzureConfig) (*azblob.Client, error) {
	if cfg.ConnectionString != "" {
		c, err := azblob.NewClientFromConnectionString(cfg.ConnectionString, nil)
		if err != nil {
			return nil, silo.Errorf(silo.EINVALID, "Azure storage connection string: %v", err)
		}
		return c, nil
	}
	url := cfg.ServiceURL
	if url == "" {
		if cfg.AccountName == "" {
			return nil, silo.Errorf(silo.EINVALID, "Azure storage: give a connection string, a service URL or an account name")
		}
		url = "https://" + cfg.AccountName + ".blob.core.windows.net/"
	}
	switch {
	case cfg.Credential != nil:
		return azblob.NewClient(url, cfg.Credential, nil)
	case cfg.AccountKey != "":
		cred, err := azblob.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			return nil, silo.Errorf(silo.EINVALID, "Azure storage account key: %v", err)
		}
		return azblob.NewClientWithSharedKeyCredential(url, cred, nil)
	default:
		// The standard chain: managed identity (Silo's Azure bundle gives
		// the runner one), workload identity, or the AZURE_* environment.
		cred, err := defaultAzureCredential()
		if err != nil {
			return nil, silo.Errorf(silo.EINVALID, "Azure storage %s: no account key, and no Azure identity (managed identity, workload identity, or AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET): %v", url, err)
		}
		return azblob.NewClient(url, cred, nil)
	}
}

// hasSAS reports whether a blob service URL carries a SAS token, which
// authorises requests by itself.
func hasSAS(serviceURL string) bool {
	u, err := neturl.Parse(serviceURL)
	return err == nil && serviceURL != "" && u.Query().Get("sig") != ""
}

// defaultAzureCredential is azidentity's default chain: the AZURE_*
// environment (a service principal), workload identity (AKS) and managed
// identity (Azure VMs, Container Instances, App Service), the ways an Azure
// deployment gives a program an identity without a secret in its config.
func defaultAzureCredential() (azcore.TokenCredential, error) {
	return azidentity.NewDefaultAzureCredential(nil)
}
