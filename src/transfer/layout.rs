//! Where received entries go, and how they get there without ever looking complete too early.
//!
//! Everything is written first into a staging folder beside the target,
//! `.mp-partial-<offer id>`, under the sender's names. Only when every file's hash has matched
//! are the top-level entries moved to their final names (one `rename` each). An interrupted
//! transfer leaves the staging folder behind; receiving the same offer into the same place
//! finds it again (the folder is named after the offer) and resumes from what it holds.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{fail, local_io, Kind};
use crate::protocol::manifest::{Kind as EntryKind, Manifest};
use crate::ui::shown;

/// Prefix of staging folder names.
pub const STAGING_PREFIX: &str = ".mp-partial-";

/// The receiver's plan for one offer.
#[derive(Debug)]
pub struct Layout {
    out_dir: PathBuf,
    /// A new name for the offer's single top-level entry (`-o newname`).
    rename: Option<OsString>,
    staging: PathBuf,
    /// Held while this receiver writes into the staging folder.
    lock: std::sync::OnceLock<std::fs::File>,
}

impl Layout {
    /// Plans where `manifest` goes for `-o output` (`None`: the current folder).
    pub fn plan(manifest: &Manifest, output: Option<&Path>) -> anyhow::Result<Layout> {
        let (out_dir, rename) = match output {
            None => (PathBuf::from("."), None),
            Some(path) if path.is_dir() => (path.to_path_buf(), None),
            Some(path) if manifest.roots().len() == 1 => {
                let name = path.file_name().ok_or_else(|| {
                    fail(Kind::Usage, format!("{} is not a usable name", shown(path)))
                })?;
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                (parent.to_path_buf(), Some(name.to_os_string()))
            }
            Some(path) => {
                return Err(fail(
                    Kind::Usage,
                    format!(
                        "{} is not a folder: several entries need an existing folder for -o",
                        shown(path)
                    ),
                ))
            }
        };
        if !out_dir.is_dir() {
            return Err(fail(
                Kind::LocalIo,
                format!("{} is not a folder", shown(&out_dir)),
            ));
        }
        // A stream cannot be resumed (its content is unknown up front): its staging folder
        // gets a name of its own, so two streams never share one.
        let id = if manifest.is_stream() {
            format!("stream-{:016x}", rand::random::<u64>())
        } else {
            manifest.id()
        };
        let staging = out_dir.join(format!("{STAGING_PREFIX}{id}"));
        Ok(Layout {
            out_dir,
            rename,
            staging,
            lock: std::sync::OnceLock::new(),
        })
    }

    /// The folder the entries go into.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The staging folder.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where the entry at `path` is written while the transfer runs.
    pub fn staged(&self, path: &str) -> PathBuf {
        self.staging.join(path)
    }

    /// Where the entry at `path` ends up.
    pub fn destination(&self, path: &str) -> PathBuf {
        let (root, rest) = match path.split_once('/') {
            Some((root, rest)) => (root, Some(rest)),
            None => (path, None),
        };
        let root = match &self.rename {
            Some(name) => self.out_dir.join(name),
            None => self.out_dir.join(root),
        };
        match rest {
            Some(rest) => root.join(rest),
            None => root,
        }
    }

