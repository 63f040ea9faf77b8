//! `net`: the project's own network, in the spirit of Maelstrom. Given in full: it is the
//! test bench, not the exercise.
//!
//! It starts N node processes, sends each `init` and a `topology` (a grid, as Maelstrom does),
//! then routes every line a node prints: to another node after `latency`, unless the message is
//! lost (`loss`) or crosses a partition; to the client after `latency`. The client sends
//! `broadcast`s of fresh integers and `read`s to random nodes at `rate` per second for
//! `time_limit`; then the partitions heal and the client reads every node until every
//! acknowledged value is on every node, or `settle` runs out. Client messages are delayed but
//! never lost nor partitioned. The report checks the history and measures the cost.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::time::Instant;

use crate::rng::Rng;

/// How a network run goes.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node binary.
    pub bin: PathBuf,
    /// Arguments for each node (`node` and its flags).
    pub node_args: Vec<String>,
    /// Number of nodes.
    pub nodes: usize,
    /// One-way delay of every message.
    pub latency: Duration,
    /// Probability that a node-to-node message is lost.
    pub loss: f64,
    /// Windows (from the start of the workload) during which the nodes are split in two
    /// random halves.
    pub partitions: Vec<(Duration, Duration)>,
    /// Client operations per second, half broadcasts and half reads.
    pub rate: f64,
    /// How long the workload runs.
    pub time_limit: Duration,
    /// How long the final reads may wait for convergence.
    pub settle: Duration,
    /// Seed of every random choice of the run.
    pub seed: u64,
}

/// Stable-latency quantiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// What a run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Whether the history checks out: nothing lost, nothing invented, no crash, no garbage.
    pub valid: bool,
    /// What was wrong, one line each.
    pub problems: Vec<String>,
    /// Nodes started.
    pub nodes: usize,
    /// Client operations during the workload.
    pub ops: u64,
    /// Broadcasts sent, and acknowledged with `broadcast_ok`.
    pub broadcasts: u64,
    /// Broadcasts acknowledged.
    pub acknowledged: u64,
    /// Reads during the workload that were answered.
    pub reads: u64,
    /// Replies of type `error`.
    pub errors: u64,
    /// Node-to-node messages sent during the workload.
    pub server_msgs: u64,
    /// `server_msgs / ops`.
    pub msgs_per_op: f64,
    /// Node-to-node messages dropped (loss or partition), whole run.
    pub dropped: u64,
    /// Acknowledged values missing from some node's final read (the first 20).
    pub lost: Vec<i64>,
    /// Values read that nobody broadcast (the first 20).
    pub invented: Vec<i64>,
    /// Time from a broadcast until every later read had it, over acknowledged values.
    pub stable_latency_ms: Quantiles,
    /// Time from the end of the workload until every node had every value, if they did.
    pub converged_after_ms: Option<f64>,
    /// The most a message was delivered after its time during the workload: how far `net`
    /// itself fell behind (a machine too busy to give it the CPU it needs), which every
    /// latency above includes.
    pub behind_ms: f64,
}

#[derive(Debug)]
enum Event {
    Line(usize, String),
    Closed(usize),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    ToNode(usize, String),
    ToClient(String),
}

#[derive(Debug)]
enum Pending {
    Broadcast(i64),
    Read {
        node: usize,
        at: Instant,
        last: bool,
    },
    Setup,
}

