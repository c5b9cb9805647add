//! The two engines against each other, and against hostile peers, in memory and in made-up
//! time: every decision of a transfer, tested with plain values.
//!
//! [`World`] plays both pumps: it routes envelopes between the engines, answers their file
//! work at once (or holds it back, for a slow disk), and lets a test tamper with anything on
//! the way.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::code::Code;
use super::frame::{FailKind, Frame, Taken, MAX_DATA, WIDE_WINDOW, WINDOW, WINDOW_MESSAGES};
use super::manifest::{Entry, Manifest};
use super::message::Message;
use super::pake::Side;
use super::receiver::{self, KeptPrefix, Receiver, Write};
use super::sender::{self, Chunk, Offer, Planned, Sender};
use super::session::Conversation;
use crate::error::Kind;

const WAIT: Duration = Duration::from_secs(600);

fn code() -> Code {
    Code::parse("7-guitar-ocean").unwrap()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Rewrites (or drops, with `None`) a frame on its way from the sender to the receiver.
type Tamper = Box<dyn FnMut(Vec<u8>) -> Option<Vec<u8>>>;

/// Both pumps, in memory.
struct World {
    now: Instant,
    sender: Sender,
    receiver: Receiver,
    /// The sender's files by manifest index.
    files: HashMap<usize, Vec<u8>>,
    /// What the receiver's "user" answers: the prefixes it kept (with their bytes).
    kept: Vec<(usize, Vec<u8>)>,
    /// What the receiver's writer holds, by index.
    written: HashMap<usize, Vec<u8>>,
    hashers: HashMap<usize, Sha256>,
    taken: Taken,
    /// When false, the writer takes nothing in (a stalled disk or stdout).
    writer_runs: bool,
    /// When false, the reader has nothing yet (a quiet stdin).
    reader_runs: bool,
    writes: VecDeque<Write>,
    reading: VecDeque<Chunk>,
    max_data: usize,
    sender_done: Option<Result<sender::Report, crate::error::Failure>>,
    receiver_done: Option<Result<receiver::Report, crate::error::Failure>>,
    discarded: bool,
    placed: bool,
    /// Frames the sender put on the link, for inspection.
    sender_frames: Vec<Vec<u8>>,
    /// Set by tests to rewrite or drop what the sender puts on the link.
    tamper: Option<Tamper>,
    /// The path's round trip the sender's link reports when it opens.
    path_rtt: Option<Duration>,
    link_max_message: usize,
    /// When true, placing is asked for but not done (the test finishes it).
    hold_placing: bool,
    place_asked: bool,
    /// Trickled candidates each side was asked to add.
    candidates_at_sender: Vec<String>,
    candidates_at_receiver: Vec<String>,
}

fn candidate(name: &str) -> super::message::Candidate {
    super::message::Candidate {
        candidate: format!("candidate:{name} 1 udp 1 10.0.0.1 9 typ host"),
        mid: Some("0".into()),
        mline: None,
    }
}

impl World {
    fn new(offer: Offer, files: Vec<(usize, Vec<u8>)>) -> World {
        let now = Instant::now();
        World {
            now,
            sender: Sender::new(code(), offer, now, WAIT),
            receiver: Receiver::new(code(), now, WAIT),
            files: files.into_iter().collect(),
            kept: Vec::new(),
            written: HashMap::new(),
            hashers: HashMap::new(),
            taken: Taken::default(),
            writer_runs: true,
            reader_runs: true,
            writes: VecDeque::new(),
            reading: VecDeque::new(),
            max_data: 0,
            sender_done: None,
            receiver_done: None,
            discarded: false,
            placed: false,
            sender_frames: Vec::new(),
            tamper: None,
            path_rtt: None,
            link_max_message: super::frame::MAX_MESSAGE,
            hold_placing: false,
            place_asked: false,
            candidates_at_sender: Vec::new(),
            candidates_at_receiver: Vec::new(),
        }
    }

    /// One file of `content`, offered as `name`.
    fn single(name: &str, content: &[u8]) -> World {
        World::new(
            Offer::Files(Manifest::single(name, content.len() as u64)),
            vec![(0, content.to_vec())],
        )
    }

    fn pair(&mut self) {
        self.sender.handle(self.now, sender::Input::Paired);
        self.receiver.handle(self.now, receiver::Input::Paired);
    }

    /// Runs both engines until neither has anything to do now; returns their next deadlines.
    fn settle(&mut self) -> (Option<Instant>, Option<Instant>) {
        for _ in 0..100_000 {
            let mut busy = false;
            let s = self.poll_sender();
            busy |= s.is_none();
            let r = self.poll_receiver();
            busy |= r.is_none();
            busy |= self.feed_chunk();
            busy |= self.run_writer();
            if !busy {
                return (s.flatten(), r.flatten());
            }
        }
        panic!("the engines never settled");
    }

    /// Carries out one sender output; `Some(deadline)` when it has nothing to do.
    fn poll_sender(&mut self) -> Option<Option<Instant>> {
        if self.sender_done.is_some() {
            return Some(None);
        }
        match self.sender.poll_output() {
            sender::Output::Timeout(at) => return Some(Some(at)),
            sender::Output::Envelope(e) => {
                self.receiver.handle(self.now, receiver::Input::Envelope(e))
            }
            sender::Output::CloseRendezvous => {}
            sender::Output::CreateOffer { trickle } => {
                assert!(trickle, "both engines list the trickle feature");
                // One candidate is gathered before the SDP is ready, one after.
                self.sender
                    .handle(self.now, sender::Input::LocalCandidate(candidate("s1")));
                self.sender
                    .handle(self.now, sender::Input::LocalSdp("offer".into()));
                self.sender
                    .handle(self.now, sender::Input::LocalCandidate(candidate("s2")));
            }
            sender::Output::AddCandidate(c) => self.candidates_at_sender.push(c.candidate),
            sender::Output::ApplyAnswer(sdp) => {
                assert_eq!(sdp, "answer");
                let max_message = self.link_max_message;
                let path_rtt = self.path_rtt;
                self.sender.handle(
                    self.now,
                    sender::Input::LinkOpen {
                        max_message,
                        path_rtt,
                    },
                );
                self.receiver.handle(self.now, receiver::Input::LinkOpen);
            }
            sender::Output::HashPrefixes(kept) => {
                let hashes = kept
                    .iter()
                    .map(|k| {
                        let file = &self.files[&k.index];
                        (file.len() as u64 >= k.offset).then(|| sha(&file[..k.offset as usize]))
                    })
                    .collect();
                self.sender
                    .handle(self.now, sender::Input::Prefixes(Ok(hashes)));
            }
            sender::Output::StartReading { plan, max_data } => {
                self.max_data = max_data;
                for Planned { index, start } in plan {
                    let file = self.files[&index].clone();
                    for piece in file[start as usize..].chunks(max_data) {
                        let mut frame = vec![0u8];
                        frame.extend_from_slice(piece);
                        self.reading.push_back(Chunk::Data { index, frame });
                    }
                    self.reading.push_back(Chunk::End {
                        index,
                        sha256: sha(&file),
                    });
                }
            }
            sender::Output::Frame(frame) => {
                self.sender_frames.push(frame.clone());
                let frame = match self.tamper.as_mut() {
                    Some(tamper) => tamper(frame),
                    None => Some(frame),
                };
                if let Some(frame) = frame {
                    self.receiver
                        .handle(self.now, receiver::Input::Frame(frame));
                }
            }
            sender::Output::Event(_) => {}
            sender::Output::Done(result) => {
                self.sender_done = Some(result);
                // The sender's pump closes the connection.
                self.receiver.handle(self.now, receiver::Input::LinkClosed);
            }
        }
        None
    }

    fn poll_receiver(&mut self) -> Option<Option<Instant>> {
        if self.receiver_done.is_some() {
            return Some(None);
        }
        match self.receiver.poll_output() {
            receiver::Output::Timeout(at) => return Some(Some(at)),
            receiver::Output::Envelope(e) => {
                self.sender.handle(self.now, sender::Input::Envelope(e))
            }
            receiver::Output::CloseRendezvous => {}
            receiver::Output::Ask { .. } => {
                let kept = self
                    .kept
                    .iter()
                    .map(|(index, bytes)| {
                        let mut state = Sha256::new();
                        state.update(bytes);
                        self.hashers.insert(*index, state);
                        KeptPrefix {
                            index: *index,
                            offset: bytes.len() as u64,
                            sha256: sha(bytes),
                        }
                    })
                    .collect();
                self.receiver
                    .handle(self.now, receiver::Input::Accept { kept });
            }
            receiver::Output::ShowText(_) => self
                .receiver
                .handle(self.now, receiver::Input::TextShown(Ok(()))),
            receiver::Output::Answer { offer, trickle } => {
                assert_eq!(offer, "offer");
                assert!(trickle);
                self.receiver
                    .handle(self.now, receiver::Input::LocalCandidate(candidate("r1")));
                self.receiver
                    .handle(self.now, receiver::Input::LocalSdp("answer".into()));
            }
            receiver::Output::AddCandidate(c) => self.candidates_at_receiver.push(c.candidate),
            receiver::Output::Write(write) => self.writes.push_back(write),
            receiver::Output::Place => {
                self.place_asked = true;
                if !self.hold_placing {
                    self.placed = true;
                    self.receiver
                        .handle(self.now, receiver::Input::Placed(Ok(())));
                }
            }
            receiver::Output::Discard => self.discarded = true,
            receiver::Output::Frame(frame) => {
                if self.sender_done.is_none() {
                    self.sender.handle(self.now, sender::Input::Frame(frame));
                }
            }
            receiver::Output::Event(_) => {}
            receiver::Output::Done(result) => {
                self.receiver_done = Some(result);
                // The receiver's pump closes the connection.
                if self.sender_done.is_none() {
                    self.sender.handle(self.now, sender::Input::LinkClosed);
                }
            }
        }
        None
    }

    /// The sender's pump hands over a chunk when the engine wants one.
    fn feed_chunk(&mut self) -> bool {
        if self.sender_done.is_some() || !self.reader_runs || !self.sender.wants_chunk() {
            return false;
        }
        match self.reading.pop_front() {
            Some(chunk) => {
                self.sender.handle(self.now, sender::Input::Chunk(chunk));
                true
            }
            None => false,
        }
    }

    /// The receiver's writer takes in one queued write.
    fn run_writer(&mut self) -> bool {
        if !self.writer_runs || self.receiver_done.is_some() {
            return false;
        }
        let Some(write) = self.writes.pop_front() else {
            return false;
        };
        match write {
            Write::Open { index, keep, begin } => {
                let kept = self
                    .kept
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, b)| b[..keep as usize].to_vec())
                    .unwrap_or_default();
                assert_eq!(kept.len() as u64, keep);
                let hasher = if keep > 0 {
                    self.hashers.remove(&index).unwrap()
                } else {
                    Sha256::new()
                };
                self.hashers.insert(index, hasher);
                self.written.insert(index, kept);
                self.taken.messages += u64::from(begin);
            }
            Write::Data { index, frame } => {
                self.written
                    .get_mut(&index)
                    .unwrap()
                    .extend_from_slice(&frame[1..]);
                self.hashers.get_mut(&index).unwrap().update(&frame[1..]);
                self.taken.bytes += frame.len() as u64 - 1;
                self.taken.messages += 1;
            }
            Write::End { index } => {
                let sha256 = self.hashers.remove(&index).unwrap().finalize().into();
                self.receiver
                    .handle(self.now, receiver::Input::Written { index, sha256 });
                self.taken.messages += 1;
            }
        }
        self.receiver
            .handle(self.now, receiver::Input::Taken(self.taken));
        true
    }

    /// Moves the clock to `at` and tells both engines.
    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        if self.sender_done.is_none() {
            self.sender.handle(self.now, sender::Input::Timeout);
        }
        if self.receiver_done.is_none() {
            self.receiver.handle(self.now, receiver::Input::Timeout);
        }
    }

    /// Runs to the end, jumping to each next deadline; fails after `limit` of made-up time.
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let (s, r) = self.settle();
            if self.sender_done.is_some() && self.receiver_done.is_some() {
                return;
            }
            let next = [s, r].into_iter().flatten().min().expect("someone waits");
            assert!(next <= end, "nothing happened within {limit:?}");
            self.advance_to(next.max(self.now));
        }
    }

    fn sender_report(&self) -> &sender::Report {
        match self.sender_done.as_ref().expect("the sender is done") {
            Ok(report) => report,
            Err(f) => panic!("the sender failed: {}", f.message),
        }
    }

    fn receiver_report(&self) -> &receiver::Report {
        match self.receiver_done.as_ref().expect("the receiver is done") {
            Ok(report) => report,
            Err(f) => panic!("the receiver failed: {}", f.message),
        }
    }

    fn sender_failure(&self) -> (Kind, String) {
        match self.sender_done.as_ref().expect("the sender is done") {
            Err(f) => (f.kind, f.message.clone()),
            Ok(r) => panic!("the sender succeeded: {r:?}"),
        }
    }

    fn receiver_failure(&self) -> (Kind, String) {
        match self.receiver_done.as_ref().expect("the receiver is done") {
            Err(f) => (f.kind, f.message.clone()),
            Ok(r) => panic!("the receiver succeeded: {r:?}"),
        }
    }
}

