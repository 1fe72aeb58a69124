//! Files only their owner may read: the one place turnpike creates a file that holds a secret
//! (proof-of-work keys, L402 databases, the dev wallet's credentials, the era session key, and
//! on the caller's side the kept credentials and the spend log).
//!
//! Every file is created with mode 0600 from the start (on Unix; elsewhere the platform's
//! defaults apply), never created first and restricted afterwards, so there is no moment at
//! which another user could open it. Replacing a file's contents goes through a temporary file
//! in the same directory, synced, then renamed over the target: a reader sees the old contents
//! or the new, never a part of them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The permission bits of every file this crate creates.
pub const PRIVATE_MODE: u32 = 0o600;

/// `OpenOptions` that create files with mode 0600 (on Unix); the caller adds the access mode.
pub fn private_options() -> OpenOptions {
    #[allow(unused_mut)] // only Unix sets the mode
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(PRIVATE_MODE);
    }
    o
}

/// Opens `path` for appending, creating it with mode 0600 if it does not exist.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    private_options().create(true).append(true).open(path)
}

/// Writes `bytes` to `path`, mode 0600, replacing any previous file atomically: a temporary file
/// in the same directory is written and synced, then renamed over `path`. The parent directory
/// must exist. On failure the temporary file is removed and `path` is left as it was.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (tmp, file) = create_temporary(path)?;
    let result = fill(file, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path`, mode 0600, only if `path` does not exist yet; the file appears
/// complete or not at all (a synced temporary file, then a hard link). When another writer got
/// there first the error is [`io::ErrorKind::AlreadyExists`] and its file is left untouched.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (tmp, file) = create_temporary(path)?;
    let result = fill(file, bytes).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Takes group and other permissions away from `path` if it has any (mode 0600 then). A file
/// that does not exist is not an error. For files created by others (SQLite's `-wal` and `-shm`
/// companions) that this crate cannot create itself.
pub fn restrict_to_owner(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_MODE))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn fill(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// A new, empty, private file next to `path` (same directory, so a rename is atomic), named
/// `.<file name>.<pid>.<counter>.tmp`: unique within the process, and `create_new` refuses a
/// name another process holds (then the next counter is tried).
fn create_temporary(path: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy();
    let mut attempts = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match private_options().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("turnpike-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn write_private_replaces_with_owner_only_file() {
        let d = scratch("write");
        let p = d.join("key");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn write_private_tightens_a_replaced_world_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("tighten");
        let p = d.join("key");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_private_into_a_missing_directory_fails_and_leaves_nothing() {
        let d = scratch("missing");
        let err = write_private(&d.join("absent/key"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(leftovers(&d).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_private_keeps_the_first_writer() {
        let d = scratch("create");
        let p = d.join("seal");
        create_private(&p, b"first").unwrap();
        let err = create_private(&p, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
        assert!(leftovers(&d).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn append_creates_private_and_appends() {
        let d = scratch("append");
        let p = d.join("log");
        open_private_append(&p).unwrap().write_all(b"a").unwrap();
        open_private_append(&p).unwrap().write_all(b"b").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ab");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn restrict_to_owner_tightens_and_ignores_missing_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("restrict");
        let p = d.join("db-wal");
        restrict_to_owner(&p).unwrap();
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        restrict_to_owner(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
