//! A JDBC application through the gate: MariaDB Connector/J (Debian's
//! `libmariadb-java`, installed by `scripts/install-deps.sh --test`) runs
//! `tests/java/GateClient.java` against a sharded keyspace behind the gate.
//! The Java side checks every answer the driver gets (prepared statements
//! with typed parameters, batches, generated keys from the sequence,
//! transactions with autocommit off, scatter queries, catalogs, errors as
//! SQLExceptions with MySQL codes); this side then checks the shards
//! directly: every row where its keyspace id says, with the values written.

mod common;

use std::path::Path;
use std::process::Command;

use common::cluster::{GATE_PASSWORD, GATE_USER, SHARDED, TestCluster, UNSHARDED};
use mysql_async::prelude::*;

const CONNECTOR_J: &str = "/usr/share/java/mariadb-java-client.jar";

const ORDERS_DDL: &str = "CREATE TABLE orders (
    id BIGINT NOT NULL,
    customer_id BIGINT,
    amount DECIMAL(10,2),
    note VARCHAR(64),
    created DATETIME,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_j_runs_an_application_through_the_gate() -> anyhow::Result<()> {
    // Not a skip: CI installs both (scripts/install-deps.sh --test).
    assert!(
        Path::new(CONNECTOR_J).exists(),
        "{CONNECTOR_J} is missing: run scripts/install-deps.sh --test (package libmariadb-java)"
    );
    let cl = TestCluster::start(&["-80", "80-"]).await?;
    cl.on_shards(ORDERS_DDL).await?;
    cl.unsharded
        .exec(
            "CREATE TABLE orders_seq (id INT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
             INSERT INTO orders_seq VALUES (0, 1000, 10);
             CREATE TABLE product (name VARCHAR(32) PRIMARY KEY);
             INSERT INTO product VALUES ('anvil'), ('rope')",
        )
        .await?;
    cl.apply_vschema(
        UNSHARDED,
        r#"{"tables": {"orders_seq": {"type": "sequence"}, "product": {}}}"#,
    )
    .await?;
    cl.apply_vschema(
        SHARDED,
        r#"{"sharded": true,
            "vindexes": {"hash": {"type": "hash"}},
            "tables": {"orders": {
                "column_vindexes": [{"column": "id", "name": "hash"}],
                "auto_increment": {"column": "id", "sequence": "orders_seq"}}}}"#,
    )
    .await?;

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/GateClient.java");
    let port = cl.gate_port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .arg("-cp")
            .arg(CONNECTOR_J)
            .arg(&source)
            .args([port.as_str(), GATE_USER, GATE_PASSWORD])
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.starts_with("ALL OK ")),
        "the JDBC client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let checks: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ALL OK ")?.parse().ok())
        .unwrap_or(0);
    assert!(checks >= 40, "only {checks} checks ran:\n{stdout}");

    // What the application wrote, read on each shard directly: ids 1..=20
    // as the batch wrote them, 103 (updated), the sequence's id, and
    // nothing else; each on the shard its keyspace id names.
    let hash = keyshift_vindex::new_vindex("hash", &Default::default())?;
    let mut seen = Vec::new();
    for s in &cl.shards {
        let mut c = s.conn().await?;
        let rows: Vec<(i64, Option<i64>, String, Option<String>)> = c
            .query(format!(
                "SELECT id, customer_id, CAST(amount AS CHAR), note FROM `{SHARDED}`.orders ORDER BY id"
            ))
            .await?;
        c.disconnect().await?;
        for (id, customer_id, amount, note) in rows {
            let ksid = hash.map(&keyshift_vindex::Value::Int(id))?;
            assert_eq!(
                cl.shard_of(&ksid.0).shard,
                s.shard,
                "order {id} is on the wrong shard"
            );
            match id {
                1..=20 => {
                    assert_eq!(customer_id, Some(id % 7), "order {id}");
                    assert_eq!(amount, format!("{id}.25"), "order {id}");
                    let want = (id % 5 != 0).then(|| format!("note ü {id}"));
                    assert_eq!(note, want, "order {id}");
                }
                103 => assert_eq!(note.as_deref(), Some("updated")),
                id if id >= 1000 => assert_eq!(note.as_deref(), Some("from the sequence")),
                other => panic!("unexpected order {other} on {}", s.shard),
            }
            seen.push(id);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen.len(), 22, "orders on the shards: {seen:?}");
    assert_eq!(&seen[..21], &(1..=20).chain([103]).collect::<Vec<_>>()[..]);
    Ok(())
}
