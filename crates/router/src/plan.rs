//! The contract with the executor: what a statement does, where it goes and
//! how the results of several shards combine.

use crate::datum::Datum;
use crate::error::RouteError;
use crate::merge::Merge;
use crate::snapshot::Shard;
use crate::template::{Bound, Piece, Template};
use keyshift_vindex::{Value, Vindex};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which tablets of a shard serve the session, as `USE ks@replica` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TabletType {
    #[default]
    Primary,
    Replica,
    Rdonly,
}

impl TabletType {
    pub fn as_str(self) -> &'static str {
        match self {
            TabletType::Primary => "primary",
            TabletType::Replica => "replica",
            TabletType::Rdonly => "rdonly",
        }
    }

    /// Accepts Vitess's spellings, including the old `master`.
    pub fn parse(s: &str) -> Option<TabletType> {
        match s.to_ascii_lowercase().as_str() {
            "primary" | "master" => Some(TabletType::Primary),
            "replica" => Some(TabletType::Replica),
            "rdonly" | "batch" => Some(TabletType::Rdonly),
            _ => None,
        }
    }
}

/// What the planner needs to know of the client session.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionCtx<'a> {
    /// The keyspace of `USE` / `COM_INIT_DB`, if any.
    pub keyspace: Option<&'a str>,
    pub tablet_type: TabletType,
    /// Informational: plans never depend on it, so one cached plan serves
    /// sessions in and out of transactions.
    pub in_transaction: bool,
}

/// Which shards of the keyspace receive the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    One(String),
    /// Several shards, in key-range order.
    Some(Vec<String>),
    /// Every shard ([`crate::Snapshot::shard_names`]).
    All,
    /// Any one shard; prefer one the session already has a connection or
    /// transaction on. Used for tableless queries, `SHOW`s and reference
    /// tables.
    Any,
}

/// What the executor does with the shards' answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// Rows: forwarded as they are from one shard, merged from several.
    Read,
    /// Affected rows: summed over the shards. Needs a primary tablet.
    Write,
    /// DDL sent to every shard; affected rows of the first.
    Ddl,
}

/// A value that decides a shard: known at plan time, or a parameter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot {
    Lit(Datum),
    Param(usize),
}