/// Runs the network and returns its report.
pub async fn run(config: NetConfig) -> Result<Report> {
    if config.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let ids: Vec<String> = (0..config.nodes).map(|i| format!("n{i}")).collect();
    let index: HashMap<String, usize> = ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, s)| (s, i))
        .collect();
    let (events_tx, mut events) = mpsc::channel::<Event>(4096);
    let mut children: Vec<Child> = Vec::new();
    let mut inputs: Vec<mpsc::Sender<String>> = Vec::new();
    for i in 0..config.nodes {
        let mut child = Command::new(&config.bin)
            .args(&config.node_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", config.bin.display()))?;
        let mut stdin = child.stdin.take().context("stdin is piped")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let tx = events_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(Event::Line(i, line)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Closed(i)).await;
        });
        let (in_tx, mut in_rx) = mpsc::channel::<String>(4096);
        tokio::spawn(async move {
            // Every line waiting is written at once, in one system call: one per line would
            // make the cost of `net` grow with the load it is under.
            let mut buf = Vec::new();
            while let Some(line) = in_rx.recv().await {
                buf.clear();
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                while buf.len() < WRITE_BATCH {
                    let Ok(line) = in_rx.try_recv() else { break };
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                }
                if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        children.push(child);
        inputs.push(in_tx);
    }
    drop(events_tx);

    let mut net = Net {
        config: config.clone(),
        rng: Rng::new(config.seed),
        ids,
        index,
        heap: BinaryHeap::new(),
        seq: 0,
        next_msg_id: 1,
        pending: HashMap::new(),
        report: Report {
            nodes: config.nodes,
            ..Report::default()
        },
        sides: Vec::new(),
        workload_start: None,
        counting: false,
        broadcast_at: BTreeMap::new(),
        acked: HashSet::new(),
        read_log: Vec::new(),
        final_reads: vec![None; config.nodes],
        setup_left: 0,
        backlog: vec![VecDeque::new(); config.nodes],
    };
    net.sides = (0..config.partitions.len())
        .map(|_| {
            let mut order: Vec<usize> = (0..config.nodes).collect();
            net.rng.shuffle(&mut order);
            let mut side = vec![false; config.nodes];
            for &i in &order[..config.nodes / 2] {
                side[i] = true;
            }
            side
        })
        .collect();

    // Setup: init and topology, and wait for every answer.
    let grid = grid_topology(&net.ids);
    for i in 0..config.nodes {
        let init = json!({ "type": "init", "node_id": net.ids[i], "node_ids": net.ids });
        net.client_send(i, init, Pending::Setup);
        let topo = json!({ "type": "topology", "topology": grid });
        net.client_send(i, topo, Pending::Setup);
    }
    net.setup_left = 2 * config.nodes;
    let setup_deadline = Instant::now() + Duration::from_secs(10) + 4 * config.latency;
    while net.setup_left > 0 {
        if Instant::now() >= setup_deadline {
            net.problem(format!(
                "{} of the {} init/topology requests got no _ok reply within 10s",
                net.setup_left,
                2 * config.nodes
            ));
            return Ok(net.finish(&mut children).await);
        }
        let poll = (Instant::now() + Duration::from_millis(10)).min(setup_deadline);
        if !net.step(&mut events, &inputs, poll).await {
            return Ok(net.finish(&mut children).await);
        }
    }

    // Workload.
    let start = Instant::now();
    net.workload_start = Some(start);
    net.counting = true;
    let end = start + config.time_limit;
    let gap = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let mut next_op = start;
    let mut value: i64 = 0;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_op {
            next_op += gap;
            let node = net.rng.below(config.nodes as u64) as usize;
            net.report.ops += 1;
            if net.rng.below(2) == 0 {
                value += 1;
                net.report.broadcasts += 1;
                net.broadcast_at.insert(value, now);
                let body = json!({ "type": "broadcast", "message": value });
                net.client_send(node, body, Pending::Broadcast(value));
            } else {
                let body = json!({ "type": "read" });
                net.client_send(
                    node,
                    body,
                    Pending::Read {
                        node,
                        at: now,
                        last: false,
                    },
                );
            }
        }
        if !net.step(&mut events, &inputs, next_op.min(end)).await {
            return Ok(net.finish(&mut children).await);
        }
    }
    net.counting = false;

    // Settle: partitions are over; read every node until all have every acknowledged value.
    let settle_start = Instant::now();
    let settle_end = settle_start + config.settle;
    let every = Duration::from_millis(250).max(config.latency);
    let mut next_round = settle_start;
    loop {
        let now = Instant::now();
        if net.converged() {
            net.report.converged_after_ms = Some(ms(now - settle_start));
            break;
        }
        if now >= settle_end {
            break;
        }
        if now >= next_round {
            next_round += every;
            for node in 0..config.nodes {
                let body = json!({ "type": "read" });
                net.client_send(
                    node,
                    body,
                    Pending::Read {
                        node,
                        at: now,
                        last: true,
                    },
                );
            }
        }
        if !net
            .step(&mut events, &inputs, next_round.min(settle_end))
            .await
        {
            return Ok(net.finish(&mut children).await);
        }
    }
    Ok(net.finish(&mut children).await)
}

