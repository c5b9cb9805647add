//! What both pumps hold between this side and the other: the rendezvous that carries sealed
//! envelopes, the WebRTC peer whose link carries frames, and Ctrl-C.
//!
//! The engines decide *when* to make an SDP, open the link or send a frame; a [`Connection`]
//! only does it, and reports what happened as one [`Happened`] at a time. Each pump adds its
//! own sources beside it (the user's answer and the writer for `mp receive`; the reader and
//! the prefix hashes for `mp send`):
//!
//! ```text
//! tokio::select! {
//!     happened = connection.next() => engine input from it,
//!     report = the pump's own work => engine input from it,
//!     _ = sleep_until(the engine's deadline) => Input::Timeout,
//! }
//! ```
//!
//! Every wait in here is cancel-safe, so [`Connection::next`] can lose such a race without
//! losing an event.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use tokio::sync::mpsc;

use super::{finished, has_usable_turn, Interrupts, NetOptions, Work};
use crate::error::{Failure, Kind};
use crate::peer::{CandidateKind, Link, LinkEvent, Peer, PeerOptions, RemoteCandidates};
use crate::protocol::message::Candidate;
use crate::rendezvous::Rendezvous;
use crate::ui::Ui;

/// One thing that happened on the way to the other side.
pub(crate) enum Happened {
    /// The other side is at the rendezvous.
    Paired,
    /// A sealed envelope from the other side.
    Envelope(Vec<u8>),
    /// The rendezvous went away (after the pairing, it may do so once the link is open).
    RendezvousClosed(Failure),
    /// This side's SDP (offer or answer) is ready to be sealed and sent.
    LocalSdp(String),
    /// One more local ICE candidate (trickle).
    LocalCandidate(Candidate),
    /// The data channel is open; the largest message it takes, and the round trip ICE
    /// measured on the path (when webrtc-rs reports one).
    LinkOpen {
        max_message: usize,
        path_rtt: Option<std::time::Duration>,
    },
    /// The peer connection or its data channel could not be made.
    LinkFailed(Failure),
    /// One frame from the other side.
    Frame(Vec<u8>),
    /// The data channel closed; every frame that had arrived was delivered before.
    LinkClosed,
    /// Ctrl-C (once; from then on every remaining step is short).
    Interrupt,
}

/// The rendezvous, the peer and its link, and what ICE tried, for one attempt.
pub(crate) struct Connection {
    net: NetOptions,
    rendezvous: Option<Box<dyn Rendezvous>>,
    paired: bool,
    peer: Option<Peer>,
    link: Option<Link>,
    /// Local ICE candidates as they are gathered, and where the peer's go.
    candidates: Option<mpsc::UnboundedReceiver<Candidate>>,
    remote: Option<RemoteCandidates>,
    tried: Tried,
    /// The peer connection being made ahead of its SDP ([`Connection::prepare_peer`]).
    prepared: Option<tokio::task::JoinHandle<Result<Peer, Failure>>>,
    making_sdp: Work<Made>,
    /// The SDP being made answers an offer: the link opens as soon as it is made (an offerer
    /// waits for the answer, [`Connection::apply_answer`]).
    answering: bool,
    opening: Work<Opened>,
    /// Registered once, so a Ctrl-C that arrives while the pump is busy is not lost.
    interrupts: Interrupts,
    /// Set by Ctrl-C.
    stopping: bool,
}

impl Connection {
    /// Starts listening for Ctrl-C (taking it over from `main`) around `rendezvous`.
    pub(crate) fn new(net: NetOptions, rendezvous: Box<dyn Rendezvous>) -> Connection {
        Connection {
            net,
            rendezvous: Some(rendezvous),
            paired: false,
            peer: None,
            link: None,
            candidates: None,
            remote: None,
            tried: Tried::default(),
            prepared: None,
            making_sdp: None,
            answering: false,
            opening: None,
            interrupts: Interrupts::listen(),
            stopping: false,
        }
    }

    /// Whether the other side ever arrived.
    pub(crate) fn was_paired(&self) -> bool {
        self.paired
    }

