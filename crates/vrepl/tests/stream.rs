//! The stream engine against real mariadbd servers, with a concurrent
//! writer on the source, checked by the test's own row-by-row comparison.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyshift_testkit::TestMysqld;
use keyshift_types::{KeyRange, Position};
use keyshift_vindex::{Vindex, new_vindex};
use keyshift_vrepl::{
    CopyGroup, MariaDb, OnDdl, ServerFlavor, StreamError, StreamExit, StreamProgress, StreamSpec,
    StreamState, TableSpec, run_stream,
};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ------------------------------------------------------------ fixtures

const CUSTOMER_DDL: &str = "CREATE TABLE customer (
    id BIGINT NOT NULL PRIMARY KEY,
    cid BIGINT NOT NULL,
    name VARCHAR(64) CHARACTER SET utf8mb4,
    amount DECIMAL(12,2),
    f FLOAT,
    updated DATETIME(6),
    KEY (cid)
) ENGINE=InnoDB";

/// Composite, collated (case- and accent-insensitive) VARCHAR key.
const TAGS_DDL: &str = "CREATE TABLE tags (
    owner VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
    tag VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
    note TEXT,
    PRIMARY KEY (owner, tag)
) ENGINE=InnoDB";

const OWNERS: &[&str] = &[
    "alice", "Alice", "ALICE", "bob", "bób", "carol", "dave", "eve", "émile", "emile", "zoë", "😀",
    "😀a", "a😀", "mallory", "trent", "peggy", "victor", "walter", "o'brien", "x y", "Ωmega",
    "日本", "zed", "yan", "xi", "wu", "vi", "ur", "ty",
];

struct Env {
    src: TestMysqld,
    targets: Vec<TestMysqld>,
}

async fn servers(targets: usize) -> Env {
    let (src, tgts) = tokio::join!(TestMysqld::start(), async {
        let mut v = Vec::new();
        for _ in 0..targets {
            v.push(TestMysqld::start().await.unwrap());
        }
        v
    });
    Env {
        src: src.unwrap(),
        targets: tgts,
    }
}

async fn create(c: &mut Conn, ddls: &[&str]) {
    c.query_drop("CREATE DATABASE IF NOT EXISTS app")
        .await
        .unwrap();
    c.query_drop("USE app").await.unwrap();
    for d in ddls {
        c.query_drop(*d).await.unwrap();
    }
}

async fn seed(c: &mut Conn, customers: u64, tags: usize, rng: &mut StdRng) {
    let mut vals = Vec::new();
    for id in 1..=customers {
        vals.push(format!(
            "({id}, {}, 'name {id} ü', {}.{:02}, {}, '2024-01-01 00:00:00.{:06}')",
            rng.random_range(0..1_000_000i64),
            rng.random_range(0..100_000),
            rng.random_range(0..100),
            rng.random::<f32>(),
            id % 1_000_000
        ));
        if vals.len() == 1000 || id == customers {
            c.query_drop(format!("INSERT INTO customer VALUES {}", vals.join(",")))
                .await
                .unwrap();
            vals.clear();
        }
    }
    for i in 0..tags {
        let owner = OWNERS[rng.random_range(0..OWNERS.len())];
        c.exec_drop(
            "INSERT IGNORE INTO tags VALUES (?, ?, ?)",
            (
                owner,
                format!("t{}", rng.random_range(0..200)),
                format!("note {i}"),
            ),
        )
        .await
        .unwrap();
    }
}

