//! Per-server connection status: what the welcome page and `GET /?t=json` show, and what the
//! uploader reads to decide which servers look alive.
//!
//! GBS has no persistent connection to be "up" or "down": like stock's
//! `HTTPNativeStorageServer`, a server counts as connected while its last exchange succeeded.
//! Every request a [`crate::gbs::StorageClient`] makes updates its status, and
//! [`crate::Grid::refresh`] polls `GET /storage/v1/version` for the version fields
//! (available space, maximum share size, software version).
//!
//! Reading is cheap and never waits on the network: a snapshot is a clone taken under a
//! short lock. Error texts come from [`crate::gbs::GbsError`], which never holds secrets.

use std::sync::Mutex;
use std::time::SystemTime;

use lafs_protocol::VersionResponse;

/// The version message's fields, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// Largest immutable share the server accepts now (stock: its free space).
    pub maximum_immutable_share_size: u64,
    /// Largest mutable share.
    pub maximum_mutable_share_size: u64,
    /// Free space in bytes.
    pub available_space: u64,
    /// Software and version, e.g. `tahoe-lafs/1.20.0` (lossily decoded).
    pub application_version: String,
}

impl From<&VersionResponse> for ServerVersion {
    fn from(v: &VersionResponse) -> Self {
        ServerVersion {
            maximum_immutable_share_size: v.maximum_immutable_share_size,
            maximum_mutable_share_size: v.maximum_mutable_share_size,
            available_space: v.available_space,
            application_version: String::from_utf8_lossy(&v.application_version).into_owned(),
        }
    }
}

/// A point-in-time copy of one server's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// The name errors and pages use (nickname and short id).
    pub name: String,
    /// Whether the most recent exchange got an HTTP answer.
    pub connected: bool,
    /// When the server last answered anything (any HTTP status).
    pub last_contact: Option<SystemTime>,
    /// When `connected` last changed.
    pub since: Option<SystemTime>,
    /// The most recent failure to get an answer, and when.
    pub last_error: Option<(SystemTime, String)>,
    /// The last version message received.
    pub version: Option<ServerVersion>,
    /// When the version was last received.
    pub version_time: Option<SystemTime>,
}

/// The shared, updatable status of one server.
#[derive(Debug)]
pub struct ServerStatus {
    inner: Mutex<StatusSnapshot>,
}

impl ServerStatus {
    /// A server not contacted yet.
    pub fn new(name: impl Into<String>) -> Self {
        ServerStatus {
            inner: Mutex::new(StatusSnapshot {
                name: name.into(),
                connected: false,
                last_contact: None,
                since: None,
                last_error: None,
                version: None,
                version_time: None,
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut StatusSnapshot)) {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> StatusSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the most recent exchange got an answer.
    pub fn is_connected(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connected
    }

    /// The last version received, if any.
    pub fn version(&self) -> Option<ServerVersion> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version
            .clone()
    }

    /// Records that the server answered (any HTTP status).
    pub fn record_contact(&self) {
        let now = SystemTime::now();
        self.update(|s| {
            if !s.connected {
                s.connected = true;
                s.since = Some(now);
            }
            s.last_contact = Some(now);
        });
    }

    /// Records a failure to get an answer (connection, TLS, timeout, garbage).
    pub fn record_error(&self, error: &str) {
        let now = SystemTime::now();
        self.update(|s| {
            if s.connected || s.since.is_none() {
                s.connected = false;
                s.since = Some(now);
            }
            s.last_error = Some((now, error.to_owned()));
        });
    }

    /// Records a version message.
    pub fn record_version(&self, v: &VersionResponse) {
        let now = SystemTime::now();
        self.update(|s| {
            s.version = Some(ServerVersion::from(v));
            s.version_time = Some(now);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let s = ServerStatus::new("stor1 (abcdefgh)");
        let snap = s.snapshot();
        assert!(!snap.connected && snap.last_contact.is_none() && snap.since.is_none());
        s.record_error("cannot connect: connection refused");
        let down = s.snapshot();
        assert!(!down.connected);
        assert!(down.since.is_some());
        assert!(down.last_error.as_ref().unwrap().1.contains("refused"));
        s.record_contact();
        s.record_version(&VersionResponse {
            maximum_immutable_share_size: 10,
            maximum_mutable_share_size: 20,
            available_space: 30,
            application_version: b"tahoe-lafs/1.20.0".to_vec(),
        });
        let up = s.snapshot();
        assert!(up.connected && s.is_connected());
        assert!(up.since >= down.since);
        assert_eq!(
            up.last_error, down.last_error,
            "the last error is kept for display"
        );
        let v = s.version().unwrap();
        assert_eq!(v.available_space, 30);
        assert_eq!(v.application_version, "tahoe-lafs/1.20.0");
        let since = up.since;
        s.record_contact();
        assert_eq!(s.snapshot().since, since, "staying connected keeps `since`");
    }
}
