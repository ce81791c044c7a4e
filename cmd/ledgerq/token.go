package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/transport"
)

func runToken(args []string, env envFunc, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	sub := fs.String("sub", "", "subject (who the token is for); required")
	scope := fs.String("scope", "", `space-separated scopes, e.g. "messages:publish queues:read" or "admin"; required`)
	queues := fs.String("queues", "", "comma-separated queue globs the token may touch, e.g. 'orders.*,billing' (default: all)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	data := fs.String("data", "./data", "data directory of the server (where its jwt-secret is)")
	secretFile := fs.String("jwt-secret-file", "", "file holding the HS256 secret (default: LEDGERQ_JWT_SECRET, else DATA/jwt-secret)")
	issuer := fs.String("jwt-issuer", "", "iss claim (when the server checks it)")
	audience := fs.String("jwt-audience", "", "aud claim (when the server checks it)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if *sub == "" || strings.TrimSpace(*scope) == "" {
		fmt.Fprintln(stderr, "ledgerq token: --sub and --scope are required")
		return errUsage
	}
	secret, _, err := resolveSecret(env, *secretFile, *data, true)
	if err != nil {
		return err
	}
	var globs []string
	for _, g := range strings.Split(*queues, ",") {
		if g = strings.TrimSpace(g); g != "" {
			globs = append(globs, g)
		}
	}
	signed, err := transport.MintTokenFor(secret, transport.TokenSpec{
		Subject: *sub, Scopes: strings.Fields(*scope), Queues: globs, TTL: *ttl,
		Issuer: *issuer, Audience: *audience,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, signed)
	return nil
}
