//! A small world for integration tests: a real `mp signal` on a free loopback port, and real
//! `mp send` / `mp receive` processes whose ICE is restricted to 127.0.0.1.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn mp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mp"))
}

/// `mp` with a clean environment: loopback-only ICE, no inherited signaling URL.
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

/// A running `mp signal`, killed on drop.
pub struct Signal {
    child: Child,
    pub url: String,
}

impl Signal {
    pub fn start() -> Signal {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Signal {
        let mut child = mp()
            .args(["signal", "--listen", "127.0.0.1:0"])
            .args(extra)
            .spawn()
            .expect("start mp signal");
        let stderr = child.stderr.take().unwrap();
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("mp signal: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from mp signal: {line:?}"))
            .to_string();
        Signal { child, url }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished process: exit status and captured output.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the exit code, showing stderr when it differs.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            expected,
            "exit code {} (expected {expected}); stderr:\n{}",
            self.code(),
            self.stderr
        );
        self
    }

    /// The last line on stderr: the one-line error.
    pub fn last_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

/// A started process whose output is collected in the background.
pub struct Running {
    child: Child,
    started: Instant,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

pub fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd.spawn().expect("spawn mp");
    // Either may have been redirected elsewhere by the caller.
    let out = child.stdout.take();
    let err = child.stderr.take();
    Running {
        child,
        started: Instant::now(),
        stdout: Some(std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut out) = out {
                let _ = out.read_to_end(&mut buf);
            }
            buf
        })),
        stderr: Some(std::thread::spawn(move || {
            let mut buf = String::new();
            if let Some(mut err) = err {
                let _ = err.read_to_string(&mut buf);
            }
            buf
        })),
    }
}

impl Running {
    /// Waits at most `limit`; a process still running then is killed and the test fails.
    pub fn wait(mut self, limit: Duration) -> Outcome {
        let deadline = self.started + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Outcome {
                    status,
                    stdout: self.stdout.take().unwrap().join().unwrap(),
                    stderr: self.stderr.take().unwrap().join().unwrap(),
                    elapsed: self.started.elapsed(),
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "mp did not finish within {limit:?}; stderr so far:\n{}",
                    self.stderr.take().unwrap().join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static NEXT_ROOM: AtomicU32 = AtomicU32::new(1);

/// A code unique within this test process (each test binary has its own signal server anyway).
pub fn fresh_code() -> String {
    let room = NEXT_ROOM.fetch_add(1, Ordering::Relaxed);
    format!("{room}-test-{}", std::process::id())
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

/// A generous upper bound for a whole transfer on a loaded 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(120);

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

/// A large sparse file: quick to create, long enough to send that a test can interrupt it.
pub fn sparse_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    path
}

/// Sends SIGINT, as Ctrl-C in a terminal would.
#[cfg(unix)]
pub fn interrupt(process: &Running) {
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe { libc::kill(process.id() as i32, libc::SIGINT) };
}
