package cluster

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// jwtSecret is shared by every node of a test cluster: a token minted once
// is accepted by the write node and the query node alike.
const jwtSecret = "cluster-tests-hs256-secret-0123456789abcdef"

func TestMain(m *testing.M) { harness.Main(m) }

// node is one `ledgerq serve` process of a test cluster.
type node struct {
	*harness.Server
	t    *testing.T
	name string
}

// startNode runs `ledgerq serve` with args on a free port and a fresh data
// directory, with the cluster's secret, and waits until /readyz answers
// 200.
func startNode(t *testing.T, name string, args ...string) *node {
	t.Helper()
	s := harness.Start(t, harness.Options{Name: name + " node", Args: args, JWTSecret: jwtSecret, ReadyTimeout: 90 * time.Second})
	return &node{Server: s, t: t, name: name}
}

// token mints an admin token with the cluster's secret; every node of the
// cluster accepts it.
func (n *node) token() string {
	n.t.Helper()
	return n.Token("cluster-test", "admin")
}

// readView is what a node's read models answer about a set of queues:
// each queue with its stats (the clock-dependent oldest_ready_age_ms
// removed) and the ids of its messages in every state.
type readView struct {
	Queues   map[string]map[string]any
	Messages map[string]map[string][]string
}

// messageStates are the states API.md lets a listing filter on.
var messageStates = []string{"ready", "delayed", "in_flight", "acked", "dead_lettered", "expired"}

// view reads queues on n at position pos.
func (n *node) view(token string, pos int64, queues ...string) readView {
	n.t.Helper()
	v := readView{Queues: map[string]map[string]any{}, Messages: map[string]map[string][]string{}}
	for _, q := range queues {
		r := n.GetAt("/v1/queues/"+q, token, pos)
		v.Queues[q] = harness.WithoutAge(r.JSON)
		v.Messages[q] = map[string][]string{}
		for _, st := range messageStates {
			v.Messages[q][st] = n.messageIDs(token, q, st, pos)
		}
	}
	return v
}

// messageIDs lists the ids of a queue's messages in one state, every page.
func (n *node) messageIDs(token, queue, state string, pos int64) []string {
	n.t.Helper()
	ids := []string{}
	cursor := ""
	for {
		path := "/v1/queues/" + queue + "/messages?limit=1000&state=" + state
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := n.GetAt(path, token, pos)
		ms, _ := r.JSON["messages"].([]any)
		for _, m := range ms {
			ids = append(ids, m.(map[string]any)["id"].(string))
		}
		if cursor = r.Str("next_cursor"); cursor == "" {
			return ids
		}
	}
}
