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
    /// The IDs of the name's instances, so that a read of one name never scans the others.
    ids: BTreeSet<String>,
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
        let old = self.services.get(&reg.id);
        if old.is_none() && self.services.len() >= self.max_services {
            return Err(RegistryError::TooManyServices(self.max_services));
        }
        let index = self.index + 1;
        let create_index = old.map_or(index, |s| s.create_index);
        let many = reg.checks.len() > 1;
        let mut checks = Vec::with_capacity(reg.checks.len());
        for (n, def) in reg.checks.into_iter().enumerate() {
            let id = match def.id.as_str() {
                "" if many => format!("service:{}:{}", reg.id, n + 1),
                "" => format!("service:{}", reg.id),
                given => given.to_owned(),
            };
            let existing = self.checks.get(&id);
            if let Some(existing) = existing
                && existing.service_id != reg.id
            {
                return Err(RegistryError::CheckTaken(id));
            }
            let (status, output, check_create) = match existing {
                Some(c) => (c.status, c.output.clone(), c.create_index),
                None => (def.status, String::new(), index),
            };
            let name = if def.name.is_empty() {
                format!("Service '{}' check", reg.name)
            } else {
                def.name
            };
            checks.push(Check {
                id,
                name,
                service_id: reg.id.clone(),
                service_name: reg.name.clone(),
                status,
                output,
                notes: def.notes,
                ttl: def.ttl,
                deregister_after: def.deregister_after,
                create_index: check_create,
                modify_index: index,
            });
        }
        let service = Service {
            id: reg.id,
            name: reg.name,
            tags: reg.tags,
            address: reg.address,
            port: reg.port,
            meta: reg.meta,
            create_index,
            modify_index: index,
            checks: checks.iter().map(|c| c.id.clone()).collect(),
        };
        let record = Record::Register {
            index,
            service,
            checks,
        };
        self.apply(&record, now);
        Ok(record)
    }

    /// Removes a service and its checks; returns the record to journal.
    ///
    /// # Errors
    /// [`RegistryError::UnknownService`].
    pub fn deregister(&mut self, id: &str, now: Instant) -> Result<Record, RegistryError> {
        if !self.services.contains_key(id) {
            return Err(RegistryError::UnknownService(id.to_owned()));
        }
        let record = Record::Deregister {
            index: self.index + 1,
            id: id.to_owned(),
        };
        self.apply(&record, now);
        Ok(record)
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
        let Some(check) = self.checks.get(id) else {
            return Err(RegistryError::UnknownCheck(id.to_owned()));
        };
        let ttl = check.ttl;
        let unchanged = check.status == status && check.output == output;
        self.set_deadline(id, now + ttl);
        if unchanged {
            return Ok(None);
        }
        let record = Record::Check {
            index: self.index + 1,
            id: id.to_owned(),
            status,
            output: output.to_owned(),
        };
        self.apply(&record, now);
        Ok(Some(record))
    }

    /// The earliest TTL deadline, if any check has one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Turns critical every check whose TTL ran out by `now`; returns the records to journal.
    pub fn expire(&mut self, now: Instant) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, id.clone()));
            self.deadline_of.remove(&id);
            let Some(check) = self.checks.get(&id) else {
                continue;
            };
            if check.status == Status::Critical && check.output == TTL_EXPIRED {
                continue;
            }
            let record = Record::Check {
                index: self.index + 1,
                id,
                status: Status::Critical,
                output: TTL_EXPIRED.to_owned(),
            };
            self.apply(&record, now);
            records.push(record);
        }
        records
    }

    /// Deregisters every service with a check critical for longer than its
    /// DeregisterCriticalServiceAfter (and at least `minimum`); returns the records to journal.
    pub fn reap(&mut self, now: Instant, minimum: Duration) -> Vec<Record> {
        let doomed: BTreeSet<String> = self
            .checks
            .values()
            .filter_map(|c| {
                let after = c.deregister_after?.max(minimum);
                let since = self.critical_since.get(&c.id)?;
                (c.status == Status::Critical && now.duration_since(*since) >= after)
                    .then(|| c.service_id.clone())
            })
            .collect();
        doomed
            .into_iter()
            .filter_map(|id| self.deregister(&id, now).ok())
            .collect()
    }

    /// Applies a record: a live change just made, or one replayed from the journal (whose TTL
    /// deadlines then start again from `now`).
    pub fn apply(&mut self, record: &Record, now: Instant) {
        match record {
            Record::Register {
                index,
                service,
                checks,
            } => {
                if let Some(old) = self.services.get(&service.id).cloned() {
                    for id in old.checks.iter().filter(|id| !service.checks.contains(id)) {
                        self.remove_check(id);
                    }
                    self.name_state(&old.name).ids.remove(&old.id);
                    self.touch(&old.name, *index);
                }
                for check in checks {
                    self.set_deadline(&check.id, now + check.ttl);
                    if check.status == Status::Critical {
                        self.critical_since.entry(check.id.clone()).or_insert(now);
                    } else {
                        self.critical_since.remove(&check.id);
                    }
                    self.checks.insert(check.id.clone(), check.clone());
                }
                self.services.insert(service.id.clone(), service.clone());
                self.name_state(&service.name)
                    .ids
                    .insert(service.id.clone());
                self.touch(&service.name, *index);
                self.moved(*index);
            }
            Record::Deregister { index, id } => {
                if let Some(old) = self.services.remove(id) {
                    for check in &old.checks {
                        self.remove_check(check);
                    }
                    self.name_state(&old.name).ids.remove(&old.id);
                    self.touch(&old.name, *index);
                }
                self.moved(*index);
            }
            Record::Check {
                index,
                id,
                status,
                output,
            } => {
                if let Some(check) = self.checks.get_mut(id) {
                    check.status = *status;
                    check.output.clone_from(output);
                    check.modify_index = *index;
                    let name = check.service_name.clone();
                    let ttl = check.ttl;
                    if *status == Status::Critical {
                        self.critical_since.entry(id.clone()).or_insert(now);
                    } else {
                        self.critical_since.remove(id);
                    }
                    if !self.deadline_of.contains_key(id) && *status != Status::Critical {
                        self.set_deadline(id, now + ttl);
                    }
                    self.touch(&name, *index);
                }
                self.moved(*index);
            }
            Record::Names { index, names } => {
                for (name, at) in names {
                    self.touch(name, *at);
                }
                self.moved(*index);
            }
        }
    }

    /// The records that rebuild this registry: what a compacted journal holds.
    pub fn snapshot(&self) -> Vec<Record> {
        let names = self
            .names
            .iter()
            .map(|(name, state)| (name.clone(), state.index))
            .collect();
        let mut records = vec![Record::Names {
            index: self.index,
            names,
        }];
        for service in self.services.values() {
            records.push(Record::Register {
                index: service.modify_index,
                service: service.clone(),
                checks: service
                    .checks
                    .iter()
                    .filter_map(|id| self.checks.get(id).cloned())
                    .collect(),
            });
        }
        records
    }

    /// The index a query over `scope` answers with: never zero, never backwards.
    pub fn index_of(&self, scope: Scope<'_>) -> u64 {
        match scope {
            Scope::All => self.index,
            Scope::Name(name) => self.names.get(name).map_or(1, |n| n.index),
        }
    }

    /// A receiver that sees a new value when something in `scope` changes. A name nobody has
    /// registered yet is watched through the registry's own channel, so that queries for
    /// made-up names cannot make the registry keep one channel each.
    pub fn subscribe(&self, scope: Scope<'_>) -> watch::Receiver<u64> {
        match scope {
            Scope::Name(name) => match self.names.get(name) {
                Some(state) => state.changed.subscribe(),
                None => self.changed.subscribe(),
            },
            Scope::All => self.changed.subscribe(),
        }
    }

    /// `GET /v1/agent/services`: every instance by ID.
    pub fn agent_services(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .services
            .values()
            .map(|s| (s.id.clone(), self.agent_service_json(s)))
            .collect();
        Value::Object(map)
    }

    /// `GET /v1/agent/service/:id`.
    pub fn agent_service(&self, id: &str) -> Option<Value> {
        self.services.get(id).map(|s| self.agent_service_json(s))
    }

    /// `GET /v1/catalog/services`: each name with the union of its instances' tags.
    pub fn catalog_services(&self) -> Value {
        let mut map: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for s in self.services.values() {
            map.entry(&s.name)
                .or_default()
                .extend(s.tags.iter().map(String::as_str));
        }
        json!(map)
    }

    /// `GET /v1/catalog/service/:name`, filtered by tags.
    pub fn catalog_service(&self, name: &str, tags: &[String]) -> Value {
        let rows: Vec<Value> = self
            .instances(name, tags)
            .map(|s| {
                json!({
                    "ID": "",
                    "Node": self.node.name,
                    "Address": self.node.address,
                    "Datacenter": self.node.datacenter,
                    "TaggedAddresses": {"lan": self.node.address, "wan": self.node.address},
                    "NodeMeta": {},
                    "ServiceKind": "",
                    "ServiceID": s.id,
                    "ServiceName": s.name,
                    "ServiceTags": s.tags,
                    "ServiceAddress": s.address,
                    "ServiceWeights": {"Passing": 1, "Warning": 1},
                    "ServiceMeta": s.meta,
                    "ServicePort": s.port,
                    "ServiceEnableTagOverride": false,
                    "CreateIndex": s.create_index,
                    "ModifyIndex": s.modify_index,
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// `GET /v1/health/service/:name`: instances with their node and checks, filtered by tags
    /// and, with `passing`, to those whose checks all pass.
    pub fn health_service(&self, name: &str, tags: &[String], passing: bool) -> Value {
        let rows: Vec<Value> = self
            .instances(name, tags)
            .filter(|s| !passing || self.worst(s) == Status::Passing)
            .map(|s| {
                let mut checks = vec![self.node_check_json()];
                checks.extend(
                    s.checks
                        .iter()
                        .filter_map(|id| self.checks.get(id))
                        .map(|c| self.check_json(c)),
                );
                json!({
                    "Node": {
                        "ID": "",
                        "Node": self.node.name,
                        "Address": self.node.address,
                        "Datacenter": self.node.datacenter,
                        "TaggedAddresses": {"lan": self.node.address, "wan": self.node.address},
                        "Meta": {},
                        "CreateIndex": 1,
                        "ModifyIndex": 1,
                    },
                    "Service": self.agent_service_json(s),
                    "Checks": checks,
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// `GET /v1/health/checks/:name`: the checks of every instance of a service.
    pub fn health_checks(&self, name: &str) -> Value {
        let rows: Vec<Value> = self
            .instances(name, &[])
            .flat_map(|s| s.checks.iter().filter_map(|id| self.checks.get(id)))
            .map(|c| self.check_json(c))
            .collect();
        Value::Array(rows)
    }

    /// `GET /v1/health/state/:state`: every check in that state (`None` is `any`), the node's
    /// own check included.
    pub fn health_state(&self, state: Option<Status>) -> Value {
        let mut rows = Vec::new();
        if state.is_none_or(|s| s == Status::Passing) {
            rows.push(self.node_check_json());
        }
        rows.extend(
            self.checks
                .values()
                .filter(|c| state.is_none_or(|s| s == c.status))
                .map(|c| self.check_json(c)),
        );
        Value::Array(rows)
    }

    /// The instances of `name` with `tag` (any when `None`) whose checks all pass, as DNS
    /// answers them: (ID, address, port).
    pub fn passing_instances(&self, name: &str, tag: Option<&str>) -> Vec<(String, String, u16)> {
        let tags: Vec<String> = tag.map(str::to_owned).into_iter().collect();
        self.instances(name, &tags)
            .filter(|s| self.worst(s) == Status::Passing)
            .map(|s| {
                let address = if s.address.is_empty() {
                    self.node.address.clone()
                } else {
                    s.address.clone()
                };
                (s.id.clone(), address, s.port)
            })
            .collect()
    }

    fn instances<'a>(
        &'a self,
        name: &'a str,
        tags: &'a [String],
    ) -> impl Iterator<Item = &'a Service> + 'a {
        // Consul matches service names exactly and tags without regard to case.
        let ids = self.names.get(name).map(|n| &n.ids).into_iter().flatten();
        ids.filter_map(|id| self.services.get(id)).filter(move |s| {
            tags.iter()
                .all(|t| s.tags.iter().any(|have| have.eq_ignore_ascii_case(t)))
        })
    }

    fn worst(&self, service: &Service) -> Status {
        service
            .checks
            .iter()
            .filter_map(|id| self.checks.get(id))
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Passing)
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

    fn set_deadline(&mut self, id: &str, at: Instant) {
        if let Some(old) = self.deadline_of.insert(id.to_owned(), at) {
            self.deadlines.remove(&(old, id.to_owned()));
        }
        self.deadlines.insert((at, id.to_owned()));
    }

    fn remove_check(&mut self, id: &str) {
        self.checks.remove(id);
        self.critical_since.remove(id);
        if let Some(at) = self.deadline_of.remove(id) {
            self.deadlines.remove(&(at, id.to_owned()));
        }
    }

    fn name_state(&mut self, name: &str) -> &mut NameState {
        self.names
            .entry(name.to_owned())
            .or_insert_with(|| NameState {
                index: 1,
                changed: watch::Sender::new(1),
                ids: BTreeSet::new(),
            })
    }

    /// Moves a name's index (never backwards) and wakes its watchers.
    fn touch(&mut self, name: &str, index: u64) {
        let state = self.name_state(name);
        if index > state.index {
            state.index = index;
            state.changed.send_replace(index);
        }
    }

    /// Moves the registry's index (never backwards) and wakes the watchers of everything.
    fn moved(&mut self, index: u64) {
        if index > self.index {
            self.index = index;
            self.changed.send_replace(index);
        }
    }
}

/// The output of a check whose TTL ran out, as Consul writes it.
pub const TTL_EXPIRED: &str = "TTL expired";
