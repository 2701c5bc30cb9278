//! `lafs put`: store a file through the running node (see `transfer.rs`; the node's
//! `[client] shares.*` decide the encoding). Offline with `--dry-run`: nothing is sent
//! anywhere, the cap an upload with the same parameters would produce is printed.

use crate::error::{CliError, CliResult};
use crate::size::parse_size;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lafs_core::base32;
use lafs_core::chk::{
    ChkEncoder, ChkError, DEFAULT_MAX_SEGMENT_SIZE, EncodingParams, LIT_THRESHOLD, Plan, lit_cap,
    pipeline,
};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Compute the cap without contacting any server.
    #[arg(long)]
    dry_run: bool,
    /// File holding the convergence secret (Tahoe's format: base32 text, as in a node's
    /// private/convergence).
    #[arg(long, value_name = "F", conflicts_with = "convergence_secret_base32")]
    convergence_secret_file: Option<PathBuf>,
    /// The convergence secret as base32.
    #[arg(long, value_name = "S")]
    convergence_secret_base32: Option<String>,
    /// Shares needed to read the file (k; --dry-run only: a node uses its own settings).
    #[arg(long, value_name = "K", default_value_t = 3)]
    shares_needed: u16,
    /// Shares produced (N; --dry-run only).
    #[arg(long, value_name = "N", default_value_t = 10)]
    shares_total: u16,
    /// Largest segment size (bytes; suffixes like 128KiB accepted).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = DEFAULT_MAX_SEGMENT_SIZE)]
    max_segment_size: u64,
    /// Print a JSON object instead of the bare cap.
    #[arg(long)]
    json: bool,
    /// The file to store, or - for standard input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

pub fn run(args: &PutArgs, node_dir: Option<&Path>) -> CliResult {
    let params = EncodingParams {
        needed_shares: args.shares_needed,
        total_shares: args.shares_total,
        max_segment_size: args.max_segment_size,
    };
    params
        .validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    if !args.dry_run {
        return crate::transfer::put(
            &crate::node_cmd::default_dir(node_dir),
            &args.file,
            args.json,
        );
    }
    let secret = convergence_secret(args, node_dir)?;
    let mut input = Input::open(&args.file)?;
    let cap = if input.size <= LIT_THRESHOLD {
        let mut data = Vec::new();
        input
            .file
            .read_to_end(&mut data)
            .map_err(|e| read_error(&args.file, &e))?;
        lit_cap(&data).to_string()
    } else {
        dry_run_chk(&mut input, &params, &secret, &args.file)?
    };
    if args.json {
        let parsed: lafs_core::cap::Cap = cap
            .parse()
            .map_err(|e| CliError::failed(format!("internal error: {e}")))?;
        let mut v = crate::cap_cmd::describe(&parsed);
        if let Some(m) = v.as_object_mut() {
            m.insert("cap".into(), serde_json::json!(cap));
        }
        println!("{v}");
    } else {
        println!("{cap}");
    }
    Ok(())
}

fn read_error(path: &Path, e: &io::Error) -> CliError {
    CliError::failed(format!("cannot read {}: {e}", path.display()))
}

fn convergence_secret(args: &PutArgs, node_dir: Option<&Path>) -> CliResult<Vec<u8>> {
    let decode = |text: &str, what: &str| {
        base32::decode(text.trim())
            .map_err(|e| CliError::usage(format!("bad convergence secret in {what}: {e}")))
    };
    if let Some(s) = &args.convergence_secret_base32 {
        return decode(s, "--convergence-secret-base32");
    }
    if let Some(f) = &args.convergence_secret_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::usage(format!(
                "cannot read convergence secret file {}: {e}",
                f.display()
            ))
        })?;
        return decode(&text, &f.display().to_string());
    }
    let explicit = node_dir.is_some();
    let dir = node_dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".lafs")));
    if let Some(dir) = dir {
        let path = dir.join("private").join("convergence");
        match std::fs::read_to_string(&path) {
            Ok(text) => return decode(&text, &path.display().to_string()),
            Err(e) if explicit => {
                return Err(CliError::usage(format!(
                    "{} is not a client node directory ({}: {e})",
                    dir.display(),
                    path.display()
                )));
            }
            Err(_) => {}
        }
    }
    eprintln!(
        "lafs: no node and no convergence secret given: using the all-zero convergence secret \
         (anyone can confirm this file's contents from its cap)"
    );
    Ok(vec![0u8; 16])
}

