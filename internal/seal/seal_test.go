package seal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "server.key")
	k, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	secret := []byte("client-secret-value")
	sealed := k.Seal(secret, "runner:a")
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	if again := k.Seal(secret, "runner:a"); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	got, err := k.Open(sealed, "runner:a")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(sealed, "runner:b"); err == nil {
		t.Fatal("opened with another context")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := k.Open(tampered, "runner:a"); err == nil {
		t.Fatal("opened a tampered value")
	}
	// The same file gives the same key; another key cannot open.
	k2, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open(sealed, "runner:a"); err != nil {
		t.Fatalf("reloaded key: %v", err)
	}
	other, _ := LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "other.key"))
	if _, err := other.Open(sealed, "runner:a"); err == nil {
		t.Fatal("another key opened the value")
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Fatal("accepted a short key")
	}
}