#[test]
fn an_honest_transfer_moves_every_byte_and_ends_with_done() {
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut world = World::single("big.bin", &content);
    world.pair();
    world.run(Duration::from_secs(1));
    assert_eq!(
        world.sender_report(),
        &sender::Report {
            sent: content.len() as u64,
            already_there: 0
        }
    );
    assert!(matches!(world.receiver_done, Some(Ok(_))));
    assert_eq!(world.written[&0], content);
    assert!(world.placed);
    // Candidates trickled both ways, each after its side's SDP, none lost.
    assert_eq!(world.candidates_at_receiver.len(), 2);
    assert!(world.candidates_at_receiver[0].starts_with("candidate:s1"));
    assert_eq!(world.candidates_at_sender.len(), 1);
}

#[test]
fn folders_and_empty_files_travel_and_a_folders_only_offer_needs_no_frame() {
    let manifest = Manifest {
        entries: vec![
            Entry::dir("d"),
            Entry::file("d/a", 3),
            Entry::file("d/empty", 0),
        ],
    };
    let mut world = World::new(
        Offer::Files(manifest),
        vec![(1, b"abc".to_vec()), (2, Vec::new())],
    );
    world.pair();
    world.run(Duration::from_secs(1));
    assert!(matches!(world.receiver_done, Some(Ok(_))));
    assert_eq!(world.written[&1], b"abc");
    assert_eq!(world.written[&2], b"");

    let mut world = World::new(
        Offer::Files(Manifest {
            entries: vec![Entry::dir("only")],
        }),
        vec![],
    );
    world.pair();
    world.run(Duration::from_secs(1));
    assert!(world.sender_frames.is_empty());
    assert!(matches!(world.sender_done, Some(Ok(_))));
    assert!(world.placed);
}

