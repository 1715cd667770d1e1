package push

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections prometheus.Gauge
	agents      prometheus.Gauge
	connects    *prometheus.CounterVec // result
	closes      *prometheus.CounterVec // code
	badFrames   prometheus.Counter
	popsSent    prometheus.Counter
	popsAcked   prometheus.Counter
	popsReplay  prometheus.Counter
	popsNoAgent prometheus.Counter
	popsInvalid prometheus.Counter
	delivery    prometheus.Histogram
	authChecks  *prometheus.CounterVec // result
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "screenpop_push_connections",
			Help: "Open agent websockets, including those still waiting for their hello."}),
		agents: prometheus.NewGauge(prometheus.GaugeOpts{Name: "screenpop_push_agents",
			Help: "Distinct agents with at least one authenticated websocket."}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "screenpop_push_connects_total",
			Help: "Websocket connection attempts by result (ok, origin, upgrade, malformed, auth, hello_timeout, unavailable, limit, busy)."}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "screenpop_push_closes_total",
			Help: "Websockets closed by the server, by close code."}, []string{"code"}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_bad_frames_total",
			Help: "Malformed, unexpected or oversized frames received from browsers."}),
		popsSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_pops_sent_total",
			Help: "Pop frames written to agent websockets (one per connection)."}),
		popsAcked: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_pops_acked_total",
			Help: "Pop frames acknowledged by the browser (one per connection)."}),
		popsReplay: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_pops_replayed_total",
			Help: "Pops queued from the stream for a (re)connecting agent."}),
		popsNoAgent: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_pops_unrouted_total",
			Help: "Live pops for an agent with no connection on this instance (kept in the stream for replay)."}),
		popsInvalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_push_pops_invalid_total",
			Help: "Stored pops that could not be turned into a frame (wrong type, malformed, agent mismatch)."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "screenpop_push_delivery_seconds",
			Help:    "From the bridge receiving the Genesys frame (eventReceivedAt) to the browser's ack.",
			Buckets: []float64{.025, .05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 10, 30}}),
		authChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "screenpop_push_auth_checks_total",
			Help: "Token checks against the authenticator (cache misses and revalidations), by result (ok, invalid, error)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.agents, m.connects, m.closes, m.badFrames, m.popsSent, m.popsAcked,
			m.popsReplay, m.popsNoAgent, m.popsInvalid, m.delivery, m.authChecks)
	}
	return m
}
