//! Write data of mutable writes, held in memory or spooled to a temporary file.
//!
//! A read-test-write request may carry a whole mutable share (a stock client sends a new MDMF
//! share in one request), and its tests can only be evaluated once the request is complete:
//! a writer that applied data as it arrived could not undo it when a later byte turns out
//! malformed, or when a test fails. So the frontend passes the write data of a request through
//! a [`Spool`]: small requests stay in memory, larger ones go to an anonymous temporary file
//! (unlinked at creation, so a crash leaves nothing behind) in the storage directory, through a
//! fixed-size buffer. Each write vector then becomes a [`WriteData`], a cheap handle on its
//! bytes, which the backends read piece by piece while they apply the writes. Memory stays
//! bounded by the buffer whatever the request's size, and nothing is written to a share until
//! the whole request has arrived, decoded and passed its tests.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

/// Requests with at most this much write data are kept in memory.
pub const SPOOL_IN_MEMORY: usize = 1 << 20;

/// Pieces a backend should read write data in.
pub const WRITE_PIECE: u64 = 1 << 20;

#[derive(Clone)]
enum Source {
    Memory(Bytes),
    File(Arc<File>),
}

/// The bytes of one mutable write (or part of one): in memory or a region of a spool file.
/// Cloning is cheap. `Debug` shows the length only: share bytes never reach logs.
#[derive(Clone)]
pub struct WriteData {
    source: Source,
    start: u64,
    len: u64,
}

impl std::fmt::Debug for WriteData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Memory(_) => "memory",
            Source::File(_) => "spooled",
        };
        f.debug_struct("WriteData")
            .field("len", &self.len)
            .field("in", &kind)
            .finish()
    }
}

impl From<Bytes> for WriteData {
    fn from(b: Bytes) -> Self {
        Self {
            len: b.len() as u64,
            source: Source::Memory(b),
            start: 0,
        }
    }
}

impl From<Vec<u8>> for WriteData {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<&'static [u8]> for WriteData {
    fn from(v: &'static [u8]) -> Self {
        Bytes::from_static(v).into()
    }
}

impl WriteData {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `from..to` of this data (clipped to it).
    pub fn slice(&self, from: u64, to: u64) -> WriteData {
        let to = to.min(self.len);
        let from = from.min(to);
        Self {
            source: self.source.clone(),
            start: self.start + from,
            len: to - from,
        }
    }

    /// Reads bytes `from..to` (clipped), blocking on a spool file: call from blocking code.
    pub fn read_blocking(&self, from: u64, to: u64) -> io::Result<Bytes> {
        let part = self.slice(from, to);
        match &part.source {
            Source::Memory(b) => {
                // `start + len` is within `b` by construction, so these fit a usize.
                let a = part.start as usize;
                Ok(b.slice(a..a + part.len as usize))
            }
            Source::File(f) => {
                let mut buf = vec![0u8; usize::try_from(part.len).map_err(io::Error::other)?];
                f.read_exact_at(&mut buf, part.start)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Reads bytes `from..to` (clipped); a spool file is read on the blocking pool.
    pub async fn read(&self, from: u64, to: u64) -> io::Result<Bytes> {
        let part = self.slice(from, to);
        if matches!(part.source, Source::Memory(_)) {
            return part.read_blocking(0, part.len);
        }
        tokio::task::spawn_blocking(move || part.read_blocking(0, part.len))
            .await
            .map_err(|_| io::Error::other("spool read task failed"))?
    }

    /// A copy of `data` in an anonymous temporary file (tests use it to exercise spooled
    /// writes without going through a request).
    pub fn in_temp_file(data: &[u8]) -> io::Result<Self> {
        let f = tempfile::tempfile()?;
        f.write_all_at(data, 0)?;
        Ok(Self {
            source: Source::File(Arc::new(f)),
            start: 0,
            len: data.len() as u64,
        })
    }

    /// Writes all of it to `file` at `offset`, [`WRITE_PIECE`] at a time (blocking).
    pub fn write_to(&self, file: &File, offset: u64) -> io::Result<()> {
        let mut at = 0;
        while at < self.len {
            let n = (self.len - at).min(WRITE_PIECE);
            let piece = self.read_blocking(at, at + n)?;
            file.write_all_at(&piece, offset + at)?;
            at += n;
        }
        Ok(())
    }
}

/// Collects a request's write data: in memory up to [`SPOOL_IN_MEMORY`] bytes, then in an
/// anonymous temporary file in `dir`, through a buffer of that size.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    buf: Vec<u8>,
    file: Option<Arc<File>>,
    written: u64,
}

impl Spool {
    /// An empty spool whose file (if needed) goes in `dir` (else the system's temporary
    /// directory).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            buf: Vec::new(),
            file: None,
            written: 0,
        }
    }

