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
    // TODO: Stage 2 (one part), 5 (`parallel`), 6 (resume). The `upload` of the contract's
    // "Commands": the whole file on the server, checked by a HEAD of the whole, resuming only from
    // a state file of the same endpoint, size and modification time whose first part still answers
    // HEAD. The state file is written atomically (tmp + rename) and removed at the end. `create`,
    // `send_part` on a `Conn` each (`tokio::task::JoinSet`), `State`.
    todo!()
}

/// Creates the uploads: one, or N partials and then their final at once.
async fn create(
    conn: &mut Conn,
    config: &ClientConfig,
    file: &Path,
    size: u64,
    modified_ns: u128,
) -> Result<State> {
    // TODO: Stage 2 and 5. One upload with `Upload-Length` and `Upload-Metadata: filename BASE64`, or
    // N partials (`Upload-Concat: partial`, the last one takes the remainder) followed at once by
    // `Upload-Concat: final;URL URL...` with the metadata.
    todo!()
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
    // TODO: Stage 2. The part on the server from the offset its HEAD gives, in PATCHes of at most
    // `chunk_size` bytes, each with the `Upload-Checksum` that `config.checksum.header` gives (no
    // header for `--checksum none`). A network error, 408, 409, 423, 460 or a 5xx is survived up
    // to `retries` times in a row (`backoff`, then HEAD again); another 4xx is fatal.
    // `FileExt::read_exact_at` on the blocking pool; `show` for the progress bar.
    todo!()
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
