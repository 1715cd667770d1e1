package bus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connected      prometheus.Gauge
	reconnects     prometheus.Counter
	published      prometheus.Counter
	duplicates     prometheus.Counter
	publishErrors  prometheus.Counter
	publishSeconds prometheus.Histogram
	handleErrors   prometheus.Counter
	givenUp        prometheus.Counter
	consumerLost   prometheus.Counter
	storeFailed    prometheus.Gauge
	storeRestarts  prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		connected:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "screenpop_bus_connected", Help: "1 while the NATS connection is up."}),
		reconnects:    prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_reconnects_total", Help: "NATS reconnections."}),
		published:     prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_published_total", Help: "Messages stored in the stream (duplicates included)."}),
		duplicates:    prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_duplicates_total", Help: "Publishes JetStream dropped as duplicates of a Nats-Msg-Id."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_publish_errors_total", Help: "Publishes that got no acknowledgement."}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "screenpop_bus_publish_seconds", Help: "Time from publish to JetStream acknowledgement.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1}}),
		handleErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_event_handler_errors_total", Help: "Consumed events whose handler failed (redelivered)."}),
		givenUp:       prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_events_given_up_total", Help: "Events whose handler failed on their last delivery (MaxDeliver): pops that may be lost."}),
		consumerLost:  prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_consumer_recreated_total", Help: "Times the resolver's durable consumer was lost (deleted, not found) and created again, from the newest event this instance was given."}),
		storeFailed:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "screenpop_bus_store_write_failed", Help: "1 while the built-in NATS store cannot write (disk under SCREENPOP_DATA_DIR full or read-only) or its disk does not answer (a write waited 10 s: a stalled volume): nothing is stored, no call pops."}),
		storeRestarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "screenpop_bus_store_restarts_total", Help: "Times the built-in NATS server was started again once its store could write again after a write failure."}),
	}
	if r != nil {
		r.MustRegister(m.connected, m.reconnects, m.published, m.duplicates, m.publishErrors, m.publishSeconds, m.handleErrors, m.givenUp, m.consumerLost, m.storeFailed, m.storeRestarts)
	}
	return m
}
