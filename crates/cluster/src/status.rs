//! Health of every tablet, for `keyshift status` and the dashboard's cluster
//! view.

use crate::model::{TabletRecord, TabletRole};
use crate::ops::{self, Result};
use keyshift_tablet::TabletStatus;
use keyshift_topo::Topo;
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
            let mut views: Vec<TabletView> = tablets
                .iter()
                .zip(&probes)
                .filter(|(t, _)| t.keyspace == ks.name && t.shard == shard.name)
                .map(|(t, s)| TabletView {
                    alias: t.alias.to_string(),
                    role: t.role,
                    managed: t.managed.is_some(),
                    address: t.address(),
                    database: t.database.clone(),
                    status: s.clone(),
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
