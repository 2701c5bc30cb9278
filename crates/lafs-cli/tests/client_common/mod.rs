//! Helpers for the client tests (`lafs local-grid`, `lafs run` of client nodes, `lafs put` and
//! `lafs get`, raw HTTP to the web API). Built on `common` (processes killed on drop, logs on
//! failure); kept in their own module so the shared helpers stay untouched.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::{LAFS, Proc, poll, run_with_timeout};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one `lafs put`/`get` may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);

/// `lafs ARGS...` with a time limit; `LAFS_NODE_DIR` and `HOME` are cleared of any real node.
pub fn lafs(args: &[&str]) -> Output {
    run_with_timeout(lafs_cmd().args(args), TRANSFER_TIMEOUT)
}

pub fn lafs_cmd() -> Command {
    let mut c = Command::new(LAFS);
    c.env_remove("LAFS_NODE_DIR").env("NO_COLOR", "1");
    c
}

/// `lafs ARGS...` with `input` on stdin.
pub fn lafs_stdin(args: &[&str], input: Vec<u8>) -> Output {
    let mut child = lafs_cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lafs");
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lafs {args:?} with stdin did not finish in time");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = writer.join();
    child.wait_with_output().expect("wait")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns trimmed stdout.
pub fn ok_stdout(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}): stderr: {}",
        o.status,
        text(&o.stderr)
    );
    text(&o.stdout).trim().to_owned()
}

/// `lafs -d DIR put FILE`: the cap.
pub fn put(dir: &Path, file: &Path) -> String {
    let o = lafs(&["-d", dir.to_str().unwrap(), "put", file.to_str().unwrap()]);
    let cap = ok_stdout(&o, &format!("lafs put {}", file.display()));
    assert!(cap.starts_with("URI:"), "put printed {cap:?}");
    cap
}

/// `lafs -d DIR get CAP OUT`: the bytes written.
pub fn get(dir: &Path, cap: &str, out: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(out);
    let o = lafs(&[
        "-d",
        dir.to_str().unwrap(),
        "get",
        cap,
        out.to_str().unwrap(),
    ]);
    ok_stdout(&o, "lafs get");
    std::fs::read(out).unwrap()
}

/// A raw HTTP/1.1 exchange: status, lower-cased headers, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&self.body)))
    }
}

/// Sends `METHOD path` with extra header lines and an optional body; reads to EOF.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

/// [`http`], with connection failures as errors.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read response: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", text(&raw)))?;
    let head = text(&raw[..split]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Reads `node.url` of a running node as an address.
pub fn node_addr(dir: &Path) -> SocketAddr {
    let url = std::fs::read_to_string(dir.join("node.url")).expect("node.url");
    url.trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("node.url address")
}

/// Waits until the node at `addr` reports `n` known servers, all connected.
pub fn wait_connected(proc: &mut Proc, addr: SocketAddr, n: usize) -> Value {
    poll(
        &format!("the lafs client at {addr} to connect to {n} servers"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            proc.assert_running();
            let r = try_http(addr, "GET", "/?t=json", &[], b"")?;
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let up = v["servers"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|s| s["connected"] == true).count());
            if up == n && v["servers"].as_array().map_or(0, Vec::len) == n {
                Ok(v)
            } else {
                Err(format!("{up} connected: {}", v["servers"]))
            }
        },
    )
}

/// A `lafs local-grid` process.
#[derive(Debug)]
pub struct LocalGrid {
    pub dir: PathBuf,
    pub proc: Proc,
    pub web: SocketAddr,
    pub stdout: String,
}

impl LocalGrid {
    /// `lafs local-grid --servers N --web 127.0.0.1:0 DIR` (the web port is chosen on the first
    /// run and kept); waits until the client sees every server.
    pub fn start(dir: &Path, servers: usize, log: &Path) -> Self {
        let mut cmd = lafs_cmd();
        cmd.args(["local-grid", "--servers", &servers.to_string()])
            .args(["--web", "127.0.0.1:0"])
            .arg(dir)
            .env("LAFS_LOG", "info");
        let _ = std::fs::remove_file(log);
        let mut proc = Proc::spawn("lafs local-grid", cmd, log);
        let stdout = poll(
            "lafs local-grid to print its web URL",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                proc.assert_running();
                let t = proc.log_text();
                if t.contains("Ctrl-C stops the grid.") {
                    Ok(t)
                } else {
                    Err(t)
                }
            },
        );
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("web: "))
            .expect("web: line")
            .trim()
            .to_owned();
        let web: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        wait_connected(&mut proc, web, servers);
        Self {
            dir: dir.to_owned(),
            proc,
            web,
            stdout,
        }
    }

    pub fn client_dir(&self) -> PathBuf {
        self.dir.join("client")
    }
}

/// A `lafs` client node (`lafs init` + `servers.yaml` + `lafs run`).
#[derive(Debug)]
pub struct LafsClient {
    pub dir: PathBuf,
    pub web: SocketAddr,
    pub proc: Option<Proc>,
}

impl LafsClient {
    /// `lafs init --web 127.0.0.1:PORT --shares-needed K --shares-happy H --shares-total N DIR`
    /// and a `servers.yaml` with `entries` (indented announcements).
    pub fn create(dir: &Path, k: u16, happy: u16, n: u16, entries: &str) -> Self {
        let web = SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()));
        let o = lafs(&[
            "init",
            "--web",
            &web.to_string(),
            "--shares-needed",
            &k.to_string(),
            "--shares-happy",
            &happy.to_string(),
            "--shares-total",
            &n.to_string(),
            dir.to_str().unwrap(),
        ]);
        ok_stdout(&o, "lafs init");
        std::fs::write(
            dir.join("private/servers.yaml"),
            format!("storage:\n{entries}"),
        )
        .unwrap();
        Self {
            dir: dir.to_owned(),
            web,
            proc: None,
        }
    }

    /// `lafs run DIR`; waits until it sees `n` servers connected.
    pub fn start(&mut self, n: usize) {
        let log = self.dir.with_extension("lafs.log");
        let mut cmd = lafs_cmd();
        cmd.arg("run").arg(&self.dir).env("LAFS_LOG", "info");
        let mut p = Proc::spawn("lafs client", cmd, &log);
        wait_connected(&mut p, self.web, n);
        self.proc = Some(p);
    }
}