    /// Refuses the offer if a top-level destination exists (unless `overwrite`), and always if
    /// it is a symbolic link to a folder that entries would be written through.
    pub fn check_free(&self, manifest: &Manifest, overwrite: bool) -> anyhow::Result<()> {
        for root in manifest.roots() {
            let destination = self.destination(root);
            let Ok(meta) = destination.symlink_metadata() else {
                continue;
            };
            if !overwrite {
                return Err(fail(
                    Kind::Exists,
                    format!(
                        "{} already exists (use --overwrite to replace it)",
                        shown(&destination)
                    ),
                ));
            }
            let is_folder_entry = manifest
                .entries
                .iter()
                .any(|e| e.path == root && e.kind == EntryKind::Dir);
            if is_folder_entry && meta.file_type().is_symlink() {
                return Err(fail(
                    Kind::Exists,
                    format!(
                        "{} is a symbolic link; refusing to write through it",
                        shown(&destination)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Prefixes kept by an earlier, interrupted transfer of the same offer: for each file
    /// entry with a non-empty staged copy no longer than announced, its index, length and
    /// the SHA-256 state after it. Reads those prefixes (on the calling thread).
    pub fn kept(&self, manifest: &Manifest) -> anyhow::Result<Vec<(usize, u64, Sha256)>> {
        if !is_real_dir(&self.staging) {
            return Ok(Vec::new());
        }
        let mut kept = Vec::new();
        for (index, entry) in manifest.entries.iter().enumerate() {
            let Some(size) = entry.size.filter(|_| entry.is_file()) else {
                continue;
            };
            let path = self.staged(&entry.path);
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if !meta.is_file() || meta.len() == 0 || meta.len() > size {
                continue;
            }
            let mut hasher = Sha256::new();
            let mut file = std::fs::File::open(&path)
                .map_err(|e| local_io(&format!("cannot read {}", shown(&path)), e))?;
            let copied = std::io::copy(&mut (&mut file).take(meta.len()), &mut hasher)
                .map_err(|e| local_io(&format!("cannot read {}", shown(&path)), e))?;
            kept.push((index, copied, hasher));
        }
        Ok(kept)
    }

    /// Creates (or takes back) the staging folder, locks it against another receiver, and
    /// creates every folder the offer needs inside it.
    ///
    /// The folder is private (0700) while it fills. An existing one is taken back only if it
    /// belongs to this user and nobody else can write into it: in a shared folder, another
    /// user could otherwise plant links in it to redirect our writes.
    pub fn prepare(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let cannot = |e| local_io(&format!("cannot create {}", shown(&self.staging)), e);
        let in_the_way = || {
            fail(
                Kind::LocalIo,
                format!("{} is in the way", shown(&self.staging)),
            )
        };
        match self.staging.symlink_metadata() {
            Ok(meta) if meta.is_dir() && is_private(&meta) => {}
            Ok(_) => return Err(in_the_way()),
            Err(_) => private_dir(&self.staging).map_err(cannot)?,
        }
        let lock = lock(&self.staging).map_err(cannot)?.ok_or_else(|| {
            fail(
                Kind::LocalIo,
                format!(
                    "another mp receive is writing into {}",
                    shown(&self.staging)
                ),
            )
        })?;
        let _ = self.lock.set(lock);
        for entry in &manifest.entries {
            let folder = match entry.kind {
                EntryKind::Dir => Some(entry.path.as_str()),
                EntryKind::File => entry.path.rsplit_once('/').map(|(parent, _)| parent),
            };
            let Some(folder) = folder else { continue };
            // One component at a time, never through anything but a real folder.
            let mut path = self.staging.clone();
            for component in folder.split('/') {
                path.push(component);
                match path.symlink_metadata() {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(in_the_way()),
                    Err(_) => private_dir(&path).map_err(cannot)?,
                }
            }
        }
        Ok(())
    }

    /// Moves every top-level entry to its destination, applies permissions, then removes the
    /// staging folder.
    ///
    /// Permissions are the sender's bits (or the usual defaults) less this process's umask, as
    /// `tar` does for a user: a sender cannot make files that others may write.
    pub fn finish(&self, manifest: &Manifest, overwrite: bool) -> anyhow::Result<()> {
        let mut created = std::collections::HashSet::new();
        for root in manifest.roots() {
            let from = self.staged(root);
            let to = self.destination(root);
            place(&from, &to, overwrite, &mut created)?;
        }
        let umask = umask();
        for entry in manifest.entries.iter().filter(|e| e.is_file()) {
            let mode = entry.mode.unwrap_or(0o666) & !umask;
            set_mode(&self.destination(&entry.path), mode)?;
        }
        // Folder permissions last and deepest first, so a read-only folder is filled first;
        // only for folders this transfer created.
        let mut dirs: Vec<_> = manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| (self.destination(&e.path), e.mode.unwrap_or(0o777) & !umask))
            .filter(|(path, _)| path.ancestors().any(|a| created.contains(a)))
            .collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mode) in dirs {
            set_mode(&path, mode)?;
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(())
    }

    /// Removes the staging folder if it holds no byte worth resuming from.
    pub fn remove_if_empty(&self) {
        fn has_bytes(dir: &Path) -> bool {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    e.file_type().is_ok_and(|t| {
                        (t.is_file() && e.metadata().is_ok_and(|m| m.len() > 0))
                            || (t.is_dir() && has_bytes(&e.path()))
                    })
                })
            })
        }
        if is_real_dir(&self.staging) && !has_bytes(&self.staging) {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }

    /// Flushes everything written into the staging folder to disk, in one call.
    pub fn sync_all(&self) -> anyhow::Result<()> {
        sync_filesystem(&self.staging)
            .map_err(|e| local_io(&format!("cannot flush {}", shown(&self.staging)), e))
    }

    /// Removes the staging folder and everything in it.
    pub fn discard_all(&self) {
        if is_real_dir(&self.staging) {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }

    /// Forgets a staged file that must not be resumed from (it failed its check).
    pub fn discard(&self, path: &str) {
        let _ = std::fs::remove_file(self.staged(path));
    }
}

/// Moves `from` to `to`; with `overwrite`, replaces files and merges into existing folders.
fn place(
    from: &Path,
    to: &Path,
    overwrite: bool,
    created: &mut std::collections::HashSet<PathBuf>,
) -> anyhow::Result<()> {
    let cannot = |e| local_io(&format!("cannot create {}", shown(to)), e);
    let existing = to.symlink_metadata().ok();
    match existing {
        None => {
            rename_no_replace(from, to).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => fail(
                    Kind::Exists,
                    format!("{} appeared while receiving; not replaced", shown(to)),
                ),
                _ => cannot(e),
            })?;
            created.insert(to.to_path_buf());
        }
        Some(_) if !overwrite => {
            return Err(fail(
                Kind::Exists,
                format!("{} appeared while receiving; not replaced", shown(to)),
            ))
        }
        Some(meta) => {
            let from_is_dir = from.symlink_metadata().map_err(cannot)?.is_dir();
            match (from_is_dir, meta.is_dir()) {
                (false, false) => std::fs::rename(from, to).map_err(cannot)?,
                (true, true) => {
                    let children = std::fs::read_dir(from).map_err(cannot)?;
                    for child in children {
                        let child = child.map_err(cannot)?;
                        place(&child.path(), &to.join(child.file_name()), true, created)?;
                    }
                }
                (true, false) if meta.file_type().is_symlink() => {
                    return Err(fail(
                        Kind::Exists,
                        format!(
                            "{} is a symbolic link; refusing to write through it",
                            shown(to)
                        ),
                    ))
                }
                _ => {
                    return Err(fail(
                        Kind::Exists,
                        format!(
                            "{} exists and is not the same kind (file or folder)",
                            shown(to)
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Flushes the file system holding `dir` (Linux: one `syncfs` call for any number of files).
#[cfg(target_os = "linux")]
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: syncfs on a descriptor that `handle` keeps open for the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere: every file one by one.
#[cfg(not(target_os = "linux"))]
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_filesystem(&entry.path())?;
        } else if entry.file_type()?.is_file() {
            std::fs::File::open(entry.path())?.sync_data()?;
        }
    }
    Ok(())
}

/// Renames, failing if `to` exists (even if it appeared a moment ago).
#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths, relative to the current directory.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // File systems without RENAME_NOREPLACE: fall back to a checked rename.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => checked_rename(from, to),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    checked_rename(from, to)
}

fn checked_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// Creates a folder only this user can enter.
fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Owned by this user, and nobody else may write into it.
#[cfg(unix)]
fn is_private(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn is_private(_meta: &std::fs::Metadata) -> bool {
    true
}

/// Takes an exclusive lock on the folder; `None` if another process holds it.
#[cfg(unix)]
fn lock(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: flock on a descriptor that `handle` keeps open.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(handle));
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock => Ok(None),
        _ => Err(err),
    }
}

#[cfg(not(unix))]
fn lock(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    std::fs::File::open(dir).map(Some)
}

/// This process's umask (Linux reports it in /proc; elsewhere the common 022 is assumed).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn is_real_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| local_io(&format!("cannot set permissions of {}", shown(path)), e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::manifest::Entry;

    fn tree() -> Manifest {
        Manifest {
            entries: vec![
                Entry::dir("photos"),
                Entry::file("photos/a.jpg", 3),
                Entry::dir("photos/empty"),
                Entry::file("notes.txt", 2),
            ],
        }
    }

    #[test]
    fn destinations_follow_the_sender_names_or_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::plan(&tree(), Some(dir.path())).unwrap();
        assert_eq!(
            layout.destination("photos/a.jpg"),
            dir.path().join("photos/a.jpg")
        );
        assert!(layout.staging().to_string_lossy().contains(STAGING_PREFIX));

        let single = Manifest::single("report.pdf", 1);
        let renamed = Layout::plan(&single, Some(&dir.path().join("mine.pdf"))).unwrap();
        assert_eq!(
            renamed.destination("report.pdf"),
            dir.path().join("mine.pdf")
        );
        assert!(Layout::plan(&tree(), Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn a_full_cycle_stages_then_places_everything() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        layout.check_free(&manifest, false).unwrap();
        layout.prepare(&manifest).unwrap();
        std::fs::write(layout.staged("photos/a.jpg"), b"abc").unwrap();
        std::fs::write(layout.staged("notes.txt"), b"hi").unwrap();
        layout.finish(&manifest, false).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("photos/a.jpg")).unwrap(),
            b"abc"
        );
        assert!(dir.path().join("photos/empty").is_dir());
        assert!(!layout.staging().exists());
        // Now everything exists.
        assert!(layout.check_free(&manifest, false).is_err());
        assert!(layout.check_free(&manifest, true).is_ok());
    }

    #[test]
    fn kept_prefixes_are_found_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        assert!(layout.kept(&manifest).unwrap().is_empty());
        layout.prepare(&manifest).unwrap();
        std::fs::write(layout.staged("photos/a.jpg"), b"ab").unwrap();
        std::fs::write(layout.staged("notes.txt"), b"too long").unwrap();
        let kept = layout.kept(&manifest).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].0, kept[0].1), (1, 2));
        assert_eq!(
            kept[0].2.clone().finalize(),
            Sha256::digest(b"ab"),
            "hash state covers the prefix"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_folders_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("photos")).unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        assert!(layout.check_free(&manifest, true).is_err());
        layout.prepare(&manifest).unwrap();
        std::fs::write(layout.staged("photos/a.jpg"), b"abc").unwrap();
        std::fs::write(layout.staged("notes.txt"), b"hi").unwrap();
        assert!(layout.finish(&manifest, true).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_staging_folder_others_can_write_into_is_not_taken_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        std::fs::create_dir(layout.staging()).unwrap();
        std::fs::set_permissions(layout.staging(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = layout.prepare(&manifest).unwrap_err().to_string();
        assert!(err.contains("in the way"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn links_planted_in_the_staging_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        private_dir(layout.staging()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), layout.staged("photos")).unwrap();
        assert!(layout.prepare(&manifest).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn two_receivers_cannot_share_a_staging_folder() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let first = Layout::plan(&manifest, Some(dir.path())).unwrap();
        let second = Layout::plan(&manifest, Some(dir.path())).unwrap();
        first.prepare(&manifest).unwrap();
        let err = second.prepare(&manifest).unwrap_err().to_string();
        assert!(err.contains("another mp receive"), "{err}");
        drop(first);
        second.prepare(&manifest).unwrap();
    }

    #[test]
    fn streams_never_share_a_staging_folder() {
        let dir = tempfile::tempdir().unwrap();
        let stream = Manifest {
            entries: vec![Entry {
                size: None,
                ..Entry::file("stdin", 0)
            }],
        };
        let a = Layout::plan(&stream, Some(dir.path())).unwrap();
        let b = Layout::plan(&stream, Some(dir.path())).unwrap();
        assert_ne!(a.staging(), b.staging());
    }

    #[cfg(unix)]
    #[test]
    fn the_senders_permissions_are_masked_by_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            entries: vec![Entry {
                mode: Some(0o777),
                ..Entry::file("open.sh", 1)
            }],
        };
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        layout.prepare(&manifest).unwrap();
        std::fs::write(layout.staged("open.sh"), b"x").unwrap();
        layout.finish(&manifest, false).unwrap();
        let mode = std::fs::metadata(dir.path().join("open.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777 & !umask());
        assert_eq!(mode & 0o022 & umask(), 0, "nothing the umask forbids");
    }
}
