//! The terminal: messages, the code and its QR code, the prompt, the progress bar.
//!
//! Everything goes to stderr, so stdout stays free for data. Progress bars and QR codes are
//! drawn only when stderr is a terminal.

use std::io::{BufRead, IsTerminal, Write};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{fail, Kind};
use crate::protocol::code::Code;

/// How chatty to be.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    quiet: bool,
    tty: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        Ui {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A line of information (suppressed by `--quiet`).
    pub fn status(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Shows the code to pass to the receiver (always: a script needs it too).
    pub fn show_code(&self, code: &Code, signal_hint: Option<&str>) {
        let signal = signal_hint
            .map(|url| format!("--signal {url} "))
            .unwrap_or_default();
        eprintln!("Code: {code}");
        if !self.quiet {
            eprintln!("On the other machine: mp receive {signal}{code}");
        }
        if self.tty && !self.quiet {
            if let Ok(qr) = qrcode::QrCode::new(code.as_str().as_bytes()) {
                let image = qr
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build();
                eprintln!("{image}");
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

    /// A byte progress bar for `total` bytes, or a hidden one.
    pub fn progress(&self, total: u64, name: &str) -> ProgressBar {
        if !self.tty || self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("█▉▊▋▌▍▎▏ ");
        bar.set_style(style);
        bar.set_prefix(name.to_string());
        bar
    }
}

/// "2.4 MiB"
pub fn size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}
