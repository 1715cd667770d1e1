package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// Func-field fakes of the resolver's dependencies.

type fakeDir struct {
	lookup   func(ctx context.Context, k Key) ([]Record, error)
	prefetch func(k Key)
	mu       sync.Mutex
	calls    []Key
}

func (d *fakeDir) Lookup(ctx context.Context, k Key) ([]Record, error) {
	d.mu.Lock()
	d.calls = append(d.calls, k)
	d.mu.Unlock()
	if d.lookup == nil {
		return nil, nil
	}
	return d.lookup(ctx, k)
}

func (d *fakeDir) RecordURL(entity, id string) string {
	if strings.ContainsAny(entity+id, "+@ ") || (id != "" && len(id) != 36) {
		return ""
	}
	u := "https://org.example/main.aspx?appid=app&pagetype=entityrecord&etn=" + entity
	if id != "" {
		u += "&id=" + id
	}
	return u
}

type fakeDirPrefetch struct{ *fakeDir }

func (d fakeDirPrefetch) Prefetch(k Key) { d.prefetch(k) }

// fakeStore keeps markers as bus.Conn does: a marker that exists may be
// published again (within JetStream's duplicate window, always here: the
// fakePub drops a second copy of a pop id).
type fakeStore struct {
	mu      sync.Mutex
	marks   map[string]string // pop id -> claim
	markErr func() error      // fails the call before the marker is written
	lostAck int               // calls that write the marker, then fail
}

func (s *fakeStore) MarkPop(_ context.Context, id, claim string) (bool, error) {
	if s.markErr != nil {
		if err := s.markErr(); err != nil {
			return false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.marks == nil {
		s.marks = map[string]string{}
	}
	if c, ok := s.marks[id]; ok {
		if c == "ended" { // as bus.Conn after EndPop
			return false, ErrLegEnded
		}
		return true, nil
	}
	s.marks[id] = claim
	if s.lostAck > 0 {
		s.lostAck--
		return false, errors.New("nats: timeout")
	}
	return true, nil
}
func (s *fakeStore) Epoch() string                                      { return "e" }
func (s *fakeStore) LatestPop(context.Context, AgentID) (uint64, error) { return 0, nil }
func (s *fakeStore) ReplayPops(context.Context, AgentID, uint64, time.Time, func(StoredPop) error) error {
	return nil
}
func (s *fakeStore) FollowPops(context.Context, func(StoredPop), func()) error { return nil }

type unmarkingStore struct {
	*fakeStore
	unmarked []string
}

func (s *unmarkingStore) UnmarkPop(_ context.Context, id, claim string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.marks[id] != claim {
		return nil // as bus.Conn: a marker that is not the claim's stays
	}
	delete(s.marks, id)
	s.unmarked = append(s.unmarked, id)
	return nil
}

// endingStore records ended legs as bus.Conn does (an ended leg's marker
// is no event's claim), failing the first endFails calls.
type endingStore struct {
	*fakeStore
	endFails int
	ended    []string
}

func (s *endingStore) EndPop(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endFails > 0 {
		s.endFails--
		return errors.New("nats: timeout")
	}
	if s.marks == nil {
		s.marks = map[string]string{}
	}
	s.marks[id] = "ended"
	s.ended = append(s.ended, id)
	return nil
}

type fakePub struct {
	mu   sync.Mutex
	fail func(Message) error
	msgs []Message
	ids  map[string]bool // JetStream's duplicate window
}

func (p *fakePub) Publish(_ context.Context, m Message) error {
	if p.fail != nil {
		if err := p.fail(m); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]bool{}
	}
	if !p.ids[m.ID] {
		p.ids[m.ID] = true
		p.msgs = append(p.msgs, m)
	}
	return nil
}

func (p *fakePub) pops(t *testing.T) []*Pop {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Pop
	for _, m := range p.msgs {
		pop, err := DecodePop(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != PopSubject(pop.AgentID) || m.ID != pop.ID {
			t.Fatalf("message %s/%s does not match pop %s for %s", m.Subject, m.ID, pop.ID, pop.AgentID)
		}
		out = append(out, pop)
	}
	return out
}

const (
	resGUIDA = "aaaaaaaa-0000-0000-0000-000000000001"
	resGUIDB = "aaaaaaaa-0000-0000-0000-000000000002"
)

func resRec(entity, id, name string) Record {
	return Record{Entity: entity, ID: id, Name: name, URL: "https://org.example/main.aspx?appid=app&pagetype=entityrecord&etn=" + entity + "&id=" + id}
}

func resEvent(conv, agent, part string, state State) *Event {
	return &Event{
		ConversationID: ConversationID(conv),
		Agent:          AgentLeg{UserID: AgentID(agent), ParticipantID: ParticipantID(part)},
		Media:          MediaVoice, State: state, Direction: DirectionInbound,
		Customer:   Customer{Phone: "+13175550123", Address: "tel:+13175550123", Email: "jane.doe@example.com", Name: "Jane Q Doe"},
		ReceivedAt: NewTime(time.Now()),
	}
}

type resEnv struct {
	dir   *fakeDir
	store *fakeStore
	pub   *fakePub
	r     *Resolver
	logs  *syncbuf.Buffer
}

func newResEnv(t *testing.T, cfg ResolverConfig, dir Directory, d *fakeDir, store PopStore, fs *fakeStore) *resEnv {
	t.Helper()
	if d == nil {
		d = &fakeDir{}
	}
	if dir == nil {
		dir = d
	}
	if fs == nil {
		fs = &fakeStore{}
	}
	if store == nil {
		store = fs
	}
	e := &resEnv{dir: d, store: fs, pub: &fakePub{}, logs: &syncbuf.Buffer{}}
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel)
	r, err := NewResolver(cfg, dir, store, e.pub, NewHasher([]byte("0123456789abcdef0123")), log)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	return e
}

func (e *resEnv) handle(t *testing.T, ev *Event) {
	t.Helper()
	if err := e.r.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func (e *resEnv) one(t *testing.T) *Pop {
	t.Helper()
	pops := e.pub.pops(t)
	if len(pops) != 1 {
		t.Fatalf("%d pops, want 1", len(pops))
	}
	return pops[0]
}

// popLines returns the info lines with message "pop".
func (e *resEnv) popLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["level"] == "info" {
			if m["message"] != "pop" {
				t.Fatalf("unexpected info line %v", m)
			}
			out = append(out, m)
		}
	}
	return out
}

