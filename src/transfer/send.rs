//! `mp send`: offer files, folders, stdin or a text, and stream the bytes once accepted.
//!
//! A reading thread reads ahead, hashes and frames the files in manifest order; a pump task
//! hands frames to the data channel, whose bounded send buffer pushes back on both. Memory
//! stays a few MiB whatever the size of the transfer.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::source::{Origin, Source};
use super::{
    public_reason, take_over_interrupt, unexpected, NetOptions, Signaling, CONNECT_TIMEOUT,
    STEP_TIMEOUT,
};
use crate::error::{fail, local_io, Kind};
use crate::peer::{ended, send_last, Peer};
use crate::protocol::code::{Code, MAX_GENERATED_ROOM};
use crate::protocol::frame::{
    data_len, FailKind, Frame, Taken, DATA_TYPE, WINDOW, WINDOW_MESSAGES,
};
use crate::protocol::hex;
use crate::protocol::manifest::display;
use crate::protocol::message::{offer_messages, Message, SdpKind, MAX_TEXT};
use crate::protocol::pake::Side;
use crate::protocol::seal::MAX_MESSAGE;
use crate::signal::client::{Join, SignalClient};
use crate::ui::{size, Progress, Ui};

/// Frames read ahead of the data channel.
const READ_AHEAD: usize = 8;
/// How often a generated code is redrawn when its room is busy.
const ROOM_ATTEMPTS: usize = 20;
/// How long the sender waits for the receiver to take in more data before giving up.
const ACK_STALL: Duration = Duration::from_secs(60);
/// How long to wait for the receiver's verdict once every byte is sent.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

/// What to send.
pub enum What {
    Paths(Vec<PathBuf>),
    /// Standard input, offered under this name.
    Stdin(String),
    Text(String),
}

/// What `mp send` was asked to do.
pub struct SendArgs {
    pub net: NetOptions,
    pub what: What,
    pub code: Option<String>,
    /// Shown in the receive hint when the URL did not come from the environment.
    pub signal_hint: Option<String>,
}

pub async fn run(args: SendArgs, ui: Ui) -> anyhow::Result<()> {
    // Everything local is checked before anyone is kept waiting.
    let source = match &args.what {
        // Escaping may grow a text in JSON: what must fit is the message as sealed.
        What::Text(text)
            if text.len() > MAX_TEXT
                || Message::Text { text: text.clone() }.to_bytes().len() > MAX_MESSAGE =>
        {
            return Err(fail(
                Kind::Usage,
                format!("--text is limited to {MAX_TEXT} bytes; send a file instead"),
            ))
        }
        What::Text(_) => None,
        What::Stdin(name) => Some(Source::stdin(name)?),
        What::Paths(paths) => {
            // A large tree takes a while to walk: keep it off the runtime (Ctrl-C stays live).
            let paths = paths.clone();
            Some(tokio::task::spawn_blocking(move || Source::paths(&paths)).await??)
        }
    };
    let offer = match source {
        Some(source) => {
            let summary = source
                .manifest
                .validate()
                .map_err(|e| fail(Kind::Usage, format!("cannot send this: {e}")))?;
            for skipped in &source.skipped {
                ui.warn(&format!("skipping {skipped}"));
            }
            Some((source, summary))
        }
        None => None,
    };

    let (mut client, code) = join(&args.net.signal, args.code.as_deref()).await?;
    ui.show_code(&code, args.signal_hint.as_deref());
    ui.event("waiting", json!({}));
    client.wait_paired(args.net.wait).await?;
    ui.event("paired", json!({}));
    let mut signaling = Signaling::handshake(client, &code, Side::Sender).await?;

    let Some((source, summary)) = offer else {
        let What::Text(text) = args.what else {
            unreachable!("only a text has no source")
        };
        return send_text(signaling, text, &ui).await;
    };

    let connected = match negotiate(&mut signaling, &source, &args.net, &ui).await {
        Ok(connected) => connected,
        Err(err) => {
            signaling.abort(&public_reason(&err)).await;
            return Err(err);
        }
    };
    signaling.close().await;
    let (peer, channel, resume) = connected;
    ui.event("connected", json!({}));

    let name = source.manifest.title(&summary);
    let progress = ui.progress(summary.bytes, &name);
    let started = Instant::now();
    let result = stream(&peer, channel, source, resume, &progress).await;
    progress.finish();
    peer.close().await;
    result?;
    let sent = progress.bytes();
    ui.event(
        "finished",
        json!({ "bytes": sent, "seconds": crate::ui::seconds(started.elapsed()) }),
    );
    ui.status(&format!("Sent {name} ({}).", size(sent)));
    Ok(())
}

