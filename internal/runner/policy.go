package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
)

// Policy is the data owner's policy the runner was started with (silo runner
// --policy FILE): rules by storage prefix, each a floor of privacy controls
// that no server, admin or custodian can loosen. See docs/privacy.md.
type Policy struct {
	silo.RunnerPolicy
	// prefixes are the rules' prefixes as locations (links resolved for
	// local folders that exist), in rule order.
	prefixes [][]string
}

// maxPolicyBytes bounds a policy file.
const maxPolicyBytes = 1 << 20

// LoadPolicy reads and checks a policy file. Every mistake is an error that
// says where and how to fix it: unknown keys (a misspelt control must not
// silently loosen anything), bad prefixes, controls out of range.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path) // #nosec G304 -- the policy file the operator gave
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("policy %s is larger than 1 MiB", path)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", path, userError(err).Error())
	}
	return p, nil
}

// LoadPolicyAt reads and checks a policy at location: a local file, or an
// object in the runner's storage (s3://…, azure://…, file:///…) read once,
// with the runner's own credentials (storage), as a cloud runner, which
// has no local file to give, pins one. The digest is of the bytes read.
func LoadPolicyAt(ctx context.Context, location string, storage blob.Config) (*Policy, error) {
	if !strings.Contains(location, "://") {
		return LoadPolicy(location)
	}
	u, err := blob.ParseURI(location)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", location, silo.ErrorMessage(err))
	}
	if u.Scheme == blob.SchemeFile {
		return LoadPolicy(u.Path)
	}
	store, err := blob.Open(ctx, u, storage)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", u, silo.ErrorMessage(err))
	}
	recs, ok := store.(blob.Records)
	if !ok {
		return nil, fmt.Errorf("policy %s: the runner cannot read a policy from this storage: give a local file", u)
	}
	// A record read, not a data read: the policy may sit in the storage's
	// reserved .silo/ folder, where no dataset reads and no task writes.
	b, _, err := recs.GetRecord(ctx, u.Path)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", u, silo.ErrorMessage(err))
	}
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("policy %s is larger than 1 MiB", u)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", u, userError(err).Error())
	}
	return p, nil
}

// ParsePolicy checks a policy document (see LoadPolicy).
func ParsePolicy(b []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p.RunnerPolicy); err != nil {
		return nil, policyJSONError(err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value: a policy is one object {\"rules\": [...]}")
	}
	if p.Digest != "" {
		return nil, errors.New(`"digest" is set by the runner: remove it from the file`)
	}
	if len(p.Rules) == 0 {
		return nil, errors.New(`the policy has no rules: give "rules": [{"prefix": "file:///srv/data/", "min_records_per_aggregate": 20, …}]`)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if err := r.Validate(i); err != nil {
			return nil, err
		}
		u, err := blob.ParseURI(r.Prefix)
		if err != nil {
			return nil, fmt.Errorf("policy rule %d: prefix: %s", i+1, silo.ErrorMessage(err))
		}
		locs := []string{u.Location()}
		if u.Scheme == blob.SchemeFile {
			// The runner names local data by its real path: a prefix
			// through a link must match it too.
			if real, err := filepath.EvalSymlinks(u.Path); err == nil && real != filepath.Clean(u.Path) {
				locs = append(locs, blob.URI{Scheme: blob.SchemeFile, Path: real}.Location())
			}
		}
		p.prefixes = append(p.prefixes, locs)
	}
	sum := sha256.Sum256(b)
	p.Digest = "sha256:" + hex.EncodeToString(sum[:])
	return &p, nil
}

// policyJSONError names the policy's keys when one is unknown.
func policyJSONError(err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown key %s: a policy is {\"rules\": [...], \"refuse_unmatched\": false}, and a rule has prefix, name and the privacy controls allowed_session_types, allowed_users, require_differential_privacy, max_epsilon_per_session, epsilon_budget, delta, min_records_per_aggregate, identifier_columns, excluded_columns, allow_predictions", rest)
	}
	var se *json.SyntaxError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("not valid JSON: the document ends too early")
	}
	if errors.As(err, &se) {
		return fmt.Errorf("not valid JSON at byte %d: %v", se.Offset, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s must be a %s", te.Field, te.Type)
	}
	return fmt.Errorf("not a policy: %v", err)
}

// sources returns the floors of the rules that cover data at loc (the
// rule's prefix holds the data, or the data is a folder holding the
// prefix), or an error naming why the policy refuses the data.
func (p *Policy) sources(loc string) ([]silo.PrivacySource, error) {
	if p == nil {
		return nil, nil
	}
	var out []silo.PrivacySource
	for i, locs := range p.prefixes {
		for _, prefix := range locs {
			if blob.LocationsOverlap(loc, prefix) {
				r := &p.Rules[i]
				out = append(out, silo.PrivacySource{Name: r.Title(i), Controls: r.Floor()})
				break
			}
		}
	}
	if len(out) == 0 && p.RefuseUnmatched {
		return nil, fmt.Errorf("refused by the runner: no rule of its policy (%s) covers %s, and the policy refuses data outside its rules", p.Digest, loc)
	}
	return out, nil
}
