//! The two commands that move files: thin pumps around the protocol engines.
//!
//! - [`send`]: `mp send`, the pump around [`crate::protocol::sender::Sender`]; [`source`]: what
//!   it offers (files, folders, stdin) and how it reads them.
//! - [`receive`]: `mp receive`, the pump around [`crate::protocol::receiver::Receiver`];
//!   [`layout`]: where received entries go (staging, resume, placing).
//!
//! A pump owns the I/O: the [`crate::rendezvous::Rendezvous`] that carries sealed envelopes,
//! the [`crate::peer::Link`] that carries frames, the files and the terminal. It feeds the
//! engine what happened, with the time, and carries out what the engine asks, until the engine
//! says it is done. It decides nothing about the protocol.

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

use std::collections::BTreeSet;

use crate::error::{Failure, Kind};
use crate::peer::{CandidateKind, Link, LinkEvent, Peer};
use crate::protocol::message::Candidate;
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

    /// The next Ctrl-C. Cancel-safe.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
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

fn has_usable_turn(servers: &[IceServer]) -> bool {
    servers.iter().any(|s| {
        s.urls
            .iter()
            .any(|u| u.starts_with("turn:") && !u.contains("transport=tcp"))
    })
}

/// Makes the peer connection (not yet an SDP): with the STUN and TURN servers of the command
/// line or of the rendezvous.
pub(crate) async fn new_peer(
    net: &NetOptions,
    rendezvous: &Option<Box<dyn Rendezvous>>,
    tried: &mut Tried,
) -> Result<Peer, Failure> {
    let recommended = rendezvous
        .as_ref()
        .map(|r| r.ice_servers())
        .unwrap_or_default();
    let options = net.peer_options(recommended);
    let has_turn = has_usable_turn(&options.ice_servers);
    tried.turn = has_turn;
    tried.relay_only = options.relay;
    tried.loopback_only = !options.bind.is_empty() && options.bind.iter().all(IpAddr::is_loopback);
    Peer::new(&options).await
}

/// What ICE had to work with, to explain a connection that could not be made.
#[derive(Default)]
pub(crate) struct Tried {
    local: BTreeSet<&'static str>,
    remote: BTreeSet<&'static str>,
    remote_elsewhere: bool,
    turn: bool,
    relay_only: bool,
    loopback_only: bool,
}

impl Tried {
    /// Notes the candidates inside an SDP.
    pub(crate) fn sdp(&mut self, sdp: &str, local: bool) {
        for line in sdp.lines() {
            if let Some(candidate) = line.trim().strip_prefix("a=") {
                if candidate.starts_with("candidate:") {
                    self.candidate(candidate, local);
                }
            }
        }
    }

    /// Notes one candidate line.
    pub(crate) fn candidate(&mut self, line: &str, local: bool) {
        let kind = CandidateKind::of_line(line).name();
        if local {
            self.local.insert(kind);
        } else {
            self.remote.insert(kind);
            let address = line.split_whitespace().nth(4).unwrap_or("");
            let elsewhere = address.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback());
            self.remote_elsewhere |= elsewhere;
        }
    }

    /// A connection failure, with what was tried and what to try next.
    pub(crate) fn explain(&self, failure: Failure) -> Failure {
        if failure.kind != Kind::Connect {
            return failure;
        }
        let list = |kinds: &BTreeSet<&str>| {
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.iter().copied().collect::<Vec<_>>().join(", ")
            }
        };
        let tried = format!(
            "candidates tried: this side {}, the other side {}",
            list(&self.local),
            list(&self.remote)
        );
        let next = if self.loopback_only && self.remote_elsewhere {
            "this side offered only loopback addresses (--bind or MP_BIND), but the other side \
             is on another machine: unset MP_BIND or bind a reachable address"
                .to_string()
        } else if self.relay_only && !self.local.contains("relay") {
            "--relay got no relay address: check the TURN server's address and credentials"
                .to_string()
        } else if self.turn {
            "the TURN relay could not be used either: check that both sides can reach it, and \
             firewalls"
                .to_string()
        } else {
            "both sides may be behind NATs that need a relay: use a TURN server (mp signal \
             --turn, or --turn with --turn-user and --turn-password), or check --bind and \
             firewalls"
                .to_string()
        };
        let message = format!("{} ({tried}); {next}", failure.message);
        failure.with_message(message)
    }
}

