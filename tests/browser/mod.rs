//! Headless Chromium driven over the DevTools protocol (CDP), for the web peer's tests.
//!
//! A small client on the WebSocket crate `mp` already uses: launch Chromium with a throw-away
//! profile, open tabs, evaluate JavaScript in them, set files on an `<input type=file>`, take
//! screenshots, and let downloads land in a folder. Chromium must be installed (Debian package
//! `chromium`, which `.ci/run` installs); without it every browser test fails and says so.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The flags of the issue: headless, no sandbox (root in CI), nothing phoning home, and
/// loopback ICE candidates with real addresses instead of mDNS names.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--remote-debugging-port=0",
];

/// Wraps `RTCPeerConnection` so that only loopback ICE candidates reach the page or the
/// connection.
const LOOPBACK_ONLY: &str = r#"(() => {
  const Native = window.RTCPeerConnection;
  const loopback = (c) => !c || !c.candidate || / 127\.0\.0\.1 /.test(c.candidate);
  window.RTCPeerConnection = class extends Native {
    set onicecandidate(handler) {
      super.onicecandidate = handler && ((e) => { if (loopback(e.candidate)) handler(e); });
    }
    get onicecandidate() { return super.onicecandidate; }
    addIceCandidate(c) { return loopback(c) ? super.addIceCandidate(c) : Promise.resolve(); }
  };
})();"#;

/// `http://127.0.0.1:PORT/` for the server at `ws://127.0.0.1:PORT`.
pub fn page(signal: &crate::common::Signal) -> String {
    signal.url.replacen("ws://", "http://", 1) + "/"
}

/// Makes the page keep what it receives in memory and hand it over as downloads (headless
/// Chromium has no file picker to answer).
pub const NO_PICKER: &str = "delete window.showSaveFilePicker; delete window.showDirectoryPicker;";

/// `mp` bound to loopback sends 16,000-byte SCTP packets, more than Chromium takes in one DTLS
/// packet (2,048 bytes): facing a browser on the same machine it must use the size it uses on
/// any real network (docs/PROTOCOL.md §10.6).
pub fn facing_browser(cmd: &mut Command) -> &mut Command {
    cmd.env("MP_SCTP_MTU", "1191")
}

/// Where Chromium is: `MP_CHROMIUM`, else the first of the usual names on `PATH`.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("MP_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed, so the web peer cannot be tested: install the Debian \
         package `chromium` (.ci/run does), or point MP_CHROMIUM at a Chromium binary"
    );
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running Chromium and its DevTools connection; killed on drop.
pub struct Browser {
    child: Child,
    runtime: tokio::runtime::Runtime,
    outbox: mpsc::UnboundedSender<String>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: Mutex<u64>,
    _profile: tempfile::TempDir,
}

