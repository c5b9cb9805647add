//! The web peer that `mp signal` serves at `/`, and the request that decides between it and
//! a WebSocket.
//!
//! Every connection to the server starts with an HTTP request. One that asks to upgrade to a
//! WebSocket (any path, as before) becomes a signaling client; a plain `GET` or `HEAD` gets one
//! of the page's files, compiled into the binary from `web/`, under a strict
//! Content-Security-Policy: scripts, styles and connections only from this server, nothing
//! inline, no frame, no form target. The code a link carries sits in the URL fragment, which a
//! browser never sends, so no request the server sees holds it.
//!
//! Two more paths are for the operator: `/healthz` (200, `ok`) and `/metrics` (the server's
//! aggregate counters in Prometheus text format, [`super::metrics`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{Stream, HANDSHAKE_RECORD, TLS_ONLY};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// Most headers parsed in a request.
const MAX_HEADERS: usize = 64;

/// The policy every page response carries.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One embedded file: its path under `/`, its type and its bytes.
struct Asset {
    path: &'static str,
    kind: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        kind: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/app.css",
        kind: "text/css; charset=utf-8",
        body: include_bytes!("../../web/app.css"),
    },
    Asset {
        path: "/app.js",
        kind: JS,
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/mp.js",
        kind: JS,
        body: include_bytes!("../../web/mp.js"),
    },
    Asset {
        path: "/proto.js",
        kind: JS,
        body: include_bytes!("../../web/proto.js"),
    },
    Asset {
        path: "/hash.js",
        kind: JS,
        body: include_bytes!("../../web/hash.js"),
    },
    Asset {
        path: "/hash-worker.js",
        kind: JS,
        body: include_bytes!("../../web/hash-worker.js"),
    },
    Asset {
        path: "/vendor/noble.js",
        kind: JS,
        body: include_bytes!("../../web/vendor/noble.js"),
    },
    Asset {
        path: "/words.txt",
        kind: "text/plain; charset=utf-8",
        body: include_bytes!("../protocol/words.txt"),
    },
];

/// What `/metrics` shows, made when asked for.
pub type MetricsText = dyn Fn() -> String + Send + Sync;

/// Where a reverse proxy in front of the server writes the client's address (`--trust-proxy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: the rightmost entry, which the last proxy
    /// (yours) appended or set.
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`: the `for` of the rightmost element.
    #[value(name = "forwarded")]
    Forwarded,
}

/// How connections are taken in: over TLS or not, and whose address counts.
pub struct Front<'a> {
    /// Serve TLS (`wss://`, `https://`) with this.
    pub tls: Option<&'a tokio_rustls::TlsAcceptor>,
    /// Take the client's address from this header of the request (`--trust-proxy`).
    pub trust_proxy: Option<ProxyHeader>,
    /// Time for the whole exchange: TLS, the request, the WebSocket handshake or the answer.
    pub timeout: Duration,
    pub metrics: &'a MetricsText,
}

/// How a new connection's first exchange ended.
pub enum Accepted {
    /// A WebSocket: a signaling client, and the address its proxy named (`--trust-proxy`).
    Ws(Box<WebSocketStream<Stream>>, Option<IpAddr>),
    /// A plain HTTP request, answered (the page, `/healthz`, `/metrics` or an error).
    Http,
    /// The exchange did not finish within the timeout.
    TimedOut,
    /// A TLS handshake that failed, or plain HTTP on a TLS port (answered in plain text).
    Tls,
    /// The connection closed or sent something that is no HTTP request.
    Broken,
}

/// Reads the request head and either completes a WebSocket handshake (a signaling client) or
/// serves the page, `/healthz` or `/metrics`. With TLS, the TLS handshake comes first; all of
/// it must finish within `front.timeout`.
pub async fn accept(stream: TcpStream, config: WebSocketConfig, front: &Front<'_>) -> Accepted {
    let work = async {
        let mut stream = match front.tls {
            None => Stream::Plain(stream),
            Some(acceptor) => {
                let mut first = [0u8; 1];
                match stream.peek(&mut first).await {
                    Ok(1) if first[0] == HANDSHAKE_RECORD => {}
                    Ok(1) => {
                        // Someone typed http:// or ws://: say what to use, in their language.
                        let mut stream = stream;
                        let answer = plain(400, "Bad Request", &format!("{TLS_ONLY}\n"), false);
                        let _ = stream.write_all(&answer).await;
                        let _ = stream.shutdown().await;
                        return Accepted::Tls;
                    }
                    _ => return Accepted::Broken,
                }
                match acceptor.accept(stream).await {
                    Ok(tls) => Stream::Tls(Box::new(tls)),
                    Err(_) => return Accepted::Tls,
                }
            }
        };
        let Some((head, rest)) = read_head(&mut stream).await else {
            return Accepted::Broken;
        };
        let Some(answer) = answer(&head, front.trust_proxy, front.metrics) else {
            return Accepted::Broken;
        };
        if answer.upgrade {
            if stream.write_all(&answer.response).await.is_err() {
                return Accepted::Broken;
            }
            let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config))
                .await;
            return Accepted::Ws(Box::new(ws), answer.forwarded);
        }
        let _ = stream.write_all(&answer.response).await;
        let _ = stream.shutdown().await;
        Accepted::Http
    };
    tokio::time::timeout(front.timeout, work)
        .await
        .unwrap_or(Accepted::TimedOut)
}

/// What the server does with a request head.
pub struct Answer {
    /// What it writes back: `101 Switching Protocols`, a file of the page, or an error.
    pub response: Vec<u8>,
    /// True when the connection goes on as a WebSocket (`response` is the 101).
    pub upgrade: bool,
    /// The client's address as the trusted proxy wrote it (WebSockets only).
    pub forwarded: Option<IpAddr>,
}

/// The server's answer to the request head `head` (up to and with its blank line); `None`
/// when it is no HTTP request, and the connection is closed without a word. Public for the
/// fuzz target.
pub fn answer(
    head: &[u8],
    trust_proxy: Option<ProxyHeader>,
    metrics: &MetricsText,
) -> Option<Answer> {
    let request = Request::parse(head)?;
    if request.is_upgrade() {
        let response = request.upgrade_response();
        let upgrade = response.starts_with("HTTP/1.1 101");
        return Some(Answer {
            upgrade,
            forwarded: trust_proxy
                .filter(|_| upgrade)
                .and_then(|h| request.client_address(h)),
            response: response.into_bytes(),
        });
    }
    Some(Answer {
        response: request.http_response(metrics),
        upgrade: false,
        forwarded: None,
    })
}

/// Reads up to the blank line that ends the head; returns the head and what followed it.
async fn read_head(stream: &mut Stream) -> Option<(Vec<u8>, Vec<u8>)> {
    // Read straight into the buffer: a chunk array would sit in every connection's task.
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let searched_from = buffer.len().saturating_sub(3);
        buffer.reserve(1024);
        let n = stream.read_buf(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        if buffer[0] == HANDSHAKE_RECORD {
            // TLS to a plain port (wss:// to a ws:// server): close now, not at the timeout.
            return None;
        }
        if let Some(end) = find(&buffer[searched_from..], b"\r\n\r\n") {
            let end = searched_from + end + 4;
            let rest = buffer.split_off(end);
            return Some((buffer, rest));
        }
        if buffer.len() > MAX_HEAD {
            let _ = stream
                .write_all(&plain(431, "Request Header Fields Too Large", "", false))
                .await;
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a request that matter here.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &[u8]) -> Option<Request> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        let target = request.path?;
        let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
        Some(Request {
            method: request.method?.to_string(),
            path,
            headers: request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The client's address as the proxy in front wrote it in `header`: the rightmost entry
    /// (the one the proxy itself appended). `None` when absent or not an address.
    fn client_address(&self, header: ProxyHeader) -> Option<IpAddr> {
        // Several lines of one header are one list, in order (RFC 9110 §5.3).
        let last = |name: &str| {
            self.headers
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.rsplit(',').next())
                .map(str::trim)
        };
        match header {
            ProxyHeader::XForwardedFor => node_address(last("x-forwarded-for")?),
            ProxyHeader::Forwarded => {
                let element = last("forwarded")?;
                let value = element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then_some(value.trim())
                })?;
                node_address(value.trim_matches('"'))
            }
        }
    }

    /// True when the client asks for a WebSocket (RFC 6455 §4.2.1: `Upgrade: websocket`).
    fn is_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// The server's handshake answer: 101 with the accept key, or why not.
    fn upgrade_response(&self) -> String {
        let connection_upgrade = self.header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        let key = self.header("sec-websocket-key").filter(|k| !k.is_empty());
        if self.method != "GET" || !connection_upgrade {
            return text_head(400, "Bad Request");
        }
        if self.header("sec-websocket-version") != Some("13") {
            return "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
                    Content-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string();
        }
        let Some(key) = key else {
            return text_head(400, "Bad Request");
        };
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
    }

    /// The answer to a plain HTTP request: a file of the page, the health or the metrics, or
    /// an error.
    fn http_response(&self, metrics: &MetricsText) -> Vec<u8> {
        let head_only = self.method == "HEAD";
        if self.method != "GET" && !head_only {
            return plain(405, "Method Not Allowed", "GET or HEAD only\n", false);
        }
        match self.path.as_str() {
            "/healthz" => return plain(200, "OK", "ok\n", head_only),
            "/metrics" => {
                let body = metrics();
                let kind = "text/plain; version=0.0.4; charset=utf-8";
                return response(200, "OK", kind, body.as_bytes(), head_only);
            }
            _ => {}
        }
        let path = if self.path == "/index.html" {
            "/"
        } else {
            self.path.as_str()
        };
        match ASSETS.iter().find(|a| a.path == path) {
            Some(asset) => response(200, "OK", asset.kind, asset.body, head_only),
            None => plain(404, "Not Found", "not found\n", head_only),
        }
    }
}

/// An address as proxies write it: `192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`, or any of
/// them with a port (`192.0.2.7:4711`, `[2001:db8::1]:4711`).
fn node_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

fn text_head(status: u16, reason: &str) -> String {
    format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn plain(status: u16, reason: &str, body: &str, head_only: bool) -> Vec<u8> {
    response(
        status,
        reason,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        head_only,
    )
}

fn response(status: u16, reason: &str, kind: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: {kind}\r\n\
         Content-Length: {}\r\n\
         Content-Security-Policy: {CSP}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Resource-Policy: same-origin\r\n\
         X-Frame-Options: DENY\r\n\
         Cache-Control: no-cache\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The web address of the page on the signaling server at `signal` (`ws://host:port/path`
/// → `http://host:port/`), for links and QR codes.
pub fn page_url(signal: &str) -> Option<String> {
    let (scheme, rest) = if let Some(rest) = signal.strip_prefix("ws://") {
        ("http", rest)
    } else if let Some(rest) = signal.strip_prefix("wss://") {
        ("https", rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}/"))
}

/// The link that opens the page with `code`: the page's address, the code in the fragment.
pub fn link(signal: &str, code: &str) -> Option<String> {
    page_url(signal).map(|page| page_link(&page, code))
}

/// The link that opens the page at `page` (from [`page_url`]) with `code`.
pub fn page_link(page: &str, code: &str) -> String {
    format!("{page}#{}", escape_fragment(code))
}

/// Percent-encodes what may not stand in a URL fragment as it is (RFC 3986 `fragment`).
fn escape_fragment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A link to the page (`http(s)://host[:port]/…#code`): the signaling URL it stands for and
/// the code, percent-decoded. `None` for anything else (a plain code, say).
pub fn parse_link(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let (scheme, rest) = if let Some(rest) = text.strip_prefix("http://") {
        ("ws", rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        ("wss", rest)
    } else {
        return None;
    };
    let (before, fragment) = rest.split_once('#')?;
    let authority = before.split(['/', '?']).next()?;
    // A user name is not a host: `http://u@/#7-x` names no server (as `page_url` sees it).
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || fragment.is_empty() {
        return None;
    }
    let code = percent_decode(fragment)?;
    Some((format!("{scheme}://{authority}/"), code))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would also take "+A".
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_code_in_the_fragment_only() {
        assert_eq!(
            link("ws://192.0.2.7:8080", "7-guitar-ocean").as_deref(),
            Some("http://192.0.2.7:8080/#7-guitar-ocean")
        );
        assert_eq!(
            link("wss://mp.example.org/signal", "12-a b").as_deref(),
            Some("https://mp.example.org/#12-a%20b")
        );
        assert_eq!(
            parse_link("https://mp.example.org/#12-a%20b"),
            Some(("wss://mp.example.org/".into(), "12-a b".into()))
        );
        assert_eq!(
            parse_link(" http://[::1]:8080/#7-x-y\n"),
            Some(("ws://[::1]:8080/".into(), "7-x-y".into()))
        );
        assert_eq!(parse_link("7-guitar-ocean"), None);
        assert_eq!(parse_link("http://host/"), None);
        assert_eq!(parse_link("http://host/#%zz"), None);
        // Found by fuzz/fuzz_targets/code.rs: a user name and no host is no server.
        assert_eq!(parse_link("https://u@#:h"), None);
        assert_eq!(parse_link("http://u@/#7-x"), None);
        // Also found by it: an escape is '%' and two hex digits, not a sign and one.
        assert_eq!(parse_link("https://0s#%+A"), None);
        assert_eq!(
            parse_link("http://h/#7-%2b%2B"),
            Some(("ws://h/".into(), "7-++".into()))
        );
        assert_eq!(
            parse_link("http://u@h/#7-x"),
            Some(("ws://u@h/".into(), "7-x".into()))
        );
        let code = "7-é-\u{1F600}";
        let (_, back) = parse_link(&link("ws://h:1", code).unwrap()).unwrap();
        assert_eq!(back, code);
    }

    #[test]
    fn requests_are_told_apart() {
        let ws = Request::parse(
            b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        assert!(ws.is_upgrade());
        // RFC 6455's own example.
        assert!(ws
            .upgrade_response()
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let none = || String::from("mp_signal_clients 0\n");
        let page = Request::parse(b"GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert!(!page.is_upgrade());
        let response = String::from_utf8(page.http_response(&none)).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(response.contains("Content-Security-Policy: default-src 'none'"));
        assert!(response.contains("<script type=\"module\" src=\"app.js\">"));
        let missing = Request::parse(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
        assert!(String::from_utf8(missing.http_response(&none))
            .unwrap()
            .starts_with("HTTP/1.1 404"));
        for (path, body) in [("/healthz", "ok\n"), ("/metrics", "mp_signal_clients 0\n")] {
            let head = format!("GET {path} HTTP/1.1\r\n\r\n");
            let response = Request::parse(head.as_bytes())
                .unwrap()
                .http_response(&none);
            let response = String::from_utf8(response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.ends_with(&format!("\r\n\r\n{body}")), "{response}");
        }
        let post = Request::parse(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(String::from_utf8(post.http_response(&none))
            .unwrap()
            .starts_with("HTTP/1.1 405"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for asset in ASSETS {
            // An SVG namespace is a name, not a request.
            let text =
                String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            for needle in [
                "http://", "https://", "//cdn", "<style", "style=\"", "onclick=",
            ] {
                let allowed = needle.starts_with("http") && asset.path == "/vendor/noble.js";
                assert!(
                    allowed || !text.contains(needle) || asset.path == "/words.txt",
                    "{} contains {needle}",
                    asset.path
                );
            }
        }
    }
}
