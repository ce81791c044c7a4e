package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// Problem codes of the edge itself, beside the domain's (API.md lists the
// stable ones; not_found, method_not_allowed and unavailable are ours for
// unknown routes, wrong methods and a write side that cannot write).
const (
	codeInvalidArgument    = "invalid_argument"
	codeUnauthorized       = "unauthorized"
	codeForbidden          = "forbidden"
	codeNotFound           = "not_found"
	codeMethodNotAllowed   = "method_not_allowed"
	codeConflict           = "conflict"
	codePayloadTooLarge    = "payload_too_large"
	codeUnsupportedMedia   = "unsupported_media_type"
	codeRateLimited        = "rate_limited"
	codeConsistencyTimeout = "consistency_timeout"
	codeUnavailable        = "unavailable"
	codeInternal           = "internal"
	// codeClientGone is never sent: the client left before the answer.
	codeClientGone = "client_closed_request"
)

// problemTypePrefix makes each code a URI, as RFC 9457 wants "type" to be.
const problemTypePrefix = "urn:ledgerq:problem:"

// statusClientClosed is nginx's convention for a client that went away; it
// appears only in logs and metrics.
const statusClientClosed = 499

// problemTable is the one mapping from a problem code to its HTTP status
// and title. Domain codes not listed fall back on their kind (kindCodes).
var problemTable = map[string]struct {
	status int
	title  string
}{
	codeInvalidArgument:            {http.StatusBadRequest, "Invalid argument"},
	codeUnauthorized:               {http.StatusUnauthorized, "Unauthorized"},
	codeForbidden:                  {http.StatusForbidden, "Forbidden"},
	codeNotFound:                   {http.StatusNotFound, "Not found"},
	domain.ErrQueueNotFound.Code:   {http.StatusNotFound, "Queue not found"},
	domain.ErrMessageNotFound.Code: {http.StatusNotFound, "Message not found"},
	domain.ErrReceiptNotFound.Code: {http.StatusNotFound, "Receipt not found"},
	codeMethodNotAllowed:           {http.StatusMethodNotAllowed, "Method not allowed"},
	domain.ErrQueueExists.Code:     {http.StatusConflict, "Queue exists"},
	domain.ErrLeaseMismatch.Code:   {http.StatusConflict, "Lease mismatch"},
	codeConflict:                   {http.StatusConflict, "Conflict"},
	codePayloadTooLarge:            {http.StatusRequestEntityTooLarge, "Payload too large"},
	codeUnsupportedMedia:           {http.StatusUnsupportedMediaType, "Unsupported media type"},
	codeRateLimited:                {http.StatusTooManyRequests, "Rate limited"},
	codeInternal:                   {http.StatusInternalServerError, "Internal error"},
	codeUnavailable:                {http.StatusServiceUnavailable, "Unavailable"},
	codeConsistencyTimeout:         {http.StatusServiceUnavailable, "Consistency timeout"},
	codeClientGone:                 {statusClientClosed, "Client closed request"},
}

// kindCodes maps a domain error kind to the code used when the domain's
// own code is not in problemTable.
var kindCodes = map[domain.Kind]string{
	domain.KindInvalid:  codeInvalidArgument,
	domain.KindNotFound: codeNotFound,
	domain.KindConflict: codeConflict,
	domain.KindTooLarge: codePayloadTooLarge,
}

// apiError is an error decided by the edge itself (bad request shape,
// authentication, limits).
type apiError struct {
	code       string
	detail     string
	field      string
	index      int // meaningful when hasIndex
	hasIndex   bool
	retryAfter int    // seconds, for rate_limited
	scope      string // the scope missing, for a forbidden answer
	bearerErr  string // RFC 6750 error for WWW-Authenticate
}

func (e *apiError) Error() string {
	if e.field != "" {
		return e.code + ": " + e.field + ": " + e.detail
	}
	return e.code + ": " + e.detail
}

func invalid(field, detail string) *apiError {
	return &apiError{code: codeInvalidArgument, field: field, detail: detail}
}

func unauthorized(detail string) *apiError {
	e := &apiError{code: codeUnauthorized, detail: detail}
	if detail != "missing bearer token" {
		e.bearerErr = "invalid_token"
	}
	return e
}

func missingScope(scope string) *apiError {
	return &apiError{code: codeForbidden, detail: "the token lacks the scope " + scope, scope: scope, bearerErr: "insufficient_scope"}
}

