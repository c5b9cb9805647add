//! `mp receive CODE`: the pump around the [`Receiver`] engine.
//!
//! The pump joins the rendezvous and loops: it carries out what the engine asks (send an
//! envelope, ask the user, answer the WebRTC offer, hand frames to the writer, place the
//! files, send a frame) and feeds it what happened (an envelope, the user's answer, the link
//! opening, a frame, the writer's progress and hashes, Ctrl-C, the time).
//!
//! A writing thread writes each file into the staging folder of the [`Layout`] (or to stdout)
//! and hashes what it wrote; the engine compares that hash with the sender's, and entries get
//! their final names only after every one matched. The engine polices the sender's window, so
//! the writer's queue stays within it whatever the sender does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Seek, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::connection::{Connection, Happened};
use super::layout::Layout;
use super::{finished, NetOptions, Work};
use crate::error::{local_io_failure, Failure, Kind};
use crate::protocol::code::likely_meant;
use crate::protocol::frame::{Taken, ACK_EVERY};
use crate::protocol::manifest::{display, Manifest, Summary};
use crate::protocol::pake::Side;
use crate::protocol::receiver::{Event, Input, KeptPrefix, Output, Receiver, Report, Write};
use crate::rendezvous;
use crate::ui::{shown, size, Progress, Ui};

/// Up to this many files are synced one by one; more get one file-system flush.
const SYNC_EACH_AT_MOST: usize = 64;
/// Completed files waiting for their `fdatasync` (each holds a descriptor).
const SYNC_QUEUE: usize = 64;
/// Write buffer per output.
const WRITE_BUFFER: usize = 64 * 1024;
/// A file's written bytes are handed to the disk every this many bytes, so that the
/// `fdatasync` before its final name waits for the last few MiB, not for the whole file.
const WRITEBACK_EVERY: u64 = 8 << 20;
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
#[derive(Clone)]
enum Sink {
    Stdout,
    Files(Arc<Layout>),
}

pub async fn run(args: ReceiveArgs, ui: Ui) -> anyhow::Result<()> {
    let (rendezvous, code) =
        rendezvous::join(&args.net.signal, Some(&args.code), Side::Receiver).await?;
    super::check_relay(&args.net, rendezvous.as_ref())?;
    ui.status(&format!(
        "Waiting for the sender (at most {} s; Ctrl-C to stop)…",
        args.net.wait.as_secs()
    ));
    ui.event("waiting", json!({}));
    let engine = Receiver::new(code, Instant::now(), args.net.wait);
    let mut pump = Pump {
        engine,
        connection: Connection::new(args.net.clone(), rendezvous),
        args,
        ui: ui.clone(),
        progress: None,
        offer: None,
        sink: None,
        prefixes: HashMap::new(),
        writer: None,
        discard: false,
        connected_at: None,
    };
    let result = pump.run().await;
    if let Some(progress) = &pump.progress {
        progress.finish();
    }
    let report = pump
        .clean_up(result)
        .map_err(|failure| typo_hint(failure, &pump.args.code))?;
    if let Some(bytes) = report.text {
        ui.event("finished", json!({ "bytes": bytes }));
        return Ok(());
    }
    let (manifest, summary) = pump.offer.as_ref().expect("an offer was received");
    let name = manifest.title(summary);
    ui.event(
        "finished",
        json!({
            "bytes": report.received + report.already_there,
            "already_there": report.already_there,
            "seconds": crate::ui::seconds(
                pump.connected_at.map_or(std::time::Duration::ZERO, |at| at.elapsed())
            ),
        }),
    );
    let resumed = if report.already_there > 0 {
        format!("; {} were already there", size(report.already_there))
    } else {
        String::new()
    };
    let pace = pump.connected_at.map_or(String::new(), |at| {
        crate::ui::pace(report.received, at.elapsed())
    });
    match &pump.sink {
        Some(Sink::Files(layout)) => {
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
                "Received {name} ({}{resumed}) into {place}{pace}.",
                size(report.received)
            ))
        }
        _ => ui.status(&format!(
            "Received {name} ({}){pace}.",
            size(report.received)
        )),
    }
    Ok(())
}

/// A failed key exchange with a code one typo away from a generated one says which: the
/// sender keeps waiting for a few more tries, so the next attempt can succeed.
fn typo_hint(failure: Failure, typed: &str) -> Failure {
    if failure.kind != Kind::WrongCode {
        return failure;
    }
    match likely_meant(typed) {
        Some(meant) => {
            let message = format!("{}; did you mean {meant}?", failure.message);
            failure.with_message(message)
        }
        None => failure,
    }
}

