//! `mp receive CODE`: check the offer, ask, connect, and write what arrives.
//!
//! A writing thread runs the [`Incoming`] checks and writes each file into the staging folder
//! of the [`Layout`] (or to stdout); entries get their final names only after every hash
//! matched. An interrupted transfer keeps what it has for a later resume; data that failed its
//! check is removed.

use std::fs::File;
use std::io::{IsTerminal, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::layout::Layout;
use super::{
    public_reason, take_over_interrupt, unexpected, NetOptions, Signaling, CONNECT_TIMEOUT,
    STEP_TIMEOUT,
};
use crate::error::{fail, local_io, Failure, Kind};
use crate::peer::{ended, send_last, Peer};
use crate::protocol::code::Code;
use crate::protocol::frame::{data_len, FailKind, Frame, Taken, ACK_EVERY, ACK_EVERY_MESSAGES};
use crate::protocol::hex;
use crate::protocol::incoming::{Incoming, Step, StreamError};
use crate::protocol::manifest::{display, Manifest, ManifestError, Summary};
use crate::protocol::message::{Message, OfferAssembly, Resume, SdpKind, MAX_TEXT};
use crate::protocol::pake::Side;
use crate::signal::client::{Join, SignalClient};
use crate::ui::{shown, size, Progress, Ui};

/// Messages queued between the data channel and the writing thread.
const WRITE_QUEUE: usize = 16;
/// Up to this many files are synced one by one; more get one file-system flush.
const SYNC_EACH_AT_MOST: usize = 64;
/// Completed files waiting for their `fdatasync` (each holds a descriptor).
const SYNC_QUEUE: usize = 64;
/// Write buffer per output.
const WRITE_BUFFER: usize = 64 * 1024;
/// How long to wait for the sender to close after our DONE.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Offers with at most this many entries are listed before the question.
const LIST_AT_MOST: usize = 10;

/// What `mp receive` was asked to do.
pub struct ReceiveArgs {
    pub net: NetOptions,
    pub code: String,
    pub output: Option<PathBuf>,
    pub yes: bool,
    pub overwrite: bool,
}

/// Where the bytes go.
enum Sink {
    Stdout,
    Files(Arc<Layout>),
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
    ui.event("waiting", json!({}));
    client.wait_paired(args.net.wait).await?;
    ui.event("paired", json!({}));
    let mut signaling = Signaling::handshake(client, &code, Side::Receiver).await?;

    let mut assembly = OfferAssembly::default();
    let manifest = loop {
        let (part, more) = match signaling.recv_within(STEP_TIMEOUT).await? {
            Message::Offer { manifest, more } => (manifest, more),
            Message::Text { text } if assembly.is_empty() => {
                return receive_text(signaling, text, &ui).await
            }
            other => return Err(unexpected(&other, "an offer")),
        };
        match assembly.add(part, more) {
            Ok(Some(manifest)) => break manifest,
            Ok(None) => continue,
            Err(err) => {
                let reason = match err {
                    ManifestError::TooManyEntries
                    | ManifestError::EmptyPart
                    | ManifestError::PathsTooLong => "the offer is too large",
                    _ => "the offer was refused as unsafe",
                }
                .to_string();
                let _ = signaling.send(&Message::Reject { reason }).await;
                return Err(fail(Kind::Integrity, format!("refused the offer: {err}")));
            }
        }
    };
    let (summary, sink) = match decide(&manifest, &args, &ui).await {
        Ok(decision) => decision,
        Err(err) => {
            let reason = match err.downcast_ref::<Failure>().map(|f| f.kind) {
                Some(Kind::Declined) => "declined".to_string(),
                Some(Kind::NoTerminal) => "the receiver could not confirm".to_string(),
                Some(Kind::Integrity) => "the offer was refused as unsafe".to_string(),
                Some(Kind::Usage) => "the receiver cannot take this offer as asked".to_string(),
                _ => public_reason(&err),
            };
            let _ = signaling.send(&Message::Reject { reason }).await;
            return Err(err);
        }
    };

    let (peer, channel, incoming) = match connect(&mut signaling, &manifest, &sink, &args).await {
        Ok(connected) => connected,
        Err(err) => {
            signaling.abort(&public_reason(&err)).await;
            if let Sink::Files(layout) = &sink {
                layout.remove_if_empty();
            }
            return Err(err);
        }
    };
    signaling.close().await;
    ui.event("connected", json!({}));

    let name = manifest.title(&summary);
    let progress = ui.progress(summary.bytes, &name);
    let started = Instant::now();
    let result = receive_stream(
        &peer,
        &channel,
        &manifest,
        incoming,
        &sink,
        args.overwrite,
        &progress,
    )
    .await;
    progress.finish();
    if let Err(err) = &result {
        // Tell the sender why, so it does not wait for a verdict.
        let kind = match err.downcast_ref::<Failure>().map(|f| f.kind) {
            Some(Kind::Integrity) => FailKind::Integrity,
            Some(Kind::Interrupted) => FailKind::Interrupted,
            Some(Kind::LocalIo) => FailKind::LocalIo,
            _ => FailKind::Other,
        };
        send_last(&channel, Frame::Fail(kind, public_reason(err))).await;
    }
    peer.close().await;
    if let (Err(err), Sink::Files(layout)) = (&result, &sink) {
        if manifest.is_stream() {
            // A stream cannot be resumed: nothing of it is worth keeping.
            layout.discard_all();
        }
        layout.remove_if_empty();
        let keeps = err
            .downcast_ref::<Failure>()
            .is_some_and(|f| f.kind != Kind::Integrity);
        if keeps && layout.staging().exists() {
            let failure = err.downcast_ref::<Failure>().expect("checked above");
            return Err(fail(
                failure.kind,
                format!(
                    "{}; partial data kept in {}: receive the same offer into the same place to resume",
                    failure.message,
                    shown(layout.staging())
                ),
            ));
        }
    }
    result?;
    let received = progress.bytes();
    ui.event(
        "finished",
        json!({ "bytes": received, "seconds": crate::ui::seconds(started.elapsed()) }),
    );
    match &sink {
        Sink::Stdout => ui.status(&format!("Received {name} ({}).", size(received))),
        Sink::Files(layout) => {
            let place = match manifest.roots().as_slice() {
                [root] => layout.destination(root),
                _ => layout.out_dir().to_path_buf(),
            };
            let place = if place == std::path::Path::new(".") {
                "the current folder".to_string()
            } else {
                shown(&place)
            };
            ui.status(&format!(
                "Received {name} ({}) into {place}.",
                size(received)
            ))
        }
    }
    Ok(())
}

/// Prints a text (neutralised if stdout is a terminal) and acknowledges it.
async fn receive_text(mut signaling: Signaling, text: String, ui: &Ui) -> anyhow::Result<()> {
    if text.len() > MAX_TEXT {
        let reason = "the text is too long".to_string();
        let _ = signaling.send(&Message::Reject { reason }).await;
        return Err(fail(Kind::Integrity, "refused a text longer than allowed"));
    }
    let bytes = text.len();
    if ui.is_json() {
        ui.event("text", json!({ "text": text }));
    } else {
        let shown = if std::io::stdout().is_terminal() {
            text.split('\n').map(display).collect::<Vec<_>>().join("\n")
        } else {
            text
        };
        let mut out = std::io::stdout().lock();
        let newline = if shown.ends_with('\n') { "" } else { "\n" };
        write!(out, "{shown}{newline}")
            .and_then(|_| out.flush())
            .map_err(|e| local_io("cannot write to standard output", e))?;
    }
    signaling.send(&Message::Accept { resume: vec![] }).await?;
    signaling.close().await;
    ui.event("finished", json!({ "bytes": bytes }));
    Ok(())
}

/// Checks the offer, plans where it goes, and asks the user.
async fn decide(
    manifest: &Manifest,
    args: &ReceiveArgs,
    ui: &Ui,
) -> anyhow::Result<(Summary, Sink)> {
    let summary = manifest
        .validate()
        .map_err(|e| fail(Kind::Integrity, format!("refused the offer: {e}")))?;
    let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
    let sink = if to_stdout {
        if summary.files != 1 || summary.folders != 0 {
            return Err(fail(
                Kind::Usage,
                "-o - takes a single file or stream; the sender offers several entries",
            ));
        }
        Sink::Stdout
    } else {
        let layout = Layout::plan(manifest, args.output.as_deref())?;
        layout.check_free(manifest, args.overwrite)?;
        Sink::Files(Arc::new(layout))
    };
    let question = describe(manifest, &summary);
    ui.event(
        "offer",
        json!({
            "files": summary.files,
            "folders": summary.folders,
            "bytes": summary.bytes,
            "paths": manifest.entries.iter().take(100).map(|e| &e.path).collect::<Vec<_>>(),
        }),
    );
    if !args.yes {
        if manifest.entries.len() > 1 && manifest.entries.len() <= LIST_AT_MOST {
            for entry in &manifest.entries {
                let detail = match entry.size {
                    Some(size) if entry.is_file() => format!(" ({})", crate::ui::size(size)),
                    _ if entry.is_file() => String::new(),
                    _ => "/".to_string(),
                };
                eprintln!("  {}{detail}", display(&entry.path));
            }
        } else if manifest.entries.len() > LIST_AT_MOST {
            // Too many to list: at least show what lands in the target folder.
            let roots = manifest.roots();
            for root in roots.iter().take(LIST_AT_MOST) {
                eprintln!("  {}", display(root));
            }
            if roots.len() > LIST_AT_MOST {
                eprintln!("  … and {} more", roots.len() - LIST_AT_MOST);
            }
        }
        if !ui.confirm(question).await? {
            return Err(fail(Kind::Declined, "transfer declined"));
        }
    }
    Ok((summary, sink))
}

/// "Receive report.pdf (2.40 MiB)?", "Receive 3 files, 1 folder, 1.20 GiB?"
fn describe(manifest: &Manifest, summary: &Summary) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (manifest.entries.as_slice(), summary.bytes) {
        ([single], None) => format!(
            "Receive a stream named {} (size unknown)?",
            display(&single.path)
        ),
        ([single], Some(bytes)) if single.is_file() => {
            format!("Receive {} ({})?", display(&single.path), size(bytes))
        }
        (_, bytes) => {
            let mut parts = vec![plural(summary.files, "file", "files")];
            if summary.folders > 0 {
                parts.push(plural(summary.folders, "folder", "folders"));
            }
            parts.push(size(bytes.unwrap_or(0)));
            format!("Receive {}?", parts.join(", "))
        }
    }
}