func forbiddenQueue(field, queue string) *apiError {
	return &apiError{code: codeForbidden, field: field, detail: "the token may not touch queue " + strconv.Quote(queue)}
}

func tooLarge(detail string) *apiError {
	return &apiError{code: codePayloadTooLarge, detail: detail}
}

func unsupportedMedia(detail string) *apiError {
	return &apiError{code: codeUnsupportedMedia, detail: detail}
}

// withIndex marks an error as about one entry of a batch.
func withIndex(err error, i int) error {
	var ae *apiError
	if errors.As(err, &ae) {
		c := *ae
		c.index, c.hasIndex = i, true
		if c.field != "" {
			c.field = "messages[" + strconv.Itoa(i) + "]." + c.field
		}
		return &c
	}
	return err
}

// unavailableError is how a dependency says it cannot serve now (the event
// store is read-only, the log is closed …): 503 rather than 500. The
// command side's errors implement it, whatever their sentinel is called.
type unavailableError interface{ Unavailable() bool }

// problem is an RFC 9457 problem document with ledgerq's extensions.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Field     string `json:"field,omitempty"`
	Index     *int   `json:"index,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

var batchField = regexp.MustCompile(`^messages\[(\d+)\]`)

// classify turns any error into the problem a client sees. Only apiError,
// domain errors and the few known sentinels carry their text to the client:
// anything else is "internal" with a fixed detail.
func classify(r *http.Request, err error) (p problem, ae *apiError) {
	var de *domain.Error
	var ue unavailableError
	switch {
	case errors.As(err, &ae):
		p = problem{Code: ae.code, Detail: ae.detail, Field: ae.field}
		if ae.hasIndex {
			i := ae.index
			p.Index = &i
		}
	case errors.As(err, &de) && kindCodes[de.Kind] != "":
		code := de.Code
		if code == "" {
			code = kindCodes[de.Kind]
		}
		p = problem{Code: code, Detail: de.Message, Field: de.Field}
		if m := batchField.FindStringSubmatch(de.Field); m != nil {
			if i, err := strconv.Atoi(m[1]); err == nil {
				p.Index = &i
			}
		}
		if _, known := problemTable[code]; !known {
			// A domain code the edge does not list keeps its name (clients
			// match on it) but takes the status and title of its kind.
			base := problemTable[kindCodes[de.Kind]]
			p.Status, p.Title = base.status, base.title
		}
	case errors.Is(err, queries.ErrConsistencyTimeout):
		p = problem{Code: codeConsistencyTimeout, Detail: "the read side did not reach the requested position in time; retry later"}
	case errors.As(err, &ue) && ue.Unavailable():
		p = problem{Code: codeUnavailable, Detail: "the service cannot write right now; retry later"}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p = problem{Code: codeClientGone, Detail: "the client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		p = problem{Code: codeUnavailable, Detail: "the request took too long; retry later"}
	default:
		p = problem{Code: codeInternal, Detail: "an internal error occurred; quote the request id when reporting it"}
	}
	if p.Status == 0 {
		spec, ok := problemTable[p.Code]
		if !ok {
			spec = problemTable[codeInternal]
		}
		p.Status, p.Title = spec.status, spec.title
	}
	p.Type = problemTypePrefix + p.Code
	p.RequestID = requestIDFrom(r.Context())
	return p, ae
}

// writeProblem is the one place errors become HTTP answers.
func (s *server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p, ae := classify(r, err)
	if p.Status >= 500 && p.Status != statusClientClosed {
		// The client sees a fixed text; the cause goes to the log only.
		s.log.WithError(err).WithField("request_id", p.RequestID).WithField("code", p.Code).Error("request failed")
	}
	h := w.Header()
	switch p.Status {
	case http.StatusUnauthorized:
		v := `Bearer realm="ledgerq"`
		if ae != nil && ae.bearerErr != "" {
			v += `, error="` + ae.bearerErr + `"`
		}
		h.Set("WWW-Authenticate", v)
	case http.StatusForbidden:
		if ae != nil && ae.scope != "" {
			h.Set("WWW-Authenticate", `Bearer realm="ledgerq", error="insufficient_scope", scope="`+ae.scope+`"`)
		}
	case http.StatusTooManyRequests:
		if ae != nil && ae.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(ae.retryAfter))
		}
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	if p.Status == statusClientClosed {
		return
	}
	_ = json.NewEncoder(w).Encode(p)
}
