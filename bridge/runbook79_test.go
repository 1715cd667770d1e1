package bridge_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestRunbook79_DeadlineSpentBeforeTheLookupIsNotDataverse: an event that
// reaches the resolver after its pop deadline has passed (a NATS or
// publisher backlog of a couple of seconds, under SCREENPOP_MAX_EVENT_AGE so
// not stale) pops search with outcome "deadline", though Dataverse is
// healthy and answers in milliseconds: the deadline runs from the Genesys
// frame's receipt, and the backlog spent it before the lookup began
// (lookup_ms 0, queue_ms past the deadline). docs/operations.md 7.9 reads a
// deadline pop as "Dataverse was slow (lookup_ms near
// SCREENPOP_POP_DEADLINE)" and 3.2 defines the outcome as "lookup slower
// than SCREENPOP_POP_DEADLINE": the agent got the number to search instead
// of the record, and the runbook sends the on-call engineer to Dataverse
// (7.2, 7.3), not to the backlog (queue_ms, 7.4).
func TestRunbook79_DeadlineSpentBeforeTheLookupIsNotDataverse(t *testing.T) {
	defer goleak.VerifyNone(t)
	const deadline = time.Second
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: deadline, Registerer: prometheus.NewRegistry()}, func(dv *dataversetest.Server) {
		dv.AddContact(dataversetest.Contact{FirstName: "Lena", LastName: "Late", Telephone1: "+13175550161"})
	})
	defer s.stop()

	e := callEvent("late", "+13175550161")
	e.ReceivedAt = bridge.NewTime(time.Now().Add(-2 * deadline)) // held 2 s in a backlog
	s.publish(t, e)
	s.awaitPopLine(t, "late")
	var line map[string]any
	for _, l := range logLines(t, &s.logs) {
		if l["message"] == "pop" && l["conversation_id"] == "late" {
			line = l
		}
	}
	t.Logf("pop line: %v", line)
	if line["outcome"] != "deadline" {
		return // the lookup was tried: nothing for the runbook to explain
	}
	lookup, queue := line["lookup_ms"].(float64), line["queue_ms"].(float64)
	if lookup >= float64(deadline.Milliseconds())/2 {
		return // Dataverse was slow indeed
	}
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "### 7.9")
	row := ""
	for l := range strings.Lines(doc[i:]) {
		if strings.Contains(l, "`outcome` `deadline`") {
			row = l
			break
		}
	}
	if !strings.Contains(row, "queue_ms") {
		t.Errorf("a deadline pop with lookup_ms %v and queue_ms %v (the deadline spent before the lookup began, Dataverse healthy); "+
			"docs/operations.md 7.9's row for it names Dataverse only and never queue_ms: %q", lookup, queue, strings.TrimSpace(row))
	}
}
