package transport

import (
	"fmt"
	"net/url"
)

// maxQueueNameLen is the longest queue name, as API.md's name rule says:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$.
const maxQueueNameLen = 80

func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

func isNameChar(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' }

// checkQueueName applies the name rule byte by byte: a non-ASCII look-alike
// fails here, so it can never reach a pattern match or the command side.
func checkQueueName(field, name string) error {
	if name == "" || len(name) > maxQueueNameLen || !isAlnum(name[0]) {
		return invalid(field, "queue names are 1 to 80 characters of A-Z a-z 0-9 . _ - starting with a letter or digit")
	}
	for i := 1; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return invalid(field, "queue names are 1 to 80 characters of A-Z a-z 0-9 . _ - starting with a letter or digit")
		}
	}
	return nil
}

// pathParam decodes a path variable exactly once. The router matches on
// the escaped path, so "%2F" stays inside one segment and "%2e%2e" is not
// a dot-segment; decoding here turns them into characters that the name
// rule then refuses.
func pathParam(raw, field string) (string, error) {
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", invalid(field, fmt.Sprintf("bad percent-encoding in %s", field))
	}
	return v, nil
}

// maxMessageIDLen bounds a message id in a path; ids are short opaque
// strings, so anything longer cannot exist.
const maxMessageIDLen = 128

// checkMessageID refuses ids that cannot be a message id: empty, too long,
// or with characters outside printable ASCII.
func checkMessageID(id string) error {
	if id == "" || len(id) > maxMessageIDLen {
		return invalid("id", "message ids are 1 to 128 characters")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return invalid("id", "message ids are printable ASCII without '/'")
		}
	}
	return nil
}
