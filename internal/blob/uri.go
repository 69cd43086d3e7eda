package blob

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/silofl/silo"
)

// URI schemes: one per kind of runner storage (SPEC §3).
const (
	SchemeFile  = "file"  // local runners: a path inside the runner's storage root
	SchemeS3    = "s3"    // AWS runners
	SchemeAzure = "azure" // Azure runners: a blob container of the runner's storage account
)

// s3BucketSuffix ends every bucket Silo uses (SPEC §2).
const s3BucketSuffix = ".silo"

// maxKeyLen is S3's and Azure's limit on a key or blob name (bytes for S3,
// characters for Azure; the byte limit is the stricter).
const maxKeyLen = 1024

// URI names data in a runner's storage: a file, or a folder (prefix) of files.
//
// Path is decoded (no percent-escapes). For file URIs it is the absolute
// path; for s3 and azure it is the key or prefix inside Bucket, without a
// leading "/", and "" for the whole bucket. A trailing "/" is kept: it says
// the URI names a folder.
type URI struct {
	Scheme string // SchemeFile, SchemeS3 or SchemeAzure
	Bucket string // S3 bucket or Azure container; "" for file
	Path   string
}

const uriForms = "file:///<path> (local runners), s3://<bucket>.silo/<key or prefix> (AWS runners) or azure://<container>/<path> (Azure runners)"

// ParseURI parses a dataset URI strictly, so that what reaches a store is
// exactly what the user meant: a scheme is required; credentials, queries
// and fragments are refused (they would end up in logs and the database);
// "." and ".." segments and empty segments (except a trailing "/") are
// refused after percent-decoding, so "%2e%2e" is no way around them; and the
// bucket must follow its scheme's naming rules, S3 buckets ending in ".silo"
// (SPEC §2). Errors are EINVALID *silo.Error about field "uri" that say how
// to fix the URI; they never repeat a part that may hold a secret.
func ParseURI(s string) (URI, error) {
	if strings.TrimSpace(s) == "" {
		return URI{}, uriErrorf("a URI is required: use %s", uriForms)
	}
	// Checked first, without quoting s: a query may carry a SAS token, and
	// user info a password.
	if strings.ContainsAny(s, "?#") {
		return URI{}, uriErrorf("the URI must not have a query or fragment (…?… or …#…), which is where access tokens go: give the runner's credentials in its configuration, and write a ? or # that is part of a name as %%3F or %%23")
	}
	rawScheme, rest, hasScheme := strings.Cut(s, "://")
	authority, _, _ := strings.Cut(rest, "/")
	if strings.Contains(authority, "@") || !hasScheme && strings.Contains(s, "@") {
		return URI{}, uriErrorf("the URI must not contain credentials (user@ or user:password@): give the runner's credentials in its configuration, not in the URI")
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return URI{}, uriErrorf("URI %q contains control characters or invalid UTF-8: write such characters percent-encoded only if they are really part of a name", s)
	}
	if !hasScheme {
		if strings.HasPrefix(s, "/") {
			return URI{}, uriErrorf("URI %q has no scheme: for a file on a local runner write file://%s", s, s)
		}
		if rest, ok := cutPrefixFold(s, "file:"); ok && strings.HasPrefix(rest, "/") {
			return URI{}, uriErrorf("URI %q must start with file:/// (three slashes) followed by the absolute path, e.g. file:///%s", s, strings.TrimLeft(rest, "/"))
		}
		return URI{}, uriErrorf("URI %q has no scheme: use %s", s, uriForms)
	}

	scheme := strings.ToLower(rawScheme)
	switch scheme {
	case SchemeFile:
		return parseFileURI(s, authority, rest)
	case SchemeS3, SchemeAzure:
	case "s3a", "s3n":
		return URI{}, uriErrorf("URI %q: write s3:// instead of %s:// (Silo reads S3 directly)", s, scheme)
	case "abfs", "abfss", "wasb", "wasbs":
		return URI{}, uriErrorf("URI %q: write Azure data as azure://<container>/<path>; the storage account is the runner's", s)
	case "http", "https":
		if host, path, _ := strings.Cut(rest, "/"); strings.HasSuffix(strings.ToLower(host), ".blob.core.windows.net") && path != "" {
			return URI{}, uriErrorf("URI %q: write Azure blob URLs as azure://%s (container and path; the storage account is the runner's)", s, path)
		}
		return URI{}, uriErrorf("URI %q: runners read data from their own storage, not over %s: use %s", s, scheme, uriForms)
	default:
		return URI{}, uriErrorf("URI %q has unknown scheme %q: use %s", s, rawScheme, uriForms)
	}

	u := URI{Scheme: scheme, Bucket: authority}
	if err := checkBucket(s, scheme, authority); err != nil {
		return URI{}, err
	}
	_, rawPath, _ := strings.Cut(rest, "/")
	p, err := decodePath(s, rawPath)
	if err != nil {
		return URI{}, err
	}
	if len(p) > maxKeyLen {
		return URI{}, uriErrorf("URI %q: the path is %d bytes long, more than the %d that S3 keys and Azure blob names may have", s, len(p), maxKeyLen)
	}
	u.Path = p
	return u, nil
}

