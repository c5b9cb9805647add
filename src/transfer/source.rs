//! What `mp send` offers: files and folders on disk turned into a manifest, or stdin.
//!
//! Folders are walked without following symbolic links: a link inside a sent folder is skipped
//! (and reported), so nothing outside the folder is ever sent by accident. A link named on the
//! command line is followed, like `cp` does.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{fail, local_io, Kind};
use crate::protocol::manifest::{display, Entry, Manifest, MAX_ENTRIES, MODE_MASK};

/// Where the bytes of each file entry come from.
pub enum Origin {
    /// A file named on the command line (a symbolic link to it is followed, like `cp`).
    Path(PathBuf),
    /// A file found inside a sent folder: opened without following a link, and only if it
    /// is still a regular file, in case it was swapped after the walk.
    Walked(PathBuf),
    /// Standard input, read once until EOF.
    Stdin,
}

/// The offer and where each file's bytes come from.
pub struct Source {
    pub manifest: Manifest,
    /// One per manifest entry; `None` for folders.
    pub origins: Vec<Option<Origin>>,
    /// Symbolic links (and other special files) found inside folders and left out.
    pub skipped: Vec<String>,
}

impl Source {
    /// Reads standard input as one stream named `name`.
    pub fn stdin(name: &str) -> anyhow::Result<Source> {
        crate::protocol::manifest::check_path(name)
            .ok()
            .filter(|_| !name.contains('/'))
            .ok_or_else(|| {
                fail(
                    Kind::Usage,
                    format!("--name {name:?} is not a plain file name"),
                )
            })?;
        Ok(Source {
            manifest: Manifest {
                entries: vec![Entry {
                    size: None,
                    ..Entry::file(name, 0)
                }],
            },
            origins: vec![Some(Origin::Stdin)],
            skipped: Vec::new(),
        })
    }

    /// Walks the given files and folders. A name inside a folder that the receiver would
    /// refuse (a control character, say) stops the walk with a message that names it, or is
    /// left out (with a warning) when `skip_unsafe`.
    pub fn paths(paths: &[PathBuf], skip_unsafe: bool) -> anyhow::Result<Source> {
        let mut source = Source {
            manifest: Manifest {
                entries: Vec::new(),
            },
            origins: Vec::new(),
            skipped: Vec::new(),
        };
        let mut roots = HashSet::new();
        let mut walker = Walker { skip_unsafe };
        for path in paths {
            let meta = std::fs::metadata(path)
                .map_err(|e| local_io(&format!("cannot read {}", path.display()), e))?;
            let name = root_name(path)?;
            if !roots.insert(name.clone()) {
                return Err(fail(
                    Kind::Usage,
                    format!("two of the given paths are both named {}", display(&name)),
                ));
            }
            if meta.is_dir() {
                source.push(Entry::dir(&name), &meta, None);
                walker.walk(&mut source, path, &name)?;
            } else if meta.is_file() {
                source.push(
                    Entry::file(&name, meta.len()),
                    &meta,
                    Some(Origin::Path(path.clone())),
                );
            } else {
                return Err(fail(
                    Kind::Usage,
                    format!("{} is neither a file nor a folder", path.display()),
                ));
            }
        }
        Ok(source)
    }

    fn push(&mut self, mut entry: Entry, meta: &std::fs::Metadata, origin: Option<Origin>) {
        entry.mode = mode(meta);
        self.manifest.entries.push(entry);
        self.origins.push(origin);
    }
}

/// How a folder is walked.
struct Walker {
    skip_unsafe: bool,
}

impl Walker {
    fn walk(&mut self, source: &mut Source, dir: &Path, prefix: &str) -> anyhow::Result<()> {
        let unreadable = |e| local_io(&format!("cannot read {}", dir.display()), e);
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            if source.manifest.entries.len() > MAX_ENTRIES {
                return Err(fail(
                    Kind::Usage,
                    format!("too many files (at most {MAX_ENTRIES} per transfer)"),
                ));
            }
            let path = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_string) else {
                source
                    .skipped
                    .push(format!("{} (name is not UTF-8)", crate::ui::shown(&path)));
                continue;
            };
            let relative = format!("{prefix}/{name}");
            if let Err(why) = crate::protocol::manifest::check_path(&relative) {
                if self.skip_unsafe {
                    source.skipped.push(format!(
                        "{} (a name the receiver would refuse)",
                        display(&relative)
                    ));
                    continue;
                }
                return Err(fail(
                    Kind::Usage,
                    format!(
                        "cannot send {}: the receiver would refuse this name ({why}); rename \
                         it, or leave it out with --skip-unsafe",
                        display(&relative)
                    ),
                ));
            }
            // symlink_metadata: a link is reported as a link, never followed.
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| local_io(&format!("cannot read {}", path.display()), e))?;
            if meta.is_dir() {
                source.push(Entry::dir(&relative), &meta, None);
                self.walk(source, &path, &relative)?;
            } else if meta.is_file() {
                let origin = Some(Origin::Walked(path));
                source.push(Entry::file(&relative, meta.len()), &meta, origin);
            } else {
                let what = if meta.file_type().is_symlink() {
                    "symbolic link"
                } else {
                    "special file"
                };
                source
                    .skipped
                    .push(format!("{} ({what})", display(&relative)));
            }
        }
        Ok(())
    }
}

/// The name a path is offered under: its last component.
fn root_name(path: &Path) -> anyhow::Result<String> {
    // `dir/.` and `dir/` name the folder itself.
    let canonical;
    let path = if path.file_name().is_none() || path.ends_with(".") {
        canonical = path
            .canonicalize()
            .map_err(|e| local_io(&format!("cannot read {}", path.display()), e))?;
        canonical.as_path()
    } else {
        path
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        fail(
            Kind::Usage,
            format!("{} has no usable UTF-8 name", path.display()),
        )
    })?;
    Ok(name.to_string())
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & MODE_MASK)
}

#[cfg(not(unix))]
fn mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_name_the_receiver_would_refuse_is_named_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("d");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("bad\nname"), b"x").unwrap();
        std::fs::write(root.join("ok"), b"y").unwrap();
        let refused = Source::paths(std::slice::from_ref(&root), false)
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("d/bad\\u{a}name"), "{refused}");
        assert!(refused.contains("--skip-unsafe"), "{refused}");
        let source = Source::paths(&[root], true).unwrap();
        let paths: Vec<&str> = source
            .manifest
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(paths, ["d", "d/ok"]);
        assert_eq!(source.skipped.len(), 1);
    }

    #[test]
    fn walks_a_tree_in_a_stable_order_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub/empty")).unwrap();
        std::fs::write(root.join("b.txt"), b"bb").unwrap();
        std::fs::write(root.join("sub/a.txt"), b"a").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let source = Source::paths(&[root], false).unwrap();
        let paths: Vec<&str> = source
            .manifest
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "tree",
                "tree/b.txt",
                "tree/sub",
                "tree/sub/a.txt",
                "tree/sub/empty"
            ]
        );
        assert!(source.manifest.validate().is_ok());
        #[cfg(unix)]
        assert_eq!(source.skipped, ["tree/link (symbolic link)"]);
    }

    #[test]
    fn two_roots_with_one_name_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("x"), b"1").unwrap();
        std::fs::write(b.path().join("x"), b"2").unwrap();
        assert!(Source::paths(&[a.path().join("x"), b.path().join("x")], false).is_err());
    }

    #[test]
    fn stdin_names_must_be_plain() {
        assert!(Source::stdin("data.tar").is_ok());
        assert!(Source::stdin("../x").is_err());
        assert!(Source::stdin("a/b").is_err());
    }
}
