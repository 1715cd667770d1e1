package notifications_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Genesys' channels live 24 h and are handed over an hour (HandoverGrace)
// before they expire. A channel that lives less than the grace (another
// setting on Genesys' side, or the local clock a day ahead) is handed over
// half-way through its life instead: handed over at once, the new one would
// be too, one handover a second, each a channel, a PUT, a socket and a
// reconciliation. Calls keep popping throughout.
func TestClient_AChannelShorterThanTheGraceIsHandedOverHalfWay(t *testing.T) {
	as := agents(1)
	const life, window = 6 * time.Second, 9 * time.Second
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ChannelLifetime: life},
		func(c *notifications.Config) { c.Agents = ids(as); c.HandoverGrace = time.Hour }, 1024)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	creates0 := h.emu.CountRequests("POST", "/api/v2/notifications/channels")

	uncovered := 0
	var calls []*notificationstest.Conversation
	end, nextCall := time.Now().Add(window), time.Now()
	for time.Now().Before(end) {
		if !h.emu.IsDelivered(topic) {
			uncovered++
		}
		if time.Now().After(nextCall) {
			calls = append(calls, h.emu.InboundCall(as[0].ID, "+13175550199", notificationstest.Options{}).Alert())
			nextCall = nextCall.Add(time.Second)
		}
		time.Sleep(5 * time.Millisecond)
	}
	creates := h.emu.CountRequests("POST", "/api/v2/notifications/channels") - creates0
	for _, c := range calls {
		col.await(t, 5*time.Second, "each call popped", c, as[0].ID)
	}
	if rec := h.reconnects(); rec != 0 || uncovered != 0 {
		t.Errorf("the channel expired under its socket: %d reconnects, the topic undelivered in %d samples", rec, uncovered)
	}
	// Half-way through a 6 s life: a handover every 3 s, 3 in 9 s.
	if creates > 4 {
		t.Errorf("%d channels created in %v for channels that live %v, want about one every %v", creates, window, life, life/2)
	}
	t.Logf("%d channels created in %v for channels that live %v; %d calls popped", creates, window, life, len(calls))
	h.stop()
	<-col.done
}

// A local clock a day ahead of Genesys' reads a new channel's expires
// (Genesys' now + 24 h) as already past; the channel's life is read on
// Genesys' clock instead (expires less the answer's Date), so it is handed
// over an hour before its 24 h are up, not at once, again and again.
func TestClient_ALocalClockADayAheadHandsNoChannelOverEarly(t *testing.T) {
	// Genesys' clock 25 h behind this one: its Date and expires both.
	const behind = 25 * time.Hour
	h := startWithChannelAnswer(t, func(date, expires time.Time) (time.Time, time.Time) {
		return date.Add(-behind), expires.Add(-behind)
	})
	c0 := h.emu.CountRequests("POST", "/api/v2/notifications/channels")
	time.Sleep(5 * time.Second)
	if n := h.emu.CountRequests("POST", "/api/v2/notifications/channels") - c0; n != 0 {
		t.Errorf("%d channels created in the 5 s after the first, with the local clock a day ahead of Genesys': handed over at once, want none", n)
	}
	h.stop()
}

// A channel Genesys answers as already expired on its own clock (expires
// before the answer's Date) is a fault of Genesys': it is not handed over
// every second, as a life read as 0 would have it, but taken to have the
// documented 24 h (if Genesys closes its socket, the reconnect path, with
// its backoff, makes the next), and the admin is told once.
func TestClient_AChannelAnsweredAlreadyExpiredIsNotHandedOverAtOnce(t *testing.T) {
	h := startWithChannelAnswer(t, func(date, _ time.Time) (time.Time, time.Time) {
		return date, date.Add(-time.Minute)
	})
	c0 := h.emu.CountRequests("POST", "/api/v2/notifications/channels")
	time.Sleep(5 * time.Second)
	if n := h.emu.CountRequests("POST", "/api/v2/notifications/channels") - c0; n != 0 {
		t.Errorf("%d channels created in the 5 s after the first, each answered as already expired: want none", n)
	}
	lines := h.logs.lines()
	if countLines(lines, "genesys channel created already expired") != 1 {
		t.Errorf("want one line telling of the channel answered as already expired:\n%s", strings.Join(lines, "\n"))
	}
	// Genesys then does end it: the reconnect makes the next one, and
	// its end is no eviction (an expiry assumed says nothing of one):
	// on-call is not sent after another program on the OAuth client.
	h.emu.ExpireChannels()
	waitFor(t, 10*time.Second, "a channel made after Genesys ended the first", func() bool {
		return h.emu.CountRequests("POST", "/api/v2/notifications/channels") > c0
	})
	h.awaitReady(10 * time.Second)
	lines = append(lines, h.logs.lines()...)
	if n := countLines(lines, "most likely evicted"); n != 0 {
		t.Errorf("the end of a channel whose expiry was assumed reported as an eviction:\n%s", strings.Join(lines, "\n"))
	}
	h.stop()
}

// startWithChannelAnswer starts a client with one agent and a handover
// grace of an hour, behind a proxy that rewrites the Date header and the
// expires of each channel the emulator creates (set gives the new ones),
// and waits for it to be ready.
func startWithChannelAnswer(t *testing.T, set func(date, expires time.Time) (time.Time, time.Time)) *harness {
	t.Helper()
	as := agents(1)
	px := &passProxy{}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, px,
		func(rp *httputil.ReverseProxy) {
			rp.ModifyResponse = func(resp *http.Response) error {
				if resp.Request.Method != http.MethodPost || resp.Request.URL.Path != "/api/v2/notifications/channels" {
					return nil
				}
				d, derr := http.ParseTime(resp.Header.Get("Date"))
				b, _ := io.ReadAll(resp.Body)
				var m map[string]any
				if json.Unmarshal(b, &m) == nil && derr == nil {
					if e, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["expires"])); err == nil {
						d, e = set(d, e)
						resp.Header.Set("Date", d.UTC().Format(http.TimeFormat))
						m["expires"] = e.UTC().Format(time.RFC3339Nano)
					}
					b, _ = json.Marshal(m)
				}
				resp.Body = io.NopCloser(bytes.NewReader(b))
				resp.ContentLength = int64(len(b))
				resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
				return nil
			}
			px.rp = rp
		}, func(c *notifications.Config) { c.Agents = ids(as); c.HandoverGrace = time.Hour })
	go func() {
		for range h.out {
		}
	}()
	h.awaitReady(5 * time.Second)
	return h
}

// passProxy forwards to the emulator through rp.
type passProxy struct{ rp *httputil.ReverseProxy }

func (p *passProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }
