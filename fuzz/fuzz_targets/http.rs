//! The request head every connection to `mp signal` starts with (src/signal/web.rs): the
//! answer the server writes, and the client address a trusted proxy names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mp::signal::web::{answer, parse_link, ProxyHeader};

fuzz_target!(|data: &[u8]| {
    let metrics = || String::from("mp_signal_clients 0\n");
    // The server reads up to the blank line; what follows is never part of the head.
    let head = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &data[..end + 4],
        None => data,
    };
    for proxy in [None, Some(ProxyHeader::XForwardedFor), Some(ProxyHeader::Forwarded)] {
        let Some(answer) = answer(head, proxy, &metrics) else {
            continue;
        };
        let response = &answer.response;
        assert!(response.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(response));
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        let (status_head, body) = response.split_at(end);
        let status_head = std::str::from_utf8(status_head).expect("an ASCII head");
        assert_eq!(answer.upgrade, status_head.starts_with("HTTP/1.1 101 "));
        // Nothing the client sent is written back into the head (no header injection).
        assert!(status_head.lines().all(|l| !l.contains('\r')));
        if answer.upgrade {
            assert!(body.is_empty());
            assert!(status_head.contains("\r\nSec-WebSocket-Accept: "));
        } else {
            assert!(answer.forwarded.is_none());
            let length: usize = status_head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("a length")
                .parse()
                .expect("a number");
            // HEAD gets the head only; everything else the whole body.
            assert!(body.is_empty() || body.len() == length);
        }
        if proxy.is_none() {
            assert!(answer.forwarded.is_none());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((signal, code)) = parse_link(text) {
            assert!(signal.ends_with('/'));
            assert!(!code.is_empty());
        }
    }
});