type Connected = (Peer, Arc<dyn DataChannel>, Incoming);

/// Accepts (offering what can be resumed) and brings up the direct connection.
async fn connect(
    signaling: &mut Signaling,
    manifest: &Manifest,
    sink: &Sink,
    args: &ReceiveArgs,
) -> anyhow::Result<Connected> {
    let mut incoming = Incoming::new(manifest);
    let mut resume = Vec::new();
    if let Sink::Files(layout) = sink {
        let (layout, manifest_copy) = (layout.clone(), manifest.clone());
        let kept = tokio::task::spawn_blocking(move || {
            layout.prepare(&manifest_copy)?;
            layout.kept(&manifest_copy)
        })
        .await??;
        for (index, offset, prefix) in kept {
            resume.push(Resume {
                index,
                offset,
                sha256: hex(&sha2::Digest::finalize(prefix.clone())),
            });
            incoming.resume(index, offset, prefix);
        }
    }
    signaling.send(&Message::Accept { resume }).await?;

    let offer = match signaling.recv_within(STEP_TIMEOUT).await? {
        Message::Sdp {
            kind: SdpKind::Offer,
            sdp,
        } => sdp,
        other => return Err(unexpected(&other, "an SDP offer")),
    };
    let mut peer = Peer::new(&args.net.peer_options()).await?;
    let connected = async {
        let answer = peer.answer(offer).await?;
        signaling
            .send(&Message::Sdp {
                kind: SdpKind::Answer,
                sdp: answer,
            })
            .await?;
        signaling
            .watch_while(peer.incoming_channel(CONNECT_TIMEOUT))
            .await
    }
    .await;
    match connected {
        Ok(channel) => Ok((peer, channel, incoming)),
        Err(err) => {
            // Close, so the other side is not left waiting for ICE to time out.
            peer.close().await;
            Err(err)
        }
    }
}

