//! `upload`: the project's own tus client. It cuts a file into N parts, declares the final
//! upload first (so that every part's bytes land straight in the final file), sends each part
//! in chunks, each with a SHA-256 `Upload-Checksum` unless told otherwise, and keeps the URLs in
//! a small state file so that an interrupted upload resumes where the server's offsets say.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::protocol::{OFFSET_OCTET_STREAM, TUS_VERSION};

/// One part unless `--parallel` says otherwise.
pub const DEFAULT_PARALLEL: usize = 1;
/// The bytes of one PATCH: 8 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;
/// How many failures in a row one part survives (each followed by a HEAD and a resume).
pub const DEFAULT_RETRIES: u32 = 5;
/// Every PATCH carries a SHA-256 `Upload-Checksum` unless `--checksum` says otherwise.
pub const DEFAULT_CHECKSUM: ChunkChecksum = ChunkChecksum::Sha256;

/// The `Upload-Checksum` each PATCH carries: `--checksum sha256|sha1|none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkChecksum {
    /// `sha256 BASE64`.
    Sha256,
    /// `sha1 BASE64`, the algorithm every server of the checksum extension has.
    Sha1,
    /// No header: the server checks nothing (a server without the extension ignores the header
    /// anyway), and neither side spends CPU on hashing.
    None,
}

impl ChunkChecksum {
    /// The `Upload-Checksum` value for `chunk`, or `None` when no checksum is sent.
    pub fn header(self, chunk: &[u8]) -> Option<String> {
        match self {
            ChunkChecksum::Sha256 => {
                Some(format!("sha256 {}", STANDARD.encode(Sha256::digest(chunk))))
            }
            ChunkChecksum::Sha1 => Some(format!(
                "sha1 {}",
                STANDARD.encode(<Sha1 as sha1::Digest>::digest(chunk))
            )),
            ChunkChecksum::None => None,
        }
    }
}

impl std::str::FromStr for ChunkChecksum {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(ChunkChecksum::Sha256),
            "sha1" => Ok(ChunkChecksum::Sha1),
            "none" => Ok(ChunkChecksum::None),
            _ => Err(format!("{s:?}: expected sha256, sha1 or none")),
        }
    }
}

impl std::fmt::Display for ChunkChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkChecksum::Sha256 => "sha256",
            ChunkChecksum::Sha1 => "sha1",
            ChunkChecksum::None => "none",
        })
    }
}

/// How `upload` runs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The creation URL, e.g. `http://127.0.0.1:1080/files/`.
    pub to: String,
    /// How many parts go at once (2 or more: concatenation).
    pub parallel: usize,
    /// The bytes of one PATCH.
    pub chunk_size: u64,
    /// Where the resume state lives (default: `FILE.tus` beside the file).
    pub state: Option<PathBuf>,
    /// Failures in a row survived per part.
    pub retries: u32,
    /// The checksum each PATCH carries.
    pub checksum: ChunkChecksum,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            to: String::new(),
            parallel: DEFAULT_PARALLEL,
            chunk_size: DEFAULT_CHUNK_SIZE,
            state: None,
            retries: DEFAULT_RETRIES,
            checksum: DEFAULT_CHECKSUM,
        }
    }
}

/// What the state file keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    endpoint: String,
    size: u64,
    modified_ns: u128,
    url: String,
    parts: Vec<Part>,
}

/// One part of the file and its upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    url: String,
    base: u64,
    length: u64,
}

/// The outcome of an upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The URL of the whole file's upload.
    pub url: String,
    /// Its length.
    pub length: u64,
    /// Whether it resumed an earlier run.
    pub resumed: bool,
}

