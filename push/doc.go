// Package push is screenpop's agent-facing websocket server: agents' browsers
// (the Dynamics web resource, the demo page) connect to GET /v1/ws, present
// a token in a hello frame, and receive their own pops, live and replayed
// after a reconnect. It also serves the browser assets (push/web, embedded)
// at /web/.
//
// What it does: checks the Origin before the upgrade; authenticates the
// hello (mode genesys through a bridge.AgentAuthenticator, mode jwt with
// HS256), caches the answer by a hash of the token and revalidates it
// periodically; follows every pop with one PopStore.FollowPops subscription
// per instance and fans each pop out in process to the sockets of its agent;
// replays the pops an agent missed (the replay and fresh windows of the
// protocol in DESIGN.md); records acks for metrics.
//
// What it does not do: it decides nothing about pops (the resolver in
// package bridge does), never redelivers an unacked pop on the same
// connection, and never talks to Genesys itself (the genesys authenticator
// lives in package notifications).
//
// Concurrency and memory: an idle connection holds one goroutine, its
// reader, blocked in Read; the HTTP handler returns right after the
// upgrade. Outbound frames go through a bounded per-connection queue; a
// writer goroutine exists only while frames are queued, and write buffers
// come from a pool. Pings, heartbeat frames and token revalidation are
// driven by one shared ticker for all connections. A connection whose queue
// overflows is closed with 4008 and never slows the fan-out. All exported
// methods are safe for concurrent use.
package push
