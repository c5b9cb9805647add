//! `mp send FILE`: offer a file, and stream it once the receiver accepts.
//!
//! A reading thread reads ahead, hashes and frames the file; a pump task hands frames to the
//! data channel, whose bounded send buffer pushes back on both. Memory stays a few MiB whatever
//! the file size.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::{unexpected, NetOptions, Signaling, CONNECT_TIMEOUT};
use crate::error::{fail, local_io, Kind};
use crate::peer::{ended, Peer, PeerOptions};
use crate::protocol::code::{Code, MAX_GENERATED_ROOM};
use crate::protocol::frame::{Frame, DATA_TYPE, MAX_DATA};
use crate::protocol::manifest::{display, Manifest};
use crate::protocol::message::{Message, SdpKind};
use crate::protocol::pake::Side;
use crate::signal::client::{Join, SignalClient};
use crate::ui::{size, Ui};

/// Frames read ahead of the data channel.
const READ_AHEAD: usize = 8;
/// How often a generated code is redrawn when its room is busy.
const ROOM_ATTEMPTS: usize = 20;
/// How long to wait for the receiver's verdict once every byte is sent.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

/// What `mp send` was asked to do.
pub struct SendArgs {
    pub net: NetOptions,
    pub path: PathBuf,
    pub code: Option<String>,
    /// Shown in the receive hint when the URL did not come from the environment.
    pub signal_hint: Option<String>,
}

pub async fn run(args: SendArgs, ui: Ui) -> anyhow::Result<()> {
    let what = format!("cannot read {}", args.path.display());
    let meta = std::fs::metadata(&args.path).map_err(|e| local_io(&what, e))?;
    if !meta.is_file() {
        return Err(fail(
            Kind::Usage,
            format!("{} is not a regular file", args.path.display()),
        ));
    }
    let name = args
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| fail(Kind::Usage, "the file name must be valid UTF-8"))?
        .to_string();
    let file_size = meta.len();
    // Open now, so a permission problem shows before anyone waits.
    let file = std::fs::File::open(&args.path).map_err(|e| local_io(&what, e))?;

    let (client, code) = join(&args.net.signal, args.code.as_deref()).await?;
    ui.show_code(&code, args.signal_hint.as_deref());
    let mut client = client;
    client.wait_paired(args.net.wait).await?;
    let mut signaling = Signaling::handshake(client, &code, Side::Sender).await?;

    signaling
        .send(&Message::Offer {
            manifest: Manifest::single(&name, file_size),
        })
        .await?;
    ui.status("Waiting for the receiver to accept…");
    match signaling.recv().await? {
        Message::Accept => {}
        Message::Reject { reason } => {
            return Err(fail(
                Kind::Declined,
                format!("the receiver declined: {}", display(&reason)),
            ))
        }
        other => return Err(unexpected(&other, "accept")),
    }

    let mut peer = Peer::new(&PeerOptions {
        bind: args.net.bind.clone(),
    })
    .await?;
    let (channel, sdp) = peer.offer().await?;
    signaling
        .send(&Message::Sdp {
            kind: SdpKind::Offer,
            sdp,
        })
        .await?;
    match signaling.recv().await? {
        Message::Sdp {
            kind: SdpKind::Answer,
            sdp,
        } => peer.apply_answer(sdp).await?,
        other => return Err(unexpected(&other, "an SDP answer")),
    }
    signaling.watch_while(wait_open(&peer, &channel)).await?;
    signaling.close().await;

    let bar = ui.progress(file_size, &display(&name));
    let result = stream(&peer, channel.clone(), file, file_size, &bar).await;
    bar.finish_and_clear();
    peer.close().await;
    result?;
    ui.status(&format!("Sent {} ({}).", display(&name), size(file_size)));
    Ok(())
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
    let open = async {
        loop {
            match channel.poll().await {
                Some(DataChannelEvent::OnOpen) => return Ok(()),
                Some(DataChannelEvent::OnClose) | None => return Err(()),
                Some(_) => continue,
            }
        }
    };
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

