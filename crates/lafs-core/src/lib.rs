//! The pure core of lafs: Tahoe-LAFS-compatible formats as state machines over bytes.
//!
//! Goals: byte-identical caps, hashes and shares to stock Tahoe-LAFS 1.20; bounded memory
//! whatever the file size; every hash checked on the way back.
//!
//! Non-goals: I/O of any kind. Nothing here opens a file or a socket or starts a runtime; the
//! storage server, the client and the CLI drive these types and own the I/O. (The one
//! concession is [`chk::pipeline`], which spreads segment encoding over OS threads.)

pub mod base32;
pub mod cap;
pub mod chk;
pub mod crypto;
pub mod hashtree;
pub mod hashutil;
pub mod netstring;
