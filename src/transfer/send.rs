//! `mp send`: the pump around the [`Sender`] engine.
//!
//! The pump checks what is offered, joins the rendezvous, and then loops: it carries out what
//! the engine asks (send an envelope, make the WebRTC offer, hash prefixes, start reading,
//! send a frame) and feeds it what happened (an envelope, the link opening, a frame, a chunk
//! read, Ctrl-C, the time). A reading thread reads ahead, hashes and frames the files; the
//! engine lets a chunk in only when the receiver's window has room, so memory stays a few MiB
//! whatever the size of the transfer.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::connection::{Connection, Happened};
use super::source::{Origin, Source};
use super::{finished, NetOptions, Work};
use crate::error::{fail, local_io_failure, Failure, Kind};
use crate::protocol::frame::DATA_TYPE;
use crate::protocol::message::{Kept, Message, MAX_TEXT};
use crate::protocol::pake::Side;
use crate::protocol::seal::MAX_MESSAGE;
use crate::protocol::sender::{Chunk, Event, Input, Offer, Output, Planned, Sender};
use crate::rendezvous;
use crate::ui::{size, Progress, Ui};

/// A prefix's hash and the hash state after it (both `None` when the file is shorter).
type Hashed = (Option<[u8; 32]>, Option<Sha256>);

/// Failed key exchanges (someone with a wrong code) before the sender gives up.
const KEY_EXCHANGE_TRIES: u32 = 3;

/// Chunks read ahead of the engine: 1 MiB, beside the kernel's own read-ahead. Twice that
/// cost the sender 2 MiB of peak RSS (34-35 against 32-33 MiB on a 1 GiB LAN transfer) and
/// was no faster.
const READ_AHEAD: usize = 4;

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
    /// Leave out names inside folders that the receiver would refuse.
    pub skip_unsafe: bool,
}

pub async fn run(args: SendArgs, ui: Ui) -> anyhow::Result<()> {
    // Everything local is checked before anyone is kept waiting.
    let (offer, source) = match args.what {
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
        What::Text(text) => (Offer::Text(text), None),
        What::Stdin(name) => {
            let source = Source::stdin(&name)?;
            (Offer::Files(source.manifest.clone()), Some(source))
        }
        What::Paths(paths) => {
            // A large tree takes a while to walk: keep it off the runtime (Ctrl-C stays live).
            let skip = args.skip_unsafe;
            let source = tokio::task::spawn_blocking(move || Source::paths(&paths, skip)).await??;
            (Offer::Files(source.manifest.clone()), Some(source))
        }
    };
    let mut title = String::new();
    let mut total = None;
    if let Some(source) = &source {
        let summary = source
            .manifest
            .validate()
            .map_err(|e| fail(Kind::Usage, format!("cannot send this: {e}")))?;
        for skipped in &source.skipped {
            ui.warn(&format!("skipping {skipped}"));
        }
        title = source.manifest.title(&summary);
        total = summary.bytes;
    }

    let (mut rendezvous, code) =
        rendezvous::join(&args.net.signal, args.code.as_deref(), Side::Sender).await?;
    super::check_relay(&args.net, rendezvous.as_ref())?;
    ui.show_code(&code, args.signal_hint.as_deref());
    ui.event("waiting", json!({}));
    let is_text = source.is_none();
    let started = Instant::now();
    let mut source = source;
    let mut tries_left = KEY_EXCHANGE_TRIES;
    // A receiver who mistyped the code fails the key exchange: wait for the right one, a few
    // times at most, so a guesser's odds stay tiny.
    let (pump, result) = loop {
        let wait = args.net.wait.saturating_sub(started.elapsed());
        let engine = Sender::new(code.clone(), offer.clone(), Instant::now(), wait);
        let mut pump = Pump {
            engine,
            connection: Connection::new(args.net.clone(), rendezvous),
            source: source.take(),
            ui: ui.clone(),
            title: title.clone(),
            total,
            progress: None,
            connected_at: None,
            reader: None,
            hash_request: Vec::new(),
            prefixes: HashMap::new(),
        };
        let result = pump.run().await;
        let retry = match &result {
            Err(failure) => {
                pump.connection.was_paired()
                    && !pump.engine.is_confirmed()
                    && matches!(failure.kind, Kind::WrongCode | Kind::PeerGone)
            }
            Ok(_) => false,
        };
        tries_left -= 1;
        if !retry || tries_left == 0 {
            break (pump, result);
        }
        let what = match &result {
            Err(failure) if failure.kind == Kind::WrongCode => {
                "someone tried to receive with a wrong code"
            }
            _ => "the receiver left before the key exchange finished",
        };
        ui.warn(&format!(
            "{what}; still waiting for the receiver ({tries_left} more failed tries end this)"
        ));
        ui.event("wrong-code", json!({ "tries_left": tries_left }));
        source = pump.source.take();
        rendezvous =
            match rendezvous::join(&args.net.signal, Some(code.as_str()), Side::Sender).await {
                Ok((rendezvous, _)) => rendezvous,
                Err(failure) => break (pump, Err(failure)),
            };
        ui.event("waiting", json!({}));
    };
    if let Some(progress) = &pump.progress {
        progress.finish();
    }
    let report = result?;
    if is_text {
        ui.event("finished", json!({}));
        ui.status("Text sent.");
        return Ok(());
    }
    ui.event(
        "finished",
        json!({
            "bytes": report.sent + report.already_there,
            "already_there": report.already_there,
            "seconds": crate::ui::seconds(pump.connected_at.map_or(Duration::ZERO, |at| at.elapsed())),
        }),
    );
    let resumed = if report.already_there > 0 {
        format!("; {} were already there", size(report.already_there))
    } else {
        String::new()
    };
    let pace = pump.connected_at.map_or(String::new(), |at| {
        crate::ui::pace(report.sent, at.elapsed())
    });
    ui.status(&format!(
        "Sent {title} ({}{resumed}){pace}.",
        size(report.sent)
    ));
    Ok(())
}

