//! The wire protocol as pure code over bytes: no sockets, no files, no clock.
//!
//! - [`code`]: the transfer code and its word list.
//! - [`pake`]: SPAKE2 over the code, and HKDF key derivation.
//! - [`seal`]: the sealed, padded, counted envelope for signaling messages.
//! - [`message`]: what the peers say to each other inside envelopes.
//! - [`session`]: the handshake state machine (key exchange, confirmation, sealed channel).
//! - [`manifest`]: what the sender offers, and the checks that keep paths inside the target.
//! - [`frame`]: data-channel frames.
//! - [`incoming`]: the receiver's size and hash checks over the frame stream.
//!
//! docs/PROTOCOL.md describes the same protocol for someone writing another implementation.

pub mod code;
pub mod frame;
pub mod incoming;
pub mod manifest;
pub mod message;
pub mod pake;
pub mod seal;
pub mod session;
