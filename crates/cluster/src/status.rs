//! Health of every tablet, for `keyshift status` and the dashboard's cluster
//! view. Replicas also get their replication state and lag, both in seconds
//! (`Seconds_Behind_Master`, which only counts once an event arrives) and in
//! transactions (the distance between the primary's binlog GTID and the
//! replica's applied one, which also shows a replica that cannot connect).

use crate::model::{TabletRecord, TabletRole};
use crate::ops::{self, Result};
use keyshift_tablet::{ReplicationState, TabletStatus};
use keyshift_topo::Topo;
use keyshift_types::MariaGtidSet;
use serde::Serialize;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct KeyspaceStatus {
    pub name: String,
    pub sharded: bool,
    pub shards: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShardStatus {
    pub name: String,
    pub key_range: String,
    pub primary: Option<String>,
    pub tablets: Vec<TabletView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TabletView {
    pub alias: String,
    pub role: TabletRole,
    pub managed: bool,
    pub address: String,
    pub database: String,
    pub status: TabletStatus,
    /// Replicas, and any tablet that replicates from another server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicaView>,
}

/// A replica's replication, judged.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaView {
    /// None: no replication source configured (yet).
    pub state: Option<ReplicationState>,
    /// One line for people: the state, the lag, or what is wrong.
    pub summary: String,
    pub seconds_behind: Option<u64>,
    /// Transactions in the primary's binlog that the replica has not
    /// applied (MariaDB GTIDs of the same domains).
    pub transactions_behind: Option<u64>,
}

impl ReplicaView {
    /// Whether an operator must act (a thread stopped on an error).
    pub fn is_broken(&self) -> bool {
        self.state == Some(ReplicationState::Broken)
    }
}

/// Probes all tablets at once, each bounded by `timeout`, so a dead server
/// costs one timeout, not one per tablet.
pub async fn cluster_status(topo: &dyn Topo, timeout: Duration) -> Result<Vec<KeyspaceStatus>> {
    let tablets = ops::list_tablets(topo).await?;
    let probes = futures::future::join_all(tablets.iter().map(|t| probe(t, timeout))).await;
    let mut out = Vec::new();
    for ks in ops::list_keyspaces(topo).await? {
        let mut shards = Vec::new();
        for shard in ops::list_shards(topo, &ks.name).await? {
            let in_shard = || {
                tablets
                    .iter()
                    .zip(&probes)
                    .filter(|(t, _)| t.keyspace == ks.name && t.shard == shard.name)
            };
            let primary_status = in_shard()
                .find(|(t, _)| Some(&t.alias) == shard.primary.as_ref())
                .map(|(_, s)| s);
            let mut views: Vec<TabletView> = in_shard()
                .map(|(t, s)| TabletView {
                    alias: t.alias.to_string(),
                    role: t.role,
                    managed: t.managed.is_some(),
                    address: t.address(),
                    database: t.database.clone(),
                    status: s.clone(),
                    replication: replica_view(t, s, primary_status),
                })
                .collect();
            views.sort_by(|a, b| {
                (a.role != TabletRole::Primary, &a.alias)
                    .cmp(&(b.role != TabletRole::Primary, &b.alias))
            });
            shards.push(ShardStatus {
                key_range: shard.key_range.name(),
                name: shard.name,
                primary: shard.primary.map(|a| a.to_string()),
                tablets: views,
            });
        }
        out.push(KeyspaceStatus {
            name: ks.name,
            sharded: ks.sharded,
            shards,
        });
    }
    Ok(out)
}

async fn probe(t: &TabletRecord, timeout: Duration) -> TabletStatus {
    if t.port == 0 {
        return TabletStatus {
            healthy: false,
            error: Some("not started yet: `keyshift up` starts managed tablets".to_string()),
            ..Default::default()
        };
    }
    keyshift_tablet::probe(&t.endpoint(), timeout).await
}

fn replica_view(
    t: &TabletRecord,
    s: &TabletStatus,
    primary: Option<&TabletStatus>,
) -> Option<ReplicaView> {
    let Some(r) = &s.replication else {
        if t.role != TabletRole::Replica || !s.healthy {
            return None;
        }
        return Some(ReplicaView {
            state: None,
            summary: if t.managed.is_some() {
                "not replicating yet: being seeded from its primary, or waiting for it".to_string()
            } else {
                "no replication source is configured on this server".to_string()
            },
            seconds_behind: None,
            transactions_behind: None,
        });
    };
    let behind = primary
        .and_then(|p| p.gtid_binlog_pos.as_deref())
        .zip(r.gtid_slave_pos.as_deref())
        .and_then(|(p, applied)| transactions_behind(p, applied));
    let mut summary = r.summary();
    if let Some(n) = behind
        && r.problem().is_none()
    {
        summary.push_str(&format!(", {n} transaction(s) behind"));
    }
    Some(ReplicaView {
        state: Some(r.state()),
        summary,
        seconds_behind: r.seconds_behind,
        transactions_behind: behind,
    })
}

/// How many transactions of `primary` (a MariaDB binlog position) are not in
/// `applied`, counted per domain by sequence number; None when either is
/// not a MariaDB position.
fn transactions_behind(primary: &str, applied: &str) -> Option<u64> {
    let primary = MariaGtidSet::parse(primary).ok()?;
    let applied = MariaGtidSet::parse(applied).ok()?;
    Some(
        primary
            .domains()
            .map(|g| {
                let done = applied.get(g.domain).map_or(0, |a| a.seq);
                g.seq.saturating_sub(done)
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_behind_counts_per_domain() {
        assert_eq!(transactions_behind("0-100-50", "0-100-50"), Some(0));
        assert_eq!(transactions_behind("0-100-50", "0-100-42"), Some(8));
        assert_eq!(transactions_behind("0-100-50,1-7-3", "0-100-49"), Some(4));
        assert_eq!(transactions_behind("0-100-5", ""), Some(5));
        assert_eq!(transactions_behind("uuid:1-5", "0-1-1"), None);
    }
}
