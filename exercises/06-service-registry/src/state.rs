//! The registry: services and their checks, the index every change moves, the TTL deadlines,
//! and one watch channel per service name so that a blocking query wakes for the changes that
//! concern it and no others.
//!
//! Every change is first made a [`Record`], then applied: the same [`Registry::apply`] runs for
//! a live change and for a record replayed from the journal, so a restart rebuilds exactly what
//! was acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::protocol::{Registration, Status};

/// The agent's own node, as catalog and health answers show it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node name (`--node`).
    pub name: String,
    /// The address instances without one of their own are reached at (`--advertise`).
    pub address: String,
    /// The datacenter (`--datacenter`).
    pub datacenter: String,
}

/// A registered service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its ID, unique on the agent.
    pub id: String,
    /// The service name instances share.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address; empty means the node's.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// The index at which it was first registered.
    pub create_index: u64,
    /// The index of its last change.
    pub modify_index: u64,
    /// The IDs of its checks.
    pub checks: Vec<String>,
}

/// A TTL check of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Its ID (`service:<service id>` by default).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The service it belongs to.
    pub service_id: String,
    /// That service's name.
    pub service_name: String,
    /// Its state.
    pub status: Status,
    /// The output of the last update (`TTL expired` after an expiry).
    pub output: String,
    /// Notes given at registration.
    pub notes: String,
    /// Critical when not updated for this long.
    pub ttl: Duration,
    /// Deregister the service once critical for this long.
    pub deregister_after: Option<Duration>,
    /// The index at which it was registered.
    pub create_index: u64,
    /// The index of its last change.
    pub modify_index: u64,
}

/// One acknowledged change, as applied and as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Record {
    /// A service registered (or registered again), with its checks.
    Register {
        /// The index of the change.
        index: u64,
        /// The service.
        service: Service,
        /// Its checks, with their states.
        checks: Vec<Check>,
    },
    /// A service removed, with its checks.
    Deregister {
        /// The index of the change.
        index: u64,
        /// The service ID.
        id: String,
    },
    /// A check's state or output changed.
    Check {
        /// The index of the change.
        index: u64,
        /// The check ID.
        id: String,
        /// The new state.
        status: Status,
        /// The new output.
        output: String,
    },
    /// The indices of service names, so that a name's index never goes backwards, even after
    /// its last instance is gone (the first record of a compacted journal).
    Names {
        /// The registry's index.
        index: u64,
        /// Each name's last index.
        names: BTreeMap<String, u64>,
    },
}

/// Why a change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No service has this ID.
    #[error(
        "Unknown service ID \"{0}\". Ensure that the service ID is passed, not the service name."
    )]
    UnknownService(String),
    /// No check has this ID.
    #[error("Unknown check ID \"{0}\". Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(String),
    /// The check ID is another service's.
    #[error("Check ID \"{0}\" belongs to another service")]
    CheckTaken(String),
    /// The registry holds as many services as it may.
    #[error("Too many services registered (limit: {0})")]
    TooManyServices(usize),
}

/// What a blocking query waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Any change at all (the lists of services and of checks).
    All,
    /// Changes to instances and checks of this service name.
    Name(&'a str),
}

struct NameState {
    index: u64,
    changed: watch::Sender<u64>,
}

/// The registry's state. Not thread-safe by itself: the server keeps it behind a mutex, held
/// briefly and never across an `.await`.
pub struct Registry {
    node: Node,
    index: u64,
    max_services: usize,
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, Check>,
    /// When each check turned critical, for DeregisterCriticalServiceAfter.
    critical_since: HashMap<String, Instant>,
    /// TTL deadlines, earliest first, and each check's current one.
    deadlines: BTreeSet<(Instant, String)>,
    deadline_of: HashMap<String, Instant>,
    names: HashMap<String, NameState>,
    changed: watch::Sender<u64>,
}

impl Registry {
    /// An empty registry on `node` holding at most `max_services` instances.
    pub fn new(node: Node, max_services: usize) -> Registry {
        Registry {
            node,
            index: 1,
            max_services,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            critical_since: HashMap::new(),
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            names: HashMap::new(),
            changed: watch::Sender::new(1),
        }
    }