/// Streams the file and waits for the receiver's verdict.
async fn stream(
    peer: &Peer,
    channel: Arc<dyn DataChannel>,
    file: std::fs::File,
    file_size: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let (frames_tx, mut frames_rx) = mpsc::channel::<BytesMut>(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || read_frames(file, file_size, frames_tx));

    let pump_channel = channel.clone();
    let pump_bar = bar.clone();
    let mut pump = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            let data = if frame[0] == DATA_TYPE {
                frame.len() as u64 - 1
            } else {
                0
            };
            pump_channel.send(frame).await?;
            pump_bar.inc(data);
        }
        Ok::<(), webrtc::error::Error>(())
    });

    let mut state = peer.state();
    let mut pumped = false;
    let verdict_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(verdict_deadline);
    let outcome = loop {
        tokio::select! {
            done = &mut pump, if !pumped => {
                pumped = true;
                if !matches!(done, Ok(Ok(()))) {
                    break Err(fail(Kind::PeerGone, "the connection to the receiver was lost"));
                }
                verdict_deadline.as_mut().reset(tokio::time::Instant::now() + VERDICT_TIMEOUT);
            }
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => match Frame::decode(&message.data) {
                    Ok(Frame::Done) if pumped => break Ok(()),
                    Ok(Frame::Fail(reason)) => {
                        let reason = display(&reason);
                        break Err(fail(verdict_kind(&reason), format!("the receiver stopped: {reason}")));
                    }
                    _ => break Err(fail(Kind::Integrity, "the receiver sent an unexpected frame")),
                },
                Some(DataChannelEvent::OnClose) | None => {
                    break Err(fail(Kind::PeerGone, "the receiver closed the connection"));
                }
                Some(_) => {}
            },
            _ = ended(&mut state) => {
                break Err(fail(Kind::PeerGone, "the connection to the receiver was lost"));
            }
            _ = &mut verdict_deadline => {
                break Err(fail(Kind::PeerGone, "the receiver never confirmed the transfer"));
            }
        }
    };
    pump.abort();
    // A local read error is the more useful message.
    if let Ok(Err(read_error)) = reader.await {
        return Err(read_error);
    }
    outcome
}

/// What a receiver's FAIL reason means for our exit code.
fn verdict_kind(reason: &str) -> Kind {
    if reason.contains("integrity") {
        Kind::Integrity
    } else {
        Kind::PeerGone
    }
}

/// The reading thread: DATA frames, then END with the file's SHA-256.
fn read_frames(
    mut file: std::fs::File,
    expected: u64,
    frames: mpsc::Sender<BytesMut>,
) -> anyhow::Result<()> {
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    loop {
        let mut frame = BytesMut::zeroed(1 + MAX_DATA);
        frame[0] = DATA_TYPE;
        let mut filled = 1;
        // Fill the frame completely unless the file ends: fewer, larger messages.
        while filled < frame.len() {
            match file.read(&mut frame[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let fail = Frame::Fail("the sender could not read the file".into());
                    let _ = frames.blocking_send(fail.encode().as_slice().into());
                    return Err(local_io("reading the file", e));
                }
            }
        }
        if filled == 1 {
            break;
        }
        frame.truncate(filled);
        hasher.update(&frame[1..]);
        total += (filled - 1) as u64;
        if frames.blocking_send(frame).is_err() {
            return Ok(()); // the transfer ended; the caller reports why
        }
    }
    if total != expected {
        let reason = format!("the file changed while being sent ({total} of {expected} bytes)");
        let _ = frames.blocking_send(Frame::Fail(reason.clone()).encode().as_slice().into());
        return Err(fail(Kind::LocalIo, reason));
    }
    let end = Frame::End(hasher.finalize().into()).encode();
    let _ = frames.blocking_send(end.as_slice().into());
    Ok(())
}
