package notifications

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	channels       prometheus.Gauge
	agents         prometheus.Gauge
	rejected       prometheus.Gauge
	unwatched      prometheus.Gauge
	evicted        prometheus.Counter
	events         *prometheus.CounterVec
	junk           prometheus.Counter
	reconnects     prometheus.Counter
	handovers      prometheus.Counter
	gaps           prometheus.Counter
	reconciled     prometheus.Counter
	givenUp        prometheus.Counter // conversations reconciliation gave up on
	backpressure   prometheus.Counter
	puts           prometheus.Counter
	apiRequests    *prometheus.CounterVec
	tokenRefreshes prometheus.Counter
	loginFailures  prometheus.Counter
	heartbeatAge   prometheus.GaugeFunc
	unheard        prometheus.GaugeFunc
	remembered     prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "screenpop", "notifications"
	m := &metrics{
		channels:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "channels_connected", Help: "Notification channels with a connected socket."}),
		agents:         prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "topics", Help: "Agent conversation topics assigned to channels."}),
		rejected:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "topics_rejected", Help: "Topics Genesys refused to subscribe."}),
		unwatched:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "agents_unwatched", Help: "Watched agents (agent list and queue members) no channel has room for: they get no pops."}),
		evicted:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "channels_evicted_total", Help: "Channels gone before their expiry under a live token: evicted by a newer channel of the same OAuth client past Genesys' 20."}),
		events:         prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_total", Help: "Websocket frames read, by topic kind (conversations, heartbeat, pong, system, other)."}, []string{"topic"}),
		junk:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "junk_frames_total", Help: "Websocket frames that were not notification envelopes."}),
		reconnects:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconnects_total", Help: "Sockets lost and reconnected."}),
		handovers:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "handovers_total", Help: "Channels handed over to a new channel (socket_closing, expiry, token refresh)."}),
		gaps:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gaps_total", Help: "Delivery gaps (start-up, reconnects, new channels) that triggered a reconciliation."}),
		reconciled:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconciled_conversations_total", Help: "Conversations fetched by reconciliation and handed on."}),
		givenUp:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconciliation_dropped_total", Help: "Conversations reconciliation gave up on after 5 failed fetches (an error, or a body that cannot be read): one that rang during a gap does not pop."}),
		backpressure:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "snapshot_backpressure_total", Help: "Snapshots that had to wait for room in the output channel."}),
		puts:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "subscription_puts_total", Help: "Successful full-list subscription PUTs."}),
		apiRequests:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "api_requests_total", Help: "Genesys API calls by operation and status code."}, []string{"op", "code"}),
		tokenRefreshes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "token_refreshes_total", Help: "Client-credentials tokens obtained."}),
		loginFailures:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "login_failures_total", Help: "Failed logins."}),
	}
	return m
}

// registerMetrics adds the metrics (and the heartbeat-age gauge, which reads c)
// to reg.
func (c *Client) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	m := c.m
	m.heartbeatAge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "screenpop", Subsystem: "notifications", Name: "heartbeat_age_seconds",
		Help: "Age of the last frame on the stalest connected socket."}, func() float64 {
		var worst int64
		for _, ch := range c.channels() {
			if ch.Connected && ch.HeartbeatAgeMs > worst {
				worst = ch.HeartbeatAgeMs
			}
		}
		return float64(worst) / 1000
	})
	// One channel down of several lowers channels_connected by one only,
	// and the heartbeat age is the connected sockets': this is what says
	// that some agents are not heard while the others are.
	m.unheard = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "screenpop", Subsystem: "notifications", Name: "agents_unheard",
		Help: "Watched agents on a channel with no connected socket, or not (yet) in its subscription: their calls do not pop."}, func() float64 {
		c.mu.Lock()
		shards := append([]*shard(nil), c.shards...)
		c.mu.Unlock()
		n := 0
		for _, sh := range shards {
			n += sh.unheard()
		}
		return float64(n)
	})
	m.remembered = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "screenpop", Subsystem: "notifications", Name: "conversations_remembered",
		Help: "(Conversation, agent) pairs remembered for reconciliation: each for 12 to 16 hours after its last snapshot."}, func() float64 {
		return float64(c.seen.len())
	})
	for _, col := range []prometheus.Collector{m.channels, m.agents, m.rejected, m.unwatched, m.evicted, m.events, m.junk, m.reconnects, m.handovers, m.gaps,
		m.reconciled, m.givenUp, m.backpressure, m.puts, m.apiRequests, m.tokenRefreshes, m.loginFailures, m.heartbeatAge, m.unheard, m.remembered} {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("register notifications metrics: %w", err)
		}
	}
	return nil
}
