//! What users of croc and magic-wormhole expect: folders, several files, pipes, text, resume,
//! JSON events, interruption. Real processes, real WebRTC on loopback.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Sends `paths` and receives into `dst` with `--yes`; both must succeed.
fn transfer(paths: &[&Path], dst: &Path, extra_receive: &[&str]) -> (Outcome, Outcome) {
    let signal = Signal::start();
    let code = fresh_code();
    let mut sender = mp();
    sender
        .args(["send", "--signal", &signal.url, "--code", &code])
        .args(paths);
    let sender = spawn(&mut sender);
    let receiver = spawn(
        receive(&signal, &code, dst)
            .arg("--yes")
            .args(extra_receive),
    );
    let received = receiver.wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);
    (sent, received)
}

/// Every entry under `root`, as (relative path, kind, content or mode) lines, sorted.
fn snapshot(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            #[cfg(unix)]
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o777
            };
            #[cfg(not(unix))]
            let mode = 0;
            if meta.is_dir() {
                out.push(format!("{rel}/ {mode:o}"));
                walk(base, &path, out);
            } else if meta.is_file() {
                let content = std::fs::read(&path).unwrap();
                out.push(format!("{rel} {mode:o} {:x?}", sha(&content)));
            } else {
                out.push(format!("{rel} link"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_folder_tree_keeps_its_exact_shape() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("project");
    std::fs::create_dir_all(root.join("src/deeply/nested")).unwrap();
    std::fs::create_dir_all(root.join("empty folder")).unwrap();
    std::fs::write(
        root.join("src/deeply/nested/data.bin"),
        random_bytes(300_000, 9),
    )
    .unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("naïve café ☕.md"), "unicode name".as_bytes()).unwrap();
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    #[cfg(unix)]
    {
        chmod(&root.join("run.sh"), 0o755);
        chmod(&root.join("src/deeply"), 0o750);
        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
    }

    let dst = tempfile::tempdir().unwrap();
    let (sent, _) = transfer(&[&root], dst.path(), &[]);
    #[cfg(unix)]
    {
        assert!(
            sent.stderr
                .contains("skipping project/escape (symbolic link)"),
            "{}",
            sent.stderr
        );
        std::fs::remove_file(root.join("escape")).unwrap();
    }
    assert_eq!(snapshot(&root), snapshot(&dst.path().join("project")));
    assert_eq!(list(dst.path()), vec!["project"], "no staging folder left");
}

#[test]
fn several_files_and_folders_in_one_go() {
    let src = tempfile::tempdir().unwrap();
    let a = src.path().join("a.txt");
    std::fs::write(&a, b"first").unwrap();
    let photos = src.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("1.jpg"), random_bytes(70_000, 1)).unwrap();
    let notes = src.path().join("notes");
    std::fs::create_dir(&notes).unwrap();

    let dst = tempfile::tempdir().unwrap();
    transfer(&[&a, &photos, &notes], dst.path(), &[]);
    assert_eq!(list(dst.path()), vec!["a.txt", "notes", "photos"]);
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"first");
    assert_eq!(snapshot(&photos), snapshot(&dst.path().join("photos")));
    assert!(dst.path().join("notes").is_dir());
}

#[test]
fn a_thousand_small_files_arrive() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("many");
    std::fs::create_dir(&root).unwrap();
    for i in 0..1000 {
        std::fs::write(root.join(format!("f{i:04}")), random_bytes(4096, i)).unwrap();
    }
    let dst = tempfile::tempdir().unwrap();
    transfer(&[&root], dst.path(), &[]);
    assert_eq!(snapshot(&root), snapshot(&dst.path().join("many")));
}

#[test]
fn a_folder_may_be_renamed_on_arrival() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("original");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("x"), b"x").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("renamed");
    transfer(&[&root], Path::new(&target), &[]);
    assert_eq!(std::fs::read(target.join("x")).unwrap(), b"x");
}