/// Receives frames until every file is verified and placed, then says DONE.
async fn receive_stream(
    peer: &Peer,
    channel: &Arc<dyn DataChannel>,
    manifest: &Manifest,
    incoming: Incoming,
    sink: &Sink,
    overwrite: bool,
    progress: &Progress,
) -> anyhow::Result<()> {
    take_over_interrupt();
    let (tx, rx) = mpsc::channel::<BytesMut>(WRITE_QUEUE);
    // Set by the writer once every file's hash matched: from then on only syncing and placing
    // remain, and a connection going away no longer matters.
    let verified = Arc::new(AtomicBool::new(false));
    let writer = {
        let manifest = manifest.clone();
        let progress = progress.clone();
        let verified = verified.clone();
        let layout = match sink {
            Sink::Stdout => None,
            Sink::Files(layout) => Some(layout.clone()),
        };
        tokio::task::spawn_blocking(move || {
            let layout_ref = layout.as_deref();
            let written = write_files(rx, &manifest, incoming, layout_ref, &progress, &verified);
            match (written, layout) {
                (Ok(()), Some(layout)) => layout.finish(&manifest, overwrite),
                (written, _) => written,
            }
        })
    };
    let mut writer = std::pin::pin!(writer);
    let mut tx = Some(tx);
    let mut state = peer.state();
    let mut writer_done = false;
    let (mut taken, mut acked) = (Taken::default(), Taken::default());
    // Registered once, so a Ctrl-C that arrives while the loop is busy is not lost.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    // Acknowledges data that trickles in, and keeps the sender waiting while files are
    // synced and placed, so a slow link or disk is not mistaken for a stall.
    let mut keepalive = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            written = &mut writer => {
                writer_done = true;
                break joined(written);
            }
            _ = keepalive.tick() => {
                if taken != acked || verified.load(Ordering::SeqCst) {
                    acked = taken;
                    let _ = channel.send(Frame::Ack(taken).encode().as_slice().into()).await;
                }
            }
            event = channel.poll(), if tx.is_some() => match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    let sender = tx.as_ref().expect("guarded by the branch condition");
                    let data = data_len(&message.data);
                    // A stalled disk or stdout must not make Ctrl-C wait.
                    tokio::select! {
                        sent = sender.send(message.data) => if sent.is_err() {
                            tx = None; // the writer stopped; its result says why
                        },
                        _ = &mut interrupt => break Err(fail(Kind::Interrupted, "interrupted")),
                    }
                    // Grant the sender more room as the writer takes messages in.
                    taken.bytes += data;
                    taken.messages += 1;
                    if taken.bytes - acked.bytes >= ACK_EVERY
                        || taken.messages - acked.messages >= ACK_EVERY_MESSAGES
                    {
                        acked = taken;
                        let _ = channel.send(Frame::Ack(taken).encode().as_slice().into()).await;
                    }
                }
                Some(DataChannelEvent::OnClose) | None => {
                    if verified.load(Ordering::SeqCst) {
                        writer_done = true;
                        break joined((&mut writer).await);
                    }
                    break Err(fail(Kind::PeerGone, "the sender closed the connection before the end"));
                }
                Some(_) => {}
            },
            _ = ended(&mut state) => {
                if verified.load(Ordering::SeqCst) {
                    writer_done = true;
                    break joined((&mut writer).await);
                }
                break Err(fail(Kind::PeerGone, "the connection to the sender was lost"));
            }
            _ = &mut interrupt => {
                break Err(fail(Kind::Interrupted, "interrupted"));
            }
        }
    };
    drop(tx);
    if outcome.is_err() {
        if !writer_done {
            // Let the writer finish with its file before we report.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut writer).await;
        }
        return outcome;
    }
    // Everything is verified and in place: a sender gone by now does not undo that.
    let _ = channel.send(Frame::Done.encode().as_slice().into()).await;
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

