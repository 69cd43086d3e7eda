package psi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloudflare/circl/group"
)

// TestAgreesWithCIRCL: blinding equals CIRCL's own hash_to_ristretto255
// followed by its scalar multiplication, so handing points between the two
// libraries changes nothing.
func TestAgreesWithCIRCL(t *testing.T) {
	h := NewHasher("sess_test:0")
	for i := range 20 {
		k, err := NewScalar()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("person-%d@example.org", i))
		got := h.Blind(k, msg)
		ck := group.Ristretto255.NewScalar()
		if err := ck.UnmarshalBinary(k.Bytes()); err != nil {
			t.Fatal(err)
		}
		want, _ := group.Ristretto255.NewElement().Mul(group.Ristretto255.HashToElement(msg, h.dst), ck).MarshalBinary()
		if !bytes.Equal(got[:], want) {
			t.Fatalf("blind(%s) = %x, CIRCL says %x", msg, got, want)
		}
	}
}

// TestBlindingCommutes: a key blinded by every party is the same value
// whatever the order; another domain or scalar gives another value.
func TestBlindingCommutes(t *testing.T) {
	h := NewHasher("sess_a:0")
	k1, _ := NewScalar()
	k2, _ := NewScalar()
	k3, _ := NewScalar()
	a := h.Blind(k1, []byte("x"))
	b := h.Blind(k2, []byte("x"))
	a2, err := Reblind(k2, &a)
	if err != nil {
		t.Fatal(err)
	}
	a3, _ := Reblind(k3, &a2)
	b3, _ := Reblind(k3, &b)
	b31, _ := Reblind(k1, &b3)
	if a3 != b31 {
		t.Fatal("k3·k2·k1·H(x) != k1·k3·k2·H(x)")
	}
	if h.Blind(k1, []byte("y")) == a || NewHasher("sess_b:0").Blind(k1, []byte("x")) == a || h.Blind(k2, []byte("x")) == a {
		t.Fatal("blinded values collide across keys, domains or scalars")
	}
	k, err := ParseScalar(k1.Bytes())
	if err != nil || h.Blind(k, []byte("x")) != a || k.Fingerprint() != k1.Fingerprint() {
		t.Fatalf("a saved scalar does not blind the same: %v", err)
	}
	if _, err := ParseScalar(make([]byte, 32)); err == nil {
		t.Fatal("a zero scalar was accepted")
	}
}

// TestReblindRefusesNonElements: bytes that encode no group element (a
// hostile runner's) are refused, not multiplied.
func TestReblindRefusesNonElements(t *testing.T) {
	k, _ := NewScalar()
	bad := 0
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var e Element
		for i := range e {
			e[i] = byte(r.Uint32())
		}
		if _, err := Reblind(k, &e); err != nil {
			bad++
		}
	}
	if bad < 150 { // about seven in eight random strings are not canonical encodings
		t.Fatalf("only %d of 200 random strings refused", bad)
	}
	ff := Element{}
	for i := range ff {
		ff[i] = 0xff
	}
	if _, err := Reblind(k, &ff); err != ErrNotElement {
		t.Fatalf("0xff… accepted: %v", err)
	}
}

func TestNormalize(t *testing.T) {
	n := NewNormalizer([]string{"trim", "lowercase", "collapse_spaces"})
	if got := n.Apply("  Ada   LOVELACE\t"); got != "ada lovelace" {
		t.Fatalf("got %q", got)
	}
	if got := NewNormalizer([]string{"digits_only"}).Apply("+44 (0)20-7946 0958"); got != "4402079460958" {
		t.Fatalf("got %q", got)
	}
	if got := NewNormalizer(nil).Apply(" A "); got != " A " {
		t.Fatalf("no normalisation changed %q", got)
	}
	if !Empty(" \t") || Empty(" a") {
		t.Fatal("Empty")
	}
	if bytes.Equal(AppendKey(AppendKey(nil, "ab"), "c"), AppendKey(AppendKey(nil, "a"), "bc")) {
		t.Fatal("composite keys are ambiguous")
	}
}

// TestSorterSpills: past its limit the sorter writes runs and merges them;
// the order is the same as sorting in memory.
func TestSorterSpills(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all []Pair
	s := NewSorter(t.TempDir(), 100)
	for i := range 1037 {
		var p Pair
		for j := range p.Value {
			p.Value[j] = byte(r.Uint32())
		}
		p.Value[0] = byte(i % 7) // many shared prefixes
		p.Index = uint32(r.Uint32())
		all = append(all, p)
		if err := s.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if s.Runs() != 10 {
		t.Fatalf("%d runs, want 10", s.Runs())
	}
	slices.SortFunc(all, func(a, b Pair) int { return Compare(&a, &b) })
	var got []Pair
	if err := s.Each(func(p *Pair) error { got = append(got, *p); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, all) {
		t.Fatal("merged runs differ from an in-memory sort")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func pairsOf(vals ...byte) *PairReader {
	var b bytes.Buffer
	for i, v := range vals {
		p := Pair{Index: uint32(i) + 100}
		p.Value[31] = v
		var enc [PairSize]byte
		p.Put(enc[:])
		b.Write(enc[:])
	}
	return NewPairReader(&b, int64(len(vals)))
}

func TestIntersect(t *testing.T) {
	var got []string
	err := Intersect([]*PairReader{pairsOf(1, 3, 5, 7, 9), pairsOf(2, 3, 7, 9, 11), pairsOf(3, 4, 9)}, func(v *Element, idx []uint32) error {
		got = append(got, fmt.Sprint(v[31], idx))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"3 [101 101 100]", "9 [104 103 102]"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	err = Intersect([]*PairReader{pairsOf(1, 3, 5), pairsOf(3, 2)}, func(*Element, []uint32) error { return nil })
	if err == nil {
		t.Fatal("an unsorted set was not noticed")
	}
}