/// Runs `sh -c script` with `MP_*` set for this signal server.
fn shell(signal: &Signal, script: &str) -> Running {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", script])
        .env("MP_SIGNAL", &signal.url)
        .env("MP_BIND", "127.0.0.1")
        .env("MP", mp_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(&mut cmd)
}

#[test]
fn stdin_to_stdout_pipes_bytes_exactly() {
    let signal = Signal::start();
    let code = fresh_code();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    std::fs::write(&input, random_bytes(5_000_000, 4)).unwrap();
    let sender = shell(
        &signal,
        &format!("cat '{}' | \"$MP\" send --code {code} -", input.display()),
    );
    let receiver = shell(&signal, &format!("\"$MP\" receive {code} --yes -o -"));
    let received = receiver.wait(LIMIT);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    received.assert_code(exit::SUCCESS);
    assert!(
        received.stdout == std::fs::read(&input).unwrap(),
        "stdout has exactly the bytes"
    );
}

#[test]
fn tar_through_mp_round_trips_a_folder() {
    let signal = Signal::start();
    let code = fresh_code();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("dir/sub")).unwrap();
    std::fs::write(src.path().join("dir/sub/f.txt"), b"through tar").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let sender = shell(
        &signal,
        &format!(
            "tar c -C '{}' dir | \"$MP\" send --code {code} --name dir.tar -",
            src.path().display()
        ),
    );
    let receiver = shell(
        &signal,
        &format!(
            "\"$MP\" receive {code} --yes -o - | tar x -C '{}'",
            dst.path().display()
        ),
    );
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("dir/sub/f.txt")).unwrap(),
        b"through tar"
    );
}

#[test]
fn a_stream_may_be_received_into_a_file() {
    let signal = Signal::start();
    let code = fresh_code();
    let dst = tempfile::tempdir().unwrap();
    let sender = shell(
        &signal,
        &format!("printf 'from a pipe' | \"$MP\" send --code {code} --name piped.txt -"),
    );
    let receiver = spawn(receive(&signal, &code, dst.path()).arg("--yes"));
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("piped.txt")).unwrap(),
        b"from a pipe"
    );
}

#[test]
fn a_text_is_printed_on_stdout() {
    let signal = Signal::start();
    let code = fresh_code();
    let sender = spawn(mp().args([
        "send",
        "--signal",
        &signal.url,
        "--code",
        &code,
        "--text",
        "the wifi password is hunter2",
    ]));
    let received = spawn(mp().args(["receive", "--signal", &signal.url, &code])).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(received.stdout, b"the wifi password is hunter2\n");
}

