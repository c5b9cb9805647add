//! A small world for integration tests: a real `mp signal` on a free loopback port, and real
//! `mp send` / `mp receive` processes whose ICE is restricted to 127.0.0.1.
//!
//! # Writing a test
//!
//! Build a command ([`mp`], [`send`], [`receive`]), [`spawn`] it, and you hold a [`Running`]
//! process whose stdout and stderr are collected in the background. Then either
//!
//! - wait for it to finish: [`Running::wait`] gives an [`Outcome`] (exit code, all output) to
//!   assert on, e.g. `outcome.assert_code(exit::DECLINED)`; or
//! - wait for something it says while it runs: [`Running::wait_event`] (a JSON event, so pass
//!   `--json`; see docs/JSON.md for the events and their order), [`Running::wait_line`] (a line
//!   of human text) or [`Running::wait_text`] (any text, e.g. a prompt that ends without a
//!   newline). Waiting does not consume anything: the whole output is still in the
//!   [`Outcome`] at the end.
//!
//! When one process must be at a certain point before the next one starts, wait for what says
//! so; never sleep a fixed time. A receiver that must be in its room first:
//!
//! ```ignore
//! let receiver = spawn(receive(&signal, &code, dst.path()).args(["--yes", "--json"]));
//! receiver.wait_event("waiting", STEP);
//! let sender = spawn(&mut send(&signal, &code, &path));
//! ```
//!
//! Where nothing is said (how much a receiver has written), poll the condition with a
//! deadline, as [`wait_until_staged`] does.
//!
//! Every wait has a timeout, and a wait that times out (or whose process exits first) fails the
//! test and prints the output so far. Every process is killed when its [`Running`] (or
//! [`Signal`]) is dropped, so a failing test leaves nothing behind.
//!
//! Exit codes are named in [`exit`]: failures by their [`Kind`], so the number is the one
//! `src/error.rs` gives.

#![allow(dead_code)]

pub mod netns;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use mp::error::Kind;
use serde_json::Value;

/// A generous upper bound for a whole transfer on a loaded 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(120);

/// A generous upper bound for one step of a process: starting up, joining a room, an event.
pub const STEP: Duration = Duration::from_secs(30);

/// Exit codes by name. A failure is named by its [`Kind`], whose code is
/// [`Kind::exit_code`]: the tests follow `src/error.rs` instead of repeating its numbers.
pub mod exit {
    use super::Kind;

    pub const SUCCESS: i32 = 0;
    pub const USAGE: Kind = Kind::Usage;
    pub const WRONG_CODE: Kind = Kind::WrongCode;
    pub const DECLINED: Kind = Kind::Declined;
    pub const TIMEOUT: Kind = Kind::Timeout;
    pub const PEER_GONE: Kind = Kind::PeerGone;
    pub const SERVER: Kind = Kind::Server;
    pub const ROOM_FULL: Kind = Kind::RoomFull;
    pub const CONNECT: Kind = Kind::Connect;
    pub const EXISTS: Kind = Kind::Exists;
    pub const LOCAL_IO: Kind = Kind::LocalIo;
    pub const INTEGRITY: Kind = Kind::Integrity;
    pub const NO_TERMINAL: Kind = Kind::NoTerminal;
    pub const INTERRUPTED: Kind = Kind::Interrupted;
    pub const NO_SENDER: Kind = Kind::NoSender;
}

/// What [`Outcome::assert_code`] accepts: a plain exit code, or a [`Kind`] (its exit code).
pub trait ExitCode: Copy + std::fmt::Debug {
    fn code(self) -> i32;
}

impl ExitCode for i32 {
    fn code(self) -> i32 {
        self
    }
}

impl ExitCode for Kind {
    fn code(self) -> i32 {
        self.exit_code().into()
    }
}

/// The binary under test: Cargo names it to integration tests; a program that borrows this
/// harness (bench/web.rs, an example in `target/<profile>/examples/`) takes `MP_BIN`, else the
/// `mp` one folder up.
pub fn mp_bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_mp") {
        return PathBuf::from(path);
    }
    if let Some(path) = std::env::var_os("MP_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of this program");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("an example lives in target/<profile>/examples/");
    profile.join(format!("mp{}", std::env::consts::EXE_SUFFIX))
}