/// Everything the sender's loop holds.
struct Pump {
    engine: Sender,
    connection: Connection,
    source: Option<Source>,
    ui: Ui,
    title: String,
    total: Option<u64>,
    /// Shown once connected.
    progress: Option<Progress>,
    connected_at: Option<Instant>,
    reader: Option<mpsc::Receiver<Chunk>>,
    /// The prefixes the engine asked to hash, in its order.
    hash_request: Vec<Kept>,
    /// Hash states after each prefix the receiver kept, for the reader to continue from.
    prefixes: HashMap<usize, Sha256>,
}

impl Pump {
    async fn run(&mut self) -> Result<crate::protocol::sender::Report, Failure> {
        let mut hashing: Work<Result<Vec<Hashed>, Failure>> = None;
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
                    Output::CreateOffer { trickle } => {
                        if let Err(why) = self.connection.start_peer(None, trickle).await {
                            self.handle(Input::LinkFailed(why));
                        }
                    }
                    Output::ApplyAnswer(answer) => {
                        if let Err(why) = self.connection.apply_answer(answer).await {
                            self.handle(Input::LinkFailed(why));
                        }
                    }
                    Output::HashPrefixes(kept) => {
                        let kept_bytes: u64 = kept.iter().map(|k| k.offset).sum();
                        self.ui.status(&format!(
                            "The receiver already has {} from an earlier attempt; checking it \
                             matches…",
                            size(kept_bytes)
                        ));
                        self.ui.event("checking", json!({ "bytes": kept_bytes }));
                        let work = hash_prefixes(self.origins(&kept), kept.clone());
                        hashing = Some(Box::pin(work));
                        self.hash_request = kept;
                    }
                    Output::StartReading { plan, max_data } => self.start_reading(plan, max_data),
                    Output::Frame(frame) => {
                        if self.connection.send_frame(frame).await {
                            self.handle(Input::Interrupt);
                        }
                    }
                    Output::Event(Event::Connected) => {
                        self.connection.show_path(&self.ui).await;
                        self.connected_at = Some(Instant::now());
                        self.progress = Some(self.ui.progress(self.total, &self.title));
                    }
                    Output::Event(Event::AwaitingAccept) => {
                        // The receiver decides; the connection is made meanwhile.
                        self.connection.prepare_peer();
                        self.show(Event::AwaitingAccept);
                    }
                    Output::Event(event) => self.show(event),
                    Output::AddCandidate(candidate) => {
                        self.connection.add_remote_candidate(candidate).await
                    }
                }
            };
            let wants_chunk = self.engine.wants_chunk() && self.reader.is_some();
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
                    Happened::LinkOpen {
                        max_message,
                        path_rtt,
                    } => Input::LinkOpen {
                        max_message,
                        path_rtt,
                    },
                    Happened::LinkFailed(why) => Input::LinkFailed(why),
                    Happened::Frame(frame) => Input::Frame(frame),
                    Happened::LinkClosed => Input::LinkClosed,
                    Happened::Interrupt => Input::Interrupt,
                },
                hashed = finished(&mut hashing) => match hashed {
                    Ok(hashed) => {
                        let mut hashes = Vec::with_capacity(hashed.len());
                        for (kept, (hash, state)) in self.hash_request.iter().zip(hashed) {
                            if let Some(state) = state {
                                self.prefixes.insert(kept.index, state);
                            }
                            hashes.push(hash);
                        }
                        Input::Prefixes(Ok(hashes))
                    }
                    Err(why) => Input::Prefixes(Err(why)),
                },
                chunk = next_chunk(&mut self.reader), if wants_chunk => chunk,
                _ = tokio::time::sleep_until(deadline.into()) => Input::Timeout,
            };
            self.handle(input);
        };
        self.connection.close(result).await
    }

    fn handle(&mut self, input: Input) {
        self.engine.handle(Instant::now(), input);
    }

    fn show(&self, event: Event) {
        match event {
            Event::Paired => {}
            Event::AwaitingAccept => self.ui.status("Waiting for the receiver to accept…"),
            Event::Accepted { resuming } => {
                self.ui.event("accepted", json!({ "resuming": resuming }))
            }
            Event::Connected => {}
            Event::AlreadyThere { bytes } | Event::Sent { bytes } => {
                if let Some(progress) = &self.progress {
                    progress.inc(bytes);
                }
            }
        }
    }

    /// Where the kept files' bytes come from, and whether each was found inside a folder.
    fn origins(&self, kept: &[Kept]) -> Vec<Option<(PathBuf, bool)>> {
        let source = self.source.as_ref().expect("files are offered");
        kept.iter()
            .map(|k| match source.origins.get(k.index) {
                Some(Some(Origin::Path(path))) => Some((path.clone(), false)),
                Some(Some(Origin::Walked(path))) => Some((path.clone(), true)),
                _ => None,
            })
            .collect()
    }

    fn start_reading(&mut self, plan: Vec<Planned>, max_data: usize) {
        let Some(source) = self.source.take() else {
            self.handle(Input::Chunk(Chunk::Failed(Failure::new(
                Kind::Internal,
                "nothing to read",
            ))));
            return;
        };
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let prefixes = std::mem::take(&mut self.prefixes);
        std::thread::spawn(move || read_files(source, plan, prefixes, max_data, tx));
        self.reader = Some(rx);
    }
}