#[test]
fn a_broken_pipe_on_the_receiving_side_ends_both_sides_cleanly() {
    let signal = Signal::start();
    let code = fresh_code();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.bin");
    std::fs::write(&input, random_bytes(20_000_000, 5)).unwrap();
    let sender = spawn(&mut send(&signal, &code, &input));
    // `head` reads 10 bytes and exits: mp's stdout breaks.
    let receiver = shell(
        &signal,
        &format!("\"$MP\" receive {code} --yes -o - | head -c 10 >/dev/null"),
    );
    let received = receiver.wait(LIMIT);
    let sent = sender.wait(LIMIT);
    assert!(
        received.stderr.contains("broken pipe"),
        "receiver says why: {}",
        received.stderr
    );
    sent.assert_code(exit::PEER_GONE);
    assert!(
        sent.last_line().contains("the receiver stopped"),
        "{}",
        sent.stderr
    );
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("large.bin");
    let content = random_bytes(200_000_000, 6);
    std::fs::write(&path, &content).unwrap();

    // First attempt: the receiver is killed part-way.
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let mut receiver = spawn(receive(&signal, &code, dst.path()).arg("--yes"));
    wait_until_staged(dst.path(), "large.bin", 20_000_000);
    receiver.kill();
    sender
        .wait(Duration::from_secs(30))
        .assert_code(exit::PEER_GONE);
    let kept = staged_bytes(dst.path(), "large.bin");
    assert!(kept > 0 && kept < content.len() as u64, "kept {kept}");
    assert!(!dst.path().join("large.bin").exists());

    // Second attempt: same file, same place.
    let code = fresh_code();
    let mut sender = mp();
    sender
        .args(["send", "--json", "--signal", &signal.url, "--code", &code])
        .arg(&path);
    let sender = spawn(&mut sender);
    let received = spawn(receive(&signal, &code, dst.path()).args(["--yes", "--json"])).wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);
    // The receiver knew before accepting how much was already there.
    let offer = events(&received.stdout)
        .into_iter()
        .find(|e| e["event"] == "offer")
        .expect("an offer event");
    assert_eq!(offer["already_here"], kept, "{offer}");
    // Both sides said they were checking the kept bytes, before the connection came up.
    for (side, out) in [("receiver", &received.stdout), ("sender", &sent.stdout)] {
        let names: Vec<_> = events(out)
            .into_iter()
            .map(|e| e["event"].clone())
            .collect();
        let checking = names.iter().position(|n| n == "checking");
        let connected = names.iter().position(|n| n == "connected");
        assert!(
            checking.is_some() && checking < connected,
            "{side}: {names:?}"
        );
    }
    // The sender reports what it sent and what was already there.
    let finished = events(&sent.stdout)
        .into_iter()
        .find(|e| e["event"] == "finished")
        .expect("a finished event");
    assert_eq!(finished["already_there"], kept, "{finished}");
    assert_eq!(finished["bytes"], content.len() as u64, "{finished}");
    let accepted = events(&sent.stdout)
        .into_iter()
        .find(|e| e["event"] == "accepted")
        .expect("the receiver accepted");
    assert_eq!(accepted["resuming"], 1, "the sender resumed: {accepted}");
    assert!(std::fs::read(dst.path().join("large.bin")).unwrap() == content);
    assert_eq!(list(dst.path()), vec!["large.bin"]);
}

#[test]
fn a_changed_source_restarts_instead_of_resuming_from_a_foreign_prefix() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("doc.bin");
    let content = random_bytes(1_000_000, 7);
    std::fs::write(&path, &content).unwrap();
    // A staging folder from an earlier attempt whose prefix does not match this file.
    let offer = mp::protocol::manifest::Manifest::single("doc.bin", content.len() as u64);
    let staging = dst.path().join(format!(".mp-partial-{}", offer.id()));
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("doc.bin"), b"not the same bytes at all").unwrap();

    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(receive(&signal, &code, dst.path()).arg("--yes")).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert!(std::fs::read(dst.path().join("doc.bin")).unwrap() == content);
}

#[cfg(unix)]
#[test]
fn ctrl_c_on_the_receiver_exits_130_and_keeps_the_partial_data() {
    // Bound by name, so the server and the source live until the test ends.
    let Midway {
        signal: _signal,
        src: _src,
        dst,
        sender,
        receiver,
    } = Midway::start();
    receiver.interrupt();
    let received = receiver.wait(Duration::from_secs(30));
    received.assert_code(exit::INTERRUPTED);
    assert!(
        received.last_line().contains("partial data kept"),
        "{}",
        received.stderr
    );
    let sent = sender.wait(Duration::from_secs(30));
    assert_ne!(sent.code(), 0);
    assert!(!dst.path().join("big.bin").exists());
    assert!(staged_bytes(dst.path(), "big.bin") > 0);
}

#[cfg(unix)]
#[test]
fn ctrl_c_on_the_sender_exits_130() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("a.txt");
    std::fs::write(&path, b"a").unwrap();
    let sender = spawn(&mut send(&signal, &fresh_code(), &path));
    // Interrupt it where a user would: in its room, waiting for a receiver.
    sender.wait_line("Code: ", STEP);
    sender.interrupt();
    let sent = sender.wait(Duration::from_secs(10));
    sent.assert_code(exit::INTERRUPTED);
    assert_eq!(sent.last_line(), "mp: interrupted");
}

