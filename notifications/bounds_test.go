package notifications_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// membersProxy forwards to the emulator and, when told to, spoils the
// answers to GET …/routing/queues/{id}/members: cut sends the first half of
// the body under the full Content-Length and drops the connection (a proxy
// or network that cuts a response, or a client timeout mid-body); pad
// sends the page with padBytes of padding in front (a broken gateway's
// endless answer); firstPage answers every page as page 1 (a cache or
// gateway that drops the query string).
type membersProxy struct {
	rp        *httputil.ReverseProxy
	cut, pad  atomic.Bool
	firstPage atomic.Bool
	padBytes  int
	spoiled   atomic.Int64
	pages     atomic.Int64
	written   atomic.Int64 // bytes of the last padded answer the client took
}

func (p *membersProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/members") {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.pages.Add(1)
	if p.firstPage.Load() {
		q := r.URL.Query()
		q.Set("pageNumber", "1")
		r.URL.RawQuery = q.Encode()
	}
	if !p.cut.Load() && !p.pad.Load() {
		p.rp.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	w.Header().Set("Content-Type", "application/json")
	if p.cut.Load() {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		p.spoiled.Add(1)
		panic(http.ErrAbortHandler)
	}
	// {"pad":"xxx…", + the page's own fields.
	w.WriteHeader(rec.Code)
	n := 0
	write := func(b []byte) bool {
		m, err := w.Write(b)
		n += m
		return err == nil
	}
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	ok := write([]byte(`{"pad":"`))
	for i := 0; ok && i < p.padBytes/len(chunk); i++ {
		ok = write(chunk)
	}
	if ok {
		write([]byte(`",`))
		write(body[1:])
	}
	p.written.Store(int64(n))
	p.spoiled.Add(1)
}

// startQueueBehind starts a client watching queue Q1 (the members as) whose
// API and sockets go through px in front of the emulator.
func startQueueBehind(t *testing.T, as []notificationstest.AgentSpec, px *membersProxy) *harness {
	t.Helper()
	return startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		px, func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) { c.Agents, c.Queues = nil, []string{"Q1"} })
}

// The SDK reads a Genesys answer with its read error dropped
// (platformclientv2 CallAPI: body, _ := ioutil.ReadAll). A queue page cut
// mid-body (a connection reset, a proxy's timeout, the client's own
// HTTPTimeout on a slow answer) arrives as its first half: gjson reads the
// members in it and, the nextUri lost with the rest, takes it for the last
// page. The members after the cut stop being watched until the next
// refresh, and their calls do not pop.
func TestClient_AQueuePageCutMidBodyUnwatchesNoAgent(t *testing.T) {
	as := agents(150)
	px := &membersProxy{}
	h := startQueueBehind(t, as, px)
	h.awaitReady(10 * time.Second)
	waitFor(t, 5*time.Second, "all 150 members watched", func() bool {
		return h.client.Status().(notifications.Status).Agents == len(as)
	})

	px.cut.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for px.spoiled.Load() < 5 && time.Now().Before(deadline) {
		if n := h.client.Status().(notifications.Status).Agents; n != len(as) {
			t.Fatalf("after a queue page cut mid-body, %d agents watched, want %d: the cut page was taken for the whole queue", n, len(as))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if px.spoiled.Load() < 5 {
		t.Fatalf("only %d queue pages cut in 5s", px.spoiled.Load())
	}
	if n := h.client.Status().(notifications.Status).Agents; n != len(as) {
		t.Fatalf("after a queue page cut mid-body, %d agents watched, want %d", n, len(as))
	}
}

// A Genesys answer is read whole into memory whatever its size: only
// HTTPTimeout (15 s) stops an endless one, and at network speed that is
// gigabytes. It must be refused past a size no API answer reaches.
func TestClient_AnOversizedAPIAnswerIsNotReadWhole(t *testing.T) {
	as := agents(2)
	px := &membersProxy{padBytes: 64 << 20}
	h := startQueueBehind(t, as, px)
	h.awaitReady(10 * time.Second)

	px.pad.Store(true)
	waitFor(t, 10*time.Second, "a padded queue page answered", func() bool { return px.spoiled.Load() >= 1 })
	px.pad.Store(false)
	if n := px.written.Load(); n > 40<<20 {
		t.Fatalf("the client read %d MiB of a %d MiB queue page, want it to stop at its answer limit", n>>20, px.padBytes>>20)
	}
}

// A gateway that drops the query string answers every page of a queue as
// page 1, nextUri and all. The client reads "the next page" for ever: the
// queue is never applied (the daemon never gets ready, with no error), and
// the loop spends the OAuth client's request budget that channel handovers
// and reconciliation need.
func TestClient_AQueueWhosePagesRepeatIsNotReadForEver(t *testing.T) {
	as := agents(150)
	px := &membersProxy{}
	px.firstPage.Store(true)
	h := startQueueBehind(t, as, px)
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "queue members not read") && strings.Contains(l, "repeat") {
				if n := px.pages.Load(); n > 20 {
					t.Fatalf("%d member pages read before the repeat was seen", n)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d member pages read in 3s for a queue of 2 pages, and no warning: the repeated page is followed for ever", px.pages.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
