package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/sirupsen/logrus"
)

// TestLogrusAdapterLevels: watermill's errors are warnings with the error
// attached, its info and debug lines are debug, its trace lines trace, and
// nothing below the logger's level is written.
func TestLogrusAdapterLevels(t *testing.T) {
	for _, tc := range []struct {
		level logrus.Level
		want  []string // messages written, in order
	}{
		{logrus.InfoLevel, []string{"failed"}},
		{logrus.DebugLevel, []string{"failed", "started", "moved"}},
		{logrus.TraceLevel, []string{"failed", "started", "moved", "acked"}},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			log := logrus.New()
			log.SetOutput(&buf)
			log.SetFormatter(&logrus.JSONFormatter{})
			log.SetLevel(tc.level)
			var a watermill.LoggerAdapter = logrusAdapter{logrus.NewEntry(log)}
			a = a.With(watermill.LogFields{"component": "bus"})
			a.Error("failed", errors.New("boom"), watermill.LogFields{"topic": "t"})
			a.Info("started", nil)
			a.Debug("moved", watermill.LogFields{"n": 3})
			a.Trace("acked", nil)

			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				if m["component"] != "bus" {
					t.Errorf("line %q lost the adapter's fields", line)
				}
				got = append(got, m["msg"].(string))
				switch m["msg"] {
				case "failed":
					if m["level"] != "warning" || m["error"] != "boom" || m["topic"] != "t" {
						t.Errorf("error line %q: want level warning with the error and the fields", line)
					}
				case "started", "moved":
					if m["level"] != "debug" {
						t.Errorf("line %q: want level debug", line)
					}
				case "acked":
					if m["level"] != "trace" {
						t.Errorf("line %q: want level trace", line)
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("at %s wrote %v, want %v", tc.level, got, tc.want)
			}
		})
	}
}
