//! The transfer code: `<room>-<secret>`, e.g. `7-guitar-ocean`.
//!
//! The number before the first dash names the room on the signaling server; the *whole* code is the
//! password that SPAKE2 turns into a key. The server sees only the room number, so the words are
//! the part it cannot guess.

use rand::Rng;

/// The built-in word list: 256 short, distinct, easy-to-say English words (8 bits each).
const WORDS: &str = include_str!("words.txt");

/// Largest room number `generate` picks: small enough to type, large enough that two strangers
/// rarely collide on one server (and when they do, the sender just draws another).
pub const MAX_GENERATED_ROOM: u32 = 99;

/// Longest room part accepted, in digits.
const MAX_ROOM_DIGITS: usize = 9;

/// Longest code accepted, in bytes.
pub const MAX_CODE_LEN: usize = 256;

/// A parsed code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    room: String,
    full: String,
    /// Of the generated form: a number and two words of the list.
    generated: bool,
}

/// Why a string is not a code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("a code looks like 7-guitar-ocean: a number, a dash, then words")]
    Malformed,
    #[error("the code is too long (at most {MAX_CODE_LEN} bytes)")]
    TooLong,
}

impl Code {
    /// Parses a code typed by a person or passed by a script. Surrounding white space is ignored.
    ///
    /// A code made of a number and words of the built-in list (a generated code) is forgiven
    /// its case and its separators: `7 Guitar ocean` is `7-guitar-ocean`. Both sides apply the
    /// same rule, and the words carry the same entropy either way. Anything else is significant
    /// as typed (a custom code is a password).
    pub fn parse(text: &str) -> Result<Code, CodeError> {
        let normal = normalise_generated(text.trim());
        let generated = normal.as_deref().is_some_and(|n| n.split('-').count() == 3);
        let full = normal.as_deref().unwrap_or(text.trim());
        if full.len() > MAX_CODE_LEN {
            return Err(CodeError::TooLong);
        }
        let (room, secret) = full.split_once('-').ok_or(CodeError::Malformed)?;
        let room_ok = !room.is_empty()
            && room.len() <= MAX_ROOM_DIGITS
            && room.bytes().all(|b| b.is_ascii_digit());
        if !room_ok || secret.is_empty() || full.chars().any(char::is_control) {
            return Err(CodeError::Malformed);
        }
        // "007" and "7" are the same room: normalise so both sides meet.
        let room = room.trim_start_matches('0');
        let room = if room.is_empty() { "0" } else { room };
        Ok(Code {
            room: room.to_string(),
            full: format!("{room}-{secret}"),
            generated,
        })
    }

    /// Draws a fresh code `<1..=99>-<word>-<word>` from the operating system's randomness.
    pub fn generate() -> Code {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    /// As [`Code::generate`], with a caller-supplied random source (for tests).
    pub fn generate_with(rng: &mut impl Rng) -> Code {
        let room = rng.gen_range(1..=MAX_GENERATED_ROOM);
        let words: Vec<&str> = WORDS.lines().collect();
        let first = words[rng.gen_range(0..words.len())];
        let second = words[rng.gen_range(0..words.len())];
        Code::parse(&format!("{room}-{first}-{second}")).expect("generated codes are well formed")
    }

    /// The same secret in another room (used when a generated code's room is busy).
    pub fn with_room(&self, room: u32) -> Code {
        let secret = self.secret();
        Code::parse(&format!("{room}-{secret}")).expect("a number and a valid secret parse")
    }

    /// The room number, as the server sees it.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The part after the room number.
    pub fn secret(&self) -> &str {
        &self.full[self.room.len() + 1..]
    }

    /// Whether the code has the form `mp send` generates: a number and two words of the list.
    /// The sender of such a code is in its room before the code is shown, so a receiver that
    /// finds nobody waiting there need not wait (a `--code` of this form is taken the same way).
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// The whole code: the SPAKE2 password.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// The words generated codes are made of (for completing a code as it is typed).
pub fn words() -> impl Iterator<Item = &'static str> {
    WORDS.lines()
}

/// `7-guitar-ocean` for any spelling of a generated code (case, spaces or dashes), else
/// `None`.
fn normalise_generated(text: &str) -> Option<String> {
    let parts: Vec<&str> = text
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect();
    let (room, words) = parts.split_first()?;
    if words.is_empty() || !room.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let words: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let listed = |word: &String| WORDS.lines().any(|listed| listed == word);
    if !words.iter().all(listed) {
        return None;
    }
    Some(format!("{room}-{}", words.join("-")))
}

/// The generated code `typed` most likely mistypes: the same room and words of the built-in
/// list, each typed word being either one of them or a typo of one (at most two letters off,
/// and nearer to it than to any other), in any case and with dashes or spaces between them.
/// `None` when `typed` is a generated code already, or does not look like a mistyped one.
///
/// Only a hint for a person (after a malformed code or a failed key exchange): a custom code
/// that happens to look like a typo is still taken as typed.
pub fn likely_meant(typed: &str) -> Option<Code> {
    let typed = typed.trim();
    if normalise_generated(typed).is_some() {
        return None;
    }
    let parts: Vec<&str> = typed
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect();
    let [room, words @ ..] = parts.as_slice() else {
        return None;
    };
    if words.len() != 2 || !room.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut fixed = Vec::with_capacity(words.len());
    for word in words {
        if !word.chars().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        fixed.push(nearest_word(&word.to_ascii_lowercase())?);
    }
    Code::parse(&format!("{room}-{}", fixed.join("-"))).ok()
}

/// `word` if it is on the list, else the one listed word at most two edits away from it
/// and nearer than every other.
fn nearest_word(word: &str) -> Option<&'static str> {
    if let Some(listed) = WORDS.lines().find(|listed| *listed == word) {
        return Some(listed);
    }
    let mut best: Option<(&str, usize)> = None;
    let mut tie = false;
    for listed in WORDS.lines() {
        let distance = strsim::damerau_levenshtein(word, listed);
        match best {
            Some((_, d)) if distance > d => {}
            Some((_, d)) if distance == d => tie = true,
            _ => {
                best = Some((listed, distance));
                tie = false;
            }
        }
    }
    best.filter(|&(_, d)| d <= 2 && !tie)
        .map(|(listed, _)| listed)
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_forgive_case_and_separators_custom_ones_do_not() {
        let canonical = Code::parse("7-guitar-ocean").unwrap();
        for typed in [
            "7 guitar ocean",
            "7-Guitar-OCEAN",
            " 7  guitar-ocean ",
            "007 guitar ocean",
        ] {
            assert_eq!(Code::parse(typed).unwrap(), canonical, "{typed:?}");
        }
        // A custom code stays exactly as typed: its case is part of the password.
        assert_ne!(
            Code::parse("7-MySecret").unwrap(),
            Code::parse("7-mysecret").unwrap()
        );
        // One word off the list: not a generated code, so nothing is changed.
        assert_eq!(
            Code::parse("17-XMBER-album").unwrap().as_str(),
            "17-XMBER-album"
        );
        assert!(
            Code::parse("7 my secret").is_err(),
            "a custom code needs its dash"
        );
    }
    use rand::SeedableRng;