async fn send_text(mut signaling: Signaling, text: String, ui: &Ui) -> anyhow::Result<()> {
    signaling.send(&Message::Text { text }).await?;
    match signaling.recv_within(STEP_TIMEOUT).await? {
        Message::Accept { .. } => {}
        Message::Reject { reason } => return Err(declined(&reason)),
        other => return Err(unexpected(&other, "accept")),
    }
    signaling.close().await;
    ui.event("finished", json!({}));
    ui.status("Text sent.");
    Ok(())
}

fn declined(reason: &str) -> anyhow::Error {
    fail(
        Kind::Declined,
        format!("the receiver declined: {}", display(reason)),
    )
}

type Connected = (Peer, Arc<dyn DataChannel>, HashMap<usize, (u64, String)>);

/// Offer, answer, SDPs: everything up to an open data channel.
async fn negotiate(
    signaling: &mut Signaling,
    source: &Source,
    net: &NetOptions,
    ui: &Ui,
) -> anyhow::Result<Connected> {
    for offer in offer_messages(&source.manifest) {
        signaling.send(&offer).await?;
    }
    ui.status("Waiting for the receiver to accept…");
    let resume = match signaling.recv().await? {
        Message::Accept { resume } => resume,
        Message::Reject { reason } => return Err(declined(&reason)),
        other => return Err(unexpected(&other, "accept")),
    };
    ui.event("accepted", json!({ "resuming": resume.len() }));
    let mut wanted = HashMap::new();
    for r in resume {
        let is_sized_file = source
            .manifest
            .entries
            .get(r.index)
            .is_some_and(|e| e.is_file() && e.size.is_some_and(|s| r.offset <= s));
        if !is_sized_file {
            return Err(fail(
                Kind::Integrity,
                "the receiver asked to resume a file that is not offered",
            ));
        }
        wanted.insert(r.index, (r.offset, r.sha256));
    }

    let mut peer = Peer::new(&net.peer_options()).await?;
    let connected = async {
        let (channel, sdp) = peer.offer().await?;
        signaling
            .send(&Message::Sdp {
                kind: SdpKind::Offer,
                sdp,
            })
            .await?;
        match signaling.recv_within(STEP_TIMEOUT).await? {
            Message::Sdp {
                kind: SdpKind::Answer,
                sdp,
            } => peer.apply_answer(sdp).await?,
            other => return Err(unexpected(&other, "an SDP answer")),
        }
        signaling.watch_while(wait_open(&peer, &channel)).await?;
        Ok(channel)
    }
    .await;
    match connected {
        Ok(channel) => Ok((peer, channel, wanted)),
        Err(err) => {
            // Close, so the other side is not left waiting for ICE to time out.
            peer.close().await;
            Err(err)
        }
    }
}