/// A seekable input of known size; standard input and other streams are spooled to a
/// temporary file first (the key needs one pass over the data before encoding starts).
struct Input {
    file: File,
    size: u64,
}

impl Input {
    fn open(path: &Path) -> CliResult<Self> {
        if path == Path::new("-") {
            return Self::spool(&mut io::stdin().lock(), path);
        }
        let mut file = File::open(path).map_err(|e| {
            let msg = format!("cannot open {}: {e}", path.display());
            if e.kind() == io::ErrorKind::NotFound {
                CliError::usage(msg)
            } else {
                CliError::failed(msg)
            }
        })?;
        let meta = file.metadata().map_err(|e| read_error(path, &e))?;
        if meta.is_dir() {
            return Err(CliError::usage(format!(
                "{} is a directory, not a file",
                path.display()
            )));
        }
        if meta.is_file() {
            return Ok(Self {
                file,
                size: meta.len(),
            });
        }
        Self::spool(&mut file, path)
    }

    fn spool(src: &mut dyn Read, path: &Path) -> CliResult<Self> {
        let mut tmp = tempfile::tempfile()
            .map_err(|e| CliError::failed(format!("cannot create a temporary file: {e}")))?;
        let size = io::copy(src, &mut tmp).map_err(|e| read_error(path, &e))?;
        tmp.flush()
            .and_then(|()| tmp.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| CliError::failed(format!("temporary file: {e}")))?;
        Ok(Self { file: tmp, size })
    }
}

fn progress(size: u64, what: &str) -> Option<ProgressBar> {
    if size < (8 << 20) || !io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    Some(pb)
}

#[derive(Debug)]
enum EncodeFailure {
    Chk(ChkError),
    Io(io::Error),
}

impl From<ChkError> for EncodeFailure {
    fn from(e: ChkError) -> Self {
        Self::Chk(e)
    }
}

fn dry_run_chk(
    input: &mut Input,
    params: &EncodingParams,
    secret: &[u8],
    path: &Path,
) -> CliResult<String> {
    let plan = Plan::new(input.size, params).map_err(|e| CliError::usage(e.to_string()))?;
    // Pass 1: the convergent key. A reader thread keeps the hasher fed.
    let pb = progress(input.size, "hashing");
    let mut hasher = plan.convergence_hasher(secret);
    let chunk = 1 << 20;
    let file = &mut input.file;
    let total = input.size;
    let read_result: io::Result<()> = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = s.spawn(move || -> io::Result<()> {
            let mut left = total;
            while left > 0 {
                let mut buf = back_rx.try_recv().unwrap_or_default();
                let n = left.min(chunk) as usize;
                buf.resize(n, 0);
                file.read_exact(&mut buf)?;
                left -= n as u64;
                if tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for buf in rx {
            hasher.update(&buf);
            if let Some(pb) = &pb {
                pb.inc(buf.len() as u64);
            }
            let _ = back_tx.send(buf);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")))
    });
    read_result.map_err(|e| read_error(path, &e))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let key = hasher.finalize();

    // Pass 2: encrypt, erasure-code and hash on every core.
    let pb = progress(input.size, "encoding");
    input
        .file
        .seek(SeekFrom::Start(0))
        .map_err(|e| read_error(path, &e))?;
    let mut encoder =
        ChkEncoder::new(plan.clone(), key).map_err(|e| CliError::failed(e.to_string()))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let file = &mut input.file;
    let result = pipeline::encode_segments(
        &mut encoder,
        workers,
        |index, buf: &mut Vec<u8>| {
            buf.resize(plan.segment_len(index) as usize, 0);
            file.read_exact(buf).map_err(EncodeFailure::Io)
        },
        |seg| {
            if let Some(pb) = &pb {
                pb.inc(seg.ciphertext().len() as u64);
            }
            Ok(())
        },
    );
    match result {
        Ok(()) => {}
        Err(EncodeFailure::Io(e)) => return Err(read_error(path, &e)),
        Err(EncodeFailure::Chk(e)) => return Err(CliError::failed(e.to_string())),
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let fin = encoder
        .finish()
        .map_err(|e| CliError::failed(e.to_string()))?;
    Ok(lafs_core::cap::Cap::Chk(fin.cap).to_string())
}
