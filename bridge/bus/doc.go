// Package bus is screenpop's NATS and JetStream adapter: the embedded
// nats-server (when no external NATS is configured), the connection, the
// SCREENPOP stream that captures screenpop.>, publishing with Nats-Msg-Id,
// the resolver's durable consumer, the pop-marker key-value bucket, and the
// reads push needs to replay and follow pops.
//
// It does not know what events or pops mean: bridge decides that and bus
// moves bytes. Conn implements bridge.Publisher and bridge.PopStore.
//
// Concurrency: Conn is safe for concurrent use. Start creates the stream and
// bucket idempotently, so several daemons may start against one cluster.
// Close drains the connection and then stops the embedded server.
package bus
