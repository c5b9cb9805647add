//! `mp receive CODE`: check the offer, ask, connect, and write what arrives.
//!
//! Bytes go to `<target>.part` through a writing thread that also runs the
//! [`Incoming`] checks; the file gets its final name only after its SHA-256 matched. On any
//! failure the `.part` file is removed, so nothing incomplete is left behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::{unexpected, NetOptions, Signaling, CONNECT_TIMEOUT};
use crate::error::{fail, local_io, Failure, Kind};
use crate::peer::{ended, Peer, PeerOptions};
use crate::protocol::code::Code;
use crate::protocol::frame::Frame;
use crate::protocol::incoming::{Incoming, Step};
use crate::protocol::manifest::{display, Manifest};
use crate::protocol::message::{Message, SdpKind};
use crate::protocol::pake::Side;
use crate::signal::client::{Join, SignalClient};
use crate::ui::{size, Ui};

/// Messages queued between the data channel and the writing thread.
const WRITE_QUEUE: usize = 16;
/// How long to wait for the sender to close after our DONE.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What `mp receive` was asked to do.
pub struct ReceiveArgs {
    pub net: NetOptions,
    pub code: String,
    pub output: Option<PathBuf>,
    pub yes: bool,
    pub overwrite: bool,
}

pub async fn run(args: ReceiveArgs, ui: Ui) -> anyhow::Result<()> {
    let code = Code::parse(&args.code).map_err(|e| fail(Kind::Usage, e.to_string()))?;
    let mut client = match SignalClient::join(&args.net.signal, code.room(), Side::Receiver).await?
    {
        Join::Joined(client) => *client,
        Join::Busy => {
            return Err(fail(
                Kind::RoomFull,
                format!("the code {code} is already in use by another receiver or transfer"),
            ))
        }
    };
    ui.status("Waiting for the sender…");
    client.wait_paired(args.net.wait).await?;
    let mut signaling = Signaling::handshake(client, &code, Side::Receiver).await?;

    let manifest = match signaling.recv().await? {
        Message::Offer { manifest } => manifest,
        other => return Err(unexpected(&other, "an offer")),
    };
    let target = match check_offer(&manifest, &args) {
        Ok(target) => target,
        Err(err) => {
            let reason = err
                .downcast_ref::<Failure>()
                .map(|f| match f.kind {
                    Kind::Exists => "the file already exists on the receiving side".to_string(),
                    _ => f.message.clone(),
                })
                .unwrap_or_else(|| err.to_string());
            let _ = signaling.send(&Message::Reject { reason }).await;
            return Err(err);
        }
    };
    let entry = &manifest.entries[0];
    let name = display(&entry.path);
    if !args.yes {
        let question = format!("Receive {name} ({})?", size(entry.size));
        let accepted = match ui.confirm(question).await {
            Ok(accepted) => accepted,
            Err(err) => {
                let reason = "the receiver could not confirm".to_string();
                let _ = signaling.send(&Message::Reject { reason }).await;
                return Err(err);
            }
        };
        if !accepted {
            let reason = "declined".to_string();
            let _ = signaling.send(&Message::Reject { reason }).await;
            return Err(fail(Kind::Declined, "transfer declined"));
        }
    }
    signaling.send(&Message::Accept).await?;

    let offer = match signaling.recv().await? {
        Message::Sdp {
            kind: SdpKind::Offer,
            sdp,
        } => sdp,
        other => return Err(unexpected(&other, "an SDP offer")),
    };
    let mut peer = Peer::new(&PeerOptions {
        bind: args.net.bind.clone(),
    })
    .await?;
    let answer = peer.answer(offer).await?;
    signaling
        .send(&Message::Sdp {
            kind: SdpKind::Answer,
            sdp: answer,
        })
        .await?;
    let channel = signaling
        .watch_while(peer.incoming_channel(CONNECT_TIMEOUT))
        .await?;
    signaling.close().await;

    let bar = ui.progress(entry.size, &name);
    let result = receive_stream(&peer, &channel, &manifest, &target, args.overwrite, &bar).await;
    bar.finish_and_clear();
    if let Err(err) = &result {
        // Tell the sender why, so it does not wait for a verdict.
        let reason = Frame::Fail(err.to_string()).encode();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            channel.send(reason.as_slice().into()),
        )
        .await;
    }
    peer.close().await;
    result?;
    ui.status(&format!(
        "Received {} ({}) into {}.",
        name,
        size(entry.size),
        target.display()
    ));
    Ok(())
}

