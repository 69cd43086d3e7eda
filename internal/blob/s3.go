package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/silofl/silo"
)

// S3Store is an S3 bucket (or one of an S3-compatible store).
type S3Store struct {
	client *s3.Client
	bucket string
	// partSize is how much Put buffers per request: objects up to it go
	// in one PutObject, larger ones as a multipart upload of such parts.
	partSize int64
}

// defaultPartSize bounds Put's memory; with S3's 10,000 parts it allows
// objects up to 160 GiB. S3 requires parts of at least 5 MiB.
const defaultPartSize = 16 << 20

// maxParts is S3's limit on the parts of a multipart upload.
const maxParts = 10000

// NewS3Store returns the store for bucket, reached through client (see
// NewS3Client).
func NewS3Store(client *s3.Client, bucket string) *S3Store {
	return &S3Store{client: client, bucket: bucket, partSize: defaultPartSize}
}

func (s *S3Store) uri(key string) string {
	return URI{Scheme: SchemeS3, Bucket: s.bucket, Path: key}.String()
}

// List implements Store. Keys ending in "/" (folder placeholders made by
// consoles) are skipped. Only s3:ListBucket is needed.
func (s *S3Store) List(ctx context.Context, path string) ([]Object, error) {
	if err := checkData(s.uri(path), path); err != nil {
		return nil, err
	}
	prefix := path
	if path != "" && path[len(path)-1] != '/' {
		// path itself, if it is an object, is the first key with prefix path:
		// it is the shortest.
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket), Prefix: aws.String(path), MaxKeys: aws.Int32(1),
		})
		if err != nil {
			return nil, s.fail(ctx, opList, path, err)
		}
		if len(out.Contents) > 0 && aws.ToString(out.Contents[0].Key) == path {
			return []Object{{Key: path, Size: aws.ToInt64(out.Contents[0].Size)}}, nil
		}
		prefix = path + "/"
	}
	var objs []Object
	hidden := 0
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.fail(ctx, opList, path, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			switch {
			case len(key) == 0 || key[len(key)-1] == '/':
			case hiddenBelow(prefix, key):
				hidden++
			default:
				objs = append(objs, Object{Key: key, Size: aws.ToInt64(o.Size)})
			}
		}
	}
	if len(objs) == 0 {
		return nil, emptyFolder(s.uri(path), hidden)
	}
	sortObjects(objs)
	return objs, nil
}

// Open implements Store.
func (s *S3Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, s.fail(ctx, opRead, key, err)
	}
	return out.Body, nil
}

// ReaderAt implements Store with ranged GetObject requests.
func (s *S3Store) ReaderAt(ctx context.Context, obj Object) io.ReaderAt {
	return &rangeReader{ctx: ctx, obj: obj, get: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		if err := checkData(s.uri(obj.Key), obj.Key); err != nil {
			return nil, err
		}
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(obj.Key),
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
		})
		if err != nil {
			return nil, s.fail(ctx, opRead, obj.Key, err)
		}
		return out.Body, nil
	}}
}

// rangeReader is an io.ReaderAt over ranged requests to an object of known
// size, shared by S3 and Azure.
type rangeReader struct {
	ctx context.Context
	obj Object
	// get returns n > 0 bytes at off, which lie inside the object.
	get func(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at negative offset %d", r.obj.Key, off)
	}
	if off >= r.obj.Size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.obj.Size-off)
	if n == 0 {
		return 0, nil
	}
	body, err := r.get(r.ctx, off, n)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	got, err := io.ReadFull(body, p[:n])
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("read %s: got %d of %d bytes at offset %d: the object changed while it was being read", r.obj.Key, got, n, off)
		}
		return got, err
	}
	if n < int64(len(p)) {
		return got, io.EOF
	}
	return got, nil
}

// Put implements Store. Data up to the part size is one PutObject; more is
// a multipart upload, aborted if anything fails, so that no partial object
// ever appears.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	r = ctxReader{ctx, r}
	var buf bytes.Buffer
	n, err := io.CopyN(&buf, r, s.partSize)
	if err == io.EOF {
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key),
			Body: bytes.NewReader(buf.Bytes()), ContentLength: aws.Int64(n),
		})
		if err != nil {
			return s.fail(ctx, opWrite, key, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("writing %s: %w", s.uri(key), err)
	}

	// Checksums as the SDK would send them by default; S3-compatible
	// stores, reached with checksums only when required, get none.
	var sum s3types.ChecksumAlgorithm
	if s.client.Options().RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired {
		sum = s3types.ChecksumAlgorithmCrc32
	}
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), ChecksumAlgorithm: sum,
	})
	if err != nil {
		return s.fail(ctx, opWrite, key, err)
	}
	abort := func(err error) error {
		// The upload's parts cost storage until aborted, even if ctx is done.
		actx := context.WithoutCancel(ctx)
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: up.UploadId})
		return err
	}
	var parts []s3types.CompletedPart
	for num := int32(1); ; num++ {
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(buf.Bytes()),
			ContentLength: aws.Int64(int64(buf.Len())), ChecksumAlgorithm: sum,
		})
		if err != nil {
			return abort(s.fail(ctx, opWrite, key, err))
		}
		parts = append(parts, s3types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
		buf.Reset()
		if _, err := io.CopyN(&buf, r, s.partSize); err == io.EOF && buf.Len() == 0 {
			break
		} else if err != nil && err != io.EOF {
			return abort(fmt.Errorf("writing %s: %w", s.uri(key), err))
		}
		if num == maxParts {
			return abort(silo.Errorf(silo.EINVALID, "cannot write %s: it is larger than %d parts of %d MiB, the most one upload may have", s.uri(key), maxParts, s.partSize>>20))
		}
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: up.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(s.fail(ctx, opWrite, key, err))
	}
	return nil
}

