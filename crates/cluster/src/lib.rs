//! Cluster configuration: the cluster file, the records of keyspaces, shards,
//! tablets, VSchemas and routing rules in the topo, the operations on them
//! (what the CLI runs and the API exposes), and the local node that runs the
//! managed tablets for `keyshift up`.

pub mod demo;
pub mod file;
pub mod model;
pub mod node;
pub mod ops;
pub mod schema;
pub mod status;

pub use file::{ClusterFile, ClusterFileError};
pub use model::{KeyspaceRecord, ShardRecord, TabletRecord, TabletRole};
pub use ops::{ClusterError, ManagedDefaults, ShardSpec, TabletSpec};
