//! The command-line client, in the manner of `consul`: one HTTP request per command (a loop
//! of blocking queries for `watch`), its answer printed for people or, for `watch`, as JSON
//! lines.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// An agent's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// `X-Consul-Index`, if the answer had one.
    pub index: Option<u64>,
    /// The body.
    pub body: String,
}

/// Sends one request to the agent at `addr` and reads the whole answer.
///
/// # Errors
/// When the agent cannot be reached or the answer is not HTTP.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Reply> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the agent at {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        index,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Like [`request`], failing with the agent's own message unless the status is 200.
///
/// # Errors
/// As [`request`], or when the agent refuses.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Reply> {
    let reply = request(addr, method, path, body).await?;
    if reply.status != 200 {
        bail!("the agent answered {}: {}", reply.status, reply.body.trim());
    }
    Ok(reply)
}

/// What `register` sends.
#[derive(Debug, Clone, Default)]
pub struct RegisterArgs {
    /// Service name.
    pub name: String,
    /// Instance ID (the name when empty).
    pub id: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// A TTL check with this TTL, as a Go duration (`10s`).
    pub ttl: Option<String>,
    /// DeregisterCriticalServiceAfter of that check.
    pub deregister_after: Option<String>,
}

/// The registration body for `args`.
pub fn registration_body(args: &RegisterArgs) -> String {
    let mut body = json!({
        "Name": args.name,
        "Tags": args.tags,
        "Address": args.address,
        "Port": args.port,
    });
    if !args.id.is_empty() {
        body["ID"] = json!(args.id);
    }
    if let Some(ttl) = &args.ttl {
        let mut check = json!({ "TTL": ttl });
        if let Some(after) = &args.deregister_after {
            check["DeregisterCriticalServiceAfter"] = json!(after);
        }
        body["Check"] = check;
    }
    body.to_string()
}

/// `services`: one line per service name, with its tags.
pub fn render_services(body: &str) -> Result<String> {
    let value: Value = serde_json::from_str(body).context("the agent's answer is not JSON")?;
    let Value::Object(map) = value else {
        bail!("the agent's answer is not an object");
    };
    let mut out = String::new();
    for (name, tags) in map {
        let tags: Vec<&str> = tags
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!("{name}\t{}\n", tags.join(",")));
    }
    Ok(out)
}

/// The instances of a `/v1/health/service` answer, reduced to what a watcher wants: ID,
/// address, port and the worst status of its checks.
pub fn instances(body: &str) -> Result<Vec<Value>> {
    let value: Value = serde_json::from_str(body).context("the agent's answer is not JSON")?;
    let rows = value.as_array().cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|row| {
            let service = &row["Service"];
            let statuses: Vec<&str> = row["Checks"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["Status"].as_str()).collect())
                .unwrap_or_default();
            let status = ["critical", "warning"]
                .into_iter()
                .find(|s| statuses.contains(s))
                .unwrap_or("passing");
            let address = match service["Address"].as_str() {
                Some(a) if !a.is_empty() => a,
                _ => row["Node"]["Address"].as_str().unwrap_or(""),
            };
            json!({
                "id": service["ID"],
                "address": address,
                "port": service["Port"],
                "status": status,
            })
        })
        .collect())
}

/// `health NAME`: one line per instance: ID, ADDRESS:PORT, status.
pub fn render_health(body: &str) -> Result<String> {
    let mut out = String::new();
    for i in instances(body)? {
        out.push_str(&format!(
            "{}\t{}:{}\t{}\n",
            i["id"].as_str().unwrap_or(""),
            i["address"].as_str().unwrap_or(""),
            i["port"],
            i["status"].as_str().unwrap_or("")
        ));
    }
    Ok(out)
}

/// `watch NAME`: blocking queries in a loop, printing `{"index":N,"instances":[...]}` each
/// time the answer's index moves, with Consul's client rules: an index that went backwards
/// starts again from zero, and an index is never less than one.
///
/// # Errors
/// When the agent cannot be reached or refuses.
pub async fn watch(addr: SocketAddr, name: &str, passing: bool, wait: Duration) -> Result<()> {
    // TODO: the loop this doc describes, over blocking queries of `/v1/health/service/NAME`
    // (`call`), printing each answer whose `X-Consul-Index` moved (`instances(body)`); the reset
    // rule is the contract's "Blocking queries".
    todo!()
}