struct Net {
    config: NetConfig,
    rng: Rng,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    heap: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    seq: u64,
    next_msg_id: u64,
    pending: HashMap<u64, Pending>,
    report: Report,
    /// For each partition window, which side each node is on.
    sides: Vec<Vec<bool>>,
    workload_start: Option<Instant>,
    counting: bool,
    broadcast_at: BTreeMap<i64, Instant>,
    acked: HashSet<i64>,
    /// Every answered read: when it was sent, and what it held.
    read_log: Vec<(Instant, HashSet<i64>)>,
    /// Each node's latest final read.
    final_reads: Vec<Option<HashSet<i64>>>,
    setup_left: usize,
    /// Lines due to each node that its stdin writer has no room for yet.
    backlog: Vec<VecDeque<String>>,
}

/// The most lines waiting for one node's stdin before `net` gives up on that node.
const MAX_BACKLOG: usize = 1_000_000;

/// Bytes of lines gathered into one write to a node's stdin, about.
const WRITE_BATCH: usize = 64 * 1024;

/// How often the network wakes up to deliver what is due and take in what the nodes printed:
/// each message comes up to this much after its latency.
const STEP: Duration = Duration::from_millis(5);

/// What `net` reads of a node's line to route it: the rest is skipped, not built.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    src: Cow<'a, str>,
    #[serde(borrow)]
    dest: Cow<'a, str>,
}