/// Inserts, updates, deletes and shard-moving updates on both tables, in
/// transactions of one to three statements, until `stop`.
async fn writer(src: keyshift_testkit::Endpoint, seed: u64, stop: CancellationToken) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = src.connect().await.unwrap();
    c.query_drop("USE app").await.unwrap();
    let mut next_id: u64 = 1_000_000;
    let mut n = 0;
    while !stop.is_cancelled() {
        let multi = rng.random_bool(0.3);
        if multi {
            c.query_drop("BEGIN").await.unwrap();
        }
        for _ in 0..if multi { rng.random_range(2..4) } else { 1 } {
            let id = rng.random_range(1..3000u64);
            let owner = OWNERS[rng.random_range(0..OWNERS.len())];
            let tag = format!("t{}", rng.random_range(0..200));
            let r = match rng.random_range(0..10) {
                0 | 1 => {
                    next_id += 1;
                    c.exec_drop(
                        "INSERT INTO customer VALUES (?, ?, ?, ?, ?, NOW(6))",
                        (
                            next_id,
                            rng.random_range(0..1_000_000i64),
                            format!("new {next_id}"),
                            "1.50",
                            rng.random::<f32>(),
                        ),
                    )
                    .await
                }
                2 => {
                    c.exec_drop(
                        "UPDATE customer SET amount = amount + 1, f = ?, updated = NOW(6) WHERE id = ?",
                        (rng.random::<f32>(), id),
                    )
                    .await
                }
                // Moves the row to another shard (most of the time).
                3 => {
                    c.exec_drop(
                        "UPDATE customer SET cid = ? WHERE id = ?",
                        (rng.random_range(0..1_000_000i64), id),
                    )
                    .await
                }
                4 => c.exec_drop("DELETE FROM customer WHERE id = ?", (id,)).await,
                5 => {
                    c.exec_drop(
                        "UPDATE customer SET name = CONCAT(name, '+') WHERE id BETWEEN ? AND ?",
                        (id, id + 5),
                    )
                    .await
                }
                6 => {
                    c.exec_drop(
                        "INSERT IGNORE INTO tags VALUES (?, ?, 'w')",
                        (owner, &tag),
                    )
                    .await
                }
                7 => {
                    c.exec_drop(
                        "UPDATE tags SET note = CONCAT(IFNULL(note, ''), '!') WHERE owner = ? AND tag = ?",
                        (owner, &tag),
                    )
                    .await
                }
                // Changes the key and (by the vindex on owner) the shard.
                8 => {
                    let to = OWNERS[rng.random_range(0..OWNERS.len())];
                    c.exec_drop(
                        "UPDATE IGNORE tags SET owner = ? WHERE owner = ? AND tag = ?",
                        (to, owner, &tag),
                    )
                    .await
                }
                _ => {
                    c.exec_drop("DELETE FROM tags WHERE owner = ? AND tag = ?", (owner, &tag))
                        .await
                }
            };
            r.unwrap();
            n += 1;
        }
        if multi {
            c.query_drop("COMMIT").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    n
}

fn hash() -> Arc<dyn Vindex> {
    new_vindex("hash", &BTreeMap::new()).unwrap()
}

fn xxhash() -> Arc<dyn Vindex> {
    new_vindex("xxhash", &BTreeMap::new()).unwrap()
}

fn tables(sharded: bool) -> Vec<TableSpec> {
    vec![
        TableSpec {
            name: "customer".into(),
            pk_columns: vec!["id".into()],
            vindex: sharded.then(|| ("cid".to_string(), hash())),
        },
        TableSpec {
            name: "tags".into(),
            pk_columns: vec!["owner".into(), "tag".into()],
            vindex: sharded.then(|| ("owner".to_string(), xxhash())),
        },
    ]
}

fn spec(env: &Env, target: usize, range: &str, tables: Vec<TableSpec>) -> StreamSpec {
    StreamSpec {
        id: 10 + target as u64,
        workflow: "wf".into(),
        source: env.src.endpoint(),
        source_db: "app".into(),
        target: env.targets[target].endpoint(),
        target_db: "app".into(),
        tables,
        key_range: KeyRange::parse(range).unwrap(),
        copy_batch_rows: 200,
        copy_cycle: Duration::from_millis(400),
        copy_parallel_tables: 1,
        on_ddl: OnDdl::Stop,
        stop_after_copy: false,
        stop_position: None,
        copy_group: None,
    }
}

struct Running {
    cancel: CancellationToken,
    progress: watch::Receiver<StreamProgress>,
    task: JoinHandle<Result<StreamExit, StreamError>>,
}

fn spawn(spec: StreamSpec) -> Running {
    // `RUST_LOG=keyshift_vrepl=debug` shows batch boundaries and snapshot
    // positions when chasing a failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cancel = CancellationToken::new();
    let (tx, rx) = watch::channel(StreamProgress::default());
    let task = tokio::spawn(run_stream(spec, cancel.clone(), tx));
    Running {
        cancel,
        progress: rx,
        task,
    }
}

async fn source_position(c: &mut Conn) -> Position {
    MariaDb.current_position(c).await.unwrap()
}

/// Waits until the stream has committed `pos` and reports lag 0.
async fn wait_caught_up(r: &mut Running, pos: &Position) {
    let limit = Duration::from_secs(90);
    let res = tokio::time::timeout(limit, async {
        loop {
            {
                let p = r.progress.borrow_and_update();
                if p.state == StreamState::Running
                    && p.lag_seconds == Some(0)
                    && p.position.as_ref().is_some_and(|x| x.contains(pos))
                {
                    return;
                }
                assert!(
                    !matches!(p.state, StreamState::Error),
                    "stream failed: {:?}",
                    p.last_error
                );
            }
            if r.progress.changed().await.is_err() {
                panic!("stream ended: {:?}", r.progress.borrow().last_error);
            }
        }
    })
    .await;
    if res.is_err() {
        panic!(
            "stream did not reach {pos} in {limit:?}: {:?}",
            *r.progress.borrow()
        );
    }
}

async fn wait_for(r: &mut Running, what: &str, f: impl Fn(&StreamProgress) -> bool) {
    let res = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if f(&r.progress.borrow_and_update()) {
                return;
            }
            if r.progress.changed().await.is_err() {
                panic!(
                    "stream ended while waiting for {what}: {:?}",
                    r.progress.borrow().last_error
                );
            }
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "timed out waiting for {what}: {:?}",
        *r.progress.borrow()
    );
}

type Rows = Vec<Vec<mysql_async::Value>>;

async fn rows(c: &mut Conn, table: &str, order: &str) -> Rows {
    let rows: Vec<mysql_async::Row> = c
        .exec(format!("SELECT * FROM app.{table} ORDER BY {order}"), ())
        .await
        .unwrap();
    rows.into_iter().map(|r| r.unwrap()).collect()
}

/// The vindex's input for a source row value, as the gate would see it.
fn vindex_input(v: &mysql_async::Value) -> keyshift_vindex::Value {
    match v {
        mysql_async::Value::Int(i) => keyshift_vindex::Value::Int(*i),
        mysql_async::Value::UInt(u) => keyshift_vindex::Value::UInt(*u),
        mysql_async::Value::Bytes(b) => keyshift_vindex::Value::Bytes(b.clone()),
        other => panic!("unexpected vindex value {other:?}"),
    }
}

