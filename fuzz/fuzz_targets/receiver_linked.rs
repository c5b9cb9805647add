//! The receiver after a real handshake, with its data channel open, fed what a hostile sender
//! and the receiver's own pump may produce: frames (well-formed for the current file, or not,
//! or any bytes), the writer taking in its queue, placing, closing, time.
//!
//! Besides never panicking and never outputting after `Done`, the receiver must keep its
//! memory bounded: what it queues for the writer stays within the window it granted (its last
//! ACK) plus one frame; it never acknowledges more than the writer took in; it asks to place
//! only complete files, and never discards them once placing began.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::frame::{FailKind, Frame, Taken, MAX_DATA, WINDOW, WINDOW_MESSAGES};
use mp::protocol::receiver::{Input, Output, Write};
use mp_fuzz::{failure, files, handshake, kept_bytes, HandshakeSpec, Watch};
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
enum Step {
    /// A DATA frame for the current file: `len` bytes (cut to a frame) of `byte`.
    Data {
        len: u32,
        byte: u8,
    },
    /// `count` such DATA frames in a row.
    Burst {
        count: u8,
        len: u32,
        byte: u8,
    },
    /// An END frame: the SHA-256 of what was sent of the current file, or `hash`.
    End {
        correct: bool,
        hash: [u8; 32],
    },
    /// A BEGIN frame: the agreed offset of the current file, or `offset`.
    Begin {
        agreed: bool,
        offset: u64,
    },
    Keepalive,
    Fail(u8, String),
    Ack(u64, u64),
    Done,
    Raw(Vec<u8>),
    /// The writer takes in this many queued writes.
    Write(u8),
    WriteFailed(u8),
    Placed(Option<u8>),
    LinkClosed,
    Interrupt,
    RendezvousClosed(u8),
    Envelope(Vec<u8>),
    /// Time moves on by this many milliseconds, then `Timeout`.
    Timeout(u32),
    /// Time moves on to the deadline the engine asked for, then `Timeout`.
    Deadline,
}

/// The receiver's writer, honest: it takes in writes in order and reports what it took.
#[derive(Default)]
struct Writer {
    queue: VecDeque<Write>,
    open: Option<(usize, Sha256, u64)>,
    /// Files finished: index → (length, SHA-256).
    finished: HashMap<usize, (u64, [u8; 32])>,
    taken: Taken,
}

/// What the receiver has been seen to do.
#[derive(Default)]
struct Seen {
    queued_bytes: u64,
    queued_messages: u64,
    granted: Taken,
    place_asked: bool,
    place_answered: bool,
    placed_ok: bool,
}

/// The hostile sender's view of the current file.
struct Mock {
    files: Vec<(usize, Option<u64>)>,
    current: usize,
    hasher: Option<Sha256>,
}

fuzz_target!(|input: (HandshakeSpec, Vec<Step>)| {
    let (spec, steps) = input;
    let Some(linked) = handshake(&spec) else {
        return;
    };
    let mut now = linked.now;
    let mut engine = linked.receiver;
    let all_files = files(&linked.manifest);
    let mut mock = Mock {
        files: all_files.clone(),
        current: 0,
        hasher: None,
    };
    let mut writer = Writer::default();
    let mut seen = Seen::default();
    let mut watch = Watch::default();
    let (outputs, mut deadline) = watch.receiver(&mut engine, now, false);
    for output in outputs {
        observe(output, &mut writer, &mut seen, &all_files);
    }
    for step in steps.into_iter().take(512) {
        let mut timeout = false;
        let mut inputs = Vec::new();
        match step {
            Step::Data { len, byte } => inputs.push(mock.data(len, byte)),
            Step::Burst { count, len, byte } => {
                for _ in 0..count % 64 {
                    inputs.push(mock.data(len, byte));
                }
            }
            Step::End { correct, hash } => {
                let sent = mock.hasher.take().unwrap_or_default().finalize().into();
                let hash = if correct { sent } else { hash };
                mock.current += 1;
                inputs.push(Input::Frame(Frame::End(hash).encode()));
            }
            Step::Begin { agreed, offset } => {
                let current = mock.files.get(mock.current).map(|f| f.0);
                let kept = current.and_then(|i| linked.agreed.get(&i).map(|&o| (i, o)));
                let offset = match kept {
                    Some((index, kept)) if agreed => {
                        let mut hasher = Sha256::new();
                        hasher.update(kept_bytes(index, kept));
                        mock.hasher = Some(hasher);
                        kept
                    }
                    _ => offset,
                };
                inputs.push(Input::Frame(Frame::Begin(offset).encode()));
            }
            Step::Keepalive => inputs.push(Input::Frame(Frame::Keepalive.encode())),
            Step::Fail(kind, reason) => {
                let kind = [
                    FailKind::Other,
                    FailKind::Integrity,
                    FailKind::LocalIo,
                    FailKind::Interrupted,
                ][kind as usize % 4];
                inputs.push(Input::Frame(Frame::Fail(kind, reason).encode()));
            }
            Step::Ack(bytes, messages) => {
                inputs.push(Input::Frame(Frame::Ack(Taken { bytes, messages }).encode()))
            }
            Step::Done => inputs.push(Input::Frame(Frame::Done.encode())),
            Step::Raw(bytes) => inputs.push(Input::Frame(bytes)),
            Step::Write(n) => {
                for _ in 0..n {
                    let Some(write) = writer.queue.pop_front() else {
                        break;
                    };
                    if let Some(written) = writer.take(write) {
                        inputs.push(written);
                    }
                    inputs.push(Input::Taken(writer.taken));
                }
            }
            Step::WriteFailed(kind) => inputs.push(Input::WriteFailed(failure(kind))),
            // Only the answer to `Place`, once.
            Step::Placed(placed) => {
                if !seen.place_asked || seen.place_answered {
                    continue;
                }
                seen.place_answered = true;
                seen.placed_ok = placed.is_none();
                inputs.push(Input::Placed(match placed {
                    None => Ok(()),
                    Some(kind) => Err(failure(kind)),
                }));
            }
            Step::LinkClosed => inputs.push(Input::LinkClosed),
            Step::Interrupt => inputs.push(Input::Interrupt),
            Step::RendezvousClosed(kind) => inputs.push(Input::RendezvousClosed(failure(kind))),
            Step::Envelope(bytes) => inputs.push(Input::Envelope(bytes)),
            Step::Timeout(ms) => {
                now += Duration::from_millis(ms.into());
                timeout = true;
                inputs.push(Input::Timeout);
            }
            Step::Deadline => {
                now = now.max(deadline);
                timeout = true;
                inputs.push(Input::Timeout);
            }
        }
        for input in inputs {
            engine.handle(now, input);
            let outputs;
            (outputs, deadline) = watch.receiver(&mut engine, now, timeout);
            for output in outputs {
                observe(output, &mut writer, &mut seen, &all_files);
            }
        }
    }
});