func TestResolver_Actions(t *testing.T) {
	t.Run("Open", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(_ context.Context, k Key) ([]Record, error) {
			if k.Kind == KeyPhone && k.Value == "+13175550123" {
				return []Record{resRec("contact", resGUIDA, "Jane Doe")}, nil
			}
			return nil, errors.New("unexpected key")
		}}, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		p := e.one(t)
		if p.Target.Action != ActionOpen || p.Target.Entity != "contact" || p.Target.ID != resGUIDA || p.Target.Name != "Jane Doe" || p.Target.URL == "" {
			t.Fatalf("target %+v", p.Target)
		}
		if p.ID != "pop:c1:p1" || p.AgentID != "agent1" || p.Customer.Phone != "+13175550123" || p.EventReceivedAt.IsZero() || p.IssuedAt.IsZero() {
			t.Fatalf("pop %+v", p)
		}
		lines := e.popLines(t)
		if len(lines) != 1 || lines[0]["outcome"] != OutcomeMatch || lines[0]["action"] != "open" {
			t.Fatalf("log lines %v", lines)
		}
	})
	t.Run("Choose", func(t *testing.T) {
		var recs []Record
		for i := range 12 {
			recs = append(recs, resRec("contact", fmt.Sprintf("aaaaaaaa-0000-0000-0000-%012d", i), fmt.Sprintf("Name %d", i)))
		}
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(context.Context, Key) ([]Record, error) { return recs, nil }}, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		p := e.one(t)
		if p.Target.Action != ActionChoose || p.Target.Entity != "contact" || len(p.Candidates) != 10 || p.Candidates[9].ID != recs[9].ID || p.Candidates[0].URL == "" {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("Create", func(t *testing.T) {
		d := &fakeDir{}
		e := newResEnv(t, ResolverConfig{}, nil, d, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		p := e.one(t)
		if p.Target.Action != ActionCreate || p.Target.Entity != "contact" || p.Target.URL != "https://org.example/main.aspx?appid=app&pagetype=entityrecord&etn=contact" {
			t.Fatalf("target %+v", p.Target)
		}
		want := map[string]string{"telephone1": "+13175550123", "emailaddress1": "jane.doe@example.com", "firstname": "Jane", "lastname": "Q Doe"}
		if fmt.Sprint(p.Prefill) != fmt.Sprint(want) {
			t.Fatalf("prefill %v, want %v", p.Prefill, want)
		}
		if len(d.calls) != 2 || d.calls[0].Kind != KeyPhone || d.calls[1].Kind != KeyEmail {
			t.Fatalf("lookups %v, want phone then email", d.calls)
		}
		if l := e.popLines(t); l[0]["outcome"] != OutcomeNoMatch {
			t.Fatalf("outcome %v", l[0]["outcome"])
		}
	})
	t.Run("CreatePrefillsNoPlaceholderName", func(t *testing.T) {
		for _, name := range []string{"Web Messaging Guest", "ANONYMOUS", "Unavailable", "WIRELESS CALLER", "Private Number",
			"BOSTON MA", "NEW YORK NY", "TORONTO ON", "+1 (317) 555-0123"} {
			e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateAlerting)
			ev.Customer.Name = name
			e.handle(t, ev)
			p := e.one(t)
			if p.Prefill["firstname"] != "" || p.Prefill["lastname"] != "" || p.Prefill["telephone1"] != "+13175550123" {
				t.Fatalf("%q: prefill %v, want the phone and no name", name, p.Prefill)
			}
		}
	})
	t.Run("CreatePrefillsACallerIDName", func(t *testing.T) {
		for name, want := range map[string][2]string{"SMITH JOHN": {"SMITH", "JOHN"}, "Boston Ma": {"Boston", "Ma"}} {
			e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateAlerting)
			ev.Customer.Name = name
			e.handle(t, ev)
			if p := e.one(t); p.Prefill["firstname"] != want[0] || p.Prefill["lastname"] != want[1] {
				t.Fatalf("%q: prefill %v, want first %q last %q", name, p.Prefill, want[0], want[1])
			}
		}
	})
	t.Run("CreatePrefillsAPlaceNameOnlyFromANorthAmericanNumber", func(t *testing.T) {
		// dataverse.md §4.5: a caller-id place ("BOSTON MA") is left out
		// "on a call from a North American number"; a London caller's
		// upper-case name that happens to end in a state code is a name.
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.Customer.Phone, ev.Customer.Address, ev.Customer.Name = "+442079460018", "tel:+442079460018", "LEE AL"
		e.handle(t, ev)
		if p := e.one(t); p.Prefill["firstname"] != "LEE" || p.Prefill["lastname"] != "AL" {
			t.Fatalf("prefill %v, want first LEE last AL", p.Prefill)
		}
	})
	t.Run("CreatePrefillsNoNameThatIsTheAddress", func(t *testing.T) {
		// dataverse.md §4.5: never a customer name that is the address
		// itself, letters or not (a SIP caller named by its URI, an open
		// messaging sender by its id).
		for _, addr := range []string{"sip:frontdesk@pbx.example.com", "whatsapp:+14155550123"} {
			e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateAlerting)
			ev.Customer.Address, ev.Customer.Name = addr, addr
			e.handle(t, ev)
			if p := e.one(t); p.Prefill["firstname"] != "" || p.Prefill["lastname"] != "" {
				t.Fatalf("%q: prefill %v, want no name", addr, p.Prefill)
			}
		}
	})
	t.Run("CreatePrefillsNoNameThatIsTheEmailAddress", func(t *testing.T) {
		// An email sender named by its address (no display name): the
		// address is no name to put on a record (dataverse.md §4.5).
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.Media, ev.Customer.Phone = MediaEmail, ""
		ev.Customer.Address, ev.Customer.Email, ev.Customer.Name = "mailto:jane.doe@example.com", "jane.doe@example.com", "Jane.Doe@example.com"
		e.handle(t, ev)
		if p := e.one(t); p.Prefill["firstname"] != "" || p.Prefill["lastname"] != "" || p.Prefill["emailaddress1"] != "jane.doe@example.com" {
			t.Fatalf("prefill %v, want the email and no name", p.Prefill)
		}
	})
	t.Run("CreateAccountPrefillsNoPlaceholderName", func(t *testing.T) {
		// SCREENPOP_CREATE_ENTITY=account fills the account's name: the
		// same names are left out as for a contact (dataverse.md §4.5).
		for _, name := range []string{"BOSTON MA", "Web Messaging Guest", "+13175550123"} {
			e := newResEnv(t, ResolverConfig{CreateEntity: "account"}, nil, &fakeDir{}, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateAlerting)
			ev.Customer.Name = name
			e.handle(t, ev)
			if p := e.one(t); p.Prefill["name"] != "" || p.Prefill["telephone1"] != "+13175550123" {
				t.Fatalf("%q: prefill %v, want the phone and no name", name, p.Prefill)
			}
		}
	})
	t.Run("CreatePrefillsACommaName", func(t *testing.T) {
		// "Doe, Jane" is last name first; a comma before a suffix is not
		// (email display names: "John Smith, Jr.", "Jane Doe, MD").
		for name, want := range map[string][2]string{
			"Doe, Jane": {"Jane", "Doe"}, "DOE,JANE": {"JANE", "DOE"}, "van der Berg, Jan": {"Jan", "van der Berg"},
			"John Smith, Jr.": {"John", "Smith, Jr."}, "Jane Doe, MD": {"Jane", "Doe, MD"}, "Mary Jones, PhD": {"Mary", "Jones, PhD"},
			"Robert Brown, III": {"Robert", "Brown, III"},
		} {
			e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateAlerting)
			ev.Customer.Name = name
			e.handle(t, ev)
			if p := e.one(t); p.Prefill["firstname"] != want[0] || p.Prefill["lastname"] != want[1] {
				t.Errorf("%q: prefill first %q last %q, want first %q last %q", name, p.Prefill["firstname"], p.Prefill["lastname"], want[0], want[1])
			}
		}
	})
	t.Run("CreateAccountPrefill", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{CreateEntity: "account"}, nil, nil, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		p := e.one(t)
		if p.Target.Entity != "account" || p.Prefill["name"] != "Jane Q Doe" || p.Prefill["telephone1"] != "+13175550123" {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("EmailAfterPhone", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(_ context.Context, k Key) ([]Record, error) {
			if k.Kind == KeyEmail {
				return []Record{resRec("lead", resGUIDB, "Jane")}, nil
			}
			return nil, nil
		}}, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.Media = MediaChat
		e.handle(t, ev)
		if p := e.one(t); p.Target.Action != ActionOpen || p.Target.Entity != "lead" || p.Media != MediaChat {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("SearchOnDeadline", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{Deadline: 50 * time.Millisecond}, nil, &fakeDir{lookup: func(ctx context.Context, _ Key) ([]Record, error) {
			<-ctx.Done()
			return nil, fmt.Errorf("lookup phone: %w", ctx.Err())
		}}, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		p := e.one(t)
		if p.Target.Action != ActionSearch || p.Target.Query != "+13175550123" || p.Target.URL != "" {
			t.Fatalf("target %+v", p.Target)
		}
		if l := e.popLines(t); l[0]["outcome"] != OutcomeDeadline {
			t.Fatalf("outcome %v", l[0]["outcome"])
		}
	})
	t.Run("SearchOnError", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(context.Context, Key) ([]Record, error) {
			return nil, errors.New("dataverse circuit breaker open")
		}}, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		if p := e.one(t); p.Target.Action != ActionSearch || p.Target.Query != "+13175550123" {
			t.Fatalf("target %+v", p.Target)
		}
		if l := e.popLines(t); l[0]["outcome"] != OutcomeLookupError {
			t.Fatalf("outcome %v", l[0]["outcome"])
		}
	})
	t.Run("DeadlineCountsFromReceivedAt", func(t *testing.T) {
		// The frame arrived 3s ago (queueing): no time is left, so only a
		// cached answer could make it; this directory has none.
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(ctx context.Context, _ Key) ([]Record, error) {
			if ctx.Err() == nil {
				return nil, errors.New("lookup got a live context")
			}
			return nil, ctx.Err()
		}}, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.ReceivedAt = NewTime(time.Now().Add(-3 * time.Second))
		e.handle(t, ev)
		if p := e.one(t); p.Target.Action != ActionSearch {
			t.Fatalf("target %+v", p.Target)
		}
	})
	t.Run("DeadlineCountsTheChecksBeforeTheLookup", func(t *testing.T) {
		// A leg's later event first asks the store whether the leg popped
		// elsewhere; that read, slow while NATS is, comes out of the
		// deadline (DESIGN: from the moment the frame was received), not
		// on top of it.
		const deadline, check = 400 * time.Millisecond, 300 * time.Millisecond
		var lookupDeadline time.Time
		fs := &fakeStore{}
		e := newResEnv(t, ResolverConfig{Deadline: deadline}, nil, &fakeDir{lookup: func(ctx context.Context, _ Key) ([]Record, error) {
			lookupDeadline, _ = ctx.Deadline()
			return nil, nil
		}}, slowFinder{fs, check}, fs)
		ev := resEvent("c1", "agent1", "p1", StateConnected)
		received := time.Now()
		ev.ReceivedAt = NewTime(received)
		e.handle(t, ev)
		if lookupDeadline.IsZero() {
			t.Fatal("no lookup, or one without a deadline")
		}
		if over := lookupDeadline.Sub(received.Add(deadline)); over > check/2 {
			t.Fatalf("the lookup's deadline is %v after the frame's receipt plus SCREENPOP_POP_DEADLINE (%v): the %v check before it was added", over.Round(time.Millisecond), deadline, check)
		}
	})
}

