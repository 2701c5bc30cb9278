//! Shared helpers for integration tests that run real processes: scratch directories, free
//! ports, commands with time limits, child processes killed on drop, `lafs` storage servers,
//! and stock Tahoe-LAFS 1.20 storage nodes and clients (from the virtualenv that
//! `interop/tahoe-venv.sh` creates; a missing venv fails the test, it never skips it).
//!
//! Every process started here is owned by a [`Proc`], which kills it when dropped, so a failing
//! (panicking) test leaves nothing behind. While a test is panicking, each `Proc` also prints the
//! tail of its log (and the extra log files registered with it) to stderr.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The `lafs` binary under test.
pub const LAFS: &str = env!("CARGO_BIN_EXE_lafs");

/// How long one stock CLI command may take unless told otherwise.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Scratch space, ports, data

/// A fresh directory under the system temp dir, removed on drop unless `LAFS_TEST_KEEP` is set
/// (then its path is printed instead).
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lafs-{name}-"))
            .tempdir()
            .expect("create scratch dir");
        Self { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir").path()
    }

    /// `path()/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("LAFS_TEST_KEEP").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("LAFS_TEST_KEEP: kept {}", d.keep().display());
        }
    }
}

pub use lafs_testkit::free_port;

/// `n` pseudo-random bytes (SplitMix64), different on every call.
pub fn random_bytes(n: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0xA076_1D64_78BD_642F);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Asserts two byte strings are equal without dumping megabytes on failure.
pub fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: content differs: got {} bytes, want {} bytes, first difference at {:?}",
        got.len(),
        want.len(),
        first
    );
}

/// Polls `f` every `every` until it returns `Some`, or panics after `limit` with `what` and the
/// last diagnostic `f` produced.
pub fn poll<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}: {e}")
            }
            Err(_) => thread::sleep(every),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and processes

/// Runs `cmd` (stdin closed, output captured) and kills it if it outlives `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for command") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{desc} did not finish within {timeout:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Like [`run_with_timeout`], and panics (showing both output streams) unless it succeeded.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout);
    if !out.status.success() {
        panic!(
            "{desc} failed ({})\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Last `lines` lines of a text file (or a note that it can't be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            let all: Vec<&str> = text.lines().collect();
            let skip = all.len().saturating_sub(lines);
            let mut s = String::new();
            if skip > 0 {
                let _ = writeln!(s, "[... {skip} earlier lines]");
            }
            for l in &all[skip..] {
                let _ = writeln!(s, "{l}");
            }
            s
        }
        Err(e) => format!("[cannot read {}: {e}]\n", path.display()),
    }
}

/// A long-running child process whose stdout and stderr go to a log file. Dropping it kills
/// the process (and, while panicking, prints the logs).
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    extra_logs: Vec<PathBuf>,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and both output streams appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            extra_logs: Vec::new(),
            exit: None,
        }
    }

    /// Also print this file when the test fails.
    pub fn add_log(&mut self, path: PathBuf) {
        self.extra_logs.push(path);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process was started and has not ended (or been stopped) yet.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `None` while running, else how it ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Some(c) = self.child.as_mut()
        {
            self.exit = c.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Panics with the log if the process has ended.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.exit_status() {
            panic!(
                "{} exited unexpectedly ({s}); its log:\n{}",
                self.name,
                tail(&self.log, 80)
            );
        }
    }

    /// SIGKILL at once (no chance to clean up) and reap the process.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.exit = child.wait().ok();
        }
    }

    /// SIGTERM, then waits up to `grace` (SIGKILL after that). Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        if let Some(s) = self.exit_status() {
            self.child = None;
            return s;
        }
        let mut child = self.child.take().expect("child");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                self.exit = Some(s);
                return s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let s = child.wait().expect("wait");
                self.exit = Some(s);
                panic!(
                    "{} did not stop within {grace:?} of SIGTERM; log:\n{}",
                    self.name,
                    tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's logs, for a failure message.
    pub fn diagnostics(&self, lines: usize) -> String {
        let mut s = format!(
            "===== {} ({}) =====\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        );
        for p in self.extra_logs.iter().filter(|p| p.exists()) {
            let _ = write!(s, "----- {} -----\n{}", p.display(), tail(p, lines));
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.diagnostics(60));
        }
    }
}

