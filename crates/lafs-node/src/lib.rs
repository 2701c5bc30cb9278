//! A lafs node directory: configuration (`tahoe.cfg`, compatible with stock Tahoe), identity
//! files, and (later) the services a node runs.

pub mod config;
pub mod identity;
pub mod ini;
pub mod node;
pub mod run;