/// What the user decided, and what was kept from an earlier attempt.
type Decision = Result<(Sink, Vec<(usize, u64, Sha256)>), Failure>;

/// Everything the receiver's loop holds.
struct Pump {
    engine: Receiver,
    connection: Connection,
    args: ReceiveArgs,
    ui: Ui,
    progress: Option<Progress>,
    offer: Option<(Manifest, Summary)>,
    sink: Option<Sink>,
    /// Hash states after each kept prefix, for the writer to continue from.
    prefixes: HashMap<usize, Sha256>,
    writer: Option<Writer>,
    /// The engine asked to remove what was staged.
    discard: bool,
    connected_at: Option<Instant>,
}

/// The writing thread, and the way to talk to it.
struct Writer {
    commands: std::sync::mpsc::Sender<Command>,
    reports: mpsc::UnboundedReceiver<WriterReport>,
    thread: std::thread::JoinHandle<()>,
    /// It reported its last word.
    finished: bool,
}

impl Pump {
    async fn run(&mut self) -> Result<Report, Failure> {
        let mut asking: Work<Decision> = None;
        let result = 'run: loop {
            // Carry out everything the engine wants done now.
            let deadline = loop {
                match self.engine.poll_output() {
                    Output::Timeout(at) => break at,
                    Output::Done(result) => break 'run result,
                    Output::Envelope(envelope) => {
                        if let Err(why) = self.connection.send_envelope(envelope).await {
                            self.handle(Input::RendezvousClosed(why));
                        }
                    }
                    Output::CloseRendezvous => self.connection.close_rendezvous().await,
                    Output::Ask { manifest, summary } => {
                        // The connection is made while the user (or the disk) decides.
                        self.connection.prepare_peer();
                        self.offer = Some((manifest.clone(), summary));
                        asking = Some(Box::pin(decide(
                            manifest,
                            summary,
                            self.args.output.clone(),
                            self.args.yes,
                            self.args.overwrite,
                            self.ui.clone(),
                        )));
                    }
                    Output::ShowText(text) => {
                        let shown = show_text(&self.ui, text);
                        self.handle(Input::TextShown(shown));
                    }
                    Output::Answer { offer, trickle } => {
                        if let Err(why) = self.connection.start_peer(Some(offer), trickle).await {
                            self.handle(Input::LinkFailed(why));
                        }
                    }
                    Output::Write(write) => self.write(Command::Write(write)),
                    Output::Place => self.write(Command::Place),
                    Output::Discard => self.discard = true,
                    Output::Frame(frame) => {
                        if self.connection.send_frame(frame).await {
                            self.handle(Input::Interrupt);
                        }
                    }
                    Output::Event(Event::Connected) => {
                        self.connection.show_path(&self.ui).await;
                        self.show(Event::Connected);
                    }
                    Output::Event(event) => self.show(event),
                    Output::AddCandidate(candidate) => {
                        self.connection.add_remote_candidate(candidate).await
                    }
                }
            };
            let input = tokio::select! {
                happened = self.connection.next() => match happened {
                    Happened::Paired => {
                        self.ui.event("paired", json!({}));
                        Input::Paired
                    }
                    Happened::Envelope(envelope) => Input::Envelope(envelope),
                    Happened::RendezvousClosed(why) => Input::RendezvousClosed(why),
                    Happened::LocalSdp(sdp) => Input::LocalSdp(sdp),
                    Happened::LocalCandidate(candidate) => Input::LocalCandidate(candidate),
                    Happened::LinkOpen { .. } => Input::LinkOpen,
                    Happened::LinkFailed(why) => Input::LinkFailed(why),
                    Happened::Frame(frame) => Input::Frame(frame),
                    Happened::LinkClosed => Input::LinkClosed,
                    Happened::Interrupt => Input::Interrupt,
                },
                decision = finished(&mut asking) => match decision {
                    Ok((sink, kept)) => {
                        self.sink = Some(sink);
                        let mut prefixes = Vec::with_capacity(kept.len());
                        for (index, offset, state) in kept {
                            prefixes.push(KeptPrefix {
                                index,
                                offset,
                                sha256: state.clone().finalize().into(),
                            });
                            self.prefixes.insert(index, state);
                        }
                        Input::Accept { kept: prefixes }
                    }
                    Err(why) => Input::Decline(why),
                },
                report = next_report(&mut self.writer) => match report {
                    WriterReport::Taken(taken) => Input::Taken(taken),
                    WriterReport::Written { index, sha256 } => Input::Written { index, sha256 },
                    WriterReport::Failed(why) => Input::WriteFailed(why),
                    WriterReport::Placed(placed) => Input::Placed(placed),
                },
                _ = tokio::time::sleep_until(deadline.into()) => Input::Timeout,
            };
            self.handle(input);
        };
        self.connection.close(result).await
    }

    fn handle(&mut self, input: Input) {
        self.engine.handle(Instant::now(), input);
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Paired => {}
            Event::Connected => {
                self.connected_at = Some(Instant::now());
                let (manifest, summary) = self.offer.as_ref().expect("an offer was accepted");
                self.progress = Some(self.ui.progress(summary.bytes, &manifest.title(summary)));
            }
            Event::AlreadyThere { bytes } => {
                if let Some(progress) = &self.progress {
                    progress.inc(bytes);
                }
            }
            Event::FileVerified { index } => {
                if let (Some(progress), Some((manifest, _))) = (&self.progress, &self.offer) {
                    progress.file_done(&manifest.entries[index].path);
                }
            }
        }
    }

    /// Hands a command to the writing thread, starting it first if needed.
    fn write(&mut self, command: Command) {
        if self.writer.is_none() {
            let (manifest, _) = self.offer.clone().expect("an offer was accepted");
            let layout = match &self.sink {
                Some(Sink::Files(layout)) => Some(layout.clone()),
                _ => None,
            };
            let progress = self.progress.clone().expect("connected");
            let (commands, inbox) = std::sync::mpsc::channel();
            let (outbox, reports) = mpsc::unbounded_channel();
            let prefixes = std::mem::take(&mut self.prefixes);
            let overwrite = self.args.overwrite;
            let thread = std::thread::spawn(move || {
                let mut writer = FileWriter::new(manifest, layout, prefixes, progress, overwrite);
                writer.run(inbox, outbox);
            });
            self.writer = Some(Writer {
                commands,
                reports,
                thread,
                finished: false,
            });
        }
        let writer = self.writer.as_ref().expect("started above");
        // If the thread stopped, its last report says why.
        let _ = writer.commands.send(command);
    }

    /// After the loop: stop the writer, and keep or remove what was staged.
    fn clean_up(&mut self, result: Result<Report, Failure>) -> Result<Report, Failure> {
        // The writer stops after its current command; a stalled stdout must not hang us, and
        // nothing is removed while it may still write.
        let mut writer_stopped = true;
        if let Some(writer) = self.writer.take() {
            drop(writer.commands);
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            while !writer.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            writer_stopped = writer.thread.is_finished();
        }
        let failure = match result {
            Ok(report) => return Ok(report),
            Err(failure) => failure,
        };
        let (Some(Sink::Files(layout)), Some((manifest, _))) = (&self.sink, &self.offer) else {
            return Err(failure);
        };
        // A stream cannot be resumed: nothing of it is worth keeping.
        if (self.discard || manifest.is_stream()) && writer_stopped {
            layout.discard_all();
            if self.discard && crate::error::is_disk_full(&failure) {
                let message = format!("{}; the partial data was removed", failure.message);
                return Err(failure.with_message(message));
            }
            return Err(failure);
        }
        layout.remove_if_empty();
        if layout.staging().exists() {
            let message = format!(
                "{}; partial data kept in {}: receive the same offer into the same place to \
                 resume, or remove it with `mp partial --remove`",
                failure.message,
                shown(layout.staging())
            );
            return Err(failure.with_message(message));
        }
        Err(failure)
    }
}