#[test]
fn data_frames_follow_the_peers_message_size() {
    let content = vec![7u8; 200_000];
    let mut world = World::single("a", &content);
    world.link_max_message = 65_536;
    world.pair();
    world.run(Duration::from_secs(1));
    assert!(matches!(world.receiver_done, Some(Ok(_))));
    let largest = world.sender_frames.iter().map(Vec::len).max().unwrap();
    assert_eq!(largest, 65_536);
}

#[test]
fn a_text_is_shown_and_acknowledged() {
    let mut world = World::new(Offer::Text("hello".into()), vec![]);
    world.pair();
    world.run(Duration::from_secs(1));
    assert!(matches!(world.sender_done, Some(Ok(_))));
    assert_eq!(
        world.receiver_report(),
        &receiver::Report {
            text: Some(5),
            ..Default::default()
        }
    );
}

#[test]
fn a_matching_prefix_is_resumed_and_a_changed_one_restarts_at_zero() {
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 13) as u8).collect();
    let mut world = World::single("f", &content);
    world.kept = vec![(0, content[..400_000].to_vec())];
    world.pair();
    world.run(Duration::from_secs(1));
    assert_eq!(
        world.sender_report(),
        &sender::Report {
            sent: 600_000,
            already_there: 400_000
        }
    );
    assert_eq!(world.written[&0], content);
    assert_eq!(
        Frame::decode(&world.sender_frames[0]),
        Ok(Frame::Begin(400_000))
    );

    // The kept prefix differs from the sender's file: everything is sent again, no BEGIN.
    let mut world = World::single("f", &content);
    world.kept = vec![(0, vec![9u8; 400_000])];
    world.pair();
    world.run(Duration::from_secs(1));
    assert_eq!(
        world.sender_report(),
        &sender::Report {
            sent: 1_000_000,
            already_there: 0
        }
    );
    assert_eq!(world.written[&0], content);
    assert!(world.sender_frames.iter().all(|f| f[0] != 0x04));
}