// slowFinder is a PopStore whose PopFinder answers "not popped" after d.
type slowFinder struct {
	*fakeStore
	d time.Duration
}

func (s slowFinder) PoppedLast(ctx context.Context, _ AgentID, _ string) (bool, error) {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return false, nil
}

func TestResolver_Override(t *testing.T) {
	d := &fakeDir{lookup: func(context.Context, Key) ([]Record, error) { return nil, errors.New("must not look up") }}
	e := newResEnv(t, ResolverConfig{}, nil, d, nil, nil)
	ev := resEvent("c1", "agent1", "p1", StateAlerting)
	ev.Customer.Attributes = map[string]string{"screenpop.entity": "account", "screenpop.id": resGUIDB}
	e.handle(t, ev)
	p := e.one(t)
	if p.Target.Action != ActionOpen || p.Target.Entity != "account" || p.Target.ID != resGUIDB || !strings.HasSuffix(p.Target.URL, "etn=account&id="+resGUIDB) {
		t.Fatalf("target %+v", p.Target)
	}
	if len(d.calls) != 0 {
		t.Fatalf("looked up %v", d.calls)
	}
	if l := e.popLines(t); l[0]["outcome"] != OutcomeOverride {
		t.Fatalf("outcome %v", l[0]["outcome"])
	}

	t.Run("CustomKeysAndInvalidID", func(t *testing.T) {
		d := &fakeDir{lookup: func(context.Context, Key) ([]Record, error) { return []Record{resRec("contact", resGUIDA, "J")}, nil }}
		e := newResEnv(t, ResolverConfig{OverrideEntityKey: "crm.type", OverrideIDKey: "crm.id"}, nil, d, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.Customer.Attributes = map[string]string{"crm.type": "contact", "crm.id": "+13175550123"}
		e.handle(t, ev)
		if p := e.one(t); p.Target.ID != resGUIDA || len(d.calls) != 1 {
			t.Fatalf("an invalid override id must fall back to the lookup: %+v", p.Target)
		}
	})
}

func TestResolver_Internal(t *testing.T) {
	ev := resEvent("c1", "agent1", "p1", StateAlerting)
	ev.Internal = true
	ev.Customer = Customer{}
	e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
	e.handle(t, ev)
	if n := len(e.pub.pops(t)); n != 0 {
		t.Fatalf("%d pops for an internal call", n)
	}
	e = newResEnv(t, ResolverConfig{PopInternal: true}, nil, nil, nil, nil)
	e.handle(t, ev)
	if p := e.one(t); p.Target.Action != ActionNone {
		t.Fatalf("internal pop %+v", p.Target)
	}
	if l := e.popLines(t); l[0]["outcome"] != OutcomeInternal {
		t.Fatalf("outcome %v", l[0]["outcome"])
	}
}

func TestResolver_Transfer(t *testing.T) {
	e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(_ context.Context, k Key) ([]Record, error) {
		if k.Value == "+13175550123" {
			return []Record{resRec("contact", resGUIDA, "Jane")}, nil
		}
		return nil, errors.New("looked up someone other than the customer")
	}}, nil, nil)
	// Agent A takes the call, then transfers it (consult) to agent B.
	e.handle(t, resEvent("c1", "agentA", "pA", StateAlerting))
	e.handle(t, resEvent("c1", "agentA", "pA", StateConnected))
	e.handle(t, resEvent("c1", "agentB", "pB", StateAlerting))
	e.handle(t, resEvent("c1", "agentA", "pA", StateConnected)) // A's leg, while consulting
	e.handle(t, resEvent("c1", "agentB", "pB", StateConnected))
	e.handle(t, resEvent("c1", "agentA", "pA", StateDisconnected))
	pops := e.pub.pops(t)
	if len(pops) != 2 {
		t.Fatalf("%d pops, want one for A and one for B", len(pops))
	}
	if pops[0].AgentID != "agentA" || pops[1].AgentID != "agentB" || pops[1].ID != "pop:c1:pB" || pops[1].Target.ID != resGUIDA {
		t.Fatalf("pops %+v / %+v", pops[0], pops[1])
	}
	// Transferred back to A: a new leg, a new pop.
	e.handle(t, resEvent("c1", "agentA", "pA2", StateAlerting))
	if n := len(e.pub.pops(t)); n != 3 {
		t.Fatalf("%d pops after the transfer back, want 3", n)
	}
}

