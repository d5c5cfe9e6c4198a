// sluice_test.go: tests of the Go helper, run natively: `go test` in guest-sdk/go.
package sluice

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

type testEvent struct {
	key       []byte
	hasKey    bool
	body      string
	headers   [][2]string
	topic     string
	partition int32
	offset    int64
	timestamp int64
}

// encode builds a flat batch the way the host does.
func encode(events []testEvent) Batch {
	var b Batch
	put := func(p []byte) (uint32, uint32) {
		at := uint32(len(b.Data))
		b.Data = append(b.Data, p...)
		return at, uint32(len(p))
	}
	for _, e := range events {
		var w [Stride]uint32
		if e.hasKey {
			w[0], w[1] = put(e.key)
		} else {
			w[1] = NoKey
		}
		w[2], w[3] = put([]byte(e.body))
		var block []byte
		for _, h := range e.headers {
			block = binary.LittleEndian.AppendUint32(block, uint32(len(h[0])))
			block = append(block, h[0]...)
			block = binary.LittleEndian.AppendUint32(block, uint32(len(h[1])))
			block = append(block, h[1]...)
		}
		w[4], w[5] = put(block)
		w[6], w[7] = put([]byte(e.topic))
		w[8] = uint32(e.partition)
		w[9], w[10] = uint32(uint64(e.offset)), uint32(uint64(e.offset)>>32)
		w[11], w[12] = uint32(uint64(e.timestamp)), uint32(uint64(e.timestamp)>>32)
		b.Index = append(b.Index, w[:]...)
	}
	return b
}

func headers(e Event) [][2]string {
	var out [][2]string
	for n, v := range e.Headers() {
		out = append(out, [2]string{string(n), string(v)})
	}
	return out
}

func TestReadsEvents(t *testing.T) {
	b := encode([]testEvent{
		{key: []byte("k"), hasKey: true, body: "hello", headers: [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}},
			topic: "logs", partition: 2, offset: 1 << 40, timestamp: 1_700_000_000_000},
		{body: "", topic: "t", partition: -1, offset: -5, timestamp: NoTimestamp},
	})
	if b.Len() != 2 {
		t.Fatalf("len %d", b.Len())
	}
	e := b.Event(0)
	if k, ok := e.Key(); !ok || string(k) != "k" {
		t.Errorf("key %q %v", k, ok)
	}
	if string(e.Body()) != "hello" || e.Topic() != "logs" || e.Partition() != 2 || e.Offset() != 1<<40 {
		t.Errorf("fields %q %q %d %d", e.Body(), e.Topic(), e.Partition(), e.Offset())
	}
	if ts, ok := e.Timestamp(); !ok || ts != 1_700_000_000_000 {
		t.Errorf("timestamp %d %v", ts, ok)
	}
	if v, ok := e.Header("a"); !ok || string(v) != "1" {
		t.Errorf("header a %q", v)
	}
	if _, ok := e.Header("zz"); ok {
		t.Error("header zz found")
	}
	if got := headers(e); len(got) != 3 {
		t.Errorf("headers %v", got)
	}
	e = b.Event(1)
	if _, ok := e.Key(); ok {
		t.Error("event 1 has a key")
	}
	if _, ok := e.Timestamp(); ok || e.Partition() != -1 || e.Offset() != -5 {
		t.Error("event 1 fields")
	}
}

func TestMalformedRangesReadEmpty(t *testing.T) {
	b := encode([]testEvent{{body: "x", topic: "t"}})
	b.Index[3] = 1000 // body length past the data
	b.Index[5] = 3    // a truncated header block
	e := b.Event(0)
	if len(e.Body()) != 0 {
		t.Error("body not empty")
	}
	if len(headers(e)) != 0 {
		t.Error("headers not empty")
	}
}

func TestResultEncoding(t *testing.T) {
	in := encode([]testEvent{
		{body: "keep", topic: "t", offset: 0, timestamp: 7},
		{body: "drop me", topic: "t", offset: 1},
		{key: []byte("k"), hasKey: true, body: "b", headers: [][2]string{{"h", "1"}, {"x", "2"}, {"h", "3"}}, topic: "t", offset: 2, timestamp: 9},
		{body: "route", topic: "t", offset: 3},
		{body: "bad", topic: "t", offset: 4},
		{body: "route2", topic: "t", offset: 5},
	})
	res, err := Run(in, func(e Event, r *Result) error {
		switch string(e.Body()) {
		case "keep":
			r.Keep()
		case "drop me":
			r.Drop()
		case "b":
			d := NewDraft(e)
			d.SetBody([]byte("B"))
			d.SetHeader("h", []byte("new"))
			d.SetHeader("y", []byte("added"))
			d.RemoveHeader("x")
			d.ClearKey()
			d.SetTimestamp(11)
			r.Modify(d)
		case "route":
			r.RouteTo("audit", nil)
		case "route2":
			d := NewDraft(e)
			d.SetKey([]byte("kk"))
			r.RouteTo("audit", d)
		default:
			r.DeadLetter("bad body")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{
		uint32(Keep), 0, NoReplacement,
		uint32(Drop), 0, NoReplacement,
		uint32(Modify), 0, 0,
		uint32(RouteTo), 0, NoReplacement,
		uint32(DeadLetter), 1, NoReplacement,
		uint32(RouteTo), 0, 1,
	}
	if !reflect.DeepEqual(res.Outcomes, want) {
		t.Errorf("outcomes %v", res.Outcomes)
	}
	if !reflect.DeepEqual(res.Labels, []string{"audit", "bad body"}) {
		t.Errorf("labels %v", res.Labels)
	}
	rep := res.Replacements
	if rep.Len() != 2 {
		t.Fatalf("replacements %d", rep.Len())
	}
	e := rep.Event(0)
	if _, ok := e.Key(); ok || string(e.Body()) != "B" || e.Offset() != 2 || e.Topic() != "t" {
		t.Errorf("replacement 0: %q", e.Body())
	}
	if ts, _ := e.Timestamp(); ts != 11 {
		t.Errorf("timestamp %d", ts)
	}
	if got := headers(e); !reflect.DeepEqual(got, [][2]string{{"h", "new"}, {"y", "added"}}) {
		t.Errorf("headers %v", got)
	}
	e = rep.Event(1)
	if k, ok := e.Key(); !ok || string(k) != "kk" || string(e.Body()) != "route2" || e.Offset() != 5 {
		t.Errorf("replacement 1")
	}
}

func TestHandlerErrorsAndMissingOutcomes(t *testing.T) {
	in := encode([]testEvent{{body: "a", topic: "t"}})
	if _, err := Run(in, func(Event, *Result) error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("error %v", err)
	}
	if _, err := Run(in, func(Event, *Result) error { return nil }); err == nil {
		t.Error("a missing outcome was accepted")
	}
	if _, err := Run(Batch{Index: make([]uint32, 5)}, func(Event, *Result) error { return nil }); err == nil {
		t.Error("a partial index was accepted")
	}
}
