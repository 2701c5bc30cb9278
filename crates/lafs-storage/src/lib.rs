//! The lafs storage server.
//!
//! Layers, each behind a narrow interface, dependencies pointing down:
//! - `frontend`: HTTPS, swissnum check, request parsing into typed endpoints, limits; every
//!   request is made on behalf of an account.
//! - `server`: the share state machine (NONE, COMING, STABLE, GOING), leases, reserved space,
//!   read-only mode.
//! - [`leasedb`]: the lease database (SQLite; leases live only here, never in share files).
//! - [`crawler`]: the accounting crawler (adoption, vanished shares, lease expiry, garbage
//!   collection), walking the backend slowly through the server.
//! - [`backend`]: where share bytes live ([`backend::disk`], [`backend::cloud`],
//!   [`backend::memory`], [`backend::discard`]).
//! - [`spool`]: the write data of mutable writes, spooled to a temporary file when large.

pub mod backend;
pub mod crawler;
pub mod frontend;
pub mod leasedb;
pub mod ranges;
pub mod server;
pub mod spool;
pub mod types;