func TestResolver_When(t *testing.T) {
	t.Run("AlertingModeOutboundDialing", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateDialing)
		ev.Direction = DirectionOutbound
		e.handle(t, ev)
		if p := e.one(t); p.State != StateDialing {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("FirstSeenConnected", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateConnected))
		e.handle(t, resEvent("c1", "agent1", "p1", StateConnected))
		if p := e.one(t); p.State != StateConnected {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("FirstSeenDisconnected", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateDisconnected))
		if n := len(e.pub.pops(t)); n != 0 {
			t.Fatalf("%d pops", n)
		}
	})
	t.Run("ConnectedModePrefetches", func(t *testing.T) {
		var prefetched []Key
		d := &fakeDir{prefetch: func(k Key) { prefetched = append(prefetched, k) }}
		e := newResEnv(t, ResolverConfig{PopOn: StateConnected}, fakeDirPrefetch{d}, d, nil, nil)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		if n := len(e.pub.pops(t)); n != 0 || len(prefetched) != 2 || len(d.calls) != 0 {
			t.Fatalf("%d pops, prefetched %v, looked up %v at alerting", n, prefetched, d.calls)
		}
		e.handle(t, resEvent("c1", "agent1", "p1", StateConnected))
		if p := e.one(t); p.State != StateConnected {
			t.Fatalf("pop %+v", p)
		}
	})
	t.Run("Stale", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{MaxEventAge: 30 * time.Second}, nil, nil, nil, nil)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		ev.ReceivedAt = NewTime(time.Now().Add(-31 * time.Second))
		e.handle(t, ev)
		if n := len(e.pub.pops(t)); n != 0 {
			t.Fatalf("%d pops for a stale event", n)
		}
	})
	t.Run("FirstSeenConnectedPopsUnlessConnectedOver12HoursAgo", func(t *testing.T) {
		// dataverse.md §4.1: a leg first seen later pops at first sight
		// unless it is already disconnected, or connected more than 12 h
		// before (old_leg): a chat answered two hours before a restart
		// still pops.
		for _, tc := range []struct {
			ago  time.Duration
			pops int
		}{{2 * time.Hour, 1}, {11 * time.Hour, 1}, {13 * time.Hour, 0}} {
			e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
			ev := resEvent("c1", "agent1", "p1", StateConnected)
			ev.Media = MediaMessage
			ev.OccurredAt = NewTime(time.Now().Add(-tc.ago))
			e.handle(t, ev)
			if n := len(e.pub.pops(t)); n != tc.pops {
				t.Errorf("leg connected %v ago: %d pops, want %d", tc.ago, n, tc.pops)
			}
		}
	})
	t.Run("BadPopOn", func(t *testing.T) {
		if _, err := NewResolver(ResolverConfig{PopOn: StateDialing}, &fakeDir{}, &fakeStore{}, &fakePub{}, Hasher{}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "SCREENPOP_POP_ON") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		if err := e.r.HandleMessage(context.Background(), []byte(`{"nope`)); err != nil {
			t.Fatalf("a malformed message must be acked, got %v", err)
		}
		bad := resEvent("c1", "agent.*", "p1", StateAlerting)
		e.handle(t, bad)
		if n := len(e.pub.pops(t)); n != 0 {
			t.Fatalf("%d pops", n)
		}
	})
}