/// Validates the offer against what this receiver can do; returns the target path.
fn check_offer(manifest: &Manifest, args: &ReceiveArgs) -> anyhow::Result<PathBuf> {
    manifest
        .validate()
        .map_err(|e| fail(Kind::Integrity, format!("refused the offer: {e}")))?;
    if manifest.entries.len() != 1 || manifest.entries[0].path.contains('/') {
        return Err(fail(
            Kind::Usage,
            "the sender offers several files or a folder; this mp receives one file",
        ));
    }
    let name = &manifest.entries[0].path;
    let target = match &args.output {
        Some(path) if path.is_dir() => path.join(name),
        Some(path) => path.clone(),
        None => PathBuf::from(name),
    };
    if !args.overwrite && target.symlink_metadata().is_ok() {
        return Err(fail(
            Kind::Exists,
            format!(
                "{} already exists (use --overwrite to replace it)",
                target.display()
            ),
        ));
    }
    Ok(target)
}

/// Receives frames until the file is verified and named, then says DONE.
async fn receive_stream(
    peer: &Peer,
    channel: &Arc<dyn DataChannel>,
    manifest: &Manifest,
    target: &Path,
    overwrite: bool,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<BytesMut>(WRITE_QUEUE);
    let writer = {
        let manifest = manifest.clone();
        let target = target.to_path_buf();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || write_file(rx, &manifest, &target, overwrite, &bar))
    };
    let mut writer = std::pin::pin!(writer);
    let mut tx = Some(tx);
    let mut state = peer.state();
    let outcome = loop {
        tokio::select! {
            written = &mut writer => {
                break match written {
                    Ok(result) => result,
                    Err(join) => Err(anyhow::anyhow!("writer stopped: {join}")),
                };
            }
            event = channel.poll(), if tx.is_some() => match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    let sender = tx.as_ref().expect("guarded by the branch condition");
                    if sender.send(message.data).await.is_err() {
                        tx = None; // the writer stopped; its result says why
                    }
                }
                Some(DataChannelEvent::OnClose) | None => {
                    tx = None;
                    break Err(fail(Kind::PeerGone, "the sender closed the connection before the end"));
                }
                Some(_) => {}
            },
            _ = ended(&mut state) => {
                break Err(fail(Kind::PeerGone, "the connection to the sender was lost"));
            }
        }
    };
    drop(tx);
    if outcome.is_err() {
        // Let the writer remove the .part file before we report.
        let _ = (&mut writer).await;
        return outcome;
    }
    channel
        .send(Frame::Done.encode().as_slice().into())
        .await
        .map_err(|_| fail(Kind::PeerGone, "the sender left before the end"))?;
    // Give the DONE time to arrive: the sender closes when it has it.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(event) = channel.poll().await {
            if matches!(event, DataChannelEvent::OnClose) {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Removes the `.part` file unless the transfer completed.
struct PartFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The writing thread: checks every frame, writes the bytes, names the file when verified.
fn write_file(
    mut frames: mpsc::Receiver<BytesMut>,
    manifest: &Manifest,
    target: &Path,
    overwrite: bool,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut part_name = target.as_os_str().to_owned();
    part_name.push(".part");
    let mut part = PartFile {
        path: PathBuf::from(part_name),
        keep: false,
    };
    let what = format!("cannot write {}", part.path.display());
    let mut file = File::create(&part.path).map_err(|e| local_io(&what, e))?;
    let mut incoming = Incoming::new(manifest);
    while let Some(message) = frames.blocking_recv() {
        let frame = Frame::decode(&message)
            .map_err(|e| fail(Kind::Integrity, format!("bad frame from the sender: {e}")))?;
        match incoming.on_frame(frame) {
            Ok(Step::Write { bytes, .. }) => {
                file.write_all(bytes).map_err(|e| local_io(&what, e))?;
                bar.inc(bytes.len() as u64);
            }
            Ok(Step::FileComplete { .. }) => {
                file.sync_all().map_err(|e| local_io(&what, e))?;
                drop(file);
                if !overwrite && target.symlink_metadata().is_ok() {
                    return Err(fail(
                        Kind::Exists,
                        format!(
                            "{} appeared while receiving; not replaced",
                            target.display()
                        ),
                    ));
                }
                std::fs::rename(&part.path, target)
                    .map_err(|e| local_io(&format!("cannot create {}", target.display()), e))?;
                part.keep = true;
                debug_assert!(incoming.is_complete(), "one file per transfer");
                return Ok(());
            }
            Err(err) => {
                let kind = match err {
                    crate::protocol::incoming::StreamError::PeerFailed(_) => Kind::PeerGone,
                    _ => Kind::Integrity,
                };
                return Err(fail(kind, err.to_string()));
            }
        }
    }
    Err(fail(Kind::PeerGone, "the transfer stopped before the end"))
}