#[test]
fn json_events_tell_a_script_what_happened() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("j.bin");
    std::fs::write(&path, random_bytes(3_000_000, 8)).unwrap();
    let code = fresh_code();
    let mut sender = mp();
    sender
        .args(["send", "--json", "--signal", &signal.url, "--code", &code])
        .arg(&path);
    let sender = spawn(&mut sender);
    let received = spawn(receive(&signal, &code, dst.path()).args(["--yes", "--json"])).wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);

    let names = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .filter(|n| n != "progress")
            .collect()
    };
    let receiver_events = events(&received.stdout);
    assert_eq!(
        names(&receiver_events),
        [
            "waiting",
            "paired",
            "offer",
            "connected",
            "first-byte",
            "file-done",
            "finished"
        ]
    );
    assert_eq!(receiver_events[2]["bytes"], 3_000_000);
    assert!(receiver_events.iter().all(|e| e["t"].is_number()));
    let finished = receiver_events.last().unwrap();
    assert_eq!(finished["bytes"], 3_000_000);
    let sender_events = events(&sent.stdout);
    assert_eq!(
        names(&sender_events)[..4],
        ["code", "waiting", "paired", "accepted"]
    );
    assert!(
        received.stderr.is_empty(),
        "nothing but JSON: {}",
        received.stderr
    );

    // A failure is an event with a stable kind.
    let failed = spawn(mp().args(["receive", "--json", "--signal", "http://x", "1-x"])).wait(LIMIT);
    failed.assert_code(exit::SERVER);
    let error = &events(&failed.stdout)[0];
    assert_eq!(error["event"], "error");
    assert_eq!(error["kind"], "server");
    assert_eq!(error["exit_code"], exit::SERVER.exit_code());
}

#[test]
fn json_goes_to_stderr_when_stdout_carries_data() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("d.txt");
    std::fs::write(&path, b"data only").unwrap();
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let received = spawn(mp().args([
        "receive",
        "--json",
        "--yes",
        "--signal",
        &signal.url,
        &code,
        "-o",
        "-",
    ]))
    .wait(LIMIT);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    received.assert_code(exit::SUCCESS);
    assert_eq!(received.stdout, b"data only");
    assert!(
        received.stderr.contains(r#""event":"finished""#),
        "{}",
        received.stderr
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_on_the_sender_mid_transfer_stops_both_and_keeps_the_partial_data() {
    // Bound by name, so the server and the source live until the test ends.
    let Midway {
        signal: _signal,
        src: _src,
        dst,
        sender,
        receiver,
    } = Midway::start();
    sender.interrupt();
    let sent = sender.wait(Duration::from_secs(30));
    sent.assert_code(exit::INTERRUPTED);
    assert_eq!(sent.last_line(), "mp: interrupted");
    let received = receiver.wait(Duration::from_secs(30));
    received.assert_code(exit::PEER_GONE);
    assert!(
        received.last_line().contains("partial data kept"),
        "{}",
        received.stderr
    );
    assert!(!dst.path().join("big.bin").exists());
}

#[test]
fn quiet_prints_only_the_code_and_errors() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("q.txt");
    std::fs::write(&path, b"quiet").unwrap();
    let code = fresh_code();
    let sender = spawn(send(&signal, &code, &path).arg("--quiet"));
    let received = spawn(receive(&signal, &code, dst.path()).args(["--yes", "-q"])).wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);
    assert_eq!(sent.stderr, format!("Code: {code}\n"));
    assert_eq!(received.stderr, "");
}

#[test]
fn the_code_is_asked_for_on_the_terminal_with_its_words_completed() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("asked.txt");
    std::fs::write(&path, b"typed, not in ps").unwrap();
    let sender = spawn(send(&signal, "61-guitar-ocean", &path).arg("--json"));
    // The code looks generated, so the receiver joins only if a sender is already waiting
    // (else it ends at once with "no sender is waiting"): as a person would, wait for it.
    sender.wait_event("waiting", STEP);
    // A person at a terminal: `script` gives mp a pty; they type the room and part of a word,
    // press Tab, and finish the code.
    let command = format!(
        "{} receive --signal {} --yes -o {}",
        mp_bin().display(),
        signal.url,
        dst.path().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .env("MP_BIND", "127.0.0.1")
        .env_remove("MP_SIGNAL")
        .env_remove("MP_CODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut receiver = spawn(&mut cmd);
    receiver.wait_text("Code: ", STEP);
    receiver.write_stdin(b"61-guit\t-ocean\r");
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("asked.txt")).unwrap(),
        b"typed, not in ps"
    );
}

