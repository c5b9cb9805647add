//! The web page's throughput, for `bench/run --only web`: 100 MiB (`MP_WEB_MIB` sets it) from
//! `mp send` to the page, from the page to `mp receive` and from page to page, beside what
//! Chromium's bare data channel and the page's SHA-256 manage on their own. Headless Chromium
//! and real `mp` processes (the `mp` built beside this program), everything on 127.0.0.1, with
//! the harness of the browser tests (`tests/browser`, `tests/common`).
//!
//! ```text
//! cargo build --release --bin mp --example web_throughput
//! target/release/examples/web_throughput
//! ```
//!
//! Prints one line per path, `LABEL: … MiB/s`; the figures are wall clock from Accept to done,
//! connecting included. It was an ignored test until it moved here: a measurement, not a check.

#[path = "../tests/browser/mod.rs"]
mod browser;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use browser::{facing_browser, page, Browser};
use common::*;

fn main() {
    let mib: usize = std::env::var("MP_WEB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let signal = Signal::start();
    let src = tempfile::tempdir().unwrap();
    let data = random_bytes(mib * 1024 * 1024, 9);
    let path = src.path().join("payload.bin");
    std::fs::write(&path, &data).unwrap();
    let rate = |what: &str, started: Instant| {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{what}: {mib} MiB in {seconds:.1} s = {:.1} MiB/s",
            mib as f64 / seconds
        );
    };

    // What Chromium itself does: one data channel between two connections in one page,
    // 256 KiB messages as fast as its buffer takes them, no protocol, no hashing; and the
    // page's SHA-256 (noble, in JavaScript).
    {
        let dir = tempfile::tempdir().unwrap();
        let browser = Browser::launch();
        let tab = browser.tab(dir.path());
        tab.navigate(&page(&signal));
        let raw = tab.eval(&RAW_CHANNEL.replace("TOTAL", &(mib << 20).to_string()));
        let raw = raw.as_f64().unwrap_or(0.0);
        println!("Chromium data channel alone, same page: {raw:.1} MiB/s");
        let hash = tab.eval(
            "import('/proto.js').then((m) => { const b = new Uint8Array(262143); const h = m.sha256.create(); \
             const t = performance.now(); for (let i = 0; i < 200; i++) h.update(b); h.digest(); \
             return 200 * b.length / 1048576 / ((performance.now() - t) / 1000); })",
        );
        let hash = hash.as_f64().unwrap_or(0.0);
        println!("SHA-256 in the page (noble): {hash:.1} MiB/s");
    }
    // CLI → browser (in memory).
    {
        let downloads = tempfile::tempdir().unwrap();
        let code = fresh_code();
        let sender = spawn(facing_browser(&mut send(&signal, &code, &path)));
        sender.wait_line("Code: ", STEP);
        let browser = Browser::launch();
        let tab = browser.tab(downloads.path());
        tab.open_offer(&format!("{}#{code}", page(&signal)));
        tab.eval(WATCH_LONG_TASKS);
        let started = Instant::now();
        tab.click("accept");
        tab.wait_state("done", Duration::from_secs(600));
        rate("mp send → browser", started);
        long_tasks("mp send → browser", &tab);
        sender.wait(STEP).assert_code(exit::SUCCESS);
    }
    // browser → CLI.
    {
        let dst = tempfile::tempdir().unwrap();
        let browser = Browser::launch();
        let tab = browser.tab(src.path());
        let code = tab.share(&page(&signal), &[&path]);
        tab.eval(WATCH_LONG_TASKS);
        let started = Instant::now();
        let receiver = spawn(facing_browser(&mut receive(&signal, &code, dst.path())).arg("--yes"));
        receiver
            .wait(Duration::from_secs(600))
            .assert_code(exit::SUCCESS);
        rate("browser → mp receive", started);
        long_tasks("browser → mp receive", &tab);
    }
    // browser → browser.
    {
        let downloads = tempfile::tempdir().unwrap();
        let browser = Browser::launch();
        let sender = browser.tab(src.path());
        let code = sender.share(&page(&signal), &[&path]);
        let receiver = browser.tab(downloads.path());
        receiver.open_offer(&format!("{}#{code}", page(&signal)));
        let started = Instant::now();
        receiver.click("accept");
        receiver.wait_state("done", Duration::from_secs(600));
        rate("browser → browser", started);
    }
}

/// Adds up, from now on, the time the page's main thread spends in tasks of 50 ms or more
/// (the Long Tasks API): while it runs one, the page cannot draw or react.
const WATCH_LONG_TASKS: &str = "globalThis.mpLongTasks = { count: 0, ms: 0 }; \
    new PerformanceObserver((list) => { for (const e of list.getEntries()) { \
    mpLongTasks.count += 1; mpLongTasks.ms += e.duration; } }).observe({ type: 'longtask' }); 0";

/// Prints what [`WATCH_LONG_TASKS`] counted.
fn long_tasks(what: &str, tab: &browser::Tab) {
    let got = tab.eval("mpLongTasks");
    println!(
        "{what}, the page's main thread: {} tasks of 50 ms or more, {:.0} ms in all",
        got["count"],
        got["ms"].as_f64().unwrap_or(0.0)
    );
}

/// Two connections in one page, one channel, as fast as it goes; MiB/s.
const RAW_CHANNEL: &str = r#"(async () => {
  const total = TOTAL;
  // Headless Chromium offers no host candidate here; the server's STUN gives 127.0.0.1.
  const config = { iceServers: [{ urls: `stun:127.0.0.1:${location.port}` }] };
  const a = new RTCPeerConnection(config), b = new RTCPeerConnection(config);
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const dc = a.createDataChannel('raw');
  const got = new Promise((done) => { b.ondatachannel = (e) => { let n = 0;
    e.channel.onmessage = (m) => { n += m.data.byteLength || m.data.size; if (n >= total) done(); }; }; });
  await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
  await new Promise((open) => { dc.onopen = open; });
  const chunk = new Uint8Array(262143);
  dc.bufferedAmountLowThreshold = 4 << 20;
  const t = performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (dc.bufferedAmount > 8 << 20) await new Promise((low) => { dc.onbufferedamountlow = low; });
    dc.send(chunk);
  }
  await got;
  return total / 1048576 / ((performance.now() - t) / 1000);
})()"#;
