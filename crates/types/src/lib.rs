//! Value types shared by every keyshift crate: key ranges and shard names,
//! GTID positions in both server flavors, and tablet aliases.
//!
//! They live in one small crate so that the topo, the gate and the workflow
//! streams agree on one ordering and one text form for each of them, the same
//! text forms Vitess users already know.

pub mod gtid;
pub mod ids;
pub mod keyrange;
pub mod prom;

pub use gtid::{Flavor, GtidError, MariaGtid, MariaGtidSet, MysqlGtidSet, Position, Sid};
pub use ids::{TabletAlias, TabletAliasError};
pub use keyrange::{KeyRange, KeyRangeError, KeyspaceId, PartitionError, check_partition};
