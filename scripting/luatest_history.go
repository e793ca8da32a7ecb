package scripting

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
)

// Topic history under `samgw test`: topic_history(pattern, keep) declares
// a rule as --topic-history does; publications of its topics are then
// numbered (one counter for all, as a stream's sequence) and kept, and
// gateway.subscribe with since recovers from them, in the epoch "test".

// testEpoch is the epoch of the history of `samgw test`.
const testEpoch = "test"

// testHistory is the history of one test.
type testHistory struct {
	rules  []delivery.HistoryRule
	kept   map[string][]delivery.Entry // topic → its kept publications, oldest first
	offset uint64                      // the last offset given
}

// rule returns the rule topic falls under, or nil.
func (th *testHistory) rule(topic string) *delivery.HistoryRule {
	for i, r := range th.rules {
		if access.Match(r.Pattern, topic) {
			return &th.rules[i]
		}
	}
	return nil
}

// topic_history(pattern, keep): the topics pattern matches keep their last
// keep publications (the first rule that matches applies).
func (h *harness) topicHistory(L *lua.LState) int {
	r, err := delivery.ParseHistoryRule(fmt.Sprintf("%s=%d", L.CheckString(1), L.CheckInt(2)))
	if err != nil {
		L.RaiseError("topic_history: %s", err)
	}
	h.history.rules = append(h.history.rules, r)
	return 0
}

// appendPublication numbers and keeps a publication of topic, if it keeps
// history (ok false otherwise).
func (h *harness) appendPublication(topic string, payload []byte, route string) (delivery.Entry, bool) {
	th := &h.history
	r := th.rule(topic)
	if r == nil {
		return delivery.Entry{}, false
	}
	if th.kept == nil {
		th.kept = map[string][]delivery.Entry{}
	}
	kept := th.kept[topic]
	e := delivery.Entry{Topic: topic, Payload: payload, Route: route, Epoch: testEpoch}
	if len(kept) > 0 {
		e.Prev = kept[len(kept)-1].Offset
	}
	th.offset++
	e.Offset = th.offset
	kept = append(kept, e)
	if len(kept) > r.Keep {
		kept = kept[len(kept)-r.Keep:]
	}
	th.kept[topic] = kept
	return e, true
}

// recoverFor is History.Recover (or Last, from now) on the test's history.
func (h *harness) recoverFor(topic string, from resumeFrom) delivery.Recovery {
	th := &h.history
	if th.rule(topic) == nil {
		return delivery.Recovery{}
	}
	kept := th.kept[topic]
	rec := delivery.Recovery{Recovered: true, Position: delivery.Position{Epoch: testEpoch}}
	if len(kept) > 0 {
		rec.Position.Offset = kept[len(kept)-1].Offset
	}
	if from.Now {
		return rec
	}
	if from.Epoch != "" && from.Epoch != testEpoch {
		rec.Recovered = false
		return rec
	}
	for _, e := range kept {
		if e.Offset > from.Since {
			rec.Entries = append(rec.Entries, e)
		}
	}
	if len(rec.Entries) > 0 {
		rec.Recovered = rec.Entries[0].Prev <= from.Since
	}
	return rec
}
