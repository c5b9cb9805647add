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
pub mod receive;
pub mod send;
pub mod source;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Failure;
use crate::peer::{Link, LinkEvent, Peer};
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
    pub fn peer_options(&self) -> crate::peer::PeerOptions {
        crate::peer::PeerOptions {
            bind: self.bind.clone(),
            sctp_mtu: self.sctp_mtu,
        }
    }
}

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

/// Makes a peer and its SDP (an offer, or the answer to `offer`), returning both.
pub(crate) fn make_sdp(
    net: &NetOptions,
    offer: Option<String>,
) -> Pin<Box<dyn Future<Output = Made> + Send>> {
    let options = net.peer_options();
    Box::pin(async move {
        let mut peer = Peer::new(&options).await?;
        let sdp = match offer {
            None => peer.offer().await,
            Some(offer) => peer.answer(offer).await,
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

/// Waits for the peer's data channel to open, handing the peer back with the link.
pub(crate) fn open_link(mut peer: Peer) -> Pin<Box<dyn Future<Output = Opened> + Send>> {
    Box::pin(async move {
        let link = peer.open().await;
        (peer, link)
    })
}