/// The source's binlog row events on `table` whose first column equals
/// `key`, each under its GTID: what a failed comparison needs to tell a lost
/// change from a wrong snapshot.
async fn binlog_history(src: &TestMysqld, table: &str, key: &mysql_async::Value) -> String {
    let key = match key {
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::UInt(u) => u.to_string(),
        mysql_async::Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    };
    let mut c = src.conn().await.unwrap();
    let logs: Vec<(String, u64)> = c.query("SHOW BINARY LOGS").await.unwrap();
    let Some((first, _)) = logs.first() else {
        return "no binlogs".into();
    };
    let ep = src.endpoint();
    let out = std::process::Command::new("mariadb-binlog")
        .args([
            "--read-from-remote-server",
            "--host=127.0.0.1",
            &format!("--port={}", ep.port),
            &format!("--user={}", ep.user),
            &format!("--password={}", ep.password),
            "--verbose",
            "--base64-output=DECODE-ROWS",
            "--to-last-log",
            first,
        ])
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return format!("mariadb-binlog: {e}"),
    };
    let mut gtid = String::new();
    let mut report = String::new();
    let mut block: Vec<&str> = Vec::new();
    let flush = |block: &mut Vec<&str>, gtid: &str, report: &mut String| {
        let on_table = block
            .first()
            .is_some_and(|l| l.contains(&format!("`{table}`")));
        let hit = block.windows(2).any(|w| {
            (w[0].trim() == "### WHERE" || w[0].trim() == "### SET")
                && w[1].trim() == format!("###   @1={key}")
        });
        if on_table && hit {
            report.push_str(&format!("{gtid}\n{}\n", block.join("\n")));
        }
        block.clear();
    };
    for line in text.lines() {
        if let Some(i) = line.find("GTID ") {
            flush(&mut block, &gtid, &mut report);
            gtid = line[i..].to_string();
        } else if line.starts_with("### INSERT")
            || line.starts_with("### UPDATE")
            || line.starts_with("### DELETE")
        {
            flush(&mut block, &gtid, &mut report);
            block.push(line);
        } else if line.starts_with("###") && !block.is_empty() {
            block.push(line);
        } else {
            flush(&mut block, &gtid, &mut report);
        }
    }
    flush(&mut block, &gtid, &mut report);
    report
}

/// Every target holds exactly the source rows whose keyspace id is in its
/// range (all rows when `vindex_col` is None), value for value.
async fn assert_equal(
    src: &TestMysqld,
    targets: &[(&TestMysqld, &str)],
    table: &str,
    order: &str,
    vindex: Option<(usize, Arc<dyn Vindex>)>,
) {
    let mut s = src.conn().await.unwrap();
    s.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let all = rows(&mut s, table, order).await;
    assert!(!all.is_empty(), "{table}: the source has no rows");
    let mut total = 0;
    for (t, range) in targets {
        let range = KeyRange::parse(range).unwrap();
        let want: Rows = all
            .iter()
            .filter(|r| match &vindex {
                None => true,
                Some((col, v)) => {
                    range.contains(v.map(&vindex_input(&r[*col])).unwrap().as_bytes())
                }
            })
            .cloned()
            .collect();
        let mut c = t.conn().await.unwrap();
        c.query_drop("SET time_zone = '+00:00'").await.unwrap();
        let got = rows(&mut c, table, order).await;
        total += got.len();
        if got != want {
            let missing = want
                .iter()
                .filter(|r| !got.contains(r))
                .take(5)
                .collect::<Vec<_>>();
            let extra = got
                .iter()
                .filter(|r| !want.contains(r))
                .take(5)
                .collect::<Vec<_>>();
            let first_key = missing.first().or(extra.first()).map(|r| r[0].clone());
            let history = match &first_key {
                Some(k) => binlog_history(src, table, k).await,
                None => String::new(),
            };
            panic!(
                "{table} on shard {range}: {} rows, expected {}; missing {missing:?}; extra {extra:?}\n\
                 source binlog events on {table} whose first column is {first_key:?}:\n{history}",
                got.len(),
                want.len()
            );
        }
    }
    let covered: u64 = targets
        .iter()
        .map(|(_, r)| {
            let r = KeyRange::parse(r).unwrap();
            if r.is_full() { 2 } else { 1 }
        })
        .sum();
    if covered == 2 {
        assert_eq!(
            total,
            all.len(),
            "{table}: shards together hold every row once"
        );
    }
}

async fn assert_all_equal(env: &Env, ranges: &[&str], sharded: bool) {
    let targets: Vec<(&TestMysqld, &str)> =
        env.targets.iter().zip(ranges.iter().copied()).collect();
    assert_equal(
        &env.src,
        &targets,
        "customer",
        "id",
        sharded.then(|| (1, hash())),
    )
    .await;
    assert_equal(
        &env.src,
        &targets,
        "tags",
        "owner, tag",
        sharded.then(|| (0, xxhash())),
    )
    .await;
}

async fn prepare(env: &Env, customers: u64, tags: usize) {
    let mut c = env.src.conn().await.unwrap();
    create(&mut c, &[CUSTOMER_DDL, TAGS_DDL]).await;
    let mut rng = StdRng::seed_from_u64(7);
    seed(&mut c, customers, tags, &mut rng).await;
    for t in &env.targets {
        let mut c = t.conn().await.unwrap();
        create(&mut c, &[CUSTOMER_DDL, TAGS_DDL]).await;
    }
}

/// Empties a target's copies and the stream's progress, once no earlier
/// applier session of stream `id` is left (their lock is free).
async fn reset_target(t: &TestMysqld, id: u64) {
    let mut c = t.conn().await.unwrap();
    let got: Option<i64> = c
        .query_first(format!("SELECT GET_LOCK('_keyshift.stream.{id}', 30)"))
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    for sql in [
        "TRUNCATE app.customer",
        "TRUNCATE app.tags",
        "DELETE FROM _keyshift.streams",
        "DELETE FROM _keyshift.copy_state",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    c.query_drop(format!("DO RELEASE_LOCK('_keyshift.stream.{id}')"))
        .await
        .unwrap();
}

// ------------------------------------------------------------ tests

/// Unsharded → two shards under a concurrent writer through copy and
/// replication, each stream copying alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsharded_to_two_shards_under_writes() {
    two_shards_under_writes(false).await;
}

/// The same with the two streams in one copy group: one snapshot and one
/// scan of the source per cycle for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_sharing_one_scan_under_writes() {
    two_shards_under_writes(true).await;
}

