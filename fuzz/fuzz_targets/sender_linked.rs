//! The sender after a real handshake, with its data channel open, fed what a hostile
//! receiver and the sender's own pump may produce: frames (ACKs within what was sent or
//! beyond, DONE, FAIL, any bytes), chunks read as the pump reads them, closing, time.
//!
//! Besides never panicking and never outputting after `Done`, the sender must stay inside the
//! window the receiver granted, send only frames that decode, follow the plan it announced,
//! fail on an ACK for more than it sent, and succeed only once everything was sent and the
//! receiver said DONE.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::frame::{FailKind, Frame, Taken, WINDOW, WINDOW_MESSAGES};
use mp::protocol::manifest::Manifest;
use mp::protocol::sender::{Chunk, Input, Output, Planned};
use mp_fuzz::{check_plan, failure, handshake, HandshakeSpec, Watch};

#[derive(Arbitrary, Debug)]
enum Step {
    /// The pump reads the next piece (when the engine wants one): up to `len` bytes of the
    /// current file, or its end; `end` ends a stream.
    Read {
        len: u32,
        end: bool,
    },
    /// Up to `count` pieces of `len` bytes in a row, while the engine wants them.
    ReadMany {
        count: u8,
        len: u32,
    },
    ReadFailed(u8),
    /// An ACK: within what was sent (`honest`, scaled down) or anything.
    Ack {
        bytes: u64,
        messages: u64,
        honest: bool,
    },
    Done,
    Fail(u8, String),
    Raw(Vec<u8>),
    LinkClosed,
    Interrupt,
    RendezvousClosed(u8),
    Envelope(Vec<u8>),
    /// Time moves on by this many milliseconds, then `Timeout`.
    Timeout(u32),
    /// Time moves on to the deadline the engine asked for, then `Timeout`.
    Deadline,
}

/// The sender's pump reading files, honestly.
struct Reader {
    plan: Vec<Planned>,
    sizes: Vec<Option<u64>>,
    current: usize,
    /// Bytes of the current file read so far (from its start).
    at: u64,
    max_data: usize,
}

/// What the receiver's side has seen.
#[derive(Default)]
struct Seen {
    sent: Taken,
    acked: Taken,
    done_sent: bool,
    /// DATA bytes of the current file, and which file.
    in_file: u64,
    ends: usize,
}

fuzz_target!(|input: (HandshakeSpec, Vec<Step>)| {
    let (spec, steps) = input;
    let Some(linked) = handshake(&spec) else {
        return;
    };
    let mp_fuzz::Linked {
        now,
        sender: mut engine,
        manifest,
        agreed,
        ..
    } = linked;
    let mut now = now;
    let linked = (&manifest, &agreed);
    let mut reader: Option<Reader> = None;
    let mut seen = Seen::default();
    let mut watch = Watch::default();
    let (outputs, mut deadline) = watch.sender(&mut engine, now, false);
    for output in outputs {
        observe(output, &mut reader, &mut seen, linked);
    }
    for step in steps.into_iter().take(512) {
        let mut timeout = false;
        let mut over_ack = false;
        let input = match step {
            Step::Read { len, end } => match reader.as_mut() {
                Some(reader) if engine.wants_chunk() => reader.next(len, end),
                _ => continue,
            },
            Step::ReadMany { count, len } => {
                for _ in 0..count {
                    let Some(input) = reader
                        .as_mut()
                        .filter(|_| engine.wants_chunk())
                        .map(|r| r.next(len, false))
                    else {
                        break;
                    };
                    engine.handle(now, input);
                    let outputs;
                    (outputs, deadline) = watch.sender(&mut engine, now, false);
                    for output in outputs {
                        observe(output, &mut reader, &mut seen, linked);
                    }
                }
                continue;
            }
            // Only while there is something to read.
            Step::ReadFailed(kind) => match &reader {
                Some(r) if r.current < r.plan.len() => Input::Chunk(Chunk::Failed(failure(kind))),
                _ => continue,
            },
            Step::Ack {
                bytes,
                messages,
                honest,
            } => {
                let taken = if honest {
                    Taken {
                        bytes: bytes % (seen.sent.bytes + 1),
                        messages: messages % (seen.sent.messages + 1),
                    }
                } else {
                    Taken { bytes, messages }
                };
                if taken.bytes > seen.sent.bytes || taken.messages > seen.sent.messages {
                    over_ack = true;
                } else {
                    seen.acked.bytes = seen.acked.bytes.max(taken.bytes);
                    seen.acked.messages = seen.acked.messages.max(taken.messages);
                }
                Input::Frame(Frame::Ack(taken).encode())
            }
            Step::Done => {
                seen.done_sent = true;
                Input::Frame(Frame::Done.encode())
            }
            Step::Fail(kind, reason) => {
                let kind = [
                    FailKind::Other,
                    FailKind::Integrity,
                    FailKind::LocalIo,
                    FailKind::Interrupted,
                ][kind as usize % 4];
                Input::Frame(Frame::Fail(kind, reason).encode())
            }
            Step::Raw(bytes) => Input::Frame(bytes),
            Step::LinkClosed => Input::LinkClosed,
            Step::Interrupt => Input::Interrupt,
            Step::RendezvousClosed(kind) => Input::RendezvousClosed(failure(kind)),
            Step::Envelope(bytes) => Input::Envelope(bytes),
            Step::Timeout(ms) => {
                now += Duration::from_millis(ms.into());
                timeout = true;
                Input::Timeout
            }
            Step::Deadline => {
                now = now.max(deadline);
                timeout = true;
                Input::Timeout
            }
        };
        let was_done = watch.done;
        engine.handle(now, input);
        let outputs;
        (outputs, deadline) = watch.sender(&mut engine, now, timeout);
        for output in outputs {
            observe(output, &mut reader, &mut seen, linked);
        }
        if over_ack && !was_done {
            assert!(watch.done, "the sender took an ACK for more than it sent");
        }
    }
});

