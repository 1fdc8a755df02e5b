//! The routing state one statement runs against: the router's snapshot plus
//! a connection pool per tablet, swapped as one value so that a statement
//! never pairs a new routing rule with an old tablet map (or the reverse).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use keyshift_cluster::model::{HOLD_GRACE_MS, HoldRecord, TabletRecord, TabletRole, now_ms};
use keyshift_router::{KeyspaceSpec, Snapshot, SnapshotError, TabletType};
use keyshift_topo::Revision;
use keyshift_vschema::RoutingRules;
use tokio::sync::watch;

use crate::backend::{BackendConfig, Pool, PoolConfig};
use crate::error::GateError;
use crate::fxhash::FxHashMap;

/// One tablet's pool. `id` changes whenever the pool is replaced (new
/// address or credentials), which is how sessions notice that a connection
/// they hold points at a tablet that is no longer the one to use.
#[derive(Clone)]
pub struct TabletPool {
    pub id: u64,
    pub alias: String,
    pub keyspace: Arc<str>,
    pub shard: Arc<str>,
    pub pool: Pool,
}

#[derive(Clone, Default)]
struct ShardTablets {
    primary: Option<TabletPool>,
    replicas: Vec<TabletPool>,
    /// Why the shard's primary is not served, when the gate refuses to
    /// reach it (a TLS-only external server).
    unserved: Option<String>,
}

/// Everything routing needs, immutable once built.
pub struct Topology {
    snapshot: Arc<Snapshot>,
    shards: FxHashMap<String, FxHashMap<String, ShardTablets>>,
    /// Traffic holds by keyspace (see [`HoldRecord`]). They travel with the
    /// routing rules they were read with, so a released statement is
    /// always planned against rules at least as new as the release.
    holds: HashMap<String, Arc<HoldRecord>>,
}

impl Topology {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The unexpired hold on `keyspace`, if any. Cheap when there is none.
    pub fn hold_on(&self, keyspace: &str) -> Option<&Arc<HoldRecord>> {
        if self.holds.is_empty() {
            return None;
        }
        self.holds
            .get(keyspace)
            .filter(|h| h.until_ms + HOLD_GRACE_MS > now_ms())
    }

    /// Every tablet pool with its role (`primary` / `replica`), for metrics.
    pub fn pools(&self) -> impl Iterator<Item = (&TabletPool, &'static str)> {
        self.shards.values().flat_map(|shards| {
            shards.values().flat_map(|s| {
                s.primary
                    .iter()
                    .map(|p| (p, "primary"))
                    .chain(s.replicas.iter().map(|r| (r, "replica")))
            })
        })
    }

    /// Every hold this topology carries, expired or not.
    pub fn holds(&self) -> impl Iterator<Item = &Arc<HoldRecord>> {
        self.holds.values()
    }

    /// The tablet serving `keyspace`/`shard` for `tablet_type`. Replica and
    /// rdonly traffic goes to a replica when the shard has one and falls back
    /// to the primary otherwise, so `USE ks@replica` works on clusters
    /// without replicas.
    pub fn tablet(
        &self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
    ) -> Result<&TabletPool, GateError> {
        let st = self.shards.get(keyspace).and_then(|m| m.get(shard));
        if tablet_type != TabletType::Primary
            && let Some(st) = st
            && !st.replicas.is_empty()
        {
            // spread sessions over replicas without shared state: any
            // replica is as good as another
            let i = rand::random_range(0..st.replicas.len());
            return Ok(&st.replicas[i]);
        }
        st.and_then(|s| s.primary.as_ref()).ok_or_else(|| {
            GateError::internal(match st.and_then(|s| s.unserved.as_deref()) {
                Some(why) => format!("keyspace {keyspace} shard {shard}: {why}"),
                None => format!("keyspace {keyspace} shard {shard} has no serving primary"),
            })
        })
    }
}

/// One shard as the topo describes it, for [`TopologyBuilder::build`].
#[derive(Clone, Debug)]
pub struct ShardInput {
    pub keyspace: String,
    pub shard: String,
    /// Alias of the shard's primary tablet, from the shard record.
    pub primary: Option<String>,
}

/// What the topo says, in plain values, so that building needs no I/O.
#[derive(Clone, Debug, Default)]
pub struct TopologyInput {
    pub keyspaces: Vec<KeyspaceSpec>,
    pub rules: RoutingRules,
    pub shards: Vec<ShardInput>,
    pub tablets: Vec<TabletRecord>,
    pub holds: Vec<HoldRecord>,
}

/// Timeouts every backend connection gets.
#[derive(Clone, Debug)]
pub struct BackendSettings {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub pool: PoolConfig,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
            pool: PoolConfig::default(),
        }
    }
}