/// `mp` with a clean environment: loopback-only ICE, no inherited signaling URL, no colour,
/// no stdin, stdout and stderr piped (to be collected by [`spawn`]).
pub fn mp() -> Command {
    let mut cmd = Command::new(mp_bin());
    cmd.env_remove("MP_SIGNAL")
        .env("MP_BIND", "127.0.0.1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `mp send --signal URL --code CODE FILE`.
pub fn send(signal: &Signal, code: &str, file: &Path) -> Command {
    let mut cmd = mp();
    cmd.arg("send")
        .args(["--signal", &signal.url, "--code", code])
        .arg(file);
    cmd
}

/// `mp receive --signal URL CODE -o DIR` (add `--yes` etc. yourself).
pub fn receive(signal: &Signal, code: &str, dir: &Path) -> Command {
    let mut cmd = mp();
    cmd.arg("receive")
        .args(["--signal", &signal.url])
        .arg(code)
        .arg("-o")
        .arg(dir);
    cmd
}

static NEXT_ROOM: AtomicU32 = AtomicU32::new(1);

/// A code unique within this test process (each test binary has its own signal server anyway).
pub fn fresh_code() -> String {
    let room = NEXT_ROOM.fetch_add(1, Ordering::Relaxed);
    format!("{room}-test-{}", std::process::id())
}

/// A running `mp signal --listen 127.0.0.1:0`, killed on drop.
pub struct Signal {
    /// Where it listens, e.g. `ws://127.0.0.1:40123`, read from its first line.
    pub url: String,
    _server: Running,
}

impl Signal {
    pub fn start() -> Signal {
        Self::start_with(&[])
    }

    /// With extra options, e.g. `&["--room-timeout", "1"]`.
    pub fn start_with(extra: &[&str]) -> Signal {
        let server = spawn(mp().args(["signal", "--listen", "127.0.0.1:0"]).args(extra));
        let url = server.wait_line("mp signal: listening on ", STEP);
        Signal {
            url,
            _server: server,
        }
    }

    /// A server started some other way, once it said where it listens.
    pub fn from_running(url: String, server: Running) -> Signal {
        Signal {
            url,
            _server: server,
        }
    }

    /// The server process.
    pub fn process(&self) -> &Running {
        &self._server
    }

    /// The server process, to wait for its end.
    pub fn into_process(self) -> Running {
        self._server
    }
}

/// Spawns `cmd` and collects whatever of its stdout and stderr is piped.
pub fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    let output = Arc::new(Output::default());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(output.collect(out, |seen| &mut seen.stdout));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(output.collect(err, |seen| &mut seen.stderr));
    }
    Running {
        child,
        name: describe(cmd),
        started: Instant::now(),
        output,
        readers,
    }
}

/// `mp send --code …` as a short name for messages: the program's file name and the arguments.
fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or_default();
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A started process whose output is collected in the background; killed on drop.
pub struct Running {
    child: Child,
    name: String,
    started: Instant,
    output: Arc<Output>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The output collected so far, shared with the reader threads, which signal each change.
#[derive(Default)]
struct Output {
    seen: Mutex<Seen>,
    changed: Condvar,
}

#[derive(Default)]
struct Seen {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Piped streams not yet at their end.
    open: usize,
}

impl Output {
    /// The output so far; still usable after a test failed while holding it.
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a thread that appends everything from `stream` to the part `pick` chooses.
    fn collect(
        self: &Arc<Self>,
        mut stream: impl Read + Send + 'static,
        pick: fn(&mut Seen) -> &mut Vec<u8>,
    ) -> std::thread::JoinHandle<()> {
        self.lock().open += 1;
        let output = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 64 * 1024];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                let mut seen = output.lock();
                if n == 0 {
                    seen.open -= 1;
                } else {
                    pick(&mut seen).extend_from_slice(&buf[..n]);
                }
                output.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        })
    }
}

impl Seen {
    /// Both streams, for a failure message (the tail of each: stdout may hold megabytes).
    fn show(&self) -> String {
        format!(
            "--- stdout:\n{}\n--- stderr:\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// The complete lines written so far on either stream, stdout's first.
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        complete_lines(&self.stdout).chain(complete_lines(&self.stderr))
    }
}

/// The lines of `bytes` that end with a newline (the last one may still be growing).
fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    bytes[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

/// The last 4000 bytes of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(4000);
    let cut = if from > 0 { "[…] " } else { "" };
    format!("{cut}{}", String::from_utf8_lossy(&bytes[from..]))
}

/// Parses one line as a JSON event: an object with a string `event`.
fn as_event(line: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(line).ok()?;
    value["event"].is_string().then_some(value)
}

impl Running {
    /// Waits until `found` finds what it looks for in the output so far, and returns it.
    /// Fails the test when `timeout` passes first, or when the process closed its output
    /// without it; `what` says what was awaited.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = self.output.lock();
        loop {
            if let Some(it) = found(&seen) {
                return it;
            }
            let now = Instant::now();
            let why = if seen.open == 0 {
                "it ended its output".to_string()
            } else if now >= deadline {
                format!("{timeout:?} passed")
            } else {
                seen = self
                    .output
                    .changed
                    .wait_timeout(seen, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            };
            panic!(
                "`{}` never showed {what}: {why}\n{}",
                self.name,
                seen.show()
            );
        }
    }