    /// The next thing that happened. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Happened {
        tokio::select! {
            met = next_met(&mut self.rendezvous, self.paired) => match met {
                Met::Paired => {
                    self.paired = true;
                    Happened::Paired
                }
                Met::Envelope(envelope) => Happened::Envelope(envelope),
                Met::Closed(why) => {
                    self.rendezvous = None;
                    Happened::RendezvousClosed(why)
                }
            },
            made = finished(&mut self.making_sdp) => match made {
                Ok((peer, sdp)) => {
                    self.tried.sdp(&sdp, true);
                    if self.answering {
                        self.opening = Some(open_link(peer));
                    } else {
                        self.peer = Some(peer);
                    }
                    Happened::LocalSdp(sdp)
                }
                Err(why) => Happened::LinkFailed(why),
            },
            (peer, link) = finished(&mut self.opening) => {
                self.peer = Some(peer);
                match link {
                    Ok(link) => {
                        let max_message = link.max_message();
                        let path_rtt = link.path_rtt();
                        self.link = Some(link);
                        Happened::LinkOpen {
                            max_message,
                            path_rtt,
                        }
                    }
                    Err(why) => Happened::LinkFailed(why),
                }
            },
            candidate = next_candidate(&mut self.candidates) => {
                self.tried.candidate(&candidate.candidate, true);
                Happened::LocalCandidate(candidate)
            },
            event = next_frame(&mut self.link) => match event {
                LinkEvent::Message(frame) => Happened::Frame(frame),
                LinkEvent::Closed => {
                    self.link = None;
                    Happened::LinkClosed
                }
            },
            _ = self.interrupts.next(), if !self.stopping => {
                self.stopping = true;
                Happened::Interrupt
            }
        }
    }

    /// Sends a sealed envelope to the other side; the failure if the rendezvous went away
    /// (it is then dropped, and nothing more comes from it).
    pub(crate) async fn send_envelope(&mut self, envelope: Vec<u8>) -> Result<(), Failure> {
        let Some(rendezvous) = self.rendezvous.as_mut() else {
            return Ok(());
        };
        rendezvous.send(envelope).await.inspect_err(|_| {
            self.rendezvous = None;
        })
    }

    /// Leaves the rendezvous (once the link no longer needs it), after any envelope queued.
    pub(crate) async fn close_rendezvous(&mut self) {
        if let Some(mut rendezvous) = self.rendezvous.take() {
            rendezvous.close().await;
        }
    }

    /// Starts making the peer connection (its DTLS certificate, its sockets) in the
    /// background while the other side decides, so that [`Connection::start_peer`] then only
    /// makes the SDP. Called once files are offered (the sender) or asked about (the
    /// receiver); nothing is gathered or sent before the SDP is made.
    pub(crate) fn prepare_peer(&mut self) {
        if self.prepared.is_some() || self.peer.is_some() || self.making_sdp.is_some() {
            return;
        }
        let options = peer_options(&self.net, &self.rendezvous, &mut self.tried);
        self.prepared = Some(tokio::spawn(async move { Peer::new(&options).await }));
    }

    /// Makes the peer connection (or takes the one prepared) and starts making its SDP: the
    /// offer, or the answer to `offer`. [`Happened::LocalSdp`] follows, or
    /// [`Happened::LinkFailed`].
    pub(crate) async fn start_peer(
        &mut self,
        offer: Option<String>,
        trickle: bool,
    ) -> Result<(), Failure> {
        if let Some(offer) = &offer {
            self.tried.sdp(offer, false);
        }
        let mut peer = match self.prepared.take() {
            Some(prepared) => prepared.await.map_err(|e| {
                Failure::new(
                    Kind::Internal,
                    format!("making the connection stopped: {e}"),
                )
            })??,
            None => {
                let options = peer_options(&self.net, &self.rendezvous, &mut self.tried);
                Peer::new(&options).await?
            }
        };
        self.candidates = peer.take_candidates();
        self.remote = Some(peer.remote_candidates());
        self.answering = offer.is_some();
        self.making_sdp = Some(make_sdp(peer, offer, trickle));
        Ok(())
    }

    /// The offerer's next step: the other side's answer; the link then opens
    /// ([`Happened::LinkOpen`] or [`Happened::LinkFailed`]).
    pub(crate) async fn apply_answer(&mut self, answer: String) -> Result<(), Failure> {
        self.tried.sdp(&answer, false);
        let Some(mut peer) = self.peer.take() else {
            return Err(Failure::new(
                Kind::Internal,
                "an answer came before the offer was made",
            ));
        };
        match peer.apply_answer(answer).await {
            Ok(()) => {
                self.opening = Some(open_link(peer));
                Ok(())
            }
            Err(why) => {
                self.peer = Some(peer);
                Err(why)
            }
        }
    }

    /// One of the other side's ICE candidates (trickle).
    pub(crate) async fn add_remote_candidate(&mut self, candidate: Candidate) {
        self.tried.candidate(&candidate.candidate, false);
        if let Some(remote) = &self.remote {
            // One the connection cannot use does no harm: others may work.
            let _ = remote.add(candidate).await;
        }
    }

    /// Sends one frame; returns true when Ctrl-C came meanwhile (the pump tells the engine).
    ///
    /// A full send buffer must not make the pump deaf: Ctrl-C and a bound end the wait. A
    /// frame that cannot leave means the link is going away: what the peer said last (a
    /// FAIL, a DONE) is still delivered before [`Happened::LinkClosed`], and decides.
    pub(crate) async fn send_frame(&mut self, frame: Vec<u8>) -> bool {
        let Some(link) = &mut self.link else {
            return false;
        };
        let bound = if self.stopping {
            STOP_SEND
        } else {
            STALLED_SEND
        };
        let mut interrupted = false;
        let sent = tokio::select! {
            sent = link.send(frame) => sent.is_ok(),
            _ = self.interrupts.next(), if !self.stopping => {
                self.stopping = true;
                interrupted = true;
                false
            }
            _ = tokio::time::sleep(bound) => false,
        };
        if !sent {
            link.going_away();
        }
        interrupted
    }

    /// Tells the user which path the connection took (a `connected` event, and one line).
    pub(crate) async fn show_path(&self, ui: &Ui) {
        show_path(self.peer.as_ref(), ui).await;
    }

    /// Closes everything, in order: a last FAIL leaves before the connection closes, a last
    /// `abort` before the rendezvous does. A connection failure says what ICE tried.
    pub(crate) async fn close<T>(&mut self, result: Result<T, Failure>) -> Result<T, Failure> {
        if let Some(link) = &self.link {
            if result.is_err() {
                link.flush().await;
            }
        }
        if let Some(peer) = &self.peer {
            peer.close().await;
        }
        // One prepared but never used (a declined offer, say): its making is short.
        if let Some(prepared) = self.prepared.take() {
            if let Ok(Ok(peer)) = prepared.await {
                peer.close().await;
            }
        }
        self.close_rendezvous().await;
        result.map_err(|failure| self.tried.explain(failure))
    }
}

