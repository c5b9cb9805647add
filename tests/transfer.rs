//! Real transfers: a real `mp signal`, real `mp send` and `mp receive`, real WebRTC on loopback.

mod common;

use common::*;

/// Sends `content` as `name` and checks the received copy byte for byte.
fn round_trip(name: &str, content: &[u8]) {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join(name);
    std::fs::write(&path, content).unwrap();
    let code = fresh_code();

    let sender = spawn(&mut send(&signal, &code, &path));
    let receiver = spawn(receive(&signal, &code, dst.path()).arg("--yes"));
    let received = receiver.wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);

    let copy = std::fs::read(dst.path().join(name)).unwrap();
    assert!(copy == content, "received bytes differ from the sent ones");
    assert_eq!(
        list(dst.path()),
        vec![name.to_string()],
        "only the file is left"
    );
    assert!(received.stdout.is_empty(), "stdout stays free for data");
}

#[test]
fn empty_file_arrives_intact() {
    round_trip("empty.txt", b"");
}

#[test]
fn one_byte_file_arrives_intact() {
    round_trip("one.bin", b"x");
}

#[test]
fn one_mebibyte_file_arrives_intact() {
    round_trip("one-mib.bin", &random_bytes(1 << 20, 1));
}

#[test]
fn hundred_mebibyte_file_arrives_intact() {
    round_trip("hundred-mib.bin", &random_bytes(100 << 20, 2));
}

#[test]
fn odd_sized_file_with_spaces_and_unicode_in_its_name_arrives_intact() {
    round_trip(
        "résumé final (2).pdf",
        &random_bytes(256 * 1024 * 3 + 17, 3),
    );
}

#[test]
fn receiver_may_join_before_the_sender() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("early.txt");
    std::fs::write(&path, b"the receiver was first").unwrap();
    let code = fresh_code();

    let receiver = spawn(receive(&signal, &code, dst.path()).args(["--yes", "--json"]));
    receiver.wait_event("waiting", STEP);
    let sender = spawn(&mut send(&signal, &code, &path));
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("early.txt")).unwrap(),
        b"the receiver was first"
    );
}

#[test]
fn output_may_name_the_file() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("original.txt");
    std::fs::write(&path, b"renamed on arrival").unwrap();
    let code = fresh_code();
    let target = dst.path().join("chosen.txt");

    let sender = spawn(&mut send(&signal, &code, &path));
    let receiver = spawn(receive(&signal, &code, &target).arg("--yes"));
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(std::fs::read(&target).unwrap(), b"renamed on arrival");
}

#[test]
fn generated_code_is_printed_and_works() {
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("gen.txt");
    std::fs::write(&path, b"generated").unwrap();

    let sender = spawn(mp().args(["send", "--signal", &signal.url]).arg(&path));
    let code = sender.wait_line("Code: ", STEP);
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(parts.len(), 3, "number-word-word: {code}");
    assert!(parts[0].parse::<u32>().is_ok());

    let received = spawn(receive(&signal, &code, dst.path()).arg("--yes")).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    let sent = sender.wait(LIMIT);
    sent.assert_code(exit::SUCCESS);
    assert_eq!(
        sent.stderr.lines().next(),
        Some(format!("Code: {code}").as_str()),
        "the first line gives the code"
    );
    assert_eq!(
        std::fs::read(dst.path().join("gen.txt")).unwrap(),
        b"generated"
    );
}