/// The writer's next report; never resolves while there is no writer, or once it said its
/// last word (placed, or failed).
async fn next_report(writer: &mut Option<Writer>) -> WriterReport {
    let Some(writer) = writer.as_mut().filter(|w| !w.finished) else {
        return std::future::pending().await;
    };
    let report = writer.reports.recv().await.unwrap_or_else(|| {
        WriterReport::Failed(Failure::new(Kind::Internal, "the writing thread stopped"))
    });
    writer.finished = matches!(report, WriterReport::Placed(_) | WriterReport::Failed(_));
    report
}

/// Prints a text (neutralised if stdout is a terminal), or emits it as a JSON event.
fn show_text(ui: &Ui, text: String) -> Result<(), Failure> {
    if ui.is_json() {
        ui.event("text", json!({ "text": text }));
        return Ok(());
    }
    let shown = if std::io::stdout().is_terminal() {
        text.split('\n').map(display).collect::<Vec<_>>().join("\n")
    } else {
        text
    };
    let mut out = std::io::stdout().lock();
    let newline = if shown.ends_with('\n') { "" } else { "\n" };
    write!(out, "{shown}{newline}")
        .and_then(|_| out.flush())
        .map_err(|e| local_io_failure("cannot write to standard output", e))
}

/// Checks where the offer would go, asks the user, and prepares the staging folder; returns
/// the sink and the prefixes kept from an earlier attempt.
async fn decide(
    manifest: Manifest,
    summary: Summary,
    output: Option<PathBuf>,
    yes: bool,
    overwrite: bool,
    ui: Ui,
) -> Decision {
    let to_stdout = output.as_deref() == Some(std::path::Path::new("-"));
    let mut already_here = 0;
    let sink = if to_stdout {
        if summary.files != 1 || summary.folders != 0 {
            return Err(Failure::new(
                Kind::Usage,
                "-o - takes a single file or stream; the sender offers several entries",
            ));
        }
        Sink::Stdout
    } else {
        let layout = Layout::plan(&manifest, output.as_deref()).map_err(Failure::from_any)?;
        layout
            .check_free(&manifest, overwrite)
            .map_err(Failure::from_any)?;
        // What the answer would need, checked before the question: a missing permission or a
        // full disk must not cost a fresh code after "y".
        let kept = layout.kept_bytes(&manifest);
        let needed = summary.bytes.unwrap_or(0).saturating_sub(kept);
        layout.check_room(needed).map_err(Failure::from_any)?;
        already_here = kept;
        for warning in layout.warnings() {
            ui.warn(&warning);
        }
        Sink::Files(Arc::new(layout))
    };
    ui.event(
        "offer",
        json!({
            "files": summary.files,
            "folders": summary.folders,
            "bytes": summary.bytes,
            "already_here": already_here,
            "paths": manifest.entries.iter().take(100).map(|e| &e.path).collect::<Vec<_>>(),
        }),
    );
    if !yes {
        list(&manifest);
        let mut question = describe(&manifest, &summary);
        if already_here > 0 {
            let to_go = summary.bytes.unwrap_or(0).saturating_sub(already_here);
            question = format!(
                "{} ({} already here from an interrupted transfer, {} to go)?",
                question.trim_end_matches('?'),
                size(already_here),
                size(to_go)
            );
        }
        let accepted = ui.confirm(question).await.map_err(Failure::from_any)?;
        if !accepted {
            return Err(Failure::new(Kind::Declined, "transfer declined"));
        }
    }
    let Sink::Files(layout) = &sink else {
        return Ok((sink, Vec::new()));
    };
    let layout = layout.clone();
    if already_here > 0 {
        // Hashing what is kept takes a while for a large file (about 2 s per GiB): say so
        // rather than sit silent after the "y".
        ui.status(&format!(
            "Checking the {} already here from the interrupted transfer…",
            size(already_here)
        ));
        ui.event("checking", json!({ "bytes": already_here }));
    }
    let kept = tokio::task::spawn_blocking(move || {
        layout.prepare(&manifest)?;
        layout.kept(&manifest)
    })
    .await
    .map_err(|e| Failure::new(Kind::Internal, format!("preparing stopped: {e}")))?
    .map_err(Failure::from_any)?;
    Ok((sink, kept))
}

