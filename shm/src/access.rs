//! Who may be trusted with a segment: its file and its directory must belong to the user this
//! process runs as, and be private to it.
//!
//! A segment is trusted by everyone who maps it: the control plane writes TLS keys into it and
//! clients write signed transactions. So a segment lives in a directory of its own (mode 0700,
//! owned by the service user), is created 0600 (`O_EXCL`, `O_NOFOLLOW`), and every attach checks
//! both again and refuses, naming the failed check, a file that is a symbolic link, not a regular
//! file, owned by another uid (root included: root can open anything, so the check is explicit)
//! or open to group or others.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::segment::SegmentError;

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn refuse(path: &Path, why: String) -> SegmentError {
    SegmentError::Unsafe {
        path: path.to_path_buf(),
        why,
    }
}

/// The directory a segment file lives in (`.` for a bare file name).
pub fn segment_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `dir` is a directory (not a symbolic link), owned by this process's euid and
/// without group or other permission bits.
pub fn check_dir(dir: &Path) -> Result<(), SegmentError> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refuse(
                dir,
                "the segment's directory does not exist (the data plane creates it, mode 0700)"
                    .into(),
            ))
        }
        Err(source) => {
            return Err(SegmentError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            dir,
            "the segment's directory is a symbolic link: point [shm] path at the real directory"
                .into(),
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(
            dir,
            "the segment's parent is not a directory".into(),
        ));
    }
    check_owner(dir, &meta, "directory")?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        // A shared directory (/tmp, /dev/shm) is never to be changed; a private one gone loose
        // may be.
        let or_chmod = if mode & 0o002 != 0 {
            String::new()
        } else {
            format!(
                ", or `chmod 0700 {}` if it belongs to swqos alone",
                dir.display()
            )
        };
        return Err(refuse(
            dir,
            format!(
                "the segment's directory has mode {mode:04o}: group or others may enter or write \
                 it, it must be private (no group/other bits). Put the segment in a directory of \
                 its own, e.g. [shm] path = \"{}/swqos/segment\" (the data plane creates it with \
                 mode 0700){or_chmod}",
                dir.display(),
            ),
        ));
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &Metadata, what: &str) -> Result<(), SegmentError> {
    let me = euid();
    if meta.uid() != me {
        return Err(refuse(
            path,
            format!(
                "the segment's {what} is owned by uid {}, expected uid {me} (the user this \
                 process runs as): only that user's own segments are trusted; run as the data \
                 plane's user, or remove it if a stranger planted it",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Checks an open segment file: a regular file, owned by the euid, no group/other bits.
pub fn check_file(path: &Path, meta: &Metadata) -> Result<(), SegmentError> {
    if !meta.file_type().is_file() {
        return Err(refuse(path, "not a regular file".into()));
    }
    check_owner(path, meta, "file")?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(
            path,
            format!(
                "the segment file has mode {mode:04o}: group or others may read or write it, \
                 it must be 0600; a data plane creates it so, so remove this one"
            ),
        ));
    }
    Ok(())
}

/// Opens an existing segment file read-write without following a symbolic link, after checking
/// its directory, and checks the file itself (on the open descriptor, so it cannot be swapped
/// between the check and the mapping).
pub fn open_existing(path: &Path) -> Result<File, SegmentError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SegmentError::NotFound(path.to_path_buf()))
        }
        Err(source) => {
            return Err(SegmentError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    check_dir(&segment_dir(path))?;
    if meta.file_type().is_symlink() {
        return Err(refuse(
            path,
            "a symbolic link; segments are never opened through one (point [shm] path at the \
             real file)"
                .into(),
        ));
    }
    // Checked before opening so that opening has no side effect (a FIFO, a device).
    if !meta.file_type().is_file() {
        return Err(refuse(path, "not a regular file".into()));
    }
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SegmentError::NotFound(path.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse(
                path,
                "a symbolic link; refusing to follow it".into(),
            ))
        }
        Err(source) => {
            return Err(SegmentError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let meta = file.metadata().map_err(|source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_file(path, &meta)?;
    Ok(file)
}

/// Makes sure the segment's directory exists and is private: creates it (mode 0700, exactly)
/// when missing, otherwise checks it. Returns whether this call created it. A directory this
/// process did not create is never changed.
pub fn prepare_dir(dir: &Path) -> Result<bool, SegmentError> {
    let io_err = |source| SegmentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut created = false;
    if fs::symlink_metadata(dir).is_err() {
        if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(up).map_err(io_err)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                // The mode above is filtered by the umask; state it exactly.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
                created = true;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    check_dir(dir)?;
    Ok(created)
}

/// Creates a new segment file (mode 0600 exactly, `O_EXCL`, `O_NOFOLLOW`).
pub fn create_file(path: &Path) -> Result<File, SegmentError> {
    let io_err = |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err)?;
    // The mode above is filtered by the umask; state it exactly.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    Ok(file)
}
