//! Where received entries go, and how they get there without ever looking complete too early.
//!
//! Everything is written first into a staging folder beside the target,
//! `.mp-partial-<offer id>`, under the sender's names. Only when every file's hash has matched
//! are the top-level entries moved to their final names (one `rename` each). An interrupted
//! transfer leaves the staging folder behind; receiving the same offer into the same place
//! finds it again (the folder is named after the offer) and resumes from what it holds.
//!
//! The target folder may be shared with other users. So, once [`Layout::prepare`] has made (or
//! taken back) the staging folder, every step goes through a handle on it, opened without
//! following a link: renaming the folder away or putting a link in its place redirects nothing.
//! Inside, each path is walked one folder at a time, never through a link, and permissions are
//! applied to open files and folders (`fchmod`), never by a path that someone else could have
//! pointed elsewhere meanwhile.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::{fail, local_io, Failure, Kind};
use crate::protocol::manifest::{display_start, Kind as EntryKind, Manifest};
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
    /// The staging folder, opened without following a link and locked against another
    /// receiver by [`Layout::prepare`]; every later step goes through it.
    handle: OnceLock<Folder>,
    /// What the user should know before accepting (see [`Layout::warnings`]).
    warnings: Vec<String>,
}

impl Layout {
    /// Plans where `manifest` goes for `-o output` (`None`: the current folder).
    ///
    /// Refuses (as [`Kind::Usage`]) an offer whose longest path would pass this system's
    /// `PATH_MAX` under the staging folder or at its destination: the manifest's own limit
    /// leaves room for an ordinary folder, not for any.
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
        match std::fs::metadata(&out_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(fail(
                    Kind::Usage,
                    format!("{} is not a folder", shown(&out_dir)),
                ))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::new(
                    Kind::LocalIo,
                    format!(
                        "the folder {} does not exist: create it, or choose another with -o",
                        shown(&out_dir)
                    ),
                )
                .caused_by(err)
                .into())
            }
            Err(err) => return Err(local_io(&format!("cannot use {}", shown(&out_dir)), err)),
        }
        // A stream cannot be resumed (its content is unknown up front): its staging folder
        // gets a name of its own, so two streams never share one.
        let id = if manifest.is_stream() {
            format!("stream-{:016x}", rand::random::<u64>())
        } else {
            manifest.id()
        };
        let staging = out_dir.join(format!("{STAGING_PREFIX}{id}"));
        let warnings = shared_folder_warning(&out_dir).into_iter().collect();
        let layout = Layout {
            out_dir,
            rename,
            staging,
            handle: OnceLock::new(),
            warnings,
        };
        layout.check_lengths(manifest)?;
        Ok(layout)
    }

    /// What the user should be told before accepting. For now one case: every user may write
    /// into the target folder and it is not sticky (`chmod +t`), so another user could rename,
    /// replace or remove what is received there. mp's own steps are not redirected (see the
    /// module notes), but what it leaves there is not safe from them.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn check_lengths(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let Some(longest) = manifest.entries.iter().max_by_key(|e| e.path.len()) else {
            return Ok(());
        };
        let bytes = |p: PathBuf| p.into_os_string().len();
        let length = bytes(self.staged(&longest.path)).max(bytes(self.destination(&longest.path)));
        if length >= PATH_MAX {
            return Err(fail(
                Kind::Usage,
                format!(
                    "{} would be a path of {length} bytes in {}, more than this system takes \
                     ({}); receive into a folder with a shorter path",
                    display_start(&longest.path),
                    shown(&self.out_dir),
                    PATH_MAX - 1
                ),
            ));
        }
        Ok(())
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
            let kind = meta.file_type();
            if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
                // A device, a FIFO or a socket: never replaced, not even with --overwrite.
                return Err(fail(
                    Kind::Usage,
                    format!(
                        "{} is not a regular file or folder, and mp never replaces one; to \
                         write the data to standard output, use -o - (e.g. -o - > {})",
                        shown(&destination),
                        shown(&destination)
                    ),
                ));
            }
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

    /// Bytes an earlier, interrupted transfer of the same offer left in the staging folder (the
    /// lengths only, nothing is read): what a resume would not need to receive again.
    pub fn kept_bytes(&self, manifest: &Manifest) -> u64 {
        manifest
            .entries
            .iter()
            .filter_map(|entry| {
                let size = entry.size.filter(|_| entry.is_file())?;
                let meta = self.staged(&entry.path).symlink_metadata().ok()?;
                (meta.is_file() && meta.len() <= size).then_some(meta.len())
            })
            .sum()
    }

    /// Checks, before anyone says yes, that the target folder can take `needed` more bytes: it
    /// is writable by this user and its file system has that much room.
    pub fn check_room(&self, needed: u64) -> anyhow::Result<()> {
        let folder = shown(&self.out_dir);
        #[cfg(unix)]
        {
            use rustix::fs::{access, statvfs, Access};
            if let Err(err) = access(&self.out_dir, Access::WRITE_OK | Access::EXEC_OK) {
                return Err(local_io(
                    &format!("cannot write into {folder}"),
                    std::io::Error::from(err),
                ));
            }
            if let Ok(stats) = statvfs(&self.out_dir) {
                let free = stats.f_bavail.saturating_mul(stats.f_frsize);
                if free < needed {
                    let short = std::io::Error::from(std::io::ErrorKind::StorageFull);
                    return Err(crate::error::Failure::new(
                        Kind::LocalIo,
                        format!(
                            "not enough room in {folder}: the offer needs {}, {} is free",
                            crate::ui::size(needed),
                            crate::ui::size(free)
                        ),
                    )
                    .caused_by(short)
                    .into());
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (needed, folder);
        Ok(())
    }

    /// Prefixes kept by an earlier, interrupted transfer of the same offer: for each file
    /// entry with a non-empty staged copy no longer than announced, its index, length and
    /// the SHA-256 state after it. Reads those prefixes (on the calling thread).
    pub fn kept(&self, manifest: &Manifest) -> anyhow::Result<Vec<(usize, u64, Sha256)>> {
        let Some(staging) = self.folder() else {
            return Ok(Vec::new());
        };
        let mut kept = Vec::new();
        for (index, entry) in manifest.entries.iter().enumerate() {
            let Some(size) = entry.size.filter(|_| entry.is_file()) else {
                continue;
            };
            let Ok(mut file) = staging.open_file(Path::new(&entry.path), Access::Read) else {
                continue;
            };
            let path = self.staged(&entry.path);
            let cannot = |e| local_io(&format!("cannot read {}", shown(&path)), e);
            let meta = file.metadata().map_err(cannot)?;
            if !meta.is_file() || meta.len() == 0 || meta.len() > size {
                continue;
            }
            let mut hasher = Sha256::new();
            let copied =
                std::io::copy(&mut (&mut file).take(meta.len()), &mut hasher).map_err(cannot)?;
            kept.push((index, copied, hasher));
        }
        Ok(kept)
    }

    /// Creates (or takes back) the staging folder, locks it against another receiver, and
    /// creates every folder the offer needs inside it.
    ///
    /// The folder is private (0700) while it fills, and so is every folder in it (the
    /// sender's permissions are applied by [`Layout::finish`]). An existing one is taken back
    /// only if it is a real folder that belongs to this user and nobody else can write into:
    /// in a shared folder, another user could otherwise plant links in it to redirect our
    /// writes.
    pub fn prepare(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let cannot = |e| local_io(&format!("cannot create {}", shown(&self.staging)), e);
        let in_the_way =
            |path: &Path| fail(Kind::LocalIo, format!("{} is in the way", shown(path)));
        let staging = match self.handle.get() {
            Some(held) => held,
            None => {
                match self.staging.symlink_metadata() {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(in_the_way(&self.staging)),
                    Err(_) => private_dir(&self.staging).map_err(cannot)?,
                }
                let folder = Folder::open_private(&self.staging).map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => in_the_way(&self.staging),
                    _ => cannot(e),
                })?;
                if !folder.lock().map_err(cannot)? {
                    return Err(fail(
                        Kind::LocalIo,
                        format!(
                            "another mp receive is writing into {}",
                            shown(&self.staging)
                        ),
                    ));
                }
                self.handle.get_or_init(|| folder)
            }
        };
        // Each folder once, parents first, never through anything but a real folder.
        let mut made = HashSet::new();
        for entry in &manifest.entries {
            let folder = match entry.kind {
                EntryKind::Dir => Some(entry.path.as_str()),
                EntryKind::File => entry.path.rsplit_once('/').map(|(parent, _)| parent),
            };
            let Some(folder) = folder else { continue };
            if made.contains(folder) {
                continue;
            }
            let ends = folder.match_indices('/').map(|(i, _)| i);
            for end in ends.chain([folder.len()]) {
                let prefix = &folder[..end];
                if !made.insert(prefix) {
                    continue;
                }
                let rel = Path::new(prefix);
                let cannot =
                    |e| local_io(&format!("cannot create {}", shown(&self.staged(prefix))), e);
                match staging.create_dir(rel) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(cannot(e))
                    }
                    _ => {}
                }
                match staging.find(rel).map_err(cannot)? {
                    Some(Found::Dir) => {}
                    _ => return Err(in_the_way(&self.staged(prefix))),
                }
            }
        }
        Ok(())
    }

    /// Opens the staged file of the entry at `path` for writing: created private (0600) if
    /// missing, kept as it is otherwise (the caller truncates to what it resumes from).
    ///
    /// Goes through the staging folder's handle and never follows a link, unlike opening
    /// [`Layout::staged`] by its path. Fails if [`Layout::prepare`] has not run.
    pub fn create_staged(&self, path: &str) -> std::io::Result<File> {
        let staging = self
            .handle
            .get()
            .ok_or_else(|| std::io::Error::other("the staging folder was not prepared"))?;
        staging.open_file(Path::new(path), Access::Write)
    }

    /// Applies permissions, moves every top-level entry to its destination, then removes the
    /// staging folder.
    ///
    /// Permissions are the sender's bits (or the usual defaults) less this process's umask, as
    /// `tar` does for a user: a sender cannot make files that others may write. They are set on
    /// the staged files and folders, through open handles, before anything is moved; only
    /// those that would take this user's own access away (a read-only file or folder) wait
    /// until everything is in place, and are then set on the very files and folders moved,
    /// reached without following a link and checked to be the same (device and inode). So
    /// nothing is ever changed by a path someone else could point at another file. Folders
    /// that already existed (`overwrite` merges into them) keep their permissions.
    pub fn finish(&self, manifest: &Manifest, overwrite: bool) -> anyhow::Result<()> {
        let staging = self.folder().ok_or_else(|| {
            fail(
                Kind::LocalIo,
                format!("{} is missing or not private", shown(&self.staging)),
            )
        })?;
        let out = Folder::open(&self.out_dir)
            .map_err(|e| local_io(&format!("cannot open {}", shown(&self.out_dir)), e))?;
        let later = self.set_modes_staged(&staging, manifest)?;
        let created = self.place_all(&staging, &out, manifest, overwrite)?;
        self.set_modes_placed(&out, later, &created)?;
        drop(staging);
        self.remove_staging();
        Ok(())
    }

    /// Sets the permissions of every staged entry, except those that would take this user's
    /// own access away: returned, to be set once placed.
    fn set_modes_staged(
        &self,
        staging: &Folder,
        manifest: &Manifest,
    ) -> anyhow::Result<Vec<Later>> {
        let umask = umask();
        let mut later = Vec::new();
        for entry in &manifest.entries {
            let (mode, own) = match entry.kind {
                EntryKind::File => (entry.mode.unwrap_or(0o666) & !umask, 0o600),
                EntryKind::Dir => (entry.mode.unwrap_or(0o777) & !umask, 0o700),
            };
            let staged = self.staged(&entry.path);
            let handle = staging.open_entry(Path::new(&entry.path), entry.kind, &staged)?;
            if mode & own == own {
                set_mode(&handle, mode, &staged)?;
            } else {
                later.push(Later {
                    to: self.destination_rel(&entry.path),
                    kind: entry.kind,
                    mode,
                    identity: identity(&handle, &staged)?,
                });
            }
        }
        Ok(later)
    }

    /// Moves every top-level entry; returns what was created (relative to the target).
    fn place_all(
        &self,
        staging: &Folder,
        out: &Folder,
        manifest: &Manifest,
        overwrite: bool,
    ) -> anyhow::Result<HashSet<PathBuf>> {
        let mut created = HashSet::new();
        for root in manifest.roots() {
            let from = PathBuf::from(root);
            let to = self.destination_rel(root);
            self.place(staging, out, &from, &to, overwrite, &mut created)?;
        }
        Ok(created)
    }

    /// Sets the permissions left for after placing, on the very entries moved: reached from
    /// the target without following a link, and checked to be the same file or folder.
    fn set_modes_placed(
        &self,
        out: &Folder,
        mut later: Vec<Later>,
        created: &HashSet<PathBuf>,
    ) -> anyhow::Result<()> {
        // Folders only if this transfer created them; deepest first, so a read-only folder is
        // reached before it closes.
        later
            .retain(|l| l.kind == EntryKind::File || l.to.ancestors().any(|a| created.contains(a)));
        later.sort_by_key(|l| std::cmp::Reverse(l.to.components().count()));
        for Later {
            to,
            kind,
            mode,
            identity: placed,
        } in later
        {
            let destination = self.out_dir.join(&to);
            let handle = out.open_entry(&to, kind, &destination)?;
            if identity(&handle, &destination)? != placed {
                return Err(fail(
                    Kind::LocalIo,
                    format!(
                        "{} was replaced while being received; its permissions were not set",
                        shown(&destination)
                    ),
                ));
            }
            set_mode(&handle, mode, &destination)?;
        }
        Ok(())
    }

    /// Removes the staging folder if it holds no byte worth resuming from.
    pub fn remove_if_empty(&self) {
        if self
            .folder()
            .is_some_and(|staging| !staging.has_bytes(Path::new("")))
        {
            self.remove_staging();
        }
    }

    /// Flushes everything written into the staging folder to disk, in one call.
    pub fn sync_all(&self) -> anyhow::Result<()> {
        let cannot = |e| local_io(&format!("cannot flush {}", shown(&self.staging)), e);
        let staging = self
            .folder()
            .ok_or_else(|| cannot(std::io::ErrorKind::NotFound.into()))?;
        staging.sync_filesystem().map_err(cannot)
    }

    /// Removes the whole staging folder of this offer and everything in it, whatever it holds:
    /// for a transfer that must not be resumed (a stream, a protocol violation, a full disk).
    ///
    /// Only this user's private staging folder is emptied, through its handle (never through
    /// a link, nor a folder put in its place); its now empty folder is then removed by name.
    /// Does nothing if there is no such folder, or if another receiver holds its lock. Errors
    /// are ignored: what is left is at worst a staging folder that a later receive of the same
    /// offer takes back, or that can be deleted by hand.
    pub fn discard_all(&self) {
        self.remove_staging();
    }

    /// Forgets a staged file that must not be resumed from (it failed its check).
    pub fn discard(&self, path: &str) {
        if let Some(staging) = self.folder() {
            let _ = staging.remove_file(Path::new(path));
        }
    }

    /// The entry at `path` relative to the target folder (see [`Layout::destination`]).
    fn destination_rel(&self, path: &str) -> PathBuf {
        let (root, rest) = match path.split_once('/') {
            Some((root, rest)) => (root, Some(rest)),
            None => (path, None),
        };
        let mut rel = match &self.rename {
            Some(name) => PathBuf::from(name),
            None => PathBuf::from(root),
        };
        if let Some(rest) = rest {
            rel.push(rest);
        }
        rel
    }

    /// The staging folder's handle: the one [`Layout::prepare`] locked, else a new one if the
    /// folder exists, is private, and no other receiver holds its lock.
    fn folder(&self) -> Option<Held<'_>> {
        match self.handle.get() {
            Some(held) => Some(Held::Borrowed(held)),
            // Locked too, so as not to touch what another receiver is writing.
            None => Folder::open_private(&self.staging)
                .ok()
                .filter(|folder| folder.lock().unwrap_or(false))
                .map(Held::Owned),
        }
    }

    fn remove_staging(&self) {
        if let Some(staging) = self.folder() {
            let _ = staging.empty(Path::new(""));
            let _ = std::fs::remove_dir(&self.staging);
        }
    }

    /// Moves `from` (in the staging folder) to `to` (in the target); with `overwrite`, replaces
    /// files and merges into existing folders.
    fn place(
        &self,
        staging: &Folder,
        out: &Folder,
        from: &Path,
        to: &Path,
        overwrite: bool,
        created: &mut HashSet<PathBuf>,
    ) -> anyhow::Result<()> {
        let shown_to = self.out_dir.join(to);
        let cannot = |e| local_io(&format!("cannot create {}", shown(&shown_to)), e);
        let appeared = || {
            fail(
                Kind::Exists,
                format!(
                    "{} appeared while receiving; not replaced",
                    shown(&shown_to)
                ),
            )
        };
        match out.find(to).map_err(cannot)? {
            None => {
                staging
                    .rename(from, out, to, false)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => appeared(),
                        _ => cannot(e),
                    })?;
                created.insert(to.to_path_buf());
            }
            Some(_) if !overwrite => return Err(appeared()),
            Some(existing) => {
                let from_is_dir = staging.find(from).map_err(cannot)? == Some(Found::Dir);
                match (from_is_dir, existing) {
                    (false, Found::Link | Found::Other) => {
                        staging.rename(from, out, to, true).map_err(cannot)?
                    }
                    (true, Found::Dir) => {
                        for child in staging.children(from).map_err(cannot)? {
                            let (from, to) = (from.join(&child), to.join(&child));
                            self.place(staging, out, &from, &to, true, created)?;
                        }
                    }
                    (true, Found::Link) => {
                        return Err(fail(
                            Kind::Exists,
                            format!(
                                "{} is a symbolic link; refusing to write through it",
                                shown(&shown_to)
                            ),
                        ))
                    }
                    _ => {
                        return Err(fail(
                            Kind::Exists,
                            format!(
                                "{} exists and is not the same kind (file or folder)",
                                shown(&shown_to)
                            ),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Longest path the system takes, with its NUL (`PATH_MAX`).
#[cfg(unix)]
const PATH_MAX: usize = libc::PATH_MAX as usize;
#[cfg(not(unix))]
const PATH_MAX: usize = 32_767;

/// A warning if every user may write into `dir` and it is not sticky.
#[cfg(unix)]
fn shared_folder_warning(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(dir).ok()?.mode();
    (mode & 0o002 != 0 && mode & 0o1000 == 0).then(|| {
        format!(
            "every user may write into {} and it is not sticky (chmod +t): another user could \
             rename or replace what is received there",
            shown(dir)
        )
    })
}

#[cfg(not(unix))]
fn shared_folder_warning(_dir: &Path) -> Option<String> {
    None
}

/// Permissions to set once an entry is placed.
struct Later {
    /// Where, relative to the target folder.
    to: PathBuf,
    kind: EntryKind,
    mode: u32,
    /// Which file or folder was moved there.
    identity: Identity,
}

#[cfg(unix)]
type Identity = (u64, u64);
#[cfg(not(unix))]
type Identity = ();

/// What is found at a path, without following a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    Dir,
    Link,
    /// A file, or anything else that is neither a folder nor a link.
    Other,
}

/// How [`Folder::open_file`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    /// Write, creating a private (0600) file if missing; never truncates.
    Write,
}

/// A folder's handle, held or borrowed.
enum Held<'a> {
    Borrowed(&'a Folder),
    Owned(Folder),
}

impl std::ops::Deref for Held<'_> {
    type Target = Folder;

    fn deref(&self) -> &Folder {
        match self {
            Held::Borrowed(folder) => folder,
            Held::Owned(folder) => folder,
        }
    }
}

/// An open folder; every path given to its methods is relative to it, walked one component
/// at a time, and never followed through a symbolic link (on Unix; elsewhere, plain paths).
#[derive(Debug)]
struct Folder {
    #[cfg(unix)]
    handle: File,
    #[cfg(not(unix))]
    path: PathBuf,
}

impl Folder {
    /// Opens the staging folder at `path` if it is a real folder (not a link) that belongs to
    /// this user and that nobody else can write into; `InvalidData` if it is not.
    fn open_private(path: &Path) -> std::io::Result<Folder> {
        let folder = Folder::open_no_link(path)?;
        match is_private(&folder.metadata()?) {
            true => Ok(folder),
            false => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    /// Opens the entry at `rel` as a file or a folder, as `kind` says; names `shown_as` in
    /// errors.
    fn open_entry(&self, rel: &Path, kind: EntryKind, shown_as: &Path) -> anyhow::Result<File> {
        let in_the_way = || fail(Kind::LocalIo, format!("{} is in the way", shown(shown_as)));
        let opened = match kind {
            EntryKind::File => self.open_file(rel, Access::Read),
            EntryKind::Dir => self.open_dir(rel),
        };
        let handle = opened.map_err(|e| match is_link_error(&e) {
            true => in_the_way(),
            false => local_io(&format!("cannot open {}", shown(shown_as)), e),
        })?;
        let meta = handle
            .metadata()
            .map_err(|e| local_io(&format!("cannot open {}", shown(shown_as)), e))?;
        match (kind, meta.is_file(), meta.is_dir()) {
            (EntryKind::File, true, _) | (EntryKind::Dir, _, true) => Ok(handle),
            _ => Err(in_the_way()),
        }
    }

    /// True if a file under `rel` (a folder, or "" for this one) holds at least one byte.
    fn has_bytes(&self, rel: &Path) -> bool {
        self.children(rel).is_ok_and(|children| {
            children.iter().any(|child| {
                let path = rel.join(child);
                match self.find(&path) {
                    Ok(Some(Found::Dir)) => self.has_bytes(&path),
                    Ok(Some(Found::Other)) => self
                        .open_file(&path, Access::Read)
                        .and_then(|f| f.metadata())
                        .is_ok_and(|m| m.is_file() && m.len() > 0),
                    _ => false,
                }
            })
        })
    }

    /// Removes everything under `rel` (a folder, or "" for this one), but not `rel` itself.
    fn empty(&self, rel: &Path) -> std::io::Result<()> {
        for child in self.children(rel)? {
            let path = rel.join(child);
            if self.find(&path)? == Some(Found::Dir) {
                self.empty(&path)?;
                self.remove_dir(&path)?;
            } else {
                self.remove_file(&path)?;
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
impl Folder {
    /// Opens the folder at `path`, following links: the receiver's own choice of folder.
    fn open(path: &Path) -> std::io::Result<Folder> {
        use rustix::fs::{Mode, OFlags, CWD};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let handle = File::from(rustix::fs::openat(CWD, path, flags, Mode::empty())?);
        Ok(Folder { handle })
    }

    /// Opens the folder at `path`, which must not be a link itself.
    fn open_no_link(path: &Path) -> std::io::Result<Folder> {
        use rustix::fs::{Mode, OFlags, CWD};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handle = File::from(rustix::fs::openat(CWD, path, flags, Mode::empty())?);
        Ok(Folder { handle })
    }

    fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.handle.metadata()
    }

    /// The folder holding the last component of `rel`, reached without following a link, and
    /// that component.
    fn parent<'a>(&'a self, rel: &'a Path) -> std::io::Result<(Step<'a>, &'a std::ffi::OsStr)> {
        use rustix::fs::{Mode, OFlags};
        // Passing through needs no permission to read the folder where Linux has O_PATH.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let through = OFlags::PATH;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let through = OFlags::RDONLY;
        let through = through | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut names = rel.components().map(|component| match component {
            std::path::Component::Normal(name) => Ok(name),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain relative path",
            )),
        });
        let mut last = names
            .next()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))??;
        let mut dir = Step::Here(&self.handle);
        for name in names {
            let next = rustix::fs::openat(dir.fd(), last, through, Mode::empty())?;
            dir = Step::Below(next);
            last = name?;
        }
        Ok((dir, last))
    }

    /// Opens the folder at `rel` ("" for this one again) for reading.
    fn open_dir(&self, rel: &Path) -> std::io::Result<File> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if rel.as_os_str().is_empty() {
            return Ok(File::from(rustix::fs::openat(
                &self.handle,
                ".",
                flags,
                Mode::empty(),
            )?));
        }
        let (dir, name) = self.parent(rel)?;
        Ok(File::from(rustix::fs::openat(
            dir.fd(),
            name,
            flags,
            Mode::empty(),
        )?))
    }

    fn open_file(&self, rel: &Path, access: Access) -> std::io::Result<File> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        let flags = match access {
            // Non-blocking: a FIFO in the way must not hang the open.
            Access::Read => flags | OFlags::RDONLY | OFlags::NONBLOCK,
            Access::Write => flags | OFlags::WRONLY | OFlags::CREATE,
        };
        let (dir, name) = self.parent(rel)?;
        let file = File::from(rustix::fs::openat(
            dir.fd(),
            name,
            flags,
            Mode::from_raw_mode(0o600),
        )?);
        if access == Access::Read {
            // Reads are blocking again.
            rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
        }
        Ok(file)
    }

    /// Creates the private (0700) folder `rel`.
    fn create_dir(&self, rel: &Path) -> std::io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::mkdirat(
            dir.fd(),
            name,
            rustix::fs::Mode::from_raw_mode(0o700),
        )?)
    }

    /// What is at `rel`, without following a link; `None` if nothing.
    fn find(&self, rel: &Path) -> std::io::Result<Option<Found>> {
        use rustix::fs::{AtFlags, FileType};
        let found = self.parent(rel).and_then(|(dir, name)| {
            Ok(rustix::fs::statat(
                dir.fd(),
                name,
                AtFlags::SYMLINK_NOFOLLOW,
            )?)
        });
        match found {
            Ok(stat) => Ok(Some(match FileType::from_raw_mode(stat.st_mode as _) {
                FileType::Directory => Found::Dir,
                FileType::Symlink => Found::Link,
                _ => Found::Other,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names in the folder `rel` ("" for this one).
    fn children(&self, rel: &Path) -> std::io::Result<Vec<OsString>> {
        use std::os::unix::ffi::OsStrExt;
        let dir = self.open_dir(rel)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        Ok(names)
    }

    /// Moves `from` (here) to `to` (in `target`); unless `replace`, fails with
    /// `AlreadyExists` if `to` exists, even if it appeared a moment ago.
    fn rename(
        &self,
        from: &Path,
        target: &Folder,
        to: &Path,
        replace: bool,
    ) -> std::io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = target.parent(to)?;
        if replace {
            return Ok(rustix::fs::renameat(
                from_dir.fd(),
                from_name,
                to_dir.fd(),
                to_name,
            )?);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        match rustix::fs::renameat_with(
            from_dir.fd(),
            from_name,
            to_dir.fd(),
            to_name,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            // File systems without RENAME_NOREPLACE: fall back to a checked rename.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
            done => return Ok(done?),
        }
        if target.find(to)?.is_some() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
        Ok(rustix::fs::renameat(
            from_dir.fd(),
            from_name,
            to_dir.fd(),
            to_name,
        )?)
    }

    fn remove_file(&self, rel: &Path) -> std::io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::unlinkat(
            dir.fd(),
            name,
            rustix::fs::AtFlags::empty(),
        )?)
    }

    fn remove_dir(&self, rel: &Path) -> std::io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::unlinkat(
            dir.fd(),
            name,
            rustix::fs::AtFlags::REMOVEDIR,
        )?)
    }

    /// Takes an exclusive lock on the folder; `false` if another process holds it.
    fn lock(&self) -> std::io::Result<bool> {
        use rustix::fs::FlockOperation;
        match rustix::fs::flock(&self.handle, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Flushes the file system holding the folder (Linux: one `syncfs` for any number of
    /// files; elsewhere every file one by one).
    fn sync_filesystem(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        return Ok(rustix::fs::syncfs(&self.handle)?);
        #[cfg(not(target_os = "linux"))]
        return self.sync_each(Path::new(""));
    }

    #[cfg(not(target_os = "linux"))]
    fn sync_each(&self, rel: &Path) -> std::io::Result<()> {
        for child in self.children(rel)? {
            let path = rel.join(child);
            match self.find(&path)? {
                Some(Found::Dir) => self.sync_each(&path)?,
                Some(Found::Other) => self.open_file(&path, Access::Read)?.sync_data()?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// A folder on the way down a path: the starting one, or one opened below it.
#[cfg(unix)]
enum Step<'a> {
    Here(&'a File),
    Below(std::os::fd::OwnedFd),
}

#[cfg(unix)]
impl Step<'_> {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Step::Here(file) => file.as_fd(),
            Step::Below(fd) => fd.as_fd(),
        }
    }
}

#[cfg(not(unix))]
impl Folder {
    fn open(path: &Path) -> std::io::Result<Folder> {
        Folder::open_no_link(path)
    }

    fn open_no_link(path: &Path) -> std::io::Result<Folder> {
        match path.symlink_metadata()?.is_dir() {
            true => Ok(Folder {
                path: path.to_path_buf(),
            }),
            false => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.path.symlink_metadata()
    }

    fn open_dir(&self, rel: &Path) -> std::io::Result<File> {
        File::open(self.path.join(rel))
    }

    fn open_file(&self, rel: &Path, access: Access) -> std::io::Result<File> {
        let path = self.path.join(rel);
        match access {
            Access::Read => File::open(path),
            Access::Write => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path),
        }
    }

    fn create_dir(&self, rel: &Path) -> std::io::Result<()> {
        std::fs::create_dir(self.path.join(rel))
    }

    fn find(&self, rel: &Path) -> std::io::Result<Option<Found>> {
        match self.path.join(rel).symlink_metadata() {
            Ok(meta) if meta.is_dir() => Ok(Some(Found::Dir)),
            Ok(meta) if meta.file_type().is_symlink() => Ok(Some(Found::Link)),
            Ok(_) => Ok(Some(Found::Other)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn children(&self, rel: &Path) -> std::io::Result<Vec<OsString>> {
        std::fs::read_dir(self.path.join(rel))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn rename(
        &self,
        from: &Path,
        target: &Folder,
        to: &Path,
        replace: bool,
    ) -> std::io::Result<()> {
        let to = target.path.join(to);
        if !replace && to.symlink_metadata().is_ok() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
        std::fs::rename(self.path.join(from), to)
    }

    fn remove_file(&self, rel: &Path) -> std::io::Result<()> {
        std::fs::remove_file(self.path.join(rel))
    }

    fn remove_dir(&self, rel: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(self.path.join(rel))
    }

    fn lock(&self) -> std::io::Result<bool> {
        Ok(true)
    }

    fn sync_filesystem(&self) -> std::io::Result<()> {
        self.sync_each(Path::new(""))
    }

    fn sync_each(&self, rel: &Path) -> std::io::Result<()> {
        for child in self.children(rel)? {
            let path = rel.join(child);
            match self.find(&path)? {
                Some(Found::Dir) => self.sync_each(&path)?,
                Some(Found::Other) => self.open_file(&path, Access::Read)?.sync_data()?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// True for the errors of opening a link with `O_NOFOLLOW` (or a non-folder as a folder).
fn is_link_error(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    return matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR));
    #[cfg(not(unix))]
    return e.kind() == std::io::ErrorKind::InvalidData;
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

/// Which file an open handle is (device and inode), to tell it from one put in its place.
#[cfg(unix)]
fn identity(handle: &File, shown_as: &Path) -> anyhow::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = handle
        .metadata()
        .map_err(|e| local_io(&format!("cannot open {}", shown(shown_as)), e))?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_handle: &File, _shown_as: &Path) -> anyhow::Result<Identity> {
    Ok(())
}

/// Sets the permission bits of an open file or folder (`fchmod`).
#[cfg(unix)]
fn set_mode(handle: &File, mode: u32, shown_as: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    handle
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| local_io(&format!("cannot set permissions of {}", shown(shown_as)), e))
}

#[cfg(not(unix))]
fn set_mode(_handle: &File, _mode: u32, _shown_as: &Path) -> anyhow::Result<()> {
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

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[cfg(unix)]
    fn with_mode(entry: Entry, mode: u32) -> Entry {
        Entry {
            mode: Some(mode),
            ..entry
        }
    }

    /// A file and a folder that keep this user's access, and a read-only pair.
    #[cfg(unix)]
    fn moded() -> Manifest {
        Manifest {
            entries: vec![
                with_mode(Entry::dir("d"), 0o750),
                with_mode(Entry::file("d/run.sh", 1), 0o750),
                with_mode(Entry::file("notes.txt", 1), 0o640),
                with_mode(Entry::file("ro.txt", 1), 0o444),
                with_mode(Entry::dir("rod"), 0o555),
                with_mode(Entry::file("rod/f", 1), 0o644),
            ],
        }
    }

    #[cfg(unix)]
    fn staged_moded(dir: &Path) -> (Manifest, Layout) {
        let manifest = moded();
        let layout = Layout::plan(&manifest, Some(dir)).unwrap();
        layout.prepare(&manifest).unwrap();
        for entry in manifest.entries.iter().filter(|e| e.is_file()) {
            use std::io::Write;
            layout
                .create_staged(&entry.path)
                .unwrap()
                .write_all(b"x")
                .unwrap();
        }
        (manifest, layout)
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_set_on_the_staged_entries_before_they_move() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, layout) = staged_moded(dir.path());
        let staging = layout.folder().unwrap();
        let later = layout.set_modes_staged(&staging, &manifest).unwrap();
        let m = !umask();
        assert_eq!(mode_of(&layout.staged("d")), 0o750 & m);
        assert_eq!(mode_of(&layout.staged("d/run.sh")), 0o750 & m);
        assert_eq!(mode_of(&layout.staged("notes.txt")), 0o640 & m);
        // Read-only ones wait until placed: the staging folder stays writable and resumable.
        assert_eq!(mode_of(&layout.staged("ro.txt")), 0o600);
        assert_eq!(mode_of(&layout.staged("rod")), 0o700);
        let mut waiting: Vec<_> = later.iter().map(|l| l.to.clone()).collect();
        waiting.sort();
        assert_eq!(waiting, [PathBuf::from("ro.txt"), PathBuf::from("rod")]);
    }

    #[cfg(unix)]
    #[test]
    fn read_only_entries_get_their_permissions_once_placed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, layout) = staged_moded(dir.path());
        layout.finish(&manifest, false).unwrap();
        let m = !umask();
        for (path, mode) in [
            ("d", 0o750),
            ("d/run.sh", 0o750),
            ("notes.txt", 0o640),
            ("ro.txt", 0o444),
            ("rod", 0o555),
            ("rod/f", 0o644),
        ] {
            assert_eq!(mode_of(&dir.path().join(path)), mode & m, "{path}");
        }
        assert!(!layout.staging().exists());
        // So that the temporary folder can be removed without root.
        std::fs::set_permissions(
            dir.path().join("rod"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    /// The security review's case: in a folder others can write into, a placed file is
    /// swapped for a link to a file they cannot read; it must never get the sender's mode.
    #[cfg(unix)]
    #[test]
    fn a_placed_entry_swapped_for_a_link_never_has_its_target_changed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = tempfile::tempdir().unwrap();
        let secret = secrets.path().join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (manifest, layout) = staged_moded(dir.path());

        let staging = layout.folder().unwrap();
        let out = Folder::open(dir.path()).unwrap();
        let later = layout.set_modes_staged(&staging, &manifest).unwrap();
        let created = layout.place_all(&staging, &out, &manifest, false).unwrap();
        let moved = tempfile::tempdir_in(dir.path()).unwrap();
        for name in ["notes.txt", "ro.txt", "d"] {
            std::fs::rename(dir.path().join(name), moved.path().join(name)).unwrap();
            std::os::unix::fs::symlink(&secret, dir.path().join(name)).unwrap();
        }
        let err = layout
            .set_modes_placed(&out, later, &created)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in the way"), "{err}");
        assert_eq!(mode_of(&secret), 0o600, "never changed through the link");
        // What was received got its permissions all the same, before it moved.
        assert_eq!(mode_of(&moved.path().join("notes.txt")), 0o640 & !umask());
        assert_eq!(mode_of(&moved.path().join("d")), 0o750 & !umask());
    }

    #[cfg(unix)]
    #[test]
    fn a_placed_folder_swapped_for_another_keeps_the_others_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, layout) = staged_moded(dir.path());
        let staging = layout.folder().unwrap();
        let out = Folder::open(dir.path()).unwrap();
        let later = layout.set_modes_staged(&staging, &manifest).unwrap();
        let created = layout.place_all(&staging, &out, &manifest, false).unwrap();
        let moved = tempfile::tempdir_in(dir.path()).unwrap();
        std::fs::rename(dir.path().join("rod"), moved.path().join("rod")).unwrap();
        private_dir(&dir.path().join("rod")).unwrap();
        let err = layout
            .set_modes_placed(&out, later, &created)
            .unwrap_err()
            .to_string();
        assert!(err.contains("was replaced"), "{err}");
        assert_eq!(mode_of(&dir.path().join("rod")), 0o700);
    }

    /// Someone renames the staging folder away and puts a link to another folder in its
    /// place: every later step still works on the real staging folder, through its handle.
    #[cfg(unix)]
    #[test]
    fn a_staging_folder_swapped_for_a_link_redirects_nothing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("notes.txt"), b"keep").unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        layout.prepare(&manifest).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(layout.staging(), &moved).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), layout.staging()).unwrap();

        let mut file = layout.create_staged("notes.txt").unwrap();
        file.write_all(b"hi").unwrap();
        assert_eq!(std::fs::read(moved.join("notes.txt")).unwrap(), b"hi");
        assert_eq!(layout.kept(&manifest).unwrap().len(), 1);
        layout.discard("notes.txt");
        assert!(!moved.join("notes.txt").exists());
        assert_eq!(
            std::fs::read(elsewhere.path().join("notes.txt")).unwrap(),
            b"keep"
        );

        layout
            .create_staged("notes.txt")
            .unwrap()
            .write_all(b"hi")
            .unwrap();
        let mut photo = layout.create_staged("photos/a.jpg").unwrap();
        photo.write_all(b"abc").unwrap();
        layout.finish(&manifest, false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("notes.txt")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read(dir.path().join("photos/a.jpg")).unwrap(),
            b"abc"
        );
        assert_eq!(
            std::fs::read(elsewhere.path().join("notes.txt")).unwrap(),
            b"keep"
        );
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);
    }

    #[test]
    fn staged_files_are_created_private_and_never_truncated() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        assert!(layout.create_staged("notes.txt").is_err(), "not prepared");
        layout.prepare(&manifest).unwrap();
        layout
            .create_staged("notes.txt")
            .unwrap()
            .write_all(b"hi")
            .unwrap();
        drop(layout.create_staged("notes.txt").unwrap());
        assert_eq!(std::fs::read(layout.staged("notes.txt")).unwrap(), b"hi");
        #[cfg(unix)]
        assert_eq!(mode_of(&layout.staged("notes.txt")), 0o600);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", layout.staged("photos/a.jpg")).unwrap();
            assert!(
                layout.create_staged("photos/a.jpg").is_err(),
                "no link followed"
            );
        }
    }

    #[test]
    fn discarding_removes_only_this_receivers_staging_folder() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let first = Layout::plan(&manifest, Some(dir.path())).unwrap();
        let second = Layout::plan(&manifest, Some(dir.path())).unwrap();
        first.prepare(&manifest).unwrap();
        std::fs::write(first.staged("notes.txt"), b"").unwrap();
        // Nothing worth resuming in it, but another receiver is writing into it.
        second.remove_if_empty();
        second.discard_all();
        assert!(first.staged("notes.txt").exists());
        std::fs::write(first.staged("photos/a.jpg"), b"ab").unwrap();
        first.remove_if_empty();
        assert!(
            first.staged("photos/a.jpg").exists(),
            "bytes worth resuming"
        );
        first.discard_all();
        assert!(!first.staging().exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn discarding_never_reaches_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("notes.txt"), b"keep").unwrap();
        let manifest = tree();
        let layout = Layout::plan(&manifest, Some(dir.path())).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), layout.staging()).unwrap();
        layout.discard("notes.txt");
        layout.remove_if_empty();
        layout.discard_all();
        assert!(elsewhere.path().join("notes.txt").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_anyone_may_write_into_without_sticky_bit_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let manifest = tree();
        let warnings = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            Layout::plan(&manifest, Some(dir.path()))
                .unwrap()
                .warnings()
        };
        assert!(warnings(0o755).is_empty());
        assert!(warnings(0o1777).is_empty(), "sticky, like /tmp");
        let shared = warnings(0o777);
        assert_eq!(shared.len(), 1);
        assert!(shared[0].contains("not sticky"), "{shared:?}");
    }

    #[test]
    fn paths_too_long_for_the_target_folder_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        // Valid for the manifest (3000 bytes), but not under a 2000-byte folder path.
        let long = vec!["n".repeat(199); 15].join("/");
        let manifest = Manifest::single(&long, 1);
        manifest.validate().unwrap();
        assert!(Layout::plan(&manifest, Some(dir.path())).is_ok());
        let mut deep = dir.path().to_path_buf();
        for _ in 0..1000 {
            deep.push(".");
        }
        assert!(deep.is_dir());
        let err = Layout::plan(&manifest, Some(&deep)).unwrap_err();
        let failure = err.downcast_ref::<crate::error::Failure>().unwrap();
        assert_eq!(failure.kind, Kind::Usage);
        assert!(
            failure.message.contains("shorter path"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains(&(PATH_MAX - 1).to_string()));
    }
}
