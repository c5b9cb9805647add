//! Where `mp signal` keeps its rooms: in this process's memory, or in Redis shared by several
//! instances ([`super::backplane`]). [`super::server`]'s sessions read the same either way:
//! [`Store::place`] puts a client in a room, events come on the client's own queue, messages
//! go to its [`Peer`], and [`Store::leave`] forgets the room.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::backplane::Backplane;
use super::metrics::{Limit, Metrics};
use super::server::AddrKey;
use super::wire::ErrorKind;

/// What a connection's task is told by the other member of its room (or by the store).
pub(super) enum Event {
    Paired(Peer),
    /// A message, and what to give back once it is written out (boxed: every client's queue
    /// holds a block of 32 events from the start, so the slot must stay small).
    Relay(Box<(Vec<u8>, Release)>),
    PeerLeft,
    /// The store broke (Redis lost): the session cannot go on.
    Lost,
}

/// The byte budgets a queued message holds: its receiver's and the server's.
#[allow(dead_code)] // held for their drop
pub(super) struct Budget(pub OwnedSemaphorePermit, pub OwnedSemaphorePermit);

/// What a relayed message holds until it is written to its client.
pub(super) enum Release {
    /// Budgets of this process, freed on drop.
    Local(#[allow(dead_code)] Budget),
    /// A message from another instance: its sender's instance is told ([`Store::delivered`]).
    Remote,
}

/// How to reach the other member of a room.
#[derive(Clone)]
pub(super) enum Peer {
    /// A session of this process: its event queue and the byte budget of that queue.
    Local {
        tx: mpsc::Sender<Event>,
        budget: Arc<Semaphore>,
    },
    /// A member known by its token in Redis, maybe on another instance.
    Remote(RemotePeer),
}

/// A member reached through Redis, and the credit its queue still has for our messages.
#[derive(Clone)]
pub(super) struct RemotePeer {
    pub token: String,
    /// Bytes we may still send before the peer's instance says it wrote some out.
    pub credit: Arc<Semaphore>,
    /// What our messages in flight hold, oldest first; each of the peer's acknowledgements
    /// frees the oldest.
    pub sent: Arc<Mutex<VecDeque<Budget>>>,
}

/// A client asking for a room.
pub(super) struct Request {
    /// The room it names, or `None` for the lowest free one.
    pub room: Option<String>,
    pub side: String,
    /// Join only if the other side waits there.
    pub if_waiting: bool,
    /// Its address, for the per-address count of waiting rooms.
    pub key: AddrKey,
    /// Its id in this process.
    pub id: u64,
    /// Its event queue, and that queue's byte budget.
    pub tx: mpsc::Sender<Event>,
    pub budget: Arc<Semaphore>,
}

/// What `place` got: the room, the peer already in it, when the room opened (in this
/// process's clock).
pub(super) struct Placed {
    pub room: String,
    pub peer: Option<Peer>,
    pub opened: tokio::time::Instant,
}

/// Why a client was not placed: what it is told.
pub(super) type Refusal = (ErrorKind, &'static str);

pub(super) const REFUSED_FULL: Refusal = (ErrorKind::RoomFull, "this code's room is full");
pub(super) const REFUSED_SIDE: Refusal = (
    ErrorKind::SideTaken,
    "someone else is already using this code on the same side",
);
pub(super) const REFUSED_NO_PEER: Refusal = (
    ErrorKind::NoPeer,
    "nobody is waiting with this code: it was used already, it expired, or the sender stopped",
);
pub(super) const REFUSED_WAITING: Refusal = (
    ErrorKind::Busy,
    "too many rooms are waiting from your address; try again later",
);
pub(super) const REFUSED_LOST: Refusal = (
    ErrorKind::Busy,
    "the signaling server cannot reach its shared store; try again later",
);

/// The rooms: in memory, or in Redis.
pub(super) enum Store {
    Memory(Mutex<State>),
    Redis(Arc<Backplane>),
}

/// How a session's periodic check of its room went (Redis only).
pub(super) enum Tick {
    Fine,
    PeerGone,
    Lost,
}

impl Store {
    pub fn new(backplane: Option<Arc<Backplane>>) -> Store {
        match backplane {
            Some(backplane) => Store::Redis(backplane),
            None => Store::Memory(Mutex::new(State::default())),
        }
    }

    /// Puts the client in the room it named, or in the lowest free one.
    pub async fn place(
        &self,
        metrics: &Metrics,
        max_waiting_per_addr: u32,
        request: Request,
    ) -> Result<Placed, Refusal> {
        match self {
            Store::Memory(state) => {
                let mut state = state.lock().expect("rooms lock");
                state.place(metrics, max_waiting_per_addr, request)
            }
            Store::Redis(backplane) => {
                backplane
                    .place(metrics, max_waiting_per_addr, request)
                    .await
            }
        }
    }

    /// Forgets the room if member `id` is still in it, and tells the other member, if any.
    pub async fn leave(&self, metrics: &Metrics, room: &str, id: u64) {
        match self {
            Store::Memory(state) => {
                let others = state.lock().expect("rooms lock").leave(room, id);
                for other in others {
                    let _ = other.try_send(Event::PeerLeft);
                }
            }
            Store::Redis(backplane) => backplane.leave(metrics, id).await,
        }
    }

    /// A relayed message from another instance was written out: its sender may send more.
    pub async fn delivered(&self, metrics: &Metrics, peer: &Peer) {
        if let (Store::Redis(backplane), Peer::Remote(peer)) = (self, peer) {
            backplane.delivered(metrics, peer).await;
        }
    }

    /// How often [`Store::tick`] is due, if at all.
    pub fn tick_every(&self) -> Option<std::time::Duration> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(backplane) => Some(backplane.heartbeat()),
        }
    }

