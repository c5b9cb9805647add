//! Rooms in Redis, so that several `mp signal` instances behind one load balancer act as one
//! (`mp signal --redis URL`).
//!
//! # What Redis holds
//!
//! One hash per open room, `mp:room:<room>`, with the fields `send` and `receive` (the token of
//! the member on that side: 32 hex digits, an instance's random prefix and a counter, nothing
//! about the client) and `opened` (when the room opened, in milliseconds since 1970). Every
//! room has a lease ([`LEASE`]) that its members' instances renew every [`HEARTBEAT`] while
//! they hold a client, so the rooms of an instance that died are gone within [`LEASE`].
//! Nothing else is stored: no address, no code, no message.
//!
//! # How members talk
//!
//! Each member subscribes to its own channel, `mp:in:<token>`, *before* its token is written
//! in a room, so nothing sent to it can be lost. Lua scripts make every change of a room
//! atomic:
//! - placing a member (`PLACE`): allocate the lowest free room number (no key
//!   `mp:room:<n>`), open a room, or join one and publish `p<token>` (paired) to the member
//!   already there. A room one of whose members is no longer subscribed lost its instance: it
//!   is deleted first. `if_waiting` joins only a room where the other side waits.
//! - leaving (`LEAVE`): delete the room if the member is still in it, and publish `l` to the
//!   other member.
//! - the heartbeat (`TICK`): renew the lease, and count the peer's subscribers (none: its
//!   instance is gone).
//!
//! A member's messages are published to its peer's channel as `m<bytes>`, one publish at a
//! time, so they arrive in order. Queues stay bounded in bytes across instances by credit:
//! a sender may have at most [`super::server::MEMBER_QUEUE_BYTES`] in
//! flight (each message counting at least a 32nd of that), and the peer's instance publishes
//! `c` back once it wrote a message to its client. The bytes in flight also count against
//! the sending instance's relay budget.
//!
//! Per-address limits stay in each instance's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::sync::{watch, Semaphore};

use super::metrics::{Limit, Metrics};
use super::server::{AddrKey, Relayed, MEMBER_QUEUE_BYTES};
use super::store::{
    release, Budget, Event, Peer, Placed, Refusal, RemotePeer, Request, Tick, REFUSED_FULL,
    REFUSED_LOST, REFUSED_NO_PEER, REFUSED_SIDE, REFUSED_WAITING,
};

/// How often a member's instance renews its room's lease and checks on a peer elsewhere.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a room outlives the last renewal of its lease.
pub const LEASE: Duration = Duration::from_secs(15);
/// How long connecting to Redis may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Places a member. ARGV: room ('' to allocate), side, token, if_waiting, may_open, now (ms),
/// lease (ms). Returns {'open', room, opened}, {'paired', room, opened, peer token}, or one
/// refusal: {'room-full'}, {'side-taken'}, {'no-peer'}, {'busy'} (may not open a room).
const PLACE: &str = r#"
local room, side, token = ARGV[1], ARGV[2], ARGV[3]
local if_waiting, may_open, now, lease = ARGV[4] == '1', ARGV[5] == '1', ARGV[6], ARGV[7]
local function open(name)
  if not may_open then return {'busy'} end
  local key = 'mp:room:' .. name
  redis.call('HSET', key, side, token, 'opened', now)
  redis.call('PEXPIRE', key, lease)
  return {'open', name, now}
end
if room == '' then
  local n = 1
  while redis.call('EXISTS', 'mp:room:' .. n) == 1 do n = n + 1 end
  return open(tostring(n))
end
local key = 'mp:room:' .. room
local members = redis.call('HMGET', key, 'send', 'receive')
for _, member in ipairs(members) do
  if member and redis.call('PUBSUB', 'NUMSUB', 'mp:in:' .. member)[2] == 0 then
    redis.call('DEL', key)
    members = {false, false}
    break
  end
end
local mine, theirs = members[1], members[2]
if side == 'receive' then mine, theirs = members[2], members[1] end
if mine and theirs then return {'room-full'} end
if mine then return {'side-taken'} end
if not theirs then
  if if_waiting then return {'no-peer'} end
  return open(room)
end
redis.call('HSET', key, side, token)
redis.call('PEXPIRE', key, lease)
redis.call('PUBLISH', 'mp:in:' .. theirs, 'p' .. token)
return {'paired', room, redis.call('HGET', key, 'opened'), theirs}
"#;

