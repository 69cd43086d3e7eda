// Package seal encrypts secrets at rest (AES-256-GCM) with the server key, so
// a copy of the database alone reveals no cloud credential.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// version prefixes every sealed value, so the scheme can change later.
const version = 1

// Key seals and opens values.
type Key struct{ aead cipher.AEAD }

// ParseKey reads a key given as base64 of 32 random bytes (what
// LoadOrCreateKeyFile writes and --secret-key takes).
func ParseKey(s string) (*Key, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(raw) != 32 {
		return nil, errors.New("server key must be 32 random bytes in base64 (make one with: head -c 32 /dev/urandom | base64)")
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead}, nil
}

// LoadOrCreateKeyFile reads the key at path, creating it (mode 0600) with a
// new random key if it does not exist.
func LoadOrCreateKeyFile(path string) (*Key, error) {
	// #nosec G304 -- the key file the operator configured
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// O_EXCL: two processes starting at once must not write two keys.
		// #nosec G304 -- as above
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateKeyFile(path)
		} else if err != nil {
			return nil, fmt.Errorf("create server key %s: %w", path, err)
		}
		if _, err := f.WriteString(enc + "\n"); err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		return ParseKey(enc)
	} else if err != nil {
		return nil, fmt.Errorf("read server key %s: %w", path, err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("server key %s: %w", path, err)
	}
	return k, nil
}

// Seal encrypts plaintext bound to context (e.g. "runner:eu-1"): the value
// opens only with the same context, so sealed values cannot be swapped
// between records.
func (k *Key) Seal(plaintext []byte, context string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	out := append([]byte{version}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, []byte(context))
}

// Open decrypts a value sealed with the same key and context.
func (k *Key) Open(sealed []byte, context string) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != version {
		return nil, errors.New("sealed value is malformed")
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(context))
	if err != nil {
		return nil, errors.New("sealed value does not open with this server key (was the key changed?)")
	}
	return pt, nil
}

// NewRandomKey returns a fresh key that lives only in memory: values sealed
// with it cannot be opened after the process ends.
func NewRandomKey() *Key {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		panic(err)
	}
	k, err := ParseKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		panic(err)
	}
	return k
}