/// Joins a room: the caller's code, or a fresh one (redrawing the room while it is busy).
async fn join(url: &str, code: Option<&str>) -> anyhow::Result<(SignalClient, Code)> {
    if let Some(text) = code {
        let code = Code::parse(text).map_err(|e| fail(Kind::Usage, e.to_string()))?;
        return match SignalClient::join(url, code.room(), Side::Sender).await? {
            Join::Joined(client) => Ok((*client, code)),
            Join::Busy => Err(fail(
                Kind::RoomFull,
                format!("the code {code} is already in use on the server; pick another"),
            )),
        };
    }
    let mut code = Code::generate();
    for _ in 0..ROOM_ATTEMPTS {
        if let Join::Joined(client) = SignalClient::join(url, code.room(), Side::Sender).await? {
            return Ok((*client, code));
        }
        let room = rand::Rng::gen_range(&mut rand::rngs::OsRng, 1..=MAX_GENERATED_ROOM);
        code = code.with_room(room);
    }
    Err(fail(
        Kind::RoomFull,
        "every room tried on the signaling server is busy; try again later",
    ))
}

/// Waits until the data channel is open, or the connection fails.
async fn wait_open(peer: &Peer, channel: &Arc<dyn DataChannel>) -> anyhow::Result<()> {
    let mut state = peer.state();
    let open = crate::peer::wait_open(channel);
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT, async {
        tokio::select! {
            opened = open => opened,
            _ = ended(&mut state) => Err(()),
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        _ => Err(fail(
            Kind::Connect,
            "no direct connection could be established with the receiver",
        )),
    }
}

/// Streams every file and waits for the receiver's verdict.
async fn stream(
    peer: &Peer,
    channel: Arc<dyn DataChannel>,
    source: Source,
    resume: HashMap<usize, (u64, String)>,
    progress: &Progress,
) -> anyhow::Result<()> {
    take_over_interrupt();
    let (frames_tx, mut frames_rx) = mpsc::channel::<BytesMut>(READ_AHEAD);
    let reader_progress = progress.clone();
    let frames = Frames {
        tx: frames_tx,
        max_data: peer.max_message() - 1,
    };
    let mut reader =
        tokio::task::spawn_blocking(move || read_frames(source, resume, frames, &reader_progress));

    // What the receiver has acknowledged taking in; the pump stays within WINDOW of it.
    let (acked_tx, mut acked_rx) = watch::channel(Taken::default());
    let pump_channel = channel.clone();
    let pump_progress = progress.clone();
    let mut pump = tokio::spawn(async move {
        let mut sent = Taken::default();
        while let Some(frame) = frames_rx.recv().await {
            let data = data_len(&frame);
            let room = acked_rx.wait_for(|acked| {
                sent.bytes.saturating_sub(acked.bytes) < WINDOW
                    && sent.messages.saturating_sub(acked.messages) < WINDOW_MESSAGES
            });
            match tokio::time::timeout(ACK_STALL, room).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break, // the transfer ended
                Err(_) => return Err(Stop::Stalled),
            }
            pump_channel.send(frame).await.map_err(|_| Stop::Closed)?;
            sent.bytes += data;
            sent.messages += 1;
            pump_progress.inc(data);
        }
        Ok::<(), Stop>(())
    });

    let mut state = peer.state();
    let mut pumped = false;
    // Registered once, so a Ctrl-C that arrives while the loop is busy is not lost.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let lost = || fail(Kind::PeerGone, "the connection to the receiver was lost");
    let verdict_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(verdict_deadline);
    let outcome = loop {
        tokio::select! {
            done = &mut pump, if !pumped => {
                pumped = true;
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(Stop::Stalled)) => break Err(fail(
                        Kind::PeerGone,
                        format!("the receiver stopped taking data for {} s", ACK_STALL.as_secs()),
                    )),
                    _ => break last_word(&channel).await.unwrap_or_else(|| Err(lost())),
                }
                verdict_deadline.as_mut().reset(tokio::time::Instant::now() + VERDICT_TIMEOUT);
            }
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => match Frame::decode(&message.data) {
                    Ok(Frame::Done) => {
                        // The verdict may be read before the pump's end is noticed.
                        if !pumped && !matches!((&mut pump).await, Ok(Ok(()))) {
                            break Err(lost());
                        }
                        break Ok(());
                    }
                    Ok(Frame::Ack(taken)) => {
                        acked_tx.send_if_modified(|acked| {
                            let newer = taken.bytes > acked.bytes || taken.messages > acked.messages;
                            acked.bytes = acked.bytes.max(taken.bytes);
                            acked.messages = acked.messages.max(taken.messages);
                            newer
                        });
                        // The receiver is alive (it acknowledges while it syncs and places).
                        if pumped {
                            verdict_deadline.as_mut().reset(tokio::time::Instant::now() + VERDICT_TIMEOUT);
                        }
                    }
                    Ok(Frame::Fail(kind, reason)) => break Err(receiver_failed(kind, &reason)),
                    _ => break Err(fail(Kind::Integrity, "the receiver sent an unexpected frame")),
                },
                Some(DataChannelEvent::OnClose) | None => {
                    break Err(fail(Kind::PeerGone, "the receiver closed the connection"));
                }
                Some(_) => {}
            },
            _ = ended(&mut state) => break last_word(&channel).await.unwrap_or_else(|| Err(lost())),
            _ = &mut interrupt => {
                pump.abort();
                let stop = Frame::Fail(FailKind::Interrupted, "the sender was interrupted".into());
                send_last(&channel, stop).await;
                break Err(fail(Kind::Interrupted, "interrupted"));
            }
            _ = &mut verdict_deadline => {
                break Err(fail(Kind::PeerGone, "the receiver never confirmed the transfer"));
            }
        }
    };
    pump.abort();
    // A local read error is the more useful message; the reader stops once its queue closes.
    drop(pump);
    // A local read error is the real story even if the receiver had its say.
    if let Ok(Ok(Err(read_error))) = tokio::time::timeout(Duration::from_secs(1), &mut reader).await
    {
        return Err(read_error);
    }
    outcome
}

