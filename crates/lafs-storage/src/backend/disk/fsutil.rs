//! Small blocking filesystem helpers: durable directory creation, no-replace rename, opening
//! share files without following symlinks. Unix only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::container::PROBE_LEN;

/// `fsync` of a directory, so that entries created, renamed or removed in it are durable.
pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of every directory created
/// here (also when a concurrent caller won the race to create it, since it may not have
/// fsynced yet). A non-directory (or a symlink) in the way is an error.
pub(super) fn ensure_dir_durable(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is in the way of a share directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("share directory has no parent"))?;
    ensure_dir_durable(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fsync_dir(parent)
}

/// Creates an unnamed regular file (`O_TMPFILE`, mode 0666 less the umask) on the
/// filesystem of `dir`, for reading and writing; it vanishes when closed unless
/// [`link_unnamed`] gives it a name first.
pub(super) fn create_unnamed(dir: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Err(io::Error::from(ErrorKind::Unsupported))
    }
}

/// `/proc/self/fd/<fd>`: a path that reopens or links the open file `file`.
pub(super) fn fd_path(file: &File) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Gives the unnamed file `file` the name `to`, failing with [`ErrorKind::AlreadyExists`]
/// if `to` exists (`linkat` never replaces).
pub(super) fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    rustix::fs::linkat(CWD, fd_path(file), CWD, to, AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}

/// Whether unnamed staging works in `incoming` (Linux with `O_TMPFILE` on this filesystem and
/// `/proc` mounted): creates an unnamed file, links it and removes the link.
pub(super) fn probe_unnamed(incoming: &Path) -> super::Staging {
    let works = (|| -> io::Result<()> {
        let file = create_unnamed(incoming)?;
        let name = incoming.join(format!(".lafs-staging-probe.{}", std::process::id()));
        let _ = fs::remove_file(&name);
        link_unnamed(&file, &name)?;
        fs::remove_file(&name)
    })();
    match works {
        Ok(()) => super::Staging::Unnamed,
        Err(e) => {
            tracing::debug!(error = %e, "disk: unnamed staging unavailable, staging uploads under incoming/");
            super::Staging::Named
        }
    }
}

/// [`ensure_dir_durable`] for a share directory about to receive a new share. When the
/// directory already exists its parent is fsynced all the same: a concurrent caller that
/// created it may still be syncing, and the new share must not be acknowledged before the
/// directory's entry is durable (when nothing is left to write, this costs one cache flush).
pub(super) fn ensure_share_dir_durable(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => fsync_dir(
            dir.parent()
                .ok_or_else(|| io::Error::other("share directory has no parent"))?,
        ),
        _ => ensure_dir_durable(dir),
    }
}

/// Removes `dir` if it is empty; any failure (not empty, gone, raced) is ignored, like
/// stock's `os.rmdir` cleanups.
pub(super) fn remove_dir_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

/// Renames `from` to `to`, failing with [`ErrorKind::AlreadyExists`] if `to` exists.
///
/// Uses `renameat2(RENAME_NOREPLACE)` where the kernel and filesystem support it, else
/// `link(2)` + `unlink(2)` (also atomic against replacement), else a check followed by a
/// plain rename (racy, but the server serialises operations on one share).
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    match fs::hard_link(from, to) {
        Ok(()) => return fs::remove_file(from),
        Err(e) if e.kind() == ErrorKind::AlreadyExists || e.kind() == ErrorKind::NotFound => {
            return Err(e);
        }
        Err(_) => {}
    }
    match fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::from(ErrorKind::AlreadyExists)),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::rename(from, to),
        Err(e) => Err(e),
    }
}

fn nofollow() -> i32 {
    // The flag's bit pattern fits an i32 on every platform (it is a small positive constant).
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

/// Opens an existing share file for reading (and writing if `write`), without following a
/// symlink at the last component. `Ok(None)` if there is no regular file there (missing,
/// a symlink, a directory...): such entries are not shares.
pub(super) fn open_share(path: &Path, write: bool) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nofollow())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None);
        }
        // Opening a directory for writing fails with EISDIR.
        Err(e) if e.kind() == ErrorKind::IsADirectory => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.is_file() {
        Ok(Some(file))
    } else {
        Ok(None)
    }
}

/// Reads up to [`PROBE_LEN`] bytes from the start of `file`; returns them and the file size.
pub(super) fn probe(file: &File) -> io::Result<(Vec<u8>, u64)> {
    let file_len = file.metadata()?.len();
    let want = usize::try_from(file_len).map_or(PROBE_LEN, |l| l.min(PROBE_LEN));
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok((buf, file_len))
}

/// Writes `len` zero bytes at `offset`, in bounded chunks.
pub(super) fn write_zeros_at(file: &File, mut offset: u64, mut len: u64) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let zeros = [0u8; CHUNK];
    while len > 0 {
        let n = usize::try_from(len).map_or(CHUNK, |l| l.min(CHUNK));
        file.write_all_at(&zeros[..n], offset)?;
        offset += n as u64;
        len -= n as u64;
    }
    Ok(())
}