/// One tab, attached with a flat session.
pub struct Tab<'a> {
    browser: &'a Browser,
    session: String,
    pub target: String,
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium())
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Chromium ({}): {e}", chromium().display()));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().unwrap();
        let (found, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.trim().to_string());
                    }
                }
                // Keep draining, or Chromium blocks on a full pipe; MP_CHROMIUM_LOG shows it.
                if std::env::var_os("MP_CHROMIUM_LOG").is_some() {
                    eprintln!("chromium: {line}");
                }
            }
        });
        let url = url
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium did not open its DevTools port within 30 s");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (ws, _) = runtime
            .block_on(tokio_tungstenite::connect_async(url.as_str()))
            .expect("connect to Chromium's DevTools");
        let (mut sink, mut stream) = ws.split();
        let (outbox, mut outgoing) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        runtime.spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let (p, e) = (pending.clone(), events.clone());
        runtime.spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match value["id"].as_u64() {
                    Some(id) => {
                        if let Some(reply) = p.lock().unwrap().remove(&id) {
                            let _ = reply.send(value);
                        }
                    }
                    None => e.lock().unwrap().push(value),
                }
            }
        });
        Browser {
            child,
            runtime,
            outbox,
            pending,
            events,
            next_id: Mutex::new(0),
            _profile: profile,
        }
    }

    /// Sends one command (to a tab's session, or to the browser) and waits for its result.
    pub fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    /// As [`Browser::call`], returning Chromium's error instead of failing the test.
    pub fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (reply, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, reply);
        self.outbox.send(message.to_string()).unwrap();
        let value = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), answer).await })
            .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 60 s"))
            .unwrap();
        if let Some(error) = value.get("error") {
            return Err(error.clone());
        }
        Ok(value["result"].clone())
    }

    /// A new tab with the phone-free defaults; `downloads`: where its downloads land.
    pub fn tab(&self, downloads: &Path) -> Tab<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            ["targetId"]
            .as_str()
            .unwrap()
            .to_string();
        let session = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        let tab = Tab {
            browser: self,
            session,
            target,
        };
        tab.call("Page.enable", json!({}));
        tab.call("Runtime.enable", json!({}));
        self.call(
            None,
            "Browser.setDownloadBehavior",
            json!({ "behavior": "allow", "downloadPath": downloads, "eventsEnabled": true }),
        );
        // Every byte on loopback: the page announces and takes only 127.0.0.1 candidates
        // (Chromium would also offer the machine's other interfaces).
        tab.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": LOOPBACK_ONLY }),
        );
        // Record what the Content-Security-Policy blocks, and what the page logs.
        tab.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));" }),
        );
        tab
    }

    /// Console messages and exceptions so far, for a failing test's message.
    pub fn console(&self) -> String {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => Some(format!(
                    "console.{}: {}",
                    e["params"]["type"].as_str().unwrap_or(""),
                    e["params"]["args"]
                        .as_array()
                        .map(|args| args
                            .iter()
                            .map(|a| a["value"].to_string())
                            .collect::<Vec<_>>()
                            .join(" "))
                        .unwrap_or_default()
                )),
                Some("Runtime.exceptionThrown") => {
                    Some(format!("exception: {}", e["params"]["exceptionDetails"]))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tab<'_> {
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Runs `source` before any script of every page this tab loads from now on.
    pub fn before_load(&self, source: &str) {
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        );
    }

    pub fn navigate(&self, url: &str) {
        // Through a blank page first: going from `page#a` to `page#b` would be a same-document
        // navigation, which the page answers by reloading itself (`hashchange`), so
        // `readyState` could still read 'complete' from the old document, and the reload race
        // the waits that follow (once in CI: a page with no state for 30 s).
        for url in ["about:blank", url] {
            self.call("Page.navigate", json!({ "url": url }));
            self.wait_for(
                &format!(
                    "document.readyState === 'complete' && location.href === {}",
                    json!(url)
                ),
                Duration::from_secs(30),
            );
        }
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value.
    pub fn eval(&self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}\n{}", self.browser.console());
        }
        result["result"]["value"].clone()
    }

    /// As [`Tab::eval`] while polling: `None` when the page is between two documents (it
    /// navigated while the question was on its way), so the poll simply asks again.
    fn poll_eval(&self, expression: &str) -> Option<Value> {
        let params =
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        match self
            .browser
            .try_call(Some(&self.session), "Runtime.evaluate", params)
        {
            Ok(result) if result.get("exceptionDetails").is_none() => {
                Some(result["result"]["value"].clone())
            }
            Ok(result) => panic!("{expression} threw: {}", result["exceptionDetails"]),
            Err(error) if error.to_string().contains("navigated or closed") => None,
            Err(error) => panic!("Runtime.evaluate failed: {error}"),
        }
    }

    /// Waits until `condition` (JavaScript) is true; fails with the page's state otherwise.
    pub fn wait_for(&self, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.poll_eval(&format!("!!({condition})")) == Some(json!(true)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the page never got to `{condition}` within {timeout:?}\n{}\n{}",
                    self.describe(),
                    self.browser.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the page's `data-state` to become `state`; an error state fails at once.
    pub fn wait_state(&self, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.poll_eval("document.body && document.body.dataset.state");
            if now == Some(json!(state)) {
                return;
            }
            if now == Some(json!("error")) || Instant::now() > deadline {
                panic!(
                    "the page did not reach the state {state:?} within {timeout:?}\n{}\n{}",
                    self.describe(),
                    self.browser.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's state and visible messages.
    pub fn describe(&self) -> String {
        self.eval(
            "JSON.stringify({ state: document.body && document.body.dataset.state, \
             status: document.getElementById('status') && document.getElementById('status').textContent, \
             error: document.getElementById('error') && document.getElementById('error').textContent, \
             csp: window.__csp })",
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    pub fn text(&self, id: &str) -> String {
        self.eval(&format!("document.getElementById('{id}').textContent"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn click(&self, id: &str) {
        self.eval(&format!("document.getElementById('{id}').click()"));
    }

    /// Puts `files` into the `<input type=file>` with id `id`.
    pub fn set_files(&self, id: &str, files: &[&Path]) {
        let object = self.call(
            "Runtime.evaluate",
            json!({ "expression": format!("document.getElementById('{id}')") }),
        )["result"]["objectId"]
            .as_str()
            .unwrap()
            .to_string();
        self.call(
            "DOM.setFileInputFiles",
            json!({ "files": files, "objectId": object }),
        );
    }

    /// Emulates a phone's screen: `width` CSS pixels wide, touch, a device scale of 2.
    pub fn phone(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true }),
        );
    }

    /// A PNG of what the tab shows.
    pub fn screenshot(&self, path: &Path) {
        let data = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": false }),
        )["data"]
            .as_str()
            .unwrap()
            .to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// What the Content-Security-Policy blocked on this page.
    pub fn csp_violations(&self) -> Value {
        self.eval("window.__csp || []")
    }

    /// Opens the page at `page`, picks `files` and sends them: returns the code it shows.
    pub fn share(&self, page: &str, files: &[&Path]) -> String {
        self.navigate(page);
        self.wait_state("home", crate::common::STEP);
        self.set_files("file-input", files);
        self.click("send-button");
        self.wait_state("sharing", crate::common::STEP);
        self.text("share-code")
    }

    /// Opens a link to an offer (`page#code`), keeping what arrives in memory
    /// ([`NO_PICKER`]), and waits until the page shows the offer.
    pub fn open_offer(&self, link: &str) {
        self.before_load(NO_PICKER);
        self.navigate(link);
        self.wait_state("offer", crate::common::STEP);
    }
}

/// A file of 1 MiB or more was hashed on the page's worker thread (web/hash.js), not in place.
pub fn assert_hashed_on_a_worker(tab: &Tab) {
    assert_eq!(
        tab.eval("document.documentElement.dataset.hashing"),
        "worker",
        "{}",
        tab.describe()
    );
}

/// Waits for a download named `name` to be complete in `dir` and returns its bytes.
pub fn downloaded(dir: &Path, name: &str, size: usize, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let path = dir.join(name);
    loop {
        let partial = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
            })
            .unwrap_or(false);
        if !partial && std::fs::metadata(&path).is_ok_and(|m| m.len() as usize == size) {
            return std::fs::read(&path).unwrap();
        }
        if Instant::now() > deadline {
            let listing: Vec<String> = std::fs::read_dir(dir)
                .map(|e| {
                    e.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "no complete download {name} in {} within {timeout:?}: {listing:?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
