//! The manifest: what the sender offers, checked before the receiver writes anything.
//!
//! Entries are files and folders with relative, `/`-separated paths that must stay inside the
//! target folder; a hostile sender's manifest is refused as a whole if any entry is unsafe.
//! Files travel in manifest order; a file of unknown size (a stream from stdin) must be the only
//! entry.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most entries a manifest may list.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest path, in bytes.
///
/// The receiver writes each entry at `<its folder>/.mp-partial-<id>/<path>`, and Linux refuses
/// any path of 4096 bytes or more (`PATH_MAX`, with its NUL). 3072 keeps 1 KiB of that for the
/// receiver's folder and the staging folder's name (39 bytes for the current folder), so an
/// offer that passes here does not fail half-way with "File name too long". Paths that long are
/// rare in real trees (macOS cannot hold more than 1023 bytes at all).
pub const MAX_PATH: usize = 3072;
/// Longest path component, in bytes: `NAME_MAX` of Linux, macOS and Windows file systems.
pub const MAX_COMPONENT: usize = 255;
/// Most components (folders, then the name) in one path.
///
/// Real trees stay far below: source trees a dozen or two, old nested `node_modules` a few
/// dozen. 128 leaves room for those and bounds the work of creating and walking folders.
pub const MAX_DEPTH: usize = 128;
/// Permission bits a receiver applies; setuid, setgid and sticky bits are never sent.
pub const MODE_MASK: u32 = 0o777;

/// What the sender offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One file or folder of the offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// A file (the default) or a folder.
    #[serde(default, skip_serializing_if = "Kind::is_file")]
    pub kind: Kind,
    /// Exact size in bytes; absent for folders and for a stream of unknown length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Unix permission bits (`0o777` at most), if the sender has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// The kinds of entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    File,
    Dir,
}

impl Kind {
    fn is_file(&self) -> bool {
        *self == Kind::File
    }
}

impl Entry {
    pub fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.to_string(),
            kind: Kind::File,
            size: Some(size),
            mode: None,
        }
    }

    pub fn dir(path: &str) -> Entry {
        Entry {
            path: path.to_string(),
            kind: Kind::Dir,
            size: None,
            mode: None,
        }
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the offer lists nothing")]
    Empty,
    #[error("the offer lists too many entries (at most {MAX_ENTRIES})")]
    TooManyEntries,
    #[error("unsafe path in the offer: {0}")]
    UnsafePath(String),
    #[error("the offer's sizes add up to more than a u64")]
    SizeOverflow,
    #[error("the offer lists {0} twice")]
    Duplicate(String),
    #[error("the offer puts {0} inside a file")]
    InsideFile(String),
    #[error("the offer's entry {0} is malformed")]
    Malformed(String),
    #[error("the offer has an empty part")]
    EmptyPart,
    #[error("the offer's paths add up to more than the receiver holds before asking")]
    PathsTooLong,
    #[error(
        "the offer's path {0} is {1} bytes long, more than the {MAX_PATH} taken \
         (to stay within the file system's limit of 4096 inside the receiver's folder)"
    )]
    PathTooLong(String, usize),
    #[error(
        "the offer's path {0} has a name of {1} bytes, more than file systems take \
         ({MAX_COMPONENT})"
    )]
    NameTooLong(String, usize),
    #[error("the offer's path {0} is {1} levels deep, more than the {MAX_DEPTH} taken")]
    TooDeep(String, usize),
    #[error(
        "the offer lists {0} and {1}, which differ only in letter case (or Unicode form): \
         on a case-insensitive file system (macOS, Windows) one would replace the other; \
         rename one"
    )]
    CaseClash(String, String),
}

/// What an offer adds up to, for the prompt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub folders: usize,
    /// Total bytes, or `None` when a stream's length is unknown.
    pub bytes: Option<u64>,
}

impl Manifest {
    /// An offer of one file.
    pub fn single(name: &str, size: u64) -> Manifest {
        Manifest {
            entries: vec![Entry::file(name, size)],
        }
    }

    /// True for a single stream of unknown length.
    pub fn is_stream(&self) -> bool {
        self.entries.len() == 1 && self.entries[0].is_file() && self.entries[0].size.is_none()
    }

