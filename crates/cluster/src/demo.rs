//! `keyshift demo`: the starting point of the headline workflow — an
//! unsharded keyspace `commerce` with a few rows, and an empty sharded
//! keyspace `customer` whose VSchema is ready to receive `customer` and
//! `corder` (the same example Vitess's local tutorial uses).

use crate::model::TabletRecord;
use crate::node::keyspace_primaries;
use crate::ops::{self, ClusterError, ManagedDefaults, Result, ShardSpec};
use keyshift_topo::Topo;
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

const COMMERCE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS product (sku VARCHAR(128) NOT NULL, description VARCHAR(128), price BIGINT, PRIMARY KEY (sku)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS customer (customer_id BIGINT NOT NULL AUTO_INCREMENT, email VARCHAR(128), PRIMARY KEY (customer_id)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS corder (order_id BIGINT NOT NULL AUTO_INCREMENT, customer_id BIGINT, sku VARCHAR(128), price BIGINT, PRIMARY KEY (order_id)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS customer_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence' ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS corder_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence' ENGINE=InnoDB",
];

const COMMERCE_DATA: &[&str] = &[
    "INSERT INTO product (sku, description, price) VALUES ('SKU-1001', 'Monitor', 100), ('SKU-1002', 'Keyboard', 30)",
    "INSERT INTO customer (customer_id, email) VALUES (1, 'alice@domain.com'), (2, 'bob@domain.com'), (3, 'charlie@domain.com'), (4, 'dan@domain.com'), (5, 'eve@domain.com')",
    "INSERT INTO corder (order_id, customer_id, sku, price) VALUES (1, 1, 'SKU-1001', 100), (2, 2, 'SKU-1002', 30), (3, 3, 'SKU-1002', 30), (4, 4, 'SKU-1002', 30), (5, 5, 'SKU-1002', 30)",
    // Sequences start above the rows that exist, so ids handed out by the
    // gate after the move never collide with moved rows.
    "INSERT INTO customer_seq (id, next_id, cache) VALUES (0, 1000, 100)",
    "INSERT INTO corder_seq (id, next_id, cache) VALUES (0, 1000, 100)",
];

const COMMERCE_VSCHEMA: &str = r#"{
  "tables": {
    "product": {},
    "customer": {},
    "corder": {},
    "customer_seq": {"type": "sequence"},
    "corder_seq": {"type": "sequence"}
  }
}"#;

const CUSTOMER_VSCHEMA: &str = r#"{
  "sharded": true,
  "vindexes": {
    "hash": {"type": "hash"}
  },
  "tables": {
    "customer": {
      "column_vindexes": [{"column": "customer_id", "name": "hash"}],
      "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}
    },
    "corder": {
      "column_vindexes": [{"column": "customer_id", "name": "hash"}],
      "auto_increment": {"column": "order_id", "sequence": "corder_seq"}
    }
  }
}"#;

/// What the demo did, for the CLI to print.
#[derive(Debug, Default, serde::Serialize)]
pub struct DemoReport {
    pub created_keyspaces: Vec<String>,
    pub loaded_data: bool,
    pub applied_vschemas: Vec<String>,
}

/// Creates what is missing of the demo. Keyspaces that do not exist are
/// created with managed tablets (`defaults`), which a running `keyshift up`
/// starts; the demo waits up to `wait` for every primary to answer.
pub async fn run_demo(
    topo: &dyn Topo,
    defaults: Option<&ManagedDefaults>,
    wait: Duration,
) -> Result<DemoReport> {
    let mut report = DemoReport::default();
    for (name, spec) in [
        ("commerce", ShardSpec::Unsharded),
        (
            "customer",
            ShardSpec::Named(vec!["-80".into(), "80-".into()]),
        ),
    ] {
        match ops::get_keyspace(topo, name).await {
            Ok(ks) => {
                let want_sharded = name == "customer";
                if ks.sharded != want_sharded {
                    return Err(ClusterError::Conflict(format!(
                        "keyspace `{name}` exists but is {}; the demo needs it {}",
                        if ks.sharded { "sharded" } else { "unsharded" },
                        if want_sharded { "sharded" } else { "unsharded" },
                    )));
                }
            }
            Err(ClusterError::NoSuchKeyspace(_)) => {
                ops::create_keyspace(topo, name, &spec, defaults).await?;
                report.created_keyspaces.push(name.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    let commerce = wait_for_primaries(topo, "commerce", wait).await?;
    wait_for_primaries(topo, "customer", wait).await?;
    let primary = &commerce[0];
    let mut conn = connect(primary).await?;
    let loaded: Option<String> = conn
        .exec_first(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name = 'product'",
            (primary.database.as_str(),),
        )
        .await
        .map_err(|e| sql_err(primary, e))?;
    if loaded.is_none() {
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .map_err(|e| sql_err(primary, e))?;
        for stmt in COMMERCE_SCHEMA.iter().chain(COMMERCE_DATA) {
            tx.query_drop(*stmt)
                .await
                .map_err(|e| sql_err(primary, e))?;
        }
        tx.commit().await.map_err(|e| sql_err(primary, e))?;
        report.loaded_data = true;
    }
    let _ = conn.disconnect().await;
    for (ks, json) in [
        ("commerce", COMMERCE_VSCHEMA),
        ("customer", CUSTOMER_VSCHEMA),
    ] {
        let current = ops::get_vschema(topo, ks).await?;
        if current.tables.is_empty() {
            ops::apply_vschema(topo, ks, json, false).await?;
            report.applied_vschemas.push(ks.to_string());
        }
    }
    Ok(report)
}

/// Polls until every primary of the keyspace accepts a connection.
pub async fn wait_for_primaries(
    topo: &dyn Topo,
    keyspace: &str,
    wait: Duration,
) -> Result<Vec<TabletRecord>> {
    let deadline = Instant::now() + wait;
    loop {
        let primaries = keyspace_primaries(topo, keyspace).await?;
        let mut down = Vec::new();
        for (_, t) in &primaries {
            let status = if t.port == 0 {
                None
            } else {
                Some(keyshift_tablet::probe(&t.endpoint(), Duration::from_secs(2)).await)
            };
            if !status.as_ref().is_some_and(|s| s.healthy) {
                down.push(format!(
                    "{} ({}/{}{})",
                    t.alias,
                    t.keyspace,
                    t.shard,
                    status
                        .and_then(|s| s.error)
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        if down.is_empty() {
            return Ok(primaries.into_iter().map(|(_, t)| t).collect());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Invalid(format!(
                "these tablets are not running: {}\n  start the cluster with `keyshift up` (or `keyshift up --detach`) and try again",
                down.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(t: &TabletRecord) -> Result<mysql_async::Conn> {
    let mut opts = mysql_async::OptsBuilder::from_opts(t.endpoint().opts());
    opts = opts.db_name(Some(t.database.clone()));
    mysql_async::Conn::new(opts)
        .await
        .map_err(|e| sql_err(t, e))
}

fn sql_err(t: &TabletRecord, e: mysql_async::Error) -> ClusterError {
    ClusterError::Invalid(format!("tablet {} ({}): {e}", t.alias, t.address()))
}
