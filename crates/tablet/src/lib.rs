//! Runs and probes the MySQL/MariaDB servers that serve shards (tablets).
//!
//! A *managed* tablet is a `mariadbd` keyshift initialises and runs itself
//! ([`Mysqld`], [`supervise`]); an *external* one is someone else's server
//! that keyshift only connects to ([`Endpoint`], [`probe`]). A managed
//! replica is seeded from its shard's primary and then replicates from it
//! ([`ensure_replica`]). Deciding which tablets to run is the cluster
//! layer's job.

mod binaries;
mod error;
mod mysqld;
mod probe;
mod procfs;
mod replication;
mod spawn;
mod supervise;

pub use binaries::{ClientTools, MariadbBinaries, find_binaries, find_client_tools};
pub use error::TabletError;
pub use mysqld::{ExitInfo, Mysqld, MysqldConfig, STARTUP_TIMEOUT, STOP_TIMEOUT, free_port};
pub use probe::{CONNECT_TIMEOUT, Endpoint, TabletStatus, TlsMode, TlsSpec, probe};
pub use replication::{
    EnsureOutcome, ReplicaSetup, ReplicationError, ReplicationState, ReplicationStatus,
    ensure_replica, replication_status,
};
pub use supervise::{ProcessState, supervise};
