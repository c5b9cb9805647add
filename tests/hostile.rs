//! A hostile sender, built here from mp's own protocol pieces, against the real `mp receive`
//! (and once against the web page in headless Chromium).
//!
//! It completes the key exchange honestly (it knows the code) and then lies: unsafe paths,
//! sizes that do not match the bytes, a wrong hash, a window it ignores. The receiver must
//! refuse, never write outside its target folder, and never leave a file under its final
//! name. Every other lie is an engine-level unit test (`src/protocol/engine_tests.rs`); these
//! few show the real binary, its files and its exit codes.

mod browser;
mod common;

use std::time::Duration;

use browser::{assert_hashed_on_a_worker, page, Browser, NO_PICKER};
use common::*;
use mp::peer::{LinkEvent, Peer, PeerOptions};
use mp::protocol::frame::{Frame, MAX_DATA};
use mp::protocol::manifest::{Entry, Manifest};
use mp::protocol::message::{Message, SdpKind};
use mp::protocol::pake::Side;
use mp::protocol::session::Conversation;
use mp::rendezvous::Rendezvous;
use sha2::Digest;

const INTEGRITY: i32 = 12;
const EXISTS: i32 = 10;

/// What the hostile sender saw the receiver answer.
#[derive(Debug, PartialEq)]
enum Verdict {
    Rejected(String),
    Done,
    Failed(String),
    Gone,
}

/// Sends every envelope the conversation has queued.
async fn flush(conversation: &mut Conversation, rendezvous: &mut dyn Rendezvous) {
    while let Some(envelope) = conversation.poll_envelope() {
        rendezvous.send(envelope).await.unwrap();
    }
}

/// The next message from the receiver, or `None` if it left or aborted.
async fn next(conversation: &mut Conversation, rendezvous: &mut dyn Rendezvous) -> Option<Message> {
    loop {
        let envelope = tokio::time::timeout(LIMIT, rendezvous.recv())
            .await
            .ok()?
            .ok()?;
        if let Some(message) = conversation.receive(&envelope).ok()? {
            return Some(message);
        }
    }
}

/// Offers `manifest` (unchecked) and, if accepted, sends `frames` verbatim, ignoring the
/// receiver's window.
async fn hostile_sender(
    url: String,
    code: String,
    manifest: Manifest,
    frames: Vec<Vec<u8>>,
    sctp_mtu: Option<u32>,
) -> Verdict {
    let (mut rendezvous, code) = mp::rendezvous::join(&url, Some(&code), Side::Sender)
        .await
        .unwrap();
    let rendezvous = rendezvous.as_mut();
    rendezvous.paired().await.unwrap();
    let mut conversation = Conversation::start(&code, Side::Sender);
    loop {
        flush(&mut conversation, rendezvous).await;
        if conversation.is_confirmed() {
            break;
        }
        let envelope = rendezvous.recv().await.unwrap();
        conversation.receive(&envelope).unwrap();
    }
    let offer = Message::Offer {
        manifest,
        more: false,
    };
    conversation.send(&offer).unwrap();
    flush(&mut conversation, rendezvous).await;
    match next(&mut conversation, rendezvous).await {
        Some(Message::Accept { .. }) => {}
        Some(Message::Reject { reason }) => return Verdict::Rejected(reason),
        _ => return Verdict::Gone,
    }
    let mut peer = Peer::new(&PeerOptions {
        bind: vec!["127.0.0.1".parse().unwrap()],
        sctp_mtu,
        ..PeerOptions::default()
    })
    .await
    .unwrap();
    let sdp = peer.offer(false).await.unwrap();
    let kind = SdpKind::Offer;
    conversation.send(&Message::Sdp { kind, sdp }).unwrap();
    flush(&mut conversation, rendezvous).await;
    let Some(Message::Sdp { sdp, .. }) = next(&mut conversation, rendezvous).await else {
        return Verdict::Gone;
    };
    peer.apply_answer(sdp).await.unwrap();
    let mut link = tokio::time::timeout(LIMIT, peer.open())
        .await
        .expect("data channel opens in time")
        .expect("data channel opens");
    rendezvous.close().await;
    for frame in frames {
        if link.send(frame).await.is_err() {
            break;
        }
    }
    let verdict = tokio::time::timeout(LIMIT, async {
        loop {
            match link.recv().await {
                LinkEvent::Message(message) => match Frame::decode(&message) {
                    Ok(Frame::Ack(_)) => continue, // flow control, not a verdict
                    Ok(Frame::Done) => return Verdict::Done,
                    Ok(Frame::Fail(_, reason)) => return Verdict::Failed(reason),
                    _ => return Verdict::Gone,
                },
                LinkEvent::Closed => return Verdict::Gone,
            }
        }
    })
    .await
    .unwrap_or(Verdict::Gone);
    peer.close().await;
    verdict
}