/// The writing thread's outcome.
fn joined(written: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    written.unwrap_or_else(|join| Err(anyhow::anyhow!("writer stopped: {join}")))
}

/// The writing thread: checks every frame and writes the bytes, file after file.
fn write_files(
    mut frames: mpsc::Receiver<BytesMut>,
    manifest: &Manifest,
    mut incoming: Incoming,
    layout: Option<&Layout>,
    progress: &Progress,
    verified: &AtomicBool,
) -> anyhow::Result<()> {
    let mut current: Option<(usize, Output)> = None;
    // Many files reach the disk with one flush of their file system at the end (a thousand
    // separate syncs cost 0.3 to 1.5 s here); a few files are synced one by one, which never
    // waits for anyone else's writes.
    let files = manifest.entries.iter().filter(|e| e.is_file()).count();
    let one_flush = layout.filter(|_| files > SYNC_EACH_AT_MOST);
    // Completed files reach the disk on a thread of their own, while the next ones arrive.
    let (to_sync, syncing) = std::sync::mpsc::sync_channel::<(usize, File)>(SYNC_QUEUE);
    let syncer = std::thread::spawn(move || {
        for (index, file) in syncing {
            file.sync_data().map_err(|e| (index, e))?;
        }
        Ok::<(), (usize, std::io::Error)>(())
    });
    while !incoming.is_complete() {
        let Some(message) = frames.blocking_recv() else {
            return Err(fail(Kind::PeerGone, "the transfer stopped before the end"));
        };
        let frame = Frame::decode(&message)
            .map_err(|e| fail(Kind::Integrity, format!("bad frame from the sender: {e}")))?;
        let index = incoming.current();
        let step = match incoming.on_frame(frame) {
            Ok(step) => step,
            Err(err) => {
                let kind = match err {
                    StreamError::PeerFailed(_) => Kind::PeerGone,
                    _ => {
                        if let (Some(layout), Some(index)) = (layout, index) {
                            layout.discard(&manifest.entries[index].path);
                        }
                        Kind::Integrity
                    }
                };
                return Err(fail(kind, err.to_string()));
            }
        };
        match step {
            Step::Begin { index, offset } => {
                current = Some((index, open(manifest, layout, index, Some(offset))?));
                progress.inc(offset);
            }
            Step::Write { index, bytes } => {
                if current
                    .as_ref()
                    .is_none_or(|(open_index, _)| *open_index != index)
                {
                    current = Some((index, open(manifest, layout, index, None)?));
                }
                let (_, output) = current.as_mut().expect("opened above");
                output
                    .write_all(bytes)
                    .map_err(|e| write_error(manifest, layout, index, e))?;
                progress.inc(bytes.len() as u64);
            }
            Step::FileComplete { index } => {
                let output = match current.take() {
                    Some((open_index, output)) if open_index == index => output,
                    _ => open(manifest, layout, index, None)?, // an empty file
                };
                let flushed = output
                    .finish()
                    .map_err(|e| write_error(manifest, layout, index, e))?;
                if let Some(file) = flushed.filter(|_| one_flush.is_none()) {
                    let _ = to_sync.send((index, file));
                }
                progress.file_done(&manifest.entries[index].path);
            }
        }
    }
    verified.store(true, Ordering::SeqCst);
    drop(to_sync);
    match syncer.join() {
        Ok(Ok(())) => {}
        Ok(Err((index, err))) => return Err(write_error(manifest, layout, index, err)),
        Err(_) => return Err(anyhow::anyhow!("the syncing thread panicked")),
    }
    if let Some(layout) = one_flush {
        layout.sync_all()?;
    }
    Ok(())
}