func parseFileURI(s, authority, rest string) (URI, error) {
	if authority != "" {
		return URI{}, uriErrorf("URI %q: file URIs name no host; write file:/// (three slashes) followed by the absolute path, e.g. file:///%s", s, rest)
	}
	p, err := decodePath(s, strings.TrimPrefix(rest, "/"))
	if err != nil {
		return URI{}, err
	}
	return URI{Scheme: SchemeFile, Path: "/" + p}, nil
}

// decodePath percent-decodes a path (without its leading "/") and checks
// the decoded form, which is what stores see.
func decodePath(s, raw string) (string, error) {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "", uriErrorf("URI %q has a %% that does not start a percent-escape: write a literal %% as %%25", s)
	}
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return "", uriErrorf("URI %q decodes to a path with control characters or invalid UTF-8: check its percent-escapes", s)
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		switch {
		case seg == "..":
			return "", uriErrorf("URI %q must not contain .. (a parent folder, also when written %%2e%%2e): name the data by its full path from the top", s)
		case seg == ".":
			return "", uriErrorf("URI %q must not contain . segments (./): remove them", s)
		case seg == "" && i < len(segs)-1:
			return "", uriErrorf("URI %q must not contain empty path segments (// inside the path): remove the extra /", s)
		}
	}
	return p, nil
}

var azureContainerRE = regexp.MustCompile(`^[a-z0-9](?:-?[a-z0-9])*$`)

// checkBucket checks an S3 bucket or Azure container name.
func checkBucket(s, scheme, b string) error {
	if scheme == SchemeAzure {
		const rule = "3–63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
		switch {
		case b == "":
			return uriErrorf("URI %q names no container: use azure://<container>/<path>", s)
		case len(b) < 3 || len(b) > 63 || !azureContainerRE.MatchString(b):
			return uriErrorf("URI %q: %q is not a valid Azure container name: use %s", s, b, rule)
		}
		return nil
	}
	if b == "" {
		return uriErrorf("URI %q names no bucket: use s3://<bucket>.silo/<key or prefix>", s)
	}
	if p := silo.S3BucketProblem(b); p != "" {
		fix := ""
		if l := strings.ToLower(b); l != b && silo.S3BucketProblem(l) == "" {
			fix = fmt.Sprintf(" (e.g. %q)", l)
		}
		return uriErrorf("URI %q: %q is not a valid S3 bucket name: %s%s", s, b, p, fix)
	}
	if !strings.HasSuffix(b, s3BucketSuffix) {
		return uriErrorf("URI %q: bucket %q must end in %q (e.g. s3://%s%s/…): Silo only uses buckets named for it, normally the runner's storage_path", s, b, s3BucketSuffix, b, s3BucketSuffix)
	}
	return nil
}

// String returns u as ParseURI accepts it: ParseURI(u.String()) == u for
// every URI ParseURI returns. Only what would change the meaning (%, ?, #)
// and what is invisible (spaces, non-graphic characters) is percent-encoded,
// so that paths stay readable in messages.
func (u URI) String() string {
	if u.Scheme == SchemeFile {
		return "file://" + escapePath(u.Path)
	}
	s := u.Scheme + "://" + u.Bucket
	if u.Path != "" {
		s += "/" + escapePath(u.Path)
	}
	return s
}

func escapePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r == '%' || r == '?' || r == '#' || r == ' ' || !unicode.IsGraphic(r) {
			var buf [utf8.UTFMax]byte
			for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
				fmt.Fprintf(&b, "%%%02X", c)
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func uriErrorf(format string, args ...any) error {
	return silo.FieldErrorf("uri", format, args...)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// Location is the canonical name of the data u names, which privacy
// controls bind to (rather than to a dataset's name): scheme, bucket and
// path, without a trailing "/", so that a folder and the same folder written
// with a slash are one location. A file path is only cleaned here; a runner
// names local data by its real path (FileStore.RealPath), links resolved.
func (u URI) Location() string {
	p := strings.TrimSuffix(u.Path, "/")
	if u.Scheme == SchemeFile && p == "" {
		p = "/"
	}
	return URI{Scheme: u.Scheme, Bucket: u.Bucket, Path: p}.String()
}

// LocationWithin reports whether location loc is prefix or lies under it,
// by whole path segments: file:///srv/a covers file:///srv/a/x.csv, not
// file:///srv/ab.csv.
func LocationWithin(loc, prefix string) bool {
	if loc == prefix {
		return true
	}
	return strings.HasPrefix(loc, strings.TrimSuffix(prefix, "/")+"/")
}

// LocationsOverlap reports whether reading one location reads data of the
// other: one is the other or lies under it.
func LocationsOverlap(a, b string) bool {
	return LocationWithin(a, b) || LocationWithin(b, a)
}