    /// Waits for the first JSON event named `name` (e.g. `"waiting"`, `"first-byte"`) and
    /// returns it. The process must run with `--json`; events are looked for on stdout and on
    /// stderr (where they go when stdout carries data), among the lines written so far, so
    /// waiting twice for the same name returns the same event.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("the event {name:?}"), timeout, |seen| {
            seen.lines()
                .filter_map(as_event)
                .find(|event| event["event"] == name)
        })
    }

    /// Whether the process has written the JSON event `name` so far; does not wait.
    pub fn has_event(&self, name: &str) -> bool {
        self.output
            .lock()
            .lines()
            .filter_map(as_event)
            .any(|event| event["event"] == name)
    }

    /// Waits for the `n`th (1-based) JSON event named `name`, for events that repeat (a sender
    /// that waits again after a wrong code says `waiting` each time).
    pub fn wait_nth_event(&self, name: &str, n: usize, timeout: Duration) -> Value {
        self.wait_for(&format!("event {name:?} number {n}"), timeout, |seen| {
            seen.lines()
                .filter_map(as_event)
                .filter(|event| event["event"] == name)
                .nth(n - 1)
        })
    }

    /// Waits for the first complete line, on stdout or stderr, that starts with `prefix` and
    /// returns the rest of it (e.g. the code after `"Code: "`).
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        self.wait_for(&format!("a line starting {prefix:?}"), timeout, |seen| {
            seen.lines()
                .map(|line| String::from_utf8_lossy(line).trim_end().to_string())
                .find_map(|line| line.strip_prefix(prefix).map(str::to_string))
        })
    }

    /// Everything written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().stderr).into_owned()
    }

    /// The process id (to read /proc/PID or send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until stdout or stderr contains `text`, even without a newline after it (a
    /// prompt waiting for its answer).
    pub fn wait_text(&self, text: &str, timeout: Duration) {
        let contains = |s: &[u8]| s.windows(text.len()).any(|w| w == text.as_bytes());
        self.wait_for(&format!("{text:?}"), timeout, |seen| {
            (contains(&seen.stdout) || contains(&seen.stderr)).then_some(())
        })
    }

    /// Writes `bytes` to the process's stdin, which must be piped (`cmd.stdin(Stdio::piped())`).
    /// Stdin stays open until the process is waited for or dropped.
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(bytes).expect("write to stdin");
    }

    /// Closes the process's standard input (end of file for what it reads there).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the process to exit, at most `limit` after it started; a process still
    /// running then is killed and the test fails with its output so far.
    pub fn wait(mut self, limit: Duration) -> Outcome {
        let deadline = self.started + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not finish within {limit:?}\n{}",
                    self.name,
                    self.output.lock().show()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The streams end with the process (or with its last child holding them).
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let seen = std::mem::take(&mut *self.output.lock());
        Outcome {
            status,
            stdout: seen.stdout,
            stderr: String::from_utf8_lossy(&seen.stderr).into_owned(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Kills the process (SIGKILL): a crash, a closed laptop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    #[cfg(unix)]
    pub fn interrupt(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped (we hold the `Child`).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished process: exit status and all its output.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The exit code, or -1 when a signal ended the process.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the exit code (a number or a [`Kind`], see [`exit`]), showing the output when
    /// it differs.
    pub fn assert_code(&self, expected: impl ExitCode) -> &Self {
        assert_eq!(
            self.code(),
            expected.code(),
            "exit code {} (expected {expected:?} = {})\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code(),
            expected.code(),
            tail(&self.stdout),
            self.stderr
        );
        self
    }

    /// The last line on stderr: the one-line error.
    pub fn last_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

/// Every line of `stream` parsed as a JSON event; a line that is not one fails the test.
pub fn events(stream: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stream)
        .lines()
        .map(|line| as_event(line.as_bytes()).unwrap_or_else(|| panic!("not an event: {line:?}")))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lists a folder's entries, sorted, for "nothing else was written" checks.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Bytes of `name` in the staging folder (`.mp-partial-*`) under `dir`, 0 if none.
pub fn staged_bytes(dir: &Path, name: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mp-partial-"))
        .filter_map(|e| std::fs::metadata(e.path().join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// Waits (at most [`LIMIT`]) until the receiver staged at least `bytes` of `name` under `dir`.
/// No event says how much is on disk, so this polls the file system.
pub fn wait_until_staged(dir: &Path, name: &str, bytes: u64) {
    let deadline = Instant::now() + LIMIT;
    while staged_bytes(dir, name) < bytes {
        assert!(Instant::now() < deadline, "the transfer never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A transfer of a large file, caught once the receiver staged its first MiB of `big.bin`.
pub struct Midway {
    pub signal: Signal,
    pub src: tempfile::TempDir,
    pub dst: tempfile::TempDir,
    pub sender: Running,
    pub receiver: Running,
}

impl Midway {
    pub fn start() -> Midway {
        let signal = Signal::start();
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let path = sparse_file(src.path(), "big.bin");
        let code = fresh_code();
        let sender = spawn(&mut send(&signal, &code, &path));
        let receiver = spawn(receive(&signal, &code, dst.path()).arg("--yes"));
        wait_until_staged(dst.path(), "big.bin", 1 << 20);
        Midway {
            signal,
            src,
            dst,
            sender,
            receiver,
        }
    }
}

/// A large sparse file: quick to create, long enough to send (seconds, even on loopback) that
/// a test can interrupt it, and small enough that the receiver's free-space check passes on a
/// machine with a few GiB free (8 GiB failed there with "not enough room").
fn sparse_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    path
}
