//! Test support shared by the integration tests of the lafs crates.
//!
//! Only dev-dependencies use this crate; nothing here runs in a shipped binary.

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768-60999 by default),
/// so no outgoing connection of any process can take one between the test choosing it and a
/// child process binding it.
const PORTS: std::ops::Range<u16> = 20000..32000;

/// How long a port stays reserved for the test process that took it. Longer than any test.
const RESERVATION: Duration = Duration::from_secs(60 * 60);

/// A TCP port on 127.0.0.1 that is free and that no other test process will be given for the
/// next hour.
///
/// Tests that start child processes (stock Tahoe, `lafs run`, an S3 server) must name the port
/// before the child binds it. Asking the kernel for port 0 and closing it races with every
/// other process on the machine: the kernel hands the same ephemeral port to the next
/// outgoing connection or `bind(0)`. Instead, ports come from a range the kernel never hands
/// out on its own, and each one is reserved across processes by creating a file with
/// `O_EXCL` in a shared directory; reservations older than an hour are reclaimed.
pub fn free_port() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = reservation_dir();
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create port reservation directory {}: {e}", dir.display()));
    let span = u64::from(PORTS.end - PORTS.start);
    let mut state = seed()
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9);
    for _ in 0..4 * span {
        state = splitmix64(state);
        let port = PORTS.start + u16::try_from(state % span).expect("span fits in u16");
        let file = dir.join(port.to_string());
        if let Ok(meta) = fs::metadata(&file) {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age < RESERVATION {
                continue;
            }
            // A reservation from a test long gone; whoever removes it first may retry.
            let _ = fs::remove_file(&file);
        }
        if OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .is_err()
        {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        // Taken by something outside the tests; keep the reservation so nobody retries it soon.
    }
    panic!(
        "no free port in {PORTS:?} (reservations in {})",
        dir.display()
    );
}

fn reservation_dir() -> PathBuf {
    std::env::temp_dir().join("lafs-test-ports")
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// One test, not two: nextest runs tests in parallel processes, and the ports the second
    /// half holds (without reserving them, like a foreign process) made the first half's
    /// bind check fail now and then when they ran at the same time.
    #[test]
    fn ports_are_distinct_bindable_outside_the_ephemeral_range_and_never_held_ones() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<_> = ports.iter().collect();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        for p in ports {
            assert!(PORTS.contains(&p), "{p} outside {PORTS:?}");
            TcpListener::bind(("127.0.0.1", p)).expect("reserved port is bindable");
        }

        // Hold many ports of the range; none of them may come back.
        let held: Vec<TcpListener> = (0..1000)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", PORTS.start + i * 11)).ok())
            .collect();
        let held_ports: HashSet<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        for _ in 0..200 {
            let p = free_port();
            assert!(!held_ports.contains(&p), "{p} is held by a listener");
        }
    }
}