/// Uploads `file` as `config` says; `bar` shows progress (hidden when not on a terminal).
pub async fn upload(
    file: &Path,
    config: &ClientConfig,
    bar: indicatif::ProgressBar,
) -> Result<Uploaded> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    let size = meta.len();
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let state_path = config.state.clone().unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".tus");
        PathBuf::from(name)
    });
    let (authority, _) = split_url(&config.to)?;
    let mut conn = Conn::new(authority.clone());
    let earlier = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        .filter(|s| s.endpoint == config.to && s.size == size && s.modified_ns == modified_ns);
    let mut resumed = false;
    let state = match earlier {
        Some(state) if conn.head_offset(&state.parts[0].url).await?.is_some() => {
            resumed = true;
            state
        }
        _ => {
            let state = create(&mut conn, config, file, size, modified_ns).await?;
            let tmp = state_path.with_extension("tus.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&state)?)
                .and_then(|()| std::fs::rename(&tmp, &state_path))
                .with_context(|| format!("cannot write the state file {}", state_path.display()))?;
            state
        }
    };
    bar.set_length(size);
    let source = Arc::new(std::fs::File::open(file)?);
    let mut tasks = tokio::task::JoinSet::new();
    for part in state.parts.clone() {
        let (source, bar, config) = (Arc::clone(&source), bar.clone(), config.clone());
        let conn = Conn::new(authority.clone());
        tasks.spawn(async move { send_part(conn, part, source, &config, bar).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| anyhow!("a part's task failed: {e}"))??;
    }
    bar.finish_and_clear();
    match conn.head_offset(&state.url).await? {
        Some(offset) if offset == size => {}
        other => bail!("the server reports offset {other:?} for the whole file, expected {size}"),
    }
    let _ = std::fs::remove_file(&state_path);
    Ok(Uploaded {
        url: state.url,
        length: size,
        resumed,
    })
}

/// Creates the uploads: one, or N partials and then their final at once.
async fn create(
    conn: &mut Conn,
    config: &ClientConfig,
    file: &Path,
    size: u64,
    modified_ns: u128,
) -> Result<State> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = format!("filename {}", STANDARD.encode(name.as_bytes()));
    let n = config.parallel.max(1) as u64;
    let mut parts = Vec::new();
    let url = if n == 1 || size < n {
        let url = conn
            .post(
                &config.to,
                &[
                    ("upload-length", size.to_string()),
                    ("upload-metadata", metadata),
                ],
            )
            .await?;
        parts.push(Part {
            url: url.clone(),
            base: 0,
            length: size,
        });
        url
    } else {
        let each = size / n;
        for i in 0..n {
            let base = i * each;
            let length = if i == n - 1 { size - base } else { each };
            let url = conn
                .post(
                    &config.to,
                    &[
                        ("upload-length", length.to_string()),
                        ("upload-concat", "partial".into()),
                    ],
                )
                .await?;
            parts.push(Part { url, base, length });
        }
        let list: Vec<&str> = parts.iter().map(|p| p.url.as_str()).collect();
        conn.post(
            &config.to,
            &[
                ("upload-concat", format!("final;{}", list.join(" "))),
                ("upload-metadata", metadata),
            ],
        )
        .await?
    };
    Ok(State {
        endpoint: config.to.clone(),
        size,
        modified_ns,
        url,
        parts,
    })
}

/// Sends one part from wherever the server's offset says, chunk by chunk, surviving up to
/// `config.retries` failures in a row.
async fn send_part(
    mut conn: Conn,
    part: Part,
    source: Arc<std::fs::File>,
    config: &ClientConfig,
    bar: indicatif::ProgressBar,
) -> Result<()> {
    let mut failures = 0;
    let mut offset = None;
    // What this part has added to the shared bar, so that a resume from a lower offset can
    // take it back.
    let mut shown = 0;
    let mut ahead: Option<(u64, Loading)> = None;
    loop {
        let at = match offset {
            Some(at) => at,
            None => match conn.head_offset(&part.url).await {
                Ok(Some(at)) => {
                    show(&bar, &mut shown, at);
                    at
                }
                Ok(None) => bail!("{} no longer exists on the server", part.url),
                Err(e) => {
                    failures += 1;
                    if failures > config.retries {
                        return Err(e);
                    }
                    backoff(failures).await;
                    continue;
                }
            },
        };
        if at >= part.length {
            return Ok(());
        }
        let len = config.chunk_size.min(part.length - at);
        let loading = match ahead.take() {
            Some((from, loading)) if from == at => loading,
            _ => load(&source, part.base + at, len, config.checksum),
        };
        let (chunk, checksum) = loading.await??;
        // The next chunk is read and hashed while this one is on the wire.
        let next = at + len;
        if next < part.length {
            let next_len = config.chunk_size.min(part.length - next);
            ahead = Some((
                next,
                load(&source, part.base + next, next_len, config.checksum),
            ));
        }
        let outcome = conn
            .patch(&part.url, at, Bytes::from(chunk), checksum.as_deref())
            .await;
        match outcome {
            Ok((StatusCode::NO_CONTENT, Some(next))) => {
                show(&bar, &mut shown, next);
                offset = Some(next);
                failures = 0;
            }
            Ok((status, _))
                if status.is_client_error()
                    && !matches!(status.as_u16(), 408 | 409 | 423 | 460) =>
            {
                bail!("the server refused a PATCH of {}: {status}", part.url)
            }
            other => {
                failures += 1;
                if failures > config.retries {
                    let last = match &other {
                        Ok((status, _)) => format!("the server answered {status}"),
                        Err(e) => format!("{e:#}"),
                    };
                    bail!(
                        "{} failed {failures} times in a row; last, {last}",
                        part.url
                    );
                }
                // Ask the server where to go on from.
                offset = None;
                backoff(failures).await;
            }
        }
    }
}

