//! What the user sees: messages, the code and its QR code, the prompt, progress, JSON events.
//!
//! Human output goes to stderr, so stdout stays free for data. Progress bars and QR codes are
//! drawn only when stderr is a terminal. With `--json`, every message becomes one JSON object
//! per line (docs/JSON.md) on stdout, or on stderr when stdout carries data.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{fail, Failure, Kind};
use crate::protocol::code::Code;
use crate::protocol::manifest::display;

/// JSON progress events are sent at most this often.
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where JSON events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonSink {
    Stdout,
    Stderr,
}

/// How to talk to the user.
#[derive(Clone, Debug)]
pub struct Ui {
    quiet: bool,
    tty: bool,
    json: Option<JsonSink>,
    start: Instant,
    qr: QrOptions,
}

/// What `show_code` does with the QR code of the link.
#[derive(Clone, Debug, Default)]
pub struct QrOptions {
    /// The page's address on the signaling server (`http(s)://host/`): the QR code encodes it
    /// with the code in its fragment. Without it, no QR code.
    pub page: Option<String>,
    /// Draw it on the terminal (when stderr is one).
    pub show: bool,
    /// Also write it to this file, as SVG or PNG (by extension).
    pub file: Option<std::path::PathBuf>,
}

impl Ui {
    /// `stdout_is_data`: stdout carries received bytes (`-o -`), so JSON goes to stderr.
    pub fn new(quiet: bool, json: bool, stdout_is_data: bool) -> Ui {
        let sink = if stdout_is_data {
            JsonSink::Stderr
        } else {
            JsonSink::Stdout
        };
        Ui {
            quiet,
            tty: std::io::stderr().is_terminal(),
            json: json.then_some(sink),
            start: Instant::now(),
            qr: QrOptions::default(),
        }
    }

    /// The same, with these QR code options for [`Ui::show_code`].
    pub fn with_qr(mut self, qr: QrOptions) -> Ui {
        self.qr = qr;
        self
    }

    pub fn is_json(&self) -> bool {
        self.json.is_some()
    }

    /// A line of information for people (suppressed by `--quiet` and `--json`).
    pub fn status(&self, line: &str) {
        if !self.quiet && self.json.is_none() {
            eprintln!("{line}");
        }
    }

    /// A warning for people (suppressed by `--json` only), or a `warning` event.
    pub fn warn(&self, line: &str) {
        match self.json {
            Some(_) => self.event("warning", json!({ "message": line })),
            None => eprintln!("mp: warning: {line}"),
        }
    }

    /// One JSON event (nothing without `--json`). `fields` must be an object.
    pub fn event(&self, name: &str, fields: Value) {
        let Some(sink) = self.json else { return };
        let mut object = serde_json::Map::new();
        object.insert("event".into(), name.into());
        object.insert("t".into(), json!(seconds(self.start.elapsed())));
        if let Value::Object(extra) = fields {
            object.extend(extra);
        }
        let line = Value::Object(object).to_string();
        match sink {
            JsonSink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            JsonSink::Stderr => eprintln!("{line}"),
        }
    }

    /// Reports the failure that ends the program: one line, or one `error` event.
    pub fn failure(&self, failure: &Failure) {
        match self.json {
            Some(_) => self.event(
                "error",
                json!({
                    "kind": failure.kind.name(),
                    "exit_code": failure.kind.exit_code(),
                    "message": display(&failure.message),
                }),
            ),
            // Messages may quote a peer's or a server's words: never let them drive the terminal.
            None => eprintln!("mp: {}", display(&failure.message)),
        }
    }

    /// Shows the code to pass to the receiver (always: a script needs it too), the link that
    /// opens the web page with it, and its QR code.
    pub fn show_code(&self, code: &Code, signal_hint: Option<&str>) {
        let link = self
            .qr
            .page
            .as_ref()
            .map(|page| crate::qr::link(page, code.as_str()));
        if let (Some(link), Some(file)) = (&link, &self.qr.file) {
            if let Err(err) = crate::qr::write_file(file, link, code.as_str()) {
                self.warn(&format!(
                    "cannot write the QR code to {}: {err}",
                    shown(file)
                ));
            }
        }
        if self.json.is_some() {
            let mut fields = json!({ "code": code.as_str() });
            if let Some(link) = &link {
                fields["link"] = json!(link);
            }
            self.event("code", fields);
            return;
        }
        let signal = signal_hint
            .map(|url| format!("--signal {url} "))
            .unwrap_or_default();
        eprintln!("Code: {code}");
        if !self.quiet {
            eprintln!("On the other machine: mp receive {signal}{code}");
            if let Some(link) = &link {
                eprintln!("Or open (a phone can scan the QR code): {link}");
            }
        }
        if let Some(link) = link.filter(|_| self.tty && !self.quiet && self.qr.show) {
            if let Some(image) = crate::qr::terminal(&link) {
                eprint!("{image}");
            }
        }
    }

