//! A lafs node directory: configuration (`tahoe.cfg`, compatible with stock Tahoe), identity
//! files, and the services a node runs: a storage server, a client with its web API, or both.

pub mod account;
pub mod client;
pub mod config;
pub mod identity;
pub mod ini;
pub mod node;
pub mod run;
pub mod storage_status;
pub mod web;
