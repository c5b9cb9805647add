//! What users meet when things go wrong: each ends with one clear line and its exit code,
//! never a hang, and never a file under its final name that was not verified.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn file_in(dir: &std::path::Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn a_wrong_code_fails_the_receiver_and_the_sender_waits_for_the_right_one() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "secret.txt", b"secret");

    let sender = spawn(send(&signal, "42-guitar-ocean", &path).arg("--json"));
    sender.wait_event("waiting", STEP);
    let wrong = spawn(receive(&signal, "42-guitar-oceans", dst.path()).arg("--yes"));
    let received = wrong.wait(Duration::from_secs(20));
    received.assert_code(exit::WRONG_CODE);
    assert!(
        received
            .last_line()
            .contains("wrong code, or the signaling server tampered with the key exchange; did you mean 42-guitar-ocean?"),
        "{}",
        received.stderr
    );
    assert!(received.elapsed < Duration::from_secs(10));
    assert!(list(dst.path()).is_empty(), "nothing written");
    // The sender was told, and still waits: the right receiver gets the file.
    let told = sender.wait_event("wrong-code", STEP);
    assert_eq!(told["tries_left"], 2);
    sender.wait_nth_event("waiting", 2, STEP);
    let right = spawn(receive(&signal, "42 Guitar ocean", dst.path()).arg("--yes"));
    right.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("secret.txt")).unwrap(),
        b"secret"
    );
}

#[test]
fn three_wrong_codes_end_the_sender() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "secret.txt", b"secret");
    let sender = spawn(send(&signal, "43-guitar-ocean", &path).arg("--json"));
    for (n, guess) in ["43-guitar-oceans", "43-guitar-ocea", "43-guitar"]
        .into_iter()
        .enumerate()
    {
        sender.wait_nth_event("waiting", n + 1, STEP);
        let wrong = spawn(receive(&signal, guess, dst.path()).arg("--yes"));
        wrong.wait(LIMIT).assert_code(exit::WRONG_CODE);
    }
    let sent = sender.wait(LIMIT);
    sent.assert_code(exit::WRONG_CODE);
    assert!(list(dst.path()).is_empty(), "nothing written");
}

#[test]
fn receiver_declining_stops_both_sides() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "offer.txt", b"no thanks");
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    // A real terminal for the prompt: `script` gives the receiver a pty, and we answer "n".
    let command = format!(
        "{} receive --signal {} {} -o {}",
        mp_bin().display(),
        signal.url,
        code,
        dst.path().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .env("MP_BIND", "127.0.0.1")
        .env_remove("MP_SIGNAL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut receiver = spawn(&mut cmd);
    // Answer once the question is on screen.
    receiver.wait_text("[y/N]", STEP);
    receiver.write_stdin(b"n\n");
    let sent = sender.wait(LIMIT);
    let received = receiver.wait(LIMIT);
    let screen = String::from_utf8_lossy(&received.stdout);
    assert!(
        screen.contains("Receive offer.txt"),
        "prompt shown: {screen}"
    );
    received.assert_code(exit::DECLINED);
    sent.assert_code(exit::DECLINED);
    assert!(sent.last_line().contains("declined"), "{}", sent.stderr);
    assert!(list(dst.path()).is_empty());
}

#[test]
fn receiver_without_terminal_or_yes_refuses_instead_of_hanging() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "a.txt", b"a");
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(&mut receive(&signal, &code, dst.path())).wait(LIMIT);
    received.assert_code(exit::NO_TERMINAL);
    assert!(
        received.last_line().contains("--yes"),
        "{}",
        received.stderr
    );
    sender.wait(LIMIT).assert_code(exit::DECLINED);
    assert!(list(dst.path()).is_empty());
}

#[test]
fn existing_target_is_never_overwritten() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "report.pdf", b"new content");
    file_in(dst.path(), "report.pdf", b"precious");
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(receive(&signal, &code, dst.path()).arg("--yes")).wait(LIMIT);
    received.assert_code(exit::EXISTS);
    assert!(
        received.last_line().contains("--overwrite"),
        "{}",
        received.stderr
    );
    sender.wait(LIMIT).assert_code(exit::DECLINED);
    assert_eq!(
        std::fs::read(dst.path().join("report.pdf")).unwrap(),
        b"precious"
    );
    assert_eq!(list(dst.path()), vec!["report.pdf"]);
}