/// Builds topologies, keeping the pool of every tablet whose connection
/// settings did not change, so a routing-rule change costs no reconnects.
pub struct TopologyBuilder {
    settings: BackendSettings,
    next_id: u64,
    pools: HashMap<String, (String, TabletPool)>,
}

impl TopologyBuilder {
    pub fn new(settings: BackendSettings) -> Self {
        TopologyBuilder {
            settings,
            next_id: 1,
            pools: HashMap::new(),
        }
    }

    fn backend_config(&self, t: &TabletRecord) -> BackendConfig {
        // the socket is only worth using when this host has it (the gate
        // may run elsewhere than the tablet)
        let addr = match &t.socket {
            Some(p) if Path::new(p).exists() => format!("unix:{}", p.display()),
            _ => format!("{}:{}", t.host, t.port),
        };
        let mut cfg = BackendConfig::new(addr, t.user.clone(), t.password.clone());
        if !t.database.is_empty() {
            cfg = cfg.with_db(t.database.clone());
        }
        cfg.connect_timeout = self.settings.connect_timeout;
        cfg.read_timeout = self.settings.read_timeout;
        cfg
    }

    fn pool_for(&mut self, t: &TabletRecord) -> TabletPool {
        let cfg = self.backend_config(t);
        let alias = t.alias.to_string();
        let fingerprint = format!(
            "{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{}\u{0}{}",
            cfg.addr, cfg.user, cfg.password, cfg.db, t.keyspace, t.shard
        );
        if let Some((fp, tp)) = self.pools.get(&alias)
            && *fp == fingerprint
        {
            return tp.clone();
        }
        let tp = TabletPool {
            id: self.next_id,
            alias: alias.clone(),
            keyspace: Arc::from(t.keyspace.as_str()),
            shard: Arc::from(t.shard.as_str()),
            pool: Pool::new(cfg, self.settings.pool.clone()),
        };
        self.next_id += 1;
        self.pools.insert(alias, (fingerprint, tp.clone()));
        tp
    }

    /// Builds the topology. Keyspaces without shards are left out (they
    /// cannot serve anything yet) rather than failing the whole build.
    pub fn build(&mut self, input: TopologyInput) -> Result<Topology, SnapshotError> {
        let keyspaces: Vec<KeyspaceSpec> = input
            .keyspaces
            .into_iter()
            .filter(|k| !k.shards.is_empty())
            .collect();
        let snapshot = Snapshot::build(keyspaces, input.rules)?;
        let mut shards: FxHashMap<String, FxHashMap<String, ShardTablets>> = FxHashMap::default();
        for s in &input.shards {
            shards
                .entry(s.keyspace.clone())
                .or_default()
                .entry(s.shard.clone())
                .or_default();
        }
        let mut live = std::collections::HashSet::new();
        for t in &input.tablets {
            let Some(entry) = shards
                .get_mut(&t.keyspace)
                .and_then(|m| m.get_mut(&t.shard))
            else {
                continue;
            };
            let alias = t.alias.to_string();
            if t.tls.is_some() {
                // keyshift's own connections to this server use TLS; the
                // gate's backend connections cannot yet, and must not fall
                // back to plain text behind the user's back.
                entry.unserved = Some(format!(
                    "its server (tablet {alias}) is reached only over TLS, which the gate's backend connections do not speak yet; switch traffic to serve these tables from keyshift's shards"
                ));
                continue;
            }
            let is_primary = input.shards.iter().any(|s| {
                s.keyspace == t.keyspace && s.shard == t.shard && s.primary.as_ref() == Some(&alias)
            });
            let tp = self.pool_for(t);
            live.insert(alias);
            if is_primary {
                entry.primary = Some(tp);
            } else if t.role == TabletRole::Replica && t.port != 0 {
                // Port 0: a managed replica not seeded yet (its record gets
                // its port once it replicates); reads go to the primary.
                entry.replicas.push(tp);
            }
        }
        self.pools.retain(|alias, _| live.contains(alias));
        let mut holds = HashMap::new();
        for h in input.holds {
            let h = Arc::new(h);
            for ks in &h.keyspaces {
                holds.insert(ks.clone(), h.clone());
            }
        }
        Ok(Topology {
            snapshot: Arc::new(snapshot),
            shards,
            holds,
        })
    }
}

/// The current topology, shared by every session, and the topo revision it
/// reflects.
pub struct Routing {
    current: RwLock<Arc<Topology>>,
    applied: watch::Sender<Revision>,
    /// Topologies replaced but perhaps still used by a running statement:
    /// each statement keeps the `Arc` it started with, so once all of
    /// these are gone, every statement that started before the current
    /// topology has ended (what a traffic hold waits for).
    replaced: Mutex<Vec<Weak<Topology>>>,
}

