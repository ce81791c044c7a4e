package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client is the command-line client's connection to a running server.
type client struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags adds --url and --token to a flag set.
func clientFlags(fs *flag.FlagSet) (baseURL, token *string) {
	baseURL = fs.String("url", "http://127.0.0.1:8080", "base URL of the ledgerq server")
	token = fs.String("token", "", "bearer token (see 'ledgerq token')")
	return
}

func newClient(baseURL, token string) (*client, error) {
	if token == "" {
		return nil, errors.New("no token: pass --token or set LEDGERQ_TOKEN (mint one with 'ledgerq token')")
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an http(s) URL", baseURL)
	}
	return &client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{}}, nil
}

// apiError is a problem+json answer.
type apiError struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (e *apiError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, msg)
}

// do sends a JSON request and decodes a JSON answer into out (when not nil).
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeProblem(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func decodeProblem(resp *http.Response) error {
	p := &apiError{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(b, p); err != nil || p.Code == "" {
		p.Code = "http_error"
		p.Detail = strings.TrimSpace(string(b))
	}
	p.Status = resp.StatusCode
	return p
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// splitPositional takes a leading positional argument (a queue name) so that
// flags may follow it: `ledgerq publish orders --body hi`.
func splitPositional(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

func runQueues(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	fs := newFlagSet("queues", stderr)
	baseURL, token := clientFlags(fs)
	prefix := fs.String("prefix", "", "only queues whose name starts with this")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	c, err := newClient(*baseURL, *token)
	if err != nil {
		return err
	}
	var all []json.RawMessage
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if *prefix != "" {
			q.Set("prefix", *prefix)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Queues     []json.RawMessage `json:"queues"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/queues?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		all = append(all, page.Queues...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	return printJSON(stdout, map[string]any{"queues": all})
}

func runPublish(ctx context.Context, args []string, env envFunc, stdin io.Reader, stdout, stderr io.Writer) error {
	queue, args := splitPositional(args)
	fs := newFlagSet("publish QUEUE", stderr)
	baseURL, token := clientFlags(fs)
	body := fs.String("body", "", "message body (default: read standard input)")
	contentType := fs.String("content-type", "", "content type of the body")
	delay := fs.Int64("delay-ms", -1, "delivery delay in milliseconds (default: the queue's)")
	dedup := fs.String("dedup-id", "", "deduplication id (5-minute window)")
	var headers headerFlag
	fs.Var(&headers, "header", "a header k=v (repeatable)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if queue == "" {
		if queue = fs.Arg(0); queue == "" {
			fmt.Fprintln(stderr, "usage: ledgerq publish QUEUE [--body B] [--header k=v] …")
			return errUsage
		}
	}
	c, err := newClient(*baseURL, *token)
	if err != nil {
		return err
	}
	msg := map[string]any{}
	if isFlagSet(fs, "body") || env(envName("body")) != "" {
		msg["body"] = *body
	} else {
		b, err := io.ReadAll(io.LimitReader(stdin, 2<<20))
		if err != nil {
			return err
		}
		msg["body"] = string(b)
	}
	if *contentType != "" {
		msg["content_type"] = *contentType
	}
	if *delay >= 0 {
		msg["delay_ms"] = *delay
	}
	if *dedup != "" {
		msg["dedup_id"] = *dedup
	}
	if len(headers) > 0 {
		msg["headers"] = map[string]string(headers)
	}
	var out json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(queue)+"/messages", msg, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

func runReceive(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	queue, args := splitPositional(args)
	fs := newFlagSet("receive QUEUE", stderr)
	baseURL, token := clientFlags(fs)
	ack := fs.Bool("ack", false, "acknowledge every message received")
	maxMessages := fs.Int("max", 1, "maximum messages to receive (1…100)")
	wait := fs.Int64("wait-ms", 0, "long-poll up to this many milliseconds (0…20000)")
	consumer := fs.String("consumer", "ledgerq-cli", "consumer label recorded with the lease")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if queue == "" {
		if queue = fs.Arg(0); queue == "" {
			fmt.Fprintln(stderr, "usage: ledgerq receive QUEUE [--ack] [--max N] [--wait-ms N]")
			return errUsage
		}
	}
	c, err := newClient(*baseURL, *token)
	if err != nil {
		return err
	}
	var res struct {
		Messages []map[string]any `json:"messages"`
		Position int64            `json:"position"`
	}
	path := "/v1/queues/" + url.PathEscape(queue)
	in := map[string]any{"max_messages": *maxMessages, "wait_ms": *wait, "consumer": *consumer}
	if err := c.do(ctx, http.MethodPost, path+"/receive", in, &res); err != nil {
		return err
	}
	if *ack && len(res.Messages) > 0 {
		receipts := make([]string, 0, len(res.Messages))
		for _, m := range res.Messages {
			if r, ok := m["receipt"].(string); ok {
				receipts = append(receipts, r)
			}
		}
		var ackRes struct {
			Results []struct {
				Receipt string `json:"receipt"`
				OK      bool   `json:"ok"`
				Code    string `json:"code"`
			} `json:"results"`
		}
		if err := c.do(ctx, http.MethodPost, path+"/ack", map[string]any{"receipts": receipts}, &ackRes); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		for i, r := range ackRes.Results {
			if i < len(res.Messages) {
				res.Messages[i]["acked"] = r.OK
			}
			if !r.OK {
				fmt.Fprintf(stderr, "ledgerq: ack of one message failed: %s\n", r.Code)
			}
		}
	}
	if res.Messages == nil {
		res.Messages = []map[string]any{}
	}
	return printJSON(stdout, res)
}

func runEvents(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", stderr)
	baseURL, token := clientFlags(fs)
	after := fs.Int64("after", 0, "print events after this global position")
	follow := fs.Bool("follow", false, "keep waiting for new events")
	stream := fs.String("stream", "", "only this stream (e.g. queue-orders)")
	typ := fs.String("type", "", "only this event type")
	poll := fs.Duration("poll", 500*time.Millisecond, "with --follow, how often to ask for new events")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	c, err := newClient(*baseURL, *token)
	if err != nil {
		return err
	}
	pos := *after
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for {
		q := url.Values{"after": {strconv.FormatInt(pos, 10)}, "limit": {"1000"}}
		if *stream != "" {
			q.Set("stream", *stream)
		}
		if *typ != "" {
			q.Set("type", *typ)
		}
		var page struct {
			Raw       []json.RawMessage `json:"events"`
			NextAfter int64             `json:"next_after"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &page); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, ev := range page.Raw {
			var p struct {
				Position int64 `json:"position"`
			}
			if err := json.Unmarshal(ev, &p); err == nil && p.Position > pos {
				pos = p.Position
			}
			w.Write(ev)
			w.WriteByte('\n')
		}
		if page.NextAfter > pos {
			pos = page.NextAfter
		}
		if page.NextAfter != 0 {
			continue
		}
		if !*follow {
			return nil
		}
		w.Flush()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*poll):
		}
	}
}

// headerFlag collects repeated --header k=v.
type headerFlag map[string]string

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("header %q is not k=v", v)
	}
	if *h == nil {
		*h = headerFlag{}
	}
	(*h)[k] = val
	return nil
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
