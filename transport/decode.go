package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// maxJSONDepth bounds nesting: the deepest request ledgerq takes is a batch
// entry's headers, four levels down, so anything near this is an attack.
const maxJSONDepth = 32

// decodeJSON reads r's body, at most limit bytes, into dst, strictly: the
// body must be one JSON object with known fields of the right types, no
// duplicate keys and nothing after it. With optional, an empty body leaves
// dst as it is. Errors are apiErrors (400, 413, 415).
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, optional bool, dst any) error {
	body, err := s.readJSON(w, r, limit, optional)
	if body == nil || err != nil {
		return err
	}
	return unmarshalStrict(body, dst)
}

// readJSON reads and checks what decodeJSON decodes: r's body, at most
// limit bytes, of a JSON content type, UTF-8. With optional, an empty body
// gives nil and no error.
func (s *server) readJSON(w http.ResponseWriter, r *http.Request, limit int64, optional bool) ([]byte, error) {
	if r.ContentLength > limit {
		// Refuse before reading a byte: the declared length is enough. The
		// connection is closed, or net/http would first drain (and wait
		// for) up to 256 KiB of the unread body before answering.
		w.Header().Set("Connection", "close")
		return nil, tooLarge(fmt.Sprintf("the request body exceeds %d bytes", limit))
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" && r.ContentLength != 0 {
		if err := checkJSONContentType(ct); err != nil {
			return nil, err
		}
	}
	// A body dripped in byte by byte would hold the handler for ever: it
	// gets a deadline. It is lifted once read so that a long poll that
	// follows is not cut (HTTP/1 net/http also clears it at the body's EOF;
	// this covers the other cases).
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.deps.BodyReadTimeout)) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(fmt.Sprintf("the request body exceeds %d bytes", limit))
		}
		// Cut off, timed out or reset: the request is incomplete, and the
		// connection cannot carry another one. Saying so also stops
		// net/http from draining the rest of a stalled body before it
		// answers.
		w.Header().Set("Connection", "close")
		return nil, invalid("", "the request body could not be read completely")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil, nil
		}
		return nil, invalid("", "a JSON request body is required")
	}
	if err := checkJSONContentType(ct); err != nil {
		return nil, err
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD: a message
	// must be stored as sent or refused, never silently changed.
	if !utf8.Valid(body) {
		return nil, invalid("", "the request body is not valid UTF-8 (RFC 8259); send binary bodies with body_encoding base64")
	}
	return body, nil
}

// checkJSONContentType accepts application/json, with at most a UTF-8
// charset (RFC 8259 JSON is UTF-8).
func checkJSONContentType(ct string) error {
	if ct == "" {
		return unsupportedMedia("send the body as application/json")
	}
	if ct == "application/json" {
		return nil // what clients send; parsing it allocates a map per request
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return unsupportedMedia("send the body as application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupportedMedia("JSON bodies must be UTF-8")
	}
	return nil
}

// unmarshalStrict decodes one JSON object into dst. It is also used for the
// entries of a batch, one by one, so that an error can name its index.
func unmarshalStrict(data []byte, dst any) error {
	if err := checkShape(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "unexpected data after the JSON object")
	}
	return nil
}

// checkShape walks the tokens once before decoding: the body must be an
// object, nested at most maxJSONDepth deep, without a key twice in one
// object (encoding/json would silently keep the last, so two readers of the
// same body could disagree on what it says).
//
// jsontext's decoder finds duplicate names itself and reads tokens without
// allocating; encoding/json's Token boxed every token and this walk kept a
// map of names per object (5 µs of a single publish, 8 % of the server's
// CPU with batches of 100). data is UTF-8: readJSON refuses anything else.
func checkShape(data []byte) error {
	sd := shapeDecoders.Get().(*shapeDecoder)
	defer shapeDecoders.Put(sd)
	sd.r.Reset(data)
	sd.dec.Reset(&sd.r)
	defer sd.r.Reset(nil) // the pool keeps no request bytes
	dec := &sd.dec
	tok, err := dec.ReadToken()
	if err == io.EOF {
		return invalid("", "a JSON request body is required")
	}
	if err != nil {
		return shapeError(err)
	}
	if tok.Kind() != '{' {
		return invalid("", "the request body must be a JSON object")
	}
	for dec.StackDepth() > 0 {
		if _, err := dec.ReadToken(); err != nil {
			return shapeError(err)
		}
		if dec.StackDepth() > maxJSONDepth {
			return invalid("", fmt.Sprintf("JSON nested deeper than %d levels", maxJSONDepth))
		}
	}
	// Whatever follows the object is reported by the decoder.
	return nil
}

// shapeDecoder is a reusable jsontext decoder with its reader: a new one
// costs more than the walk of a small body.
type shapeDecoder struct {
	r   bytes.Reader
	dec jsontext.Decoder
}

var shapeDecoders = sync.Pool{New: func() any { return new(shapeDecoder) }}

// shapeError turns jsontext's errors into invalid_argument problems.
func shapeError(err error) error {
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &se):
		return invalid(se.JSONPointer.LastToken(), "duplicate key")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: unexpected end of input")
	case errors.As(err, &se):
		return invalid("", "malformed JSON at byte "+strconv.FormatInt(se.ByteOffset, 10))
	}
	return invalid("", "malformed JSON")
}

// decodeError turns encoding/json's errors into invalid_argument problems
// that name the field and what was expected.
func decodeError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &se):
		return invalid("", "malformed JSON at byte "+strconv.FormatInt(se.Offset, 10))
	case errors.As(err, &te):
		return invalid(te.Field, "must be "+jsonTypeName(te.Type)+", got "+te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: unexpected end of input")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, err := strconv.Unquote(name); err == nil {
			name = f
		}
		return invalid(name, "unknown field")
	}
	return invalid("", "malformed JSON")
}

func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a different type"
}

// optionalString is a JSON string field that tells apart absent, null and
// a value: for dead_letter_queue, null means "remove".
type optionalString struct {
	Set   bool
	Null  bool
	Value string
}

// UnmarshalJSON records that the field was present.
func (o *optionalString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	if err := json.Unmarshal(b, &o.Value); err != nil {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[string]()}
	}
	return nil
}

// jsonKind names the kind of a JSON value by its first byte, as
// encoding/json's type errors do.
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