func TestResolver_Once(t *testing.T) {
	t.Run("ConcurrentEventsOneLeg", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(context.Context, Key) ([]Record, error) {
			return []Record{resRec("contact", resGUIDA, "J")}, nil
		}}, nil, nil)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				st := StateAlerting
				if i%2 == 1 {
					st = StateConnected
				}
				if err := e.r.Handle(context.Background(), resEvent("c1", "agent1", "p1", st)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		e.one(t)
		if n := len(e.popLines(t)); n != 1 {
			t.Fatalf("%d pop log lines", n)
		}
	})
	t.Run("WaitsForTheLegsHandler", func(t *testing.T) {
		// A second handler of the leg arrives while the first is still
		// retrying its pop's publish: JetStream redelivered the event
		// after its ack wait, or another event of the leg came. The second
		// waits for the first's outcome. When the first fails, so does
		// the second, and its event is redelivered: acknowledging it
		// would acknowledge the first's event too when it is the same, and
		// the first's request for redelivery would come too late (the pop
		// lost). When the first pops, the second makes no second pop.
		for _, tc := range []struct {
			name       string
			second     State
			firstFails bool
		}{
			{"SameEventFirstFails", StateAlerting, true},
			{"SameEventFirstPops", StateAlerting, false},
			{"OtherEventFirstFails", StateConnected, true},
			{"OtherEventFirstPops", StateConnected, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				us := &unmarkingStore{fakeStore: &fakeStore{}}
				e := newResEnv(t, ResolverConfig{PublishTimeout: 50 * time.Millisecond}, nil, nil, us, us.fakeStore)
				inPublish, release := make(chan struct{}), make(chan struct{})
				var once sync.Once
				var down atomic.Bool
				down.Store(tc.firstFails)
				e.pub.fail = func(Message) error {
					// The first attempt holds the first handler in its
					// publish until the second is waiting.
					once.Do(func() { close(inPublish); <-release })
					if down.Load() {
						return errors.New("stream unavailable")
					}
					return nil
				}
				first := resEvent("c1", "agent1", "p1", StateAlerting)
				firstErr, secondErr := make(chan error, 1), make(chan error, 1)
				go func() { firstErr <- e.r.Handle(context.Background(), first) }()
				<-inPublish
				go func() { secondErr <- e.r.Handle(context.Background(), resEvent("c1", "agent1", "p1", tc.second)) }()
				awaitWaiter(t, e, secondErr, release)
				close(release)
				errA, errB := <-firstErr, <-secondErr
				if !tc.firstFails {
					if errA != nil || errB != nil {
						t.Fatalf("handlers returned %v and %v, want nil (acknowledge both)", errA, errB)
					}
				} else {
					if errA == nil || errB == nil {
						t.Fatalf("handlers returned %v and %v, want two errors (redeliver both)", errA, errB)
					}
					if n := len(e.pub.pops(t)); n != 0 || len(us.unmarked) != 1 {
						t.Fatalf("%d pops, unmarked %v; want none and the leg unmarked", n, us.unmarked)
					}
					down.Store(false)
					e.handle(t, first) // the redelivery pops
				}
				e.one(t)
				if n := len(e.popLines(t)); n != 1 {
					t.Fatalf("%d pop log lines, want 1", n)
				}
			})
		}
	})
	t.Run("WaiterStopsWithItsContext", func(t *testing.T) {
		// A handler waiting for another at shutdown returns when its
		// context ends: its event is redelivered (to another instance, or
		// to this one restarted).
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		inPublish, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		e.pub.fail = func(Message) error {
			once.Do(func() { close(inPublish); <-release })
			return nil
		}
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		firstErr := make(chan error, 1)
		go func() { firstErr <- e.r.Handle(context.Background(), ev) }()
		<-inPublish
		ctx, cancel := context.WithCancel(context.Background())
		secondErr := make(chan error, 1)
		go func() { secondErr <- e.r.Handle(ctx, ev) }()
		awaitWaiter(t, e, secondErr, release)
		cancel()
		if err := <-secondErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting handler returned %v, want context.Canceled", err)
		}
		close(release)
		if err := <-firstErr; err != nil {
			t.Fatal(err)
		}
		e.one(t)
	})
	t.Run("MarkFailsThenRedelivered", func(t *testing.T) {
		fails := 1
		fs := &fakeStore{markErr: func() error {
			if fails > 0 {
				fails--
				return errors.New("kv unavailable")
			}
			return nil
		}}
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, fs)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		if err := e.r.Handle(context.Background(), ev); err == nil {
			t.Fatal("want an error (redeliver) when the marker cannot be written")
		}
		if n := len(e.pub.pops(t)); n != 0 {
			t.Fatalf("%d pops without a marker", n)
		}
		e.handle(t, ev)
		e.one(t)
	})
	t.Run("EndRetried", func(t *testing.T) {
		es := &endingStore{fakeStore: &fakeStore{}, endFails: 1}
		e := newResEnv(t, ResolverConfig{}, nil, nil, es, es.fakeStore)
		alerting := resEvent("c1", "agent1", "p1", StateAlerting)
		e.handle(t, alerting)
		hangUp := resEvent("c1", "agent1", "p1", StateDisconnected)
		hangUp.LegEnded = true
		e.handle(t, hangUp) // the first end fails, the second, 100 ms later, does not
		if len(es.ended) != 1 || es.ended[0] != "pop:c1:p1" {
			t.Fatalf("ended %v, want the leg once", es.ended)
		}
		if got := testutil.ToFloat64(e.r.m.errors.WithLabelValues("end")); got != 0 {
			t.Fatalf("errors{stage=end} = %g, want 0", got)
		}
		// The ended leg makes no pop, not even from a redelivery of the
		// event that popped it (its own claim).
		e.handle(t, alerting)
		e.one(t)
		if got := testutil.ToFloat64(e.r.m.skipped.WithLabelValues("ended")); got != 1 {
			t.Fatalf("skipped{reason=ended} = %g, want 1", got)
		}
	})
	t.Run("EndFailsForGood", func(t *testing.T) {
		// Ending is worth a few tries, not a redelivery: the event is
		// acknowledged and the marker lives its full TTL.
		es := &endingStore{fakeStore: &fakeStore{}, endFails: 1 << 30}
		e := newResEnv(t, ResolverConfig{}, nil, nil, es, es.fakeStore)
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		hangUp := resEvent("c1", "agent1", "p1", StateDisconnected)
		hangUp.LegEnded = true
		e.handle(t, hangUp)
		if got := testutil.ToFloat64(e.r.m.errors.WithLabelValues("end")); got != 1 || len(es.ended) != 0 {
			t.Fatalf("errors{stage=end} = %g, ended %v; want 1 and none", got, es.ended)
		}
	})
	t.Run("OneMediaEndsTheLegGoesOn", func(t *testing.T) {
		// A callback whose call attempt failed: voice disconnected without
		// LegEnded, the callback still connected. The leg keeps its marker
		// and still pops when first seen after a gap.
		es := &endingStore{fakeStore: &fakeStore{}}
		e := newResEnv(t, ResolverConfig{}, nil, nil, es, es.fakeStore)
		e.handle(t, resEvent("c1", "agent1", "p1", StateDisconnected))
		cb := resEvent("c1", "agent1", "p1", StateConnected)
		cb.Media = MediaCallback
		e.handle(t, cb)
		if p := e.one(t); p.Media != MediaCallback || len(es.ended) != 0 {
			t.Fatalf("pop %+v, ended %v; want the callback's pop and nothing ended", p, es.ended)
		}
	})
	t.Run("PendingPopThenHangUp", func(t *testing.T) {
		// A pop whose publish and unmark failed waits in memory for the
		// event's redelivery. When the leg's end comes first, the call is
		// over: no pop, as everywhere else, and the marker ends.
		es := &endingStore{fakeStore: &fakeStore{}}
		e := newResEnv(t, ResolverConfig{PublishTimeout: 50 * time.Millisecond}, nil, nil, es, es.fakeStore)
		e.pub.fail = func(Message) error { return errors.New("nats: timeout") }
		if err := e.r.Handle(context.Background(), resEvent("c1", "agent1", "p1", StateAlerting)); err == nil {
			t.Fatal("want an error (redeliver) when the pop cannot be published")
		}
		e.pub.fail = nil
		hangUp := resEvent("c1", "agent1", "p1", StateDisconnected)
		hangUp.LegEnded = true
		e.handle(t, hangUp)
		// The alerting event's redelivery: the leg has ended.
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		if n := len(e.pub.pops(t)); n != 0 || len(es.ended) != 1 {
			t.Fatalf("%d pops, ended %v; want none and the leg", n, es.ended)
		}
		// Each event counted once: the lost pop as ended (by its own
		// event), the hang-up as disconnected.
		if got, hung := testutil.ToFloat64(e.r.m.skipped.WithLabelValues("ended")), testutil.ToFloat64(e.r.m.skipped.WithLabelValues("disconnected")); got != 1 || hung != 1 {
			t.Fatalf("skipped{reason=ended} = %g, {reason=disconnected} = %g, want 1 and 1", got, hung)
		}
	})
	t.Run("MarkerStoredButNotAcknowledged", func(t *testing.T) {
		// The marker is written but its acknowledgement is lost: the
		// event's redelivery finds its own claim and pops; another event
		// of the same leg finds the marker and does not.
		fs := &fakeStore{lostAck: 1}
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, fs)
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		if err := e.r.Handle(context.Background(), ev); err == nil {
			t.Fatal("want an error (redeliver) when the marker write is not acknowledged")
		}
		e.handle(t, ev) // the redelivery
		e.one(t)
		if n := len(e.popLines(t)); n != 1 {
			t.Fatalf("%d pop log lines, want 1", n)
		}
		// A resolver that has not popped the leg itself (after a restart,
		// or another instance) shares the marker: the same event,
		// redelivered, publishes again and JetStream drops the duplicate
		// (fakePub keeps one per id); another event of the leg makes no pop.
		r2, err := NewResolver(ResolverConfig{}, e.dir, fs, e.pub, NewHasher([]byte("0123456789abcdef0123")), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		var attempts []string
		e.pub.fail = func(m Message) error { attempts = append(attempts, m.ID); return nil }
		for _, ev := range []*Event{ev, resEvent("c1", "agent1", "p1", StateConnected)} {
			if err := r2.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		e.pub.mu.Lock()
		published := len(e.pub.msgs)
		e.pub.mu.Unlock()
		if published != 1 || len(attempts) != 1 || attempts[0] != ev.PopID() {
			t.Fatalf("%d pops stored, publishes %v; want 1 stored and the redelivered event's one publish", published, attempts)
		}
	})
	t.Run("PublishRetriedWithSameID", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
		n := 0
		var ids []string
		e.pub.fail = func(m Message) error {
			ids = append(ids, m.ID)
			if n++; n <= 2 {
				return errors.New("no responders")
			}
			return nil
		}
		e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
		e.one(t)
		if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
			t.Fatalf("publish ids %v", ids)
		}
	})
	t.Run("PublishFailsUnmarkedAndRedelivered", func(t *testing.T) {
		us := &unmarkingStore{fakeStore: &fakeStore{}}
		e := newResEnv(t, ResolverConfig{PublishTimeout: 50 * time.Millisecond}, nil, nil, us, us.fakeStore)
		down := true
		e.pub.fail = func(Message) error {
			if down {
				return errors.New("stream unavailable")
			}
			return nil
		}
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		if err := e.r.Handle(context.Background(), ev); err == nil {
			t.Fatal("want an error (redeliver)")
		}
		if len(us.unmarked) != 1 {
			t.Fatalf("unmarked %v", us.unmarked)
		}
		down = false
		e.handle(t, ev)
		e.one(t)
	})
	t.Run("PublishFailsKeptInMemory", func(t *testing.T) {
		e := newResEnv(t, ResolverConfig{PublishTimeout: 50 * time.Millisecond}, nil, nil, nil, nil)
		down := true
		e.pub.fail = func(Message) error {
			if down {
				return errors.New("stream unavailable")
			}
			return nil
		}
		ev := resEvent("c1", "agent1", "p1", StateAlerting)
		if err := e.r.Handle(context.Background(), ev); err == nil {
			t.Fatal("want an error (redeliver)")
		}
		if st := e.r.Status(); st.PendingPublishes != 1 {
			t.Fatalf("status %+v", st)
		}
		down = false
		e.handle(t, ev) // the marker is set; the pending pop is published
		p := e.one(t)
		if p.ID != "pop:c1:p1" {
			t.Fatalf("pop %+v", p)
		}
	})
}