    #[test]
    fn word_list_has_256_distinct_lowercase_words() {
        let mut words: Vec<&str> = WORDS.lines().collect();
        assert_eq!(words.len(), 256);
        assert!(words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), 256);
    }

    #[test]
    fn parses_room_and_secret() {
        let code = Code::parse("  7-guitar-ocean\n").unwrap();
        assert_eq!(code.room(), "7");
        assert_eq!(code.secret(), "guitar-ocean");
        assert_eq!(code.as_str(), "7-guitar-ocean");
    }

    #[test]
    fn leading_zeros_name_the_same_room() {
        assert_eq!(Code::parse("007-x").unwrap(), Code::parse("7-x").unwrap());
        assert_eq!(Code::parse("0-x").unwrap().room(), "0");
    }

    #[test]
    fn rejects_malformed_codes() {
        for bad in [
            "",
            "guitar-ocean",
            "7",
            "7-",
            "-x",
            "x7-a",
            "1234567890-a",
            "7-a\u{1b}b",
        ] {
            assert_eq!(Code::parse(bad), Err(CodeError::Malformed), "{bad:?}");
        }
        assert_eq!(
            Code::parse(&format!("1-{}", "a".repeat(300))),
            Err(CodeError::TooLong)
        );
    }

    #[test]
    fn codes_of_the_generated_form_are_known_as_such() {
        assert!(Code::parse("7-guitar-ocean").unwrap().is_generated());
        assert!(Code::parse("1234 Guitar OCEAN").unwrap().is_generated());
        assert!(Code::generate().is_generated());
        assert!(Code::generate().with_room(500).is_generated());
        for custom in [
            "7-guitar",
            "7-guitar-ocean-guitar",
            "7-MySecret",
            "7-guitar-xyzzy",
        ] {
            assert!(!Code::parse(custom).unwrap().is_generated(), "{custom}");
        }
    }

    #[test]
    fn generated_codes_parse_and_vary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = Code::generate_with(&mut rng);
        let b = Code::generate_with(&mut rng);
        assert_ne!(a, b);
        assert_eq!(Code::parse(a.as_str()).unwrap(), a);
        let room: u32 = a.room().parse().unwrap();
        assert!((1..=MAX_GENERATED_ROOM).contains(&room));
        assert_eq!(a.as_str().split('-').count(), 3);
    }

    #[test]
    fn a_word_one_typo_off_the_list_suggests_the_generated_code() {
        let meant = likely_meant;
        let ladder = Code::parse("1-cello-ladder").unwrap();
        assert_eq!(meant("1-cello-lader"), Some(ladder.clone()));
        assert_eq!(meant("1-Cello-ldader"), Some(ladder.clone()));
        assert_eq!(meant("1 cello laddre").as_ref(), Some(&ladder));
        // A generated code as it is, or something no typo explains: no suggestion.
        assert_eq!(meant("1-cello-ladder"), None);
        assert_eq!(meant("1-my-secret-phrase"), None);
        assert_eq!(meant("1-cello-xyzzyq"), None);
        assert_eq!(meant("1-cello-l4dder"), None);
    }

    #[test]
    fn with_room_keeps_the_secret() {
        let code = Code::parse("7-guitar-ocean").unwrap();
        assert_eq!(code.with_room(42).as_str(), "42-guitar-ocean");
    }
}
