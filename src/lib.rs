//! Meeting Point (`mp`): send files directly between two machines over WebRTC, through a
//! signaling server that can neither read nor redirect the transfer.
//!
//! The crate is a binary first; the library exists so that integration tests (for example a
//! deliberately hostile peer) can reuse the protocol code.
//!
//! - [`protocol`]: the wire protocol as pure code over bytes (no I/O), including the sender and
//!   receiver engines.
//! - [`rendezvous`]: how two peers meet and pass sealed envelopes (the seam for new ways).
//! - [`signal`]: the signaling server and its client (today's rendezvous).
//! - [`peer`]: the WebRTC connection and data channel (the frame link); the only module that
//!   names webrtc-rs.
//! - [`transfer`]: `mp send` and `mp receive`: pumps around the engines.
//! - [`cli`], [`ui`], [`error`], [`generate`]: the command line, terminal, exit codes and
//!   generated docs.

pub mod cli;
pub mod error;
pub mod generate;
pub mod peer;
pub mod prompt;
pub mod protocol;
pub mod qr;
pub mod rendezvous;
pub mod signal;
pub mod transfer;
pub mod ui;
