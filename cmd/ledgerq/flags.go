package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

type envFunc func(string) string

// newFlagSet returns a flag set whose errors go to stderr and whose usage
// says that every flag has a LEDGERQ_ environment variable.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ledgerq %s [flags]\n\nFlags (each also as LEDGERQ_<FLAG> in the environment):\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from its environment variable (LEDGERQ_ + upper case, '-' → '_').
// The command line wins over the environment.
func parseFlags(fs *flag.FlagSet, args []string, env envFunc) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return errUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := env(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// envName is the environment variable of a flag: --jwt-secret-file →
// LEDGERQ_JWT_SECRET_FILE.
func envName(flagName string) string {
	return "LEDGERQ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
