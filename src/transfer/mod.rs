//! A transfer from one side's point of view: meet, confirm, connect, move the bytes.
//!
//! - [`send`]: `mp send`; [`source`]: what it offers (files, folders, stdin).
//! - [`receive`]: `mp receive`; [`layout`]: where received entries go (staging, resume).
//! - this module: what both share, meeting through the server and talking in sealed messages.

pub mod layout;
pub mod receive;
pub mod send;
pub mod source;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{fail, Kind};
use crate::protocol::code::Code;
use crate::protocol::message::Message;
use crate::protocol::pake::Side;
use crate::protocol::session::{Handshake, SecureChannel, SessionError};
use crate::signal::client::SignalClient;

/// How long one signaling reply may take once both sides are present (a person may be reading
/// the receiver's prompt, so this is generous).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a reply may take that no person waits on (offer parts, SDPs, a text's receipt):
/// a server that drops a message is noticed in a minute, not ten.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the handshake messages may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the direct connection may still take once the peer has left the server.
const LEFT_GRACE: Duration = Duration::from_secs(5);
/// How long the direct connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Set once the transfer loop handles Ctrl-C itself (to tell the peer and keep partial data);
/// `main` then leaves the interruption to the command, whose remaining steps are short and
/// bounded. It is never unset: the moment the loop has handled a Ctrl-C and returned is
/// exactly when `main` must not cut the command short.
static HANDLES_INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Whether the transfer has taken over Ctrl-C.
pub fn handles_interrupt() -> bool {
    HANDLES_INTERRUPT.load(Ordering::SeqCst)
}

/// Called by the transfer loops before they start watching for Ctrl-C themselves.
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
}

impl NetOptions {
    pub fn peer_options(&self) -> crate::peer::PeerOptions {
        crate::peer::PeerOptions {
            bind: self.bind.clone(),
            sctp_mtu: self.sctp_mtu,
        }
    }
}

/// The confirmed, sealed signaling conversation with the peer.
pub struct Signaling {
    client: SignalClient,
    channel: SecureChannel,
}

impl Signaling {
    /// Runs the key exchange and confirmation with the peer that just paired with us.
    pub async fn handshake(
        mut client: SignalClient,
        code: &Code,
        side: Side,
    ) -> anyhow::Result<Signaling> {
        let (handshake, pake) = Handshake::start(code, side);
        client.send(pake).await?;
        let theirs = client.recv(HANDSHAKE_TIMEOUT).await?;
        let (handshake, hello) = handshake.on_pake(&theirs).map_err(session_failure)?;
        client.send(hello).await?;
        let theirs = client.recv(HANDSHAKE_TIMEOUT).await?;
        let channel = handshake.on_hello(&theirs).map_err(session_failure)?;
        Ok(Signaling { client, channel })
    }

    pub async fn send(&mut self, message: &Message) -> anyhow::Result<()> {
        let envelope = self.channel.seal(message).map_err(session_failure)?;
        self.client.send(envelope).await
    }

    /// The peer's next message. An `Abort` from the peer becomes an error here.
    /// The peer's next message, when a person may be deciding (the prompt).
    pub async fn recv(&mut self) -> anyhow::Result<Message> {
        self.recv_within(REPLY_TIMEOUT).await
    }

    /// The peer's next message, within `timeout`. An `Abort` from the peer is an error here.
    pub async fn recv_within(&mut self, timeout: Duration) -> anyhow::Result<Message> {
        let envelope = self.client.recv(timeout).await?;
        match self.channel.open(&envelope).map_err(session_failure)? {
            Message::Abort { reason } => Err(fail(
                Kind::PeerGone,
                format!(
                    "the other side stopped: {}",
                    crate::protocol::manifest::display(&reason)
                ),
            )),
            message => Ok(message),
        }
    }

    /// Tells the peer why we stop; best effort.
    pub async fn abort(&mut self, reason: &str) {
        let abort = Message::Abort {
            reason: reason.to_string(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.send(&abort)).await;
    }

    /// Runs `connecting` (the direct connection coming up) while watching the server, so that a
    /// peer who gives up is noticed at once. A peer who leaves the server because *its* end is
    /// already up is normal: then `connecting` gets a short grace to finish too.
    pub async fn watch_while<T>(
        &mut self,
        connecting: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::pin!(connecting);
        tokio::select! {
            biased;
            done = &mut connecting => done,
            message = self.recv() => {
                let left = match message {
                    Ok(message) => unexpected(&message, "the connection"),
                    Err(err) => err,
                };
                tokio::time::timeout(LEFT_GRACE, connecting)
                    .await
                    .unwrap_or(Err(left))
            }
        }
    }

    /// Leaves the server: from here on the peers talk directly.
    pub async fn close(self) {
        self.client.close().await;
    }
}

/// What to tell the peer about a failure: the generic meaning of its kind, never a local path.
pub fn public_reason(err: &anyhow::Error) -> String {
    match err.downcast_ref::<crate::error::Failure>() {
        Some(failure) => failure.kind.meaning().to_string(),
        None => "unexpected error".to_string(),
    }
}

/// Maps a session failure to what the user sees.
fn session_failure(err: SessionError) -> anyhow::Error {
    let kind = match err {
        SessionError::WrongCode | SessionError::Tampered(_) => Kind::WrongCode,
        SessionError::SameSide(_) => Kind::Usage,
        SessionError::Version(_) | SessionError::Protocol(_) => Kind::WrongCode,
    };
    fail(kind, err.to_string())
}

/// A message the protocol did not expect at this point.
pub fn unexpected(message: &Message, waiting_for: &str) -> anyhow::Error {
    fail(
        Kind::WrongCode,
        format!(
            "protocol violation: got {} while waiting for {waiting_for}",
            message.kind_name()
        ),
    )
}