impl Slot {
    pub(crate) fn value<'a>(&'a self, params: &'a [Datum]) -> Result<&'a Datum, RouteError> {
        match self {
            Slot::Lit(d) => Ok(d),
            Slot::Param(n) => params.get(*n).ok_or(RouteError::WrongParamCount {
                expected: n + 1,
                got: params.len(),
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Selector {
    Fixed(Target),
    /// The shards holding the keyspace ids of these values.
    Vindex {
        vindex: Arc<dyn Vindex>,
        values: Vec<Slot>,
        shards: Arc<[Shard]>,
    },
}

/// The multi-shard form of a SELECT: its own text (hidden columns, pushed
/// down LIMIT) and merge.
#[derive(Clone, Debug)]
pub(crate) struct Scatter {
    pub sql: Template,
    pub merge: Option<Merge>,
    /// LIMIT and OFFSET when either is a parameter: `merge` has
    /// placeholders for them until [`Route::bind`] knows the values.
    pub limit: Option<(Option<Bound>, Bound)>,
}

/// A statement for the shards of one keyspace.
#[derive(Clone, Debug)]
pub struct Route {
    pub keyspace: String,
    pub tablet_type: TabletType,
    pub kind: RouteKind,
    pub(crate) selector: Selector,
    /// The text for a single shard: the client's own text unless keyspace
    /// qualifiers or table names had to change.
    pub(crate) sql: Template,
    /// The text and merge for several shards; the error when the statement
    /// cannot be merged, reported only if it does reach several shards.
    pub(crate) scatter: Option<Result<Scatter, RouteError>>,
}

/// A route with parameters applied: the shards and the exact text.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundRoute {
    pub keyspace: String,
    pub tablet_type: TabletType,
    pub kind: RouteKind,
    pub target: Target,
    pub sql: String,
    /// Only for several shards; `None` there means concatenate the rows (or
    /// sum the affected rows).
    pub merge: Option<Merge>,
}

impl Route {
    /// The statement's text as planned (`?` kept), for logs and tests.
    pub fn sql_template(&self) -> String {
        template_text(&self.sql)
    }

    pub fn param_count(&self) -> usize {
        let s = match &self.scatter {
            Some(Ok(s)) => s.sql.param_count(),
            _ => 0,
        };
        self.sql.param_count().max(s)
    }

    /// Applies the parameters: maps vindex values to shards and inlines the
    /// parameters into the text.
    pub fn bind(&self, params: &[Datum]) -> Result<BoundRoute, RouteError> {
        let expected = self.param_count();
        if params.len() < expected {
            return Err(RouteError::WrongParamCount {
                expected,
                got: params.len(),
            });
        }
        let target = match &self.selector {
            Selector::Fixed(t) => t.clone(),
            Selector::Vindex {
                vindex,
                values,
                shards,
            } => {
                let mut hit = vec![false; shards.len()];
                for slot in values {
                    let d = slot.value(params)?;
                    if let Some(i) = shard_of(vindex.as_ref(), shards, d) {
                        hit[i] = true;
                    }
                }
                let names: Vec<String> = shards
                    .iter()
                    .zip(&hit)
                    .filter(|(_, h)| **h)
                    .map(|(s, _)| s.name.clone())
                    .collect();
                match names.len() {
                    // No value can match a row (NULL, unmappable): any one
                    // shard gives the same empty answer.
                    0 => Target::One(shards[0].name.clone()),
                    1 => Target::One(names.into_iter().next().unwrap_or_default()),
                    _ => Target::Some(names),
                }
            }
        };
        let single = matches!(target, Target::One(_) | Target::Any);
        let (sql, merge) = match (&self.scatter, single) {
            (Some(Ok(s)), false) => {
                let mut merge = s.merge.clone();
                if let (Some((limit, offset)), Some(m)) = (s.limit, merge.as_mut()) {
                    m.limit = limit.map(|b| b.resolve(params)).transpose()?;
                    m.offset = offset.resolve(params)?;
                }
                (s.sql.render(params)?, merge)
            }
            (Some(Err(e)), false) => return Err(e.clone()),
            _ => (self.sql.render(params)?, None),
        };
        Ok(BoundRoute {
            keyspace: self.keyspace.clone(),
            tablet_type: self.tablet_type,
            kind: self.kind,
            target,
            sql,
            merge,
        })
    }
}

pub(crate) fn template_text(t: &Template) -> String {
    let mut out = String::new();
    for p in &t.pieces {
        match p {
            Piece::Text(s) => out.push_str(s),
            Piece::Param(_) | Piece::IdOrParam(_) => out.push('?'),
            Piece::NextId => out.push_str("<id>"),
            Piece::Sum(..) => out.push_str("<limit+offset>"),
        }
    }
    out
}

/// The vindex's view of a value: integers as integers, everything else as
/// its bytes (integral decimals as integers, as the column would hold them).
pub(crate) fn vindex_value(d: &Datum) -> Value {
    match d {
        Datum::Null => Value::Null,
        Datum::Int(i) => Value::Int(*i),
        Datum::UInt(u) => Value::UInt(*u),
        Datum::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Value::Int(*f as i64),
        Datum::Decimal(s) => {
            let trimmed = match s.split_once('.') {
                Some((i, f)) if f.bytes().all(|c| c == b'0') => i,
                _ => s.as_str(),
            };
            if let Ok(i) = trimmed.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(u) = trimmed.parse::<u64>() {
                Value::UInt(u)
            } else {
                Value::Bytes(s.as_bytes().to_vec())
            }
        }
        other => Value::Bytes(other.to_text().unwrap_or_default()),
    }
}

/// The index of the shard holding `d`'s keyspace id; `None` for values no
/// row can have (NULL, unmappable).
pub(crate) fn shard_of(vindex: &dyn Vindex, shards: &[Shard], d: &Datum) -> Option<usize> {
    if d.is_null() {
        return None;
    }
    let ksid = vindex.map(&vindex_value(d)).ok()?;
    shards.iter().position(|s| s.range.contains(&ksid.0))
}

/// Where a sharded INSERT takes auto-increment ids from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceRef {
    /// The unsharded keyspace holding the sequence table.
    pub keyspace: String,
    pub table: String,
}

#[derive(Clone, Debug)]
pub(crate) struct InsertRow {
    /// `(v1, v2, ...)` with holes for parameters and the generated id.
    pub values: Template,
    /// The primary vindex value; `None`: the row's generated id.
    pub key: Option<Slot>,
    /// The auto-increment value given (NULL or 0 asks for a sequence id);
    /// `None` when the column was not in the list at all.
    pub auto: Option<Slot>,
    pub has_auto_column: bool,
}

/// An INSERT into a sharded table: rows split per shard by the keyspace id of
/// their primary vindex value, with auto-increment ids from a sequence.
#[derive(Clone, Debug)]
pub struct InsertPlan {
    pub keyspace: String,
    pub table: String,
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) rows: Vec<InsertRow>,
    pub(crate) vindex: Arc<dyn Vindex>,
    pub(crate) vindex_column: String,
    /// The primary vindex column is the auto-increment column, so a
    /// generated id also decides the row's shard.
    pub(crate) key_is_auto: bool,
    pub(crate) shards: Arc<[Shard]>,
    /// Set when the table has an `auto_increment` in the VSchema.
    pub sequence: Option<SequenceRef>,
}

/// An INSERT with its parameters: tells the executor how many sequence ids
/// it needs, then renders the per-shard statements once it has them.
#[derive(Clone, Debug)]
pub struct BoundInsert<'p> {
    plan: &'p InsertPlan,
    params: Vec<Datum>,
    /// Rows (by index) that take a generated id.
    needs_id: Vec<usize>,
}

/// One shard's part of a split INSERT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInsert {
    pub shard: String,
    pub sql: String,
}

