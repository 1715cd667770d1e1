package dataverse

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/bridge"
)

type metrics struct {
	requests  *prometheus.CounterVec   // op, code
	duration  *prometheus.HistogramVec // op
	lookups   *prometheus.CounterVec   // kind, result
	retries   *prometheus.CounterVec   // reason
	throttled prometheus.Counter
	breaker   prometheus.Gauge
	// cache-hit counters resolved once: the hit path is hot
	phoneHit, phoneNeg, emailHit, emailNeg prometheus.Counter
}

func (m *metrics) hit(kind bridge.KeyKind, negative bool) prometheus.Counter {
	switch {
	case kind == bridge.KeyPhone && !negative:
		return m.phoneHit
	case kind == bridge.KeyPhone:
		return m.phoneNeg
	case !negative:
		return m.emailHit
	}
	return m.emailNeg
}

func newMetrics(reg prometheus.Registerer, c *Client) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_dataverse_requests_total",
			Help: "HTTP requests to Dataverse and Entra ID by operation (query, batch, token, whoami; batch_part: a failed query inside a batch answered 200) and status code (or error).",
		}, []string{"op", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "screenpop_dataverse_request_duration_seconds",
			Help:    "Duration of HTTP requests to Dataverse and Entra ID, by operation.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_dataverse_lookups_total",
			Help: "Lookups by identifier kind (phone, email) and result (hit, negative_hit, match, none, error, circuit_open, busy, invalid).",
		}, []string{"kind", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "screenpop_dataverse_retries_total",
			Help: "Retried Dataverse requests by reason (throttled, server, timeout, network, token).",
		}, []string{"reason"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "screenpop_dataverse_throttled_total",
			Help: "429 answers from Dataverse (service-protection limits).",
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "screenpop_dataverse_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
		}),
	}
	m.phoneHit = m.lookups.WithLabelValues(string(bridge.KeyPhone), "hit")
	m.phoneNeg = m.lookups.WithLabelValues(string(bridge.KeyPhone), "negative_hit")
	m.emailHit = m.lookups.WithLabelValues(string(bridge.KeyEmail), "hit")
	m.emailNeg = m.lookups.WithLabelValues(string(bridge.KeyEmail), "negative_hit")
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.lookups, m.retries, m.throttled, m.breaker,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "screenpop_dataverse_cache_entries",
				Help:        "Entries in the lookup caches.",
				ConstLabels: prometheus.Labels{"cache": "positive"},
			}, func() float64 { return float64(c.pos.len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "screenpop_dataverse_cache_entries",
				Help:        "Entries in the lookup caches.",
				ConstLabels: prometheus.Labels{"cache": "negative"},
			}, func() float64 { return float64(c.neg.len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_dataverse_inflight_requests",
				Help: "Dataverse requests in flight.",
			}, func() float64 { return float64(c.sending.Load()) }),
		)
		if c.certs != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "screenpop_dataverse_client_certificate_expiry_timestamp_seconds",
				Help: "When the DATAVERSE_CLIENT_CERTIFICATE in use expires (Unix seconds).",
			}, func() float64 { return float64(c.certs.current().Cert.NotAfter.Unix()) }))
		}
	}
	return m
}

func (m *metrics) request(op, code string, d time.Duration) {
	m.requests.WithLabelValues(op, code).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
}
