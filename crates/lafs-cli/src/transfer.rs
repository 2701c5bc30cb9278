//! `lafs put` and `lafs get` through a running node's web API (`PUT /uri`, `GET /uri/$CAP`).
//!
//! The CLI only moves bytes: the node encodes, places shares and verifies, so `put` and `get`
//! behave the same whether the node is a lafs client or a stock one. A progress bar appears
//! on a terminal for transfers over 4 MiB (and for standard input, whose size is unknown);
//! nothing extra is printed when stderr is not a terminal.

use crate::error::{CliError, CliResult};
use crate::webapi::{ChannelBody, NodeApi, error_line, ok};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Empty};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Transfers smaller than this get no progress bar.
const PROGRESS_MIN: u64 = 4 << 20;
/// Bytes per upload chunk.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The file's cap (URI:CHK:... or URI:LIT:...).
    #[arg(value_name = "CAP")]
    cap: String,
    /// Where to write the file; - or nothing for standard output.
    #[arg(value_name = "OUTFILE|-")]
    out: Option<PathBuf>,
    /// Print a JSON summary ({"size": ...}) on standard output (needs an OUTFILE).
    #[arg(long)]
    json: bool,
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))
}

fn bar(total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() || total.is_some_and(|t| t < PROGRESS_MIN) {
        return None;
    }
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::new(t);
            if let Ok(s) = ProgressStyle::with_template(
                "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                pb.set_style(s.progress_chars("=> "));
            }
            pb
        }
        None => {
            let pb = ProgressBar::new_spinner();
            if let Ok(s) =
                ProgressStyle::with_template("{msg:>9} {spinner} {bytes} {bytes_per_sec}")
            {
                pb.set_style(s);
            }
            pb
        }
    };
    pb.set_message(what.to_string());
    Some(pb)
}

/// `lafs put FILE|-` (not `--dry-run`): streams the file to the node, prints the cap.
pub fn put(dir: &Path, file: &Path, json: bool) -> CliResult {
    let api = NodeApi::from_dir(dir)?;
    let (mut input, size): (Box<dyn Read + Send>, Option<u64>) = if file == Path::new("-") {
        (Box::new(io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            let msg = format!("cannot open {}: {e}", file.display());
            if e.kind() == io::ErrorKind::NotFound {
                CliError::usage(msg)
            } else {
                CliError::failed(msg)
            }
        })?;
        let meta = f
            .metadata()
            .map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
        if meta.is_dir() {
            return Err(CliError::usage(format!(
                "{} is a directory, not a file",
                file.display()
            )));
        }
        let size = meta.is_file().then_some(meta.len());
        (Box::new(f), size)
    };
    let pb = bar(size, "sending");
    let rt = runtime()?;
    let (tx, body) = ChannelBody::new(4);
    let reader_pb = pb.clone();
    let display = file.display().to_string();
    // The reader thread: blocking reads, bounded queue.
    let reader = std::thread::spawn(move || -> Result<u64, String> {
        let mut total = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match input.read(&mut buf) {
                Ok(0) => {
                    if let Some(pb) = &reader_pb {
                        // Sent; the node now encodes and places the shares.
                        pb.set_message("storing");
                    }
                    return Ok(total);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = format!("cannot read {display}: {e}");
                    let _ = tx.blocking_send(Err(io::Error::other(msg.clone())));
                    return Err(msg);
                }
            };
            buf.truncate(n);
            total += n as u64;
            if let Some(pb) = &reader_pb {
                pb.inc(n as u64);
            }
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return Ok(total); // the request ended early; the response says why
            }
        }
    });
    let result = rt.block_on(async {
        let mut req = Request::builder().method(Method::PUT).uri("/uri");
        if let Some(s) = size {
            req = req.header(header::CONTENT_LENGTH, s);
        }
        let req = req
            .body(body)
            .map_err(|e| CliError::failed(e.to_string()))?;
        let resp = api.send(req).await?;
        if !ok(resp.status()) {
            return Err(CliError::failed(format!(
                "the node could not store the file: {}",
                error_line(resp).await
            )));
        }
        let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
            .await
            .map_err(|_| CliError::failed("the node did not send the cap"))?
            .map_err(|e| CliError::failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    });
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let sent = match reader.join() {
        Ok(Ok(n)) => n,
        Ok(Err(msg)) => return Err(CliError::failed(msg)),
        Err(_) => return Err(CliError::failed("the reader thread failed")),
    };
    let cap = result?;
    if !cap.starts_with("URI:") {
        return Err(CliError::failed(
            "the node answered without a cap (is node.url another service?)",
        ));
    }
    if json {
        println!("{}", serde_json::json!({"cap": cap, "size": sent}));
    } else {
        println!("{cap}");
    }
    Ok(())
}

/// `lafs get CAP [OUTFILE|-]`.
pub fn get(dir: &Path, args: &GetArgs) -> CliResult {
    let cap_text = args.cap.trim();
    let cap: lafs_core::cap::Cap = cap_text
        .parse()
        .map_err(|e| CliError::usage(format!("not a valid cap: {e}")))?;
    let api = NodeApi::from_dir(dir)?;
    let to_stdout = args.out.as_deref().is_none_or(|p| p == Path::new("-"));
    if args.json && to_stdout {
        return Err(CliError::usage("--json needs an OUTFILE"));
    }
    let rt = runtime()?;
    let out_path = args.out.clone().filter(|_| !to_stdout);
    let created = std::cell::Cell::new(false);
    let result = rt.block_on(async {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/uri/{}", cap))
            .body(Empty::<Bytes>::new())
            .map_err(|e| CliError::failed(e.to_string()))?;
        let resp = api.send(req).await?;
        if !ok(resp.status()) {
            return Err(CliError::failed(format!(
                "cannot get the file: {}",
                error_line(resp).await
            )));
        }
        let expected = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut out: Box<dyn Write> = match &out_path {
            None => Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout().lock())),
            Some(p) => Box::new(io::BufWriter::with_capacity(1 << 20, {
                let f = std::fs::File::create(p)
                    .map_err(|e| CliError::failed(format!("cannot create {}: {e}", p.display())))?;
                created.set(true);
                f
            })),
        };
        let pb = bar(expected, "receiving");
        let mut body = resp.into_body();
        let mut got = 0u64;
        let write_err = |e: io::Error| {
            let to = out_path
                .as_ref()
                .map_or("standard output".to_string(), |p| p.display().to_string());
            CliError::failed(format!("cannot write {to}: {e}"))
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                CliError::failed(format!(
                    "the download broke off after {got} bytes (the node's log says why): {e}"
                ))
            })?;
            if let Ok(d) = frame.into_data() {
                got += d.len() as u64;
                out.write_all(&d).map_err(write_err)?;
                if let Some(pb) = &pb {
                    pb.inc(d.len() as u64);
                }
            }
        }
        out.flush().map_err(write_err)?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        if let Some(n) = expected
            && n != got
        {
            return Err(CliError::failed(format!(
                "the download broke off after {got} of {n} bytes"
            )));
        }
        Ok(got)
    });
    match result {
        Ok(size) => {
            if args.json {
                println!("{}", serde_json::json!({"size": size}));
            }
            Ok(())
        }
        Err(e) => {
            // Leave no partial file behind (but never remove one we did not create).
            if let Some(p) = out_path.as_ref().filter(|_| created.get()) {
                let _ = std::fs::remove_file(p);
            }
            Err(e)
        }
    }
}