impl InsertPlan {
    pub fn param_count(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.values.param_count())
            .max()
            .unwrap_or(0)
    }

    pub fn bind(&self, params: &[Datum]) -> Result<BoundInsert<'_>, RouteError> {
        let expected = self.param_count();
        if params.len() < expected {
            return Err(RouteError::WrongParamCount {
                expected,
                got: params.len(),
            });
        }
        let mut needs_id = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            if self.sequence.is_none() {
                continue;
            }
            let wants = match &row.auto {
                None => !row.has_auto_column,
                Some(slot) => matches!(
                    slot.value(params)?,
                    Datum::Null | Datum::Int(0) | Datum::UInt(0)
                ),
            };
            if wants {
                needs_id.push(i);
            }
        }
        Ok(BoundInsert {
            plan: self,
            params: params.to_vec(),
            needs_id,
        })
    }
}

impl BoundInsert<'_> {
    /// How many ids the executor must take from [`InsertPlan::sequence`].
    pub fn ids_needed(&self) -> usize {
        self.needs_id.len()
    }

    pub fn sequence(&self) -> Option<&SequenceRef> {
        self.plan.sequence.as_ref()
    }

    /// The per-shard statements, rows in their original order within each
    /// shard, shards in key-range order. `ids` are the sequence ids, one per
    /// row that needs one, in row order; the first is what `LAST_INSERT_ID()`
    /// reports afterwards, as MySQL reports the first id of a multi-row
    /// insert.
    pub fn render(&self, ids: &[i64]) -> Result<Vec<ShardInsert>, RouteError> {
        if ids.len() != self.needs_id.len() {
            return Err(RouteError::unsupported(format!(
                "insert into {}.{} needs {} sequence ids, got {}",
                self.plan.keyspace,
                self.plan.table,
                self.needs_id.len(),
                ids.len()
            )));
        }
        let p = self.plan;
        let mut per_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, row) in p.rows.iter().enumerate() {
            let id = self.needs_id.iter().position(|&r| r == i).map(|k| ids[k]);
            let key = match (&row.key, id) {
                (_, Some(id)) if p.key_is_auto => Datum::Int(id),
                (Some(slot), _) => slot.value(&self.params)?.clone(),
                (None, _) => Datum::Null,
            };
            let shard = if key.is_null() {
                None
            } else {
                p.vindex
                    .map(&vindex_value(&key))
                    .map_err(|e| {
                        RouteError::unsupported(format!(
                            "cannot insert row {} into {}.{}: {e}",
                            i + 1,
                            p.keyspace,
                            p.table
                        ))
                    })
                    .map(|ksid| p.shards.iter().position(|s| s.range.contains(&ksid.0)))?
            };
            let Some(shard) = shard else {
                return Err(RouteError::unsupported(format!(
                    "cannot insert row {} into {}.{}: no shard holds its {} value {key}",
                    i + 1,
                    p.keyspace,
                    p.table,
                    p.vindex_column
                )));
            };
            per_shard
                .entry(shard)
                .or_default()
                .push(row.values.render_with_id(&self.params, id)?);
        }
        Ok(per_shard
            .into_iter()
            .map(|(i, rows)| ShardInsert {
                shard: p.shards[i].name.clone(),
                sql: format!("{}{}{}", p.prefix, rows.join(", "), p.suffix),
            })
            .collect())
    }
}