    /// Checks every entry; returns what the offer adds up to.
    pub fn validate(&self) -> Result<Summary, ManifestError> {
        if self.entries.is_empty() {
            return Err(ManifestError::Empty);
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries);
        }
        let mut seen = HashSet::with_capacity(self.entries.len());
        let mut files = HashSet::new();
        let mut summary = Summary {
            bytes: Some(0),
            ..Summary::default()
        };
        for entry in &self.entries {
            check_path(&entry.path)?;
            let malformed = || ManifestError::Malformed(display(&entry.path));
            if entry.mode.is_some_and(|m| m & !MODE_MASK != 0) {
                return Err(malformed());
            }
            if !seen.insert(entry.path.as_str()) {
                return Err(ManifestError::Duplicate(display(&entry.path)));
            }
            match entry.kind {
                Kind::Dir if entry.size.is_some() => return Err(malformed()),
                Kind::Dir => summary.folders += 1,
                Kind::File => {
                    summary.files += 1;
                    files.insert(entry.path.as_str());
                    summary.bytes = match (summary.bytes, entry.size) {
                        (Some(total), Some(size)) => {
                            Some(total.checked_add(size).ok_or(ManifestError::SizeOverflow)?)
                        }
                        _ if self.entries.len() == 1 => None,
                        // A stream of unknown length must travel alone.
                        _ => return Err(malformed()),
                    };
                }
            }
        }
        case_clash(&self.entries)?;
        // No entry may sit below a file.
        for entry in &self.entries {
            let mut ancestor = entry.path.as_str();
            while let Some((parent, _)) = ancestor.rsplit_once('/') {
                if files.contains(parent) {
                    return Err(ManifestError::InsideFile(display(&entry.path)));
                }
                ancestor = parent;
            }
        }
        Ok(summary)
    }

    /// The distinct first path components, in manifest order: what appears in the target folder.
    pub fn roots(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .map(|e| e.path.split('/').next().unwrap_or(""))
            .filter(|root| seen.insert(*root))
            .collect()
    }

    /// A short name for progress and final messages: the single entry's name, or "N files".
    pub fn title(&self, summary: &Summary) -> String {
        match self.entries.as_slice() {
            [single] => display(&single.path),
            _ => format!("{} files", summary.files),
        }
    }

    /// A short, stable identifier of this offer (paths, kinds and sizes): the same files sent
    /// again get the same identifier, which is how a receiver finds what it kept to resume.
    pub fn id(&self) -> String {
        let mut hasher = Sha256::new();
        for entry in &self.entries {
            hasher.update(entry.path.as_bytes());
            hasher.update([0, entry.is_file() as u8]);
            hasher.update(entry.size.unwrap_or(u64::MAX).to_be_bytes());
        }
        super::hex(&hasher.finalize()[..8])
    }
}

/// Accepts only a relative path whose every component is an ordinary name, within the
/// length and depth a file system takes ([`MAX_PATH`], [`MAX_COMPONENT`], [`MAX_DEPTH`]).
pub fn check_path(path: &str) -> Result<(), ManifestError> {
    let unsafe_path = || ManifestError::UnsafePath(display(path));
    if path.is_empty() {
        return Err(unsafe_path());
    }
    if path.len() > MAX_PATH {
        return Err(ManifestError::PathTooLong(display_start(path), path.len()));
    }
    if path.contains('\0') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(unsafe_path());
    }
    let depth = path.split('/').count();
    if depth > MAX_DEPTH {
        return Err(ManifestError::TooDeep(display_start(path), depth));
    }
    for (i, component) in path.split('/').enumerate() {
        let drive_prefix = i == 0 && component.len() >= 2 && component.as_bytes()[1] == b':';
        // A receiver's staging folders are named so: an offer must not reach into them.
        let staging_name = i == 0 && component.starts_with(".mp-partial-");
        if component.is_empty()
            || component == "."
            || component == ".."
            || drive_prefix
            || staging_name
        {
            return Err(unsafe_path());
        }
        if component.len() > MAX_COMPONENT {
            return Err(ManifestError::NameTooLong(
                display_start(path),
                component.len(),
            ));
        }
    }
    Ok(())
}

