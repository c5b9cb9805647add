//! Names from the peer: the path check that keeps a receiver's writes inside its target,
//! and the escaping that keeps a name from rewriting the terminal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mp::protocol::manifest::{
    check_path, display, display_start, MAX_COMPONENT, MAX_DEPTH, MAX_PATH,
};

fuzz_target!(|path: &str| {
    if check_path(path).is_ok() {
        assert!(!path.is_empty() && path.len() <= MAX_PATH);
        assert!(!path.starts_with('/') && !path.contains('\\') && !path.contains('\0'));
        let components: Vec<&str> = path.split('/').collect();
        assert!(components.len() <= MAX_DEPTH);
        for component in components {
            assert!(!component.is_empty() && component != "." && component != "..");
            assert!(component.len() <= MAX_COMPONENT);
            assert!(!component.chars().any(char::is_control));
        }
    }
    let shown = display(path);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    // Nothing invisible or layout-changing gets through.
    for c in shown.chars() {
        assert!(
            !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{061c}'),
            "{shown:?}"
        );
    }
    // Escaping is idempotent, and keeps what needs no escape.
    assert_eq!(display(&shown), shown);
    if path.chars().all(|c| (' '..='~').contains(&c)) {
        assert_eq!(shown, path);
    }
    let start = display_start(path);
    assert!(!start.chars().any(char::is_control));
});