async fn two_shards_under_writes(grouped: bool) {
    let env = servers(2).await;
    prepare(&env, 3000, 1500).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 1, stop.clone()));
    let ranges = ["-80", "80-"];
    let group = grouped.then(|| CopyGroup::new([10, 11]));
    let mut streams: Vec<Running> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut sp = spec(&env, i, r, tables(true));
            // Several snapshot cycles, each after a catch-up (and not so
            // many that a loaded machine spends a minute opening them).
            sp.copy_batch_rows = 20;
            // KEYSHIFT_STRESS_COPY_CYCLE_MS shortens the cycles when looping
            // this test to hunt races at cycle boundaries.
            sp.copy_cycle = Duration::from_millis(
                std::env::var("KEYSHIFT_STRESS_COPY_CYCLE_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100),
            );
            sp.copy_group = group.clone();
            spawn(sp)
        })
        .collect();
    for s in &mut streams {
        wait_for(s, "running", |p| p.state == StreamState::Running).await;
        let p = s.progress.borrow().clone();
        assert!(
            p.tables.iter().all(|t| t.done && t.rows_copied > 0),
            "{p:?}"
        );
        assert!(p.copy_cycles > 1, "{p:?}");
        if grouped {
            // Every cycle was shared: nothing made a stream copy alone.
            assert_eq!(p.shared_copy_cycles, p.copy_cycles, "{p:?}");
        } else {
            assert_eq!(p.shared_copy_cycles, 0, "{p:?}");
        }
    }
    // Keep writing while replicating.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let ops = w.await.unwrap();
    assert!(ops > 100, "the writer did {ops} operations");
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    for s in &mut streams {
        wait_caught_up(s, &end).await;
    }
    assert_all_equal(&env, &ranges, true).await;
    for s in streams {
        s.cancel.cancel();
        assert_eq!(s.task.await.unwrap().unwrap(), StreamExit::Cancelled);
    }
}

/// In a copy group, one target dies mid-copy: its stream ends with a
/// transient error, its sibling copies on (alone) to running, and the
/// dead one, rerun once its server is back, completes. Nothing lost or
/// doubled on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_leaves_its_copy_group_and_the_sibling_goes_on() {
    let mut env = servers(2).await;
    prepare(&env, 6000, 500).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 6, stop.clone()));
    let ranges = ["-80", "80-"];
    let group = CopyGroup::new([10, 11]);
    let specs: Vec<StreamSpec> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut sp = spec(&env, i, r, tables(true));
            sp.copy_batch_rows = 20;
            sp.copy_group = Some(group.clone());
            sp
        })
        .collect();
    let mut live = spawn(specs[0].clone());
    let mut dying = spawn(specs[1].clone());
    wait_for(&mut dying, "some rows copied in a shared cycle", |p| {
        p.shared_copy_cycles > 0 && p.tables.first().is_some_and(|t| t.rows_copied > 100)
    })
    .await;
    env.targets[1].kill();
    let err = tokio::time::timeout(Duration::from_secs(30), dying.task)
        .await
        .expect("the stream notices the dead target")
        .unwrap()
        .expect_err("a dead target is an error");
    assert!(err.is_transient(), "{err}");
    // The sibling does not wait for it: it reaches running meanwhile.
    wait_for(&mut live, "running", |p| p.state == StreamState::Running).await;
    env.targets[1].restart().await.unwrap();
    let mut back = spawn(specs[1].clone());
    wait_for(&mut back, "running", |p| p.state == StreamState::Running).await;
    stop.cancel();
    w.await.unwrap();
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    for s in [&mut live, &mut back] {
        wait_caught_up(s, &end).await;
    }
    assert_all_equal(&env, &ranges, true).await;
    for s in [live, back] {
        s.cancel.cancel();
        assert_eq!(s.task.await.unwrap().unwrap(), StreamExit::Cancelled);
    }
}

/// Unsharded → unsharded: every row, no vindex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsharded_to_unsharded_under_writes() {
    let env = servers(1).await;
    prepare(&env, 2000, 1000).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 2, stop.clone()));
    let mut sp = spec(&env, 0, "-", tables(false));
    // Both tables at once, in several cycles of small batches.
    sp.copy_parallel_tables = 2;
    sp.copy_batch_rows = 50;
    sp.copy_cycle = Duration::from_millis(150);
    let mut s = spawn(sp);
    // The two tables progress together: each has rows before either is done.
    wait_for(&mut s, "both tables started", |p| {
        p.tables.iter().all(|t| t.rows_copied > 0) || p.tables.iter().any(|t| t.done)
    })
    .await;
    {
        let p = s.progress.borrow().clone();
        assert!(
            p.tables.iter().all(|t| t.rows_copied > 0 && !t.done),
            "the tables are copied one after the other: {p:?}"
        );
    }
    wait_for(&mut s, "running", |p| p.state == StreamState::Running).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    w.await.unwrap();
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    wait_caught_up(&mut s, &end).await;
    assert!(s.progress.borrow().transactions_applied > 0);
    assert_all_equal(&env, &["-"], false).await;
    s.cancel.cancel();
    assert_eq!(s.task.await.unwrap().unwrap(), StreamExit::Cancelled);
}

/// A second instance of a stream that copies tables in parallel takes it
/// over mid-copy: the first one's applier and writer sessions are ended
/// (none of them can commit behind the new one's back), it fails with a
/// transient error, and the second copies on to running with every row
/// equal under writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_ends_the_copy_workers_of_the_first() {
    let env = servers(1).await;
    prepare(&env, 4000, 2000).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 7, stop.clone()));
    let mut sp = spec(&env, 0, "-", tables(false));
    sp.copy_parallel_tables = 2;
    // Small batches: the copy lasts well beyond the takeover (which waits
    // a second for the old applier before ending it).
    sp.copy_batch_rows = 2;
    let mut first = spawn(sp.clone());
    wait_for(&mut first, "both tables copying", |p| {
        !p.tables.is_empty() && p.tables.iter().all(|t| t.rows_copied > 0 && !t.done)
    })
    .await;
    let mut second = spawn(sp.clone());
    let err = tokio::time::timeout(Duration::from_secs(60), first.task)
        .await
        .expect("the first instance ends")
        .unwrap()
        .expect_err("the first instance loses its sessions");
    assert!(err.is_transient(), "{err}");
    wait_for(&mut second, "running", |p| p.state == StreamState::Running).await;
    stop.cancel();
    w.await.unwrap();
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    wait_caught_up(&mut second, &end).await;
    assert_all_equal(&env, &["-"], false).await;
    second.cancel.cancel();
    assert_eq!(second.task.await.unwrap().unwrap(), StreamExit::Cancelled);
}