#[test]
fn a_missing_target_folder_is_named_and_the_sender_hears_why() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "album.zip", b"zip");
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    let target = dst.path().join("not-made-yet").join("album.zip");
    let received = spawn(receive(&signal, &code, &target).arg("--yes")).wait(LIMIT);
    received.assert_code(exit::LOCAL_IO);
    assert!(
        received.last_line().contains("not-made-yet does not exist"),
        "{}",
        received.stderr
    );
    let sent = sender.wait(LIMIT);
    sent.assert_code(exit::DECLINED);
    assert!(
        sent.last_line().contains("a file or folder is missing"),
        "{}",
        sent.stderr
    );
    assert!(list(dst.path()).is_empty(), "nothing made");
}

#[test]
fn overwrite_replaces_an_existing_target() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "report.pdf", b"new content");
    file_in(dst.path(), "report.pdf", b"old");
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(receive(&signal, &code, dst.path()).args(["--yes", "--overwrite"]));
    received.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("report.pdf")).unwrap(),
        b"new content"
    );
}

#[test]
fn receiver_killed_mid_transfer_makes_the_sender_fail_and_leaves_no_final_file() {
    // Bound by name, so the server and the source live until the test ends.
    let Midway {
        signal: _signal,
        src: _src,
        dst,
        sender,
        mut receiver,
    } = Midway::start();
    receiver.kill();
    let sent = sender.wait(Duration::from_secs(30));
    sent.assert_code(exit::PEER_GONE);
    assert!(!dst.path().join("big.bin").exists(), "no final file");
    assert!(
        staged_bytes(dst.path(), "big.bin") > 0,
        "the prefix is kept to resume"
    );
}

#[test]
fn unreachable_server_is_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "a.txt", b"a");
    let url = format!("ws://127.0.0.1:{port}");
    let out = spawn(mp().args(["send", "--signal", &url]).arg(&path)).wait(LIMIT);
    out.assert_code(exit::SERVER);
    assert!(
        out.last_line()
            .contains("cannot reach the signaling server"),
        "{}",
        out.stderr
    );
    let out = spawn(mp().args(["receive", "--signal", &url, "1-x", "--yes"])).wait(LIMIT);
    out.assert_code(exit::SERVER);
}

#[test]
fn bad_or_missing_signaling_url_is_reported() {
    let out =
        spawn(mp().args(["receive", "--signal", "http://example.invalid", "1-x"])).wait(LIMIT);
    out.assert_code(exit::SERVER);
    assert!(
        out.last_line().contains("bad signaling URL"),
        "{}",
        out.stderr
    );
    let out = spawn(mp().args(["receive", "1-x"])).wait(LIMIT);
    out.assert_code(exit::USAGE);
    assert!(out.last_line().contains("MP_SIGNAL"), "{}", out.stderr);
}

#[test]
fn malformed_code_is_a_usage_error() {
    let signal = Signal::start();
    let out = spawn(mp().args(["receive", "--signal", &signal.url, "guitar-ocean"])).wait(LIMIT);
    out.assert_code(exit::USAGE);
    assert!(out.last_line().contains("7-guitar-ocean"), "{}", out.stderr);
    // Spaces for dashes and a typo: the generated code it most likely means is suggested.
    let out = spawn(mp().args(["receive", "--signal", &signal.url, "12 Cello lader"])).wait(LIMIT);
    out.assert_code(exit::USAGE);
    assert!(
        out.last_line().ends_with("did you mean 12-cello-ladder?"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_file_is_reported_before_anyone_waits() {
    let signal = Signal::start();
    let out = spawn(mp().args(["send", "--signal", &signal.url, "/nonexistent/file"])).wait(LIMIT);
    out.assert_code(exit::LOCAL_IO);
    assert!(
        out.last_line().contains("/nonexistent/file"),
        "{}",
        out.stderr
    );
}

#[test]
fn peer_that_never_arrives_times_out() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "a.txt", b"a");
    let code = fresh_code();
    let out = spawn(send(&signal, &code, &path).args(["--timeout", "1"])).wait(LIMIT);
    out.assert_code(exit::TIMEOUT);
    assert!(out.last_line().contains("did not arrive"), "{}", out.stderr);
}

#[test]
fn a_second_sender_on_the_same_code_is_refused() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "a.txt", b"a");
    let code = fresh_code();
    let first = spawn(send(&signal, &code, &path).arg("--json"));
    first.wait_event("waiting", STEP);
    let second = spawn(&mut send(&signal, &code, &path)).wait(LIMIT);
    second.assert_code(exit::ROOM_FULL);
    assert!(
        second.last_line().contains("already in use"),
        "{}",
        second.stderr
    );
    drop(first);
}

