package limits

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The durable limit answers 201 only for rows that are in the events table:
// each answer's position holds that message's row, in its queue's stream
// with versions 1, 2, … and an unbroken hash chain, whatever the
// interleaving of concurrent publishers.
func TestDurableHTTPHandlerStoresEveryAnsweredPublish(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	h, err := NewDurableHTTPHandler(testSecret, path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "messages:publish", "exp": time.Now().Add(time.Hour).Unix()})

	const workers, each = 8, 25
	answers := make(chan publishResponse, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			queue := "q" + strconv.Itoa(w%3)
			for i := range each {
				body := fmt.Sprintf(`{"body":"w%d-m%d"}`, w, i)
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/queues/"+queue+"/messages", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var out publishResponse
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusCreated {
					t.Errorf("status %d, decode error %v", resp.StatusCode, err)
					return
				}
				answers <- out
			}
		})
	}
	wg.Wait()
	close(answers)
	srv.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type row struct {
		stream, data, prev, hash string
		version                  int64
	}
	rows := map[int64]row{}
	res, err := db.Query(`SELECT position, stream_id, version, data, prev_hash, hash FROM events ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	prev := hex.EncodeToString(make([]byte, sha256.Size))
	versions := map[string]int64{}
	for res.Next() {
		var pos int64
		var r row
		if err := res.Scan(&pos, &r.stream, &r.version, &r.data, &r.prev, &r.hash); err != nil {
			t.Fatal(err)
		}
		versions[r.stream]++
		if r.version != versions[r.stream] {
			t.Fatalf("position %d: %s version %d, want %d", pos, r.stream, r.version, versions[r.stream])
		}
		sum := sha256.Sum256([]byte(prev + r.stream + strconv.FormatInt(r.version, 10) + r.data))
		if r.prev != prev || r.hash != hex.EncodeToString(sum[:]) {
			t.Fatalf("position %d: the hash chain is broken", pos)
		}
		prev = r.hash
		rows[pos] = r
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) != workers*each {
		t.Fatalf("%d rows, want %d", len(rows), workers*each)
	}
	for a := range answers {
		r, ok := rows[a.Position]
		if !ok {
			t.Fatalf("answer %+v: no row at its position", a)
		}
		var ev struct {
			Queue     string `json:"queue"`
			MessageID string `json:"message_id"`
		}
		if err := json.Unmarshal([]byte(r.data), &ev); err != nil {
			t.Fatal(err)
		}
		if r.stream != "queue-"+a.Queue || ev.Queue != a.Queue || ev.MessageID != a.ID {
			t.Fatalf("answer %+v: the row at its position is %s %+v", a, r.stream, ev)
		}
	}
}