// awaitWaiter waits until a second handler of a leg waits for the first,
// which holds its publish until release is closed; it fails the test if
// the second returns instead (its error in secondErr), releasing the first.
func awaitWaiter(t *testing.T, e *resEnv, secondErr chan error, release chan struct{}) {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool {
		return len(secondErr) > 0 || strings.Contains(e.logs.String(), "waiting for another handler of the leg")
	})
	if len(secondErr) > 0 {
		close(release)
		t.Fatalf("the second handler returned (%v) while the first was publishing; want it to wait for the first's outcome", <-secondErr)
	}
}

func TestResolver_NoPII(t *testing.T) {
	e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{lookup: func(_ context.Context, k Key) ([]Record, error) {
		return []Record{resRec("contact", resGUIDA, "Jane Q Doe"), resRec("contact", resGUIDB, "Jane Doe")}, nil
	}}, nil, nil)
	ev := resEvent("c1", "agent1", "p1", StateAlerting)
	ev.Customer.Attributes = map[string]string{"secret.attr": "attribute-value"}
	e.handle(t, ev)
	// And a create pop with the name prefilled.
	e2 := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
	e2.handle(t, resEvent("c2", "agent1", "p2", StateAlerting))
	for _, env := range []*resEnv{e, e2} {
		logs := env.logs.String()
		for _, pii := range []string{"3175550123", "jane", "Jane", "Doe", "attribute-value", "example.com"} {
			if strings.Contains(logs, pii) {
				t.Fatalf("log carries %q:\n%s", pii, logs)
			}
		}
		lines := env.popLines(t)
		if len(lines) != 1 {
			t.Fatalf("%d pop lines", len(lines))
		}
		for _, f := range []string{"conversation_id", "agent_id", "media", "state", "action", "outcome", "queue_ms", "lookup_ms", "publish_ms", "total_ms", "caller_hash"} {
			if _, ok := lines[0][f]; !ok {
				t.Fatalf("pop line lacks %s: %v", f, lines[0])
			}
		}
		p := env.one(t)
		urls := []string{p.Target.URL}
		for _, c := range p.Candidates {
			urls = append(urls, c.URL)
		}
		for _, u := range urls {
			if strings.ContainsAny(u, "@+ ") || strings.Contains(u, "5550123") || strings.Contains(u, "Jane") {
				t.Fatalf("url carries PII: %s", u)
			}
		}
	}
}