impl Mock {
    /// A DATA frame of the current file: `len` bytes (cut to a frame) of `byte`.
    fn data(&mut self, len: u32, byte: u8) -> Input {
        let len = len as usize % (MAX_DATA + 1);
        let mut frame = vec![byte; len + 1];
        frame[0] = 0;
        self.hasher
            .get_or_insert_with(Sha256::new)
            .update(&frame[1..]);
        Input::Frame(frame)
    }
}

impl Writer {
    /// Carries out one write, as the pump's writer thread does; the `Written` report when a
    /// file is complete.
    fn take(&mut self, write: Write) -> Option<Input> {
        match write {
            Write::Open { index, keep, begin } => {
                assert!(self.open.is_none(), "a file opened while another is open");
                let mut hasher = Sha256::new();
                hasher.update(kept_bytes(index, keep));
                self.open = Some((index, hasher, keep));
                self.taken.messages += u64::from(begin);
                None
            }
            Write::Data { index, frame } => {
                let (open, hasher, len) = self.open.as_mut().expect("data for no open file");
                assert_eq!(*open, index, "data for another file than the open one");
                hasher.update(&frame[1..]);
                *len += frame.len() as u64 - 1;
                self.taken.bytes += frame.len() as u64 - 1;
                self.taken.messages += 1;
                None
            }
            Write::End { index } => {
                let (open, hasher, len) = self.open.take().expect("the end of no open file");
                assert_eq!(open, index, "the end of another file than the open one");
                let sha256: [u8; 32] = hasher.finalize().into();
                self.finished.insert(index, (len, sha256));
                self.taken.messages += 1;
                Some(Input::Written { index, sha256 })
            }
        }
    }
}

fn observe(output: Output, writer: &mut Writer, seen: &mut Seen, files: &[(usize, Option<u64>)]) {
    match output {
        Output::Write(write) => {
            match &write {
                Write::Open { begin, .. } => seen.queued_messages += u64::from(*begin),
                Write::Data { frame, .. } => {
                    assert!(frame.len() > 1 && frame.len() <= MAX_DATA + 1);
                    seen.queued_bytes += frame.len() as u64 - 1;
                    seen.queued_messages += 1;
                }
                Write::End { .. } => seen.queued_messages += 1,
            }
            // Memory stays bounded by what the receiver granted.
            let beyond = seen.queued_bytes.saturating_sub(seen.granted.bytes);
            assert!(
                beyond < WINDOW + MAX_DATA as u64,
                "{beyond} bytes queued for writing beyond the last ACK"
            );
            let beyond = seen.queued_messages.saturating_sub(seen.granted.messages);
            assert!(
                beyond <= WINDOW_MESSAGES,
                "{beyond} messages queued for writing beyond the last ACK"
            );
            writer.queue.push_back(write);
        }
        Output::Frame(frame) => match Frame::decode(&frame).expect("the receiver's own frame") {
            Frame::Ack(taken) => {
                assert!(
                    taken.bytes <= writer.taken.bytes && taken.messages <= writer.taken.messages,
                    "an ACK of {taken:?} when the writer took {:?}",
                    writer.taken
                );
                seen.granted = taken;
            }
            Frame::Done => assert!(seen.placed_ok, "DONE before the files were placed"),
            Frame::Fail(..) => {}
            other => panic!("the receiver sent a {} frame", other.name()),
        },
        Output::Place => {
            assert!(!seen.place_asked, "placing asked twice");
            seen.place_asked = true;
            for (index, size) in files {
                let (len, _) = writer
                    .finished
                    .get(index)
                    .unwrap_or_else(|| panic!("placing before file {index} was written"));
                if let Some(size) = size {
                    assert_eq!(len, size, "placing file {index} of the wrong length");
                }
            }
        }
        Output::Discard => assert!(!seen.place_asked, "discarding verified files"),
        Output::Done(Ok(report)) => {
            assert!(seen.placed_ok, "success before the files were placed");
            assert!(report.text.is_none());
        }
        _ => {}
    }
}
