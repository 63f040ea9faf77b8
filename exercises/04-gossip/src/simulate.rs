//! The round simulator: N nodes, one rumor, synchronous rounds, seeded.
//!
//! Each node is one byte of state (`SUSCEPTIBLE`, `INFECTED`, `REMOVED`, `CRASHED`, plus
//! `FRESH` for a node infected during the current round, which starts spreading next round),
//! and the counter stop rules add one byte of counter. The random k-regular topology adds
//! 4 bytes per neighbour. Nothing else grows with N, so a million nodes take one or two
//! megabytes, and a push round is one pass over the array with one random number per sender.

use serde::Serialize;

use crate::rng::Rng;

/// Never heard the rumor.
const SUSCEPTIBLE: u8 = 0;
/// Heard it before this round, spreads it.
const INFECTED: u8 = 1;
/// Heard it during this round; spreads from the next.
const FRESH: u8 = 2;
/// Heard it and lost interest (rumor mongering): answers pulls, pushes no more.
const REMOVED: u8 = 3;
/// Crashed from the start: never hears, never answers.
const CRASHED: u8 = 4;

/// Who talks to whom in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Informed nodes call random peers and tell them.
    Push,
    /// Uninformed nodes call random peers and ask.
    Pull,
    /// Every node calls a random peer; the call informs whichever side did not know.
    PushPull,
}

/// The graph peers are picked from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Anyone may call anyone.
    Complete,
    /// Node i calls i - 1 or i + 1 (mod N).
    Ring,
    /// A random regular graph of `degree` (even): the union of degree/2 random permutations.
    Regular,
    /// Watts-Strogatz small world: the ring lattice of `degree` (even) neighbours, degree/2 on
    /// each side, each edge's far end rewired to a random node with probability `rewire`.
    SmallWorld,
}

/// When an informed node stops spreading (Demers et al. 1987).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// Never: anti-entropy, every informed node spreads every round.
    Never,
    /// Feedback, coin: after a call that finds the peer informed, stop with probability 1/k.
    FeedbackCoin,
    /// Blind, coin: after every call, stop with probability 1/k.
    BlindCoin,
    /// Feedback, counter: stop after k calls that found the peer informed.
    FeedbackCounter,
    /// Blind, counter: stop after k calls.
    BlindCounter,
}

/// One simulation's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Push, pull or push-pull.
    pub mode: Mode,
    /// Calls per node per round.
    pub fanout: usize,
    /// The graph.
    pub topology: Topology,
    /// Degree of the regular and small-world topologies.
    pub degree: usize,
    /// Probability that a small-world edge is rewired (0: the ring lattice; 1: a random graph).
    pub rewire: f64,
    /// Probability that a call is lost.
    pub loss: f64,
    /// Fraction of nodes crashed from the start.
    pub crashed: f64,
    /// The stop rule.
    pub stop: Stop,
    /// The k of the stop rule.
    pub k: u32,
    /// Rounds after which a run gives up.
    pub max_rounds: usize,
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The run's seed.
    pub seed: u64,
    /// Rounds until every live node was informed, if that happened.
    pub rounds: Option<usize>,
    /// Rounds run (until all informed, no spreader left, or `max_rounds`).
    pub rounds_run: usize,
    /// Fraction of live nodes never informed at the end (rumor mongering's residue).
    pub residue: f64,
    /// Calls made in all.
    pub messages: u64,
    /// Wall-clock time of the run's rounds, in milliseconds (set up excluded).
    pub elapsed_ms: f64,
    /// Informed fraction of live nodes after each round, round 0 (the origin alone) first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<f64>,
}

/// A simulation in progress: the state array and the graph.
pub struct Sim {
    config: SimConfig,
    rng: Rng,
    state: Vec<u8>,
    counters: Vec<u8>,
    /// For the regular topology: `degree` neighbours per node, row by row; for the small
    /// world, node i's neighbours are `neighbours[offsets[i]..offsets[i + 1]]`.
    neighbours: Vec<u32>,
    offsets: Vec<u32>,
    live: usize,
    informed: usize,
    messages: u64,
}

impl Sim {
    /// A simulation with node 0 informed and the crashed nodes chosen, seeded with `seed`.
    pub fn new(config: SimConfig, seed: u64) -> Sim {
        // TODO: a run's start as the contract's "simulate" says: at least 2 nodes, node 0 informed,
        // every other node crashed with probability `crashed` (`rng.chance`) and `live` the rest;
        // and only what the topology and stop rule need: the neighbours of `regular` or
        // `small_world` (given), counters (one byte a node) for the counter rules.
        todo!()
    }

    /// Informed fraction of the live nodes.
    pub fn informed_fraction(&self) -> f64 {
        self.informed as f64 / self.live as f64
    }

    /// Whether some node still spreads (always, without a stop rule, until all know).
    fn spreading(&self) -> bool {
        self.config.stop == Stop::Never || self.state.contains(&INFECTED)
    }

    /// A random peer of `i`.
    fn peer(&mut self, i: usize) -> usize {
        // TODO: Complete: `rng.below_except(n, i)`. Ring: i + 1 or i - 1 (mod n), by a coin.
        // Regular: one of the `degree` entries of row i of `neighbours`. Small world: one of
        // `neighbours[offsets[i]..offsets[i + 1]]`.
        todo!()
    }

    /// Runs one synchronous round.
    pub fn round(&mut self) {
        // TODO: one synchronous round by the contract's "simulate" (who calls in each mode,
        // `fanout` calls to `peer(i)`, each counted in `messages` and lost with probability
        // `loss`): a node informed in this round is `FRESH` and spreads only from the next, and a
        // caller stops calling once its own state changed. Each call of an informed caller that
        // arrived is followed by `after_call(i, useless)` (a crashed peer is not useless); a lost
        // call has none.
        todo!()
    }

