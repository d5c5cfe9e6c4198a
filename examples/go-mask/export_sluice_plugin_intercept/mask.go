// mask.go: the `mask` interceptor plugin in Go (same config and behaviour as the
// Rust plugins/mask; see README.md). Masks sensitive values keeping their last
// characters: JSON `fields` by key path, then `patterns` (Go regexp / RE2 syntax)
// over the raw body. A body `fields` cannot read (not one JSON document, or nested
// deeper than 128 levels) is dead-lettered unless `on_unparseable = "pass"` (the
// default is "dead-letter" when `fields` is set, "pass" otherwise): a masking stage
// fails closed. Build: examples/go-mask/build.sh -> target/examples/go-mask.wasm
package export_sluice_plugin_intercept

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"sluice"
)

const maxFields = 64

// unparseableReason is the dead-letter reason of a body `fields` cannot read (the
// same in every language's `mask`: the golden files hold it).
const unparseableReason = "mask: body is not a JSON document (or nests deeper than 128 levels); its fields cannot be masked"

// unparseablePolicy is what happens to a body `fields` cannot read (`on_unparseable`).
type unparseablePolicy int

const (
	// deadLetterUnparseable dead-letters it with unparseableReason (the default
	// with `fields`): passing it on would let its fields through unmasked.
	deadLetterUnparseable unparseablePolicy = iota
	// passUnparseable passes it on with only `patterns` applied.
	passUnparseable
)

// config is the plugin configuration (see README.md).
type config struct {
	fields        [][]string
	patterns      []*regexp.Regexp
	keepLast      int
	maskChar      []byte // one character, UTF-8
	onUnparseable unparseablePolicy
}

func configError(format string, args ...any) error {
	return fmt.Errorf("invalid plugin config: "+format, args...)
}

// parseConfig parses the JSON the host gives (the plugin's `config` table).
// (A small reader of its own instead of encoding/json, which adds ~1 MB to the wasm.)
func parseConfig(text string) (*config, error) {
	root, ok := parseJSON([]byte(text))
	if !ok {
		return nil, configError("not valid JSON")
	}
	obj, ok := root.(jsonObject)
	if !ok {
		return nil, configError("invalid type: %s, expected a table", jsonTypeName(root))
	}
	c := &config{keepLast: 4, maskChar: []byte("*")}
	policySet := false
	for i, key := range obj.keys {
		v := obj.values[i]
		switch key {
		case "fields":
			list, err := stringList(key, v)
			if err != nil {
				return nil, err
			}
			if len(list) > maxFields {
				return nil, configError("`fields` has %d entries; at most %d are supported", len(list), maxFields)
			}
			for _, f := range list {
				path := strings.Split(f, ".")
				if slices.Contains(path, "") {
					return nil, configError("`fields` entry %q has an empty segment; write keys as `a` or `a.b`", f)
				}
				c.fields = append(c.fields, path)
			}
		case "patterns":
			list, err := stringList(key, v)
			if err != nil {
				return nil, err
			}
			for _, p := range list {
				re, err := regexp.Compile(p)
				if err != nil {
					return nil, configError("patterns: invalid regex %q: %v", p, err)
				}
				c.patterns = append(c.patterns, re)
			}
		case "keep_last":
			num, isNum := v.(jsonNumber)
			n, err := strconv.ParseUint(string(num), 10, 32)
			if !isNum || err != nil {
				return nil, configError("keep_last: invalid value: %s, expected a non-negative integer", jsonTypeName(v))
			}
			c.keepLast = int(n)
		case "mask_char":
			s, isStr := v.(string)
			if !isStr || utf8.RuneCountInString(s) != 1 {
				return nil, configError("mask_char: invalid value: %s, expected a single character", jsonTypeName(v))
			}
			c.maskChar = []byte(s)
		case "on_unparseable":
			p, err := parsePolicy(v)
			if err != nil {
				return nil, err
			}
			c.onUnparseable, policySet = p, true
		default:
			return nil, configError("unknown field `%s`, expected one of `fields`, `patterns`, `keep_last`, `mask_char`, `on_unparseable`", key)
		}
	}
	// The default depends on `fields`, which may come after `on_unparseable`.
	if !policySet && len(c.fields) == 0 {
		c.onUnparseable = passUnparseable
	}
	if len(c.fields) == 0 && len(c.patterns) == 0 {
		return nil, configError("nothing to mask: set `fields` (JSON keys) or `patterns` (regexes), or both")
	}
	return c, nil
}