/// What the peer connection is made with: the STUN and TURN servers of the command line or of
/// the rendezvous. Notes in `tried` what ICE will have to work with.
fn peer_options(
    net: &NetOptions,
    rendezvous: &Option<Box<dyn Rendezvous>>,
    tried: &mut Tried,
) -> PeerOptions {
    let recommended = rendezvous
        .as_ref()
        .map(|r| r.ice_servers())
        .unwrap_or_default();
    let options = net.peer_options(recommended);
    let has_turn = has_usable_turn(&options.ice_servers);
    tried.turn = has_turn;
    tried.relay_only = options.relay;
    tried.loopback_only = !options.bind.is_empty() && options.bind.iter().all(IpAddr::is_loopback);
    options
}

/// What ICE had to work with, to explain a connection that could not be made.
#[derive(Default)]
struct Tried {
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
const STALLED_SEND: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a last frame (a FAIL after Ctrl-C) may wait for room.
const STOP_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// A peer and the SDP it made, or why it could not.
type Made = Result<(Peer, String), Failure>;
/// The peer handed back with its open link, or why the link did not open.
type Opened = (Peer, Result<Link, Failure>);

/// What the rendezvous did: the peer arrived, or an envelope came, or it went away.
enum Met {
    Paired,
    Envelope(Vec<u8>),
    Closed(Failure),
}

/// The rendezvous's next event: pairing first, then envelopes. Never resolves without one.
async fn next_met(rendezvous: &mut Option<Box<dyn Rendezvous>>, paired: bool) -> Met {
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
async fn next_frame(link: &mut Option<Link>) -> LinkEvent {
    match link.as_mut() {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// Makes the peer's SDP (an offer, or the answer to `offer`), returning both.
fn make_sdp(
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
async fn show_path(peer: Option<&Peer>, ui: &crate::ui::Ui) {
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
fn open_link(mut peer: Peer) -> Pin<Box<dyn Future<Output = Opened> + Send>> {
    Box::pin(async move {
        let link = peer.open().await;
        (peer, link)
    })
}