/// Why the pump stopped early.
enum Stop {
    /// The data channel refused a frame: the connection is going away.
    Closed,
    /// The receiver acknowledged nothing for [`ACK_STALL`].
    Stalled,
}

/// The receiver's FAIL as an error for our user.
fn receiver_failed(kind: FailKind, reason: &str) -> anyhow::Error {
    let kind = match kind {
        FailKind::Integrity => Kind::Integrity,
        _ => Kind::PeerGone,
    };
    fail(kind, format!("the receiver stopped: {}", display(reason)))
}

/// When the connection breaks, the receiver's verdict (a FAIL saying why, or even DONE) may
/// still be queued: look for it briefly.
async fn last_word(channel: &Arc<dyn DataChannel>) -> Option<anyhow::Result<()>> {
    let look = async {
        loop {
            match channel.poll().await? {
                DataChannelEvent::OnMessage(message) => match Frame::decode(&message.data) {
                    Ok(Frame::Fail(kind, reason)) => {
                        return Some(Err(receiver_failed(kind, &reason)))
                    }
                    Ok(Frame::Done) => return Some(Ok(())),
                    _ => {}
                },
                DataChannelEvent::OnClose => return None,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(500), look)
        .await
        .ok()
        .flatten()
}

/// Where the reading thread puts frames, and how large a DATA payload the peer accepts.
struct Frames {
    tx: mpsc::Sender<BytesMut>,
    max_data: usize,
}

/// The reading thread: for each file, BEGIN (when resuming), DATA frames, END with its SHA-256.
fn read_frames(
    source: Source,
    resume: HashMap<usize, (u64, String)>,
    frames: Frames,
    progress: &Progress,
) -> anyhow::Result<()> {
    let send = |frame: Frame| {
        frames
            .tx
            .blocking_send(frame.encode().as_slice().into())
            .is_ok()
    };
    let entries = source.manifest.entries.iter().zip(source.origins);
    for (index, (entry, origin)) in entries.enumerate() {
        let sent = match origin {
            None => continue,
            Some(Origin::Stdin) => send_stream(
                &mut std::io::stdin().lock(),
                Sha256::new(),
                &frames,
                "cannot read standard input",
                None,
            )
            .map(|sent| sent.map(|(_, hash)| hash)),
            Some(Origin::Path(path)) => {
                let expected = entry.size.unwrap_or(0);
                send_path(
                    &path,
                    false,
                    expected,
                    resume.get(&index),
                    &frames,
                    progress,
                )
            }
            Some(Origin::Walked(path)) => {
                let expected = entry.size.unwrap_or(0);
                send_path(&path, true, expected, resume.get(&index), &frames, progress)
            }
        };
        match sent {
            Ok(Some(hash)) => {
                if !send(Frame::End(hash)) {
                    return Ok(());
                }
            }
            // The transfer ended meanwhile; the caller reports why.
            Ok(None) => return Ok(()),
            Err(err) => {
                let _ = send(Frame::Fail(FailKind::LocalIo, public_reason(&err)));
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Sends one file of `expected` bytes, continuing after the receiver's prefix when it matches
/// ours; returns its SHA-256.
fn send_path(
    path: &std::path::Path,
    walked: bool,
    expected: u64,
    resume: Option<&(u64, String)>,
    frames: &Frames,
    progress: &Progress,
) -> anyhow::Result<Option<[u8; 32]>> {
    let what = format!("cannot read {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if walked {
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a link, and without blocking on a FIFO swapped in after the walk.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(path).map_err(|e| local_io(&what, e))?;
    if !file.metadata().map_err(|e| local_io(&what, e))?.is_file() {
        return Err(fail(
            Kind::LocalIo,
            format!("{} is no longer a regular file", path.display()),
        ));
    }
    let mut hasher = Sha256::new();
    let mut start = 0;
    if let Some((offset, theirs)) = resume {
        let copied = std::io::copy(&mut (&mut file).take(*offset), &mut hasher)
            .map_err(|e| local_io(&what, e))?;
        if copied == *offset && hex(&hasher.clone().finalize()) == *theirs {
            start = *offset;
        } else {
            hasher = Sha256::new();
            file.rewind().map_err(|e| local_io(&what, e))?;
        }
        let begin = Frame::Begin(start).encode();
        if frames.tx.blocking_send(begin.as_slice().into()).is_err() {
            return Ok(None);
        }
        progress.inc(start);
    }
    let remaining = expected - start;
    let input = &mut (&mut file).take(remaining);
    let Some((sent, hash)) = send_stream(input, hasher, frames, &what, Some(remaining))? else {
        return Ok(None);
    };
    let grew = file.read(&mut [0u8; 1]).is_ok_and(|n| n > 0);
    if sent != remaining || grew {
        return Err(fail(
            Kind::LocalIo,
            format!("{} changed while being sent", path.display()),
        ));
    }
    Ok(Some(hash))
}

/// Sends the rest of `input` as DATA frames; returns the bytes sent and the final hash, or
/// `None` when the transfer ended meanwhile.
fn send_stream(
    input: &mut dyn Read,
    mut hasher: Sha256,
    frames: &Frames,
    what: &str,
    length: Option<u64>,
) -> anyhow::Result<Option<(u64, [u8; 32])>> {
    let mut sent: u64 = 0;
    loop {
        // A frame no larger than what is left: a small file must not pin a full-size buffer
        // while SCTP holds it.
        let want = length.map_or(frames.max_data, |length| {
            (length - sent).min(frames.max_data as u64) as usize
        });
        if want == 0 {
            return Ok(Some((sent, hasher.finalize().into())));
        }
        let mut frame = BytesMut::zeroed(1 + want);
        frame[0] = DATA_TYPE;
        let mut filled = 1;
        // Fill the frame completely unless the input ends: fewer, larger messages.
        while filled < frame.len() {
            match input.read(&mut frame[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(local_io(what, e)),
            }
        }
        if filled == 1 {
            return Ok(Some((sent, hasher.finalize().into())));
        }
        frame.truncate(filled);
        hasher.update(&frame[1..]);
        sent += (filled - 1) as u64;
        if frames.tx.blocking_send(frame).is_err() {
            return Ok(None);
        }
    }
}