impl Reader {
    /// The next piece: up to `len` bytes of the current file, or its end (`end` ends a
    /// stream).
    fn next(&mut self, len: u32, end: bool) -> Input {
        let Some(planned) = self.plan.get(self.current).copied() else {
            panic!("the sender wants a chunk after the last file");
        };
        if self.at == 0 {
            self.at = planned.start;
        }
        let size = self.sizes[self.current];
        let left = size.map_or(u64::MAX, |size| size - self.at);
        if left == 0 || (end && size.is_none()) {
            self.current += 1;
            self.at = 0;
            return Input::Chunk(Chunk::End {
                index: planned.index,
                sha256: [1; 32],
            });
        }
        let len = (len as u64 % self.max_data as u64 + 1).min(left);
        self.at += len;
        let mut frame = vec![0xab; len as usize + 1];
        frame[0] = 0;
        Input::Chunk(Chunk::Data {
            index: planned.index,
            frame,
        })
    }
}

fn observe(
    output: Output,
    reader: &mut Option<Reader>,
    seen: &mut Seen,
    (manifest, agreed): (&Manifest, &HashMap<usize, u64>),
) {
    match output {
        Output::StartReading { plan, max_data } => {
            assert!(reader.is_none(), "reading started twice");
            check_plan(&plan, manifest, agreed);
            assert!(max_data >= 1 && max_data < mp::protocol::frame::MAX_MESSAGE);
            let sizes = plan
                .iter()
                .map(|p| manifest.entries[p.index].size)
                .collect();
            *reader = Some(Reader {
                plan,
                sizes,
                current: 0,
                at: 0,
                max_data,
            });
        }
        Output::Frame(frame) => {
            let decoded = Frame::decode(&frame).expect("the sender's own frame decodes");
            let max_data = reader.as_ref().map_or(0, |r| r.max_data);
            match decoded {
                Frame::Data(payload) => {
                    assert!(payload.len() <= max_data);
                    seen.sent.bytes += payload.len() as u64;
                    seen.sent.messages += 1;
                    seen.in_file += payload.len() as u64;
                }
                Frame::End(_) => {
                    seen.sent.messages += 1;
                    seen.in_file = 0;
                    seen.ends += 1;
                }
                Frame::Begin(_) => seen.sent.messages += 1,
                Frame::Keepalive | Frame::Fail(..) => {}
                other => panic!("the sender sent a {} frame", other.name()),
            }
            // Inside the window the receiver granted: checked before each frame, so at most
            // one frame beyond it.
            let beyond = seen.sent.bytes.saturating_sub(seen.acked.bytes);
            assert!(
                beyond < WINDOW + max_data as u64,
                "{beyond} DATA bytes beyond the last ACK"
            );
            let beyond = seen.sent.messages.saturating_sub(seen.acked.messages);
            assert!(
                beyond <= WINDOW_MESSAGES,
                "{beyond} messages beyond the last ACK"
            );
        }
        Output::Done(Ok(report)) => {
            assert!(seen.done_sent, "success without the receiver's DONE");
            let files = mp_fuzz::files(manifest).len();
            assert_eq!(seen.ends, files, "success before every file was sent");
            assert_eq!(report.sent, seen.sent.bytes);
        }
        _ => {}
    }
}