#[test]
fn the_receiver_never_reveals_a_prefix_hash() {
    // The accept carries lengths only; the hash goes the other way, from the sender.
    let accept = Message::Accept {
        resume: vec![super::message::Kept {
            index: 0,
            offset: 3,
        }],
    };
    let json = String::from_utf8(accept.to_bytes()).unwrap();
    assert!(!json.contains("sha256"), "{json}");
}

#[test]
fn a_wrong_hash_fails_both_sides_and_discards_the_staging() {
    let mut world = World::single("f", b"hello");
    world.tamper = Some(Box::new(|frame: Vec<u8>| {
        Some(match Frame::decode(&frame) {
            Ok(Frame::End(_)) => Frame::End([0; 32]).encode(),
            _ => frame,
        })
    }));
    world.pair();
    world.run(Duration::from_secs(1));
    let (kind, message) = world.receiver_failure();
    assert_eq!(kind, Kind::Integrity);
    assert!(message.contains("SHA-256 of f does not match"), "{message}");
    assert!(world.discarded);
    assert!(!world.placed);
    assert_eq!(world.sender_failure().0, Kind::Integrity);
}

#[test]
fn more_or_fewer_bytes_than_announced_are_refused() {
    for (extra, expected) in [
        (1usize, "more bytes than announced"),
        (0, "after 4 of 5 bytes"),
    ] {
        let mut world = World::single("f", b"hello");
        world.tamper = Some(Box::new(move |frame: Vec<u8>| {
            if frame[0] != 0 {
                return Some(frame);
            }
            let mut lied = frame[..frame.len() - 1].to_vec();
            lied.extend(std::iter::repeat_n(b'!', extra * 2));
            Some(lied)
        }));
        world.pair();
        world.run(Duration::from_secs(1));
        let (kind, message) = world.receiver_failure();
        assert_eq!(kind, Kind::Integrity);
        assert!(message.contains(expected), "{message}");
        assert!(world.discarded);
    }
}