    /// Asks a yes/no question on the terminal; anything but y/yes is no.
    pub async fn confirm(&self, question: String) -> anyhow::Result<bool> {
        if !std::io::stdin().is_terminal() {
            return Err(fail(
                Kind::NoTerminal,
                "cannot ask for confirmation: stdin is not a terminal (pass --yes to accept)",
            ));
        }
        let answer = tokio::task::spawn_blocking(move || {
            eprint!("{question} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await?
        .map_err(|e| crate::error::local_io("reading the answer", e))?;
        Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    }

    /// Progress over `total` bytes (`None`: unknown, a stream).
    pub fn progress(&self, total: Option<u64>, name: &str) -> Progress {
        let bar = if !self.tty || self.quiet || self.json.is_some() {
            ProgressBar::hidden()
        } else {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{prefix} {spinner} {bytes} {binary_bytes_per_sec}",
                ),
            };
            let style = ProgressStyle::with_template(template)
                .expect("the templates are valid")
                .progress_chars("█▉▊▋▌▍▎▏ ");
            bar.set_style(style);
            bar.set_prefix(name.to_string());
            bar
        };
        Progress(Arc::new(ProgressInner {
            bar,
            ui: self.clone(),
            total,
            bytes: AtomicU64::new(0),
            last_event: Mutex::new(None),
        }))
    }
}

/// Progress shared between the task that moves bytes and the one that reports them.
#[derive(Clone)]
pub struct Progress(Arc<ProgressInner>);

struct ProgressInner {
    bar: ProgressBar,
    ui: Ui,
    total: Option<u64>,
    bytes: AtomicU64,
    last_event: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn inc(&self, n: u64) {
        let inner = &self.0;
        let before = inner.bytes.fetch_add(n, Ordering::Relaxed);
        let bytes = before + n;
        inner.bar.inc(n);
        if inner.ui.json.is_some() {
            if before == 0 && n > 0 {
                inner.ui.event("first-byte", json!({}));
            }
            let mut last = inner.last_event.lock().expect("progress lock");
            if last.is_none_or(|at| at.elapsed() >= JSON_PROGRESS_EVERY) {
                *last = Some(Instant::now());
                drop(last);
                inner
                    .ui
                    .event("progress", json!({ "bytes": bytes, "total": inner.total }));
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Notes a completed file.
    pub fn file_done(&self, path: &str) {
        self.0.ui.event("file-done", json!({ "path": path }));
    }

    pub fn finish(&self) {
        self.0.bar.finish_and_clear();
    }
}

/// A path made safe to print (see [`display`](crate::protocol::manifest::display)): received
/// names are chosen by the sender.
pub fn shown(path: &std::path::Path) -> String {
    crate::protocol::manifest::display(&path.display().to_string())
}

/// A duration in seconds, to the millisecond, for JSON events.
pub fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// " in 3.2 s (301 MiB/s)": how long moving `bytes` took, for the final line.
pub fn pace(bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 0.001 {
        return String::new();
    }
    let per_second = (bytes as f64 / seconds) as u64;
    format!(" in {} ({}/s)", duration(elapsed), size(per_second))
}

/// "39 ms", "2.0 s", "3 min 05 s": as precise as a person reads it.
fn duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 1.0 {
        format!("{} ms", elapsed.as_millis().max(1))
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = elapsed.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// "2.40 MiB"
pub fn size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_says_how_fast() {
        assert_eq!(
            pace(300 * 1024 * 1024, Duration::from_secs(2)),
            " in 2.0 s (150.00 MiB/s)"
        );
        assert_eq!(pace(5, Duration::ZERO), "");
        assert_eq!(
            pace(3 << 20, Duration::from_millis(39)),
            " in 39 ms (76.92 MiB/s)"
        );
        assert_eq!(
            pace(1 << 30, Duration::from_secs(185)),
            " in 3 min 05 s (5.54 MiB/s)"
        );
    }
}