/// A chunk being read from the file and hashed, on the blocking pool: its bytes and their
/// `Upload-Checksum` (none with `--checksum none`).
type Loading = tokio::task::JoinHandle<std::io::Result<(Vec<u8>, Option<String>)>>;

/// Starts reading `len` bytes at `from` and hashing them.
fn load(source: &Arc<std::fs::File>, from: u64, len: u64, checksum: ChunkChecksum) -> Loading {
    let source = Arc::clone(source);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        source.read_exact_at(&mut buf, from)?;
        let header = checksum.header(&buf);
        Ok((buf, header))
    })
}

fn show(bar: &indicatif::ProgressBar, shown: &mut u64, now: u64) {
    if now >= *shown {
        bar.inc(now - *shown);
    } else {
        bar.dec(*shown - now);
    }
    *shown = now;
}

async fn backoff(failures: u32) {
    tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
}

/// `http://host:port/path` as (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((
        authority.to_owned(),
        if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    ))
}

/// One HTTP/1.1 connection to the server, opened again after it breaks.
struct Conn {
    authority: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(authority: String) -> Conn {
        Conn {
            authority,
            sender: None,
        }
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<(Response<()>, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let addr = plumbing::resolve(&self.authority).await?;
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("cannot connect to {addr}"))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((Response::from_parts(parts, ()), body))
        }
        .await;
        result.map_err(|e| {
            self.sender = None;
            anyhow!(e)
        })
    }

    fn request(&self, method: &str, url: &str) -> Result<hyper::http::request::Builder> {
        let (authority, path) = split_url(url)?;
        Ok(Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority)
            .header("tus-resumable", TUS_VERSION))
    }

    async fn post(&mut self, endpoint: &str, headers: &[(&str, String)]) -> Result<String> {
        let mut request = self.request("POST", endpoint)?;
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let (response, body) = self.send(request.body(Full::new(Bytes::new()))?).await?;
        if response.status() != StatusCode::CREATED {
            bail!(
                "creating an upload: {} {}",
                response.status(),
                String::from_utf8_lossy(&body).trim()
            );
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("the server created an upload without a Location"))?;
        Ok(if location.starts_with('/') {
            let (authority, _) = split_url(endpoint)?;
            format!("http://{authority}{location}")
        } else {
            location.to_owned()
        })
    }

    /// The upload's offset, `None` if it is gone.
    async fn head_offset(&mut self, url: &str) -> Result<Option<u64>> {
        let (response, _) = self
            .send(self.request("HEAD", url)?.body(Full::new(Bytes::new()))?)
            .await?;
        if matches!(
            response.status(),
            StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::FORBIDDEN
        ) {
            return Ok(None);
        }
        Ok(offset_of(&response))
    }

    async fn patch(
        &mut self,
        url: &str,
        at: u64,
        chunk: Bytes,
        checksum: Option<&str>,
    ) -> Result<(StatusCode, Option<u64>)> {
        let mut request = self
            .request("PATCH", url)?
            .header("content-type", OFFSET_OCTET_STREAM)
            .header("upload-offset", at);
        if let Some(checksum) = checksum {
            request = request.header("upload-checksum", checksum);
        }
        let request = request.body(Full::new(chunk))?;
        let (response, _) = self.send(request).await?;
        Ok((response.status(), offset_of(&response)))
    }
}

fn offset_of(response: &Response<()>) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
