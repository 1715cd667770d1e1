package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/certtest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// numbers hands out callers: seeded numbers the Dataverse emulator knows
// (open or choose), then synthetic ones it does not (create), each once.
type numbers struct {
	mu    sync.Mutex
	known []string
	seen  map[string]bool
	next  int
}

func newNumbers(seed dataversetest.SeedInfo, r *mrand.Rand) *numbers {
	n := &numbers{seen: map[string]bool{}}
	for _, l := range [][]string{seed.Unique, seed.Shared, seed.Unknown} {
		for _, s := range l {
			n.seen[s] = true
		}
	}
	n.known = append(append([]string(nil), seed.Unique...), seed.Shared...)
	r.Shuffle(len(n.known), func(i, j int) { n.known[i], n.known[j] = n.known[j], n.known[i] })
	return n
}

var areas = []string{"317", "212", "415", "312", "206", "617", "303", "512", "404", "702"}

// fresh returns a caller not used before.
func (n *numbers) fresh() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.known) > 0 {
		s := n.known[len(n.known)-1]
		n.known = n.known[:len(n.known)-1]
		return s
	}
	for {
		k := n.next
		n.next++
		// +1 AAA EXX XXXX with E in 2..9: a possible US number.
		s := "+1" + areas[k%len(areas)] + strconv.Itoa(2+(k/len(areas))%8) + fmt.Sprintf("%06d", (k/len(areas)/8)%1000000)
		if !n.seen[s] {
			n.seen[s] = true
			return s
		}
	}
}

// pace calls fn(i) for i in [0, n) at rate a second, from this goroutine,
// until ctx ends. It returns how many it called.
func pace(ctx context.Context, rate int, n int, fn func(i int)) int {
	period := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return i
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return i
		}
		fn(i)
	}
	return n
}

// hangups publishes each call's disconnected frame a fixed time after it
// alerted.
type hangups struct {
	ch      chan hangup
	done    chan struct{}
	pending atomic.Int64 // queued, not yet published
}

type hangup struct {
	gen   *notificationstest.Emulator
	topic string
	frame []byte
	at    time.Time
}

func startHangups(capacity int) *hangups {
	h := &hangups{ch: make(chan hangup, capacity), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for x := range h.ch {
			if d := time.Until(x.at); d > 0 {
				time.Sleep(d)
			}
			x.gen.Publish(x.topic, x.frame)
			h.pending.Add(-1)
		}
	}()
	return h
}

// settle waits until every hang-up queued so far is published, so that
// one phase's hang-ups do not land in the next one's measurement.
func (h *hangups) settle(ctx context.Context) {
	for h.pending.Load() > 0 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *hangups) add(gen *notificationstest.Emulator, topic string, frame []byte, after time.Duration) {
	h.pending.Add(1)
	select {
	case h.ch <- hangup{gen, topic, frame, time.Now().Add(after)}:
	default:
		h.pending.Add(-1)
		gen.Publish(topic, frame) // the queue is full: hang up now rather than block the pacing
	}
}

func (h *hangups) stop() { close(h.ch); <-h.done }

// callPlan is one scripted inbound call: its caller and the Genesys
// frames (eventBody of v2.users.{id}.conversations) for alerting and,
// with -hangup, disconnected.
type callPlan struct {
	topic         string
	alert, hangup []byte
}