/// Lists a short offer, or the top-level entries of a long one, before the question.
fn list(manifest: &Manifest) {
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

/// What the pump asks the writing thread.
enum Command {
    Write(Write),
    /// Every file is verified: sync and place.
    Place,
}

/// What the writing thread tells the pump.
enum WriterReport {
    Taken(Taken),
    Written { index: usize, sha256: [u8; 32] },
    Failed(Failure),
    Placed(Result<(), Failure>),
}

/// The writing thread's state: the open file, its hash, what was taken in, and the syncing
/// thread that flushes completed files while the next ones arrive.
struct FileWriter {
    manifest: Manifest,
    layout: Option<Arc<Layout>>,
    prefixes: HashMap<usize, Sha256>,
    progress: Progress,
    overwrite: bool,
    current: Option<(usize, Destination, Sha256)>,
    taken: Taken,
    /// Many files reach the disk with one flush of their file system at the end (a thousand
    /// separate syncs cost 0.3 to 1.5 s here); a few files are synced one by one, which never
    /// waits for anyone else's writes.
    one_flush: bool,
    to_sync: Option<std::sync::mpsc::SyncSender<(usize, File)>>,
    syncer: Option<std::thread::JoinHandle<Result<(), (usize, std::io::Error)>>>,
}

impl FileWriter {
    fn new(
        manifest: Manifest,
        layout: Option<Arc<Layout>>,
        prefixes: HashMap<usize, Sha256>,
        progress: Progress,
        overwrite: bool,
    ) -> FileWriter {
        let files = manifest.entries.iter().filter(|e| e.is_file()).count();
        let one_flush = layout.is_some() && files > SYNC_EACH_AT_MOST;
        let (to_sync, syncing) = std::sync::mpsc::sync_channel::<(usize, File)>(SYNC_QUEUE);
        let syncer = std::thread::spawn(move || {
            for (index, file) in syncing {
                file.sync_data().map_err(|e| (index, e))?;
            }
            Ok(())
        });
        FileWriter {
            manifest,
            layout,
            prefixes,
            progress,
            overwrite,
            current: None,
            taken: Taken::default(),
            one_flush,
            to_sync: Some(to_sync),
            syncer: Some(syncer),
        }
    }

    fn run(
        &mut self,
        inbox: std::sync::mpsc::Receiver<Command>,
        outbox: mpsc::UnboundedSender<WriterReport>,
    ) {
        let mut reported = self.taken;
        while let Ok(mut command) = inbox.recv() {
            // Take in everything already queued, then say how much in one report: one wake-up
            // of the pump per batch, not per frame.
            loop {
                let done = match command {
                    Command::Write(write) => self.write(write, &outbox),
                    Command::Place => {
                        let placed = self.place();
                        let _ = outbox.send(WriterReport::Placed(placed));
                        return;
                    }
                };
                if let Err(why) = done {
                    let _ = outbox.send(WriterReport::Failed(why));
                    return;
                }
                match inbox.try_recv() {
                    Ok(next) if self.taken.bytes - reported.bytes < ACK_EVERY => command = next,
                    Ok(next) => {
                        let _ = outbox.send(WriterReport::Taken(self.taken));
                        reported = self.taken;
                        command = next;
                    }
                    Err(_) => break,
                }
            }
            if self.taken != reported {
                let _ = outbox.send(WriterReport::Taken(self.taken));
                reported = self.taken;
            }
        }
    }

    fn write(
        &mut self,
        write: Write,
        outbox: &mpsc::UnboundedSender<WriterReport>,
    ) -> Result<(), Failure> {
        match write {
            Write::Open { index, keep, begin } => {
                let hasher = if keep > 0 {
                    self.prefixes.remove(&index).unwrap_or_default()
                } else {
                    Sha256::new()
                };
                self.current = Some((index, self.open(index, keep)?, hasher));
                if begin {
                    self.taken.messages += 1;
                }
            }
            Write::Data { index, frame } => {
                let (_, output, hasher) = self
                    .current
                    .as_mut()
                    .filter(|(open, ..)| *open == index)
                    .ok_or_else(|| Failure::new(Kind::Internal, "a write to no open file"))?;
                let payload = &frame[1..];
                output
                    .write_all(payload)
                    .map_err(|e| write_error(&self.layout, &self.manifest, index, e))?;
                hasher.update(payload);
                self.progress.inc(payload.len() as u64);
                self.taken.bytes += payload.len() as u64;
                self.taken.messages += 1;
            }
            Write::End { index } => {
                let (_, output, hasher) =
                    self.current
                        .take()
                        .filter(|(open, ..)| *open == index)
                        .ok_or_else(|| Failure::new(Kind::Internal, "an end of no open file"))?;
                let flushed = output
                    .finish()
                    .map_err(|e| write_error(&self.layout, &self.manifest, index, e))?;
                if let (Some(file), false) = (flushed, self.one_flush) {
                    if let Some(to_sync) = &self.to_sync {
                        let _ = to_sync.send((index, file));
                    }
                }
                let sha256 = hasher.finalize().into();
                let _ = outbox.send(WriterReport::Written { index, sha256 });
                self.taken.messages += 1;
            }
        }
        Ok(())
    }

    /// Every file is verified: wait for them to reach the disk, then give them their names.
    fn place(&mut self) -> Result<(), Failure> {
        drop(self.to_sync.take());
        if let Some(syncer) = self.syncer.take() {
            match syncer.join() {
                Ok(Ok(())) => {}
                Ok(Err((index, err))) => {
                    return Err(write_error(&self.layout, &self.manifest, index, err))
                }
                Err(_) => return Err(Failure::new(Kind::Internal, "the syncing thread panicked")),
            }
        }
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        if self.one_flush {
            layout.sync_all().map_err(Failure::from_any)?;
        }
        layout
            .finish(&self.manifest, self.overwrite)
            .map_err(Failure::from_any)
    }

    /// Opens the output for entry `index`: stdout, or its staged file (kept up to `keep`
    /// bytes when resuming, else truncated).
    fn open(&self, index: usize, keep: u64) -> Result<Destination, Failure> {
        let Some(layout) = &self.layout else {
            return Ok(Destination::Stdout(std::io::BufWriter::with_capacity(
                WRITE_BUFFER,
                std::io::stdout().lock(),
            )));
        };
        let entry = &self.manifest.entries[index].path;
        let path = layout.staged(entry);
        let cannot = |e| local_io_failure(&format!("cannot write {}", shown(&path)), e);
        // Through the staging folder's handle, never through a link planted in it.
        let mut file: File = layout.create_staged(entry).map_err(cannot)?;
        // What was hashed to offer the resume must still be there.
        if keep > 0 && file.metadata().map_err(cannot)?.len() < keep {
            return Err(Failure::new(
                Kind::LocalIo,
                format!("the kept part of {} changed meanwhile", shown(&path)),
            ));
        }
        file.set_len(keep).map_err(cannot)?;
        file.seek(std::io::SeekFrom::Start(keep)).map_err(cannot)?;
        // Small enough that full DATA payloads bypass the buffer (no extra copy), large enough
        // to gather the writes of small files.
        Ok(Destination::File {
            out: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            written: keep,
            handed: keep,
        })
    }
}

/// What the user is told when writing entry `index` failed.
fn write_error(
    layout: &Option<Arc<Layout>>,
    manifest: &Manifest,
    index: usize,
    err: std::io::Error,
) -> Failure {
    {
        match layout {
            None if err.kind() == std::io::ErrorKind::BrokenPipe => {
                Failure::new(Kind::LocalIo, "standard output was closed (broken pipe)")
                    .caused_by(err)
            }
            None => local_io_failure("cannot write to standard output", err),
            Some(layout) => local_io_failure(
                &format!(
                    "cannot write {}",
                    shown(&layout.staged(&manifest.entries[index].path))
                ),
                err,
            ),
        }
    }
}

/// Where one entry's bytes go.
enum Destination {
    Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>),
    File {
        out: std::io::BufWriter<File>,
        /// The file's length so far.
        written: u64,
        /// Bytes before this offset were already handed to the disk (`start_writeback`).
        handed: u64,
    },
}