fn data(bytes: &[u8]) -> Vec<u8> {
    Frame::Data(bytes).encode()
}

fn end(content: &[u8]) -> Vec<u8> {
    Frame::End(sha2::Sha256::digest(content).into()).encode()
}

/// Runs the hostile sender against `mp receive --yes -o dst [extra]`.
fn attack(
    manifest: Manifest,
    frames: Vec<Vec<u8>>,
    dst: &std::path::Path,
    extra: &[&str],
) -> (Verdict, Outcome) {
    let signal = Signal::start();
    let code = fresh_code();
    let mut cmd = mp();
    cmd.args(["receive", "--signal", &signal.url, &code, "--yes"]);
    if !extra.contains(&"-o") {
        cmd.arg("-o").arg(dst);
    }
    let receiver = spawn(cmd.args(extra));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verdict = runtime.block_on(hostile_sender(
        signal.url.clone(),
        code.clone(),
        manifest,
        frames,
        None,
    ));
    (verdict, receiver.wait(LIMIT))
}

#[test]
fn every_unsafe_path_is_refused_before_anything_is_written() {
    let outside = tempfile::tempdir().unwrap();
    // Every rule is an engine and manifest unit test; here, the real binary for two of them.
    for path in [
        "../escape.txt".to_string(),
        format!("{}/x", outside.path().display()),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let (verdict, received) = attack(
            Manifest {
                entries: vec![Entry::file(&path, 1)],
            },
            vec![],
            dst.path(),
            &[],
        );
        received.assert_code(INTEGRITY);
        assert!(
            received.last_line().contains("refused the offer"),
            "{path:?}: {}",
            received.stderr
        );
        assert!(
            matches!(verdict, Verdict::Rejected(_)),
            "{path:?}: {verdict:?}"
        );
        assert!(list(dst.path()).is_empty(), "{path:?}: nothing written");
    }
    assert!(list(outside.path()).is_empty());
}

#[test]
fn offers_no_file_system_could_hold_are_refused_before_anything_is_written() {
    for (entries, reason) in [
        // 2,046 folders deep, 4,093 bytes: it used to fail half-way, "File name too long".
        (
            vec![Entry::file(&format!("{}x", "a/".repeat(2046)), 1)],
            "4093 bytes long",
        ),
        (
            vec![Entry::file(&format!("{}x", "a/".repeat(200)), 1)],
            "201 levels deep",
        ),
        (
            vec![Entry::file(&"n".repeat(256), 1)],
            "a name of 256 bytes",
        ),
        (
            vec![Entry::file("Dir/x", 1), Entry::file("dir/y", 1)],
            "Dir and dir, which differ only in letter case",
        ),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let (verdict, received) = attack(Manifest { entries }, vec![], dst.path(), &[]);
        received.assert_code(INTEGRITY);
        let line = received.last_line();
        assert!(line.contains("refused the offer"), "{}", received.stderr);
        assert!(line.contains(reason), "{reason}: {}", received.stderr);
        assert!(matches!(verdict, Verdict::Rejected(_)), "{verdict:?}");
        assert!(list(dst.path()).is_empty(), "{reason}: nothing written");
    }
}

