//! Direct I/O for staged immutable shares that arrive in order.
//!
//! A large share is written once and rarely read soon after, so it need not pass through
//! the page cache: copying it there costs the server a memory copy per byte and the kernel a
//! writeback, and grows the cache by the share's size (on a virtual machine whose free
//! memory goes back to the host, every new page-cache page is a host page fault too: that
//! copy was half of all CPU time on a 256 MiB upload to ten local servers).
//!
//! [`DirectAppender`] keeps the bytes that follow the last aligned offset written in an
//! aligned buffer and writes whole aligned chunks through a second descriptor opened with
//! `O_DIRECT`. Whatever does not fit that pattern (a write that is not an append, a read,
//! the commit) first [`spill`](DirectAppender::spill)s the buffered tail through the
//! ordinary descriptor; the share then goes on with ordinary writes. The bytes are the same
//! either way and the fsync at commit covers both paths, so durability does not change.
//! Filesystems without `O_DIRECT` (tmpfs before Linux 6.6, some network filesystems) or
//! with stricter alignment than [`ALIGN`] fall back to ordinary writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of direct writes: memory address, file offset and length (covers 512-byte and
/// 4 KiB logical blocks).
pub const ALIGN: usize = 4096;

/// Bytes gathered before each direct write (a multiple of [`ALIGN`]); also the memory an
/// in-order upload holds between its writes.
pub const CHUNK: usize = 512 << 10;

/// Staged shares smaller than this are written the ordinary way: their data would mostly
/// end in the unaligned tail anyway.
pub const MIN_SHARE: u64 = 2 * CHUNK as u64;

/// Writes an in-order byte stream to a file with `O_DIRECT`, from a file offset on.
pub struct DirectAppender {
    file: File,
    /// `2 * ALIGN + CHUNK` bytes; the window is `raw[start..start + CHUNK]`, `start` aligned.
    raw: Vec<u8>,
    start: usize,
    /// Bytes of the window in use: file offsets `flushed..flushed + len`.
    len: usize,
    /// Every byte below this file offset is in the file (an [`ALIGN`] multiple).
    flushed: u64,
    /// Bytes written with `O_DIRECT` so far.
    direct_bytes: u64,
}

impl std::fmt::Debug for DirectAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectAppender")
            .field("flushed", &self.flushed)
            .field("pending", &self.len)
            .field("direct_bytes", &self.direct_bytes)
            .finish()
    }
}

impl DirectAppender {
    /// Opens `path` (an existing file) for direct writes, the stream starting at file offset
    /// 0 with `prefix` (bytes already written the ordinary way, e.g. a header, which the
    /// first direct write rewrites unchanged). `None` where direct I/O is not available.
    pub fn open(path: &Path, prefix: &[u8]) -> Option<Self> {
        Self::open_at(path, prefix, 0)
    }

    /// [`open`](Self::open) with the window `skew` bytes past alignment (tests use a skew to
    /// make every direct write fail as a filesystem with stricter alignment would).
    fn open_at(path: &Path, prefix: &[u8], skew: usize) -> Option<Self> {
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (path, prefix, skew);
            None
        }
        #[cfg(target_os = "linux")]
        {
            if prefix.len() > CHUNK || skew >= ALIGN {
                return None;
            }
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                .open(path)
                .ok()?;
            let raw = vec![0u8; 2 * ALIGN + CHUNK];
            let start = raw.as_ptr().align_offset(ALIGN);
            if start >= ALIGN {
                return None;
            }
            let mut a = Self {
                file,
                raw,
                start: start + skew,
                len: 0,
                flushed: 0,
                direct_bytes: 0,
            };
            a.window_mut()[..prefix.len()].copy_from_slice(prefix);
            a.len = prefix.len();
            Some(a)
        }
    }

    /// A test appender whose every direct write fails (misaligned memory).
    #[cfg(test)]
    pub fn open_failing(path: &Path, prefix: &[u8]) -> Option<Self> {
        Self::open_at(path, prefix, 1)
    }

    fn window_mut(&mut self) -> &mut [u8] {
        let s = self.start;
        &mut self.raw[s..s + CHUNK]
    }

    /// The file offset the next appended byte goes to.
    pub fn next_offset(&self) -> u64 {
        self.flushed + self.len as u64
    }

    /// Bytes written with `O_DIRECT` so far.
    #[cfg(test)]
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// Appends `data` at [`next_offset`](Self::next_offset), writing every full chunk with
    /// `O_DIRECT`. On error nothing is lost: the bytes not yet in the file stay buffered
    /// (and [`spill`](Self::spill) writes them the ordinary way).
    pub fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let (len, n) = (self.len, data.len().min(CHUNK - self.len));
            self.window_mut()[len..len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == CHUNK {
                self.write_window()?;
            }
        }
        Ok(())
    }

    /// Writes the whole aligned chunk in the window directly.
    fn write_window(&mut self) -> io::Result<()> {
        let s = self.start;
        self.file
            .write_all_at(&self.raw[s..s + CHUNK], self.flushed)?;
        self.flushed += CHUNK as u64;
        self.direct_bytes += CHUNK as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes the buffered tail through `file` (the ordinary descriptor), after which the
    /// caller drops the appender and goes on with ordinary writes. On error it keeps the
    /// bytes, so a later spill can try again.
    pub fn spill(&self, file: &File) -> io::Result<()> {
        let s = self.start;
        file.write_all_at(&self.raw[s..s + self.len], self.flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_file(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap()
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// On a filesystem with `O_DIRECT` (the temporary directory here is ext4), an in-order
    /// stream with odd-sized pieces and an unaligned prefix lands byte for byte, every whole
    /// chunk through a direct write.
    #[test]
    fn appended_stream_lands_exactly_mostly_direct() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share");
        let header = pattern(12, 7);
        let file = new_file(&path);
        file.write_all_at(&header, 0).unwrap();
        let Some(mut a) = DirectAppender::open(&path, &header) else {
            panic!("O_DIRECT is not available in {}", dir.path().display());
        };
        let body = pattern(3 * CHUNK + 12345, 3);
        let mut at = 0;
        for size in [1usize, 4095, 70_000, CHUNK, 333_333, CHUNK + 1, 100_000] {
            let end = (at + size).min(body.len());
            assert_eq!(a.next_offset(), (header.len() + at) as u64);
            a.append(&body[at..end]).unwrap();
            at = end;
        }
        a.append(&body[at..]).unwrap();
        assert_eq!(a.direct_bytes(), 3 * CHUNK as u64);
        a.spill(&file).unwrap();
        let mut want = header.clone();
        want.extend_from_slice(&body);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    /// A direct write that fails keeps every byte: `spill` writes them the ordinary way.
    #[test]
    fn failed_direct_writes_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share");
        let file = new_file(&path);
        let Some(mut a) = DirectAppender::open_failing(&path, b"") else {
            panic!("O_DIRECT is not available in {}", dir.path().display());
        };
        let body = pattern(CHUNK + 10, 1);
        assert!(a.append(&body).is_err());
        assert_eq!(a.direct_bytes(), 0);
        a.spill(&file).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[..CHUNK], body[..CHUNK]);
    }
}
