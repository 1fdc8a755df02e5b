//! The key order and the value comparison against a real mariadbd: the
//! merge's comparison must agree with the server's `ORDER BY` for every
//! collation, or it would pair the wrong rows.

use crate::coordinator::SESSION_SQL;
use crate::merge::{self, Input, MergeOptions, Outcome};
use crate::reader::{Held, ShardSide, spawn_reader};
use crate::record::TableReport;
use crate::schema::{TablePlan, read_columns};
use keyshift_testkit::TestMysqld;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

async fn session(server: &TestMysqld) -> Conn {
    let mut c = server.conn().await.expect("connect");
    for sql in SESSION_SQL {
        c.query_drop(*sql).await.expect("session");
    }
    c
}

/// Keys chosen to trip bytewise order: case, accents, characters below
/// the space (tab), trailing spaces, the empty string.
const KEYS: &[&str] = &[
    "a", "B", "c", "c\t", "c!", "C d", "Ö", "o", "p", "é", "ss", "", " x", "z ", "Z\t", "ABC",
    "abd", "Ab", "_", "~", "0", "9", "ä", "Å",
];

async fn setup(conn: &mut Conn, db: &str, collation: &str, upper: bool) -> usize {
    conn.query_drop(format!("CREATE DATABASE {db}"))
        .await
        .expect("db");
    let charset = collation.split('_').next().unwrap_or("utf8mb4");
    conn.query_drop(format!(
        "CREATE TABLE {db}.t (k VARCHAR(20) CHARACTER SET {charset} COLLATE {collation} NOT NULL PRIMARY KEY, \
         j JSON, d DECIMAL(30,10), f DOUBLE, n INT)"
    ))
    .await
    .expect("table");
    for (i, k) in KEYS.iter().enumerate() {
        let k = if upper {
            k.to_uppercase()
        } else {
            k.to_string()
        };
        // Keys equal under the collation collide; the first one stays.
        let json = if upper {
            format!("{{\"b\": [1, 2.0], \"a\": {i}}}")
        } else {
            format!("{{\"a\":{i},\"b\":[1,2]}}")
        };
        conn.exec_drop(
            format!("INSERT IGNORE INTO {db}.t VALUES (CONVERT(? USING {charset}), ?, ?, ?, ?)"),
            (k, json, format!("{i}.5000000000"), 0.1 * i as f64, i as i64),
        )
        .await
        .expect("insert");
    }
    let n: Option<usize> = conn
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .expect("count");
    n.expect("count")
}

async fn compare(server: &TestMysqld, a: &str, b: &str, batch: usize) -> TableReport {
    let mut probe = session(server).await;
    let cols = read_columns(&mut probe, a, "t").await.expect("columns");
    let plan = TablePlan::build("t", &["k".to_string()], cols, &mut probe)
        .await
        .expect("plan");
    let other = read_columns(&mut probe, b, "t").await.expect("columns");
    plan.check_target(&other).expect("same schema");
    let plan = Arc::new(plan);
    let mut input = Input {
        sources: Vec::new(),
        targets: Vec::new(),
    };
    let mut handles = Vec::new();
    for (db, is_source) in [(a, true), (b, false)] {
        let side = ShardSide {
            shard: db.to_string(),
            db: db.to_string(),
            held: Held::Target(session(server).await),
            mariadb: true,
            spare: Vec::new(),
        };
        let (rx, h) = spawn_reader(side, plan.clone(), None, None, batch, None);
        if is_source {
            input.sources.push((db.to_string(), rx));
        } else {
            input.targets.push((db.to_string(), rx));
        }
        handles.push(h);
    }
    let mut report = TableReport::new("t");
    let out = merge::merge(
        &plan,
        input,
        &mut report,
        &MergeOptions {
            max_samples: 100,
            max_rows_per_second: None,
        },
        &|_| {},
        &CancellationToken::new(),
    )
    .await
    .expect("the server's order agrees with the merge's");
    assert_eq!(out, Outcome::Done);
    for h in handles {
        h.await.expect("reader").held.finish().await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_order_agrees_with_the_server_for_every_collation() {
    let server = TestMysqld::start().await.expect("mariadbd");
    let mut conn = server.conn().await.expect("connect");
    for (i, coll) in [
        "utf8mb4_general_ci",
        "utf8mb4_unicode_ci",
        "utf8mb4_bin",
        "utf8mb4_general_nopad_ci",
        "latin1_swedish_ci",
    ]
    .iter()
    .enumerate()
    {
        let (a, b) = (format!("s{i}"), format!("t{i}"));
        let n = setup(&mut conn, &a, coll, false).await;
        assert!(n > 15, "{coll}: {n} distinct keys");
        // The same table compared with itself, in tiny batches: every row
        // read once (keyset paging with collation-aware literals), in an
        // order the merge accepts, all matching.
        let r = compare(&server, &a, &a, 2).await;
        assert_eq!(
            (r.rows_compared, r.matching, r.differences()),
            (n as u64, n as u64, 0),
            "{coll}: {r:?}"
        );
        // Upper-cased keys on the other side: under a case-insensitive
        // collation the same keys (value differences in `k` and in the
        // JSON's spelling that does not count); under a binary one,
        // different keys.
        let m = setup(&mut conn, &b, coll, true).await;
        let r = compare(&server, &a, &b, 3).await;
        if coll.contains("_ci") {
            assert_eq!(m, n, "{coll}");
            assert_eq!(r.missing_on_target + r.extra_on_target, 0, "{coll}: {r:?}");
            for s in &r.samples {
                // Only the key's spelling differs: the JSON is the same
                // document, the numbers the same.
                assert!(s.columns.iter().all(|c| c.column == "k"), "{coll}: {s:?}");
            }
            let changed = KEYS.iter().filter(|k| k.to_uppercase() != **k).count() as u64;
            assert!(r.mismatched > 0 && r.mismatched <= changed, "{coll}: {r:?}");
        } else {
            assert!(
                r.missing_on_target > 0 && r.extra_on_target > 0,
                "{coll}: {r:?}"
            );
        }
    }
}