#[test]
fn a_full_disk_is_reported_as_such() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "a.bin", &random_bytes(1 << 20, 3));
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    // /dev/full answers every write with ENOSPC, like a full disk.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let received = spawn(
        mp().args([
            "receive",
            "--signal",
            &signal.url,
            &code,
            "--yes",
            "-o",
            "-",
        ])
        .stdout(full),
    )
    .wait(LIMIT);
    received.assert_code(exit::LOCAL_IO);
    assert!(
        received.last_line().contains("disk full"),
        "{}",
        received.stderr
    );
    assert_ne!(sender.wait(LIMIT).code(), 0);
}

#[test]
fn wss_urls_speak_tls() {
    // A plain TCP listener on loopback: the TLS handshake must be attempted, and fail there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut hello = [0u8; 5];
            let _ = std::io::Read::read(&mut stream, &mut hello);
            let _ = std::io::Write::write_all(&mut stream, b"not tls\r\n\r\n");
            hello[0] // 0x16: a TLS handshake record
        } else {
            0
        }
    });
    let out = spawn(mp().args(["receive", "--signal", &url, "1-x", "--yes"])).wait(LIMIT);
    out.assert_code(exit::SERVER);
    assert!(!out.stderr.contains("not compiled"), "{}", out.stderr);
    assert_eq!(
        server.join().unwrap(),
        0x16,
        "the client opened with a TLS record"
    );
}

/// A small tmpfs mounted on a fresh folder, unmounted on drop (needs root, as the network
/// tests do).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs and needs root (mount said {status})"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn no_room_for_the_offer_is_said_before_the_question_and_the_sender_hears_why() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    std::fs::write(&path, random_bytes(3 << 20, 11)).unwrap();
    let disk = SmallDisk::new("1m");
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(receive(&signal, &code, disk.dir.path()).arg("--yes")).wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::LOCAL_IO);
    assert!(
        received.last_line().contains("not enough room"),
        "{}",
        received.stderr
    );
    sent.assert_code(exit::DECLINED);
    assert!(sent.last_line().contains("disk is full"), "{}", sent.stderr);
    assert!(list(disk.dir.path()).is_empty(), "nothing written");
}

#[cfg(unix)]
#[test]
fn a_device_is_never_replaced_even_with_overwrite() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = file_in(src.path(), "data.bin", b"not for the null device");
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(
        receive(&signal, &code, std::path::Path::new("/dev/null")).args(["--yes", "--overwrite"]),
    )
    .wait(LIMIT);
    sender.wait(LIMIT);
    received.assert_code(exit::USAGE);
    assert!(received.last_line().contains("-o -"), "{}", received.stderr);
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "/dev/null is still a device"
    );
}

#[test]
fn a_generated_code_nobody_sends_with_fails_at_once_and_so_does_a_used_one() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let no_sender = |outcome: &Outcome, code: &str| {
        outcome.assert_code(exit::NO_SENDER);
        assert_eq!(
            outcome.last_line(),
            format!(
                "mp: no sender is waiting with the code {code}: it was used already, it \
                 expired, or the sender stopped; ask the sender for a new code"
            )
        );
        assert!(outcome.elapsed < Duration::from_secs(10), "{outcome:?}");
    };

    // A code of the generated form that no sender has: told at once, not after 600 s.
    let unused = spawn(receive(&signal, "7-guitar-ocean", dst.path()).arg("--yes"));
    no_sender(&unused.wait(STEP), "7-guitar-ocean");

    // A generated code, used once: the same again.
    let path = file_in(src.path(), "once.txt", b"once");
    let sender = spawn(
        mp().args(["send", "--signal", &signal.url, "--json"])
            .arg(&path),
    );
    let code = sender.wait_event("code", STEP)["code"]
        .as_str()
        .unwrap()
        .to_string();
    let first = spawn(receive(&signal, &code, dst.path()).arg("--yes"));
    first.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    let again = tempfile::tempdir().unwrap();
    let second = spawn(receive(&signal, &code, again.path()).arg("--yes"));
    no_sender(&second.wait(STEP), &code);
    assert!(list(again.path()).is_empty());

    // A custom code still lets the receiver come first.
    let custom = fresh_code();
    let receiver = spawn(receive(&signal, &custom, dst.path()).args(["--yes", "--json"]));
    receiver.wait_event("waiting", STEP);
    let path = file_in(src.path(), "custom.txt", b"custom");
    let sender = spawn(&mut send(&signal, &custom, &path));
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
}