    /// The registry's index: it moves on every change and never goes backwards.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many service instances are registered.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether no instance is registered.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Registers (or registers again) a service and applies it; returns the record to journal.
    ///
    /// A check registered again under the same ID keeps its state, so that a client that
    /// re-registers on a timer does not flap its instance to critical.
    ///
    /// # Errors
    /// [`RegistryError::CheckTaken`] or [`RegistryError::TooManyServices`].
    pub fn register(&mut self, reg: Registration, now: Instant) -> Result<Record, RegistryError> {
        // TODO: the contract's "Registering": check IDs `service:<id>`, or `service:<id>:<n>` from
        // 1 when there are several; a check whose ID already exists keeps its status and output; a
        // check ID that is another service's is `CheckTaken`; a new ID past `max_services` is
        // `TooManyServices`. The record is built at index `self.index + 1`, then applied (`apply`).
        todo!()
    }

    /// Removes a service and its checks; returns the record to journal.
    ///
    /// # Errors
    /// [`RegistryError::UnknownService`].
    pub fn deregister(&mut self, id: &str, now: Instant) -> Result<Record, RegistryError> {
        // TODO: `UnknownService` unless the ID is registered; else a `Record::Deregister` at
        // index + 1, applied.
        todo!()
    }

    /// Updates a TTL check: its deadline starts again, and its state and output become these.
    /// Returns a record only when the state or output changed: a heartbeat that changes
    /// nothing moves no index and wakes no watcher.
    ///
    /// # Errors
    /// [`RegistryError::UnknownCheck`].
    pub fn update_check(
        &mut self,
        id: &str,
        status: Status,
        output: &str,
        now: Instant,
    ) -> Result<Option<Record>, RegistryError> {
        // TODO: restart the check's TTL deadline at `now + ttl` whatever happens; return `Ok(None)`
        // when status and output are unchanged (no index moves); else a `Record::Check`, applied.
        todo!()
    }

    /// The earliest TTL deadline, if any check has one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Turns critical every check whose TTL ran out by `now`; returns the records to journal.
    pub fn expire(&mut self, now: Instant) -> Vec<Record> {
        // TODO: pop every deadline `<= now`; each check still there becomes critical with output
        // `TTL_EXPIRED` through a `Record::Check` (skip one already expired).
        todo!()
    }

    /// Deregisters every service with a check critical for longer than its
    /// DeregisterCriticalServiceAfter (and at least `minimum`); returns the records to journal.
    pub fn reap(&mut self, now: Instant, minimum: Duration) -> Vec<Record> {
        // TODO: collect the service IDs of checks that are critical, have `deregister_after`, and have
        // been critical (`critical_since`) for at least `deregister_after.max(minimum)`; deregister each.
        todo!()
    }

    /// Applies a record: a live change just made, or one replayed from the journal (whose TTL
    /// deadlines then start again from `now`).
    pub fn apply(&mut self, record: &Record, now: Instant) {
        // TODO: the only function that changes the maps, live or replayed: after it, the services,
        // their checks (TTL deadlines from `now`, `critical_since` for critical ones) and the
        // indices are what the record says. Every name touched gets a higher index (never lower)
        // sent on its own `watch::Sender`, and `self.index` moves on and is sent on `self.changed`
        // (`send_replace`).
        todo!()
    }

    /// The records that rebuild this registry: what a compacted journal holds.
    pub fn snapshot(&self) -> Vec<Record> {
        // TODO: a `Record::Names` with every name's index first, then one `Record::Register` per
        // service (at its modify index) with its checks.
        todo!()
    }

    /// The index a query over `scope` answers with: never zero, never backwards.
    pub fn index_of(&self, scope: Scope<'_>) -> u64 {
        // TODO: `Scope::All` is `self.index`; a name is its own index, 1 when never seen.
        todo!()
    }

    /// A receiver that sees a new value when something in `scope` changes. A name nobody has
    /// registered yet is watched through the registry's own channel, so that queries for
    /// made-up names cannot make the registry keep one channel each.
    pub fn subscribe(&self, scope: Scope<'_>) -> watch::Receiver<u64> {
        // TODO: the name's `watch::Sender::subscribe()`; for `Scope::All`, and for a name never
        // registered, `self.changed.subscribe()` (so made-up names cost no channel).
        todo!()
    }