    /// Keeps member `id`'s room alive in the store, and checks that its peer still is.
    pub async fn tick(&self, metrics: &Metrics, id: u64, peer: Option<&Peer>) -> Tick {
        match self {
            Store::Memory(_) => Tick::Fine,
            Store::Redis(backplane) => backplane.tick(metrics, id, peer).await,
        }
    }

    /// Open rooms with a member here, and rooms waiting for their second member opened here.
    pub fn gauges(&self) -> (u64, u64) {
        match self {
            Store::Memory(state) => {
                let state = state.lock().expect("rooms lock");
                let waiting: u32 = state.waiting.values().sum();
                (state.rooms.len() as u64, u64::from(waiting))
            }
            Store::Redis(backplane) => backplane.gauges(),
        }
    }
}

struct Member {
    id: u64,
    side: String,
    peer: Peer,
}

/// One room: its members and when it was opened (its timeouts count from then).
struct Room {
    opened: tokio::time::Instant,
    members: Vec<Member>,
    /// While the room waits for its second member: the address of the client that opened it,
    /// whose count of waiting rooms it is in.
    waiting_for: Option<AddrKey>,
}

/// The rooms in memory, and what the per-address limits count.
#[derive(Default)]
pub(super) struct State {
    rooms: HashMap<String, Room>,
    /// The rooms named by a canonical number (no leading zero), to find the lowest free one.
    numbered: BTreeSet<u32>,
    /// Rooms waiting for their second member, by the address that opened them (no entry at 0).
    waiting: HashMap<AddrKey, u32>,
}

impl State {
    /// The lowest room number in use by no room.
    fn lowest_free(&self) -> u32 {
        let mut want = 1;
        for &n in self.numbered.range(1..) {
            if n != want {
                break;
            }
            want += 1;
        }
        want
    }

    fn insert(&mut self, name: String, room: Room) {
        if let Some(n) = canonical_number(&name) {
            self.numbered.insert(n);
        }
        if let Some(key) = room.waiting_for {
            *self.waiting.entry(key).or_default() += 1;
        }
        self.rooms.insert(name, room);
    }

