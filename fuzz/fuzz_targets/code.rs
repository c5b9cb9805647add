//! Codes and links as a person or a QR code hands them over.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mp::protocol::code::{Code, MAX_CODE_LEN};
use mp::signal::web::{link, page_url, parse_link};

fuzz_target!(|text: &str| {
    if let Ok(code) = Code::parse(text) {
        let full = code.as_str();
        assert!(full.len() <= MAX_CODE_LEN);
        assert_eq!(full, format!("{}-{}", code.room(), code.secret()));
        let room = code.room();
        assert!(!room.is_empty() && room.len() <= 9 && room.bytes().all(|b| b.is_ascii_digit()));
        assert!(room == "0" || !room.starts_with('0'));
        assert!(!code.secret().is_empty());
        assert!(!full.chars().any(char::is_control));
        // Both sides parse what they are given: the same code every time.
        assert_eq!(Code::parse(full).as_ref(), Ok(&code));
        assert_eq!(Code::parse(&code.to_string()).as_ref(), Ok(&code));
    }
    if let Some((signal, code)) = parse_link(text) {
        assert!(signal.starts_with("ws://") || signal.starts_with("wss://"));
        // RFC 3986 percent-encoding: '%' and two hex digits, nothing else.
        let fragment = text.split_once('#').unwrap().1.as_bytes();
        for (i, _) in fragment.iter().enumerate().filter(|(_, &b)| b == b'%') {
            let escape = &fragment[i + 1..i + 3];
            assert!(escape.iter().all(u8::is_ascii_hexdigit), "{text:?}");
        }
        assert!(!code.is_empty());
        // The link made for that server and code reads back as the same code and page.
        let again = link(&signal, &code).expect("a link for a parsed link's server");
        let (signal_again, code_again) = parse_link(&again).expect("a link reads back");
        assert_eq!(code_again, code);
        assert_eq!(page_url(&signal_again), page_url(&signal));
    }
    // Any server and code: a link that reads back as that code.
    if let Some((signal, code)) = text.split_once('\n') {
        if let Some(made) = link(signal, code) {
            if !code.is_empty() {
                let (_, back) = parse_link(&made).expect("a made link reads back");
                assert_eq!(back, code);
            }
        }
    }
});
