// Package psi holds the maths of private record linkage: Diffie–Hellman
// private set intersection in the prime-order group ristretto255, the
// normalisation and encoding of keys, and the streaming machinery (sorted
// runs on disk, merges of sorted sets) that keeps a linkage of tens of
// millions of records in bounded memory. It knows nothing of servers or
// runners.
//
// Each party hashes its keys to the group with a session-specific domain
// separator (RFC 9380's hash_to_ristretto255, ristretto255_XMD:SHA-512_R255MAP_RO_),
// and raises them to a secret scalar that never leaves it; the parties then
// raise each other's blinded values to their own scalars. A value blinded by
// every party is the same for the same key whoever held it, and reveals
// nothing else: without the scalars no one can recompute it from a guess.
//
// The group arithmetic comes from maintained libraries, not from this
// package: hashing, encoding and decoding from CIRCL's ristretto255
// (github.com/bwesterb/go-ristretto, which CIRCL's group package wraps), and
// the constant-time variable-base scalar multiplication from
// filippo.io/edwards25519, whose assembly field arithmetic is the faster
// of the two (see bench/psi). A ristretto255 element is a class of
// edwards25519 points; any point of the class multiplied by k lies in the
// class of k times the element, so handing a point's extended coordinates
// from one library to the other is exact (TestAgreesWithCIRCL checks it
// against CIRCL's own group arithmetic).
package psi

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	r255 "github.com/bwesterb/go-ristretto"
	r255ed "github.com/bwesterb/go-ristretto/edwards25519"
	"github.com/cloudflare/circl/expander"
)

// Size is the size of an encoded group element: a blinded value.
const Size = 32

// Element is an encoded ristretto255 element.
type Element = [Size]byte

// Scalar is a party's secret exponent.
type Scalar struct {
	s edwards25519.Scalar
}

// NewScalar draws a uniformly random non-zero scalar.
func NewScalar() (*Scalar, error) {
	var wide [64]byte
	for {
		if _, err := rand.Read(wide[:]); err != nil {
			return nil, err
		}
		k := &Scalar{}
		if _, err := k.s.SetUniformBytes(wide[:]); err != nil {
			return nil, err
		}
		if k.s.Equal(edwards25519.NewScalar()) == 0 {
			return k, nil
		}
	}
}

// ParseScalar reads a scalar saved with Bytes.
func ParseScalar(b []byte) (*Scalar, error) {
	k := &Scalar{}
	if _, err := k.s.SetCanonicalBytes(b); err != nil {
		return nil, fmt.Errorf("secret scalar: %w", err)
	}
	if k.s.Equal(edwards25519.NewScalar()) == 1 {
		return nil, errors.New("secret scalar is zero")
	}
	return k, nil
}

// Bytes is the scalar's canonical encoding (32 bytes, little-endian).
func (k *Scalar) Bytes() []byte { return k.s.Bytes() }

// Fingerprint names the scalar without revealing it (for logs and tests):
// its first bytes times the generator.
func (k *Scalar) Fingerprint() string {
	p := new(edwards25519.Point).ScalarBaseMult(&k.s)
	return hex.EncodeToString(p.Bytes()[:8])
}

// Hasher hashes keys to the group under one domain separator.
type Hasher struct {
	dst []byte
}

// NewHasher returns a hasher for a domain: a linkage's session and key
// index, so that values from one session or key mean nothing in another.
func NewHasher(domain string) *Hasher {
	return &Hasher{dst: []byte("silo-prl-v1:" + domain)}
}

// Blind hashes msg to the group and multiplies it by k: the party's own
// blinded value of a key.
func (h *Hasher) Blind(k *Scalar, msg []byte) Element {
	uniform := expander.NewExpanderMD(crypto.SHA512, h.dst).Expand(msg, 64)
	var half [32]byte
	copy(half[:], uniform[:32])
	var p0, p1 r255.Point
	p0.SetElligator(&half)
	copy(half[:], uniform[32:])
	p1.SetElligator(&half)
	p0.Add(&p0, &p1)
	return mul(k, &p0)
}

// ErrNotElement is the error of bytes that encode no group element.
var ErrNotElement = errors.New("not a ristretto255 element")

// Reblind multiplies an encoded element by k.
func Reblind(k *Scalar, e *Element) (Element, error) {
	var p r255.Point
	if !p.SetBytes(e) {
		return Element{}, ErrNotElement
	}
	return mul(k, &p), nil
}

// mul returns the encoding of k·p.
func mul(k *Scalar, p *r255.Point) Element {
	q := toEdwards(p)
	q.ScalarMult(&k.s, q)
	var out r255.Point
	fromEdwards(q, &out)
	var e Element
	out.BytesInto(&e)
	return e
}

// toEdwards hands a point's extended coordinates to filippo.io/edwards25519.
func toEdwards(p *r255.Point) *edwards25519.Point {
	e := (*r255ed.ExtendedPoint)(p)
	var b [32]byte
	var x, y, z, t field.Element
	for _, c := range []struct {
		from *r255ed.FieldElement
		to   *field.Element
	}{{&e.X, &x}, {&e.Y, &y}, {&e.Z, &z}, {&e.T, &t}} {
		c.from.BytesInto(&b)
		if _, err := c.to.SetBytes(b[:]); err != nil {
			panic(err) // 32 bytes always decode
		}
	}
	q, err := new(edwards25519.Point).SetExtendedCoordinates(&x, &y, &z, &t)
	if err != nil {
		panic("psi: a decoded ristretto255 point is not on the curve: " + err.Error())
	}
	return q
}

// fromEdwards hands a point back to go-ristretto.
func fromEdwards(q *edwards25519.Point, p *r255.Point) {
	x, y, z, t := q.ExtendedCoordinates()
	e := (*r255ed.ExtendedPoint)(p)
	var b [32]byte
	for _, c := range []struct {
		from *field.Element
		to   *r255ed.FieldElement
	}{{x, &e.X}, {y, &e.Y}, {z, &e.Z}, {t, &e.T}} {
		copy(b[:], c.from.Bytes())
		c.to.SetBytes(&b)
	}
}
