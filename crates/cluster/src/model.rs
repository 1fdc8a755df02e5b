//! The records the cluster's intent is made of, and where each lives in the
//! topo. Every other role (gate, workflows, API) reads these through
//! [`keys`], never by spelling paths itself.
//!
//! ```text
//! /keyspaces/{ks}/keyspace          KeyspaceRecord
//! /keyspaces/{ks}/shards/{shard}    ShardRecord
//! /keyspaces/{ks}/vschema           keyshift_vschema::KeyspaceVSchema
//! /tablets/{alias}                  TabletRecord
//! /routing_rules                    keyshift_vschema::RoutingRules
//! /gate/users/{name}                GateUserRecord
//! /cluster/next_uid                 u32, the next tablet uid to hand out
//! /workflows/{name}                 keyshift_workflow::Workflow
//! /vdiffs/{workflow}                the workflow's VDiff request and report
//! /gate/holds/{workflow}            HoldRecord (during a traffic switch)
//! /gate/acks/{workflow}/{gate}      HoldAck
//! /gate/instances/{gate}            GateInstance (heartbeat)
//! ```

use keyshift_types::{KeyRange, TabletAlias};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

pub mod keys {
    pub const KEYSPACES: &str = "/keyspaces/";
    pub const TABLETS: &str = "/tablets/";
    pub const ROUTING_RULES: &str = "/routing_rules";
    pub const GATE_USERS: &str = "/gate/users/";
    pub const NEXT_UID: &str = "/cluster/next_uid";
    pub const WORKFLOWS: &str = "/workflows/";

    pub fn keyspace_dir(ks: &str) -> String {
        format!("/keyspaces/{ks}/")
    }
    pub fn keyspace(ks: &str) -> String {
        format!("/keyspaces/{ks}/keyspace")
    }
    pub fn shards(ks: &str) -> String {
        format!("/keyspaces/{ks}/shards/")
    }
    pub fn shard(ks: &str, shard: &str) -> String {
        format!("/keyspaces/{ks}/shards/{shard}")
    }
    pub fn vschema(ks: &str) -> String {
        format!("/keyspaces/{ks}/vschema")
    }
    pub fn tablet(alias: &super::TabletAlias) -> String {
        format!("/tablets/{alias}")
    }
    pub fn gate_user(name: &str) -> String {
        format!("/gate/users/{name}")
    }
    pub fn workflow(name: &str) -> String {
        format!("/workflows/{name}")
    }

    /// VDiff requests and reports, one per workflow (outside
    /// [`WORKFLOWS`] so that listing workflows lists only their records).
    pub const VDIFFS: &str = "/vdiffs/";

    pub fn vdiff(workflow: &str) -> String {
        format!("/vdiffs/{workflow}")
    }

    /// Traffic holds the gates obey during a switch (see the gate's
    /// `holds` module).
    pub const GATE_HOLDS: &str = "/gate/holds/";

    pub fn gate_hold(workflow: &str) -> String {
        format!("/gate/holds/{workflow}")
    }

    /// Live gate instances (heartbeat records), so a switch knows whose
    /// acknowledgements to wait for.
    pub const GATE_INSTANCES: &str = "/gate/instances/";

    pub fn gate_instance(id: &str) -> String {
        format!("/gate/instances/{id}")
    }

    pub fn gate_acks(workflow: &str) -> String {
        format!("/gate/acks/{workflow}/")
    }

    pub fn gate_ack(workflow: &str, gate: &str) -> String {
        format!("/gate/acks/{workflow}/{gate}")
    }
}

/// A traffic switch asks every gate to hold the statements bound for
/// `keyspaces` (they wait, they do not fail) and to report once nothing is
/// in flight there: no statement that started earlier, no open
/// transaction with work on those keyspaces. Removing the record (in the
/// same topo transaction as the routing change when the switch succeeds)
/// releases the statements, which are then planned against the new rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub workflow: String,
    /// Unique per attempt, so an acknowledgement of an earlier attempt is
    /// never mistaken for this one's.
    pub id: String,
    pub keyspaces: Vec<String>,
    /// Unix milliseconds after which gates ignore the hold: a switch that
    /// died cannot hold traffic beyond its window.
    pub until_ms: u64,
    /// Statements held at once per gate; more fail at once with an error.
    pub max_queued: usize,
}

/// A gate's answer to a hold: it holds, and nothing is in flight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldAck {
    pub hold_id: String,
    pub gate: String,
    pub at_ms: u64,
}