// planCalls decides every call of phase p (its agent is already in the
// slot): a repeat caller (share o.HitRatio) is one who first called 1 to
// 11 seconds earlier, so the lookup finished and is inside both cache
// lifetimes; the others call for the first time. history holds the
// first-time callers in calling order across phases. The snapshots are built from
// the emulator's own conversation builders (which publish nothing when
// not registered) by up to GOMAXPROCS workers.
func planCalls(k byte, p *phase, o Options, nums *numbers, rnd *mrand.Rand, history *[]string) []callPlan {
	// In first calls: at 50% repeats, lag first calls are about 1 s.
	lag, window := max(1, int(float64(o.Rate)*(1-o.HitRatio))), max(1, int(10*float64(o.Rate)*(1-o.HitRatio)))
	out := make([]callPlan, len(p.slots))
	numbersOf := make([]string, len(p.slots))
	for i := range p.slots {
		h := *history
		var number string
		// Exactly HitRatio of the calls repeat, spread evenly.
		if math.Floor(float64(i+1)*o.HitRatio) > math.Floor(float64(i)*o.HitRatio) && len(h) > lag {
			from := max(0, len(h)-lag-window)
			number = h[from+rnd.IntN(len(h)-lag-from)]
			p.slots[i].repeat = true
		} else {
			number = nums.fresh()
			// Only first calls go into the history: a repeat of a repeat
			// could reach back past the negative cache's 30 s, a miss the
			// tool would count as a hit.
			*history = append(h, number)
		}
		p.slots[i].number.Store(&number)
		numbersOf[i] = number
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(out); i += workers {
				agent := agentID(int(p.slots[i].agent.Load()))
				c := notificationstest.NewInboundCall(agent, numbersOf[i], notificationstest.Options{
					ConversationID: convID(k, i), QueueID: "00000000-0000-4000-8000-0000000000a1", DNIS: "+18005551000",
				})
				out[i] = callPlan{topic: "v2.users." + agent + ".conversations", alert: c.Alert().Snapshot()}
				if o.Hangup > 0 {
					out[i].hangup = c.Disconnect().Snapshot()
				}
			}
		})
	}
	wg.Wait()
	return out
}

// dvQuery is the browser baseline's lookup: one uncached Web API query
// for the caller's number, as the original web resource did with
// Xrm.WebApi.retrieveMultipleRecords.
type dvQuery struct {
	base  string
	token string
	hc    *http.Client
}

func newDVQuery(ctx context.Context, dv *dataversetest.Server, hc *http.Client) (*dvQuery, error) {
	cfg := dv.Config()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {cfg.ClientID}, "client_secret": {cfg.ClientSecret}, "scope": {dv.URL() + "/.default"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dv.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dataverse token: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return nil, fmt.Errorf("dataverse token: status %d: %v", resp.StatusCode, err)
	}
	return &dvQuery{base: dv.URL() + "/api/data/v9.2/", token: tok.AccessToken, hc: hc}, nil
}

