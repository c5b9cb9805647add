//! The signaling server (`mp signal`) and the client side of its WebSocket protocol.
//!
//! - [`wire`]: the JSON control messages both ends share.
//! - [`server`]: rooms of two that relay opaque binary messages.
//! - [`client`]: joining a room and exchanging binary messages with the peer.
//! - [`stun`]: the server's STUN service, on UDP at the port of its WebSocket listener.
//! - [`web`]: the web peer served at `/`, and links that open it with a code.
//! - [`metrics`]: the aggregate counters `/metrics` shows.
//! - [`turn`]: short-lived credentials for a TURN server that shares a secret with the server.
//! - [`backplane`]: rooms in Redis, shared by several instances (`mp signal --redis`); `store`
//!   puts it and the in-memory rooms behind one interface.

pub mod backplane;
pub mod client;
pub mod metrics;
pub mod server;
mod store;
pub mod stun;
pub mod tls;
pub mod turn;
pub mod web;
pub mod wire;
