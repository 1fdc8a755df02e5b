//! Cluster configuration operations: what the CLI runs now and the API will
//! expose. Each one validates everything first and then writes in one topo
//! transaction, so a failure leaves nothing half-created.

use crate::file::named_ranges;
use crate::model::{
    GateUserRecord, KeyspaceRecord, ManagedSpec, ShardRecord, TabletRecord, TabletRole, keys,
    now_unix,
};
use keyshift_topo::{Cond, Op, Topo, TopoError, TopoExt};
use keyshift_types::{KeyRange, TabletAlias};
use keyshift_vschema::{Faults, KeyspaceVSchema, RoutingRules};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Errors callers branch on: the API maps them to HTTP codes, the CLI to
/// exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("keyspace `{0}` does not exist")]
    NoSuchKeyspace(String),
    #[error("keyspace `{0}` already exists")]
    KeyspaceExists(String),
    #[error("keyspace `{keyspace}` has no shard `{shard}` (its shards: {known})")]
    NoSuchShard {
        keyspace: String,
        shard: String,
        known: String,
    },
    #[error("tablet `{0}` does not exist")]
    NoSuchTablet(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} is not valid, {faults}")]
    Faults { what: String, faults: Faults },
    #[error("{0}")]
    Conflict(String),
    #[error("topo: {0}")]
    Topo(#[from] TopoError),
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// How a new keyspace is split.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardSpec {
    /// One shard named `0`.
    Unsharded,
    /// N equal key ranges, named as Vitess names them.
    Count(usize),
    /// Explicit shard names, which must cover the keyspace exactly once.
    Named(Vec<String>),
}

impl ShardSpec {
    pub fn key_ranges(&self) -> Result<Vec<(String, KeyRange)>, String> {
        match self {
            ShardSpec::Unsharded => Ok(vec![("0".to_string(), KeyRange::full())]),
            ShardSpec::Count(0) => Err("a keyspace needs at least one shard".to_string()),
            ShardSpec::Count(1) => Ok(vec![("0".to_string(), KeyRange::full())]),
            ShardSpec::Count(n) if *n > 256 => {
                Err(format!("{n} shards is more than the 256 keyshift supports"))
            }
            ShardSpec::Count(n) => KeyRange::split_equal(*n)
                .map(|rs| rs.into_iter().map(|r| (r.name(), r)).collect())
                .map_err(|e| e.to_string()),
            ShardSpec::Named(names) if names.is_empty() => {
                Err("a keyspace needs at least one shard".to_string())
            }
            ShardSpec::Named(names) => named_ranges(names),
        }
    }
}

/// Where a new managed tablet's datadir goes.
#[derive(Clone, Debug)]
pub struct ManagedDefaults {
    pub cell: String,
    pub data_dir: PathBuf,
}

impl ManagedDefaults {
    pub fn datadir(&self, alias: &TabletAlias) -> PathBuf {
        self.data_dir.join("tablets").join(alias.to_string())
    }
}

pub async fn list_keyspaces(topo: &dyn Topo) -> Result<Vec<KeyspaceRecord>> {
    // The prefix also holds shards and VSchemas; only `/keyspaces/{ks}/keyspace`
    // keys are keyspace records.
    let mut out = Vec::new();
    for kv in topo.list(keys::KEYSPACES).await? {
        let rest = &kv.key[keys::KEYSPACES.len()..];
        if rest.split('/').count() != 2 || !rest.ends_with("/keyspace") {
            continue;
        }
        let rec: KeyspaceRecord = serde_json::from_slice(&kv.value).map_err(|e| {
            ClusterError::Topo(TopoError::Backend(format!(
                "record {} is not a keyspace: {e}",
                kv.key
            )))
        })?;
        out.push(rec);
    }
    Ok(out)
}

