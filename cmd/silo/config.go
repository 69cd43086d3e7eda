package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// config is what 'silo login' remembers: one server and the access token to
// use with it. It holds a credential, so it is written readable by its owner
// only.
type config struct {
	Server string `json:"server"`
	Token  string `json:"token"`
	// TokenID and Email are for messages: which user the CLI acts as, and
	// whether a revoked token is the one the CLI itself uses.
	TokenID string `json:"token_id,omitempty"`
	Email   string `json:"email,omitempty"`
}

// configPath is $SILO_CONFIG, or config.json in the user's configuration
// directory (~/.config/silo on Linux).
func configPath() (string, error) {
	if p := os.Getenv("SILO_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find where to keep the login: %w (set SILO_CONFIG to a file path)", err)
	}
	return filepath.Join(dir, "silo", "config.json"), nil
}

// loadConfig returns the saved login, or an empty one if there is none yet.
func loadConfig() (*config, error) {
	path, err := configPath()
	if err != nil {
		return nil, err
	}
	// #nosec G304 -- the CLI config file in the user's config directory
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &config{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("read saved login: %w", err)
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("read saved login %s: %w (fix or delete it, then run silo login)", path, err)
	}
	return &cfg, nil
}

// save writes cfg with mode 0600 in a directory with mode 0700. It writes a
// temporary file and renames it, so an interrupted save never leaves a
// half-written login behind.
func (cfg *config) save() (string, error) {
	path, err := configPath()
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("save login: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json") // created with mode 0600
	if err != nil {
		return "", fmt.Errorf("save login: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("save login: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("save login: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("save login: %w", err)
	}
	return path, nil
}
