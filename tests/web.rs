//! The web peer in a real browser: headless Chromium against real `mp` processes and the page
//! `mp signal` serves, everything on 127.0.0.1.
//!
//! Each test has its own server and its own Chromium; they run one at a time (2 cores).

mod browser;
mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use browser::{
    assert_hashed_on_a_worker, downloaded, facing_browser, page, Browser, Tab, NO_PICKER,
};
use common::*;
use serde_json::json;

/// Browser tests run one after the other: each Chromium wants a core of its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a test leaves its screenshots (also copied to docs/ by hand when they change).
fn shots() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn assert_no_csp_violation(tab: &Tab) {
    assert_eq!(tab.csp_violations(), json!([]), "{}", tab.describe());
}

#[test]
fn the_page_computes_the_test_vectors_of_the_protocol() {
    let _one = serial();
    let signal = Signal::start();
    let browser = Browser::launch();
    let dir = tempfile::tempdir().unwrap();
    let tab = browser.tab(dir.path());
    tab.navigate(&page(&signal));
    let got = tab.eval("import('/proto.js').then((m) => m.selfTest())");
    // docs/PROTOCOL.md §13.1–§13.4.
    assert_eq!(
        got["k_s2r"],
        "5ec62b8e403679797d2f2cb56edef2dc84b08619534de3364637e046be39cd2c"
    );
    assert_eq!(
        got["k_r2s"],
        "e83f8e55bc0ec78c05ad8ebbf3d5a3fd80610849fe704ef200a195002ff4f0e6"
    );
    assert!(got["sealed"]
        .as_str()
        .unwrap()
        .ends_with("3fe41e3f2679a164323fd0c9f312790c"));
    assert_eq!(got["sealed"].as_str().unwrap().len(), 560);
    assert_eq!(
        got["msgA"],
        "416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9"
    );
    assert_eq!(
        got["msgB"],
        "42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309"
    );
    let secret = "712295de7219c675ddd31942184aa26e0a957cf216bc230d165b215047b520c1";
    assert_eq!(got["secretA"], secret);
    assert_eq!(got["secretB"], secret);
    assert_eq!(
        got["hash_ab"],
        "d59d9ba920f7092565cec747b08d5b2e981d553ac32fde0f25e5b4a4cfca3efd"
    );
    assert_eq!(
        got["e2e"]["secret"],
        "ee7224043d7189bac84edfbca7cbf12bd9ec373e00bbb8f4ae16e943fe3a4d5b"
    );
    assert_eq!(got["e2e"]["secretB"], got["e2e"]["secret"]);
    assert_eq!(
        got["e2e"]["k_s2r"],
        "d45fa271e4782afaa41c3afd7347a1a9a5fc9e759ee8dd9885625f25914f2898"
    );
    assert_eq!(got["opened"], r#"{"type":"accept"}"#);
    // Codes are normalised exactly as mp does (src/protocol/code.rs).
    let rust = [
        mp::protocol::code::Code::parse("007 Guitar OCEAN").unwrap(),
        mp::protocol::code::Code::parse("7-MySecret").unwrap(),
    ];
    assert_eq!(got["codes"][0], rust[0].as_str());
    assert_eq!(got["codes"][1], rust[1].as_str());
    assert_no_csp_violation(&tab);
}

#[test]
fn cli_sends_and_the_page_receives_at_phone_width() {
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 17, 1);
    let path = src.path().join("report.bin");
    std::fs::write(&path, &data).unwrap();
    let code = fresh_code();
    let sender = spawn(facing_browser(&mut send(&signal, &code, &path)).arg("--json"));
    // The link the sender prints is the one a phone scans.
    let link = sender.wait_event("code", STEP)["link"]
        .as_str()
        .expect("the code event carries the link")
        .to_string();
    assert_eq!(link, format!("{}#{code}", page(&signal)));

    let browser = Browser::launch();
    let tab = browser.tab(downloads.path());
    tab.before_load(NO_PICKER);
    tab.phone(390, 844);
    tab.navigate(&link);
    tab.wait_state("offer", STEP);
    assert!(tab.text("offer-list").contains("report.bin"));
    assert_eq!(tab.eval("document.activeElement.id"), "accept");
    tab.screenshot(&shots().join("web-phone-offer.png"));
    tab.click("accept");
    tab.wait_state("done", LIMIT);
    tab.screenshot(&shots().join("web-phone-received.png"));
    let got = downloaded(downloads.path(), "report.bin", data.len(), STEP);
    assert!(
        got == data,
        "the downloaded bytes differ from the sent ones"
    );
    sender.wait(STEP).assert_code(exit::SUCCESS);
    assert_no_csp_violation(&tab);
    assert_hashed_on_a_worker(&tab);
}

