//! Meeting Point (`mp`): send files directly between two machines over WebRTC, through a
//! signaling server that can neither read nor redirect the transfer.
//!
//! The crate is a binary first; the library exists so that integration tests (for example a
//! deliberately hostile peer) can reuse the protocol code.
//!
//! - [`protocol`]: the wire protocol as pure code over bytes (no I/O).
//! - [`signal`]: the signaling server and its client.
//! - [`peer`]: the WebRTC connection and data channel.
//! - [`transfer`]: `mp send` and `mp receive`, built from the above.
//! - [`cli`], [`ui`], [`error`], [`generate`]: the command line, terminal, exit codes and
//!   generated docs.

pub mod cli;
pub mod error;
pub mod generate;
pub mod peer;
pub mod protocol;
pub mod signal;
pub mod transfer;
pub mod ui;