    /// Appends bytes to the buffer; call [`Spool::flush_if_full`] after each batch.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Moves the buffer to the file once it holds [`SPOOL_IN_MEMORY`] bytes.
    pub async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= SPOOL_IN_MEMORY {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let dir = self.dir.clone();
                let f = tokio::task::spawn_blocking(move || match dir {
                    Some(d) => tempfile::tempfile_in(d),
                    None => tempfile::tempfile(),
                })
                .await
                .map_err(|_| io::Error::other("spool task failed"))??;
                let f = Arc::new(f);
                self.file = Some(f.clone());
                f
            }
        };
        let buf = std::mem::take(&mut self.buf);
        let at = self.written;
        let n = buf.len() as u64;
        let mut buf = tokio::task::spawn_blocking(move || {
            file.write_all_at(&buf, at)?;
            Ok::<_, io::Error>(buf)
        })
        .await
        .map_err(|_| io::Error::other("spool task failed"))??;
        self.written += n;
        buf.clear();
        self.buf = buf;
        Ok(())
    }

    /// All the data, as one [`WriteData`] to slice write vectors from.
    pub async fn finish(mut self) -> io::Result<WriteData> {
        if self.file.is_none() {
            return Ok(WriteData::from(std::mem::take(&mut self.buf)));
        }
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        let len = self.written;
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("spool file missing"))?;
        Ok(WriteData {
            source: Source::File(file),
            start: 0,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn small_data_stays_in_memory_and_large_data_spools() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(Some(dir.path().to_path_buf()));
        s.push(b"hello");
        s.flush_if_full().await.unwrap();
        let d = s.finish().await.unwrap();
        assert!(matches!(d.source, Source::Memory(_)));
        assert_eq!(&d.slice(1, 3).read(0, 10).await.unwrap()[..], b"el");

        let mut s = Spool::new(Some(dir.path().to_path_buf()));
        let mut expect = Vec::new();
        for i in 0..300u32 {
            let piece: Vec<u8> = (0..10_000u32).map(|j| (i * 7 + j) as u8).collect();
            s.push(&piece);
            s.flush_if_full().await.unwrap();
            expect.extend_from_slice(&piece);
        }
        let d = s.finish().await.unwrap();
        assert!(matches!(d.source, Source::File(_)));
        assert_eq!(d.len(), expect.len() as u64);
        // The file is anonymous: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let part = d.slice(1_000_000, 2_500_000);
        assert_eq!(
            &part.read(0, u64::MAX).await.unwrap()[..],
            &expect[1_000_000..2_500_000]
        );
        assert_eq!(
            &part.read(10, 20).await.unwrap()[..],
            &expect[1_000_010..1_000_020]
        );
        let out = tempfile::tempfile().unwrap();
        part.write_to(&out, 5).unwrap();
        let mut back = vec![0u8; 1_500_005];
        out.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back[5..], &expect[1_000_000..2_500_000]);
        assert_eq!(
            format!("{part:?}"),
            "WriteData { len: 1500000, in: \"spooled\" }"
        );
    }
}