/// Opens the output for entry `index`: stdout, or its staged file (kept up to `keep` bytes
/// when resuming, else truncated).
fn open(
    manifest: &Manifest,
    layout: Option<&Layout>,
    index: usize,
    keep: Option<u64>,
) -> anyhow::Result<Output> {
    let Some(layout) = layout else {
        return Ok(Output::Stdout(std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            std::io::stdout().lock(),
        )));
    };
    let path = layout.staged(&manifest.entries[index].path);
    let cannot = |e| local_io(&format!("cannot write {}", shown(&path)), e);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never write through a link planted in the staging folder.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file: File = options.open(&path).map_err(cannot)?;
    let keep = keep.unwrap_or(0);
    // What was hashed to offer the resume must still be there.
    if keep > 0 && file.metadata().map_err(cannot)?.len() < keep {
        return Err(fail(
            Kind::LocalIo,
            format!("the kept part of {} changed meanwhile", shown(&path)),
        ));
    }
    file.set_len(keep).map_err(cannot)?;
    file.seek(std::io::SeekFrom::Start(keep)).map_err(cannot)?;
    // Small enough that full DATA payloads bypass the buffer (no extra copy), large enough to
    // gather the writes of small files.
    Ok(Output::File(std::io::BufWriter::with_capacity(
        WRITE_BUFFER,
        file,
    )))
}

/// Where one entry's bytes go.
enum Output {
    Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>),
    File(std::io::BufWriter<File>),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => out.write_all(bytes),
            Output::File(out) => out.write_all(bytes),
        }
    }

    /// Flushes; returns a file, which must still reach the disk (`fdatasync`) before it may
    /// get its final name. One sync per file is precise, unlike a file-system-wide `syncfs`
    /// that would also wait for whatever else is being written there.
    fn finish(self) -> std::io::Result<Option<File>> {
        match self {
            Output::Stdout(mut out) => out.flush().map(|_| None),
            Output::File(out) => out.into_inner().map(Some).map_err(|e| e.into_error()),
        }
    }
}

fn write_error(
    manifest: &Manifest,
    layout: Option<&Layout>,
    index: usize,
    err: std::io::Error,
) -> anyhow::Error {
    match layout {
        None if err.kind() == std::io::ErrorKind::BrokenPipe => {
            fail(Kind::LocalIo, "standard output was closed (broken pipe)")
        }
        None => local_io("cannot write to standard output", err),
        Some(layout) => local_io(
            &format!(
                "cannot write {}",
                shown(&layout.staged(&manifest.entries[index].path))
            ),
            err,
        ),
    }
}