/// The next chunk from the reading thread.
async fn next_chunk(reader: &mut Option<mpsc::Receiver<Chunk>>) -> Input {
    match reader.as_mut() {
        Some(rx) => match rx.recv().await {
            Some(chunk) => Input::Chunk(chunk),
            None => Input::Chunk(Chunk::Failed(Failure::new(
                Kind::Internal,
                "the reading thread stopped",
            ))),
        },
        None => std::future::pending().await,
    }
}

/// Hashes the first `offset` bytes of each file (on a blocking thread): the proof sent to the
/// receiver, and the hash state the reader continues from. `None` for a file now shorter.
async fn hash_prefixes(
    paths: Vec<Option<(PathBuf, bool)>>,
    kept: Vec<Kept>,
) -> Result<Vec<Hashed>, Failure> {
    let work = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(kept.len());
        for (path, kept) in paths.into_iter().zip(kept) {
            let Some((path, walked)) = path else {
                out.push((None, None));
                continue;
            };
            let cannot = |e| local_io_failure(&format!("cannot read {}", path.display()), e);
            let mut file = open_source(&path, walked)?;
            let mut hasher = Sha256::new();
            let copied =
                std::io::copy(&mut (&mut file).take(kept.offset), &mut hasher).map_err(cannot)?;
            if copied == kept.offset {
                out.push((Some(hasher.clone().finalize().into()), Some(hasher)));
            } else {
                out.push((None, None));
            }
        }
        Ok(out)
    });
    work.await.unwrap_or_else(|e| {
        Err(Failure::new(
            Kind::Internal,
            format!("hashing stopped: {e}"),
        ))
    })
}