    /// The stop rule, after node `i` told a peer; `useless` when the peer already knew.
    fn after_call(&mut self, i: usize, useless: bool) {
        // TODO: The stop rules of Demers et al.: feedback coin stops on a useless call with
        // probability 1/k (`rng.below(k) == 0`); blind coin on any call; the counters count useless
        // calls (feedback) or all calls (blind) in `counters[i]` and stop at k. Stopping is
        // `state[i] = REMOVED`.
        todo!()
    }

    /// Runs rounds until every live node knows, nobody spreads, or `max_rounds`.
    pub fn run(mut self, seed: u64) -> RunResult {
        // TODO: the run of the contract's "simulate": `curve` from round 0, rounds until every live
        // node is informed (`rounds` is then the number run), nobody spreads any more, or
        // `max_rounds`; timed with `std::time::Instant` for `elapsed_ms`.
        todo!()
    }
}

/// A random `degree`-regular multigraph on `n` nodes: for each of degree/2 random
/// permutations p, node i is joined to p(i) and to p^-1(i).
fn regular(n: usize, degree: usize, rng: &mut Rng) -> Vec<u32> {
    let d = degree - degree % 2;
    let mut out = vec![0u32; n * d];
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for j in 0..d / 2 {
        rng.shuffle(&mut perm);
        for (i, &p) in perm.iter().enumerate() {
            out[i * d + 2 * j] = p;
            out[p as usize * d + 2 * j + 1] = i as u32;
        }
    }
    out
}

/// The Watts-Strogatz small world on `n` nodes as (neighbours, offsets): node i is joined to
/// i + 1 ... i + degree/2 (mod n), and each of those edges has its far end moved to a random
/// node other than i with probability `rewire` (Watts and Strogatz 1998). Edges are undirected:
/// each is in both ends' lists, so degrees vary around `degree` once edges are rewired.
fn small_world(n: usize, degree: usize, rewire: f64, rng: &mut Rng) -> (Vec<u32>, Vec<u32>) {
    let k = (degree / 2).max(1);
    let mut edges = Vec::with_capacity(n * k);
    for i in 0..n {
        for j in 1..=k {
            let far = if rewire > 0.0 && rng.chance(rewire) {
                rng.below_except(n as u64, i as u64) as usize
            } else {
                (i + j) % n
            };
            edges.push((i as u32, far as u32));
        }
    }
    let mut offsets = vec![0u32; n + 1];
    for &(a, b) in &edges {
        offsets[a as usize + 1] += 1;
        offsets[b as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut neighbours = vec![0u32; edges.len() * 2];
    for (a, b) in edges {
        neighbours[next[a as usize] as usize] = b;
        next[a as usize] += 1;
        neighbours[next[b as usize] as usize] = a;
        next[b as usize] += 1;
    }
    (neighbours, offsets)
}

/// Runs `runs` simulations with seeds `seed`, `seed + 1`, ...
pub fn simulate(config: &SimConfig, runs: usize, seed: u64) -> Vec<RunResult> {
    (0..runs as u64)
        .map(|r| Sim::new(config.clone(), seed + r).run(seed + r))
        .collect()
}

/// The JSON document `simulate --format json` prints: the configuration, the theory's
/// predictions for it, a summary over the runs, and the runs (with their curves if `curves`).
pub fn summary(config: &SimConfig, runs: &[RunResult], curves: bool) -> serde_json::Value {
    use crate::theory;
    let n = config.nodes as f64;
    let done: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.rounds)
        .map(|r| r as f64)
        .collect();
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            None
        } else {
            Some(xs.iter().sum::<f64>() / xs.len() as f64)
        }
    };
    let residues: Vec<f64> = runs.iter().map(|r| r.residue).collect();
    let messages: Vec<f64> = runs.iter().map(|r| r.messages as f64).collect();
    let rounds_run: usize = runs.iter().map(|r| r.rounds_run).sum();
    let elapsed: f64 = runs.iter().map(|r| r.elapsed_ms).sum();
    let longest = runs.iter().map(|r| r.curve.len()).max().unwrap_or(1);
    let (lower, upper) = theory::doerr_kuennemann_bounds(n);
    let mut th = serde_json::json!({
        "pittel_rounds": theory::pittel_rounds(n),
        "dk_lower": lower,
        "dk_upper": upper,
        "curve": theory::curve(config.mode, n, config.fanout, longest.saturating_sub(1)),
    });
    if config.stop == Stop::FeedbackCoin {
        th["rumor_residue"] = serde_json::json!(theory::rumor_residue(config.k));
    }
    let runs_json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if !curves && let Some(o) = v.as_object_mut() {
                o.remove("curve");
            }
            v
        })
        .collect();
    serde_json::json!({
        "config": config,
        "theory": th,
        "summary": {
            "runs": runs.len(),
            "completed": done.len(),
            "mean_rounds": mean(&done),
            "min_rounds": done.iter().copied().reduce(f64::min),
            "max_rounds": done.iter().copied().reduce(f64::max),
            "mean_residue": mean(&residues),
            "mean_messages": mean(&messages),
            "ms_per_round": if rounds_run == 0 { 0.0 } else { elapsed / rounds_run as f64 },
        },
        "runs": runs_json,
    })
}

/// The CSV `simulate --format csv` prints: `run,seed,round,informed_fraction`, one row per
/// round of every run.
pub fn csv(runs: &[RunResult]) -> String {
    let mut out = String::from("run,seed,round,informed_fraction\n");
    for (i, r) in runs.iter().enumerate() {
        for (round, f) in r.curve.iter().enumerate() {
            out.push_str(&format!("{i},{},{round},{f}\n", r.seed));
        }
    }
    out
}
