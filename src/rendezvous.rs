//! How two peers find each other and get a pipe for their sealed signaling messages.
//!
//! A [`Rendezvous`] only moves opaque envelopes: the key exchange, sealing and every decision
//! are the engines' ([`crate::protocol::sender`], [`crate::protocol::receiver`]). So a new way
//! to meet (a LAN endpoint found with mDNS, a server backed by Redis) is one more
//! implementation of this trait, and nothing else changes.
//!
//! There are two, and [`join`] picks one from the meeting place it is given:
//! - a room on an `mp signal` server over WebSocket ([`crate::signal::client::SignalClient`]),
//!   for a `ws://` or `wss://` URL;
//! - the same, on a server the sender runs itself and announces on the local network with
//!   mDNS ([`lan`]), for [`lan::Options`] written as a place (`lan:…`): what `mp` does when no
//!   signaling server is given.
//!
//! Either way the room comes from the code; a sender without one asks the server for a free
//! room (or, on the LAN, draws one nobody announces) and draws the words of the code.

pub mod lan;

use crate::error::{Failure, Kind};
use crate::protocol::code::{Code, MAX_GENERATED_ROOM};
use crate::protocol::pake::Side;
use crate::signal::client::{Allocate, Join, SignalClient};

/// A STUN or TURN server the connection may use, as WebRTC configures one (`urls` such as
/// `stun:host:3478` or `turn:host:3478?transport=udp`; TURN needs `username` and `credential`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// A meeting place for the two sides of one transfer.
///
/// Every method that waits is cancel-safe: a pump may `select!` on it and drop the future when
/// something else happens first, without losing a message.
#[async_trait::async_trait]
pub trait Rendezvous: Send {
    /// Resolves once the other side has arrived.
    async fn paired(&mut self) -> Result<(), Failure>;
    /// Sends one envelope to the other side.
    async fn send(&mut self, envelope: Vec<u8>) -> Result<(), Failure>;
    /// The other side's next envelope; an error once it has left or the pipe broke.
    async fn recv(&mut self) -> Result<Vec<u8>, Failure>;
    /// Leaves, politely and briefly.
    async fn close(&mut self);

    /// STUN and TURN servers this meeting place recommends (`mp signal` hands out its own
    /// STUN address and short-lived TURN credentials). Flags and environment override them.
    fn ice_servers(&self) -> Vec<IceServer> {
        Vec::new()
    }
}

/// What the receiver of a generated code is told when nobody waits with it.
pub fn no_sender(code: &Code) -> Failure {
    Failure::new(
        Kind::NoSender,
        format!(
            "no sender is waiting with the code {code}: it was used already, it expired, or the \
             sender stopped; ask the sender for a new code"
        ),
    )
}

/// How often a generated code is redrawn when its room is busy (servers without `allocate`).
const ROOM_ATTEMPTS: usize = 20;

/// Joins the room of `code` as `side` at `place`: the URL of a signaling server, or
/// [`lan::Options::to_place`] to meet on the local network. A sender without a code gets a
/// generated one: on a server, the room it allocates (its lowest free number, so nobody can
/// make every short code busy), and two words drawn here, which the server never sees.
pub async fn join(
    place: &str,
    code: Option<&str>,
    side: Side,
) -> Result<(Box<dyn Rendezvous>, Code), Failure> {
    let code = code
        .map(|text| {
            Code::parse(text).map_err(|e| {
                let hint = crate::protocol::code::likely_meant(text)
                    .map_or(String::new(), |meant| format!("; did you mean {meant}?"));
                Failure::new(Kind::Usage, format!("{e}{hint}"))
            })
        })
        .transpose()?;
    if let Some(options) = lan::Options::from_place(place) {
        return lan::join(&options?, code, side).await;
    }
    let url = place;
    let join = |room: String| async move {
        SignalClient::join(url, &room, side)
            .await
            .map_err(Failure::from_any)
    };
    if let Some(code) = code {
        // The sender of a generated code is in its room before the code is shown: a receiver
        // that finds nobody there is told so at once instead of waiting for nobody.
        let joined = if side == Side::Receiver && code.is_generated() {
            SignalClient::join_waiting(url, code.room(), side)
                .await
                .map_err(Failure::from_any)?
        } else {
            join(code.room().to_string()).await?
        };
        return match joined {
            Join::Joined(client) => Ok((client, code)),
            Join::NoPeer => Err(no_sender(&code)),
            Join::Busy if side == Side::Sender => Err(Failure::new(
                Kind::RoomFull,
                format!("the code {code} is already in use on the server; pick another"),
            )),
            Join::Busy | Join::Unsupported => Err(Failure::new(
                Kind::RoomFull,
                format!("the code {code} is already in use by another receiver or transfer"),
            )),
        };
    }
    let mut code = Code::generate();
    let allocated = SignalClient::allocate(url, side)
        .await
        .map_err(Failure::from_any)?;
    if let Allocate::Joined(client, room) = allocated {
        return Ok((client, code.with_room(room)));
    }
    // A server from before `allocate`: draw rooms in 1..=99 until one is free.
    for _ in 0..ROOM_ATTEMPTS {
        if let Join::Joined(client) = join(code.room().to_string()).await? {
            return Ok((client, code));
        }
        let room = rand::Rng::gen_range(&mut rand::rngs::OsRng, 1..=MAX_GENERATED_ROOM);
        code = code.with_room(room);
    }
    Err(Failure::new(
        Kind::RoomFull,
        "every room tried on the signaling server is busy; try again later",
    ))
}