/// Removes a member. ARGV: room, side, token. Deletes the room if the member is still in it
/// and tells the other member.
const LEAVE: &str = r#"
local key = 'mp:room:' .. ARGV[1]
if redis.call('HGET', key, ARGV[2]) ~= ARGV[3] then return 0 end
local other = redis.call('HGET', key, ARGV[2] == 'send' and 'receive' or 'send')
redis.call('DEL', key)
if other then redis.call('PUBLISH', 'mp:in:' .. other, 'l') end
return 1
"#;

/// The heartbeat. ARGV: room, side, token, lease (ms), peer token ('' for none). Returns -1
/// if the member is no longer in the room, 0 if its peer has no subscriber, else 1.
const TICK: &str = r#"
local key = 'mp:room:' .. ARGV[1]
if redis.call('HGET', key, ARGV[2]) ~= ARGV[3] then return -1 end
redis.call('PEXPIRE', key, ARGV[4])
if ARGV[5] == '' then return 1 end
if redis.call('PUBSUB', 'NUMSUB', 'mp:in:' .. ARGV[5])[2] == 0 then return 0 end
return 1
"#;

/// The shared store of one instance: its connections to Redis and its own members.
pub struct Backplane {
    conn: ConnectionManager,
    sink: PubSubSink,
    /// This instance's random prefix of member tokens.
    instance: String,
    local: Mutex<Local>,
    lost: watch::Sender<bool>,
    place: redis::Script,
    leave: redis::Script,
    tick: redis::Script,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backplane")
    }
}

/// This instance's members, and its per-address count of waiting rooms.
#[derive(Default)]
struct Local {
    members: HashMap<u64, Entry>,
    waiting: HashMap<AddrKey, u32>,
}

struct Entry {
    tx: tokio::sync::mpsc::Sender<Event>,
    side: String,
    /// Set once placed.
    room: Option<String>,
    /// While its room waits: the address whose count it is in.
    waiting_from: Option<AddrKey>,
    /// What its messages in flight to a peer elsewhere hold.
    sent: Arc<Mutex<VecDeque<Budget>>>,
}

/// The channel a member listens on.
fn channel(token: &str) -> String {
    format!("mp:in:{token}")
}