/// The reading thread: for each planned file, DATA chunks from its start, then END with the
/// SHA-256 of the whole file (continuing the prefix's hash state when resuming).
fn read_files(
    source: Source,
    plan: Vec<Planned>,
    mut prefixes: HashMap<usize, Sha256>,
    max_data: usize,
    tx: mpsc::Sender<Chunk>,
) {
    let mut origins = source.origins;
    for Planned { index, start } in plan {
        let expected = source.manifest.entries[index].size;
        let hasher = if start > 0 {
            prefixes.remove(&index).unwrap_or_default()
        } else {
            Sha256::new()
        };
        let read = match origins.get_mut(index).and_then(Option::take) {
            Some(Origin::Stdin) => read_stream(
                &mut std::io::stdin().lock(),
                hasher,
                index,
                max_data,
                None,
                &tx,
                "cannot read standard input",
            )
            .map(|done| done.map(|(_, hash)| hash)),
            Some(Origin::Path(path)) => read_path(
                &path,
                false,
                start,
                expected.unwrap_or(0),
                hasher,
                index,
                max_data,
                &tx,
            ),
            Some(Origin::Walked(path)) => read_path(
                &path,
                true,
                start,
                expected.unwrap_or(0),
                hasher,
                index,
                max_data,
                &tx,
            ),
            None => Err(Failure::new(Kind::Internal, "a file without an origin")),
        };
        let chunk = match read {
            Ok(Some(sha256)) => Chunk::End { index, sha256 },
            // The transfer ended meanwhile.
            Ok(None) => return,
            Err(why) => Chunk::Failed(why),
        };
        let failed = matches!(chunk, Chunk::Failed(_));
        if tx.blocking_send(chunk).is_err() || failed {
            return;
        }
    }
}

/// Opens a file to send: a file found inside a folder is opened without following a link and
/// without blocking on a FIFO swapped in after the walk; either must still be a regular file.
fn open_source(path: &std::path::Path, walked: bool) -> Result<std::fs::File, Failure> {
    let cannot = |e| local_io_failure(&format!("cannot read {}", path.display()), e);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if walked {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(Failure::new(
            Kind::LocalIo,
            format!("{} is no longer a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Reads one file of `expected` bytes from `start`; returns its SHA-256, or `None` when the
/// transfer ended meanwhile.
#[allow(clippy::too_many_arguments)]
fn read_path(
    path: &std::path::Path,
    walked: bool,
    start: u64,
    expected: u64,
    hasher: Sha256,
    index: usize,
    max_data: usize,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Option<[u8; 32]>, Failure> {
    let what = format!("cannot read {}", path.display());
    let cannot = |e| local_io_failure(&what, e);
    let mut file = open_source(path, walked)?;
    let changed = || {
        Failure::new(
            Kind::LocalIo,
            format!("{} changed while being sent", path.display()),
        )
    };
    if start > expected {
        return Err(changed());
    }
    file.seek(std::io::SeekFrom::Start(start)).map_err(cannot)?;
    let remaining = expected - start;
    let input = &mut (&mut file).take(remaining);
    let Some((read, hash)) =
        read_stream(input, hasher, index, max_data, Some(remaining), tx, &what)?
    else {
        return Ok(None);
    };
    let grew = file.read(&mut [0u8; 1]).is_ok_and(|n| n > 0);
    if read != remaining || grew {
        return Err(changed());
    }
    Ok(Some(hash))
}

/// Reads the rest of `input` into DATA chunks; returns the bytes read and the final hash, or
/// `None` when the transfer ended meanwhile.
fn read_stream(
    input: &mut dyn Read,
    mut hasher: Sha256,
    index: usize,
    max_data: usize,
    length: Option<u64>,
    tx: &mpsc::Sender<Chunk>,
    what: &str,
) -> Result<Option<(u64, [u8; 32])>, Failure> {
    let mut read: u64 = 0;
    loop {
        // A frame no larger than what is left: a small file must not pin a full-size buffer
        // while SCTP holds it.
        let want = length.map_or(max_data, |length| {
            (length - read).min(max_data as u64) as usize
        });
        if want == 0 {
            return Ok(Some((read, hasher.finalize().into())));
        }
        // Read into the frame's spare capacity, bounded by `take`: a file reads straight into
        // it without the buffer being zeroed first (zeroing each 256 KiB frame was 3% of a
        // sender's CPU), in two reads (`read_to_end` tries 8 KiB, then the rest at once); a
        // pipe gives at most its buffer per read, as before. EOF ends the frame early.
        let mut frame = Vec::with_capacity(1 + want);
        frame.push(DATA_TYPE);
        if let Err(e) = (&mut *input).take(want as u64).read_to_end(&mut frame) {
            return Err(local_io_failure(what, e));
        }
        let read_now = frame.len() - 1;
        if read_now == 0 {
            return Ok(Some((read, hasher.finalize().into())));
        }
        hasher.update(&frame[1..]);
        read += read_now as u64;
        if tx.blocking_send(Chunk::Data { index, frame }).is_err() {
            return Ok(None);
        }
    }
}