#[test]
fn without_a_terminal_a_missing_code_says_how_to_pass_one() {
    let out = spawn(mp().args(["receive", "--signal", "ws://127.0.0.1:9"])).wait(LIMIT);
    out.assert_code(exit::USAGE);
    assert!(out.last_line().contains("MP_CODE"), "{}", out.stderr);
    assert!(out.last_line().contains("--code-file"), "{}", out.stderr);
}

#[test]
fn a_script_can_keep_the_code_in_a_file_or_pipe_it_in() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("scripted.txt");
    std::fs::write(&path, b"from a script").unwrap();

    // From a file (first line; surrounding space ignored).
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let file = src.path().join("code.txt");
    std::fs::write(&file, format!("  {code}\nignored\n")).unwrap();
    let mut cmd = mp();
    cmd.args(["receive", "--signal", &signal.url, "--yes", "-o"])
        .arg(dst.path().join("one.txt"))
        .arg("--code-file")
        .arg(&file);
    spawn(&mut cmd).wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);

    // From standard input.
    let code = fresh_code();
    let sender = spawn(&mut send(&signal, &code, &path));
    let mut cmd = mp();
    cmd.args([
        "receive",
        "--signal",
        &signal.url,
        "--yes",
        "--code-file",
        "-",
        "-o",
    ])
    .arg(dst.path().join("two.txt"))
    .stdin(Stdio::piped());
    let mut receiver = spawn(&mut cmd);
    receiver.write_stdin(format!("{code}\n").as_bytes());
    receiver.close_stdin();
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(list(dst.path()), vec!["one.txt", "two.txt"]);

    // An empty file is a usage error, said at once.
    let empty = src.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let out = spawn(
        mp().args(["receive", "--signal", &signal.url, "--code-file"])
            .arg(&empty),
    )
    .wait(LIMIT);
    out.assert_code(exit::USAGE);
    assert!(out.last_line().contains("empty"), "{}", out.stderr);
}

#[test]
fn a_text_can_come_from_standard_input() {
    let signal = Signal::start();
    let code = fresh_code();
    let mut cmd = mp();
    cmd.args([
        "send",
        "--signal",
        &signal.url,
        "--code",
        &code,
        "--text",
        "-",
    ])
    .stdin(Stdio::piped());
    let mut sender = spawn(&mut cmd);
    sender.write_stdin(b"from a pipe\n");
    sender.close_stdin();
    let received = spawn(mp().args(["receive", "--signal", &signal.url, &code])).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(received.stdout, b"from a pipe\n");
}

#[test]
fn partial_data_left_by_an_interruption_is_listed_and_removed() {
    let Midway {
        signal: _signal,
        src: _src,
        dst,
        sender: _sender,
        receiver,
    } = Midway::start();
    receiver.interrupt();
    let received = receiver.wait(LIMIT);
    received.assert_code(exit::INTERRUPTED);
    assert!(
        received.last_line().contains("mp partial --remove"),
        "the message says how to remove it: {}",
        received.stderr
    );
    let listed = spawn(mp().arg("partial").arg(dst.path())).wait(LIMIT);
    listed.assert_code(exit::SUCCESS);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.contains(".mp-partial-"), "{listing}");
    assert!(listing.contains("MiB"), "its size is shown: {listing}");
    spawn(mp().args(["partial", "--remove"]).arg(dst.path()))
        .wait(LIMIT)
        .assert_code(exit::SUCCESS);
    assert!(list(dst.path()).is_empty(), "{:?}", list(dst.path()));
}
