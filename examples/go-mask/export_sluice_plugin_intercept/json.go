// json.go: JSON and UTF-8 helpers of the Go `mask` example plugin (see mask.go).
// Mirrors plugins/mask/src/json.rs and the serde_json behaviour the Rust mask relies
// on, so outputs are byte-identical. Build: examples/go-mask/build.sh.
package export_sluice_plugin_intercept

import (
	"bytes"
	"unicode/utf8"
)

const maxNesting = 128

// utf8LossyNext decodes the next character of s (len(s) > 0) the way Rust's
// String::from_utf8_lossy does: a maximal invalid subpart is one U+FFFD (Go's
// utf8.DecodeRune would give one U+FFFD per byte). Returns the rune and bytes used.
func utf8LossyNext(s []byte) (rune, int) {
	c := s[0]
	if c < 0x80 {
		return rune(c), 1
	}
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	var v rune
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need, v = 1, rune(c&0x1F)
	case c >= 0xE0 && c <= 0xEF:
		need, v = 2, rune(c&0x0F)
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
	case c >= 0xF0 && c <= 0xF4:
		need, v = 3, rune(c&0x07)
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
	default:
		return utf8.RuneError, 1
	}
	i := 1
	for ; i <= need; i++ {
		if i >= len(s) {
			break
		}
		l, h := byte(0x80), byte(0xBF)
		if i == 1 {
			l, h = lo, hi
		}
		d := s[i]
		if d < l || d > h {
			break
		}
		v = v<<6 | rune(d&0x3F)
	}
	if i <= need {
		return utf8.RuneError, i
	}
	return v, need + 1
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var v rune
	for _, c := range s[i : i+4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			v |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// decodeString decodes a JSON string literal (span including quotes) strictly,
// like serde_json::from_slice::<String>, appending the text to out; ok is false
// (out unchanged) on invalid escapes, lone surrogates or invalid UTF-8.
func decodeString(s []byte, out []byte) ([]byte, bool) {
	mark := len(out)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return out, false
	}
	end := len(s) - 1
	s = s[:end]
	i := 1
	for i < end {
		run := i
		for i < end && s[i] != '\\' && s[i] != '"' && s[i] >= 0x20 {
			i++
		}
		if !utf8.Valid(s[run:i]) {
			return out[:mark], false
		}
		out = append(out, s[run:i]...)
		if i == end {
			break
		}
		if s[i] != '\\' || i+1 >= end {
			return out[:mark], false
		}
		e := s[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, 0x08)
		case 'f':
			out = append(out, 0x0C)
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			u, ok := hex4(s, i)
			if !ok {
				return out[:mark], false
			}
			i += 4
			if u >= 0xDC00 && u <= 0xDFFF {
				return out[:mark], false
			}
			if u >= 0xD800 && u <= 0xDBFF {
				if i+1 >= end || s[i] != '\\' || s[i+1] != 'u' {
					return out[:mark], false
				}
				u2, ok := hex4(s, i+2)
				if !ok || u2 < 0xDC00 || u2 > 0xDFFF {
					return out[:mark], false
				}
				i += 6
				u = 0x10000 + ((u-0xD800)<<10 | (u2 - 0xDC00))
			}
			out = utf8.AppendRune(out, u)
		default:
			return out[:mark], false
		}
	}
	return out, true
}

// encodeString appends s as a JSON string literal, escaped exactly as serde_json does.
func encodeString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	run := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[run:i]...)
		run = i + 1
		switch c {
		case '"':
			out = append(out, '\\', '"')
		case '\\':
			out = append(out, '\\', '\\')
		case 0x08:
			out = append(out, '\\', 'b')
		case 0x0C:
			out = append(out, '\\', 'f')
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		default:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
	}
	out = append(out, s[run:]...)
	return append(out, '"')
}

// edit is a value to mask: byte range in the body; a string's range includes quotes.
type edit struct {
	start, end int
	isString   bool
}

// scanner is a validating JSON scanner that finds the values to mask without
// building a document (port of plugins/mask/src/json.rs).
type scanner struct {
	b     []byte
	i     int
	paths [][]string
	edits []edit
	key   []byte
}

// findFields returns the strings and numbers at or below any of paths (arrays
// looked through) in document order; ok is false when body is not one JSON document.
func (s *scanner) findFields(body []byte, paths [][]string) (edits []edit, ok bool) {
	// JSON text is UTF-8; the scanner checks only the keys it compares.
	if !utf8.Valid(body) {
		return nil, false
	}
	s.b, s.i, s.paths, s.edits = body, 0, paths, s.edits[:0]
	live := uint64(1)<<len(paths) - 1
	if len(paths) >= 64 {
		live = ^uint64(0)
	}
	s.ws()
	if !s.value(live, 0, false, 0) {
		return nil, false
	}
	s.ws()
	return s.edits, s.i == len(body)
}

func (s *scanner) peek() int {
	if s.i < len(s.b) {
		return int(s.b[s.i])
	}
	return -1
}

// The hot loops below work on locals (b, i): Go's wasm code keeps locals in
// registers-like wasm locals, fields in memory.
func (s *scanner) ws() {
	b, i := s.b, s.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	s.i = i
}

func (s *scanner) expect(c byte) bool {
	if s.peek() != int(c) {
		return false
	}
	s.i++
	return true
}

func (s *scanner) value(live uint64, depth int, masked bool, nesting int) bool {
	if nesting > maxNesting {
		return false
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(live, depth, masked, nesting+1)
	case c == '[':
		return s.array(live, depth, masked, nesting+1)
	case c == '"':
		a, b, ok := s.str()
		if ok && masked {
			s.edits = append(s.edits, edit{a, b, true})
		}
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		a, b, ok := s.number()
		if ok && masked {
			s.edits = append(s.edits, edit{a, b, false})
		}
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return false
	}
}

