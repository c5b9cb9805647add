//! The two commands that move files: thin pumps around the protocol engines.
//!
//! - [`send`]: `mp send`, the pump around [`crate::protocol::sender::Sender`]; [`source`]: what
//!   it offers (files, folders, stdin) and how it reads them.
//! - [`receive`]: `mp receive`, the pump around [`crate::protocol::receiver::Receiver`];
//!   [`layout`]: where received entries go (staging, resume, placing).
//!
//! A pump owns the I/O: a [`connection::Connection`] (the rendezvous that carries sealed
//! envelopes, and the WebRTC peer whose link carries frames; the same for both commands), the
//! files and the terminal. It feeds the
//! engine what happened, with the time, and carries out what the engine asks, until the engine
//! says it is done. It decides nothing about the protocol.

mod connection;
pub mod layout;
pub mod partial;
pub mod receive;
pub mod send;
pub mod source;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Failure, Kind};
use crate::rendezvous::{IceServer, Rendezvous};

/// Set once a pump handles Ctrl-C itself (to tell the peer and keep partial data); `main`
/// then leaves the interruption to the command, whose remaining steps are short and bounded.
/// It is never unset: the moment the pump has handled a Ctrl-C and returned is exactly when
/// `main` must not cut the command short.
static HANDLES_INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Whether a pump has taken over Ctrl-C.
pub fn handles_interrupt() -> bool {
    HANDLES_INTERRUPT.load(Ordering::SeqCst)
}

/// Called by the pumps before they start watching for Ctrl-C themselves.
pub fn take_over_interrupt() {
    HANDLES_INTERRUPT.store(true, Ordering::SeqCst);
}

/// A Ctrl-C that `main` saw once a pump had taken over: the pump may have registered its own
/// listener just after the signal came, so `main` hands it on rather than dropping it.
static FORWARDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Called by `main` for a Ctrl-C it leaves to the pump.
pub fn forward_interrupt() {
    FORWARDED.notify_one();
}

/// Ctrl-C, as the pump hears it. The listener is registered before `main` is told to leave
/// Ctrl-C to the pump, so none is lost in between.
pub(crate) struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(crate) fn listen() -> Interrupts {
        #[cfg(unix)]
        let interrupts = Interrupts {
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .expect("a SIGINT listener (the runtime has signals enabled)"),
        };
        #[cfg(not(unix))]
        let interrupts = Interrupts {};
        take_over_interrupt();
        interrupts
    }

    /// The next Ctrl-C, heard directly or handed on by `main`. Cancel-safe.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.signal.recv() => {}
            _ = FORWARDED.notified() => {}
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = FORWARDED.notified() => {}
        }
    }
}

/// What both commands are told about the network.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// The signaling server's URL.
    pub signal: String,
    /// How long to wait for the other side to arrive.
    pub wait: Duration,
    /// Local addresses ICE may use (empty: every non-loopback interface).
    pub bind: Vec<IpAddr>,
    /// SCTP packet budget override (tuning).
    pub sctp_mtu: Option<u32>,
    /// STUN and TURN servers given on the command line (they replace the rendezvous's).
    pub ice_servers: Vec<IceServer>,
    /// Connect only through a TURN relay.
    pub relay: bool,
}

impl NetOptions {
    /// What the peer connection is told: the servers given on the command line, else those
    /// the rendezvous recommends.
    pub fn peer_options(&self, recommended: Vec<IceServer>) -> crate::peer::PeerOptions {
        let ice_servers = if self.ice_servers.is_empty() {
            recommended
        } else {
            self.ice_servers.clone()
        };
        crate::peer::PeerOptions {
            bind: self.bind.clone(),
            sctp_mtu: self.sctp_mtu,
            ice_servers,
            relay: self.relay,
        }
    }
}

/// Refuses `--relay` without any TURN server (from the flags or the rendezvous) before anyone
/// is kept waiting. webrtc-rs uses `turn:` URLs over UDP only.
pub(crate) fn check_relay(net: &NetOptions, rendezvous: &dyn Rendezvous) -> Result<(), Failure> {
    let options = net.peer_options(rendezvous.ice_servers());
    if options.relay && !has_usable_turn(&options.ice_servers) {
        return Err(Failure::new(
            Kind::Usage,
            "--relay needs a TURN server: give one with --turn, --turn-user and --turn-password, \
             or use a signaling server that hands one out (mp signal --turn)",
        ));
    }
    Ok(())
}

pub(crate) fn has_usable_turn(servers: &[IceServer]) -> bool {
    servers.iter().any(|s| {
        s.urls
            .iter()
            .any(|u| u.starts_with("turn:") && !u.contains("transport=tcp"))
    })
}

/// A piece of work a pump waits on, once started (making an SDP, opening the link, hashing).
pub(crate) type Work<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// Waits for `work` if it was started; never resolves otherwise. Clears it when it resolves.
pub(crate) async fn finished<T>(work: &mut Work<T>) -> T {
    match work.as_mut() {
        Some(future) => {
            let output = future.await;
            *work = None;
            output
        }
        None => std::future::pending().await,
    }
}