/// A running gate, refreshed every few seconds, so that a switch knows
/// which gates must acknowledge its hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateInstance {
    pub id: String,
    pub addr: String,
    pub pid: u32,
    /// Unix milliseconds of the last heartbeat.
    pub seen_ms: u64,
}

/// Gates honour a hold this long past its `until_ms`: the switch commits
/// before `until_ms`, so only a switch that died is outlived.
pub const HOLD_GRACE_MS: u64 = 5_000;

/// A gate that has not refreshed its record for this long is presumed
/// gone and is not waited for.
pub const GATE_INSTANCE_TTL_MS: u64 = 10_000;
/// How often gates refresh their instance record.
pub const GATE_HEARTBEAT_MS: u64 = 2_000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyspaceRecord {
    pub name: String,
    pub sharded: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Set on the keyspace an import registers for an external server: the
    /// import workflow owns it, and completing or cancelling the import
    /// removes it together with the stored credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_of: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub keyspace: String,
    /// The shard's name as created (`0`, `-`, `-80`, `80-`).
    pub name: String,
    pub key_range: KeyRange,
    pub primary: Option<TabletAlias>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TabletRole {
    #[default]
    Primary,
    Replica,
}

impl fmt::Display for TabletRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TabletRole::Primary => "primary",
            TabletRole::Replica => "replica",
        })
    }
}

impl std::str::FromStr for TabletRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "primary" => Ok(TabletRole::Primary),
            "replica" => Ok(TabletRole::Replica),
            _ => Err(format!("unknown tablet role `{s}`: use primary or replica")),
        }
    }
}

/// One MySQL/MariaDB server serving one shard.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TabletRecord {
    pub alias: TabletAlias,
    pub keyspace: String,
    pub shard: String,
    pub role: TabletRole,
    /// The database on the server that holds the keyspace's tables.
    pub database: String,
    /// Where to connect. For a managed tablet the port is the one its
    /// mariadbd last started on (0 before the first start).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Present when keyshift runs this server itself.
    pub managed: Option<ManagedSpec>,
    /// The server's Unix socket, recorded for managed tablets when they start.
    /// A process on the same host (the gate) connects through it when the
    /// file exists: about half the kernel time of loopback TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<std::path::PathBuf>,
    /// TLS for keyshift's connections to an external server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<keyshift_tablet::TlsSpec>,
}

/// How keyshift runs a managed tablet's mariadbd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagedSpec {
    pub datadir: PathBuf,
    pub server_id: u32,
    /// The port the user asked for; 0 means any free loopback port.
    pub requested_port: u16,
}

impl fmt::Debug for TabletRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TabletRecord")
            .field("alias", &self.alias)
            .field("keyspace", &self.keyspace)
            .field("shard", &self.shard)
            .field("role", &self.role)
            .field("database", &self.database)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("managed", &self.managed)
            .field("socket", &self.socket)
            .field("tls", &self.tls.as_ref().map(|t| t.mode))
            .finish()
    }
}

impl TabletRecord {
    pub fn endpoint(&self) -> keyshift_tablet::Endpoint {
        keyshift_tablet::Endpoint {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            tls: self.tls.clone(),
        }
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A user that may connect to the gate. Only the double-SHA1 hash is kept,
/// which is all `mysql_native_password` verification needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateUserRecord {
    pub name: String,
    /// `*` followed by upper-case hex of SHA1(SHA1(password)), as in
    /// `mysql.user.authentication_string`.
    pub auth_string: String,
}

impl GateUserRecord {
    pub fn new(name: &str, password: &str) -> Self {
        GateUserRecord {
            name: name.to_string(),
            auth_string: native_password_hash(password),
        }
    }
}

/// `mysql_native_password`'s stored form of a password.
pub fn native_password_hash(password: &str) -> String {
    use sha1::{Digest, Sha1};
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    format!("*{}", hex::encode_upper(stage2))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_hash_matches_mysql() {
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        assert_eq!(
            native_password_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn tablet_debug_hides_the_password() {
        let t = TabletRecord {
            alias: "local-0000000100".parse().expect("alias"),
            keyspace: "commerce".into(),
            shard: "0".into(),
            role: TabletRole::Primary,
            database: "commerce".into(),
            host: "127.0.0.1".into(),
            port: 3306,
            user: "keyshift".into(),
            password: "hunter2".into(),
            managed: None,
            socket: None,
            tls: None,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