/// Streams stopped at random points — by their token or by dropping the
/// future — and restarted, during the copy and while running, end equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_dropped_at_random_points() {
    let env = servers(2).await;
    prepare(&env, 4000, 1500).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 3, stop.clone()));
    let ranges = ["-80", "80-"];
    let mut seen = Vec::new();
    for seed in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        if seed > 0 {
            // Start over: every seed crashes its way through a full copy.
            for (i, t) in env.targets.iter().enumerate() {
                reset_target(t, 10 + i as u64).await;
            }
        }
        for round in 0..8 {
            for (i, r) in ranges.iter().enumerate() {
                let mut spec = spec(&env, i, r, tables(true));
                spec.copy_batch_rows = 10;
                spec.copy_cycle = Duration::from_millis(100);
                // Seed 0 copies one table at a time, the others both at
                // once (writer sessions cancelled and dropped mid-commit).
                spec.copy_parallel_tables = if seed == 0 { 1 } else { 2 };
                let cancel = CancellationToken::new();
                let (tx, rx) = watch::channel(StreamProgress::default());
                let delay = Duration::from_millis(if round < 6 {
                    rng.random_range(5..150)
                } else {
                    rng.random_range(100..600)
                });
                let fut = run_stream(spec, cancel.clone(), tx);
                // The last round of each seed stops a running stream, however
                // slow the machine: it waits for `running` before its delay.
                let last = round == 7;
                if (round + i) % 2 == 0 || last {
                    let c2 = cancel.clone();
                    let mut rx2 = rx.clone();
                    let t = tokio::spawn(async move {
                        if last {
                            let running = rx2.wait_for(|p| p.state == StreamState::Running);
                            let _ = tokio::time::timeout(Duration::from_secs(120), running).await;
                        }
                        tokio::time::sleep(delay).await;
                        c2.cancel();
                    });
                    let r = fut.await;
                    t.await.unwrap();
                    assert_eq!(r.unwrap(), StreamExit::Cancelled);
                } else if let Ok(r) = tokio::time::timeout(delay, fut).await {
                    panic!("the stream ended by itself: {r:?}");
                }
                seen.push(rx.borrow().state);
            }
        }
    }
    eprintln!("states at the stops: {seen:?}");
    assert!(seen.contains(&StreamState::Copying), "{seen:?}");
    assert!(seen.contains(&StreamState::Running), "{seen:?}");
    let mut streams: Vec<Running> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| spawn(spec(&env, i, r, tables(true))))
        .collect();
    for s in &mut streams {
        wait_for(s, "running", |p| p.state == StreamState::Running).await;
    }
    // A second instance of a live stream takes it over: the first one's
    // applier session is killed (so it cannot commit behind the new one's
    // back) and it ends with a transient error.
    let old = std::mem::replace(
        &mut streams[0],
        spawn(spec(&env, 0, ranges[0], tables(true))),
    );
    let err = tokio::time::timeout(Duration::from_secs(30), old.task)
        .await
        .expect("the old instance ends")
        .unwrap()
        .expect_err("the old instance loses its session");
    assert!(err.is_transient(), "{err}");
    wait_for(&mut streams[0], "running", |p| {
        p.state == StreamState::Running
    })
    .await;
    stop.cancel();
    w.await.unwrap();
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    for s in &mut streams {
        wait_caught_up(s, &end).await;
    }
    assert_all_equal(&env, &ranges, true).await;
    for s in streams {
        s.cancel.cancel();
        assert_eq!(s.task.await.unwrap().unwrap(), StreamExit::Cancelled);
    }
}

/// The target dies mid-copy: a transient error; once it is back, a new run
/// completes with nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_mid_copy() {
    let mut env = servers(1).await;
    prepare(&env, 6000, 500).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn(writer(env.src.endpoint(), 4, stop.clone()));
    let mut sp = spec(&env, 0, "-80", tables(true));
    sp.copy_batch_rows = 20;
    let mut s = spawn(sp.clone());
    wait_for(&mut s, "some rows copied", |p| {
        p.tables.first().is_some_and(|t| t.rows_copied > 100)
    })
    .await;
    env.targets[0].kill();
    let err = tokio::time::timeout(Duration::from_secs(30), s.task)
        .await
        .expect("the stream notices the dead target")
        .unwrap()
        .expect_err("a dead target is an error");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("target"), "{err}");
    env.targets[0].restart().await.unwrap();
    let mut s = spawn(sp);
    wait_for(&mut s, "running", |p| p.state == StreamState::Running).await;
    stop.cancel();
    w.await.unwrap();
    let end = source_position(&mut env.src.conn().await.unwrap()).await;
    wait_caught_up(&mut s, &end).await;
    let targets = [(&env.targets[0], "-80")];
    assert_equal(&env.src, &targets, "customer", "id", Some((1, hash()))).await;
    assert_equal(
        &env.src,
        &targets,
        "tags",
        "owner, tag",
        Some((0, xxhash())),
    )
    .await;
    s.cancel.cancel();
    s.task.await.unwrap().unwrap();
}

