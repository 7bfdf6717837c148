package urlutil

import (
	"errors"
	"fmt"
	"strings"
)

// tokenChars are the characters of an RFC 9110 token (a field name)
// besides letters and digits.
const tokenChars = "!#$%&'*+-.^_`|~"

// ValidHeaderName reports that name is an RFC 9110 field name: a token,
// with no space, separator or control character.
func ValidHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c < 0x80 && strings.IndexByte(tokenChars, c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// ValidHeaderValue reports that value holds no control character but
// horizontal tab (RFC 9110 field-value, obs-text allowed): a CR or LF would
// end the field and start another on the wire.
func ValidHeaderValue(value string) bool {
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// CheckHeaderLine checks one "Key: Value" line as ParseHeaders reads it
// (split on the first colon, both sides trimmed): the name must be a
// token, and the line free of control characters but tab. Whitespace at
// the line's ends, a CR or LF included (a line read from a file with CRLF
// endings, as a Dragonfly 1.x supernode took it), is trimmed as
// ParseHeaders trims it; one inside the line ("X:\r\ny") would start
// another field on the wire and is refused.
func CheckHeaderLine(line string) error {
	k, v, ok := strings.Cut(line, ":")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	switch {
	case !ok || k == "":
		return fmt.Errorf("invalid header %q: want \"Key: Value\"", line)
	case !ValidHeaderValue(strings.TrimSpace(line)):
		return fmt.Errorf("invalid header %q: it holds a control character (CR, LF, NUL...)", line)
	}
	if err := CheckHeaderField(k, v); err != nil {
		return fmt.Errorf("invalid header %q: %w", line, err)
	}
	return nil
}

// CheckHeaderField checks a header's name and value (a header map's entry,
// or a line's parts): a token name, a value free of control characters.
// The error quotes neither: the caller names the header.
func CheckHeaderField(name, value string) error {
	switch {
	case !ValidHeaderName(name):
		return errors.New("the name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only, no space)")
	case !ValidHeaderValue(value):
		return errors.New("the value holds a control character (CR, LF, NUL...)")
	}
	return nil
}
