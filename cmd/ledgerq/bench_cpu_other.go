//go:build !unix

package main

import (
	"errors"
	"time"
)

// selfCPU is not measured here: the bench reports no CPU figures.
func selfCPU() (time.Duration, error) {
	return 0, errors.New("own CPU: not measured on this system")
}