/// `on_ddl=stop` ends the stream with the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_stop_reports_the_statement() {
    let env = servers(1).await;
    prepare(&env, 100, 50).await;
    let mut s = spawn(spec(&env, 0, "-", tables(false)));
    wait_for(&mut s, "running", |p| p.state == StreamState::Running).await;
    let mut c = env.src.conn().await.unwrap();
    c.query_drop("ALTER TABLE app.customer ADD COLUMN extra INT")
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), s.task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("stopped at the DDL");
    assert!(matches!(err, StreamError::StoppedAtDdl { .. }), "{err}");
    assert!(err.to_string().contains("ADD COLUMN extra"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(s.progress.borrow().state, StreamState::Stopped);
}

// ------------------------------------------------------------ types

const TYPES_DDL: &str = "CREATE TABLE types (
    id INT NOT NULL PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED,
    dec1 DECIMAL(65,30), dec2 DECIMAL(10,2), dec3 DECIMAL(5,0) UNSIGNED,
    f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME(6), dtm0 DATETIME,
    ts TIMESTAMP(6) NULL DEFAULT NULL, ts0 TIMESTAMP NULL DEFAULT NULL,
    tm TIME, tm6 TIME(6), yr YEAR,
    c CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(300) CHARACTER SET utf8mb4,
    tx TEXT CHARACTER SET utf8mb4, l1 VARCHAR(20) CHARACTER SET latin1,
    bn BINARY(4), vb VARBINARY(10), bl BLOB,
    e ENUM('a','b','c'), st SET('x','y','z'),
    j JSON, bt BIT(64), b1 BIT(1)
) ENGINE=InnoDB";

fn type_row(id: u32, variant: u32) -> String {
    match variant {
        0 => format!("({id},
          127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
          9223372036854775807, 18446744073709551615,
          '99999999999999999999999999999999999.999999999999999999999999999999', '99999999.99', 99999,
          3.40282e38, 1.7976931348623157e308,
          '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59',
          '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07',
          '838:59:59', '-838:59:59.000000', 2155,
          'héllo😀', CONCAT(REPEAT('x', 290), '🙂🙃'), '🐬 text\\nwith newline', 'café',
          X'00010000', X'000000', X'00FF00',
          'c', 'x,z', '{{\"a\": [1, 2.5, \"ü😀\"], \"b\": null}}',
          b'1111111111111111111111111111111111111111111111111111111111111111', 1)"),
        1 => format!("({id},
          -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
          -9223372036854775808, 0,
          '-99999999999999999999999999999999999.999999999999999999999999999999', '-12345678.90', 0,
          -1.17549435e-38, -2.2250738585072014e-308,
          '1000-01-01', '1000-01-01 00:00:00.000001', '1000-01-01 00:00:00',
          '1970-01-01 00:00:01.000001', '1970-01-01 00:00:01',
          '-838:59:59', '-00:00:00.000001', 1901,
          '', '', '', '',
          X'00000000', X'', X'',
          'a', '', '[]', 0, 0)"),
        2 => format!("({id}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"),
        _ => format!("({id},
          0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
          '0', '0.10', 1,
          0.1, 0.1,
          '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
          '0000-00-00 00:00:00', '2024-03-31 01:30:00',
          '-12:00:00.5', '00:00:00.5', 0,
          ' trailing ', 'trailing  ', ' ', 'ÿ',
          X'20202020', X'00', REPEAT(X'00', 3000),
          'b', 'x,y,z', '\"just a string\"', 1, 0)"),
    }
}

/// A key of many types, copied two rows per batch so every continuation
/// `WHERE key > last` is exercised.
const KEYS_DDL: &str = "CREATE TABLE keyed (
    d DECIMAL(10,3) NOT NULL, t TIME(6) NOT NULL, s VARBINARY(8) NOT NULL,
    v VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
    dt DATETIME(6) NOT NULL, payload INT,
    PRIMARY KEY (d, t, s, v, dt)
) ENGINE=InnoDB";

fn keyed_rows(base: i32) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in ["-1.5", "0", "2.25"].iter().enumerate() {
        for t in [
            "-100:00:00",
            "-01:00:00",
            "00:00:00.000001",
            "99:00:00",
            "100:00:00",
        ] {
            for (s, v) in [("X'00'", "'a'"), ("X'0000'", "'B'"), ("X'FF'", "'é'")] {
                out.push(format!(
                    "({d}, '{t}', {s}, {v}, '2020-01-0{} 00:00:00.5', {})",
                    i + 1,
                    base + out.len() as i32
                ));
            }
        }
    }
    out
}