impl Destination {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Destination::Stdout(out) => out.write_all(bytes),
            Destination::File {
                out,
                written,
                handed,
            } => {
                out.write_all(bytes)?;
                *written += bytes.len() as u64;
                if *written - *handed >= WRITEBACK_EVERY {
                    out.flush()?;
                    start_writeback(out.get_ref(), *handed, *written - *handed);
                    *handed = *written;
                }
                Ok(())
            }
        }
    }

    /// Flushes; returns a file, which must still reach the disk (`fdatasync`) before it may
    /// get its final name. One sync per file is precise, unlike a file-system-wide `syncfs`
    /// that would also wait for whatever else is being written there.
    fn finish(self) -> std::io::Result<Option<File>> {
        match self {
            Destination::Stdout(mut out) => out.flush().map(|_| None),
            Destination::File { out, .. } => out.into_inner().map(Some).map_err(|e| e.into_error()),
        }
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to the disk, and
/// returns at once: the page cache then drains while the transfer goes on, instead of all at
/// once in the final `fdatasync` (which took 0.5 s of a 5 s, 1 GiB receive here). Only a
/// hint: durability still comes from that `fdatasync`, so failures are ignored, and other
/// systems flush at the end only.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain system call on a descriptor this `File` owns and keeps open for the
    // call; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}