#[test]
fn more_bytes_than_announced_are_refused() {
    let dst = tempfile::tempdir().unwrap();
    let (verdict, received) = attack(
        Manifest::single("lie.bin", 10),
        vec![data(&[1; 20]), end(&[1; 20])],
        dst.path(),
        &[],
    );
    received.assert_code(INTEGRITY);
    assert!(
        received.stderr.contains("more bytes than announced"),
        "{}",
        received.stderr
    );
    assert!(
        matches!(verdict, Verdict::Failed(_) | Verdict::Gone),
        "{verdict:?}"
    );
    assert!(
        list(dst.path()).is_empty(),
        "no final file and no staging left"
    );
}

#[test]
fn fewer_bytes_than_announced_are_refused() {
    let dst = tempfile::tempdir().unwrap();
    let (_, received) = attack(
        Manifest::single("short.bin", 10),
        vec![data(&[1; 5]), end(&[1; 5])],
        dst.path(),
        &[],
    );
    received.assert_code(INTEGRITY);
    assert!(
        received.stderr.contains("after 5 of 10 bytes"),
        "{}",
        received.stderr
    );
    assert!(!dst.path().join("short.bin").exists());
}

#[test]
fn a_wrong_hash_leaves_no_file_under_its_final_name() {
    let dst = tempfile::tempdir().unwrap();
    let (verdict, received) = attack(
        Manifest::single("tampered.bin", 4),
        vec![data(b"abcd"), end(b"abce")],
        dst.path(),
        &[],
    );
    received.assert_code(INTEGRITY);
    assert!(received.stderr.contains("SHA-256"), "{}", received.stderr);
    assert!(
        matches!(verdict, Verdict::Failed(ref r) if r.contains("integrity")),
        "{verdict:?}"
    );
    assert!(
        list(dst.path()).is_empty(),
        "nothing kept from a failed check"
    );
}

#[test]
fn the_web_page_refuses_a_wrong_hash_too() {
    // The page hashes a file of 1 MiB or more on a worker thread (web/hash.js): the digest
    // it compares must be that worker's, and a mismatch an error, with nothing to download.
    let signal = Signal::start();
    let code = fresh_code();
    let content = random_bytes(2 * 1024 * 1024 + 1, 8);
    let mut frames: Vec<Vec<u8>> = content.chunks(MAX_DATA).map(data).collect();
    let mut other = content.clone();
    other[0] ^= 1;
    frames.push(end(&other));
    let manifest = Manifest::single("tampered.bin", content.len() as u64);

    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::launch();
    let tab = browser.tab(downloads.path());
    tab.before_load(NO_PICKER);
    tab.navigate(&format!("{}#{code}", page(&signal)));
    let url = signal.url.clone();
    // The code is not of the generated form, so the page waits for the sender to arrive.
    let sender = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(hostile_sender(
                url,
                code,
                manifest,
                frames,
                Some(1191), // as `facing_browser`: Chromium takes no larger SCTP packet
            ))
    });
    tab.wait_state("offer", STEP);
    tab.click("accept");
    tab.wait_state("error", LIMIT);
    let verdict = sender.join().unwrap();
    assert!(tab.text("error").contains("SHA-256"), "{}", tab.describe());
    assert!(
        matches!(verdict, Verdict::Failed(ref r) if r.contains("integrity")),
        "{verdict:?}"
    );
    assert_hashed_on_a_worker(&tab);
    assert!(
        list(downloads.path()).is_empty(),
        "nothing offered for download"
    );
}

#[test]
fn a_wrong_hash_on_stdout_still_fails_the_receiver() {
    let dst = tempfile::tempdir().unwrap();
    let stream = Manifest {
        entries: vec![Entry {
            size: None,
            ..Entry::file("stream", 0)
        }],
    };
    let (_, received) = attack(
        stream,
        vec![data(b"already written"), end(b"something else")],
        dst.path(),
        &["-o", "-"],
    );
    received.assert_code(INTEGRITY);
    assert_eq!(received.stdout, b"already written");
}