func (q *dvQuery) lookup(ctx context.Context, number string) error {
	lit := "'" + strings.ReplaceAll(number, "'", "''") + "'"
	v := url.Values{
		"$select": {"contactid,fullname"},
		"$filter": {"telephone1 eq " + lit + " or mobilephone eq " + lit + " or telephone2 eq " + lit},
		"$top":    {"10"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.base+"contacts?"+strings.ReplaceAll(v.Encode(), "+", "%20"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+q.token)
	req.Header.Set("Accept", "application/json")
	resp, err := q.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dataverse query: status %d", resp.StatusCode)
	}
	return nil
}

// Run performs one benchmark run and writes its results.
func Run(ctx context.Context, o Options) (*Result, error) {
	out := o.Stdout
	if out == nil {
		out = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if need := uint64(o.Agents) + 512; nofile < need {
		return nil, fmt.Errorf("RLIMIT_NOFILE is %d, %d agents need about %d (raise the hard limit: ulimit -Hn)", nofile, o.Agents, need)
	}
	tmp, err := os.MkdirTemp("", "screenpop-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := o.Daemon
	if bin == "" {
		logf("building screenpopd")
		if bin, err = buildDaemon(ctx, tmp); err != nil {
			return nil, err
		}
	}
	var split cpuSplit // after the build, which may use every CPU
	if o.Pin {
		if split, err = planSplit(); err != nil {
			return nil, err
		}
		if err := pinSelf(split.Tool); err != nil {
			return nil, err
		}
		logf("pinned: %s", split)
	}

	// The emulators, in this process.
	specs := make([]notificationstest.AgentSpec, o.Agents)
	ids := make([]string, o.Agents)
	for i := range specs {
		ids[i] = agentID(i)
		specs[i] = notificationstest.AgentSpec{ID: ids[i], Name: "Agent " + strconv.Itoa(i), Email: "agent" + strconv.Itoa(i) + "@example.invalid"}
	}
	gen := notificationstest.New(notificationstest.Config{Agents: specs})
	if _, err := gen.Start(); err != nil {
		return nil, fmt.Errorf("start genesys emulator: %w", err)
	}
	defer gen.Close()
	dv := dataversetest.New(dataversetest.Config{})
	if err := dv.Start(); err != nil {
		return nil, fmt.Errorf("start dataverse emulator: %w", err)
	}
	defer dv.Close()
	rnd := mrand.New(mrand.NewPCG(7, 11))
	nums := newNumbers(dv.Seed(o.Seed, mrand.New(mrand.NewPCG(1, 2))), rnd)

	agentsFile := filepath.Join(tmp, "agents.txt")
	if err := os.WriteFile(agentsFile, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	var sb [48]byte
	_, _ = rand.Read(sb[:])
	secret := []byte(base64.RawStdEncoding.EncodeToString(sb[:]))
	gc, dc := gen.Config(), dv.Config()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + tmp,
		"GENESYS_API_URL=" + gen.URL(), "GENESYS_CLIENT_ID=" + gc.ClientID, "GENESYS_CLIENT_SECRET=" + gc.ClientSecret,
		"GENESYS_AGENTS_FILE=" + agentsFile,
		"DATAVERSE_URL=" + dv.URL(), "DATAVERSE_TOKEN_URL=" + dv.TokenURL(), "DATAVERSE_TENANT_ID=" + dc.TenantID,
		"DATAVERSE_CLIENT_ID=" + dc.ClientID, "DATAVERSE_CLIENT_SECRET=" + dc.ClientSecret,
		"DATAVERSE_APP_ID=00000000-0000-4000-8000-0000000000be",
		"SCREENPOP_AUTH=jwt", "SCREENPOP_JWT_SECRET=" + string(secret),
		"SCREENPOP_LISTEN=127.0.0.1:0", "SCREENPOP_ADMIN_LISTEN=127.0.0.1:0", "SCREENPOP_NATS_LISTEN=127.0.0.1:0",
		"SCREENPOP_DATA_DIR=" + filepath.Join(tmp, "data"), "SCREENPOP_MAX_EVENT_AGE=10m", "SCREENPOP_PPROF=true",
		"LOG_LEVEL=info", "LOG_FORMAT=json",
	}
	scheme, clientTLS := "ws", (*tls.Config)(nil)
	if o.TLS {
		certFile, keyFile, err := certtest.Write(tmp, certtest.Options{})
		if err != nil {
			return nil, err
		}
		pool, err := certtest.Pool(certFile)
		if err != nil {
			return nil, err
		}
		env = append(env, "SCREENPOP_TLS_CERT="+certFile, "SCREENPOP_TLS_KEY="+keyFile)
		scheme, clientTLS = "wss", &tls.Config{RootCAs: pool}
	}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
		if v := os.Getenv("SCREENPOPD_" + k); v != "" { // runtime settings for the daemon alone
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "GODEBUG="+daemonGODEBUG(os.Getenv("SCREENPOPD_GODEBUG")))
	var verbose io.Writer
	if o.Verbose {
		verbose = out
	}
	pr := startProbe()
	defer pr.close()
	time.Sleep(time.Second)
	idleLateness := dist(pr.take())
	logf("starting screenpopd (%d agents)", o.Agents)
	var logCopy io.Writer
	if o.Samples && o.Out != "" {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, err
		}
		lf, err := os.Create(filepath.Join(o.Out, "daemon.log"))
		if err != nil {
			return nil, err
		}
		defer lf.Close()
		logCopy = lf
	}
	d, err := startDaemon(bin, env, split.Daemon, verbose, logCopy)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	st, err := d.awaitStarted(sctx)
	cancel()
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	adm := admin{base: "http://" + st.AdminListen, hc: hc}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = adm.awaitReady(rctx)
	if err == nil {
		err = gen.AwaitSubscribed(rctx, o.Agents)
	}
	cancel()
	if err != nil {
		return nil, fmt.Errorf("waiting for screenpopd to subscribe %d agents: %w; %s", o.Agents, err, strings.Join(d.bad(), "; "))
	}
	logf("screenpopd ready: %d Genesys channels, agent listener %s, admin %s", len(gen.Channels()), st.AgentListen, st.AdminListen)

	if o.Markers > 0 {
		t := time.Now()
		if err := preloadMarkers(ctx, st.NatsURL, o.Markers); err != nil {
			return nil, err
		}
		logf("stored %d pop markers of earlier legs in %.1fs", o.Markers, time.Since(t).Seconds())
	}

	res := &Result{Options: resultOptions(o), Machine: machine(), Started: time.Now().UTC()}
	if o.Pin {
		res.Machine.Pin = &split
	}
	// settle lets the daemon go idle and collects its garbage; with
	// -profile it keeps the daemon's heap profile then under file, so
	// that what the agent connections hold can be read from the two
	// (go tool pprof -diff_base daemon-heap-idle.pprof
	// daemon-heap-connected.pprof).
	settle := func(file string) {
		time.Sleep(time.Second)
		heap := adm.gc(ctx)
		if o.Profile && o.Out != "" && heap != nil {
			if err := os.MkdirAll(o.Out, 0o755); err == nil {
				_ = os.WriteFile(filepath.Join(o.Out, file), heap, 0o644)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	settle("daemon-heap-idle.pprof")
	before, _ := readProc(d.pid)
	mBefore := adm.metrics(ctx)

	// The phases' expected pops.
	n := func(d time.Duration) int { return max(1, int(d.Seconds()*float64(o.Rate))) }
	phases := map[byte]*phase{}
	var warm, floor, main, base *phase
	if o.Warmup > 0 {
		warm = newPhase("warmup", n(o.Warmup))
		phases[phaseWarmup] = warm
	}
	if o.RefPhase > 0 {
		floor = newPhase("nats_floor", n(o.RefPhase))
		base = newPhase("browser_baseline", n(o.RefPhase))
		phases[phaseFloor], phases[phaseBaseline] = floor, base
	}
	main = newPhase("screenpop", n(o.Duration))
	phases[phaseMain] = main
	nextAgent := 0
	for _, k := range []byte{phaseWarmup, phaseFloor, phaseMain, phaseBaseline} {
		if p := phases[k]; p != nil {
			for i := range p.slots {
				p.slots[i].agent.Store(int32(nextAgent % o.Agents))
				nextAgent++
			}
		}
	}

	q, err := newDVQuery(ctx, dv, hc)
	if err != nil {
		return nil, err
	}
	// beats spans the whole run: the connect (bounded by 10 minutes at
	// most), the warm-up with its hang-ups, both reference phases, the
	// screenpop phase and their drains.
	span := 10*time.Minute + o.Warmup + o.Hangup + 2*o.RefPhase + o.Duration + 3*o.DrainAfter
	f := &fleet{phases: phases, start: time.Now().UnixNano(), beats: make([]atomic.Int32, int(span/(100*time.Millisecond)))}
	f.onBaseline = func(s *slot) {
		if err := q.lookup(ctx, *s.number.Load()); err != nil {
			return // not stamped: counted as lost
		}
		s.t1.Store(time.Now().UnixNano())
	}
	logf("connecting %d agent clients", o.Agents)
	t := time.Now()
	if err := connect(ctx, scheme+"://"+st.AgentListen+"/v1/ws", clientTLS, secret, o.Agents, f); err != nil {
		f.close()
		return nil, err
	}
	defer f.close()
	res.ConnectSeconds = time.Since(t).Seconds()
	settle("daemon-heap-connected.pprof")
	after, _ := readProc(d.pid)
	mAfter := adm.metrics(ctx)
	res.Memory = memoryResult(o.Agents, before, after, mBefore, mAfter)
	logf("connected in %.1fs; daemon RSS %d -> %d KB (%.1f KB per idle connection), goroutines %.0f -> %.0f",
		res.ConnectSeconds, before.RSSKB, after.RSSKB, res.Memory.RSSPerConnKB, res.Memory.GoroutinesBefore, res.Memory.GoroutinesAfter)

	// The NATS floor and the browser baseline publish pops straight to
	// the daemon's stream, as the resolver would.
	var js jetstream.JetStream
	if floor != nil {
		nc, err := nats.Connect(st.NatsURL, nats.Name("screenpop-bench"))
		if err != nil {
			return nil, fmt.Errorf("connect to the daemon's NATS (%s): %w", st.NatsURL, err)
		}
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			return nil, err
		}
	}
	publishPop := func(p *phase, phaseKey byte, i int, number string) {
		s := &p.slots[i]
		s.number.Store(&number)
		conv := convID(phaseKey, i)
		a := bridge.AgentID(agentID(int(s.agent.Load())))
		now := time.Now()
		pop := &bridge.Pop{
			ID: "pop:" + conv + ":" + conv, ConversationID: bridge.ConversationID(conv), AgentID: a,
			Media: bridge.MediaVoice, State: bridge.StateAlerting,
			Customer: bridge.PopCustomer{Phone: number, Name: "Bench Caller"},
			Target: bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "00000000-0000-4000-8000-00000000c0de", Name: "Bench Caller",
				URL: "http://127.0.0.1/main.aspx?appid=00000000-0000-4000-8000-0000000000be&pagetype=entityrecord&etn=contact&id=00000000-0000-4000-8000-00000000c0de"},
			IssuedAt: bridge.NewTime(now), EventReceivedAt: bridge.NewTime(now),
		}
		msg, err := bridge.EncodePop(pop, now)
		if err != nil {
			return
		}
		now = time.Now()
		s.queued.Store(now.UnixNano())
		s.t0.Store(now.UnixNano())
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: nats.Header{"Nats-Msg-Id": {msg.ID}}}); err != nil {
			return
		}
		p.sent.Add(1)
	}

	hang := startHangups(o.Rate*int(o.Hangup/time.Second+2) + 1024)
	hangStopped := false
	defer func() {
		if !hangStopped {
			hang.stop()
		}
	}()
	// The calls are planned and their Genesys frames built before the
	// phases start: building a snapshot with the SDK's models costs the
	// emulator about 0.15 ms of CPU, which would otherwise compete with
	// the daemon on the same cores during the measurement.
	var history []string
	var plans = map[byte][]callPlan{}
	for _, k := range []byte{phaseWarmup, phaseMain} {
		if p := phases[k]; p != nil {
			logf("planning %d calls of phase %s", len(p.slots), p.name)
			plans[k] = planCalls(k, p, o, nums, rnd, &history)
		}
	}
	call := func(p *phase, phaseKey byte, i int) {
		s, c := &p.slots[i], &plans[phaseKey][i]
		// The end to end starts when the emulator writes the
		// frame; the time the frame waited in the emulator's queue is the
		// tool's, and is reported on its own (emulator queue).
		s.queued.Store(time.Now().UnixNano())
		gen.PublishTraced(c.topic, c.alert, func() { s.t0.CompareAndSwap(0, time.Now().UnixNano()) })
		p.sent.Add(1)
		if c.hangup != nil {
			hang.add(gen, c.topic, c.hangup, o.Hangup)
		}
	}
	drain := func(ps ...*phase) {
		deadline := time.Now().Add(o.DrainAfter)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			done := true
			for _, p := range ps {
				if p != nil && p.got.Load() < p.sent.Load() {
					done = false
				}
			}
			if done {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	dv.SetLatency(o.DVLatency)
	if warm != nil {
		logf("warm-up: %d calls at %d/s", len(warm.slots), o.Rate)
		pace(ctx, o.Rate, len(warm.slots), func(i int) { call(warm, phaseWarmup, i) })
		drain(warm)
	}
	if floor != nil {
		logf("reference: NATS floor, %d pops published at %d/s", len(floor.slots), o.Rate)
		gcOn := quietGC(&res.ToolGCDuringPhases)
		pace(ctx, o.Rate, len(floor.slots), func(i int) { publishPop(floor, phaseFloor, i, nums.fresh()) })
		drain(floor)
		gcOn()
	}

	// The warm-up's hang-ups come -hangup after its calls: with short
	// reference phases they would land in this phase, their CPU counted
	// against its pops.
	hang.settle(ctx)
	logf("screenpop: %d calls at %d/s for %s, Dataverse latency %s, %.0f%% repeat callers", len(main.slots), o.Rate, o.Duration, o.DVLatency, o.HitRatio*100)
	cpu0, _ := readProc(d.pid)
	dvReq0 := dv.HTTPRequests()
	m0 := adm.metrics(ctx)
	var profWG sync.WaitGroup
	if o.Profile && o.Out != "" {
		secs := max(1, int(o.Duration.Seconds())-1)
		_ = os.MkdirAll(o.Out, 0o755)
		// The CPU profile and the allocations made during the phase
		// (a delta profile), side by side.
		for path, file := range map[string]string{"profile": "daemon-cpu.pprof", "allocs": "daemon-allocs.pprof"} {
			profWG.Add(1)
			go func() {
				defer profWG.Done()
				pc := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
				if resp, err := pc.Get(adm.base + "/debug/pprof/" + path + "?seconds=" + strconv.Itoa(secs)); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					_ = os.WriteFile(filepath.Join(o.Out, file), b, 0o644)
				}
			}()
		}
		if fp, err := os.Create(filepath.Join(o.Out, "bench-cpu.pprof")); err == nil {
			if pprof.StartCPUProfile(fp) == nil {
				defer func() { pprof.StopCPUProfile(); fp.Close() }()
			}
		}
	}
	gcOn := quietGC(&res.ToolGCDuringPhases)
	pr.take()
	t = time.Now()
	pace(ctx, o.Rate, len(main.slots), func(i int) { call(main, phaseMain, i) })
	mainLateness := dist(pr.take())
	beatFrom, beatTo := int(t.Sub(time.Unix(0, f.start))/(100*time.Millisecond)), int(time.Since(time.Unix(0, f.start))/(100*time.Millisecond))
	profWG.Wait()
	sendSeconds := time.Since(t).Seconds()
	drain(main)
	gcOn()
	hang.stop()
	hangStopped = true
	cpu1, _ := readProc(d.pid)
	// Lookups of the phase may still be running (a flight outlives the
	// pop that started it, and retries after a timeout on a busy
	// machine): they belong to this phase, not to the baseline's count.
	dvQuiet(ctx, dv.HTTPRequests, time.Second, 30*time.Second)
	dvReq1 := dv.HTTPRequests()
	m1 := adm.metrics(ctx)
	if o.Samples && o.Out != "" {
		_ = os.WriteFile(filepath.Join(o.Out, "daemon-metrics.txt"), []byte(m1), 0o644)
	}

	if base != nil {
		logf("reference: browser baseline, %d pops, one uncached Dataverse query each", len(base.slots))
		gcOn := quietGC(&res.ToolGCDuringPhases)
		pace(ctx, o.Rate, len(base.slots), func(i int) { publishPop(base, phaseBaseline, i, nums.fresh()) })
		drain(base)
		gcOn()
	}
	dvReq2 := dv.HTTPRequests()
	end, _ := readProc(d.pid)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Results.
	res.SendSeconds = sendSeconds
	var beatMax, beatSum int
	beatFrom, beatTo = max(0, beatFrom), min(beatTo, len(f.beats)) // the mean is of the buckets counted
	for k := beatFrom; k < beatTo; k++ {
		n := int(f.beats[k].Load())
		beatSum += n
		beatMax = max(beatMax, n)
	}
	if beatTo > beatFrom {
		res.HeartbeatsPer100ms = HeartbeatSpread{Mean: round3(float64(beatSum) / float64(beatTo-beatFrom)), Max: beatMax}
	}
	res.TimerLateness = map[string]Dist{"idle_before_start": idleLateness, "screenpop_phase": mainLateness}
	res.Phases = map[string]*PhaseResult{}
	for _, p := range []*phase{warm, floor, main, base} {
		if p == nil {
			continue
		}
		pr := phaseResult(p)
		res.Phases[p.name] = pr
		res.Lost += pr.Lost
		res.Duplicated += pr.Duplicated
		res.Misrouted += pr.Misrouted
	}
	mainRes := res.Phases[main.name]
	addDaemonFigures(mainRes, main, d)
	pops := float64(mainRes.Received)
	if pops > 0 {
		mainRes.CPUSecondsPer1000 = (cpu1.CPUSeconds - cpu0.CPUSeconds) / pops * 1000
		// Per call driven, not per pop delivered: a run that loses pops
		// should fail on the loss, not also look like a cache that misses.
		mainRes.DataverseRequestsPerPop = float64(dvReq1-dvReq0) / float64(max(mainRes.Sent, 1))
		if misses := m1.sum("screenpop_dataverse_lookups_total", "") - m0.sum("screenpop_dataverse_lookups_total", "") -
			(m1.sum("screenpop_dataverse_lookups_total", `result="hit"`) + m1.sum("screenpop_dataverse_lookups_total", `result="negative_hit"`) -
				m0.sum("screenpop_dataverse_lookups_total", `result="hit"`) - m0.sum("screenpop_dataverse_lookups_total", `result="negative_hit"`)); misses > 0 {
			mainRes.DataverseRequestsPerMiss = float64(dvReq1-dvReq0) / misses
		}
		hits := m1.sum("screenpop_dataverse_lookups_total", `result="hit"`) + m1.sum("screenpop_dataverse_lookups_total", `result="negative_hit"`) -
			m0.sum("screenpop_dataverse_lookups_total", `result="hit"`) - m0.sum("screenpop_dataverse_lookups_total", `result="negative_hit"`)
		all := m1.sum("screenpop_dataverse_lookups_total", "") - m0.sum("screenpop_dataverse_lookups_total", "")
		if all > 0 {
			mainRes.CacheHitRatio = hits / all
		}
	}
	if base != nil {
		if r := res.Phases[base.name]; r.Received > 0 {
			r.DataverseRequestsPerPop = float64(dvReq2-dvReq1) / float64(max(r.Sent, 1))
		}
	}
	res.Memory.RSSEndKB = end.RSSKB
	res.Memory.Threads = end.Threads
	res.DaemonWarnings, res.DaemonErrors = d.warnings, d.errors
	res.DaemonFirstProblems = d.bad()
	res.ClientsClosedEarly = f.closedEarly.Load()
	res.UnexpectedFrames = f.other.Load()
	res.GenesysChannels = len(gen.Channels())
	res.GenesysRequests = map[string]int{}
	for _, r := range gen.Requests() {
		path := r.Path
		// Collapse ids: /api/v2/conversations/{id} and friends.
		parts := strings.Split(path, "/")
		for i, x := range parts {
			if len(x) >= 20 {
				parts[i] = "{id}"
			}
		}
		res.GenesysRequests[r.Method+" "+strings.Join(parts, "/")]++
	}
	res.targets(o)
	res.ratios()

	if err := res.write(o.Out, phases, d, main); err != nil {
		return res, err
	}
	if o.Samples && o.Out != "" {
		if err := writeSamples(filepath.Join(o.Out, "pops.csv"), phases); err != nil {
			return res, err
		}
	}
	res.print(out)
	return res, nil
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i >= 0 {
					m.CPUModel = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	return m
}

// toolMemoryLimit bounds the tool's heap while its collector is off during
// a measured phase (see quietGC): the full run allocates about 2 GB in
// that time.
const toolMemoryLimit = 6 << 30

// quietGC keeps the tool's own garbage collector out of a measured phase.
// The tool allocates tens of MB a second (10,000 clients and two emulators);
// one of its GC cycles delays every client's read by up to 150 ms and takes
// CPU from the daemon, and both would be counted as the daemon's latency.
// It collects now, then turns the collector off (a memory limit still
// bounds the heap) until the returned func is called, which adds the GC
// cycles that happened anyway to *count.
func quietGC(count *uint32) (gcOn func()) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n0 := ms.NumGC
	pct := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(toolMemoryLimit)
	return func() {
		runtime.ReadMemStats(&ms)
		*count += ms.NumGC - n0
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(limit)
	}
}

// dvQuiet waits until count has not changed for quiet, at most max.
func dvQuiet(ctx context.Context, count func() int, quiet, max time.Duration) {
	last, since, deadline := count(), time.Now(), time.Now().Add(max)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}

// daemonGODEBUG is the daemon's GODEBUG: SCREENPOPD_GODEBUG's settings,
// with gctrace=1 unless they set gctrace, so that the report can place the
// daemon's GC cycles (one short line each on its stderr).
func daemonGODEBUG(own string) string {
	switch {
	case own == "":
		return "gctrace=1"
	case strings.Contains(own, "gctrace="):
		return own
	default:
		return own + ",gctrace=1"
	}
}
