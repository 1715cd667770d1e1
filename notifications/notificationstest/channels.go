package notificationstest

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type channel struct {
	id       string
	owner    string // client id, or client id + user id for user tokens
	token    string
	created  time.Time
	lastUsed time.Time
	expires  time.Time
	topics   map[string]bool
	conn     *wsConn
	gone     bool
}

// ChannelInfo describes one channel, for tests and the demo.
type ChannelInfo struct {
	ID        string
	Topics    int
	Connected bool
	Expires   time.Time
}

// FrameFaults alter how events reach sockets (heartbeats and pongs are not
// affected).
type FrameFaults struct {
	Duplicate bool          // send every event twice
	Delay     time.Duration // send every event after this delay
	Reorder   bool          // hold each event and send it after the next one on the same socket
	Junk      bool          // send a junk (non-JSON) frame before every event
}

// SetFrameFaults replaces the frame faults.
func (e *Emulator) SetFrameFaults(f FrameFaults) {
	e.mu.Lock()
	e.frame = f
	e.mu.Unlock()
}

// SetBlackhole makes connected sockets go silent while staying open (no
// heartbeats, no pongs, no events): a dead socket as a client sees one
// behind a broken proxy.
func (e *Emulator) SetBlackhole(on bool) {
	e.mu.Lock()
	e.blackhole = on
	e.mu.Unlock()
}

// SetHeartbeats turns heartbeats off or on.
func (e *Emulator) SetHeartbeats(on bool) {
	e.mu.Lock()
	e.heartbeatsOff = !on
	e.mu.Unlock()
}

// RejectTopicsFor makes subscriptions of topics about user id fail with
// 403 notification.unauthorized.topic (or a Rejected entity with
// ignoreErrors=true). An empty code means the default.
func (e *Emulator) RejectTopicsFor(userID, code string) {
	if code == "" {
		code = "notification.unauthorized.topic"
	}
	e.mu.Lock()
	e.rejected[userID] = code
	e.mu.Unlock()
}

// AllowTopicsFor undoes RejectTopicsFor, as an admin who gives the OAuth
// client's role the permission in the user's division: later
// subscriptions of the user's topics are permitted (those made already
// are not changed: "Subscriptions are retried at the next change").
func (e *Emulator) AllowTopicsFor(userID string) {
	e.mu.Lock()
	delete(e.rejected, userID)
	e.mu.Unlock()
}

