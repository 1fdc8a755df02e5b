//! keyshift's router: decides where each statement goes (keyspace, shards)
//! and how the answers of several shards combine. Pure functions, no I/O:
//! the gate parses nothing itself, calls [`plan`], binds parameters, runs
//! what the plan says on backend connections and, for scatter SELECTs, feeds
//! the decoded rows through [`merge()`].
//!
//! The planner follows vtgate's rules (see [`Snapshot`] for table
//! resolution): single-shard statements keep the client's text byte for byte
//! unless a routing rule moves a table; only multi-shard SELECTs are
//! rewritten (hidden sort/group columns, AVG as SUM and COUNT, LIMIT pushed
//! down as offset + count) and carry a [`Merge`].
//!
//! Plans are cached per snapshot by statement text; prepared statements are
//! planned once with `?` and bound per execution ([`Route::bind`],
//! [`InsertPlan::bind`]). A prepared plan belongs to the snapshot it was made
//! with: the gate re-plans when it holds a newer snapshot (compare with
//! `Arc::ptr_eq`), so a routing switch reaches prepared statements too.

mod datum;
mod dml;
mod error;
mod lex;
mod merge;
mod passthrough;
mod plan;
mod planner;
mod select;
mod session;
mod show;
mod snapshot;
mod template;

pub use datum::{ColumnKind, Datum, compare};
pub use error::RouteError;
pub use merge::{Aggregate, AggregateFn, Aggregation, Column, Merge, OrderKey, Row, merge};
pub use plan::{
    BoundInsert, BoundRoute, InsertPlan, LocalColumn, LocalValue, Plan, Route, RouteKind,
    SequenceRef, SessionCtx, ShardInsert, TabletType, Target,
};
pub use planner::plan;
pub use session::use_target;
pub use snapshot::{KeyspaceInfo, KeyspaceSpec, Shard, Snapshot, SnapshotError};
pub use template::Template;

#[cfg(test)]
mod tests;