impl Routing {
    pub fn new(initial: Topology, revision: Revision) -> Routing {
        Routing {
            current: RwLock::new(Arc::new(initial)),
            applied: watch::Sender::new(revision),
            replaced: Mutex::new(Vec::new()),
        }
    }

    /// Whether a statement that started on an earlier topology is still
    /// running.
    pub fn earlier_statements_running(&self) -> bool {
        let mut r = match self.replaced.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        r.retain(|w| w.strong_count() > 0);
        !r.is_empty()
    }

    /// Notified whenever a new topology is installed.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.applied.subscribe()
    }

    /// The topology for the next statement.
    pub fn current(&self) -> Arc<Topology> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new topology; statements already running keep the one they
    /// started with.
    pub fn install(&self, t: Topology, revision: Revision) {
        let t = Arc::new(t);
        let old = match self.current.write() {
            Ok(mut g) => std::mem::replace(&mut *g, t),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), t),
        };
        {
            let mut r = match self.replaced.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            r.retain(|w| w.strong_count() > 0);
            if Arc::strong_count(&old) > 1 {
                r.push(Arc::downgrade(&old));
            }
        }
        drop(old);
        self.applied.send_if_modified(|r| {
            if revision > *r {
                *r = revision;
                true
            } else {
                false
            }
        });
    }

    /// The topo revision the current topology reflects.
    pub fn applied_revision(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Waits until the topology reflects at least `revision`; false on
    /// timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyshift_vschema::KeyspaceVSchema;

    fn tablet(uid: u32, shard: &str, port: u16, role: TabletRole) -> TabletRecord {
        TabletRecord {
            alias: keyshift_types::TabletAlias::new("t", uid),
            keyspace: "ks".into(),
            shard: shard.into(),
            role,
            database: "ks".into(),
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            password: "p".into(),
            managed: None,
            socket: None,
            tls: None,
        }
    }

    fn input(tablets: Vec<TabletRecord>, primary_hi: Option<&str>) -> TopologyInput {
        TopologyInput {
            keyspaces: vec![KeyspaceSpec {
                name: "ks".into(),
                sharded: true,
                shards: vec!["-80".into(), "80-".into()],
                vschema: KeyspaceVSchema {
                    sharded: true,
                    ..KeyspaceVSchema::default()
                },
            }],
            rules: RoutingRules::default(),
            shards: vec![
                ShardInput {
                    keyspace: "ks".into(),
                    shard: "-80".into(),
                    primary: Some("t-0000000001".into()),
                },
                ShardInput {
                    keyspace: "ks".into(),
                    shard: "80-".into(),
                    primary: primary_hi.map(str::to_string),
                },
            ],
            tablets,
            holds: Vec::new(),
        }
    }

    #[test]
    fn pools_survive_rebuilds_unless_the_tablet_changed() {
        let mut b = TopologyBuilder::new(BackendSettings::default());
        let t1 = tablet(1, "-80", 1001, TabletRole::Primary);
        let t2 = tablet(2, "80-", 1002, TabletRole::Primary);
        let t3 = tablet(3, "-80", 1003, TabletRole::Replica);
        let a = b
            .build(input(
                vec![t1.clone(), t2.clone(), t3.clone()],
                Some("t-0000000002"),
            ))
            .expect("build");
        let p = |t: &Topology, shard: &str, tt| t.tablet("ks", shard, tt).map(|x| x.id);
        let (lo, hi) = (
            p(&a, "-80", TabletType::Primary).expect("lo"),
            p(&a, "80-", TabletType::Primary).expect("hi"),
        );
        let replica = p(&a, "-80", TabletType::Replica).expect("replica");
        assert_ne!(replica, lo, "replica traffic goes to the replica");
        assert_eq!(
            p(&a, "80-", TabletType::Replica).ok(),
            Some(hi),
            "no replica: the primary serves"
        );
        // a rebuild with one tablet moved to another port, the other kept
        let mut t2b = t2.clone();
        t2b.port = 2002;
        let c = b
            .build(input(vec![t1.clone(), t2b, t3], Some("t-0000000002")))
            .expect("build");
        assert_eq!(p(&c, "-80", TabletType::Primary).ok(), Some(lo));
        let hi2 = p(&c, "80-", TabletType::Primary).expect("hi");
        assert_ne!(hi2, hi);
        assert!(!Arc::ptr_eq(a.snapshot(), c.snapshot()));
        // a shard whose primary is gone
        let d = b.build(input(vec![t1], None)).expect("build");
        let e = d
            .tablet("ks", "80-", TabletType::Primary)
            .err()
            .expect("no primary");
        assert_eq!(e.code, 1105);
        assert_eq!(e.message, "keyspace ks shard 80- has no serving primary");
    }
}