/// `GET http://addr/path` over HTTP/1.0; the body if the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let _ = s.shutdown(Shutdown::Write);
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed response: {resp:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET {path}: {status}"));
    }
    Ok(body.to_owned())
}

/// Whether something accepts TCP connections at `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

// ---------------------------------------------------------------------------------------------
// lafs storage servers

/// A `lafs` storage node directory, running or not.
#[derive(Debug)]
pub struct LafsServer {
    pub dir: PathBuf,
    pub name: String,
    proc: Option<Proc>,
    /// Length of the log when the current process started: readiness is looked for after it.
    log_start: usize,
}

impl LafsServer {
    /// `lafs init --storage --listen 127.0.0.1:<free port> --nickname NAME DIR`.
    pub fn init(dir: &Path, name: &str) -> Self {
        Self::init_with(dir, name, &[])
    }

    /// [`Self::init`] with a web server for the storage status pages (on a port the system
    /// picks; the running node writes its URL to `DIR/node.url`).
    pub fn init_web(dir: &Path, name: &str) -> Self {
        Self::init_with(dir, name, &["--web", "127.0.0.1:0"])
    }

    fn init_with(dir: &Path, name: &str, extra: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        run_ok(
            Command::new(LAFS)
                .args(["init", "--storage", "--listen", &listen, "--nickname", name])
                .args(extra)
                .arg(dir),
            Duration::from_secs(30),
        );
        Self::existing(dir, name)
    }