/// Bytes of credit a message of `len` bytes takes: at least a 32nd of the window, so a
/// member's queue (64 events) never holds more messages than it has places.
fn charge(len: usize) -> u32 {
    len.clamp(MEMBER_QUEUE_BYTES / 32, MEMBER_QUEUE_BYTES) as u32
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Backplane {
    /// Connects to the Redis at `url` (`redis://` URL, with a password and a database number if needed) and starts
    /// listening for this instance's members. The error says why, without the URL (it may
    /// hold a password).
    pub async fn connect(url: &str) -> Result<Arc<Backplane>, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let connect = async {
            let pubsub = client.get_async_pubsub().await?;
            let mut conn = ConnectionManager::new(client.clone()).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, redis::RedisError>((pubsub, conn))
        };
        let (pubsub, conn) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(both)) => both,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("timed out".into()),
        };
        let (sink, stream) = pubsub.split();
        let instance = format!("{:016x}", rand::random::<u64>());
        let backplane = Arc::new(Backplane {
            conn,
            sink,
            instance,
            local: Mutex::new(Local::default()),
            lost: watch::channel(false).0,
            place: redis::Script::new(PLACE),
            leave: redis::Script::new(LEAVE),
            tick: redis::Script::new(TICK),
        });
        tokio::spawn(dispatch(Arc::downgrade(&backplane), stream));
        Ok(backplane)
    }

    /// Resolves once the subscription connection is lost: the instance can no longer hear its
    /// members' peers, and should stop.
    pub async fn lost(&self) {
        let mut lost = self.lost.subscribe();
        let _ = lost.wait_for(|lost| *lost).await;
    }

    pub fn heartbeat(&self) -> Duration {
        HEARTBEAT
    }

    fn token(&self, id: u64) -> String {
        format!("{}{id:016x}", self.instance)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().expect("backplane lock")
    }

    /// Counts a failed Redis command.
    fn failed(metrics: &Metrics) {
        Metrics::add(&metrics.redis_errors_total, 1);
    }

    pub(super) async fn place(
        &self,
        metrics: &Metrics,
        max_waiting_per_addr: u32,
        request: Request,
    ) -> Result<Placed, Refusal> {
        if *self.lost.borrow() {
            return Err(REFUSED_LOST);
        }
        let Request {
            room,
            side,
            if_waiting,
            key,
            id,
            tx,
            budget: _,
        } = request;
        let allocated = room.is_none();
        let token = self.token(id);
        let sent = Arc::new(Mutex::new(VecDeque::new()));
        let may_open = {
            let mut local = self.local();
            local.members.insert(
                id,
                Entry {
                    tx,
                    side: side.clone(),
                    room: None,
                    waiting_from: None,
                    sent: sent.clone(),
                },
            );
            local.waiting.get(&key).copied().unwrap_or(0) < max_waiting_per_addr
        };
        // Listening before anyone can learn the token: nothing sent to it is lost.
        let mut sink = self.sink.clone();
        if sink.subscribe(channel(&token)).await.is_err() {
            Self::failed(metrics);
            self.local().members.remove(&id);
            return Err(REFUSED_LOST);
        }
        let reply = self
            .place
            .arg(room.as_deref().unwrap_or(""))
            .arg(&side)
            .arg(&token)
            .arg(if if_waiting { "1" } else { "0" })
            .arg(if may_open { "1" } else { "0" })
            .arg(now_ms())
            .arg(LEASE.as_millis() as u64)
            .invoke_async::<Vec<String>>(&mut self.conn.clone())
            .await;
        let refusal = match reply.as_deref() {
            Ok([what, room, opened, rest @ ..]) if what == "open" || what == "paired" => {
                let paired = what == "paired";
                let mut local = self.local();
                let local = &mut *local;
                if let Some(entry) = local.members.get_mut(&id) {
                    entry.room = Some(room.clone());
                    if !paired {
                        entry.waiting_from = Some(key);
                        *local.waiting.entry(key).or_default() += 1;
                    }
                }
                let peer = match rest.first() {
                    Some(theirs) if paired => {
                        Metrics::add(&metrics.pairings_total, 1);
                        Some(Peer::Remote(RemotePeer {
                            token: theirs.clone(),
                            credit: Arc::new(Semaphore::new(MEMBER_QUEUE_BYTES)),
                            sent,
                        }))
                    }
                    _ => {
                        Metrics::add(&metrics.rooms_total, 1);
                        if allocated {
                            Metrics::add(&metrics.rooms_allocated_total, 1);
                        }
                        None
                    }
                };
                // The room's clock is its opener's: its age here, from the wall clock.
                let age = now_ms().saturating_sub(opened.parse().unwrap_or(0));
                let now = tokio::time::Instant::now();
                let opened = now.checked_sub(Duration::from_millis(age)).unwrap_or(now);
                return Ok(Placed {
                    room: room.clone(),
                    peer,
                    opened,
                });
            }
            Ok([what]) if what == "room-full" => REFUSED_FULL,
            Ok([what]) if what == "side-taken" => REFUSED_SIDE,
            Ok([what]) if what == "no-peer" => REFUSED_NO_PEER,
            Ok([what]) if what == "busy" => {
                metrics.hit(Limit::WaitingPerAddr);
                REFUSED_WAITING
            }
            _ => {
                Self::failed(metrics);
                REFUSED_LOST
            }
        };
        self.local().members.remove(&id);
        if sink.unsubscribe(channel(&token)).await.is_err() {
            Self::failed(metrics);
        }
        Err(refusal)
    }

    pub(super) async fn leave(&self, metrics: &Metrics, id: u64) {
        let Some(entry) = self.local().members.remove(&id) else {
            return;
        };
        if let Some(key) = entry.waiting_from {
            release(&mut self.local().waiting, key);
        }
        let token = self.token(id);
        if let Some(room) = &entry.room {
            let left = self
                .leave
                .arg(room)
                .arg(&entry.side)
                .arg(&token)
                .invoke_async::<i64>(&mut self.conn.clone())
                .await;
            if left.is_err() {
                Self::failed(metrics);
            }
        }
        if self
            .sink
            .clone()
            .unsubscribe(channel(&token))
            .await
            .is_err()
        {
            Self::failed(metrics);
        }
    }

    /// Sends `bytes` to a member elsewhere, within its credit and this instance's budget.
    pub(super) async fn relay(
        &self,
        metrics: &Metrics,
        peer: &RemotePeer,
        global: &Arc<Semaphore>,
        bytes: Vec<u8>,
    ) -> Relayed {
        let Ok(credit) = peer
            .credit
            .clone()
            .acquire_many_owned(charge(bytes.len()))
            .await
        else {
            return Relayed::Failed;
        };
        let Ok(all) = global
            .clone()
            .acquire_many_owned(bytes.len().max(1) as u32)
            .await
        else {
            return Relayed::Failed;
        };
        // Held until the peer's instance says it wrote the message out (or this session ends).
        peer.sent
            .lock()
            .expect("sent lock")
            .push_back(Budget(credit, all));
        let mut payload = Vec::with_capacity(bytes.len() + 1);
        payload.push(b'm');
        payload.extend_from_slice(&bytes);
        let published = redis::cmd("PUBLISH")
            .arg(channel(&peer.token))
            .arg(payload)
            .query_async::<i64>(&mut self.conn.clone())
            .await;
        match published {
            Ok(0) => Relayed::PeerGone,
            Ok(_) => Relayed::Sent,
            Err(_) => {
                Self::failed(metrics);
                Relayed::Lost
            }
        }
    }

    /// Tells a member elsewhere that one of its messages was written out.
    pub(super) async fn delivered(&self, metrics: &Metrics, peer: &RemotePeer) {
        let acked = redis::cmd("PUBLISH")
            .arg(channel(&peer.token))
            .arg("c")
            .query_async::<i64>(&mut self.conn.clone())
            .await;
        if acked.is_err() {
            Self::failed(metrics);
        }
    }

    pub(super) async fn tick(&self, metrics: &Metrics, id: u64, peer: Option<&Peer>) -> Tick {
        let Some((room, side)) = self
            .local()
            .members
            .get(&id)
            .and_then(|e| Some((e.room.clone()?, e.side.clone())))
        else {
            return Tick::Fine;
        };
        let peer = match peer {
            Some(Peer::Remote(remote)) => remote.token.as_str(),
            _ => "",
        };
        let checked = self
            .tick
            .arg(room)
            .arg(side)
            .arg(self.token(id))
            .arg(LEASE.as_millis() as u64)
            .arg(peer)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await;
        match checked {
            Ok(1) => Tick::Fine,
            Ok(0) => Tick::PeerGone,
            Ok(_) => Tick::Lost,
            // A passing failure: the lease outlives a few missed beats.
            Err(_) => {
                Self::failed(metrics);
                Tick::Fine
            }
        }
    }

    /// Rooms with a member here, and rooms waiting opened here.
    pub(super) fn gauges(&self) -> (u64, u64) {
        let local = self.local();
        let rooms: std::collections::HashSet<&str> = local
            .members
            .values()
            .filter_map(|e| e.room.as_deref())
            .collect();
        let waiting: u32 = local.waiting.values().sum();
        (rooms.len() as u64, u64::from(waiting))
    }

    /// Hands a message from Redis to the member it is for.
    fn dispatch(&self, channel_name: &str, payload: &[u8]) {
        let Some(id) = channel_name
            .strip_prefix("mp:in:")
            .and_then(|token| token.strip_prefix(self.instance.as_str()))
            .and_then(|id| u64::from_str_radix(id, 16).ok())
        else {
            return;
        };
        let Some((&kind, rest)) = payload.split_first() else {
            return;
        };
        let mut local = self.local();
        let Local { members, waiting } = &mut *local;
        let Some(entry) = members.get_mut(&id) else {
            return;
        };
        let event = match kind {
            b'p' => {
                if let Some(key) = entry.waiting_from.take() {
                    release(waiting, key);
                }
                Event::Paired(Peer::Remote(RemotePeer {
                    token: String::from_utf8_lossy(rest).into_owned(),
                    credit: Arc::new(Semaphore::new(MEMBER_QUEUE_BYTES)),
                    sent: entry.sent.clone(),
                }))
            }
            b'm' => Event::Relay(Box::new((rest.to_vec(), super::store::Release::Remote))),
            b'c' => {
                entry.sent.lock().expect("sent lock").pop_front();
                return;
            }
            b'l' => Event::PeerLeft,
            _ => return,
        };
        // The credit keeps a member's queue from filling; a full one cannot happen with
        // instances of this version, and the event is dropped.
        let _ = entry.tx.try_send(event);
    }

    /// The subscription is gone: every member here is told, and new ones are refused.
    fn lose(&self) {
        self.lost.send_replace(true);
        for entry in self.local().members.values() {
            let _ = entry.tx.try_send(Event::Lost);
        }
    }
}

/// Reads this instance's subscription until it ends.
async fn dispatch(backplane: Weak<Backplane>, mut stream: PubSubStream) {
    while let Some(message) = stream.next().await {
        let Some(backplane) = backplane.upgrade() else {
            return;
        };
        backplane.dispatch(message.get_channel_name(), message.get_payload_bytes());
    }
    if let Some(backplane) = backplane.upgrade() {
        backplane.lose();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_never_holds_more_messages_than_places() {
        let most = MEMBER_QUEUE_BYTES / charge(1) as usize;
        assert!(most + 2 <= 64, "{most} messages, paired and left");
        assert_eq!(charge(MEMBER_QUEUE_BYTES * 2) as usize, MEMBER_QUEUE_BYTES);
    }
}
