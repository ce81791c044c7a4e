package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// secretFileName is the generated HS256 secret in the data directory.
const secretFileName = "jwt-secret"

// minSecretBytes refuses HS256 secrets too short to resist brute force.
const minSecretBytes = 32

// resolveSecret finds the HS256 secret the way `serve` and `token` agree on:
// LEDGERQ_JWT_SECRET, else --jwt-secret-file, else DATA/jwt-secret (created
// on first use with 32 random bytes, mode 0600, when create is true).
func resolveSecret(env envFunc, secretFile, dataDir string, create bool) ([]byte, string, error) {
	if v := env("LEDGERQ_JWT_SECRET"); v != "" {
		if len(v) < minSecretBytes {
			return nil, "", fmt.Errorf("LEDGERQ_JWT_SECRET is %d bytes; use at least %d", len(v), minSecretBytes)
		}
		return []byte(v), "LEDGERQ_JWT_SECRET", nil
	}
	if secretFile != "" {
		b, err := readSecretFile(secretFile)
		return b, secretFile, err
	}
	path := filepath.Join(dataDir, secretFileName)
	b, err := readSecretFile(path)
	if err == nil {
		return b, path, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("no signing key: %s does not exist (start 'ledgerq serve --data %s' once, or set LEDGERQ_JWT_SECRET)", path, dataDir)
		}
		return nil, "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("data directory: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	secret := []byte(hex.EncodeToString(raw))
	// O_EXCL: two processes starting at once must not overwrite each
	// other's secret; the loser reads the winner's.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		b, err := readSecretFile(path)
		return b, path, err
	}
	if err != nil {
		return nil, "", fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(append(secret, '\n')); err != nil {
		f.Close()
		return nil, "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, "", err
	}
	return secret, path, f.Close()
}

func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) < minSecretBytes {
		return nil, fmt.Errorf("secret in %s is %d bytes; use at least %d", path, len(b), minSecretBytes)
	}
	return b, nil
}
