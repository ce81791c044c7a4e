// Command ledgerq is the ledgerq broker and its tools in one binary: the
// server (serve), token minting, a command-line client, offline replay and
// audit verification, and the load generator behind the benchmark figures.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	var ec exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		os.Exit(int(ec))
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "ledgerq:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with that status after the command already said
// what it had to say.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

var errUsage = errors.New("usage")

const usage = `ledgerq — a message broker whose source of truth is an append-only event log.

Usage:
  ledgerq serve   [flags]            run the broker (see 'ledgerq serve -h')
  ledgerq token   --sub S --scope "…" [--queues 'a.*,b'] [--ttl 1h] [--data DIR]
  ledgerq queues  [--url U --token T]
  ledgerq publish QUEUE [--body B | stdin] [--url U --token T]
  ledgerq receive QUEUE [--ack] [--max N] [--wait-ms N] [--url U --token T]
  ledgerq events  [--after N] [--follow] [--url U --token T]
  ledgerq replay  --data DIR [--at-position N | --at-time T]
  ledgerq audit verify --data DIR
  ledgerq bench   [flags]            load generator (see 'ledgerq bench -h')

Every flag can also be set as an environment variable: LEDGERQ_ + the flag in
upper case with '-' as '_' (e.g. --redis → LEDGERQ_REDIS).
`

// run is the whole program, with its inputs and outputs passed in so tests
// can drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	env := envFunc(getenv)
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(ctx, rest, env, stdout, stderr)
	case "token":
		return runToken(rest, env, stdout, stderr)
	case "queues":
		return runQueues(ctx, rest, env, stdout, stderr)
	case "publish":
		return runPublish(ctx, rest, env, stdin, stdout, stderr)
	case "receive":
		return runReceive(ctx, rest, env, stdout, stderr)
	case "events":
		return runEvents(ctx, rest, env, stdout, stderr)
	case "replay":
		return runReplay(ctx, rest, env, stdout, stderr)
	case "audit":
		if len(rest) == 0 || rest[0] != "verify" {
			fmt.Fprintln(stderr, "usage: ledgerq audit verify --data DIR [--from N] [--to N]")
			return errUsage
		}
		return runAuditVerify(ctx, rest[1:], env, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, env, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "ledgerq", version)
		return nil
	default:
		fmt.Fprintf(stderr, "ledgerq: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"
