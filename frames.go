package silo

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Frames carry a task, or a task's result, and its binary parts in
// one HTTP body: a line of JSON (the header, which lists the parts),
// then each part's bytes in the listed order and sizes. Model
// parameters and blinded sets so travel as raw bytes, never as base64 in
// JSON, and a receiver can stream a large part to disk or to the
// store without holding the body.
const FramesContentType = "application/vnd.silo.frames"

// HaveHeader lists the digests of parts a runner holds, so the server sends
// a task's unchanged parts (a session's setup) only once. A runner may list
// only each digest's first characters, at least MinHaveDigest of them: the
// header rides on every request, and a part wrongly taken for one it holds
// costs only a fetch of that part, which it checks against the whole
// digest.
const HaveHeader = "X-Silo-Have"

// MinHaveDigest is the fewest characters of a digest a runner lists.
const MinHaveDigest = 8

// PartDigestChars is how much of a part's digest a task carries: 64 bits
// tell a runner's few cached parts apart, and a receiver checks the bytes it
// gets against them (HasDigest).
const PartDigestChars = 16

// HasDigest reports whether b is the content a part's digest (whole, or its
// first characters, as a task carries it) names.
func HasDigest(b []byte, digest string) bool {
	return len(digest) >= MinHaveDigest && strings.HasPrefix(Digest(b), digest)
}

// MaxPartBytes bounds one part: a blinded set of tens of millions of
// records, a model of the largest allowed size.
const MaxPartBytes = 2 << 30

// Part describes one binary part of a frames body.
type Part struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Digest identifies the content (Digest below), so a runner can keep
	// what does not change from task to task and ask not to be sent it.
	Digest string `json:"digest,omitempty"`
	// Cached marks an part whose bytes are not in this body: the
	// receiver said it holds Digest.
	Cached bool `json:"cached,omitempty"`
	// Path is a local file that holds the part's bytes — a large part a
	// runner received and spilled to disk, or a large result part it sends
	// from disk — and never travels.
	Path string `json:"-"`
}

// partName bounds part names to what kinds use ("params",
// "task/ID/blinded"): no path tricks, nothing to escape.
var partName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,127}$`)

// CheckParts refuses a list with a bad or repeated name, a negative
// size, or more than max bytes in all.
func CheckParts(list []Part, max int64) error {
	var total int64
	seen := map[string]bool{}
	for _, a := range list {
		if !partName.MatchString(a.Name) {
			return Errorf(EINVALID, "part name %.40q must be 1–128 letters, digits, '_', '.', '/' or '-'", a.Name)
		}
		if seen[a.Name] {
			return Errorf(EINVALID, "part %s is listed twice", a.Name)
		}
		seen[a.Name] = true
		if a.Size < 0 || a.Size > max {
			return Errorf(EINVALID, "part %s claims %d bytes; the limit is %d", a.Name, a.Size, max)
		}
		if !a.Cached {
			total += a.Size
		}
		if total > max {
			return Errorf(EINVALID, "parts hold more than %d bytes", max)
		}
	}
	return nil
}

// Digest names content: the first 128 bits of its SHA-256, in hex.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// WriteFrames writes header as one line of JSON, then each body in order.
// The header must list the bodies' parts with their exact sizes.
func WriteFrames(w io.Writer, header any, bodies ...io.Reader) error {
	b, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	for _, r := range bodies {
		if _, err := io.Copy(w, r); err != nil {
			return err
		}
	}
	return nil
}

// ErrFrameHeaderTooLarge is a frames header over the reader's limit.
var ErrFrameHeaderTooLarge = errors.New("frames header too large")

// ReadFrameHeader reads the header line of a frames body (at most max
// bytes) into v, strictly: unknown fields are errors. The reader is left
// at the first part.
func ReadFrameHeader(r *bufio.Reader, max int, v any) error {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return ErrFrameHeaderTooLarge
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return errors.New("frames body ends before its header does")
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("frames header: %w", err)
	}
	if dec.InputOffset() != int64(len(bytes.TrimRight(line, " \t\r\n"))) {
		return errors.New("frames header: data after its JSON")
	}
	return nil
}