/// A value the gate answers itself for a tableless SELECT.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalValue {
    /// `@@version`: the version the gate announces in its handshake.
    Version,
    VersionComment,
    /// `DATABASE()` / `SCHEMA()`: the session keyspace or NULL.
    Database,
    /// The session's last insert id (sequence ids count).
    LastInsertId,
    /// `@@autocommit`, which the gate tracks.
    Autocommit,
    /// `@@socket`: NULL. A tablet's answer would be its mysqld's socket,
    /// and drivers that prefer sockets (mysql_async does by default)
    /// reconnect to that path, around the gate.
    Socket,
    Literal(Datum),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalColumn {
    /// The column name, as MySQL names it: the alias, else the text.
    pub name: String,
    pub value: LocalValue,
}

/// What a statement does. Everything but [`Plan::Route`] and
/// [`Plan::Insert`] is handled by the gate itself.
#[derive(Clone, Debug)]
pub enum Plan {
    Route(Route),
    Insert(InsertPlan),
    /// `USE ks` / `USE ks@replica`.
    Use {
        keyspace: String,
        tablet_type: TabletType,
    },
    /// `BEGIN`, `START TRANSACTION ...`: `sql` is the client's text, to start
    /// each backend transaction the same way.
    Begin {
        sql: String,
    },
    Commit,
    Rollback,
    SetAutocommit(bool),
    /// Any other session `SET` (`NAMES`, `SESSION x`, `@@x`, `@user`,
    /// `TRANSACTION ...`): `sql` is the client's text, never re-printed, to
    /// run on every backend connection the session uses, now and later.
    /// `charset` is set by `SET NAMES` / `SET CHARACTER SET`.
    ///
    /// When the statement also sets `autocommit` (drivers do this at
    /// connect: Connector/J sends `SET autocommit=1, sql_mode=...`),
    /// `autocommit` carries it for the gate, and `sql` is the client's text
    /// with those assignments cut out, since the gate, not the backends,
    /// owns transactions.
    SetSession {
        sql: String,
        charset: Option<String>,
        autocommit: Option<bool>,
    },
    /// One row (none if `no_rows`, from `LIMIT 0`) the gate builds itself.
    Local {
        columns: Vec<LocalColumn>,
        no_rows: bool,
    },
    /// The keyspace names, filtered by the `LIKE` pattern if given.
    ShowDatabases {
        like: Option<String>,
    },
    /// Warnings are per connection: answer from the backend connection the
    /// previous statement used (or the gate's own), with this text.
    ShowWarnings {
        sql: String,
    },
}

impl Plan {
    /// The number of `?` parameters, for the prepare response.
    pub fn param_count(&self) -> usize {
        match self {
            Plan::Route(r) => r.param_count(),
            Plan::Insert(i) => i.param_count(),
            _ => 0,
        }
    }
}
