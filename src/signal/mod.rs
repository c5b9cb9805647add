//! The signaling server (`mp signal`) and the client side of its WebSocket protocol.
//!
//! - [`wire`]: the JSON control messages both ends share.
//! - [`server`]: rooms of two that relay opaque binary messages.
//! - [`client`]: joining a room and exchanging binary messages with the peer.

pub mod client;
pub mod server;
pub mod wire;