// parsePolicy reads `on_unparseable`; errors are worded like serde's for an enum.
func parsePolicy(v any) (unparseablePolicy, error) {
	s, isStr := v.(string)
	switch {
	case !isStr:
		return 0, configError("on_unparseable: invalid type: %s, expected `dead-letter` or `pass`", jsonTypeName(v))
	case s == "dead-letter":
		return deadLetterUnparseable, nil
	case s == "pass":
		return passUnparseable, nil
	default:
		return 0, configError("on_unparseable: unknown variant `%s`, expected `dead-letter` or `pass`", s)
	}
}

func stringList(key string, v any) ([]string, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, configError("%s: invalid type: %s, expected a list of strings", key, jsonTypeName(v))
	}
	list := make([]string, len(items))
	for i, item := range items {
		if list[i], ok = item.(string); !ok {
			return nil, configError("%s: invalid type: %s, expected a string", key, jsonTypeName(item))
		}
	}
	return list, nil
}

// masker holds the configuration and scratch buffers reused across events.
type masker struct {
	cfg          *config
	scan         scanner
	bufA, bufB   []byte
	text, masked []byte
	ranges       [][2]int
}

// maskText appends text masked: all but its last keepLast characters become the
// mask character (all of them when it is not longer). Characters are counted as
// Rust's from_utf8_lossy decodes them; invalid bytes come out as U+FFFD.
func (m *masker) maskText(out, text []byte) []byte {
	chars := 0
	for i := 0; i < len(text); {
		_, n := utf8LossyNext(text[i:])
		i += n
		chars++
	}
	hidden := chars
	if chars > m.cfg.keepLast {
		hidden = chars - m.cfg.keepLast
	}
	i := 0
	for k := 0; k < chars; k++ {
		r, n := utf8LossyNext(text[i:])
		switch {
		case k < hidden:
			out = append(out, m.cfg.maskChar...)
		case r == utf8.RuneError:
			out = utf8.AppendRune(out, r)
		default:
			out = append(out, text[i:i+n]...)
		}
		i += n
	}
	return out
}

// applyJSONEdits returns body with each edited JSON value replaced by a masked string.
func (m *masker) applyJSONEdits(out, body []byte, edits []edit) []byte {
	out = out[:0]
	at := 0
	for _, e := range edits {
		out = append(out, body[at:e.start]...)
		if e.isString {
			m.text, _ = decodeString(body[e.start:e.end], m.text[:0]) // "" on error
		} else {
			m.text = append(m.text[:0], body[e.start:e.end]...)
		}
		m.masked = m.maskText(m.masked[:0], m.text)
		out = encodeString(out, m.masked)
		at = e.end
	}
	return append(out, body[at:]...)
}

// maskPatterns returns body with every pattern match masked; ok is false when
// nothing matched.
func (m *masker) maskPatterns(out, body []byte) ([]byte, bool) {
	m.ranges = m.ranges[:0]
	for _, re := range m.cfg.patterns {
		for _, loc := range re.FindAllIndex(body, -1) {
			if loc[1] > loc[0] {
				m.ranges = append(m.ranges, [2]int{loc[0], loc[1]})
			}
		}
	}
	if len(m.ranges) == 0 {
		return out, false
	}
	// Matches of several patterns may overlap: mask their union.
	slices.SortStableFunc(m.ranges, func(a, b [2]int) int { return a[0] - b[0] })
	merged := m.ranges[:1]
	for _, r := range m.ranges[1:] {
		last := &merged[len(merged)-1]
		if r[0] <= last[1] {
			last[1] = max(last[1], r[1])
		} else {
			merged = append(merged, r)
		}
	}
	out = out[:0]
	at := 0
	for _, r := range merged {
		out = append(out, body[at:r[0]]...)
		out = m.maskText(out, body[r[0]:r[1]])
		at = r[1]
	}
	return append(out, body[at:]...), true
}

// handle masks one event.
func (m *masker) handle(e sluice.Event, r *sluice.Result) error {
	body := e.Body()
	var newBody []byte
	if len(m.cfg.fields) > 0 {
		edits, ok := m.scan.findFields(body, m.cfg.fields)
		if !ok && m.cfg.onUnparseable == deadLetterUnparseable {
			// Fail closed: the host dead-letters the original, so patterns are moot.
			r.DeadLetter(unparseableReason)
			return nil
		}
		if ok && len(edits) > 0 {
			m.bufA = m.applyJSONEdits(m.bufA, body, edits)
			newBody = m.bufA
		}
	}
	if len(m.cfg.patterns) > 0 {
		current := body
		if newBody != nil {
			current = newBody
		}
		var ok bool
		if m.bufB, ok = m.maskPatterns(m.bufB, current); ok {
			newBody = m.bufB
		}
	}
	if newBody == nil {
		r.Keep()
		return nil
	}
	d := sluice.NewDraft(e)
	d.SetBody(newBody) // copied into the result by Modify
	r.Modify(d)
	return nil
}