    /// `GET /v1/agent/services`: every instance by ID.
    pub fn agent_services(&self) -> Value {
        // TODO: a JSON object from each service's ID to `self.agent_service_json(s)`.
        todo!()
    }

    /// `GET /v1/agent/service/:id`.
    pub fn agent_service(&self, id: &str) -> Option<Value> {
        // TODO: `self.services.get(id)` through `agent_service_json`.
        todo!()
    }

    /// `GET /v1/catalog/services`: each name with the union of its instances' tags.
    pub fn catalog_services(&self) -> Value {
        // TODO: each name with the union of its instances' tags (`BTreeMap<&str, BTreeSet<&str>>`), as JSON.
        todo!()
    }

    /// `GET /v1/catalog/service/:name`, filtered by tags.
    pub fn catalog_service(&self, name: &str, tags: &[String]) -> Value {
        // TODO: one row per instance of `name` with every tag in `tags` (tags compare ignoring
        // ASCII case): Node, Address, Datacenter, ServiceID, ServiceName, ServiceTags, ServiceAddress,
        // ServicePort, ServiceMeta, CreateIndex, ModifyIndex... (the contract lists the fields).
        todo!()
    }

    /// `GET /v1/health/service/:name`: instances with their node and checks, filtered by tags
    /// and, with `passing`, to those whose checks all pass.
    pub fn health_service(&self, name: &str, tags: &[String], passing: bool) -> Value {
        // TODO: rows of `{Node, Service, Checks}`: Checks holds `node_check_json()` then the
        // instance's checks through `check_json`; with `passing`, keep an instance only when none of its
        // checks is warning or critical.
        todo!()
    }

    /// `GET /v1/health/checks/:name`: the checks of every instance of a service.
    pub fn health_checks(&self, name: &str) -> Value {
        // TODO: `check_json` of every check whose `service_name` is `name`.
        todo!()
    }

    /// `GET /v1/health/state/:state`: every check in that state (`None` is `any`), the node's
    /// own check included.
    pub fn health_state(&self, state: Option<Status>) -> Value {
        // TODO: the node's check (it is passing) when `state` is None or Passing, then every check
        // in that state.
        todo!()
    }

    /// The instances of `name` with `tag` (any when `None`) whose checks all pass, as DNS
    /// answers them: (ID, address, port).
    pub fn passing_instances(&self, name: &str, tag: Option<&str>) -> Vec<(String, String, u16)> {
        // TODO: the instances of `name` (with `tag`, ignoring case) whose checks all pass, with
        // the node's address for an instance registered without one.
        todo!()
    }

    fn agent_service_json(&self, s: &Service) -> Value {
        json!({
            "ID": s.id,
            "Service": s.name,
            "Tags": s.tags,
            "Meta": s.meta,
            "Port": s.port,
            "Address": s.address,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false,
            "Datacenter": self.node.datacenter,
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        })
    }

    fn check_json(&self, c: &Check) -> Value {
        let tags = self
            .services
            .get(&c.service_id)
            .map(|s| s.tags.clone())
            .unwrap_or_default();
        json!({
            "Node": self.node.name,
            "CheckID": c.id,
            "Name": c.name,
            "Status": c.status.as_str(),
            "Notes": c.notes,
            "Output": c.output,
            "ServiceID": c.service_id,
            "ServiceName": c.service_name,
            "ServiceTags": tags,
            "Type": "ttl",
            "CreateIndex": c.create_index,
            "ModifyIndex": c.modify_index,
        })
    }

    /// The node's own check, always passing: Consul lists its `serfHealth` check with every
    /// instance, and clients that count checks expect it.
    fn node_check_json(&self) -> Value {
        json!({
            "Node": self.node.name,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "CreateIndex": 1,
            "ModifyIndex": 1,
        })
    }
}

/// The output of a check whose TTL ran out, as Consul writes it.
pub const TTL_EXPIRED: &str = "TTL expired";