// RefuseSockets makes the upgrade of every socket for a channel that
// holds a topic about user id fail with status (a Genesys ErrorBody), as a
// streaming host or a proxy that refuses that one channel, and drops such
// a socket already connected; the other channels are not touched. Status
// 0 undoes it.
func (e *Emulator) RefuseSockets(userID string, status int) {
	e.mu.Lock()
	if status == 0 {
		delete(e.refuseSockets, userID)
		e.mu.Unlock()
		return
	}
	e.refuseSockets[userID] = status
	var conns []*wsConn
	for c := range e.conns {
		if e.socketRefusedLocked(c.ch) != 0 {
			conns = append(conns, c)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// RemoveChannelsOf removes the channels that hold a topic about user id
// and closes their sockets (1000), as one channel's early expiry or
// eviction; the other channels are not touched. Later calls on them get 404.
func (e *Emulator) RemoveChannelsOf(userID string) {
	e.removeChannels(func(c *channel) bool {
		for t := range c.topics {
			if m := userTopicRE.FindStringSubmatch(t); m != nil && m[1] == userID {
				return true
			}
		}
		return false
	}, "channel expired")
}

// socketRefusedLocked is the status RefuseSockets set for one of ch's
// topics, or 0.
func (e *Emulator) socketRefusedLocked(ch *channel) int {
	for t := range ch.topics {
		if m := userTopicRE.FindStringSubmatch(t); m != nil {
			if st := e.refuseSockets[m[1]]; st != 0 {
				return st
			}
		}
	}
	return 0
}

var (
	userTopicRE  = regexp.MustCompile(`^v2\.users\.([A-Za-z0-9-]+)\.(conversations|conversations\.(calls|callbacks|chats|messages|emails)|presence|routingStatus|conversationsummary)$`)
	queueTopicRE = regexp.MustCompile(`^v2\.routing\.queues\.([A-Za-z0-9-]+)\.conversations(\.(calls|callbacks|chats|messages|emails))?$`)
)

// expandTopic expands a combined topic "prefix?a&b" into its members.
func expandTopic(t string) []string {
	i := strings.IndexByte(t, '?')
	if i < 0 {
		return []string{t}
	}
	var out []string
	for _, s := range strings.Split(t[i+1:], "&") {
		out = append(out, t[:i]+"."+s)
	}
	return out
}

func ownerOf(t *token) string {
	if t.userID == "" {
		return t.clientID
	}
	return t.clientID + "/" + t.userID
}

// socketURL is a channel's connectUri on the host the request named, or,
// for a request to api.<domain>, on streaming.<domain> (as the service
// hands out; the emulator serves every host); wss when it is served over
// TLS. So a client behind an HTTPS proxy dials the socket as it does in
// production: wss, on a host of its own.
func (e *Emulator) socketURL(r *http.Request, id string) string {
	scheme := "ws://"
	if r.TLS != nil {
		scheme = "wss://"
	}
	host := r.Host
	if d, ok := strings.CutPrefix(host, "api."); ok {
		host = "streaming." + d
	}
	return scheme + host + "/channels/" + id
}

type channelJSON struct {
	ConnectURI string `json:"connectUri"`
	ID         string `json:"id"`
	Expires    string `json:"expires"`
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (e *Emulator) handleCreateChannel(w http.ResponseWriter, r *http.Request, t *token) {
	owner := ownerOf(t)
	now := time.Now()
	e.mu.Lock()
	e.chanSeq++
	id := "streaming-" + strconv.Itoa(e.chanSeq%10) + "-" + strings.ReplaceAll(newID(), "-", "")[:26]
	c := &channel{id: id, owner: owner, token: t.value, created: now, lastUsed: now, expires: now.Add(e.cfg.ChannelLifetime), topics: map[string]bool{}}
	// The 21st channel evicts the oldest by last use, unconnected first.
	var mine []*channel
	for _, x := range e.channels {
		if x.owner == owner {
			mine = append(mine, x)
		}
	}
	var evicted *channel
	if len(mine) >= e.cfg.MaxChannels {
		sort.Slice(mine, func(i, j int) bool {
			ci, cj := mine[i].conn != nil, mine[j].conn != nil
			if ci != cj {
				return !ci
			}
			return mine[i].lastUsed.Before(mine[j].lastUsed)
		})
		evicted = mine[0]
		e.removeChannelLocked(evicted)
	}
	e.channels[id] = c
	e.mu.Unlock()
	e.expireAt(c.expires)
	if evicted != nil && evicted.conn != nil {
		evicted.conn.closeWith(websocket.CloseNormalClosure, "channel evicted")
	}
	writeJSON(w, http.StatusOK, channelJSON{ConnectURI: e.socketURL(r, id), ID: id, Expires: fmtTime(c.expires)})
}

func (e *Emulator) removeChannelLocked(c *channel) {
	c.gone = true
	delete(e.channels, c.id)
	e.notifySubscribedLocked()
}

func (e *Emulator) handleListChannels(w http.ResponseWriter, r *http.Request, t *token) {
	owner := ownerOf(t)
	all := r.URL.Query().Get("includechannels") == "oauthclient"
	e.mu.Lock()
	ents := []channelJSON{}
	for _, c := range e.channels {
		if c.owner != owner {
			continue
		}
		if c.token == t.value {
			ents = append(ents, channelJSON{ConnectURI: e.socketURL(r, c.id), ID: c.id, Expires: fmtTime(c.expires)})
		} else if all {
			ents = append(ents, channelJSON{Expires: fmtTime(c.expires)})
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"entities": ents})
}

// channelFor returns the live channel id owned by t's owner, or nil.
func (e *Emulator) channelFor(id string, t *token) *channel {
	e.expireChannels()
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.channels[id]
	if c == nil || c.owner != ownerOf(t) {
		return nil
	}
	c.lastUsed = time.Now()
	return c
}

func (e *Emulator) handleHeadChannel(w http.ResponseWriter, r *http.Request, t *token) {
	if e.channelFor(r.PathValue("id"), t) == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

type channelTopic struct {
	ID              string `json:"id"`
	State           string `json:"state,omitempty"`
	RejectionReason string `json:"rejectionReason,omitempty"`
}

func (e *Emulator) topicsJSON(c *channel) []channelTopic {
	out := make([]channelTopic, 0, len(c.topics))
	for t := range c.topics {
		out = append(out, channelTopic{ID: t, State: "Permitted"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *Emulator) handleGetSubs(w http.ResponseWriter, r *http.Request, t *token) {
	c := e.channelFor(r.PathValue("id"), t)
	if c == nil {
		writeError(w, http.StatusNotFound, "not.found", "The requested channel could not be found.", nil)
		return
	}
	e.mu.Lock()
	ents := e.topicsJSON(c)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"entities": ents})
}

func (e *Emulator) handleDeleteSubs(w http.ResponseWriter, r *http.Request, t *token) {
	c := e.channelFor(r.PathValue("id"), t)
	if c == nil {
		writeError(w, http.StatusNotFound, "not.found", "The requested channel could not be found.", nil)
		return
	}
	e.mu.Lock()
	c.topics = map[string]bool{}
	e.notifySubscribedLocked()
	e.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// handleSetSubs serves PUT (replace) and POST (add).
func (e *Emulator) handleSetSubs(w http.ResponseWriter, r *http.Request, t *token) {
	c := e.channelFor(r.PathValue("id"), t)
	if c == nil {
		writeError(w, http.StatusNotFound, "entity.not.found", "The requested channel could not be found.", nil)
		return
	}
	var body []channelTopic
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad.request", "The request could not be understood by the server due to malformed syntax.", nil)
		return
	}
	ignore := r.URL.Query().Get("ignoreErrors") == "true"
	var (
		permitted []string
		result    []channelTopic
	)
	e.mu.Lock()
	for _, b := range body {
		for _, topic := range expandTopic(b.ID) {
			var subject string
			if m := userTopicRE.FindStringSubmatch(topic); m != nil {
				subject = m[1]
			} else if queueTopicRE.MatchString(topic) {
				subject = ""
			} else {
				e.mu.Unlock()
				if ignore {
					// An invalid topic still fails the request: it is a client bug, not a permission.
				}
				writeError(w, http.StatusBadRequest, "notification.invalid.topic", "Invalid topic: "+topic, map[string]string{"topic": topic})
				return
			}
			if code, bad := e.rejected[subject]; bad && subject != "" {
				if !ignore {
					e.mu.Unlock()
					writeError(w, http.StatusForbidden, code, "Permission denied for topic "+topic, map[string]string{"topic": topic})
					return
				}
				result = append(result, channelTopic{ID: topic, State: "Rejected", RejectionReason: code})
				continue
			}
			permitted = append(permitted, topic)
			result = append(result, channelTopic{ID: topic, State: "Permitted"})
		}
	}
	next := map[string]bool{}
	if r.Method == http.MethodPost {
		for k := range c.topics {
			next[k] = true
		}
	}
	for _, p := range permitted {
		next[p] = true
	}
	if len(next) > e.cfg.MaxTopics {
		e.mu.Unlock()
		writeError(w, http.StatusBadRequest, "notification.subscription.too.many.subscriptions", "Too many subscriptions: a channel may hold "+strconv.Itoa(e.cfg.MaxTopics)+" topics.", map[string]string{"limit": strconv.Itoa(e.cfg.MaxTopics)})
		return
	}
	c.topics = next
	c.expires = time.Now().Add(e.cfg.ChannelLifetime)
	expires := c.expires
	type taken struct {
		conn  *wsConn
		ch    *channel
		topic string
	}
	var lost []taken
	if e.cfg.ExclusiveTopics {
		for _, o := range e.channels {
			if o == c || o.owner != c.owner {
				continue
			}
			for topic := range next {
				if o.topics[topic] {
					delete(o.topics, topic)
					lost = append(lost, taken{o.conn, o, topic})
				}
			}
		}
	}
	e.notifySubscribedLocked()
	e.mu.Unlock()
	e.expireAt(expires)
	for _, l := range lost {
		if l.conn != nil {
			e.sendSystem(l.conn, "v2.system.no_longer_subscribed."+l.ch.id, systemMessage{ChannelID: l.ch.id, SystemTopicType: "no_longer_subscribed", Reason: "another_channel_subscribed", Message: l.topic})
		}
	}
	if result == nil {
		result = []channelTopic{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entities": result})
}

func (e *Emulator) notifySubscribedLocked() {
	close(e.subscribed)
	e.subscribed = make(chan struct{})
}

func (e *Emulator) handleAvailableTopics(w http.ResponseWriter, r *http.Request, t *token) {
	ents := []map[string]any{
		{"id": "v2.users.{id}.conversations", "description": "Conversations of a user", "requiresPermissions": []string{"conversation:communication:view"},
			"requiresCurrentUser": false, "requiresCurrentUserOrPermission": true, "enforced": true, "transports": []string{"All"},
			"schema": map[string]any{"title": "ConversationEventTopicConversation"}},
		{"id": "v2.users.{id}.presence", "description": "Presence of a user", "requiresPermissions": []string{}, "enforced": false, "transports": []string{"All"}},
		{"id": "v2.routing.queues.{id}.conversations", "description": "Conversations of a queue", "requiresPermissions": []string{"routing:queue:view"}, "enforced": true, "transports": []string{"All"}},
	}
	writeJSON(w, http.StatusOK, map[string]any{"entities": ents})
}

// Channels lists the live channels.
func (e *Emulator) Channels() []ChannelInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ChannelInfo, 0, len(e.channels))
	for _, c := range e.channels {
		out = append(out, ChannelInfo{ID: c.id, Topics: len(c.topics), Connected: c.conn != nil, Expires: c.expires})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SubscribedConnected counts distinct topics held by channels with a
// connected socket: what would be delivered right now.
func (e *Emulator) SubscribedConnected() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subscribedConnectedLocked()
}

func (e *Emulator) subscribedConnectedLocked() int {
	seen := map[string]bool{}
	for _, c := range e.channels {
		if c.conn == nil {
			continue
		}
		for t := range c.topics {
			seen[t] = true
		}
	}
	return len(seen)
}

// IsDelivered reports whether topic is held by a channel with a connected socket.
func (e *Emulator) IsDelivered(topic string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.channels {
		if c.conn != nil && c.topics[topic] {
			return true
		}
	}
	return false
}

// AwaitSubscribed waits until at least n distinct topics are held by
// channels with connected sockets.
func (e *Emulator) AwaitSubscribed(ctx context.Context, n int) error {
	for {
		e.mu.Lock()
		ok := e.subscribedConnectedLocked() >= n
		ch := e.subscribed
		conn := e.connected
		e.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-conn:
		}
	}
}

// ExpireChannels removes every channel (as at its 24 h expiry) and closes
// their sockets; later calls on them get 404.
func (e *Emulator) ExpireChannels() {
	e.removeChannels(func(*channel) bool { return true }, "channel expired")
}

// expireAt removes the channels expired by then, closing their sockets,
// as the service does at a channel's expiry ("A channel lives 24 h",
// reference genesys.md §3 Limits; emulator item "expiry at `expires`",
// §9 WebSocket 6), whether or not an API call comes to notice it.
func (e *Emulator) expireAt(t time.Time) {
	e.afterFunc(time.Until(t)+time.Millisecond, e.expireChannels)
}

func (e *Emulator) expireChannels() {
	now := time.Now()
	e.removeChannels(func(c *channel) bool { return now.After(c.expires) }, "channel expired")
}

func (e *Emulator) closeExpiredTokenChannels() {
	now := time.Now()
	e.removeChannels(func(c *channel) bool {
		t := e.tokens[c.token]
		return t == nil || now.After(t.expires)
	}, "token expired")
}

// removeChannels removes the channels gone (called with e.mu held) and
// closes their sockets with reason, after unlocking.
func (e *Emulator) removeChannels(gone func(*channel) bool, reason string) {
	e.mu.Lock()
	var conns []*wsConn
	for _, c := range e.channels {
		if gone(c) {
			if c.conn != nil {
				conns = append(conns, c.conn)
			}
			e.removeChannelLocked(c)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseNormalClosure, reason)
	}
}

// ---- websocket ----

type wsConn struct {
	e  *Emulator
	ch *channel
	// ws is set, and then up closed, once the upgrade is answered (nil if
	// it failed). The socket is the channel's from just before: a client
	// that has read the 101 gets every event published after it.
	ws     *websocket.Conn
	up     chan struct{}
	send   chan outFrame
	done   chan struct{}
	once   sync.Once
	held   *outFrame // Reorder fault: the frame waiting for the next one
	heldMu sync.Mutex
}

// outFrame is one queued text frame. writing, if set, is called by the
// socket's writer just before the frame is written (see PublishTraced).
type outFrame struct {
	b       []byte
	writing func()
}

// socket returns the upgraded socket, or nil while (or if) there is none.
func (c *wsConn) socket() *websocket.Conn {
	select {
	case <-c.up:
		return c.ws
	default:
		return nil // handleSocket closes it once upgraded, seeing done
	}
}

func (c *wsConn) kill() {
	c.once.Do(func() {
		close(c.done)
		if ws := c.socket(); ws != nil {
			_ = ws.Close()
		}
		e := c.e
		e.mu.Lock()
		delete(e.conns, c)
		if c.ch.conn == c {
			c.ch.conn = nil
		}
		e.mu.Unlock()
	})
}

func (c *wsConn) closeWith(code int, reason string) {
	if ws := c.socket(); ws != nil {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	c.kill()
}

// enqueue queues a frame; a full queue drops the socket.
func (c *wsConn) enqueue(b []byte) { c.enqueueFrame(outFrame{b: b}) }

func (c *wsConn) enqueueFrame(f outFrame) {
	select {
	case <-c.done:
	case c.send <- f:
	default:
		c.kill()
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 16384, CheckOrigin: func(*http.Request) bool { return true }}

func (e *Emulator) handleSocket(w http.ResponseWriter, r *http.Request) {
	e.expireChannels()
	id := r.PathValue("id")
	e.mu.Lock()
	ch := e.channels[id]
	closed := e.closed
	e.mu.Unlock()
	if ch == nil || closed {
		if e.cfg.GoneAsResult && !closed {
			ws, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"result":"404","message":"The requested channel could not be found."}`))
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = ws.Close()
			return
		}
		if st := e.cfg.GoneStatus; st != 0 && st != http.StatusNotFound {
			writeError(w, st, "channel.unauthorized", "The channel is not valid for this request.", nil)
			return
		}
		writeError(w, http.StatusNotFound, "not.found", "The requested channel could not be found.", nil)
		return
	}
	// The socket takes the channel before the upgrade is answered: once
	// the client has read the 101, events reach it (reference genesys.md
	// §9 WebSocket 5, "only to sockets whose channel holds the topic"), and
	// a client that drops its previous socket then misses nothing.
	// Frames queued meanwhile wait for the writer.
	e.mu.Lock()
	refused := e.socketRefusedLocked(ch)
	e.mu.Unlock()
	if refused != 0 {
		writeError(w, refused, "injected.fault", "The socket was refused.", nil)
		return
	}
	c := &wsConn{e: e, ch: ch, up: make(chan struct{}), send: make(chan outFrame, e.cfg.SendQueue), done: make(chan struct{})}
	e.mu.Lock()
	if ch.gone || e.closed {
		e.mu.Unlock()
		writeError(w, http.StatusNotFound, "not.found", "The requested channel could not be found.", nil)
		return
	}
	prev := ch.conn
	ch.conn = c
	ch.lastUsed = time.Now()
	e.conns[c] = struct{}{}
	close(e.connected)
	e.connected = make(chan struct{})
	e.mu.Unlock()
	if prev != nil {
		prev.closeWith(websocket.CloseNormalClosure, "another socket connected")
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	c.ws = ws
	close(c.up)
	if err != nil {
		c.kill()
		return
	}
	e.mu.Lock()
	select {
	case <-c.done: // killed before it was upgraded
		e.mu.Unlock()
		_ = ws.Close()
		return
	default:
	}
	if e.closed {
		e.mu.Unlock()
		c.kill()
		return
	}
	e.wg.Add(2)
	e.mu.Unlock()
	go c.writeLoop()
	go c.readLoop()
}

func (c *wsConn) writeLoop() {
	e := c.e
	defer e.wg.Done()
	defer c.kill()
	var tick <-chan time.Time
	if e.cfg.HeartbeatInterval > 0 {
		t := time.NewTicker(e.cfg.HeartbeatInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case f := <-c.send:
			if e.silent() {
				continue
			}
			if f.writing != nil {
				f.writing()
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, f.b); err != nil {
				return
			}
		case <-tick:
			e.mu.Lock()
			off := e.heartbeatsOff || e.blackhole
			e.mu.Unlock()
			if off {
				continue
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, heartbeatFrame); err != nil {
				return
			}
		}
	}
}

func (e *Emulator) silent() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.blackhole
}

var (
	heartbeatFrame = []byte(`{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}`)
	pongFrame      = []byte(`{"topicName":"channel.metadata","eventBody":{"message":"pong"}}`)
)

type clientMessage struct {
	Message       string   `json:"message"`
	Topics        []string `json:"topics"`
	CorrelationID string   `json:"correlationId"`
}

func (c *wsConn) readLoop() {
	e := c.e
	defer e.wg.Done()
	defer c.kill()
	c.ws.SetReadLimit(1 << 20)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m clientMessage
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch m.Message {
		case "ping":
			c.enqueue(pongFrame)
		case "subscribe":
			e.mu.Lock()
			ok := len(c.ch.topics)+len(m.Topics) <= e.cfg.MaxTopics
			if ok {
				for _, t := range m.Topics {
					for _, x := range expandTopic(t) {
						c.ch.topics[x] = true
					}
				}
				e.notifySubscribedLocked()
			}
			e.mu.Unlock()
			reply := map[string]string{"result": "200", "status": "subscribed", "correlationId": m.CorrelationID}
			if !ok {
				reply = map[string]string{"result": "400", "status": "error", "message": "too many subscriptions", "correlationId": m.CorrelationID}
			}
			rb, _ := json.Marshal(reply)
			c.enqueue(rb)
		}
	}
}

type systemMessage struct {
	ChannelID       string            `json:"channelId,omitempty"`
	SystemTopicType string            `json:"systemTopicType,omitempty"`
	CorrelationID   string            `json:"correlationId,omitempty"`
	OrganizationID  string            `json:"organizationId,omitempty"`
	UserID          string            `json:"userId,omitempty"`
	OauthClientID   string            `json:"oauthClientId,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Message         string            `json:"message,omitempty"`
	Data            map[string]string `json:"data,omitempty"`
}

func (e *Emulator) sendSystem(c *wsConn, topic string, m systemMessage) {
	m.CorrelationID = newID()
	m.OrganizationID = e.cfg.OrgID
	m.OauthClientID = e.cfg.ClientID
	body, _ := json.Marshal(m)
	c.enqueue(envelope(topic, body))
}

func envelope(topic string, body []byte) []byte {
	b := make([]byte, 0, len(body)+160)
	b = append(b, `{"topicName":`...)
	b = strconv.AppendQuote(b, topic)
	b = append(b, `,"version":"2","eventBody":`...)
	b = append(b, body...)
	b = append(b, `,"metadata":{"CorrelationId":"`...)
	b = append(b, newID()...)
	b = append(b, `"}}`...)
	return b
}

// SocketClosing sends v2.system.socket_closing on every connected socket
// and closes those sockets after SocketClosingGrace.
func (e *Emulator) SocketClosing() {
	e.mu.Lock()
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
	}
	grace := e.cfg.SocketClosingGrace
	e.mu.Unlock()
	for _, c := range conns {
		e.sendSystem(c, "v2.system.socket_closing", systemMessage{ChannelID: c.ch.id, Message: "WebSocket is closing for maintenance"})
		c := c
		e.afterFunc(grace, func() { c.closeWith(websocket.CloseGoingAway, "socket closing") })
	}
}

// DropConnections closes every socket abruptly (no close frame), as a
// network failure would. Channels survive.
func (e *Emulator) DropConnections() int {
	e.mu.Lock()
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	return len(conns)
}

// CloseSockets closes every socket with a close frame of code (1000,
// 1001, ...) and reason: the other way a socket ends besides a drop with
// no frame (reference genesys.md §9 WebSocket 6, "a close frame
// (1000/1001) or a TCP drop with no frame"). Channels survive.
func (e *Emulator) CloseSockets(code int, reason string) int {
	e.mu.Lock()
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.closeWith(code, reason)
	}
	return len(conns)
}

// NoLongerSubscribed sends v2.system.no_longer_subscribed on every
// connected socket and removes the channels' topics.
func (e *Emulator) NoLongerSubscribed() {
	e.mu.Lock()
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
		c.ch.topics = map[string]bool{}
	}
	e.notifySubscribedLocked()
	e.mu.Unlock()
	for _, c := range conns {
		e.sendSystem(c, "v2.system.no_longer_subscribed."+c.ch.id, systemMessage{ChannelID: c.ch.id, SystemTopicType: "no_longer_subscribed", Reason: "user_tokens_revoked", Message: "no longer subscribed"})
	}
}

// SendJunk sends a frame that is not JSON to every connected socket.
func (e *Emulator) SendJunk() {
	e.mu.Lock()
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.enqueue([]byte("\x00not json{"))
	}
}

// Publish delivers body on topic to every connected socket whose channel
// holds the topic. Nothing is kept for disconnected channels. It returns
// the number of sockets it went to.
func (e *Emulator) Publish(topic string, body []byte) int { return e.PublishTraced(topic, body, nil) }

// PublishTraced is Publish; writing (if not nil) is called by a socket's
// writer just before each write of the frame, after any queueing in the
// emulator: a load tool's start time for the frame. So it is called once
// per socket, twice under the Duplicate fault, never for a frame dropped
// (Blackhole, a full queue), and after any hold of the Delay and Reorder
// faults.
func (e *Emulator) PublishTraced(topic string, body []byte, writing func()) int {
	e.mu.Lock()
	var conns []*wsConn
	for _, c := range e.channels {
		if c.conn != nil && c.topics[topic] {
			conns = append(conns, c.conn)
		}
	}
	ff := e.frame
	e.mu.Unlock()
	for _, c := range conns {
		frame := &outFrame{b: envelope(topic, body), writing: writing}
		deliver := func() {
			if ff.Junk {
				c.enqueue([]byte(`{"topicName":`))
			}
			if ff.Reorder {
				c.heldMu.Lock()
				prev := c.held
				c.held = frame
				c.heldMu.Unlock()
				if prev == nil {
					// Send it anyway after a short while if nothing follows.
					e.afterFunc(50*time.Millisecond, func() {
						c.heldMu.Lock()
						h := c.held
						c.held = nil
						c.heldMu.Unlock()
						if h != nil {
							c.enqueueFrame(*h)
						}
					})
					return
				}
				c.heldMu.Lock()
				cur := c.held
				c.held = nil
				c.heldMu.Unlock()
				if cur != nil {
					c.enqueueFrame(*cur)
				}
				c.enqueueFrame(*prev)
				return
			}
			c.enqueueFrame(*frame)
			if ff.Duplicate {
				c.enqueueFrame(*frame)
			}
		}
		if ff.Delay > 0 {
			e.afterFunc(ff.Delay, deliver)
		} else {
			deliver()
		}
	}
	return len(conns)
}

// TokenRevoked revokes every token and sends v2.system.token_revoked on
// every connected socket (sockets stay open; channels remain).
func (e *Emulator) TokenRevoked() {
	e.mu.Lock()
	e.tokens = map[string]*token{}
	var conns []*wsConn
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	for _, c := range conns {
		e.sendSystem(c, "v2.system.token_revoked."+c.ch.id, systemMessage{ChannelID: c.ch.id, SystemTopicType: "token_revoked", Reason: "user_tokens_revoked", Message: "token revoked"})
	}
}
