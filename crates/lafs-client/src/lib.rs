//! The client side of a lafs (Tahoe-LAFS compatible) grid: the building blocks that uploads,
//! downloads and the web API stand on.
//!
//! - [`gbs`]: a GBS (HTTP storage protocol v1) client for one storage server, over TLS pinned
//!   to the server's SPKI hash, with a connection pool, time limits, bounded responses and
//!   retries only where they are safe. Wire-compatible with stock Tahoe-LAFS 1.20 servers.
//! - [`servers`]: `private/servers.yaml` in stock's format.
//! - [`ring`]: the permuted ring, the per-file server order stock clients use.
//! - [`status`]: per-server connection status (last contact, last error, version, space).
//! - [`happiness`]: servers of happiness, pure: the measure of a layout and upload placement.
//! - [`Grid`]: all servers of a client node, each with its client and status.
//!
//! Non-goals here: encoding (that is `lafs-core`), upload and download orchestration, the web
//! API. This crate does I/O only in [`gbs`] (network), [`servers::read_servers_yaml`] (one
//! file) and [`Grid`] (polling); the rest is pure and tested without sockets.

pub mod download;
pub mod gbs;
mod grid;
pub mod happiness;
pub mod ring;
pub mod servers;
pub mod status;
pub mod store;
pub mod upload;

pub use gbs::{
    ClientIdentity, ClientOptions, ErrorKind, GbsError, ShareKind, StorageClient, Timeouts,
};
pub use grid::{Grid, GridServer};