func (s *scanner) object(live uint64, depth int, masked bool, nesting int) bool {
	if !s.expect('{') {
		return false
	}
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		ks, ke, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if !s.expect(':') {
			return false
		}
		s.ws()
		childLive, childMasked := uint64(0), masked
		if !masked && live != 0 {
			if childLive, childMasked, ok = s.descend(live, depth, ks, ke); !ok {
				return false
			}
		}
		if !s.value(childLive, depth+1, childMasked, nesting) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array(live uint64, depth int, masked bool, nesting int) bool {
	if !s.expect('[') {
		return false
	}
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		s.ws()
		if !s.value(live, depth, masked, nesting) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// descend says which paths still match after the key at [ks, ke) at depth, and
// whether one ends there; ok is false for an invalid key (the body then does not
// count as JSON, as in the Rust scanner).
func (s *scanner) descend(live uint64, depth, ks, ke int) (next uint64, masked, ok bool) {
	raw := s.b[ks+1 : ke-1]
	if bytes.IndexByte(raw, '\\') >= 0 {
		if s.key, ok = decodeString(s.b[ks:ke], s.key[:0]); !ok {
			return 0, false, false
		}
		raw = s.key
	} else if !utf8.Valid(raw) {
		return 0, false, false
	}
	for bit, path := range s.paths {
		if live&(1<<bit) == 0 || depth >= len(path) || path[depth] != string(raw) {
			continue
		}
		if len(path) == depth+1 {
			masked = true
		} else {
			next |= 1 << bit
		}
	}
	return next, masked, true
}

func (s *scanner) str() (start, end int, ok bool) {
	b, i := s.b, s.i
	start = i
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	i++
	for {
		for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] > 0x1f {
			i++
		}
		if i >= len(b) || b[i] <= 0x1f {
			return 0, 0, false
		}
		if b[i] == '"' {
			s.i = i + 1
			return start, i + 1, true
		}
		if i, ok = escape(b, i); !ok {
			return 0, 0, false
		}
	}
}

// escape steps over the escape at b[i] (a backslash), refusing what JSON refuses,
// as the Rust scanner does: an unknown escape (`\q`), a `\u` without four hex
// digits, a lone surrogate. Such a body is not JSON, so under `on_unparseable =
// "dead-letter"` it must not pass as a document with unread fields.
func escape(b []byte, i int) (next int, ok bool) {
	i++
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 1, true
	case 'u':
		u, ok := hex4(b, i+1)
		if !ok || (u >= 0xDC00 && u <= 0xDFFF) {
			return 0, false
		}
		i += 5
		if u < 0xD800 || u > 0xDBFF {
			return i, true
		}
		if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		u2, ok := hex4(b, i+2)
		if !ok || u2 < 0xDC00 || u2 > 0xDFFF {
			return 0, false
		}
		return i + 6, true
	default:
		return 0, false
	}
}

func (s *scanner) digits() int {
	b, i := s.b, s.i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	n := i - s.i
	s.i = i
	return n
}

func (s *scanner) number() (start, end int, ok bool) {
	start = s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return 0, 0, false
	}
	if s.peek() == '.' {
		s.i++
		if s.digits() == 0 {
			return 0, 0, false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return 0, 0, false
		}
	}
	return start, s.i, true
}

func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

// jsonObject is a parsed JSON object, keys in document order.
type jsonObject struct {
	keys   []string
	values []any
}

// jsonNumber is a parsed JSON number, as written.
type jsonNumber string

// parseJSON parses one JSON document (for the configuration) into nil, bool,
// jsonNumber, string, []any or jsonObject; ok is false on a syntax error.
func parseJSON(b []byte) (v any, ok bool) {
	s := &scanner{b: b}
	s.ws()
	if v, ok = s.parseValue(0); !ok {
		return nil, false
	}
	s.ws()
	return v, s.i == len(b)
}

func (s *scanner) parseValue(nesting int) (any, bool) {
	if nesting > maxNesting {
		return nil, false
	}
	switch c := s.peek(); {
	case c == '"':
		a, b, ok := s.str()
		if !ok {
			return nil, false
		}
		text, ok := decodeString(s.b[a:b], nil)
		return string(text), ok
	case c == '-' || (c >= '0' && c <= '9'):
		a, b, ok := s.number()
		return jsonNumber(s.b[a:b]), ok
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	case c == '[' || c == '{':
		close := byte(']')
		if c == '{' {
			close = '}'
		}
		s.i++
		var items []any
		var obj jsonObject
		s.ws()
		if s.peek() == int(close) {
			s.i++
		} else {
			for {
				s.ws()
				if c == '{' {
					key, ok := s.parseValue(nesting + 1)
					k, isStr := key.(string)
					if !ok || !isStr {
						return nil, false
					}
					s.ws()
					if !s.expect(':') {
						return nil, false
					}
					s.ws()
					obj.keys = append(obj.keys, k)
				}
				item, ok := s.parseValue(nesting + 1)
				if !ok {
					return nil, false
				}
				if c == '{' {
					obj.values = append(obj.values, item)
				} else {
					items = append(items, item)
				}
				s.ws()
				if s.expect(',') {
					continue
				}
				if !s.expect(close) {
					return nil, false
				}
				break
			}
		}
		if c == '{' {
			return obj, true
		}
		if items == nil {
			items = []any{}
		}
		return items, true
	default:
		return nil, false
	}
}

// jsonTypeName names the type of a parsed value for error messages.
func jsonTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case jsonNumber:
		return "number " + string(v)
	case string:
		return "a string"
	case []any:
		return "a list"
	default:
		return "a table"
	}
}
