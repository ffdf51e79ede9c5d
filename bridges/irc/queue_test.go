package irc

import (
	"fmt"
	"strings"
	"testing"
)

func drain(q *queue) []string {
	var out []string
	for {
		l, ok := q.pop()
		if !ok {
			return out
		}
		out = append(out, strings.TrimSpace(l.text))
	}
}

func testQueue(laneCap int) *queue {
	return newQueue(laneCap, 3, func(target, cmd, feed string, n int, m *mark) []outLine {
		return []outLine{{text: fmt.Sprintf("%s %s :%d more in %s", cmd, target, n, feed), mark: m}}
	})
}

func TestQueueOrderAndFairness(t *testing.T) {
	q := testQueue(10)
	q.pushItem("#a", "#a", "PRIVMSG", "f", 1, []outLine{{text: "a1"}, {text: "a2"}}, nil)
	q.pushItem("#a", "#a", "PRIVMSG", "f", 1, []outLine{{text: "a3"}}, nil)
	q.pushItem("#b", "#b", "PRIVMSG", "g", 1, []outLine{{text: "b1"}}, nil)
	q.pushCtrl(outLine{text: "JOIN #c"})
	if got := strings.Join(drain(q), " "); got != "JOIN #c a1 b1 a2 a3" {
		t.Errorf("order = %s; want control first, then channels round-robin", got)
	}
}

// TestQueueOverflow: items beyond a lane's bound are summarized once the
// lane drains, with the newest dropped item's mark; later items wait for
// the summary, so nothing appears out of order.
func TestQueueOverflow(t *testing.T) {
	q := testQueue(3)
	for i := 1; i <= 6; i++ {
		q.pushItem("#a", "#a", "NOTICE", "news", 1, []outLine{{text: fmt.Sprint("item ", i)}}, &mark{feed: "news", rev: fmt.Sprint(i)})
	}
	var marks []string
	var got []string
	for {
		l, ok := q.pop()
		if !ok {
			break
		}
		got = append(got, l.text)
		if l.mark != nil {
			marks = append(marks, l.mark.rev)
		}
		if len(got) == 2 {
			q.pushItem("#a", "#a", "NOTICE", "news", 1, []outLine{{text: "item 7"}}, &mark{feed: "news", rev: "7"})
		}
	}
	if want := "item 1|item 2|item 3|NOTICE #a :4 more in news"; strings.Join(got, "|") != want {
		t.Errorf("lines = %q, want %q", got, want)
	}
	if marks[len(marks)-1] != "7" {
		t.Errorf("summary mark = %v, want the newest dropped item (7)", marks)
	}
	if q.pushCtrl(outLine{text: "1"}, outLine{text: "2"}, outLine{text: "3"}, outLine{text: "4"}) {
		t.Error("control lines beyond the bound were queued")
	}
}

func TestQueueReset(t *testing.T) {
	q := testQueue(3)
	q.pushCtrl(outLine{text: "JOIN #a"}, outLine{text: "result", keep: true})
	q.pushItem("#a", "#a", "PRIVMSG", "f", 1, []outLine{{text: "x"}}, nil)
	q.reset()
	if got := drain(q); len(got) != 1 || got[0] != "result" {
		t.Errorf("after reset: %q, want only the kept result", got)
	}
}