/// How long one frame may wait for room in the send buffer before the link is given up (the
/// engines' own stall timer is as long; this only keeps the pump from waiting forever).
pub(crate) const STALLED_SEND: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a last frame (a FAIL after Ctrl-C) may wait for room.
pub(crate) const STOP_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// A piece of work a pump waits on, once started (making an SDP, opening the link, hashing).
pub(crate) type Work<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// A peer and the SDP it made, or why it could not.
pub(crate) type Made = Result<(Peer, String), Failure>;
/// The peer handed back with its open link, or why the link did not open.
pub(crate) type Opened = (Peer, Result<Link, Failure>);

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

/// What the rendezvous did: the peer arrived, or an envelope came, or it went away.
pub(crate) enum Met {
    Paired,
    Envelope(Vec<u8>),
    Closed(Failure),
}

/// The rendezvous's next event: pairing first, then envelopes. Never resolves without one.
pub(crate) async fn next_met(rendezvous: &mut Option<Box<dyn Rendezvous>>, paired: bool) -> Met {
    let Some(rendezvous) = rendezvous.as_mut() else {
        return std::future::pending().await;
    };
    if !paired {
        return match rendezvous.paired().await {
            Ok(()) => Met::Paired,
            Err(why) => Met::Closed(why),
        };
    }
    match rendezvous.recv().await {
        Ok(envelope) => Met::Envelope(envelope),
        Err(why) => Met::Closed(why),
    }
}

/// The link's next event; never resolves while there is no link.
pub(crate) async fn next_frame(link: &mut Option<Link>) -> LinkEvent {
    match link.as_mut() {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// Makes the peer's SDP (an offer, or the answer to `offer`), returning both.
pub(crate) fn make_sdp(
    mut peer: Peer,
    offer: Option<String>,
    trickle: bool,
) -> Pin<Box<dyn Future<Output = Made> + Send>> {
    Box::pin(async move {
        let sdp = match offer {
            None => peer.offer(trickle).await,
            Some(offer) => peer.answer(offer, trickle).await,
        };
        match sdp {
            Ok(sdp) => Ok((peer, sdp)),
            Err(why) => {
                // Close, so nothing lingers.
                peer.close().await;
                Err(why)
            }
        }
    })
}

/// The next local candidate; never resolves while there are none to wait for.
pub(crate) async fn next_candidate(
    candidates: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Candidate>>,
) -> Candidate {
    if let Some(rx) = candidates.as_mut() {
        if let Some(candidate) = rx.recv().await {
            return candidate;
        }
        *candidates = None;
    }
    std::future::pending().await
}

/// Tells the user which path the connection took: a `connected` event, and one line.
pub(crate) async fn show_path(peer: Option<&Peer>, ui: &crate::ui::Ui) {
    let path = match peer {
        Some(peer) => peer.path().await,
        None => None,
    };
    let Some(path) = path else {
        ui.event("connected", serde_json::json!({}));
        return;
    };
    let (local, remote) = (path.local.name(), path.remote.name());
    let relayed = path.is_relayed();
    ui.event(
        "connected",
        serde_json::json!({
            "path": if relayed { "relay" } else { "direct" },
            "local": local,
            "remote": remote,
        }),
    );
    if relayed {
        ui.status(&format!(
            "Connected through a TURN relay ({local} ↔ {remote})."
        ));
    } else {
        ui.status(&format!("Connected directly ({local} ↔ {remote})."));
    }
}

/// Waits for the peer's data channel to open, handing the peer back with the link.
pub(crate) fn open_link(mut peer: Peer) -> Pin<Box<dyn Future<Output = Opened> + Send>> {
    Box::pin(async move {
        let link = peer.open().await;
        (peer, link)
    })
}