impl Net {
    fn problem(&mut self, what: String) {
        if self.report.problems.len() < 50 {
            self.report.problems.push(what);
        }
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, delivery)));
    }

    fn client_send(&mut self, node: usize, mut body: Value, pending: Pending) {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body["msg_id"] = json!(msg_id);
        self.pending.insert(msg_id, pending);
        let line = json!({ "src": "c1", "dest": self.ids[node], "body": body }).to_string();
        let at = Instant::now() + self.config.latency;
        self.schedule(at, Delivery::ToNode(node, line));
    }

    /// Whether `a` and `b` are cut apart right now.
    fn partitioned(&self, a: usize, b: usize) -> bool {
        let Some(start) = self.workload_start else {
            return false;
        };
        if !self.counting {
            return false;
        }
        let t = start.elapsed();
        self.config
            .partitions
            .iter()
            .zip(&self.sides)
            .any(|((from, to), side)| t >= *from && t < *to && side[a] != side[b])
    }

    /// Delivers what is due and takes in what nodes print, until `until`. False if a node died.
    async fn step(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
        inputs: &[mpsc::Sender<String>],
        until: Instant,
    ) -> bool {
        loop {
            // What the nodes printed since the last step, all of it.
            loop {
                match events.try_recv() {
                    Ok(event) => {
                        if !self.event(Some(event)) {
                            return false;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.event(None),
                }
            }
            let now = Instant::now();
            while let Some(Reverse((at, _, _))) = self.heap.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse((at, _, delivery))) = self.heap.pop() else {
                    break;
                };
                if self.counting {
                    self.report.behind_ms = self.report.behind_ms.max(ms(now - at));
                }
                match delivery {
                    Delivery::ToNode(i, line) => self.backlog[i].push_back(line),
                    Delivery::ToClient(line) => self.client_receive(&line),
                }
            }
            if !self.flush(inputs) {
                return false;
            }
            if now >= until {
                return true;
            }
            // One wake-up per `STEP`, not one per message: what is due meanwhile goes out
            // together (each node's lines in one write, so the node wakes once for them), and
            // what the nodes print is taken in together. A node behind on its stdin is tried
            // again sooner; the readers keep reading every node's stdout meanwhile, so that no
            // node ever waits on this loop to write.
            let step = if self.backlog.iter().any(|b| !b.is_empty()) {
                Duration::from_millis(1)
            } else {
                STEP
            };
            tokio::time::sleep_until((now + step).min(until)).await;
        }
    }

    /// Takes in one event from the nodes' readers. False if a node died.
    fn event(&mut self, event: Option<Event>) -> bool {
        match event {
            Some(Event::Line(i, line)) => {
                self.node_output(i, line);
                true
            }
            Some(Event::Closed(i)) => {
                self.problem(format!(
                    "{} exited (its stdout closed) during the run",
                    self.ids[i]
                ));
                false
            }
            None => {
                self.problem("every node's stdout closed".to_owned());
                false
            }
        }
    }

    /// Hands each node's waiting lines to its stdin writer, as many as it takes without
    /// waiting. False if a node's stdin is gone or a backlog outgrew its bound.
    fn flush(&mut self, inputs: &[mpsc::Sender<String>]) -> bool {
        for (i, backlog) in self.backlog.iter_mut().enumerate() {
            while let Some(line) = backlog.pop_front() {
                match inputs[i].try_send(line) {
                    Ok(()) => {}
                    Err(TrySendError::Full(line)) => {
                        backlog.push_front(line);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => {
                        let what = format!("node {} stopped reading its stdin", self.ids[i]);
                        self.report.problems.push(what);
                        return false;
                    }
                }
            }
            if backlog.len() > MAX_BACKLOG {
                let what = format!(
                    "node {} fell more than {MAX_BACKLOG} messages behind on its stdin",
                    self.ids[i]
                );
                self.report.problems.push(what);
                return false;
            }
        }
        true
    }

    fn node_output(&mut self, from: usize, line: String) {
        let parsed = serde_json::from_str::<Envelope>(&line)
            .ok()
            .map(|e| (e.src.into_owned(), e.dest.into_owned()));
        let Some((src, dest)) = parsed else {
            self.problem(format!(
                "{} printed a line that is not a message: {}",
                self.ids[from],
                clip(&line)
            ));
            return;
        };
        if src != self.ids[from] {
            self.problem(format!(
                "{} sent a message with src {src:?}: {}",
                self.ids[from],
                clip(&line)
            ));
        }
        let at = Instant::now() + self.config.latency;
        if let Some(&to) = self.index.get(&dest) {
            if self.counting {
                self.report.server_msgs += 1;
            }
            let lost = self.config.loss > 0.0 && self.rng.chance(self.config.loss);
            if lost || self.partitioned(from, to) {
                self.report.dropped += 1;
                return;
            }
            self.schedule(at, Delivery::ToNode(to, line));
        } else if dest == "c1" {
            self.schedule(at, Delivery::ToClient(line));
        } else {
            self.problem(format!(
                "{} sent to {dest:?}, which is no node and no client",
                self.ids[from]
            ));
        }
    }

    fn client_receive(&mut self, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let body = &message["body"];
        let Some(pending) = body["in_reply_to"]
            .as_u64()
            .and_then(|id| self.pending.remove(&id))
        else {
            self.problem(format!("a reply to no pending request: {}", clip(line)));
            return;
        };
        let ty = body["type"].as_str().unwrap_or("");
        if ty == "error" {
            self.report.errors += 1;
            if let Pending::Setup = pending {
                self.problem(format!("init or topology failed: {}", clip(line)));
            }
            return;
        }
        match pending {
            Pending::Setup => {
                if ty == "init_ok" || ty == "topology_ok" {
                    self.setup_left = self.setup_left.saturating_sub(1);
                } else {
                    self.problem(format!(
                        "expected init_ok or topology_ok, got {}",
                        clip(line)
                    ));
                }
            }
            Pending::Broadcast(value) => {
                if ty == "broadcast_ok" {
                    self.acked.insert(value);
                    self.report.acknowledged += 1;
                } else {
                    self.problem(format!("expected broadcast_ok, got {}", clip(line)));
                }
            }
            Pending::Read { node, at, last } => {
                let Some(items) = body["messages"].as_array().filter(|_| ty == "read_ok") else {
                    self.problem(format!(
                        "expected read_ok with messages, got {}",
                        clip(line)
                    ));
                    return;
                };
                let mut seen = HashSet::with_capacity(items.len());
                for item in items {
                    let Some(v) = item.as_i64() else {
                        self.problem(format!("read_ok holds a non-integer: {}", clip(line)));
                        continue;
                    };
                    if !seen.insert(v) {
                        self.problem(format!("read_ok from {} lists {v} twice", self.ids[node]));
                    }
                    if !self.broadcast_at.contains_key(&v)
                        && self.report.invented.len() < 20
                        && !self.report.invented.contains(&v)
                    {
                        self.report.invented.push(v);
                    }
                }
                if !last {
                    self.report.reads += 1;
                } else {
                    self.final_reads[node] = Some(seen.clone());
                }
                self.read_log.push((at, seen));
            }
        }
    }

    fn converged(&self) -> bool {
        self.final_reads.iter().all(|r| {
            r.as_ref()
                .is_some_and(|r| self.acked.iter().all(|v| r.contains(v)))
        })
    }

    async fn finish(mut self, children: &mut [Child]) -> Report {
        for child in children.iter_mut() {
            let _ = child.start_kill();
        }
        for child in children.iter_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        }
        let mut lost: Vec<i64> = self
            .acked
            .iter()
            .copied()
            .filter(|v| {
                !self
                    .final_reads
                    .iter()
                    .all(|r| r.as_ref().is_some_and(|r| r.contains(v)))
            })
            .collect();
        lost.sort_unstable();
        if !lost.is_empty() {
            self.problem(format!(
                "{} acknowledged values are missing from some node's final read",
                lost.len()
            ));
        }
        lost.truncate(20);
        self.report.lost = lost;
        if !self.report.invented.is_empty() {
            self.problem(format!(
                "reads returned values nobody broadcast: {:?}",
                self.report.invented
            ));
        }
        self.report.msgs_per_op = if self.report.ops == 0 {
            0.0
        } else {
            self.report.server_msgs as f64 / self.report.ops as f64
        };
        self.report.stable_latency_ms = self.stable_latencies();
        self.report.valid = self.report.problems.is_empty();
        self.report
    }

    /// For each acknowledged value: the time from its broadcast to the last read sent after it
    /// that did not hold it (zero when every later read held it).
    fn stable_latencies(&self) -> Quantiles {
        let mut reads: Vec<&(Instant, HashSet<i64>)> = self.read_log.iter().collect();
        reads.sort_by_key(|r| r.0);
        let mut latencies: Vec<f64> = Vec::new();
        for (value, at) in &self.broadcast_at {
            if !self.acked.contains(value) {
                continue;
            }
            let last_miss = reads
                .iter()
                .rev()
                .take_while(|r| r.0 > *at)
                .find(|r| !r.1.contains(value))
                .map(|r| r.0);
            latencies.push(last_miss.map_or(0.0, |m| ms(m - *at)));
        }
        latencies.sort_by(f64::total_cmp);
        let q = |f: f64| {
            if latencies.is_empty() {
                0.0
            } else {
                latencies[((latencies.len() - 1) as f64 * f).round() as usize]
            }
        };
        Quantiles {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: q(1.0),
        }
    }
}

/// Maelstrom's default topology: the nodes in a square-ish grid, each joined to its
/// up, down, left and right neighbours.
pub fn grid_topology(ids: &[String]) -> Value {
    let n = ids.len();
    let width = (n as f64).sqrt().ceil().max(1.0) as usize;
    let mut map = serde_json::Map::new();
    for (i, id) in ids.iter().enumerate() {
        let mut near = Vec::new();
        if i % width > 0 {
            near.push(ids[i - 1].clone());
        }
        if i % width + 1 < width && i + 1 < n {
            near.push(ids[i + 1].clone());
        }
        if i >= width {
            near.push(ids[i - width].clone());
        }
        if i + width < n {
            near.push(ids[i + width].clone());
        }
        map.insert(id.clone(), json!(near));
    }
    Value::Object(map)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn clip(line: &str) -> String {
    if line.len() <= 200 {
        line.to_owned()
    } else {
        let mut end = 200;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &line[..end])
    }
}
