//! A fault-injecting HTTP/1.1 proxy for the cloud backend tests: plain HTTP on loopback
//! between OpenDAL and s3s-fs. It forwards requests unchanged (so SigV4 signatures still
//! verify: the Host header is the proxy's, as the client signed it), logs every request, and
//! applies the first matching [`Rule`]: answer with an error status, reset the connection
//! before answering, truncate the response body, or delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and an S3 error body) without forwarding.
    Status(u16),
    /// Close the connection without answering.
    Reset,
    /// Forward, then send the response head and only half of its body, and close.
    Truncate,
    /// Wait, then forward.
    Delay(Duration),
}

/// A fault for requests with this method whose target contains `target`, `times` times.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub target: String,
    pub fault: Fault,
    pub times: usize,
}

/// One request seen: method, target (path and query), and the fault applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Seen>,
}

/// The proxy; runs until the test's runtime ends.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    upstream: u16,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            upstream,
            state: Arc::default(),
        };
        let q = p.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let q = q.clone();
                tokio::spawn(async move {
                    let _ = q.serve(conn).await;
                });
            }
        });
        p
    }

    /// Adds a rule (after the existing ones).
    pub fn add(&self, method: &'static str, target: &str, fault: Fault, times: usize) {
        self.state.lock().unwrap().rules.push(Rule {
            method,
            target: target.into(),
            fault,
            times,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Requests seen so far (and forgets them).
    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    fn decide(&self, method: &str, target: &str) -> Option<Fault> {
        let mut st = self.state.lock().unwrap();
        let fault = st
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && target.contains(&r.target))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            });
        st.log.push(Seen {
            method: method.into(),
            target: target.into(),
            fault: fault.clone(),
        });
        fault
    }

    async fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            // Request head.
            let head_end = loop {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    break i + 4;
                }
                let mut tmp = [0u8; 16 * 1024];
                let n = conn.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap_or("").split(' ');
            let method = first.next().unwrap_or("").to_string();
            let target = first.next().unwrap_or("").to_string();
            let mut len = 0usize;
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    assert!(
                        !(k.eq_ignore_ascii_case("transfer-encoding")),
                        "fault proxy: chunked request bodies are not supported"
                    );
                }
            }
            while buf.len() < head_end + len {
                let mut tmp = [0u8; 64 * 1024];
                let n = conn.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let request: Vec<u8> = buf.drain(..head_end + len).collect();
            let fault = self.decide(&method, &target);
            match fault {
                Some(Fault::Status(code)) => {
                    let (reason, s3code) = match code {
                        403 => ("Forbidden", "AccessDenied"),
                        429 => ("Too Many Requests", "SlowDown"),
                        500 => ("Internal Server Error", "InternalError"),
                        _ => ("Service Unavailable", "ServiceUnavailable"),
                    };
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3code}</Code><Message>injected</Message></Error>"
                    );
                    let resp = format!(
                        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    conn.write_all(resp.as_bytes()).await?;
                    continue;
                }
                Some(Fault::Reset) => return Ok(()),
                Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
                _ => {}
            }
            let resp = self.forward(&request, head_end).await?;
            if fault == Some(Fault::Truncate) {
                let split = find(&resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
                let body_len = resp.len() - split;
                conn.write_all(&resp[..split + body_len / 2]).await?;
                conn.flush().await?;
                return Ok(());
            }
            conn.write_all(&resp).await?;
            // The upstream answered on a connection it closed; so do we (the client opens a
            // new one), which keeps this proxy free of response framing.
            return Ok(());
        }
    }

    async fn forward(&self, request: &[u8], head_end: usize) -> std::io::Result<Vec<u8>> {
        let mut up = TcpStream::connect(("127.0.0.1", self.upstream)).await?;
        // Ask the upstream to close after answering, so its response ends at EOF.
        let head = String::from_utf8_lossy(&request[..head_end - 2]);
        let mut new_head = String::new();
        for l in head.split("\r\n").filter(|l| !l.is_empty()) {
            if !l.to_ascii_lowercase().starts_with("connection:") {
                new_head.push_str(l);
                new_head.push_str("\r\n");
            }
        }
        new_head.push_str("connection: close\r\n\r\n");
        up.write_all(new_head.as_bytes()).await?;
        up.write_all(&request[head_end..]).await?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp).await?;
        // Tell the client, too, that this connection ends here.
        Ok(resp)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
