// Package bridge is screenpop's domain: the conversation snapshots that come
// from Genesys Cloud, the normalized events published on NATS, the pops sent
// to agents, and the two stateful steps between them, the normalizer
// (snapshots -> events) and the resolver (events -> pops).
//
// bridge imports no adapter. It names the small interfaces it consumes
// (Publisher, Directory, PopStore, AgentAuthenticator) and the adapters
// (bridge/bus, dataverse, notifications, push) satisfy them; cmd/screenpopd
// wires them together.
//
// The JSON shapes in this package are public, version 1: docs/events.md and
// docs/schema/ document them, and a breaking change is a new CloudEvent type,
// never an edit of these structs' tags.
//
// Concurrency: the value types are plain data. Normalizer and Resolver
// document their own contracts.
package bridge