/// Every issue-4 type, copied and then replicated, arrives exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_matrix_copied_and_replicated() {
    let env = servers(1).await;
    let mut c = env.src.conn().await.unwrap();
    create(&mut c, &[TYPES_DDL, KEYS_DDL]).await;
    let mut t = env.targets[0].conn().await.unwrap();
    create(&mut t, &[TYPES_DDL, KEYS_DDL]).await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for v in 0..4 {
        c.query_drop(format!("INSERT INTO types VALUES {}", type_row(v + 1, v)))
            .await
            .unwrap();
    }
    c.query_drop(format!(
        "INSERT INTO keyed VALUES {}",
        keyed_rows(0).join(",")
    ))
    .await
    .unwrap();
    let mut sp = spec(
        &env,
        0,
        "-",
        vec![
            TableSpec {
                name: "types".into(),
                pk_columns: vec!["id".into()],
                vindex: None,
            },
            TableSpec {
                name: "keyed".into(),
                pk_columns: ["d", "t", "s", "v", "dt"].map(String::from).to_vec(),
                vindex: None,
            },
        ],
    );
    sp.copy_batch_rows = 2;
    let mut s = spawn(sp);
    wait_for(&mut s, "running", |p| p.state == StreamState::Running).await;
    {
        let p = s.progress.borrow();
        assert_eq!(p.tables[0].rows_copied, 4, "{p:?}");
        assert_eq!(p.tables[1].rows_copied, 45, "{p:?}");
    }
    // Replicated: the same rows again, updates, deletes.
    for v in 0..4 {
        c.query_drop(format!("INSERT INTO types VALUES {}", type_row(v + 11, v)))
            .await
            .unwrap();
    }
    // The source session's zone must not matter.
    c.query_drop("SET time_zone = '-07:00'").await.unwrap();
    for sql in [
        "UPDATE types SET tiu = 254, biu = 18446744073709551614, dec1 = '-0.000000000000000000000000000001',
           f = -3.40282e38, d = 4.9e-324, dtm = '2001-02-03 04:05:06.000007', ts = '2021-06-01 12:00:00.5',
           tm6 = '-838:59:58.999999', c = '😀😀', vb = X'FF00FF', e = 'a', st = 'y', j = '{}',
           bt = 9223372036854775808 WHERE id IN (1, 11)",
        "UPDATE types SET ti = NULL, vc = 'now set', bl = X'DEADBEEF00', yr = 1999 WHERE id IN (2, 12)",
        "DELETE FROM types WHERE id IN (4)",
        "UPDATE keyed SET payload = -payload, v = 'z' WHERE d = 0",
        "DELETE FROM keyed WHERE t = '-01:00:00'",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    c.query_drop(format!(
        "INSERT INTO keyed VALUES {}",
        keyed_rows(1000)
            .iter()
            .map(|r| r.replace("'2020-01-0", "'2021-01-0"))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await
    .unwrap();
    let end = source_position(&mut c).await;
    wait_caught_up(&mut s, &end).await;
    let targets = [(&env.targets[0], "-")];
    assert_equal(&env.src, &targets, "types", "id", None).await;
    assert_equal(&env.src, &targets, "keyed", "d, t, s, v, dt", None).await;
    // Spot check the extremes on the target.
    let (biu, tm6): (u64, String) = t
        .query_first("SELECT biu, CAST(tm6 AS CHAR) FROM app.types WHERE id = 11")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(biu, u64::MAX - 1);
    assert_eq!(tm6, "-838:59:58.999999");
    s.cancel.cancel();
    s.task.await.unwrap().unwrap();
}

// ------------------------------------------------------------ LOAD DATA

/// What `LOAD DATA` text must escape or could misread: terminators and
/// backslashes inside values (also last in a field), the text `\N` and
/// `NULL`, empty strings next to NULLs, NUL bytes, trailing spaces,
/// multi-byte characters whose second byte is a backslash (SJIS, GBK),
/// the zero YEAR, ENUM/SET members named like numbers, BIT(1)/BIT(64),
/// and generated columns.
const EDGE_DDL: &str = "CREATE TABLE edge (
    id INT NOT NULL PRIMARY KEY,
    vc VARCHAR(40) CHARACTER SET utf8mb4,
    vb VARBINARY(40),
    bl BLOB,
    sj VARCHAR(10) CHARACTER SET sjis,
    gb VARCHAR(10) CHARACTER SET gbk,
    yr YEAR,
    e ENUM('2','1','x'),
    st SET('1','2','x'),
    b1 BIT(1), b64 BIT(64),
    g1 INT AS (id * 2) VIRTUAL,
    g2 VARCHAR(50) CHARACTER SET utf8mb4 AS (CONCAT('<', vc, '>')) PERSISTENT,
    ts TIMESTAMP(3) NULL DEFAULT NULL,
    d DOUBLE
) ENGINE=InnoDB";

/// One column, so a row whose only value is empty is an empty line.
const SOLO_DDL: &str = "CREATE TABLE solo (k VARBINARY(10) NOT NULL PRIMARY KEY) ENGINE=InnoDB";

const EDGE_INSERT: &str =
    "INSERT INTO edge (id, vc, vb, bl, sj, gb, yr, e, st, b1, b64, ts, d) VALUES";

const EDGE_ROWS: &[&str] = &[
    "(1, CONCAT('a', CHAR(9), 'b'), X'0009000A005C00', CONCAT('line1', CHAR(10), 'line2', CHAR(13), CHAR(10)),
      X'955C', X'815C', 0, '1', '1,x', 1, 18446744073709551615, '2038-01-19 03:14:07.999', 0.1)",
    "(2, X'5C4E', X'5C4E', 'NULL', '', NULL, 1901, '2', '', 0, 0, '1970-01-01 00:00:01', -0e0)",
    "(3, '', X'', '', NULL, '', 2155, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, 'trailing  ', X'00000000', REPEAT(X'00', 100), 'a ', ' b', 2000, 'x', '2', 1,
      9223372036854775808, '2000-02-29 12:00:00.001', 1.7976931348623157e308)",
    "(5, CONCAT('t', CHAR(9), 'n', CHAR(10), 'b', CHAR(92), 'end', CHAR(92)), X'5C', CONCAT('x', CHAR(92)),
      CONCAT(X'955C', X'955C'), X'815C5C', 99, '2', '1,2,x', 0, 1, NULL, 5e-324)",
    "(6, CONCAT(CHAR(92), CHAR(92)), X'5C5C4E', X'5C0A5C09', 'NULL', 'null', 70, 'x', 'x', 1, 2, NULL, -3.5)",
    "(7, 'héllo😀', X'FF', X'00', NULL, NULL, NULL, '1', '2,1', NULL, 255, NULL, 1e-1)",
];

async fn com_counter(c: &mut Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap();
    row.map_or(0, |r| r.1)
}

