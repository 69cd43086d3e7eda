package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
)

// Storage is a runner's storage (an S3 bucket or a blob container) as the
// server provisions it.
type Storage interface {
	// Ensure creates the storage if it is missing, else verifies it, and
	// then proves that it can write, read and delete an object there. Its
	// errors are *silo.Error messages that say what to fix.
	Ensure(ctx context.Context) error
}

// ProbeKey is the object Ensure writes, reads back and deletes.
const ProbeKey = ".silo/probe"

func probeData() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return []byte("silo storage probe " + hex.EncodeToString(b) + "\n")
}

// S3Storage is a runner's S3 bucket.
type S3Storage struct {
	client *s3.Client
	bucket string
	region string
}

// NewS3Storage returns the bucket in region reached through client.
func NewS3Storage(client *s3.Client, bucket, region string) *S3Storage {
	return &S3Storage{client: client, bucket: bucket, region: region}
}

// Ensure creates the bucket if it is missing (with versioning on; new AWS
// buckets are private and encrypted by default) and probes it.
func (s *S3Storage) Ensure(ctx context.Context) error {
	head, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	switch {
	case err == nil:
		if r := aws.ToString(head.BucketRegion); r != "" && s.region != "" && r != s.region {
			return s.errorf("is in region %s, not the runner's region %s: choose another storage_path or region", r, s.region)
		}
	case s3NotFound(err):
		if err := s.create(ctx); err != nil {
			return err
		}
	case s3Denied(err) && ctx.Err() == nil:
		// HEAD responses have no error code to tell the two apart.
		return s.errorf("access denied checking that it exists — check the provisioner role's s3:ListBucket permission; bucket names are global, so it may also belong to another AWS account")
	default:
		return s.fail(ctx, "checking that it exists", role("s3:ListBucket"), err)
	}

	data := probeData()
	key := aws.String(ProbeKey)
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: key, Body: bytes.NewReader(data)}); err != nil {
		return s.fail(ctx, "writing the probe object "+ProbeKey, role("s3:PutObject")+" (and, if the bucket uses a KMS key, its kms:GenerateDataKey on that key)", err)
	}
	obj, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: key})
	if err != nil {
		return s.fail(ctx, "reading the probe object "+ProbeKey, role("s3:GetObject"), err)
	}
	got, err := io.ReadAll(obj.Body)
	_ = obj.Body.Close()
	if err != nil {
		return s.fail(ctx, "reading the probe object "+ProbeKey, role("s3:GetObject"), err)
	}
	if !bytes.Equal(got, data) {
		return s.errorf("the probe object %s read back differently from what was written: check the bucket's replication or lifecycle rules", ProbeKey)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: key}); err != nil {
		return s.fail(ctx, "deleting the probe object "+ProbeKey, role("s3:DeleteObject"), err)
	}
	return nil
}

func (s *S3Storage) create(ctx context.Context) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	// us-east-1 is S3's default location and refuses to be named.
	if s.region != "" && s.region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{
			LocationConstraint: s3types.BucketLocationConstraint(s.region),
		}
	}
	_, err := s.client.CreateBucket(ctx, in)
	var owned *s3types.BucketAlreadyOwnedByYou
	var taken *s3types.BucketAlreadyExists
	switch {
	case err == nil, errors.As(err, &owned):
		// Created, or by a concurrent Ensure.
	case errors.As(err, &taken):
		return s.errorf("no such bucket in this account, and the name is taken by another AWS account (bucket names are global): choose another storage_path ending in .silo")
	case s3Denied(err):
		return s.fail(ctx, "creating it", role("s3:CreateBucket"), err)
	default:
		return s.fail(ctx, "no such bucket and creating it", role("s3:CreateBucket"), err)
	}
	_, err = s.client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(s.bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return s.fail(ctx, "turning on versioning", role("s3:PutBucketVersioning"), err)
	}
	return nil
}

func (s *S3Storage) errorf(format string, args ...any) error {
	return silo.Errorf(silo.EINVALID, "bucket %s: %s", s.bucket, fmt.Sprintf(format, args...))
}

// role names an S3 permission of the provisioner role.
func role(action string) string { return "the provisioner role's " + action + " permission" }

