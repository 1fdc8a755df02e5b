//! The routing state one statement is planned against: keyspaces with their
//! shards and VSchema, vindexes ready to map values, and the routing rules.

use crate::error::RouteError;
use crate::plan::{Plan, TabletType};
use keyshift_types::{KeyRange, KeyRangeError};
use keyshift_vindex::Vindex;
use keyshift_vschema::{KeyspaceVSchema, RoutingRules, TableDef};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One shard: its name (as the topo spells it, `0`, `-80`) and key range.
#[derive(Clone, Debug)]
pub struct Shard {
    pub name: String,
    pub range: KeyRange,
}

/// One keyspace as the topo describes it, the input of [`Snapshot::build`].
#[derive(Clone, Debug)]
pub struct KeyspaceSpec {
    pub name: String,
    pub sharded: bool,
    /// Shard names; each is its key range (`-80`, `80-`, or `0` / `-`).
    pub shards: Vec<String>,
    pub vschema: KeyspaceVSchema,
}

/// A keyspace ready for planning.
#[derive(Debug)]
pub struct KeyspaceInfo {
    pub name: String,
    pub sharded: bool,
    /// Ordered by key range start, so shard lists come out in one order.
    pub shards: Arc<[Shard]>,
    pub vschema: KeyspaceVSchema,
    /// Built vindexes; a vindex that failed to build keeps its error, so that
    /// one bad definition refuses only the queries that need it.
    vindexes: BTreeMap<String, Result<Arc<dyn Vindex>, String>>,
}

/// Why a snapshot could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("keyspace {keyspace}: shard `{shard}`: {source}")]
    BadShard {
        keyspace: String,
        shard: String,
        source: KeyRangeError,
    },
    #[error("keyspace {0} has no shards")]
    NoShards(String),
    #[error("keyspace {0} is listed twice")]
    Duplicate(String),
}

/// The immutable routing state. The gate holds it in an `Arc` and swaps in a
/// new one when the topo changes, so every statement sees one consistent
/// state; plans cached in it die with it, so a routing-rule switch can never
/// be shadowed by a stale cached plan.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) keyspaces: BTreeMap<String, KeyspaceInfo>,
    pub(crate) rules: RoutingRules,
    /// Unqualified table name → keyspaces whose VSchema lists it.
    global_tables: BTreeMap<String, Vec<String>>,
    pub(crate) cache: PlanCache,
}

/// How a resolved table is placed.
#[derive(Clone, Debug)]
pub(crate) enum Placement {
    /// The keyspace is unsharded: the table lives on its one shard.
    Unsharded,
    /// Rows are spread by the primary vindex on `column`.
    Sharded {
        column: String,
        vindex: Arc<dyn Vindex>,
        /// Vindex type and parameters: two tables are co-located when these
        /// agree (the same function places equal values on one shard).
        identity: String,
    },
    /// A copy on every shard of a sharded keyspace; writes go to `source`.
    Reference { source: Option<(String, String)> },
    /// Sharded but without a usable primary vindex: the reason.
    Unroutable(String),
}

/// A table reference after routing rules and the VSchema.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// Target keyspace; `None` for the server's own schemas
    /// (`information_schema`, `mysql`, ...).
    pub keyspace: Option<String>,
    /// The table's name in the target keyspace.
    pub table: String,
    pub placement: Placement,
}

pub(crate) const SYSTEM_SCHEMAS: &[&str] =
    &["information_schema", "mysql", "performance_schema", "sys"];

impl Snapshot {
    /// Builds the snapshot: parses shard names into key ranges and builds
    /// every vindex once, so that planning never does either.
    pub fn build(
        keyspaces: Vec<KeyspaceSpec>,
        rules: RoutingRules,
    ) -> Result<Snapshot, SnapshotError> {
        let mut map = BTreeMap::new();
        let mut global_tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for spec in keyspaces {
            if spec.shards.is_empty() {
                return Err(SnapshotError::NoShards(spec.name));
            }
            let mut shards = Vec::with_capacity(spec.shards.len());
            for name in &spec.shards {
                let range = KeyRange::parse(name).map_err(|source| SnapshotError::BadShard {
                    keyspace: spec.name.clone(),
                    shard: name.clone(),
                    source,
                })?;
                shards.push(Shard {
                    name: name.clone(),
                    range,
                });
            }
            shards.sort_by(|a, b| a.range.start.cmp(&b.range.start));
            let vindexes = spec
                .vschema
                .vindexes
                .iter()
                .map(|(name, def)| {
                    let v = keyshift_vindex::new_vindex(&def.kind, &def.params)
                        .map_err(|e| e.to_string());
                    (name.clone(), v)
                })
                .collect();
            if !spec.vschema.require_explicit_routing {
                for table in spec.vschema.tables.keys() {
                    global_tables
                        .entry(table.clone())
                        .or_default()
                        .push(spec.name.clone());
                }
            }
            let info = KeyspaceInfo {
                name: spec.name.clone(),
                sharded: spec.sharded || spec.vschema.sharded,
                shards: shards.into(),
                vschema: spec.vschema,
                vindexes,
            };
            if map.insert(spec.name.clone(), info).is_some() {
                return Err(SnapshotError::Duplicate(spec.name));
            }
        }
        Ok(Snapshot {
            keyspaces: map,
            rules,
            global_tables,
            cache: PlanCache::default(),
        })
    }

