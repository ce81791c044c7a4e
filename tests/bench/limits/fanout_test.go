package limits

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestFanOutDeliversFramesOfItsQueueOnly(t *testing.T) {
	srv, exp := startLimit(t)
	admin := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "admin", "exp": exp})
	publisher := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "messages:publish", "exp": exp})

	call := func(method, path, token, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := call(http.MethodPost, "/v1/queues", admin, `{"name":"a"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create queue: status %d, want 201", resp.StatusCode)
	}
	if resp := call(http.MethodGet, "/v1/subscribe?queues=a", publisher, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("subscribe without queues:read: status %d, want 403", resp.StatusCode)
	}
	if resp := call(http.MethodGet, "/v1/subscribe", admin, ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("subscribe without queues: status %d, want 400", resp.StatusCode)
	}

	stream := call(http.MethodGet, "/v1/subscribe?queues=a&kinds=message", admin, "")
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe: status %d, type %q", stream.StatusCode, stream.Header.Get("Content-Type"))
	}
	// A frame that never comes fails the read instead of hanging the test.
	timer := time.AfterFunc(10*time.Second, func() { stream.Body.Close() })
	defer timer.Stop()
	lines := bufio.NewReader(stream.Body)
	if l, _ := lines.ReadString('\n'); l != "retry: 2000\n" {
		t.Fatalf("first line %q", l)
	}
	_, _ = lines.ReadString('\n')

	var want []publishResponse
	for _, q := range []string{"b", "a", "b", "a"} {
		resp := call(http.MethodPost, "/v1/queues/"+q+"/messages", publisher, `{"body":"x"}`)
		var out publishResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("publish to %s: status %d, %v", q, resp.StatusCode, err)
		}
		resp.Body.Close()
		if q == "a" {
			want = append(want, out)
		}
	}
	for _, w := range want {
		var id, event string
		var data frameData
		for {
			l, err := lines.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			l = strings.TrimSuffix(l, "\n")
			if l == "" {
				break
			}
			field, value, _ := strings.Cut(l, ": ")
			switch field {
			case "id":
				id = value
			case "event":
				event = value
			case "data":
				if err := json.Unmarshal([]byte(value), &data); err != nil {
					t.Fatalf("data %q: %v", value, err)
				}
			}
		}
		if id != strconv.FormatInt(w.Position, 10) || event != "message.updated" || data.ID != w.ID || data.Queue != "a" || data.State != "ready" {
			t.Fatalf("frame id %q event %q data %+v, want the publish %+v", id, event, data, w)
		}
	}
}
