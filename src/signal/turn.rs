//! Short-lived TURN credentials for the clients of `mp signal`, in the form of the "TURN REST
//! API" (draft-uberti-behave-turn-rest) that coturn checks with `use-auth-secret` and
//! `static-auth-secret`:
//!
//! ```text
//! username   = "<expiry, Unix seconds>:<random tag>"
//! credential = base64(HMAC-SHA1(secret, username))
//! ```
//!
//! The TURN server shares only the secret with `mp signal`; it accepts a username until the
//! time in it has passed, so a credential handed to one client stops working after the TTL.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;

use super::wire::TurnServer;

/// The TURN server(s) `mp signal` hands credentials out for.
#[derive(Clone)]
pub struct Turn {
    /// `turn:` / `turns:` URLs of one TURN server, e.g. `turn:relay.example.org:3478`.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    pub secret: String,
    /// How long a credential stays valid.
    pub ttl: Duration,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in a debug log.
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"<hidden>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Turn {
    /// A fresh credential for one client, valid until `now` + TTL.
    pub fn mint(&self, now: SystemTime) -> TurnServer {
        let expiry = (now + self.ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut tag = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut tag);
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let username = format!("{expiry}:{tag}");
        TurnServer {
            urls: self.urls.clone(),
            credential: credential(self.secret.as_bytes(), &username),
            username,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), the password coturn expects for `username`.
pub fn credential(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a `--turn` URL: `turn:` or `turns:`, then a host (RFC 7065).
pub fn parse_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("turn:")
        .or_else(|| url.strip_prefix("turns:"))
        .ok_or("a TURN URL starts with turn: or turns:, e.g. turn:relay.example.org:3478")?;
    if rest.is_empty()
        || rest.starts_with([':', '?', '/'])
        || rest.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err("a TURN URL needs a host, e.g. turn:relay.example.org:3478".into());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_an_independent_hmac_sha1() {
        // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b"north-wind", b"1700000000:0123456789abcdef", hashlib.sha1).digest()).decode())'
        assert_eq!(
            credential(b"north-wind", "1700000000:0123456789abcdef"),
            "/6lsfTkWkNvdDL/RFkqnVcdmStU="
        );
    }

    #[test]
    fn minted_credentials_expire_after_the_ttl_and_verify() {
        let turn = Turn {
            urls: vec!["turn:relay.example.org:3478".into()],
            secret: "s3cret".into(),
            ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let one = turn.mint(now);
        let two = turn.mint(now);
        assert_eq!(one.urls, turn.urls);
        let (expiry, tag) = one.username.split_once(':').unwrap();
        assert_eq!(expiry, "1700003600");
        assert_eq!(tag.len(), 16);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(one.credential, credential(b"s3cret", &one.username));
        assert_ne!(one.username, two.username, "each client gets its own");
        assert!(!format!("{turn:?}").contains("s3cret"));
    }

    #[test]
    fn turn_urls_are_checked() {
        for ok in [
            "turn:relay.example.org:3478",
            "turns:relay.example.org:5349?transport=tcp",
            "turn:[2001:db8::1]:3478",
            "turn:192.0.2.1",
        ] {
            assert_eq!(parse_url(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "stun:x:3478",
            "turn:",
            "turn::3478",
            "turn:a b",
            "http://x",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
