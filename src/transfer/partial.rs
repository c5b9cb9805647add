//! `mp partial`: the staging folders (`.mp-partial-<offer id>`) that interrupted transfers
//! left behind, listed with their size and age, and removed on request.
//!
//! A staging folder is kept so that receiving the same offer into the same place resumes; it
//! is hidden, so without this command a person would not know a gigabyte waits there.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;

use super::layout::STAGING_PREFIX;
use crate::error::{fail, local_io, Kind};
use crate::ui::{shown, size, Ui};

/// One staging folder.
struct Partial {
    path: PathBuf,
    bytes: u64,
    modified: Option<SystemTime>,
}

pub fn run(dir: &Path, remove: bool, ui: &Ui) -> anyhow::Result<()> {
    let found = find(dir)?;
    if found.is_empty() {
        ui.status(&format!("No partial transfers in {}.", shown(dir)));
        return Ok(());
    }
    let mut removed = 0;
    let mut kept = Vec::new();
    for partial in &found {
        let age = partial
            .modified
            .and_then(|m| m.elapsed().ok())
            .map_or("?".to_string(), |d| human_age(d.as_secs()));
        if remove {
            match remove_one(&partial.path) {
                Ok(()) => {
                    removed += partial.bytes;
                    ui.event(
                        "removed",
                        json!({ "path": shown(&partial.path), "bytes": partial.bytes }),
                    );
                }
                Err(why) => kept.push(format!("{}: {why}", shown(&partial.path))),
            }
        } else if ui.is_json() {
            ui.event(
                "partial",
                json!({ "path": shown(&partial.path), "bytes": partial.bytes, "age": age }),
            );
        } else {
            println!(
                "{:>10}  {:>9}  {}",
                size(partial.bytes),
                age,
                shown(&partial.path)
            );
        }
    }
    if remove {
        ui.status(&format!("Removed {} of partial data.", size(removed)));
    } else {
        ui.status("Receive the same offer into the same place to resume, or remove them with `mp partial --remove`.");
    }
    if !kept.is_empty() {
        return Err(fail(
            Kind::LocalIo,
            format!("not removed: {}", kept.join("; ")),
        ));
    }
    Ok(())
}

/// The staging folders directly in `dir` (real folders only, never through a link).
fn find(dir: &Path) -> anyhow::Result<Vec<Partial>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| local_io(&format!("cannot list {}", shown(dir)), e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(STAGING_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        found.push(Partial {
            bytes: bytes_in(&entry.path()),
            modified: meta.modified().ok(),
            path: entry.path(),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Bytes of the regular files under `dir`, links not followed.
fn bytes_in(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.path(), e.path().symlink_metadata().ok()?)))
        .map(|(path, meta)| match meta {
            m if m.is_file() => m.len(),
            m if m.is_dir() => bytes_in(&path),
            _ => 0,
        })
        .sum()
}

/// Removes one staging folder: only one this user owns, and that no receiver holds locked.
fn remove_one(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = path.symlink_metadata().map_err(|e| e.to_string())?;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err("it belongs to another user".into());
        }
        let handle = std::fs::File::open(path).map_err(|e| e.to_string())?;
        match rustix::fs::flock(
            &handle,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => {}
            Err(_) => return Err("a receiver is writing into it".into()),
        }
        std::fs::remove_dir_all(path).map_err(|e| e.to_string())
    }
    #[cfg(not(unix))]
    std::fs::remove_dir_all(path).map_err(|e| e.to_string())
}

/// "3 min", "2 h", "5 days"
fn human_age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(human_age(5), "5 s");
        assert_eq!(human_age(600), "10 min");
        assert_eq!(human_age(3 * 3600), "3 h");
        assert_eq!(human_age(10 * 86_400), "10 days");
    }

    #[test]
    fn staging_folders_are_found_measured_and_removed_but_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(format!("{STAGING_PREFIX}abc"));
        std::fs::create_dir_all(staging.join("sub")).unwrap();
        std::fs::write(staging.join("sub/a"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("unrelated"), b"x").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            elsewhere.path(),
            dir.path().join(format!("{STAGING_PREFIX}link")),
        )
        .unwrap();
        let found = find(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].bytes, 1000);
        remove_one(&found[0].path).unwrap();
        assert!(!staging.exists());
        assert!(elsewhere.path().exists());
    }
}