/// Refuses two paths that a case-insensitive file system would take as one (`A.txt` and
/// `a.txt`, or `Dir/x` and `dir/y`): the second would silently replace the first, or merge into
/// it. Names are compared case-folded and in canonical decomposition, since macOS also
/// ignores the normalization form (`é` as one character or as `e` and an accent). A few pairs
/// that only some file systems confuse (`ß` and `ss`) are refused too: rare, and the sender
/// only has to rename one.
fn case_clash(entries: &[Entry]) -> Result<(), ManifestError> {
    // Every distinct folder or name: (its parent's number, folded name) -> (its number, path).
    // Folders are numbered as first met, so a name is compared only with its siblings.
    let mut names: HashMap<(usize, String), (usize, &str)> = HashMap::new();
    for entry in entries {
        let (mut parent, mut end) = (0, 0);
        for component in entry.path.split('/') {
            end += component.len();
            let prefix = &entry.path[..end];
            end += 1;
            let number = names.len() + 1;
            match names.entry((parent, fold(component))) {
                Slot::Occupied(seen) => {
                    let (seen_number, seen_path) = *seen.get();
                    if seen_path != prefix {
                        return Err(ManifestError::CaseClash(
                            display(seen_path),
                            display(prefix),
                        ));
                    }
                    parent = seen_number;
                }
                Slot::Vacant(slot) => {
                    slot.insert((number, prefix));
                    parent = number;
                }
            }
        }
    }
    Ok(())
}

/// A name as a case- and normalization-insensitive file system sees it: decomposed, then
/// upper- and lower-cased character by character (which folds `ß` to `ss` and `ς` to `σ`).
fn fold(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.nfd()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .nfd()
        .collect()
}

/// The start of a long path, for a message: [`display`]ed, cut after 60 characters.
pub fn display_start(path: &str) -> String {
    const SHOWN: usize = 60;
    match path.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", display(&path[..cut])),
        None => display(path),
    }
}