    /// Keyspace names, what `SHOW DATABASES` lists.
    pub fn keyspace_names(&self) -> impl Iterator<Item = &str> {
        self.keyspaces.keys().map(String::as_str)
    }

    pub fn keyspace(&self, name: &str) -> Option<&KeyspaceInfo> {
        self.keyspaces.get(name)
    }

    /// Shard names of a keyspace in key-range order: what `Target::All`
    /// means.
    pub fn shard_names(&self, keyspace: &str) -> Vec<String> {
        self.keyspaces
            .get(keyspace)
            .map(|k| k.shards.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Where tableless statements go without a session keyspace: the first
    /// unsharded keyspace, else the first keyspace.
    pub(crate) fn default_keyspace(&self) -> Option<&KeyspaceInfo> {
        self.keyspaces
            .values()
            .find(|k| !k.sharded)
            .or_else(|| self.keyspaces.values().next())
    }

    pub(crate) fn keyspace_or_1049(&self, name: &str) -> Result<&KeyspaceInfo, RouteError> {
        self.keyspaces
            .get(name)
            .ok_or_else(|| RouteError::UnknownDatabase(name.to_string()))
    }

    /// Resolves a table reference the way vtgate does: routing rules first
    /// (keyed `table`, `ks.table`, `table@replica`, with the qualifier or
    /// else the session keyspace), then the VSchema of the qualifier's or the
    /// session's keyspace, then, unqualified without a session keyspace, the
    /// one keyspace whose VSchema lists the table.
    ///
    /// A table of an unsharded keyspace needs no VSchema entry when that
    /// keyspace is named (qualifier or `USE`), as in Vitess. Unqualified and
    /// without `USE`, Vitess routes unlisted tables only when the cluster has
    /// exactly one keyspace and it is unsharded; keyshift relaxes this to
    /// "exactly one unsharded keyspace", so that the usual layout (one
    /// unsharded keyspace next to sharded ones) keeps working for tables not
    /// yet listed.
    ///
    /// A table listed by several keyspaces is ambiguous in Vitess. keyshift
    /// sends it to the one unsharded keyspace among them when there is
    /// exactly one: that is where the rows are whenever no routing rule
    /// says otherwise — after the sharding plan is applied to the target
    /// but before `workflow create` writes its rules, and after `cancel`
    /// clears them (`complete` removes the tables from the source's VSchema,
    /// so afterwards the target is their only home). Without this, applying
    /// a target VSchema breaks every unqualified query of those tables until
    /// a workflow exists (vitessio/vitess#16869). Two unsharded homes, or
    /// only sharded ones, stay ambiguous.
    pub(crate) fn resolve(
        &self,
        session_keyspace: Option<&str>,
        tablet_type: TabletType,
        qualifier: Option<&str>,
        name: &str,
    ) -> Result<Resolved, RouteError> {
        if let Some(q) = qualifier
            && SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(q))
        {
            return Ok(Resolved {
                keyspace: None,
                table: name.to_string(),
                placement: Placement::Unsharded,
            });
        }
        let rule_ks = qualifier.or(session_keyspace);
        if let Some(target) = self.rules.resolve(rule_ks, name, tablet_type.as_str()) {
            let ks = self.keyspace_or_1049(&target.keyspace)?;
            return self.in_keyspace(ks, &target.table);
        }
        if let Some(ks) = rule_ks {
            let ks = self.keyspace_or_1049(ks)?;
            return self.in_keyspace(ks, name);
        }
        match self.global_tables.get(name).map(Vec::as_slice) {
            Some([ks]) => self.in_keyspace(&self.keyspaces[ks], name),
            Some(many) if many.len() > 1 => {
                let mut unsharded = many
                    .iter()
                    .filter_map(|k| self.keyspaces.get(k))
                    .filter(|k| !k.sharded);
                match (unsharded.next(), unsharded.next()) {
                    (Some(ks), None) => self.in_keyspace(ks, name),
                    _ => Err(RouteError::unsupported(format!(
                        "ambiguous table reference: {name} is in keyspaces {}; qualify it (keyspace.{name}), USE one, or add a routing rule",
                        many.join(", ")
                    ))),
                }
            }
            _ => {
                let mut unsharded = self.keyspaces.values().filter(|k| !k.sharded);
                match (unsharded.next(), unsharded.next()) {
                    (Some(ks), None) => self.in_keyspace(ks, name),
                    _ => Err(RouteError::NoSuchTable(name.to_string())),
                }
            }
        }
    }

    fn in_keyspace(&self, ks: &KeyspaceInfo, table: &str) -> Result<Resolved, RouteError> {
        let def = ks.vschema.tables.get(table);
        let placement = if !ks.sharded {
            Placement::Unsharded
        } else {
            match def {
                None => {
                    return Err(RouteError::NoSuchTable(format!("{}.{table}", ks.name)));
                }
                Some(def) => self.placement(ks, table, def),
            }
        };
        Ok(Resolved {
            keyspace: Some(ks.name.clone()),
            table: table.to_string(),
            placement,
        })
    }

    fn placement(&self, ks: &KeyspaceInfo, table: &str, def: &TableDef) -> Placement {
        if def.kind == "reference" {
            let source = if def.source.is_empty() {
                None
            } else {
                let (k, t) = def.source.split_once('.').unwrap_or(("", &def.source));
                Some((k.to_string(), t.to_string()))
            };
            return Placement::Reference { source };
        }
        let Some(cv) = def.column_vindexes.first() else {
            return Placement::Unroutable(format!(
                "table {}.{table} has no primary vindex in the VSchema",
                ks.name
            ));
        };
        let cols = cv.column_names();
        if cols.len() != 1 {
            return Placement::Unroutable(format!(
                "table {}.{table}: multi-column primary vindexes are not supported",
                ks.name
            ));
        }
        match ks.vindexes.get(&cv.name) {
            Some(Ok(v)) => {
                let identity = ks
                    .vschema
                    .vindexes
                    .get(&cv.name)
                    .map(|d| format!("{}{:?}", d.kind, d.params))
                    .unwrap_or_default();
                Placement::Sharded {
                    column: cols[0].to_string(),
                    vindex: v.clone(),
                    identity,
                }
            }
            Some(Err(e)) => Placement::Unroutable(format!(
                "table {}.{table}: vindex {} cannot be used: {e}",
                ks.name, cv.name
            )),
            None => Placement::Unroutable(format!(
                "table {}.{table}: vindex {} is not defined",
                ks.name, cv.name
            )),
        }
    }

    /// The sequence table behind an `auto_increment`: `ks.seq`, or `seq`
    /// found in the VSchema of an unsharded keyspace.
    pub(crate) fn sequence(&self, spec: &str) -> Option<(String, String)> {
        if let Some((k, t)) = spec.split_once('.') {
            return Some((k.to_string(), t.to_string()));
        }
        self.keyspaces
            .values()
            .filter(|k| !k.sharded)
            .find(|k| k.vschema.tables.contains_key(spec))
            .or_else(|| self.keyspaces.values().find(|k| !k.sharded))
            .map(|k| (k.name.clone(), spec.to_string()))
    }
}

/// Plans by statement text, then (session keyspace, tablet type). Keyed by
/// text first so a lookup allocates nothing. Bounded: when full it starts
/// over, which costs one re-plan per statement.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    map: Mutex<HashMap<String, Vec<CacheEntry>>>,
}

type CacheEntry = (Option<String>, TabletType, Arc<Plan>);

const CACHE_ENTRIES: usize = 8192;
/// Longer statements (bulk inserts) are rarely repeated verbatim.
pub(crate) const CACHE_MAX_SQL: usize = 8192;

impl PlanCache {
    pub(crate) fn get(&self, ks: Option<&str>, tt: TabletType, sql: &str) -> Option<Arc<Plan>> {
        let map = self.map.lock().ok()?;
        map.get(sql)?
            .iter()
            .find(|(k, t, _)| k.as_deref() == ks && *t == tt)
            .map(|(_, _, p)| p.clone())
    }

    pub(crate) fn put(&self, ks: Option<&str>, tt: TabletType, sql: &str, plan: Arc<Plan>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            let entries = map.entry(sql.to_string()).or_default();
            entries.retain(|(k, t, _)| !(k.as_deref() == ks && *t == tt));
            entries.push((ks.map(str::to_string), tt, plan));
        }
    }
}