    fn remove(&mut self, name: &str) -> Option<Room> {
        let mut room = self.rooms.remove(name)?;
        if let Some(n) = canonical_number(name) {
            self.numbered.remove(&n);
        }
        if let Some(opener) = room.waiting_for.take() {
            release(&mut self.waiting, opener);
        }
        Some(room)
    }

    fn place(
        &mut self,
        metrics: &Metrics,
        max_waiting_per_addr: u32,
        request: Request,
    ) -> Result<Placed, Refusal> {
        let Request {
            room,
            side,
            if_waiting,
            key,
            id,
            tx,
            budget,
        } = request;
        let member = Member {
            id,
            side,
            peer: Peer::Local { tx, budget },
        };
        let allocated = room.is_none();
        let name = room.unwrap_or_else(|| self.lowest_free().to_string());
        if let Some(entry) = self.rooms.get_mut(&name) {
            let members = &mut entry.members;
            if members.len() >= 2 {
                return Err(REFUSED_FULL);
            }
            if members.iter().any(|m| m.side == member.side) {
                return Err(REFUSED_SIDE);
            }
            let peer = members.first().map(|m| m.peer.clone());
            members.push(member);
            let opened = entry.opened;
            if let Some(opener) = entry.waiting_for.take() {
                release(&mut self.waiting, opener);
            }
            Metrics::add(&metrics.pairings_total, 1);
            debug_assert!(!allocated, "an allocated room is free");
            return Ok(Placed {
                room: name,
                peer,
                opened,
            });
        }
        if if_waiting {
            return Err(REFUSED_NO_PEER);
        }
        if self.waiting.get(&key).copied().unwrap_or(0) >= max_waiting_per_addr {
            metrics.hit(Limit::WaitingPerAddr);
            return Err(REFUSED_WAITING);
        }
        let opened = tokio::time::Instant::now();
        Metrics::add(&metrics.rooms_total, 1);
        if allocated {
            Metrics::add(&metrics.rooms_allocated_total, 1);
        }
        self.insert(
            name.clone(),
            Room {
                opened,
                members: vec![member],
                waiting_for: Some(key),
            },
        );
        Ok(Placed {
            room: name,
            peer: None,
            opened,
        })
    }

    /// Forgets the room, and returns the queues of its other members to tell.
    /// (The paired peer is either still a member, and told, or gone already.)
    fn leave(&mut self, room: &str, id: u64) -> Vec<mpsc::Sender<Event>> {
        // The room may already be gone, and its number reused by strangers: only forget it if
        // this member is still in it.
        let ours = self
            .rooms
            .get(room)
            .is_some_and(|r| r.members.iter().any(|m| m.id == id));
        match ours.then(|| self.remove(room)).flatten() {
            Some(removed) => removed
                .members
                .into_iter()
                .filter(|m| m.id != id)
                .filter_map(|m| match m.peer {
                    Peer::Local { tx, .. } => Some(tx),
                    Peer::Remote(_) => None,
                })
                .collect(),
            None => Vec::new(),
        }
    }
}

/// One room fewer waiting from `key` (the room got its second member, or is gone).
pub(super) fn release(waiting: &mut HashMap<AddrKey, u32>, key: AddrKey) {
    if let Some(count) = waiting.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            waiting.remove(&key);
        }
    }
}

/// `"42"` → 42; `"042"`, `"0"` and numbers past `u32` → `None`.
fn canonical_number(room: &str) -> Option<u32> {
    room.parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && !room.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_number_is_allocated() {
        let mut state = State::default();
        assert_eq!(state.lowest_free(), 1);
        let room = || Room {
            opened: tokio::time::Instant::now(),
            members: Vec::new(),
            waiting_for: None,
        };
        for name in ["1", "2", "4", "007", "0"] {
            state.insert(name.into(), room());
        }
        assert_eq!(state.lowest_free(), 3, "007 and 0 are other rooms");
        state.insert("3".into(), room());
        assert_eq!(state.lowest_free(), 5);
        state.remove("2");
        assert_eq!(state.lowest_free(), 2);
    }
}
