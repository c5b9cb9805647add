//! The manifest: what the sender offers, checked before the receiver writes anything.
//!
//! Paths are relative, `/`-separated, and must stay inside the target folder: a hostile sender's
//! manifest is refused as a whole if any entry is unsafe.

use serde::{Deserialize, Serialize};

/// Most entries a manifest may list.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest path, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest path component, in bytes (the usual file system limit).
pub const MAX_COMPONENT: usize = 255;

/// What the sender offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One file of the offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the offer lists no file")]
    Empty,
    #[error("the offer lists too many entries (at most {MAX_ENTRIES})")]
    TooManyEntries,
    #[error("unsafe path in the offer: {0}")]
    UnsafePath(String),
    #[error("the offer's sizes add up to more than a u64")]
    SizeOverflow,
    #[error("the offer lists {0} twice")]
    Duplicate(String),
}

impl Manifest {
    /// An offer of one file.
    pub fn single(name: &str, size: u64) -> Manifest {
        Manifest {
            entries: vec![Entry {
                path: name.to_string(),
                size,
            }],
        }
    }

    /// Checks every entry; returns the total size.
    pub fn validate(&self) -> Result<u64, ManifestError> {
        if self.entries.is_empty() {
            return Err(ManifestError::Empty);
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries);
        }
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        let mut total: u64 = 0;
        for entry in &self.entries {
            check_path(&entry.path)?;
            if !seen.insert(entry.path.as_str()) {
                return Err(ManifestError::Duplicate(display(&entry.path)));
            }
            total = total
                .checked_add(entry.size)
                .ok_or(ManifestError::SizeOverflow)?;
        }
        Ok(total)
    }
}

/// Accepts only a relative path whose every component is an ordinary name.
pub fn check_path(path: &str) -> Result<(), ManifestError> {
    let unsafe_path = || ManifestError::UnsafePath(display(path));
    if path.is_empty() || path.len() > MAX_PATH {
        return Err(unsafe_path());
    }
    if path.contains('\0') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(unsafe_path());
    }
    for (i, component) in path.split('/').enumerate() {
        let drive_prefix = i == 0 && component.len() >= 2 && component.as_bytes()[1] == b':';
        if component.is_empty()
            || component == "."
            || component == ".."
            || component.len() > MAX_COMPONENT
            || drive_prefix
        {
            return Err(unsafe_path());
        }
    }
    Ok(())
}

/// Makes a name safe to print on a terminal: control characters (escape sequences included)
/// become `\u{..}` escapes, so a file name cannot move the cursor or rewrite the screen.
pub fn display(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}') {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(path: &str) -> Manifest {
        Manifest::single(path, 1)
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
            assert_eq!(one(ok).validate(), Ok(1), "{ok:?}");
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
    fn counts_and_sizes_are_bounded() {
        assert_eq!(
            Manifest { entries: vec![] }.validate(),
            Err(ManifestError::Empty)
        );
        let huge = Manifest {
            entries: vec![
                Entry {
                    path: "a".into(),
                    size: u64::MAX,
                },
                Entry {
                    path: "b".into(),
                    size: 1,
                },
            ],
        };
        assert_eq!(huge.validate(), Err(ManifestError::SizeOverflow));
        let dup = Manifest {
            entries: vec![
                Entry {
                    path: "a".into(),
                    size: 1,
                },
                Entry {
                    path: "a".into(),
                    size: 1,
                },
            ],
        };
        assert!(matches!(dup.validate(), Err(ManifestError::Duplicate(_))));
    }

    #[test]
    fn display_neutralises_terminal_escapes() {
        assert_eq!(display("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(display("bell\u{7}"), "bell\\u{7}");
        assert_eq!(display("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(display("plain ü.txt"), "plain ü.txt");
    }
}