    /// A node directory made elsewhere (for instance by stock Tahoe).
    pub fn existing(dir: &Path, name: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            proc: None,
            log_start: 0,
        }
    }

    /// Starts `lafs run DIR` (output to `DIR/../NAME.log`) without waiting for it.
    pub fn spawn(&mut self) {
        assert!(
            !self.proc.as_mut().is_some_and(Proc::is_running),
            "{} already running",
            self.name
        );
        let log = self
            .dir
            .parent()
            .expect("node dir has a parent")
            .join(format!("{}.lafs.log", self.name));
        self.log_start = fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new(LAFS);
        cmd.arg("run")
            .arg(&self.dir)
            .env("NO_COLOR", "1")
            .env("LAFS_LOG", "info");
        self.proc = Some(Proc::spawn(
            &format!("lafs server {}", self.name),
            cmd,
            &log,
        ));
    }

    /// Waits (bounded) for the "listening on ADDR" line; returns ADDR.
    pub fn wait_ready(&mut self, limit: Duration) -> SocketAddr {
        let proc = self.proc.as_mut().expect("spawned");
        let deadline = Instant::now() + limit;
        loop {
            let log = proc.log_text();
            let log = log.get(self.log_start..).unwrap_or_default().to_owned();
            // Only complete lines: the process may be half-way through writing one.
            let complete = log.rfind('\n').map_or("", |end| &log[..end]);
            if let Some(addr) = complete
                .lines()
                .find_map(|l| l.split_once(" listening on ").map(|(_, a)| a.trim()))
            {
                return addr
                    .parse()
                    .unwrap_or_else(|e| panic!("bad address {addr:?} in {log}: {e}"));
            }
            proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} not ready after {limit:?}; log:\n{log}",
                proc.name()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Self::spawn`] then [`Self::wait_ready`].
    pub fn start(&mut self) -> SocketAddr {
        self.spawn();
        self.wait_ready(Duration::from_secs(30))
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    /// SIGTERM and wait for a clean exit. (The stopped process's log is still printed if the
    /// test fails later.)
    pub fn stop(&mut self) {
        let p = self.proc.as_mut().expect("running");
        let s = p.terminate(Duration::from_secs(20));
        assert!(
            s.success(),
            "{} exited with {s}; log:\n{}",
            p.name(),
            p.diagnostics(40)
        );
    }

    /// `lafs storage announcement DIR`, indented for `servers.yaml`'s `storage:` map.
    pub fn announcement(&self) -> String {
        let out = run_ok(
            Command::new(LAFS)
                .args(["storage", "announcement"])
                .arg(&self.dir),
            Duration::from_secs(30),
        );
        indent(&String::from_utf8(out.stdout).expect("utf-8 announcement"))
    }

    /// Share files the server holds (everything under `storage/shares` except `incoming`).
    pub fn share_files(&self) -> usize {
        count_share_files(&self.dir.join("storage/shares"))
    }

    pub fn diagnostics(&self, lines: usize) -> String {
        self.proc
            .as_ref()
            .map(|p| p.diagnostics(lines))
            .unwrap_or_default()
    }
}

/// Regular files under a `shares` directory, not counting `shares/incoming`.
pub fn count_share_files(shares: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        let Ok(rd) = fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(t) if t.is_file() => 1,
                _ => 0,
            })
            .sum()
    }
    let Ok(rd) = fs::read_dir(shares) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name() != "incoming")
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Indents every non-empty line by two spaces and ends the text with a newline.
pub fn indent(text: &str) -> String {
    let mut s = String::new();
    for l in text.lines() {
        if !l.is_empty() {
            s.push_str("  ");
        }
        s.push_str(l);
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Stock Tahoe-LAFS

/// The stock Tahoe-LAFS 1.20 virtualenv; a missing one fails the test with how to create it.
pub fn tahoe_venv() -> PathBuf {
    let venv = match std::env::var_os("LAFS_TAHOE_VENV") {
        Some(v) => PathBuf::from(v),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("neither LAFS_TAHOE_VENV nor HOME set"))
                .join(".cache/lafs/tahoe-venv")
        }
    };
    assert!(
        venv.join("bin/tahoe").is_file(),
        "stock Tahoe-LAFS venv not found at {} (no bin/tahoe): run scripts/test-all.sh, which \
         creates it with interop/tahoe-venv.sh (or run that script alone, ~30 s), or point \
         LAFS_TAHOE_VENV at an existing venv with tahoe-lafs==1.20.0",
        venv.display()
    );
    venv
}

/// A `tahoe` command from the venv.
pub fn tahoe_cmd() -> Command {
    let mut c = Command::new(tahoe_venv().join("bin/tahoe"));
    c.env("PYTHONUNBUFFERED", "1");
    c
}

/// A stock storage node (`tahoe create-node`) listening on 127.0.0.1.
#[derive(Debug)]
pub struct StockStorageNode {
    pub dir: PathBuf,
    pub name: String,
    pub port: u16,
    proc: Option<Proc>,
}

impl StockStorageNode {
    /// `tahoe create-node` with a free storage port and a free web port.
    pub fn create(dir: &Path, name: &str) -> Self {
        let port = free_port();
        let web = free_port();
        run_ok(
            tahoe_cmd()
                .arg("create-node")
                .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
                .arg(format!("--location=tcp:127.0.0.1:{port}"))
                .arg(format!("--webport=tcp:{web}:interface=127.0.0.1"))
                .arg(format!("--nickname={name}"))
                .arg(dir),
            CMD_TIMEOUT,
        );
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            port,
            proc: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `tahoe run --allow-stdin-close DIR`; waits until it listens and wrote its storage FURL.
    pub fn start(&mut self) {
        assert!(
            !self.proc.as_mut().is_some_and(Proc::is_running),
            "{} already running",
            self.name
        );
        let log = self
            .dir
            .parent()
            .expect("node dir has a parent")
            .join(format!("{}.tahoe.log", self.name));
        let mut cmd = tahoe_cmd();
        cmd.args(["run", "--allow-stdin-close"]).arg(&self.dir);
        let mut p = Proc::spawn(&format!("stock storage node {}", self.name), cmd, &log);
        p.add_log(self.dir.join("logs/twistd.log"));
        let furl = self.dir.join("private/storage.furl");
        let addr = self.addr();
        poll(
            &format!("{} to listen on {addr}", self.name),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                p.assert_running();
                if furl.is_file() && listening(addr) {
                    Ok(())
                } else {
                    Err(format!("storage.furl exists: {}", furl.is_file()))
                }
            },
        );
        self.proc = Some(p);
    }

    /// SIGTERM and wait for it to exit. (Its log is still printed if the test fails later.)
    pub fn stop(&mut self) {
        let p = self.proc.as_mut().expect("running");
        p.terminate(Duration::from_secs(30));
        // Keep nothing running on the port before the next server takes it.
        poll(
            &format!("{} to release its port", self.name),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                if listening(self.addr()) {
                    Err("still accepting connections".into())
                } else {
                    Ok(())
                }
            },
        );
    }

    /// Its `servers.yaml` entry (indented for the `storage:` map), built from its files: the
    /// NURL pins the SPKI hash of `private/node.pem`'s certificate and reuses the FURL's swissnum.
    pub fn announcement(&self) -> String {
        let pem = fs::read(self.dir.join("private/node.pem")).expect("read node.pem");
        let cert = lafs_protocol::pem_certificate_der(&pem).expect("certificate in node.pem");
        let spki = lafs_protocol::SpkiHash::of_cert_der(&cert).expect("SPKI of node.pem");
        let furl = read_trimmed(&self.dir.join("private/storage.furl"));
        let swissnum = furl
            .rsplit_once('/')
            .map(|(_, s)| s)
            .expect("swissnum in storage.furl");
        let pubkey = read_trimmed(&self.dir.join("node.pubkey"));
        let server_id = pubkey.strip_prefix("pub-").unwrap_or(&pubkey);
        let seed = read_trimmed(&self.dir.join("permutation-seed"));
        let nurl = format!("pb://{spki}@127.0.0.1:{}/{swissnum}#v=1", self.port);
        format!(
            "  {server_id}:\n    ann:\n      nickname: \"{}\"\n      \
             anonymous-storage-FURL: \"{furl}\"\n      anonymous-storage-NURLs:\n      \
             - \"{nurl}\"\n      permutation-seed-base32: {seed}\n",
            self.name
        )
    }

    pub fn diagnostics(&self, lines: usize) -> String {
        self.proc
            .as_ref()
            .map(|p| p.diagnostics(lines))
            .unwrap_or_default()
    }
}

fn read_trimmed(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// A stock client node (`tahoe create-client`) with a static server list and no introducer.
#[derive(Debug)]
pub struct StockClient {
    pub dir: PathBuf,
    pub web: SocketAddr,
    proc: Option<Proc>,
}

impl StockClient {
    /// `tahoe create-client` with k-of-n, happy h, and `servers.yaml` listing `entries` (the
    /// concatenated, already indented announcements).
    pub fn create(dir: &Path, k: u16, happy: u16, n: u16, entries: &str) -> Self {
        let web_port = free_port();
        run_ok(
            tahoe_cmd()
                .arg("create-client")
                .arg(format!("--webport=tcp:{web_port}:interface=127.0.0.1"))
                .arg(format!("--shares-needed={k}"))
                .arg(format!("--shares-happy={happy}"))
                .arg(format!("--shares-total={n}"))
                .arg(dir),
            CMD_TIMEOUT,
        );
        let c = Self {
            dir: dir.to_owned(),
            web: SocketAddr::from(([127, 0, 0, 1], web_port)),
            proc: None,
        };
        c.set_servers(entries);
        c
    }

    /// Rewrites `private/servers.yaml` (read at startup).
    pub fn set_servers(&self, entries: &str) {
        fs::write(
            self.dir.join("private/servers.yaml"),
            format!("storage:\n{entries}"),
        )
        .expect("write servers.yaml");
    }

    /// `tahoe run --allow-stdin-close DIR` (output to `DIR.log`), without waiting.
    pub fn spawn(&mut self) {
        assert!(self.proc.is_none(), "client already running");
        let log = self.dir.with_extension("tahoe.log");
        let mut cmd = tahoe_cmd();
        cmd.args(["run", "--allow-stdin-close"]).arg(&self.dir);
        let mut p = Proc::spawn("stock client", cmd, &log);
        p.add_log(self.dir.join("logs/twistd.log"));
        self.proc = Some(p);
    }

    /// The welcome page's JSON (`GET /?t=json`).
    pub fn welcome(&self) -> Result<Value, String> {
        let body = http_get(self.web, "/?t=json")?;
        serde_json::from_str(&body).map_err(|e| format!("bad JSON {body:?}: {e}"))
    }

    /// Waits (bounded) until the client lists `n` servers, all connected.
    pub fn wait_connected(&mut self, n: usize, limit: Duration) {
        let web = self.web;
        let proc = self.proc.as_mut().expect("client running");
        poll(
            &format!("the stock client (web {web}) to connect to {n} servers"),
            limit,
            Duration::from_millis(200),
            || {
                proc.assert_running();
                let j = http_get(web, "/?t=json")?;
                let v: Value = serde_json::from_str(&j).map_err(|e| e.to_string())?;
                let servers = v["servers"].as_array().cloned().unwrap_or_default();
                let connected = servers
                    .iter()
                    .filter(|s| s["connection_status"] == "connected")
                    .count();
                if servers.len() == n && connected == n {
                    Ok(())
                } else {
                    Err(format!(
                        "{connected} of {} listed servers connected, want {n}: {}",
                        servers.len(),
                        v["servers"]
                    ))
                }
            },
        );
    }

    /// `tahoe -d DIR ARGS...`, which must succeed; returns its output.
    pub fn tahoe(&self, args: &[&str]) -> Output {
        self.tahoe_timeout(args, CMD_TIMEOUT)
    }

    pub fn tahoe_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        run_ok(tahoe_cmd().arg("-d").arg(&self.dir).args(args), timeout)
    }

    /// `tahoe -d DIR ARGS...` returning trimmed stdout.
    pub fn tahoe_stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.tahoe(args).stdout)
            .expect("utf-8 stdout")
            .trim()
            .to_owned()
    }

    /// `tahoe put [OPTS...] FILE [TO]`; returns the cap printed on stdout.
    pub fn put(&self, opts: &[&str], file: &Path, to: Option<&str>) -> String {
        let mut args: Vec<&str> = vec!["put"];
        args.extend_from_slice(opts);
        args.push(file.to_str().expect("utf-8 path"));
        args.extend(to);
        let out = self.tahoe_timeout(&args, Duration::from_secs(180));
        let cap = String::from_utf8(out.stdout)
            .expect("utf-8 cap")
            .trim()
            .to_owned();
        assert!(
            cap.starts_with("URI:"),
            "tahoe put {file:?} printed {cap:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cap
    }

    /// `tahoe get FROM OUT`, returning the bytes written.
    pub fn get(&self, from: &str, out: &Path) -> Vec<u8> {
        let _ = fs::remove_file(out);
        self.tahoe_timeout(
            &["get", from, out.to_str().expect("utf-8 path")],
            Duration::from_secs(180),
        );
        fs::read(out).unwrap_or_else(|e| panic!("tahoe get {from} wrote no {}: {e}", out.display()))
    }

    /// `tahoe check --raw [--verify] CAP` as JSON.
    pub fn check(&self, cap: &str, verify: bool) -> Value {
        let mut args = vec!["check", "--raw"];
        if verify {
            args.push("--verify");
        }
        args.push(cap);
        let out = self.tahoe_stdout(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("check output {out:?}: {e}"))
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    pub fn diagnostics(&self, lines: usize) -> String {
        self.proc
            .as_ref()
            .map(|p| p.diagnostics(lines))
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// S3-compatible object store (s3s-fs) for the cloud backend

/// Access key and secret the test s3s-fs accepts.
pub const S3_ACCESS_KEY: &str = "lafs-grid-access";
pub const S3_SECRET_KEY: &str = "lafs-grid-secret-0123456789";

/// The s3s-fs binary: `LAFS_S3S_FS`, else `~/.cache/lafs/s3s-root/bin/s3s-fs` (made by
/// `interop/s3s-fs.sh`). Missing: `None` locally (the test skips, saying so), a failure when
/// `CI=true`.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("LAFS_S3S_FS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/lafs/s3s-root/bin/s3s-fs"),
    };
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "s3s-fs not found at {}: run `interop/s3s-fs.sh`, or point LAFS_S3S_FS at the binary",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

/// An s3s-fs server on 127.0.0.1 storing buckets as directories under `root` (killed on
/// drop, through its [`Proc`]).
pub struct S3sFsServer {
    pub root: PathBuf,
    pub endpoint: String,
    proc: Proc,
}

impl S3sFsServer {
    /// Starts s3s-fs with its data in `root` and its log next to it; `None` if the binary is
    /// missing (see [`s3s_fs_binary`]).
    pub fn start(root: &Path) -> Option<Self> {
        let bin = s3s_fs_binary()?;
        fs::create_dir_all(root).unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root);
        let mut proc = Proc::spawn("s3s-fs", cmd, &root.with_extension("s3s.log"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        poll(
            "s3s-fs to listen",
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                proc.assert_running();
                if listening(addr) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            },
        );
        Some(Self {
            root: root.to_owned(),
            endpoint: format!("http://{addr}"),
            proc,
        })
    }

    /// Creates a bucket (a directory, for s3s-fs).
    pub fn create_bucket(&self, name: &str) {
        fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// Objects under `shares/` in `bucket`.
    pub fn share_objects(&self, bucket: &str) -> usize {
        fn walk(p: &Path) -> usize {
            fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if e.file_name().to_string_lossy().starts_with('.') {
                            0
                        } else if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        walk(&self.root.join(bucket).join("shares"))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// Switches a `lafs` node directory to `[storage] backend = cloud.s3` on `bucket` at
/// `endpoint` (chunk size `chunk`) with the test s3s-fs credentials.
pub fn use_cloud_s3(node_dir: &Path, endpoint: &str, bucket: &str, chunk: &str) {
    let s3 = ExternalS3 {
        url: endpoint.into(),
        region: "us-east-1".into(),
        key: S3_ACCESS_KEY.into(),
        secret: S3_SECRET_KEY.into(),
    };
    use_cloud_s3_at(node_dir, &s3, bucket, chunk);
}

/// An S3 service the test does not start (e.g. Garage, from `bench/garage.sh`).
#[derive(Clone, Debug)]
pub struct ExternalS3 {
    pub url: String,
    pub region: String,
    pub key: String,
    pub secret: String,
}

impl ExternalS3 {
    /// From `VAR` = `URL REGION ACCESS_KEY SECRET_KEY`, if set.
    pub fn from_env(var: &str) -> Option<Self> {
        let v = std::env::var(var).ok()?;
        let p: Vec<&str> = v.split_whitespace().collect();
        assert_eq!(
            p.len(),
            4,
            "{var} must be `URL REGION ACCESS_KEY SECRET_KEY`"
        );
        Some(Self {
            url: p[0].into(),
            region: p[1].into(),
            key: p[2].into(),
            secret: p[3].into(),
        })
    }
}

/// Switches a `lafs` node directory to `[storage] backend = cloud.s3` on `bucket` of `s3`
/// (chunk size `chunk`), writing `private/s3secret`.
pub fn use_cloud_s3_at(node_dir: &Path, s3: &ExternalS3, bucket: &str, chunk: &str) {
    let cfg_path = node_dir.join("tahoe.cfg");
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    let settings = format!(
        "backend = cloud.s3\ns3.bucket = {bucket}\ns3.url = {}\ns3.region = {}\n\
         s3.access_key_id = {}\ns3.chunk_size = {chunk}\n",
        s3.url, s3.region, s3.key
    );
    assert!(
        cfg.contains("backend = disk\n"),
        "no disk backend line in {cfg}"
    );
    fs::write(&cfg_path, cfg.replacen("backend = disk\n", &settings, 1)).unwrap();
    fs::write(node_dir.join("private/s3secret"), &s3.secret).unwrap();
}