/// Runs a copy-only stream of `tables` (no vindex) to target 0 and waits
/// for its end.
async fn copy_only(
    env: &Env,
    tables: &[(&str, &[&str])],
    batch: usize,
) -> Result<StreamExit, StreamError> {
    let mut sp = spec(
        env,
        0,
        "-",
        tables
            .iter()
            .map(|(name, pk)| TableSpec {
                name: name.to_string(),
                pk_columns: pk.iter().map(|c| c.to_string()).collect(),
                vindex: None,
            })
            .collect(),
    );
    sp.copy_batch_rows = batch;
    sp.stop_after_copy = true;
    // The tables at once: the LOAD DATA checks and the refusal are those of
    // the copy workers' sessions (one table at a time is the other tests').
    sp.copy_parallel_tables = tables.len();
    let s = spawn(sp);
    tokio::time::timeout(Duration::from_secs(120), s.task)
        .await
        .expect("the copy ended in time")
        .unwrap()
}

/// Copied with LOAD DATA, the edge values arrive exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_copies_edge_values_exactly() {
    let env = servers(1).await;
    let mut c = env.src.conn().await.unwrap();
    create(&mut c, &[EDGE_DDL, SOLO_DDL]).await;
    let mut t = env.targets[0].conn().await.unwrap();
    create(&mut t, &[EDGE_DDL, SOLO_DDL]).await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c.query_drop(format!("{EDGE_INSERT} {}", EDGE_ROWS.join(",")))
        .await
        .unwrap();
    c.query_drop("INSERT INTO solo VALUES (''), (X'00'), (X'5C'), ('a'), (X'5C4E')")
        .await
        .unwrap();
    let loads = com_counter(&mut t, "Com_load").await;
    let exit = copy_only(&env, &[("edge", &["id"]), ("solo", &["k"])], 2).await;
    assert_eq!(exit.unwrap(), StreamExit::CopyCompleted);
    let targets = [(&env.targets[0], "-")];
    assert_equal(&env.src, &targets, "edge", "id", None).await;
    assert_equal(&env.src, &targets, "solo", "k", None).await;
    // Empty strings stayed empty, NULLs NULL, the text "\N" text.
    let (empty, nulls, backslash_n): (u64, u64, u64) = t
        .query_first(
            "SELECT SUM(vc = ''), SUM(e IS NULL), SUM(vc = X'5C4E' AND vb = X'5C4E') FROM app.edge",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((empty, nulls, backslash_n), (1, 1, 1));
    let (yr, b64): (String, u64) = t
        .query_first("SELECT CAST(yr AS CHAR), b64 + 0 FROM app.edge WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((yr.as_str(), b64), ("0000", u64::MAX));
    // Written by LOAD DATA (4 batches of edge, 3 of solo), not INSERTs.
    let loaded = com_counter(&mut t, "Com_load").await - loads;
    assert_eq!(loaded, 7, "LOAD DATA statements on the target");
}

/// A target that refuses local loads gets the same rows through INSERTs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_refused_falls_back_to_inserts() {
    let env = servers(1).await;
    prepare(&env, 700, 150).await;
    let mut c = env.src.conn().await.unwrap();
    create(&mut c, &[EDGE_DDL]).await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c.query_drop(format!("{EDGE_INSERT} {}", EDGE_ROWS.join(",")))
        .await
        .unwrap();
    let mut t = env.targets[0].conn().await.unwrap();
    create(&mut t, &[EDGE_DDL]).await;
    t.query_drop("SET GLOBAL local_infile = 0").await.unwrap();
    let inserts = com_counter(&mut t, "Com_insert").await;
    let exit = copy_only(
        &env,
        &[
            ("customer", &["id"]),
            ("edge", &["id"]),
            ("tags", &["owner", "tag"]),
        ],
        100,
    )
    .await;
    assert_eq!(exit.unwrap(), StreamExit::CopyCompleted);
    let targets = [(&env.targets[0], "-")];
    assert_equal(&env.src, &targets, "customer", "id", None).await;
    assert_equal(&env.src, &targets, "edge", "id", None).await;
    assert_equal(&env.src, &targets, "tags", "owner, tag", None).await;
    assert!(com_counter(&mut t, "Com_insert").await > inserts);
}

/// LOAD DATA LOCAL skips a row whose key exists instead of failing; the
/// copy notices, rolls the batch back and stops rather than lose the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_duplicate_fails_loudly() {
    let env = servers(1).await;
    prepare(&env, 50, 0).await;
    let mut t = env.targets[0].conn().await.unwrap();
    t.query_drop("INSERT INTO app.customer (id, cid) VALUES (10, -1)")
        .await
        .unwrap();
    let err = copy_only(&env, &[("customer", &["id"])], 30)
        .await
        .expect_err("a doubled row stops the copy");
    assert!(matches!(err, StreamError::Row { .. }), "{err}");
    assert!(err.to_string().contains("stored 29 of 30"), "{err}");
    assert!(!err.is_transient());
    // The batch was rolled back with its progress.
    let n: Option<u64> = t
        .query_first("SELECT COUNT(*) FROM app.customer")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let copied: Option<Option<String>> = t
        .query_first("SELECT last_pk FROM _keyshift.copy_state WHERE table_name = 'customer'")
        .await
        .unwrap();
    assert_eq!(copied.flatten(), None);
}

/// A value the target's column cannot hold as the source has it fails the
/// copy (a LOCAL load would otherwise truncate it with only a warning), and
/// nothing of the batch is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_warning_fails_loudly() {
    let env = servers(1).await;
    prepare(&env, 50, 0).await;
    let mut t = env.targets[0].conn().await.unwrap();
    t.query_drop("ALTER TABLE app.customer MODIFY name VARCHAR(3) CHARACTER SET utf8mb4")
        .await
        .unwrap();
    let err = copy_only(&env, &[("customer", &["id"])], 30)
        .await
        .expect_err("a truncated value stops the copy");
    assert!(matches!(err, StreamError::Row { .. }), "{err}");
    assert!(err.to_string().contains("warning"), "{err}");
    assert!(!err.is_transient());
    let n: Option<u64> = t
        .query_first("SELECT COUNT(*) FROM app.customer")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}