#[test]
fn the_page_sends_and_the_cli_receives_from_the_link() {
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let one = random_bytes(2 * 1024 * 1024 + 5, 2);
    let two = random_bytes(1000, 3);
    std::fs::write(src.path().join("one.bin"), &one).unwrap();
    std::fs::write(src.path().join("two.txt"), &two).unwrap();

    // Someone waits in room 1: the page asks the server for a room (`allocate`), as mp does,
    // and gets the lowest free one instead of drawing a number that may be squatted.
    let (mut squatter, _) = tokio_tungstenite::tungstenite::connect(&signal.url).unwrap();
    squatter
        .send(r#"{"type":"join","room":"1","side":"receive"}"#.into())
        .unwrap();
    assert!(squatter
        .read()
        .unwrap()
        .to_text()
        .unwrap()
        .contains("joined"));

    let browser = Browser::launch();
    let tab = browser.tab(src.path());
    tab.phone(390, 844);
    tab.navigate(&page(&signal));
    tab.wait_state("home", STEP);
    tab.screenshot(&shots().join("web-phone-home.png"));
    tab.set_files(
        "file-input",
        &[&src.path().join("one.bin"), &src.path().join("two.txt")],
    );
    tab.click("send-button");
    tab.wait_state("sharing", STEP);
    let link = tab
        .eval("document.getElementById('share-link').value")
        .as_str()
        .unwrap()
        .to_string();
    let code = tab.text("share-code");
    assert_eq!(link, format!("{}#{code}", page(&signal)));
    assert!(
        code.starts_with("2-"),
        "{code}: not the room the server allocates"
    );
    assert_eq!(
        tab.eval("document.querySelectorAll('#qr svg path').length"),
        1
    );
    tab.screenshot(&shots().join("web-phone-share.png"));

    // `mp receive LINK`: the link names the server, no --signal.
    let receiver = spawn(
        facing_browser(&mut mp())
            .args(["receive", "--yes", "-o"])
            .arg(dst.path())
            .arg(&link),
    );
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    assert!(std::fs::read(dst.path().join("one.bin")).unwrap() == one);
    assert!(std::fs::read(dst.path().join("two.txt")).unwrap() == two);
    tab.wait_state("done", STEP);
    assert_no_csp_violation(&tab);
    assert_hashed_on_a_worker(&tab);
}

#[test]
fn browser_to_browser() {
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = random_bytes(5 * 1024 * 1024 + 3, 4);
    std::fs::write(src.path().join("video.bin"), &data).unwrap();

    let browser = Browser::launch();
    let sender = browser.tab(src.path());
    sender.navigate(&page(&signal));
    sender.wait_state("home", STEP);
    sender.set_files("file-input", &[&src.path().join("video.bin")]);
    sender.click("send-button");
    sender.wait_state("sharing", STEP);
    let link = sender
        .eval("document.getElementById('share-link').value")
        .as_str()
        .unwrap()
        .to_string();

    let receiver = browser.tab(downloads.path());
    receiver.open_offer(&link);
    receiver.click("accept");
    receiver.wait_state("done", LIMIT);
    sender.wait_state("done", STEP);
    let got = downloaded(downloads.path(), "video.bin", data.len(), STEP);
    assert!(
        got == data,
        "the downloaded bytes differ from the sent ones"
    );
    assert_no_csp_violation(&sender);
    assert_no_csp_violation(&receiver);
    assert_hashed_on_a_worker(&sender);
    assert_hashed_on_a_worker(&receiver);
}

#[test]
fn a_wrong_code_is_an_error_on_the_page() {
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let code = fresh_code();
    let sender = spawn(facing_browser(&mut send(&signal, &code, &path)));
    sender.wait_line("Code: ", STEP);
    let room = code.split('-').next().unwrap();

    let browser = Browser::launch();
    let tab = browser.tab(src.path());
    tab.navigate(&format!("{}#{room}-not-the-code", page(&signal)));
    tab.wait_for(
        "document.body.dataset.state === 'error'",
        Duration::from_secs(60),
    );
    assert_eq!(
        tab.eval("document.getElementById('error').dataset.kind"),
        "wrong-code"
    );
    let error = tab.text("error");
    assert!(error.starts_with("Wrong code"), "{error}");
    assert_eq!(
        tab.eval("document.activeElement.id"),
        "again-link",
        "the way out has the focus"
    );
    // The sender is told, and keeps waiting for the right receiver.
    sender.wait_text("someone tried to receive with a wrong code", STEP);
}

#[test]
fn texts_declines_and_a_vanished_sender_on_the_page() {
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let browser = Browser::launch();
    let tab = browser.tab(src.path());
    tab.before_load(NO_PICKER);

    // A text is shown, neutralised, and confirmed.
    let code = fresh_code();
    let sender = spawn(facing_browser(&mut mp()).args([
        "send",
        "--signal",
        &signal.url,
        "--code",
        &code,
        "--text",
        "the wifi password is hunter2\u{202e}",
    ]));
    tab.navigate(&format!("{}#{code}", page(&signal)));
    tab.wait_state("done", STEP);
    assert_eq!(
        tab.text("text-body"),
        "the wifi password is hunter2\\u{202e}"
    );
    sender.wait(STEP).assert_code(exit::SUCCESS);

    // Declining is the sender's "declined".
    let path = src.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let code = fresh_code();
    let sender = spawn(facing_browser(&mut send(&signal, &code, &path)));
    sender.wait_line("Code: ", STEP);
    tab.navigate(&format!("{}#{code}", page(&signal)));
    tab.wait_state("offer", STEP);
    tab.click("decline");
    tab.wait_for(
        "document.getElementById('error').dataset.kind === 'declined'",
        STEP,
    );
    sender.wait(STEP).assert_code(exit::DECLINED);

    // A sender that vanishes while the page asks: the page says the other side left.
    let code = fresh_code();
    let mut sender = spawn(facing_browser(&mut send(&signal, &code, &path)));
    sender.wait_line("Code: ", STEP);
    tab.navigate(&format!("{}#{code}", page(&signal)));
    tab.wait_state("offer", STEP);
    sender.kill();
    drop(sender);
    // Whether the page hears it before or after the answer, it ends saying the sender left.
    tab.click("accept");
    tab.wait_for("document.body.dataset.state === 'error'", STEP);
    assert_eq!(
        tab.eval("document.getElementById('error').dataset.kind"),
        "peer-gone",
        "{}",
        tab.describe()
    );
    assert!(tab.text("error").contains("left"), "{}", tab.describe());

    // A generated code nobody sends with: said at once, not after a long wait.
    tab.navigate(&format!("{}#7-guitar-ocean", page(&signal)));
    tab.wait_for(
        "document.getElementById('error')?.dataset.kind === 'no-sender'",
        STEP,
    );
    assert!(
        tab.text("error")
            .starts_with("No sender is waiting with the code 7-guitar-ocean"),
        "{}",
        tab.describe()
    );
    assert_no_csp_violation(&tab);
}

#[test]
fn the_page_resumes_what_mp_receive_kept() {
    // mp receive keeps a staged prefix when interrupted; offered the same file again (the page
    // as sender), it asks to resume, the page hashes its own prefix, and only the rest travels.
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let data = random_bytes(24 * 1024 * 1024, 6);
    let path = src.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let browser = Browser::launch();
    let tab = browser.tab(src.path());
    let offer = |tab: &Tab| tab.share(&page(&signal), &[&path]);

    let code = offer(&tab);
    let mut first = spawn(facing_browser(&mut receive(&signal, &code, dst.path())).arg("--yes"));
    wait_until_staged(dst.path(), "big.bin", 2 * 1024 * 1024);
    first.kill();
    drop(first);
    tab.wait_for("document.body.dataset.state === 'error'", STEP);

    let code = offer(&tab);
    let second =
        spawn(facing_browser(&mut receive(&signal, &code, dst.path())).args(["--yes", "--json"]));
    let finished = second.wait_event("finished", LIMIT);
    assert!(
        finished["already_there"].as_u64().unwrap() >= 1024 * 1024,
        "nothing was resumed: {finished}"
    );
    second.wait(STEP).assert_code(exit::SUCCESS);
    assert!(std::fs::read(dst.path().join("big.bin")).unwrap() == data);
    tab.wait_state("done", STEP);
}

#[test]
fn the_page_streams_to_a_chosen_file() {
    // With the File System Access API (a desktop Chromium on https or localhost) each file is
    // written as it arrives. The picker is answered with a file in the origin's private
    // storage, read back afterwards.
    let _one = serial();
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let data = random_bytes(6 * 1024 * 1024 + 1, 5);
    let path = src.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let code = fresh_code();
    let sender = spawn(facing_browser(&mut send(&signal, &code, &path)));
    sender.wait_line("Code: ", STEP);

    let browser = Browser::launch();
    let tab = browser.tab(src.path());
    tab.before_load(
        "window.showSaveFilePicker = async (o) => (await navigator.storage.getDirectory()).getFileHandle(o.suggestedName, { create: true });",
    );
    tab.navigate(&format!("{}#{code}", page(&signal)));
    tab.wait_state("offer", STEP);
    assert!(tab.text("save-note").contains("written as it arrives"));
    tab.click("accept");
    tab.wait_state("done", LIMIT);
    let hash = tab.eval(
        "(async () => { const f = await (await (await navigator.storage.getDirectory()).getFileHandle('big.bin')).getFile(); \
         const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await f.arrayBuffer())); \
         return [f.size, Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('')]; })()",
    );
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, json!([data.len(), expected]));
    sender.wait(STEP).assert_code(exit::SUCCESS);
}