/// Makes a name safe to print on a terminal: every character that is not shown as itself
/// becomes a `\u{..}` escape, so a file name cannot move the cursor, rewrite the screen, break
/// a line, reorder text or disguise its extension.
///
/// Escaped are the Unicode General Categories Cc (controls, escape sequences included), Cf
/// (format: bidirectional controls such as U+202E and U+061C, zero-width characters, U+FEFF,
/// tag characters U+E0000..), Zl and Zp (U+2028, U+2029), Co (private use: drawn as whatever a
/// font puts there) and Cn (unassigned: no terminal knows how wide it is). The table comes from
/// `unicode-properties`, not from a hand-made list.
pub fn display(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// True for a character [`display`] escapes.
fn is_hidden(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    // Printable ASCII is by far the common case.
    if (' '..='~').contains(&c) {
        return false;
    }
    matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(path: &str) -> Manifest {
        Manifest::single(path, 1)
    }

    fn many(entries: Vec<Entry>) -> Manifest {
        Manifest { entries }
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for ok in [
            "a.txt",
            "dir/b.bin",
            "spaces in name.txt",
            "ünïcødé/日本.txt",
            ".hidden",
            "a..b",
        ] {
            assert!(one(ok).validate().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            ".",
            "..",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "C:x",
            "c:/x",
            "a\0b",
            "a\u{1b}[2Jb",
            ".mp-partial-0123456789abcdef/x",
        ] {
            assert!(
                matches!(one(bad).validate(), Err(ManifestError::UnsafePath(_))),
                "{bad:?}"
            );
        }
        assert!(one(&"a".repeat(MAX_COMPONENT + 1)).validate().is_err());
        assert!(one(&"a/".repeat(MAX_PATH)).validate().is_err());
    }

    #[test]
    fn paths_a_file_system_cannot_hold_are_refused_with_the_limit_named() {
        // 2,046 folders deep and 4,093 bytes: once accepted, it failed while writing.
        let deep = format!("{}x", "a/".repeat(2046));
        let err = one(&deep).validate().unwrap_err();
        assert_eq!(err, ManifestError::PathTooLong(display_start(&deep), 4093));
        assert!(err.to_string().contains("4093 bytes"), "{err}");
        assert!(err.to_string().contains(&MAX_PATH.to_string()), "{err}");
        assert!(err.to_string().len() < 300, "a long path is cut: {err}");

        let too_deep = format!("{}x", "a/".repeat(MAX_DEPTH));
        let err = one(&too_deep).validate().unwrap_err();
        assert!(matches!(err, ManifestError::TooDeep(_, n) if n == MAX_DEPTH + 1));
        assert!(err.to_string().contains("levels deep"), "{err}");
        let deepest = format!("{}x", "a/".repeat(MAX_DEPTH - 1));
        assert!(one(&deepest).validate().is_ok());

        let long_name = "n".repeat(MAX_COMPONENT + 1);
        let err = one(&format!("dir/{long_name}")).validate().unwrap_err();
        assert!(matches!(err, ManifestError::NameTooLong(_, 256)), "{err}");
        assert!(err.to_string().contains("255"), "{err}");
        assert!(one(&"n".repeat(MAX_COMPONENT)).validate().is_ok());

        // The longest path taken, in long names.
        let mut longest = String::new();
        while MAX_PATH - longest.len() > MAX_COMPONENT {
            longest = format!("{longest}{}/", "n".repeat(MAX_COMPONENT - 1));
        }
        longest.push_str(&"n".repeat(MAX_PATH - longest.len()));
        assert_eq!(longest.len(), MAX_PATH);
        assert!(one(&longest).validate().is_ok());
        longest.push('n');
        assert!(matches!(
            one(&longest).validate(),
            Err(ManifestError::PathTooLong(..))
        ));
    }

    #[test]
    fn names_that_differ_only_in_case_are_refused() {
        let clash = |entries: Vec<Entry>| match many(entries).validate() {
            Err(ManifestError::CaseClash(a, b)) => Some((a, b)),
            other => {
                assert!(other.is_ok(), "{other:?}");
                None
            }
        };
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(
            clash(vec![Entry::file("A.txt", 1), Entry::file("a.txt", 1)]),
            pair("A.txt", "a.txt")
        );
        assert_eq!(
            clash(vec![Entry::file("Dir/x", 1), Entry::file("dir/y", 1)]),
            pair("Dir", "dir")
        );
        assert_eq!(
            clash(vec![
                Entry::dir("top"),
                Entry::dir("top/Photos"),
                Entry::file("top/Photos/a.jpg", 1),
                Entry::file("top/photos", 1),
            ]),
            pair("top/Photos", "top/photos")
        );
        assert_eq!(
            clash(vec![Entry::file("ÉTÉ.txt", 1), Entry::file("été.txt", 1)]),
            pair("ÉTÉ.txt", "été.txt")
        );
        assert_eq!(
            clash(vec![Entry::file("straße", 1), Entry::file("STRASSE", 1)]),
            pair("straße", "STRASSE")
        );
        // The same name, composed and decomposed: one file on macOS.
        assert_eq!(
            clash(vec![
                Entry::file("caf\u{e9}", 1),
                Entry::file("cafe\u{301}", 1)
            ]),
            pair("caf\u{e9}", "cafe\u{301}")
        );
        // Same names under different folders, and names that merely look alike, are fine.
        assert_eq!(
            clash(vec![
                Entry::file("a/x", 1),
                Entry::file("b/X", 1),
                Entry::file("Dir/x", 1),
                Entry::file("Dir/y", 1),
                Entry::file("a.txt", 1),
                Entry::file("a.txt.bak", 1),
            ]),
            None
        );
        let err = many(vec![Entry::file("A.txt", 1), Entry::file("a.txt", 1)])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("A.txt and a.txt"), "{err}");
        assert!(err.contains("differ only in letter case"), "{err}");
        assert!(err.contains("rename one"), "{err}");
    }

    #[test]
    fn summary_counts_files_folders_and_bytes() {
        let m = many(vec![
            Entry::dir("photos"),
            Entry::file("photos/a.jpg", 10),
            Entry::dir("photos/empty"),
            Entry::file("notes.txt", 5),
        ]);
        assert_eq!(
            m.validate(),
            Ok(Summary {
                files: 2,
                folders: 2,
                bytes: Some(15)
            })
        );
        assert_eq!(m.roots(), vec!["photos", "notes.txt"]);
    }

    #[test]
    fn counts_sizes_and_shapes_are_bounded() {
        assert_eq!(many(vec![]).validate(), Err(ManifestError::Empty));
        let huge = many(vec![Entry::file("a", u64::MAX), Entry::file("b", 1)]);
        assert_eq!(huge.validate(), Err(ManifestError::SizeOverflow));
        let dup = many(vec![Entry::file("a", 1), Entry::file("a", 1)]);
        assert!(matches!(dup.validate(), Err(ManifestError::Duplicate(_))));
        let inside = many(vec![Entry::file("a", 1), Entry::file("a/b", 1)]);
        assert!(matches!(
            inside.validate(),
            Err(ManifestError::InsideFile(_))
        ));
        let sized_dir = many(vec![Entry {
            size: Some(1),
            ..Entry::dir("d")
        }]);
        assert!(matches!(
            sized_dir.validate(),
            Err(ManifestError::Malformed(_))
        ));
        let setuid = many(vec![Entry {
            mode: Some(0o4755),
            ..Entry::file("x", 1)
        }]);
        assert!(matches!(
            setuid.validate(),
            Err(ManifestError::Malformed(_))
        ));
        let too_many = many(
            (0..=MAX_ENTRIES)
                .map(|i| Entry::file(&i.to_string(), 0))
                .collect(),
        );
        assert_eq!(too_many.validate(), Err(ManifestError::TooManyEntries));
    }

    #[test]
    fn a_stream_of_unknown_length_travels_alone() {
        let stream = Entry {
            size: None,
            ..Entry::file("stdin", 0)
        };
        let alone = many(vec![stream.clone()]);
        assert!(alone.is_stream());
        assert_eq!(alone.validate().unwrap().bytes, None);
        let mixed = many(vec![stream, Entry::file("b", 1)]);
        assert!(matches!(mixed.validate(), Err(ManifestError::Malformed(_))));
    }

    #[test]
    fn id_is_stable_and_tells_offers_apart() {
        assert_eq!(one("a").id(), one("a").id());
        assert_eq!(one("a").id().len(), 16);
        assert_ne!(one("a").id(), one("b").id());
        assert_ne!(Manifest::single("a", 1).id(), Manifest::single("a", 2).id());
    }

    #[test]
    fn json_omits_defaults() {
        let m = many(vec![
            Entry::file("a", 1),
            Entry {
                mode: Some(0o755),
                ..Entry::dir("d")
            },
        ]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"entries":[{"path":"a","size":1},{"path":"d","kind":"dir","mode":493}]}"#
        );
    }

    #[test]
    fn display_neutralises_terminal_escapes() {
        assert_eq!(display("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(display("bell\u{7}"), "bell\\u{7}");
        assert_eq!(display("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(display("plain ü.txt"), "plain ü.txt");
    }

    #[test]
    fn display_neutralises_invisible_and_layout_changing_characters() {
        for (c, category) in [
            ('\u{85}', "Cc: next line"),
            ('\u{ad}', "Cf: soft hyphen"),
            ('\u{61c}', "Cf: Arabic letter mark"),
            ('\u{200b}', "Cf: zero width space"),
            ('\u{200d}', "Cf: zero width joiner"),
            ('\u{200e}', "Cf: left-to-right mark"),
            ('\u{200f}', "Cf: right-to-left mark"),
            ('\u{202a}', "Cf: left-to-right embedding"),
            ('\u{2066}', "Cf: left-to-right isolate"),
            ('\u{2069}', "Cf: pop directional isolate"),
            ('\u{2060}', "Cf: word joiner"),
            ('\u{feff}', "Cf: byte order mark"),
            ('\u{e0001}', "Cf: language tag"),
            ('\u{e0041}', "Cf: tag latin capital A"),
            ('\u{e007f}', "Cf: cancel tag"),
            ('\u{2028}', "Zl: line separator"),
            ('\u{2029}', "Zp: paragraph separator"),
            ('\u{e000}', "Co: private use"),
            ('\u{10fffd}', "Co: supplementary private use"),
            ('\u{378}', "Cn: unassigned"),
            ('\u{ffff}', "Cn: noncharacter"),
        ] {
            let name = format!("a{c}b.txt");
            let shown = display(&name);
            assert_eq!(shown, format!("a\\u{{{:x}}}b.txt", c as u32), "{category}");
            assert!(!shown.contains(c), "{category}");
        }
    }

    #[test]
    fn display_keeps_ordinary_text_of_any_script() {
        for ok in [
            "日本語のファイル.txt",
            "Ελληνικά.pdf",
            "עברית.doc",
            "العربية.txt",
            "e\u{301}te\u{301}.txt", // combining accents
            "emoji 😀🎉.png",
            "non\u{a0}breaking and\u{3000}ideographic spaces",
        ] {
            assert_eq!(display(ok), ok);
        }
    }
}