pub async fn get_keyspace(topo: &dyn Topo, name: &str) -> Result<KeyspaceRecord> {
    topo.get_json::<KeyspaceRecord>(&keys::keyspace(name))
        .await?
        .map(|(k, _)| k)
        .ok_or_else(|| ClusterError::NoSuchKeyspace(name.to_string()))
}

pub async fn list_shards(topo: &dyn Topo, keyspace: &str) -> Result<Vec<ShardRecord>> {
    let mut shards: Vec<ShardRecord> = topo
        .list_json::<ShardRecord>(&keys::shards(keyspace))
        .await?
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    shards.sort_by(|a, b| a.key_range.cmp(&b.key_range));
    Ok(shards)
}

pub async fn list_tablets(topo: &dyn Topo) -> Result<Vec<TabletRecord>> {
    Ok(topo
        .list_json::<TabletRecord>(keys::TABLETS)
        .await?
        .into_iter()
        .map(|(_, t, _)| t)
        .collect())
}

pub async fn get_tablet(topo: &dyn Topo, alias: &TabletAlias) -> Result<TabletRecord> {
    topo.get_json::<TabletRecord>(&keys::tablet(alias))
        .await?
        .map(|(t, _)| t)
        .ok_or_else(|| ClusterError::NoSuchTablet(alias.to_string()))
}

/// The primary of each shard of a keyspace, in key-range order.
pub async fn shard_primaries(
    topo: &dyn Topo,
    keyspace: &str,
) -> Result<Vec<(ShardRecord, Option<TabletRecord>)>> {
    let shards = list_shards(topo, keyspace).await?;
    let mut out = Vec::with_capacity(shards.len());
    for s in shards {
        let primary = match &s.primary {
            Some(alias) => topo
                .get_json::<TabletRecord>(&keys::tablet(alias))
                .await?
                .map(|(t, _)| t),
            None => None,
        };
        out.push((s, primary));
    }
    Ok(out)
}

