package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// stalePop is the part of an agent's pop these tests read.
type stalePop struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversationId"`
	Target         struct{ Action, Entity, ID string }
	Candidates     []struct{ Entity, ID string }
	Prefill        map[string]string `json:"prefill"`
}

func (p stalePop) ids() []string {
	var ids []string
	if p.Target.ID != "" {
		ids = append(ids, p.Target.ID)
	}
	for _, c := range p.Candidates {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func readStalePop(t *testing.T, ws *websocket.Conn, conv string) stalePop {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var p stalePop
		if err := ws.ReadJSON(&p); err != nil {
			t.Fatalf("read pop: %v", err)
		}
		if p.Type == "pop" {
			if p.ConversationID != conv {
				t.Fatalf("pop for %s, want %s", p.ConversationID, conv)
			}
			return p
		}
	}
}

// TestDaemon_TransferAfterRecordsChanged: the first agent of a call fixes
// the caller's records in Dynamics while talking to the caller (saves the
// create pop's form, merges the duplicates a choose pop offered, moves the
// number to the right person, deletes a wrong record), then transfers or
// consults. The receiving agent's pop, seconds or minutes later, must be
// the records as they are now: the lookup the first pop was built on was
// made before the first agent's changes, so the cached answer (kept
// SCREENPOP_CACHE_TTL, 5 min, or SCREENPOP_NEGATIVE_CACHE_TTL, 30 s) is
// exactly the one that is out of date. Before the fix the receiving agent
// got the cached pop: the old record (a dead one, another person's), or a
// create form for a contact that now exists (a duplicate).
func TestDaemon_TransferAfterRecordsChanged(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	dv, g := d.Dataverse, d.Genesys
	a, b := demoAgents[0].ID, demoAgents[1].ID
	wsA := dialAgent(t, d.Main.AgentURL(), g.AgentToken(a))
	wsB := dialAgent(t, d.Main.AgentURL(), g.AgentToken(b))

	for _, tc := range []struct {
		name    string
		phone   string
		setup   func() []string                // the records holding the number before the call
		first   string                         // the first agent's pop action
		change  func(before []string) []string // what the first agent does; the records afterwards
		then    string                         // the receiving agent's pop action
		handOff func(x *notificationstest.Conversation) *notificationstest.Conversation
	}{
		{"CreatedThenConsult", "+14045550171", func() []string { return nil }, "create",
			func([]string) []string {
				return []string{dv.AddContact(dataversetest.Contact{FirstName: "Nia", LastName: "New", Telephone1: "+14045550171"})}
			}, "open", func(x *notificationstest.Conversation) *notificationstest.Conversation { return x.ConsultTransfer(b) }},
		{"MergedThenTransfer", "+14045550172", func() []string {
			return []string{
				dv.AddContact(dataversetest.Contact{FirstName: "Ola", LastName: "Twice", Telephone1: "(404) 555-0172"}),
				dv.AddContact(dataversetest.Contact{FirstName: "Ola", LastName: "Twice", MobilePhone: "404-555-0172"}),
			}
		}, "choose",
			func(before []string) []string {
				// Merged into the first: the second is deactivated and keeps the number.
				must(t, dv.UpdateRecord("contacts", before[1], map[string]any{"statecode": 1, "statuscode": 2}))
				return before[:1]
			}, "open", func(x *notificationstest.Conversation) *notificationstest.Conversation { return x.BlindTransfer(b) }},
		{"NumberMovedThenTransfer", "+14045550173", func() []string {
			return []string{dv.AddContact(dataversetest.Contact{FirstName: "Pia", LastName: "Former", Telephone1: "404.555.0173"})}
		}, "open",
			func(before []string) []string {
				must(t, dv.UpdateRecord("contacts", before[0], map[string]any{"telephone1": nil}))
				return []string{dv.AddContact(dataversetest.Contact{FirstName: "Raj", LastName: "Current", MobilePhone: "+1 404 555 0173"})}
			}, "open", func(x *notificationstest.Conversation) *notificationstest.Conversation { return x.BlindTransfer(b) }},
		{"DeletedThenConsult", "+14045550174", func() []string {
			return []string{dv.AddContact(dataversetest.Contact{FirstName: "Sal", LastName: "Wrong", Telephone1: "4045550174"})}
		}, "open",
			func(before []string) []string {
				must(t, dv.DeleteRecord("contacts", before[0]))
				return nil
			}, "create", func(x *notificationstest.Conversation) *notificationstest.Conversation { return x.ConsultTransfer(b) }},
		{"SecondContactThenTransfer", "+14045550175", func() []string {
			return []string{dv.AddContact(dataversetest.Contact{FirstName: "Tom", LastName: "Parent", Telephone1: "+14045550175"})}
		}, "open",
			func(before []string) []string {
				return append(before, dv.AddContact(dataversetest.Contact{FirstName: "Uli", LastName: "Child", Telephone2: "(404) 555-0175"}))
			}, "choose", func(x *notificationstest.Conversation) *notificationstest.Conversation { return x.BlindTransfer(b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.setup()
			slices.Sort(before)
			x := g.InboundCall(a, tc.phone, notificationstest.Options{QueueID: "q-1"}).Alert()
			p := readStalePop(t, wsA, x.ID())
			if p.Target.Action != tc.first || !slices.Equal(p.ids(), before) {
				t.Fatalf("first agent's pop %s %v, want %s %v", p.Target.Action, p.ids(), tc.first, before)
			}
			x.Connect()
			after := tc.change(slices.Clone(before))
			slices.Sort(after)
			tc.handOff(x)
			p = readStalePop(t, wsB, x.ID())
			if p.Target.Action != tc.then || !slices.Equal(p.ids(), after) {
				t.Fatalf("receiving agent's pop %s %v, want %s %v (the records as the first agent left them; %s %v is what the lookup before the change found)",
					p.Target.Action, p.ids(), tc.then, after, tc.first, before)
			}
			x.Connect().Disconnect()
		})
	}
}

// TestDaemon_CallBackAfterCreate: an unknown caller's create pop is built
// on a not-found answer kept SCREENPOP_NEGATIVE_CACHE_TTL, and on nothing
// longer-lived: once the agent has saved the form (the prefilled number)
// and that TTL is over, the caller's next call, to any agent, opens the
// new contact.
func TestDaemon_CallBackAfterCreate(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_NEGATIVE_CACHE_TTL"] = "1s"
	d, _ := MustStartDemo(t, vars)
	dv, g := d.Dataverse, d.Genesys
	a, b := demoAgents[0].ID, demoAgents[1].ID
	wsA := dialAgent(t, d.Main.AgentURL(), g.AgentToken(a))
	wsB := dialAgent(t, d.Main.AgentURL(), g.AgentToken(b))
	const num = "+14045550181"

	x := g.InboundCall(a, num, notificationstest.Options{Name: "Vera Callback"}).Alert()
	p := readStalePop(t, wsA, x.ID())
	if p.Target.Action != "create" || p.Prefill["telephone1"] != num {
		t.Fatalf("unknown caller's pop %s prefill %v, want create with telephone1", p.Target.Action, p.Prefill)
	}
	id := dv.AddContact(dataversetest.Contact{FirstName: p.Prefill["firstname"], LastName: p.Prefill["lastname"], Telephone1: p.Prefill["telephone1"]})
	x.Connect().Disconnect()
	time.Sleep(1100 * time.Millisecond)

	// A call back, to the other agent, and a chat with the number typed.
	y := g.InboundCall(b, num, notificationstest.Options{}).Alert()
	if p := readStalePop(t, wsB, y.ID()); p.Target.Action != "open" || p.Target.ID != id {
		t.Fatalf("call back: %s %v, want open %s", p.Target.Action, p.ids(), id)
	}
	z := g.Chat(a, notificationstest.Options{Attributes: map[string]string{"context.firstName": "Vera", "context.phoneNumber": "404-555-0181"}}).Alert()
	if p := readStalePop(t, wsA, z.ID()); p.Target.Action != "open" || p.Target.ID != id {
		t.Fatalf("chat after the call: %s %v, want open %s", p.Target.Action, p.ids(), id)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDaemon_CreatePrefillIsLookedUp: where SCREENPOP_LOOKUP_PHONE searches
// contacts' mobile numbers only (a consumer contact centre), a contact
// saved from a create pop must hold the number in a column the lookup
// searches. Before the fix the number was always prefilled as telephone1:
// the saved contact was never found, and every call of that caller popped
// create again, for good (a new duplicate contact each time).
func TestDaemon_CreatePrefillIsLookedUp(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_NEGATIVE_CACHE_TTL"] = "1s"
	vars["SCREENPOP_LOOKUP_PHONE"] = "contact:mobilephone;account:telephone1"
	vars["SCREENPOP_LOOKUP_EMAIL"] = "contact:emailaddress2"
	d, _ := MustStartDemo(t, vars)
	dv, g := d.Dataverse, d.Genesys
	a := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), g.AgentToken(a))
	const num, mail = "+14045550191", "wren@example.org"

	x := g.Chat(a, notificationstest.Options{Attributes: map[string]string{"context.firstName": "Wren", "context.lastName": "Mobile", "context.phoneNumber": num, "context.email": mail}}).Alert()
	p := readStalePop(t, ws, x.ID())
	if p.Target.Action != "create" {
		t.Fatalf("unknown caller's pop %s, want create", p.Target.Action)
	}
	// The agent saves the form as prefilled.
	cols := map[string]any{}
	for k, v := range p.Prefill {
		cols[k] = v
	}
	id, err := dv.AddRecord("contacts", cols)
	must(t, err)
	x.Connect().Disconnect()
	time.Sleep(1100 * time.Millisecond)

	y := g.InboundCall(a, num, notificationstest.Options{}).Alert()
	if p2 := readStalePop(t, ws, y.ID()); p2.Target.Action != "open" || p2.Target.ID != id {
		t.Fatalf("call back after saving the create form (prefill %v): %s %v, want open %s", p.Prefill, p2.Target.Action, p2.ids(), id)
	}
	z := g.Email(a, mail, notificationstest.Options{}).Alert()
	if p2 := readStalePop(t, ws, z.ID()); p2.Target.Action != "open" || p2.Target.ID != id {
		t.Fatalf("email after saving the create form (prefill %v): %s %v, want open %s", p.Prefill, p2.Target.Action, p2.ids(), id)
	}
}

// A create entity no lookup searches makes every record saved from a
// create pop invisible: the daemon says so at start, naming the setting.
func TestDaemon_WarnsOfACreateEntityNoLookupSearches(t *testing.T) {
	for _, tc := range []struct {
		name, create, phone, email string
		warn                       bool
	}{
		{"defaults", "", "", "", false},
		{"lead not searched", "lead", "contact:telephone1;account:telephone1", "contact:emailaddress1", true},
		{"searched by email only", "lead", "contact:telephone1", "lead:emailaddress1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := testEnv(t)
			for k, v := range map[string]string{"SCREENPOP_CREATE_ENTITY": tc.create, "SCREENPOP_LOOKUP_PHONE": tc.phone, "SCREENPOP_LOOKUP_EMAIL": tc.email} {
				if v != "" {
					vars[k] = v
				}
			}
			_, logs := MustStartDemo(t, vars)
			const warning = "SCREENPOP_CREATE_ENTITY is not searched by SCREENPOP_LOOKUP_PHONE or SCREENPOP_LOOKUP_EMAIL"
			if tc.warn {
				waitFor(t, 5*time.Second, "the create entity warning", func() bool { return strings.Contains(logs.String(), warning) })
				return
			}
			// The warning follows the started line at once.
			waitFor(t, 5*time.Second, "screenpopd started", func() bool { return strings.Contains(logs.String(), "screenpopd started") })
			time.Sleep(100 * time.Millisecond)
			if strings.Contains(logs.String(), warning) {
				t.Error("create entity warning logged for a create entity the lookups search")
			}
		})
	}
}

// SCREENPOP_JWT_* set while SCREENPOP_AUTH is left at its default
// (genesys): the pages' jwt tokens are refused with 4401 and the
// configuration looked right. The daemon says so at start.
func TestDaemon_WarnsOfJWTSettingsInGenesysMode(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_JWT_SECRET"] = strings.Repeat("s", 40)
	_, logs := MustStartDemo(t, vars) // the demo runs in genesys mode
	const warning = "SCREENPOP_JWT_SECRET set, but SCREENPOP_AUTH is genesys"
	waitFor(t, 5*time.Second, "the jwt settings warning", func() bool { return strings.Contains(logs.String(), warning) })
}