// fail explains err, from doing what, and what to check if access was denied.
func (s *S3Storage) fail(ctx context.Context, doing, check string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("bucket %s: %s: %w", s.bucket, doing, ctx.Err())
	}
	code := blob.S3Code(err)
	switch {
	case slices.Contains([]string{"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}, code):
		return s.errorf("%s: the provisioning credentials were refused (%s): check the access key or the provisioner role's session", doing, code)
	case s3Denied(err):
		return s.errorf("access denied %s — check %s", doing, check)
	case blob.S3Status(err) == 0:
		return s.errorf("%s: cannot reach S3 (%v): check the region, the endpoint and the server's network", doing, err)
	default:
		return s.errorf("%s failed: %s", doing, blob.S3Describe(err))
	}
}

func s3NotFound(err error) bool {
	var nf *s3types.NotFound
	var nb *s3types.NoSuchBucket
	return errors.As(err, &nf) || errors.As(err, &nb) || blob.S3Status(err) == 404
}

func s3Denied(err error) bool {
	c := blob.S3Code(err)
	return blob.S3Status(err) == 403 || c == "AccessDenied" || c == "Forbidden" || c == "AllAccessDisabled"
}

// AzureStorage is a runner's blob container.
type AzureStorage struct {
	client    *azblob.Client
	container string
}

// NewAzureStorage returns the container reached through client.
func NewAzureStorage(client *azblob.Client, container string) *AzureStorage {
	return &AzureStorage{client: client, container: container}
}

// Ensure creates the container if it is missing and probes it.
func (s *AzureStorage) Ensure(ctx context.Context) error {
	if _, err := s.client.CreateContainer(ctx, s.container, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return s.fail(ctx, "creating it", err)
	}
	data := probeData()
	if _, err := s.client.UploadBuffer(ctx, s.container, ProbeKey, data, nil); err != nil {
		return s.fail(ctx, "writing the probe blob "+ProbeKey, err)
	}
	resp, err := s.client.DownloadStream(ctx, s.container, ProbeKey, nil)
	if err != nil {
		return s.fail(ctx, "reading the probe blob "+ProbeKey, err)
	}
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return s.fail(ctx, "reading the probe blob "+ProbeKey, err)
	}
	if !bytes.Equal(got, data) {
		return s.errorf("the probe blob %s read back differently from what was written", ProbeKey)
	}
	if _, err := s.client.DeleteBlob(ctx, s.container, ProbeKey, nil); err != nil {
		return s.fail(ctx, "deleting the probe blob "+ProbeKey, err)
	}
	return nil
}

func (s *AzureStorage) errorf(format string, args ...any) error {
	return silo.Errorf(silo.EINVALID, "blob container %s at %s: %s", s.container, s.endpoint(), fmt.Sprintf(format, args...))
}

// endpoint is the client's service URL without its query, which may hold a
// SAS token: messages must not carry credentials.
func (s *AzureStorage) endpoint() string {
	u, err := url.Parse(s.client.URL())
	if err != nil {
		return "(unparsable service URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return strings.TrimSuffix(u.String(), "/")
}

func (s *AzureStorage) fail(ctx context.Context, doing string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("blob container %s: %s: %w", s.container, doing, ctx.Err())
	}
	var re *azcore.ResponseError
	isResp := errors.As(err, &re)
	switch {
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.InvalidAuthenticationInfo):
		return s.errorf("%s: the provisioning credentials were refused: check the account key or the service principal's secret and tenant", doing)
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch) || isResp && re.StatusCode == 403:
		return s.errorf("access denied %s — give the provisioning service principal the Storage Blob Data Contributor role on the storage account (or, with an account key, check the key)", doing)
	case bloberror.HasCode(err, bloberror.ContainerBeingDeleted):
		return s.errorf("%s: the container is being deleted: try again in a minute", doing)
	case bloberror.HasCode(err, bloberror.AccountIsDisabled):
		return s.errorf("%s: the storage account is disabled", doing)
	case !isResp:
		return s.errorf("%s: cannot reach the storage account (%v): check that it exists (deploy the bundle's template first) and the server's network", doing, err)
	default:
		return s.errorf("%s failed: %v", doing, err)
	}
}