// BenchmarkResolver_Handle: one pop whose lookup is a cache hit (the
// directory answers at once), with the marker and the publish in memory.
func BenchmarkResolver_Handle(b *testing.B) {
	recs := []Record{resRec("contact", resGUIDA, "Jane")}
	d := &fakeDir{lookup: func(context.Context, Key) ([]Record, error) { return recs, nil }}
	r, err := NewResolver(ResolverConfig{}, d, &benchStore{}, benchPub{}, NewHasher([]byte("0123456789abcdef")), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	ev := resEvent("c1", "agent1", "p1", StateAlerting)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ev.Agent.ParticipantID = ParticipantID(fmt.Sprintf("p%d", i))
		if err := r.Handle(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// benchStore marks everything as new; benchPub drops messages.
type benchStore struct{ fakeStore }

func (*benchStore) MarkPop(context.Context, string, string) (bool, error) { return true, nil }

type benchPub struct{}

func (benchPub) Publish(context.Context, Message) error { return nil }

// TestResolver_RepublishedPopLine: a pop whose publish and unmark failed
// waits in memory and is published when its event comes back. Its one pop
// line carries the outcome the lookup decided (an operations.md 3.2 value,
// which the on-call engineer and resolver_pops_total{outcome} filter on)
// and redelivered, not a value of its own.
func TestResolver_RepublishedPopLine(t *testing.T) {
	e := newResEnv(t, ResolverConfig{PublishTimeout: 50 * time.Millisecond}, nil, &fakeDir{lookup: func(context.Context, Key) ([]Record, error) {
		return []Record{resRec("contact", resGUIDA, "Jane Doe")}, nil
	}}, nil, nil)
	down := true
	e.pub.fail = func(Message) error {
		if down {
			return errors.New("stream unavailable")
		}
		return nil
	}
	ev := resEvent("c1", "agent1", "p1", StateAlerting)
	if err := e.r.Handle(context.Background(), ev); err == nil {
		t.Fatal("want an error (redeliver)")
	}
	down = false
	e.handle(t, ev) // the pending pop is published
	e.one(t)
	lines := e.popLines(t)
	if len(lines) != 1 {
		t.Fatalf("%d pop lines, want 1", len(lines))
	}
	l := lines[0]
	if l["outcome"] != OutcomeMatch || l["action"] != "open" || l["record_id"] != resGUIDA || l["redelivered"] != true {
		t.Fatalf("pop line %v, want outcome match, action open, the record and redelivered", l)
	}
	if got := testutil.ToFloat64(e.r.m.pops.WithLabelValues("voice", "open", OutcomeMatch)); got != 1 {
		t.Fatalf("pops_total{outcome=match} = %g, want 1", got)
	}
}

// Each stage of the pop line has its histogram, so that on-call can see
// from /metrics which one a slow pop spent its time in.
func TestResolver_StageMetrics(t *testing.T) {
	e := newResEnv(t, ResolverConfig{}, nil, &fakeDir{}, nil, nil)
	e.handle(t, resEvent("c1", "agent1", "p1", StateAlerting))
	e.one(t)
	// queue, lookup, mark, publish, total: one series each, made by the
	// pop's observation.
	if n := testutil.CollectAndCount(e.r.m.stage); n != 5 {
		t.Fatalf("%d stage series after one pop, want 5 (queue, lookup, mark, publish, total)", n)
	}
}