#[test]
fn undecodable_unknown_and_out_of_place_frames_are_violations() {
    for bad in [
        vec![],
        vec![0x7f],
        vec![0x02],
        vec![0x05; 17],
        vec![0x04, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let mut world = World::single("f", b"hello");
        let mut first = Some(bad.clone());
        world.tamper = Some(Box::new(move |frame: Vec<u8>| {
            Some(first.take().unwrap_or(frame))
        }));
        world.pair();
        world.run(Duration::from_secs(1));
        let (kind, message) = world.receiver_failure();
        assert_eq!(kind, Kind::Integrity, "{bad:?}: {message}");
        assert!(world.discarded, "{bad:?}");
    }
}

#[test]
fn nothing_the_sender_says_after_the_last_file_undoes_a_verified_transfer() {
    // While the receiver places the files: junk, a KEEPALIVE, a FAIL (the sender's Ctrl-C),
    // and the receiver's own Ctrl-C.
    for late in [
        Frame::Data(b"x").encode(),
        Frame::Keepalive.encode(),
        Frame::Fail(FailKind::Interrupted, "interrupted".into()).encode(),
    ] {
        let mut world = World::single("f", b"hi");
        world.hold_placing = true;
        world.pair();
        world.settle();
        assert!(world.place_asked, "the receiver never started placing");
        world
            .receiver
            .handle(world.now, receiver::Input::Frame(late));
        world.receiver.handle(world.now, receiver::Input::Interrupt);
        world
            .receiver
            .handle(world.now, receiver::Input::Placed(Ok(())));
        world.placed = true;
        world.run(Duration::from_secs(5));
        assert_eq!(world.receiver_report().received, 2);
        assert!(!world.discarded);
    }
}

#[test]
fn a_sender_that_ignores_the_window_is_stopped_within_it() {
    let content = vec![1u8; 64 * 1024 * 1024];
    let mut world = World::single("big", &content);
    world.writer_runs = false; // a stalled stdout: nothing is taken in, no ACK is sent
    world.pair();
    world.settle();
    // The honest sender stopped at the window (it grows only with ACKs).
    let sent: usize = world.sender_frames.iter().map(|f| f.len() - 1).sum();
    assert!(
        sent as u64 <= WINDOW + super::frame::MAX_DATA as u64,
        "{sent}"
    );
    assert!(world.receiver_done.is_none());
    // A hostile one goes on regardless, past the wide window both list.
    let frame = Frame::Data(&content[..super::frame::MAX_DATA]).encode();
    for _ in 0..=(WIDE_WINDOW as usize / super::frame::MAX_DATA + 1) {
        if world.receiver_done.is_some() {
            break;
        }
        world
            .receiver
            .handle(world.now, receiver::Input::Frame(frame.clone()));
        world.settle();
    }
    let (kind, message) = world.receiver_failure();
    assert_eq!(kind, Kind::Integrity);
    assert!(message.contains("flow-control window"), "{message}");
    // What waits for the writer never exceeds what was granted.
    let queued: usize = world
        .writes
        .iter()
        .map(|w| match w {
            Write::Data { frame, .. } => frame.len() - 1,
            _ => 0,
        })
        .sum();
    assert!(
        queued as u64 <= WIDE_WINDOW + 2 * super::frame::MAX_DATA as u64,
        "{queued}"
    );
}

/// A path for the sender's frames: `rate` bytes per second, then `one_way` of delay, and the
/// ACK for each frame `one_way` back; ICE measured `measured` as its round trip. Sends `size`
/// bytes; returns the most the sender had beyond its last ACK, and how long the last half of
/// the file took.
fn over_a_path(
    rate: f64,
    one_way: Duration,
    measured: Option<Duration>,
    size: usize,
) -> (u64, Duration) {
    let content = vec![7u8; size];
    let mut world = World::single("big", &content);
    world.path_rtt = measured;
    world.tamper = Some(Box::new(|_| None)); // the path below carries them
    world.pair();
    world.settle();
    let step = Duration::from_micros(250);
    let start = world.now;
    let (mut link_free_at, mut seen) = (start, 0);
    let mut acks: VecDeque<(Instant, Taken)> = VecDeque::new();
    let (mut sent, mut acked) = (Taken::default(), Taken::default());
    let (mut most, mut half_at) = (0, None);
    while acked.bytes < size as u64 {
        assert!(
            world.now - start < Duration::from_secs(60),
            "stuck at {acked:?}"
        );
        // New frames queue for the link; each one's ACK is due once it crossed and came back.
        for frame in &world.sender_frames[seen..] {
            let bytes = match Frame::decode(frame) {
                Ok(Frame::Data(data)) => data.len() as u64,
                _ => 0,
            };
            link_free_at =
                link_free_at.max(world.now) + Duration::from_secs_f64(bytes as f64 / rate);
            sent.bytes += bytes;
            sent.messages += 1;
            acks.push_back((link_free_at + 2 * one_way, sent));
        }
        seen = world.sender_frames.len();
        most = most.max(sent.bytes - acked.bytes);
        world.now += step;
        while acks.front().is_some_and(|(due, _)| *due <= world.now) {
            acked = acks.pop_front().unwrap().1;
            let ack = Frame::Ack(acked).encode();
            world.sender.handle(world.now, sender::Input::Frame(ack));
        }
        if half_at.is_none() && acked.bytes >= size as u64 / 2 {
            half_at = Some(world.now);
        }
        world.settle();
    }
    (most, world.now - half_at.unwrap())
}

#[test]
fn the_window_grows_to_a_long_path_and_stays_small_on_a_short_one() {
    let ms = Duration::from_millis;
    // A LAN: 500 MB/s, 0.5 ms each way. Data queues in front of the link, but the window
    // stays at its start, so that queue (the sender's memory) stays small.
    let lan = Duration::from_micros(500);
    let (most, _) = over_a_path(500e6, lan, Some(2 * lan), 64 << 20);
    assert!(most <= WINDOW + MAX_DATA as u64, "{most}");
    // 1 GB/s at 100 ms of round trip: the window grows to its ceiling, and the second half of
    // the file goes at 100 MB/s or more (16 MiB per round trip: 167 MB/s).
    let size = 96 << 20;
    let (most, second_half) = over_a_path(1e9, ms(50), Some(ms(100)), size);
    assert!(most > 10_000_000, "{most}");
    assert!(most <= WIDE_WINDOW + MAX_DATA as u64, "{most}");
    let rate = (size / 2) as f64 / second_half.as_secs_f64();
    assert!(rate >= 100e6, "{rate}");
    // Without a measured round trip the window keeps its start: 4 MiB per 100 ms.
    let (most, _) = over_a_path(1e9, ms(50), None, 16 << 20);
    assert!(most <= WINDOW + MAX_DATA as u64, "{most}");
}

#[test]
fn many_small_files_stay_within_the_message_window() {
    let entries: Vec<Entry> = (0..500).map(|i| Entry::file(&format!("f{i}"), 1)).collect();
    let files = (0..500).map(|i| (i, vec![i as u8])).collect();
    let mut world = World::new(Offer::Files(Manifest { entries }), files);
    world.writer_runs = false;
    world.pair();
    world.settle();
    assert!(world.sender_frames.len() as u64 <= WINDOW_MESSAGES);
    world.writer_runs = true;
    world.run(Duration::from_secs(1));
    assert!(matches!(world.receiver_done, Some(Ok(_))));
}

#[test]
fn a_receiver_that_takes_nothing_in_is_given_up_after_a_minute() {
    let content = vec![1u8; 16 * 1024 * 1024];
    let mut world = World::single("big", &content);
    world.writer_runs = false;
    world.pair();
    let start = world.now;
    world.run(Duration::from_secs(600));
    let (kind, message) = world.sender_failure();
    assert_eq!(kind, Kind::PeerGone);
    assert!(message.contains("stopped taking data"), "{message}");
    assert!(world.now - start >= super::engine::ACK_STALL);
    assert!(world.now - start < super::engine::ACK_STALL + Duration::from_secs(15));
}

#[test]
fn a_silent_sender_is_given_up_but_a_quiet_one_keeps_the_transfer() {
    // Silent: the frames stop and nothing else comes.
    let content = vec![1u8; 1_000_000];
    let mut world = World::single("f", &content);
    world.tamper = Some(Box::new(|_| None));
    world.pair();
    world.settle();
    // Hold the sender back: it produces no keepalive either (a hung or hostile sender).
    world.sender_done = Some(Err(crate::error::Failure::new(Kind::Internal, "held")));
    let start = world.now;
    world.run(Duration::from_secs(600));
    let (kind, message) = world.receiver_failure();
    assert_eq!(kind, Kind::PeerGone);
    assert!(message.contains("sent nothing for 60 s"), "{message}");
    assert!(world.now - start >= super::engine::SENDER_SILENCE);

    // Quiet: a stdin that has nothing for minutes; the sender's keepalives keep it going.
    let mut world = World::single("f", b"late");
    world.reader_runs = false; // nothing to read for five minutes
    world.pair();
    let resume_at = world.now + Duration::from_secs(300);
    loop {
        let (s, r) = world.settle();
        let next = [s, r].into_iter().flatten().min().unwrap();
        if next >= resume_at {
            break;
        }
        world.advance_to(next);
    }
    assert!(world.receiver_done.is_none(), "{:?}", world.receiver_done);
    assert!(world
        .sender_frames
        .iter()
        .any(|f| f == &Frame::Keepalive.encode()));
    world.reader_runs = true;
    world.run(Duration::from_secs(10));
    assert!(matches!(world.receiver_done, Some(Ok(_))));
}

#[test]
fn the_receivers_verdict_is_awaited_only_so_long() {
    let mut world = World::single("f", b"abc");
    // Every frame leaves, but nothing arrives and nothing comes back.
    world.tamper = Some(Box::new(|_| None));
    world.pair();
    world.settle();
    world.receiver_done = Some(Err(crate::error::Failure::new(Kind::Internal, "held")));
    world.run(Duration::from_secs(600));
    assert!(world.sender_failure().1.contains("never confirmed"));
}

#[test]
fn a_decline_and_a_peer_failure_reach_the_other_side_with_their_kind() {
    let mut world = World::single("f", b"abc");
    world.pair();
    // The receiver's user says no.
    loop {
        match world.receiver.poll_output() {
            receiver::Output::Ask { .. } => break,
            receiver::Output::Envelope(e) => {
                world.sender.handle(world.now, sender::Input::Envelope(e))
            }
            _ => {}
        }
        while let sender::Output::Envelope(e) = world.sender.poll_output() {
            world
                .receiver
                .handle(world.now, receiver::Input::Envelope(e));
        }
    }
    world.receiver.handle(
        world.now,
        receiver::Input::Decline(crate::error::Failure::new(
            Kind::Declined,
            "transfer declined",
        )),
    );
    world.run(Duration::from_secs(1));
    let (kind, message) = world.sender_failure();
    assert_eq!(kind, Kind::Declined);
    assert_eq!(message, "the receiver declined the transfer");

    // The receiver's disk fills mid-way: the sender hears "local I/O", the receiver discards.
    let mut world = World::single("f", &[5u8; 100_000]);
    world.pair();
    world.writer_runs = false;
    world.settle();
    let full = crate::error::local_io_failure(
        "cannot write f",
        std::io::Error::from(std::io::ErrorKind::StorageFull),
    );
    world
        .receiver
        .handle(world.now, receiver::Input::WriteFailed(full));
    world.run(Duration::from_secs(1));
    assert!(world.discarded);
    assert_eq!(world.sender_failure().0, Kind::PeerGone);
    assert!(world
        .sender_failure()
        .1
        .contains("could not be read or written"));
}

#[test]
fn an_interrupt_tells_the_peer_and_keeps_the_staging() {
    let mut world = World::single("f", &[5u8; 10_000_000]);
    world.pair();
    world.writer_runs = false;
    world.settle();
    world.sender.handle(world.now, sender::Input::Interrupt);
    world.run(Duration::from_secs(1));
    assert_eq!(world.sender_failure().0, Kind::Interrupted);
    let (kind, message) = world.receiver_failure();
    assert_eq!(kind, Kind::PeerGone);
    assert!(message.contains("the sender stopped"), "{message}");
    assert!(!world.discarded);
    let last = world.sender_frames.last().unwrap();
    assert!(matches!(
        Frame::decode(last),
        Ok(Frame::Fail(FailKind::Interrupted, _))
    ));
}

#[test]
fn timeouts_before_the_link_are_the_engines() {
    // Nobody arrives.
    let mut world = World::single("f", b"x");
    world.run(Duration::from_secs(601));
    assert_eq!(world.sender_failure().0, Kind::Timeout);
    assert_eq!(world.receiver_failure().0, Kind::Timeout);

    // The link never opens: both give up after the connect timeout.
    let mut world = World::single("f", b"x");
    world.pair();
    loop {
        match world.sender.poll_output() {
            sender::Output::Envelope(e) => world
                .receiver
                .handle(world.now, receiver::Input::Envelope(e)),
            sender::Output::CreateOffer { .. } => world
                .sender
                .handle(world.now, sender::Input::LocalSdp("offer".into())),
            sender::Output::ApplyAnswer(_) => break,
            _ => {}
        }
        loop {
            match world.receiver.poll_output() {
                receiver::Output::Envelope(e) => {
                    world.sender.handle(world.now, sender::Input::Envelope(e))
                }
                receiver::Output::Ask { .. } => world
                    .receiver
                    .handle(world.now, receiver::Input::Accept { kept: vec![] }),
                receiver::Output::Answer { .. } => world
                    .receiver
                    .handle(world.now, receiver::Input::LocalSdp("answer".into())),
                receiver::Output::Timeout(_) => break,
                _ => {}
            }
        }
    }
    let start = world.now;
    world.run(Duration::from_secs(60));
    assert_eq!(world.sender_failure().0, Kind::Connect);
    assert_eq!(world.receiver_failure().0, Kind::Connect);
    assert_eq!(world.now - start, super::engine::CONNECT_TIMEOUT);
}

#[test]
fn a_wrong_code_fails_both_sides_with_wrong_code() {
    let mut world = World::single("f", b"x");
    world.receiver = Receiver::new(Code::parse("7-guitar-oceam").unwrap(), world.now, WAIT);
    world.pair();
    world.run(Duration::from_secs(60));
    assert_eq!(world.sender_failure().0, Kind::WrongCode);
    assert_eq!(world.receiver_failure().0, Kind::WrongCode);
}

#[test]
fn a_hostile_resume_request_or_prefix_list_is_refused() {
    // The receiver asks to resume beyond the file's size.
    let mut world = World::single("f", b"abc");
    world.kept = vec![(0, b"abcd".to_vec())];
    world.pair();
    world.run(Duration::from_secs(120));
    assert_eq!(world.sender_failure().0, Kind::Integrity);
    assert!(world.sender_failure().1.contains("not offered"));
}

#[test]
fn every_unsafe_offer_is_rejected_before_the_user_is_asked() {
    for path in [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "a//b",
        "C:evil",
        "nul\0",
        ".",
    ] {
        let mut world = World::new(Offer::Files(Manifest::single(path, 1)), vec![(0, vec![1])]);
        world.pair();
        world.run(Duration::from_secs(1));
        let (kind, message) = world.receiver_failure();
        assert_eq!(kind, Kind::Integrity, "{path:?}");
        assert!(
            message.starts_with("refused the offer"),
            "{path:?}: {message}"
        );
        let (kind, message) = world.sender_failure();
        assert_eq!(kind, Kind::Declined, "{path:?}");
        assert!(
            message.contains("refused the transfer: the offer was refused as unsafe"),
            "{path:?}: {message}"
        );
        assert!(!world.placed && world.written.is_empty());
    }
}

#[test]
fn an_ack_for_more_than_was_sent_is_a_violation() {
    let mut world = World::single("f", &[1u8; 1000]);
    world.writer_runs = false;
    world.pair();
    world.settle();
    let lie = Frame::Ack(Taken {
        bytes: 1 << 30,
        messages: 1,
    });
    world
        .sender
        .handle(world.now, sender::Input::Frame(lie.encode()));
    world.run(Duration::from_secs(1));
    assert_eq!(world.sender_failure().0, Kind::Integrity);
    assert!(world
        .sender_failure()
        .1
        .contains("ACK for more than was sent"));
}

#[test]
fn a_receiver_leaving_the_rendezvous_while_connecting_gets_a_short_grace() {
    let mut world = World::single("f", b"x");
    world.pair();
    // Run the conversation up to the SDP answer, but never open the link.
    loop {
        match world.sender.poll_output() {
            sender::Output::Envelope(e) => world
                .receiver
                .handle(world.now, receiver::Input::Envelope(e)),
            sender::Output::CreateOffer { .. } => world
                .sender
                .handle(world.now, sender::Input::LocalSdp("offer".into())),
            sender::Output::ApplyAnswer(_) => break,
            _ => {}
        }
        loop {
            match world.receiver.poll_output() {
                receiver::Output::Envelope(e) => {
                    world.sender.handle(world.now, sender::Input::Envelope(e))
                }
                receiver::Output::Ask { .. } => world
                    .receiver
                    .handle(world.now, receiver::Input::Accept { kept: vec![] }),
                receiver::Output::Answer { .. } => world
                    .receiver
                    .handle(world.now, receiver::Input::LocalSdp("answer".into())),
                receiver::Output::Timeout(_) => break,
                _ => {}
            }
        }
    }
    let left = crate::error::Failure::new(Kind::PeerGone, "the other side left");
    world
        .sender
        .handle(world.now, sender::Input::RendezvousClosed(left));
    let sender::Output::Timeout(at) = world.sender.poll_output() else {
        panic!("the sender should wait")
    };
    assert_eq!(at - world.now, super::engine::LEFT_GRACE);
    world.now = at;
    world.sender.handle(world.now, sender::Input::Timeout);
    let failure = loop {
        match world.sender.poll_output() {
            sender::Output::Done(Err(failure)) => break failure,
            sender::Output::Envelope(_) => {} // the abort, for whoever still listens
            other => panic!("the sender should give up, not {other:?}"),
        }
    };
    assert_eq!(failure.message, "the other side left");
}

/// A receiver engine against a sender that is only a [`Conversation`]: the test says every
/// word the sender says, and hears every word the receiver answers.
struct Scripted {
    now: Instant,
    receiver: Receiver,
    sender: Conversation,
    heard: Vec<Message>,
    kept: Vec<KeptPrefix>,
    done: Option<Result<receiver::Report, crate::error::Failure>>,
    discarded: bool,
}

impl Scripted {
    /// Paired and past the key exchange.
    fn new(kept: Vec<KeptPrefix>) -> Scripted {
        let now = Instant::now();
        let mut scripted = Scripted {
            now,
            receiver: Receiver::new(code(), now, WAIT),
            sender: Conversation::start(&code(), Side::Sender),
            heard: Vec::new(),
            kept,
            done: None,
            discarded: false,
        };
        scripted.receiver.handle(now, receiver::Input::Paired);
        scripted.flush();
        assert!(scripted.sender.is_confirmed());
        scripted
    }

    /// Delivers the sender's envelopes and carries out the receiver's outputs until both rest.
    fn flush(&mut self) {
        loop {
            let mut busy = false;
            while let Some(envelope) = self.sender.poll_envelope() {
                self.receiver
                    .handle(self.now, receiver::Input::Envelope(envelope));
                busy = true;
            }
            match self.receiver.poll_output() {
                receiver::Output::Timeout(_) => {}
                receiver::Output::Envelope(e) => {
                    match self.sender.receive(&e) {
                        Ok(Some(message)) => self.heard.push(message),
                        Ok(None) => {}
                        // The conversation turns the peer's abort into its failure.
                        Err(failure) => self.heard.push(Message::Abort {
                            reason: failure.message,
                        }),
                    }
                    busy = true;
                }
                receiver::Output::Ask { .. } => {
                    let kept = self.kept.clone();
                    self.receiver
                        .handle(self.now, receiver::Input::Accept { kept });
                    busy = true;
                }
                receiver::Output::Discard => {
                    self.discarded = true;
                    busy = true;
                }
                receiver::Output::Done(result) => self.done = Some(result),
                _ => busy = true,
            }
            if !busy || self.done.is_some() {
                return;
            }
        }
    }

    fn say(&mut self, message: Message) {
        self.sender.send(&message).unwrap();
        self.flush();
    }

    fn failure(&self) -> &crate::error::Failure {
        match self.done.as_ref().expect("the receiver is done") {
            Err(failure) => failure,
            Ok(report) => panic!("the receiver succeeded: {report:?}"),
        }
    }
}

#[test]
fn malformed_prefixes_are_violations_and_keep_the_staging() {
    let kept = || {
        vec![KeptPrefix {
            index: 0,
            offset: 10,
            sha256: sha(&[3u8; 10]),
        }]
    };
    let prefix = |index: usize, sha256: Option<&str>| super::message::Prefix {
        index,
        sha256: sha256.map(str::to_string),
    };
    let good = super::hex(&sha(&[3u8; 10]));
    for (prefixes, why) in [
        (vec![prefix(0, Some("not hex"))], "not hex"),
        (vec![prefix(0, Some(&good.to_uppercase()))], "not hex"),
        (vec![prefix(1, Some(&good))], "not asked for"),
        (vec![], "not asked for"),
        (vec![prefix(0, None), prefix(0, None)], "not asked for"),
    ] {
        let mut scripted = Scripted::new(kept());
        scripted.say(Message::Offer {
            manifest: Manifest::single("f", 1000),
            more: false,
        });
        assert!(
            matches!(scripted.heard.last(), Some(Message::Accept { resume }) if resume.len() == 1)
        );
        scripted.say(Message::Prefixes { prefixes });
        let failure = scripted.failure();
        assert_eq!(failure.kind, Kind::Integrity);
        assert!(failure.message.contains(why), "{why}: {}", failure.message);
        // Nothing of this sender reached the disk: what an earlier attempt kept stays.
        assert!(!scripted.discarded);
    }

    // A matching hash agrees to resume; a null one (the file shrank) restarts at 0.
    for (sha256, agreed) in [(Some(good.as_str()), vec![0]), (None, vec![])] {
        let mut scripted = Scripted::new(kept());
        scripted.say(Message::Offer {
            manifest: Manifest::single("f", 1000),
            more: false,
        });
        scripted.say(Message::Prefixes {
            prefixes: vec![prefix(0, sha256)],
        });
        assert_eq!(
            scripted.heard.last(),
            Some(&Message::Resume { files: agreed })
        );
    }
}

#[test]
fn messages_out_of_order_are_violations() {
    let sdp = || Message::Sdp {
        kind: super::message::SdpKind::Offer,
        sdp: "v=0".into(),
    };
    // An SDP before any offer; a second offer after the decision.
    let mut scripted = Scripted::new(vec![]);
    scripted.say(sdp());
    assert_eq!(scripted.failure().kind, Kind::Integrity);
    assert!(scripted
        .failure()
        .message
        .contains("got sdp while waiting for an offer"));

    let mut scripted = Scripted::new(vec![]);
    scripted.say(Message::Offer {
        manifest: Manifest::single("f", 1),
        more: false,
    });
    scripted.say(Message::Resume { files: vec![] });
    assert!(scripted
        .failure()
        .message
        .contains("got resume while waiting for an SDP offer"));
    // The sender was told why.
    assert!(matches!(scripted.heard.last(), Some(Message::Abort { .. })));
}