#[test]
fn honest_frames_from_the_protocol_code_are_accepted() {
    // The same machinery, used honestly, must work: the attacks above fail for their lies.
    let dst = tempfile::tempdir().unwrap();
    let (verdict, received) = attack(
        Manifest::single("fine.txt", 4),
        vec![data(b"fine"), end(b"fine")],
        dst.path(),
        &[],
    );
    received.assert_code(0);
    assert_eq!(verdict, Verdict::Done);
    assert_eq!(std::fs::read(dst.path().join("fine.txt")).unwrap(), b"fine");
}

#[test]
fn names_are_shown_with_terminal_tricks_neutralised() {
    let dst = tempfile::tempdir().unwrap();
    let name = "invoice\u{202e}fdp.exe";
    let (_, received) = attack(
        Manifest::single(name, 1),
        vec![data(b"x"), end(b"x")],
        dst.path(),
        &[],
    );
    received.assert_code(0);
    assert!(!received.stderr.contains('\u{202e}'), "{}", received.stderr);
    assert!(
        received.stderr.contains("invoice\\u{202e}fdp.exe"),
        "{}",
        received.stderr
    );
}

#[test]
fn invisible_and_line_breaking_characters_in_names_are_shown_escaped() {
    let dst = tempfile::tempdir().unwrap();
    let name = "a\u{2028}b\u{feff}c\u{e0041}d\u{61c}e.txt";
    let (_, received) = attack(
        Manifest::single(name, 1),
        vec![data(b"x"), end(b"x")],
        dst.path(),
        &[],
    );
    received.assert_code(0);
    for hidden in ['\u{2028}', '\u{feff}', '\u{e0041}', '\u{61c}'] {
        assert!(!received.stderr.contains(hidden), "{}", received.stderr);
    }
    assert!(
        received
            .stderr
            .contains("a\\u{2028}b\\u{feff}c\\u{e0041}d\\u{61c}e.txt"),
        "{}",
        received.stderr
    );
    assert_eq!(std::fs::read(dst.path().join(name)).unwrap(), b"x");
}

#[cfg(unix)]
#[test]
fn an_existing_symlink_in_the_target_is_never_written_through() {
    let dst = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dst.path().join("photos")).unwrap();
    let manifest = Manifest {
        entries: vec![Entry::dir("photos"), Entry::file("photos/x.jpg", 1)],
    };
    for extra in [&[][..], &["--overwrite"][..]] {
        let (verdict, received) = attack(
            manifest.clone(),
            vec![data(b"x"), end(b"x")],
            dst.path(),
            extra,
        );
        received.assert_code(EXISTS);
        assert!(matches!(verdict, Verdict::Rejected(_)), "{verdict:?}");
        assert!(
            list(elsewhere.path()).is_empty(),
            "nothing written through the link"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_sender_that_ignores_the_window_is_stopped_while_stdout_is_stalled() {
    // Nobody reads the receiver's stdout: its writer stalls after the pipe's buffer. The
    // hostile sender pushes 64 MiB without waiting for ACKs; the receiver must fail it as a
    // protocol violation instead of buffering everything.
    let signal = Signal::start();
    let code = fresh_code();
    let mut receiver = mp()
        .args([
            "receive",
            "--signal",
            &signal.url,
            &code,
            "--yes",
            "-o",
            "-",
        ])
        .spawn()
        .unwrap();
    let stalled_stdout = receiver.stdout.take();
    let chunk = vec![7u8; 256 * 1024 - 1];
    let frames: Vec<Vec<u8>> = (0..256).map(|_| Frame::Data(&chunk).encode()).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verdict = runtime.block_on(hostile_sender(
        signal.url.clone(),
        code,
        Manifest::single("flood.bin", 64 << 20),
        frames,
        None,
    ));
    assert!(
        matches!(verdict, Verdict::Failed(ref r) if r.contains("integrity"))
            || verdict == Verdict::Gone,
        "{verdict:?}"
    );
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = receiver.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stalled_stdout);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut receiver.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(INTEGRITY), "{stderr}");
    assert!(stderr.contains("flow-control window"), "{stderr}");
}