func (s *S3Store) checkKey(key string) error {
	if key == "" || key[len(key)-1] == '/' {
		return silo.Errorf(silo.EINVALID, "%s names a folder, not a file: give a file's key", s.uri(key))
	}
	return checkData(s.uri(key), key)
}

// GetRecord implements Records.
func (s *S3Store) GetRecord(ctx context.Context, key string) ([]byte, string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", s.fail(ctx, opRead, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", s.fail(ctx, opRead, key, err)
	}
	return b, aws.ToString(out.ETag), nil
}

// PutRecord implements Records with a conditional PutObject (If-Match, or
// If-None-Match: * for a new object), which S3 checks atomically.
func (s *S3Store) PutRecord(ctx context.Context, key string, b []byte, version string) error {
	in := &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))}
	if version == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(version)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		// 409 ConditionalRequestConflict: a concurrent conditional write.
		if code := S3Code(err); code == "PreconditionFailed" || code == "ConditionalRequestConflict" || S3Status(err) == 412 {
			return fmt.Errorf("writing %s: %w", s.uri(key), ErrVersionChanged)
		}
		return s.fail(ctx, opWrite, key, err)
	}
	return nil
}

// op is what a request was doing, for error messages.
type op int

const (
	opList op = iota
	opRead
	opWrite
)

func (o op) doing() string { return [...]string{"listing", "reading", "writing"}[o] }

// fail turns an SDK error into one a person can act on.
func (s *S3Store) fail(ctx context.Context, o op, key string, err error) error {
	where := s.uri(key)
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", o.doing(), where, ctx.Err())
	}
	var se *silo.Error
	if errors.As(err, &se) { // from the credentials provider
		return se
	}
	code := S3Code(err)
	var noBucket *s3types.NoSuchBucket
	var noKey *s3types.NoSuchKey
	switch {
	case errors.As(err, &noBucket) || code == "NoSuchBucket":
		return silo.Errorf(silo.ENOTFOUND, "bucket %s does not exist — check the runner's storage_path (and that the URI names the runner's bucket)", s.bucket)
	case errors.As(err, &noKey) || code == "NoSuchKey" || o == opRead && S3Status(err) == 404:
		return silo.Errorf(silo.ENOTFOUND, "no file at %s", where)
	case slices.Contains([]string{"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}, code):
		return silo.Errorf(silo.EFORBIDDEN, "the runner's AWS credentials were refused %s %s (%s): check its access key, or its role's session", o.doing(), where, code)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException":
		return silo.Errorf(silo.EINVALID, "bucket %s is not in the runner's region %s: run the runner in the bucket's region, or configure that region", s.bucket, s.client.Options().Region)
	case S3Status(err) == 403 || slices.Contains([]string{"AccessDenied", "Forbidden", "AllAccessDisabled", "KMS.AccessDeniedException"}, code):
		if o == opWrite {
			return silo.Errorf(silo.EFORBIDDEN, "access denied writing %s: the runner's role needs s3:PutObject on it (and kms:GenerateDataKey on the bucket's KMS key, if it has one)", where)
		}
		return silo.Errorf(silo.EFORBIDDEN, "access denied to %s: the runner's role needs s3:GetObject and s3:ListBucket on it (and kms:Decrypt on the bucket's KMS key, if it has one)", where)
	case S3Status(err) == 0:
		return silo.Errorf(silo.EINVALID, "cannot reach S3 at %s %s (%v): check the runner's network and proxy (HTTPS_PROXY), its S3 endpoint and its region", s.endpoint(), where, netCause(err))
	}
	return silo.Errorf(silo.EINTERNAL, "S3 failed %s %s: %s", o.doing(), where, S3Describe(err))
}

func (s *S3Store) endpoint() string {
	o := s.client.Options()
	if e := aws.ToString(o.BaseEndpoint); e != "" {
		return e
	}
	return "s3." + o.Region + ".amazonaws.com"
}

// netCause returns the network error inside err (such as "dial tcp
// 10.0.0.1:443: connect: connection refused"), or err.
func netCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return err
}