/// Creates a keyspace with its shards and an empty VSchema; with `managed`,
/// also a managed primary tablet per shard, which a running `keyshift up`
/// starts at once.
pub async fn create_keyspace(
    topo: &dyn Topo,
    name: &str,
    spec: &ShardSpec,
    managed: Option<&ManagedDefaults>,
) -> Result<KeyspaceRecord> {
    if !keyshift_vschema::valid_identifier(name) {
        return Err(ClusterError::Invalid(format!(
            "keyspace name `{name}`: use letters, digits and '_' (it is also the database name)"
        )));
    }
    let ranges = spec
        .key_ranges()
        .map_err(|e| ClusterError::Invalid(format!("keyspace `{name}`: {e}")))?;
    let sharded = ranges.len() > 1;
    let record = KeyspaceRecord {
        name: name.to_string(),
        sharded,
        created_at: now_unix(),
        import_of: None,
    };
    let mut ops = vec![put_op(&keys::keyspace(name), &record, Cond::Absent)?];
    let vschema = KeyspaceVSchema {
        sharded,
        ..Default::default()
    };
    ops.push(put_op(&keys::vschema(name), &vschema, Cond::Absent)?);
    let mut tablets = Vec::new();
    if let Some(defaults) = managed {
        let uids = allocate_uids(topo, ranges.len()).await?;
        for ((shard, _), uid) in ranges.iter().zip(uids) {
            let alias = TabletAlias {
                cell: defaults.cell.clone(),
                uid,
            };
            tablets.push(new_managed_tablet(
                defaults,
                alias,
                name,
                shard,
                TabletRole::Primary,
                0,
            ));
        }
    }
    for (shard, range) in &ranges {
        let primary = tablets
            .iter()
            .find(|t| &t.shard == shard)
            .map(|t| t.alias.clone());
        let rec = ShardRecord {
            keyspace: name.to_string(),
            name: shard.clone(),
            key_range: range.clone(),
            primary,
        };
        ops.push(put_op(&keys::shard(name, shard), &rec, Cond::Absent)?);
    }
    for t in &tablets {
        ops.push(put_op(&keys::tablet(&t.alias), t, Cond::Absent)?);
    }
    match topo.txn(ops).await {
        Ok(_) => Ok(record),
        Err(TopoError::CondFailed { key, .. }) if key == keys::keyspace(name) => {
            Err(ClusterError::KeyspaceExists(name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A managed tablet record with fresh credentials.
pub fn new_managed_tablet(
    defaults: &ManagedDefaults,
    alias: TabletAlias,
    keyspace: &str,
    shard: &str,
    role: TabletRole,
    requested_port: u16,
) -> TabletRecord {
    TabletRecord {
        managed: Some(ManagedSpec {
            datadir: defaults.datadir(&alias),
            server_id: alias.uid,
            requested_port,
        }),
        alias,
        keyspace: keyspace.to_string(),
        shard: shard.to_string(),
        role,
        database: keyspace.to_string(),
        host: "127.0.0.1".to_string(),
        // A replica's port is published once it replicates (the node sets
        // it), so nothing reads from a replica still being seeded.
        port: if role == TabletRole::Replica {
            0
        } else {
            requested_port
        },
        user: "keyshift".to_string(),
        password: random_password(),
        socket: None,
        tls: None,
    }
}

pub fn random_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Hands out `n` tablet uids that no other tablet has, even with concurrent
/// callers (compare-and-swap on one counter).
pub async fn allocate_uids(topo: &dyn Topo, n: usize) -> Result<Vec<u32>> {
    let existing: u32 = list_tablets(topo)
        .await?
        .iter()
        .map(|t| t.alias.uid + 1)
        .max()
        .unwrap_or(100);
    loop {
        let current = topo.get_json::<u32>(keys::NEXT_UID).await?;
        let (next, cond) = match current {
            Some((v, rev)) => (v.max(existing), Cond::ModRevision(rev)),
            None => (existing.max(100), Cond::Absent),
        };
        let end = next + n as u32;
        match topo.put_json(keys::NEXT_UID, &end, cond).await {
            Ok(_) => return Ok((next..end).collect()),
            Err(TopoError::CondFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes a keyspace. Its tablets must be removed first unless `recursive`,
/// which removes their records too (a running `keyshift up` stops managed
/// servers; their datadirs stay on disk).
pub async fn delete_keyspace(topo: &dyn Topo, name: &str, recursive: bool) -> Result<()> {
    get_keyspace(topo, name).await?;
    let tablets: Vec<TabletRecord> = list_tablets(topo)
        .await?
        .into_iter()
        .filter(|t| t.keyspace == name)
        .collect();
    if !tablets.is_empty() && !recursive {
        let names: Vec<String> = tablets.iter().map(|t| t.alias.to_string()).collect();
        return Err(ClusterError::Conflict(format!(
            "keyspace `{name}` still has tablets {}; remove them first or pass --recursive",
            names.join(", ")
        )));
    }
    let rules = get_routing_rules(topo).await?;
    let pointing: Vec<&str> = rules
        .rules
        .iter()
        .filter(|r| {
            r.to_tables
                .iter()
                .any(|t| t.split_once('.').is_some_and(|(k, _)| k == name))
        })
        .map(|r| r.from_table.as_str())
        .collect();
    if !pointing.is_empty() {
        return Err(ClusterError::Conflict(format!(
            "routing rules send {} to keyspace `{name}`; change them first",
            pointing.join(", ")
        )));
    }
    let mut ops = vec![Op::DeletePrefix {
        prefix: keys::keyspace_dir(name),
    }];
    for t in tablets {
        ops.push(Op::Delete {
            key: keys::tablet(&t.alias),
            cond: Cond::Any,
        });
    }
    topo.txn(ops).await?;
    Ok(())
}

/// What `add_tablet` needs to know.
#[derive(Clone, Debug)]
pub enum TabletSpec {
    Managed {
        port: u16,
    },
    External {
        host: String,
        port: u16,
        user: String,
        password: String,
        database: Option<String>,
    },
}

pub async fn add_tablet(
    topo: &dyn Topo,
    defaults: &ManagedDefaults,
    keyspace: &str,
    shard: &str,
    role: TabletRole,
    uid: Option<u32>,
    spec: TabletSpec,
) -> Result<TabletRecord> {
    get_keyspace(topo, keyspace).await?;
    let shards = list_shards(topo, keyspace).await?;
    let Some(shard_rec) = shards.iter().find(|s| s.name == shard) else {
        return Err(ClusterError::NoSuchShard {
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            known: shards
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if role == TabletRole::Primary
        && let Some(p) = &shard_rec.primary
    {
        return Err(ClusterError::Conflict(format!(
            "shard {keyspace}/{shard} already has primary {p}; add this one as a replica or remove {p} first"
        )));
    }
    let uid = match uid {
        Some(u) => u,
        None => allocate_uids(topo, 1).await?[0],
    };
    let alias = TabletAlias {
        cell: defaults.cell.clone(),
        uid,
    };
    let record = match spec {
        TabletSpec::Managed { port } => {
            new_managed_tablet(defaults, alias.clone(), keyspace, shard, role, port)
        }
        TabletSpec::External {
            host,
            port,
            user,
            password,
            database,
        } => TabletRecord {
            alias: alias.clone(),
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            role,
            database: database.unwrap_or_else(|| keyspace.to_string()),
            host,
            port,
            user,
            password,
            managed: None,
            socket: None,
            tls: None,
        },
    };
    let mut ops = vec![put_op(&keys::tablet(&alias), &record, Cond::Absent)?];
    if role == TabletRole::Primary {
        let (_, rev) = topo
            .get_json::<ShardRecord>(&keys::shard(keyspace, shard))
            .await?
            .ok_or_else(|| ClusterError::NoSuchShard {
                keyspace: keyspace.to_string(),
                shard: shard.to_string(),
                known: String::new(),
            })?;
        let mut s = shard_rec.clone();
        s.primary = Some(alias.clone());
        ops.push(put_op(
            &keys::shard(keyspace, shard),
            &s,
            Cond::ModRevision(rev),
        )?);
    }
    match topo.txn(ops).await {
        Ok(_) => Ok(record),
        Err(TopoError::CondFailed { key, .. }) if key == keys::tablet(&alias) => Err(
            ClusterError::Conflict(format!("a tablet with uid {uid} already exists")),
        ),
        Err(TopoError::CondFailed { .. }) => Err(ClusterError::Conflict(format!(
            "shard {keyspace}/{shard} changed while adding the tablet; try again"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_tablet(topo: &dyn Topo, alias: &TabletAlias) -> Result<TabletRecord> {
    let (tablet, rev) = topo
        .get_json::<TabletRecord>(&keys::tablet(alias))
        .await?
        .ok_or_else(|| ClusterError::NoSuchTablet(alias.to_string()))?;
    let mut ops = vec![Op::Delete {
        key: keys::tablet(alias),
        cond: Cond::ModRevision(rev),
    }];
    let shard_key = keys::shard(&tablet.keyspace, &tablet.shard);
    if let Some((mut shard, srev)) = topo.get_json::<ShardRecord>(&shard_key).await?
        && shard.primary.as_ref() == Some(alias)
    {
        shard.primary = None;
        ops.push(put_op(&shard_key, &shard, Cond::ModRevision(srev))?);
    }
    topo.txn(ops).await?;
    Ok(tablet)
}

pub async fn get_vschema(topo: &dyn Topo, keyspace: &str) -> Result<KeyspaceVSchema> {
    get_keyspace(topo, keyspace).await?;
    Ok(topo
        .get_json::<KeyspaceVSchema>(&keys::vschema(keyspace))
        .await?
        .map(|(v, _)| v)
        .unwrap_or_default())
}

/// All keyspaces' VSchemas, for the gate and for cross-keyspace validation.
pub async fn all_vschemas(topo: &dyn Topo) -> Result<BTreeMap<String, KeyspaceVSchema>> {
    let mut out = BTreeMap::new();
    for ks in list_keyspaces(topo).await? {
        let vs = topo
            .get_json::<KeyspaceVSchema>(&keys::vschema(&ks.name))
            .await?
            .map(|(v, _)| v)
            .unwrap_or_default();
        out.insert(ks.name, vs);
    }
    Ok(out)
}

/// Parses, validates against the live schemas, and (unless `dry_run`) stores
/// a keyspace's VSchema. Every fault is reported at once with its JSON path;
/// nothing is stored unless there are none. Document faults are reported even
/// when the schemas cannot be read, since they need no server.
pub async fn apply_vschema(
    topo: &dyn Topo,
    keyspace: &str,
    json: &str,
    dry_run: bool,
) -> Result<KeyspaceVSchema> {
    let what = format!("the VSchema of keyspace `{keyspace}`");
    let ks = get_keyspace(topo, keyspace).await?;
    let vs =
        keyshift_vschema::parse_vschema_shape(json).map_err(|faults| ClusterError::Faults {
            what: what.clone(),
            faults,
        })?;
    let catalog = crate::schema::read_catalog(topo).await?;
    let mut others = all_vschemas(topo).await?;
    others.remove(keyspace);
    keyshift_vschema::validate_vschema(keyspace, ks.sharded, &vs, &catalog, &others)
        .map_err(|faults| ClusterError::Faults { what, faults })?;
    if !dry_run {
        topo.put_json(&keys::vschema(keyspace), &vs, Cond::Any)
            .await?;
    }
    Ok(vs)
}

pub async fn get_routing_rules(topo: &dyn Topo) -> Result<RoutingRules> {
    Ok(topo
        .get_json::<RoutingRules>(keys::ROUTING_RULES)
        .await?
        .map(|(r, _)| r)
        .unwrap_or_default())
}

pub async fn apply_routing_rules(topo: &dyn Topo, json: &str) -> Result<RoutingRules> {
    let names: Vec<String> = list_keyspaces(topo)
        .await?
        .into_iter()
        .map(|k| k.name)
        .collect();
    let rules = keyshift_vschema::parse_routing_rules(json, &names).map_err(|faults| {
        ClusterError::Faults {
            what: "the routing rules".to_string(),
            faults,
        }
    })?;
    topo.put_json(keys::ROUTING_RULES, &rules, Cond::Any)
        .await?;
    Ok(rules)
}

/// Replaces the gate's users with exactly these (name, password) pairs, in
/// one transaction (users no longer listed are deleted one by one: a
/// transaction may touch each key once, as in etcd).
pub async fn set_gate_users(topo: &dyn Topo, users: &[(String, String)]) -> Result<()> {
    let mut ops = Vec::new();
    for kv in topo.list(keys::GATE_USERS).await? {
        let name = &kv.key[keys::GATE_USERS.len()..];
        if !users.iter().any(|(n, _)| n == name) {
            ops.push(Op::Delete {
                key: kv.key.clone(),
                cond: Cond::ModRevision(kv.mod_revision),
            });
        }
    }
    for (name, password) in users {
        ops.push(put_op(
            &keys::gate_user(name),
            &GateUserRecord::new(name, password),
            Cond::Any,
        )?);
    }
    topo.txn(ops).await?;
    Ok(())
}

pub(crate) fn put_op<T: serde::Serialize>(key: &str, value: &T, cond: Cond) -> Result<Op> {
    let value = serde_json::to_vec(value)
        .map_err(|e| ClusterError::Invalid(format!("cannot encode {key}: {e}")))?;
    Ok(Op::Put {
        key: key.to_string(),
        value,
        cond,
    })
}

/// A handle shared by every operation of one process.
pub type TopoHandle = Arc<dyn Topo>;
