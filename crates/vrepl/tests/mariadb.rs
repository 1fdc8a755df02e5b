//! Binlog streams and snapshots against real mariadbd servers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keyshift_testkit::TestMysqld;
use keyshift_types::{Flavor, Position};
use keyshift_vrepl::{
    BinlogOptions, BinlogStream, ChangeKind, Event, MariaDb, Row, RowChange, ServerFlavor,
    TableFilter, Value, VreplError, consistent_snapshot, for_flavor,
};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

fn maria() -> Arc<dyn ServerFlavor> {
    for_flavor(Flavor::MariaDB)
}

async fn server() -> anyhow::Result<(TestMysqld, Conn)> {
    let s = TestMysqld::start().await?;
    let mut c = s.conn().await?;
    c.query_drop("CREATE DATABASE app").await?;
    c.query_drop("USE app").await?;
    Ok((s, c))
}

async fn pos(c: &mut Conn) -> Position {
    MariaDb.current_position(c).await.unwrap()
}

async fn stream(s: &TestMysqld, from: &Position, filter: TableFilter) -> BinlogStream {
    BinlogStream::start(&s.endpoint(), maria(), from.clone(), filter)
        .await
        .unwrap()
}

/// Events (heartbeats dropped) until one whose position contains `target`.
async fn collect_until(s: &mut BinlogStream, target: &Position) -> Vec<Event> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = s.next().await {
            let ev = ev.unwrap();
            let done = ev.position_after().is_some_and(|p| p.contains(target));
            if !matches!(ev, Event::Heartbeat { .. }) {
                out.push(ev);
            }
            if done {
                return;
            }
        }
        panic!("stream ended early");
    })
    .await
    .expect("reaching the target position in time");
    out
}

fn changes(events: &[Event]) -> Vec<RowChange> {
    events
        .iter()
        .flat_map(|e| match e {
            Event::Transaction { changes, .. } => changes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn get<'a>(row: &'a Row, col: &str) -> &'a Value {
    &row.iter().find(|(n, _)| &**n == col).expect(col).1
}

/// Applies a change to `table` on `c` through SQL literals, keyed on `id`.
async fn apply(c: &mut Conn, table: &str, ch: &RowChange) {
    let list = |row: &Row, sep: &str| {
        row.iter()
            .map(|(n, v)| format!("`{n}` = {}", v.to_sql_literal()))
            .collect::<Vec<_>>()
            .join(sep)
    };
    let sql = match ch.kind {
        ChangeKind::Insert => {
            let row = ch.after.as_ref().unwrap();
            let cols: Vec<String> = row.iter().map(|(n, _)| format!("`{n}`")).collect();
            let vals: Vec<String> = row.iter().map(|(_, v)| v.to_sql_literal()).collect();
            format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                cols.join(","),
                vals.join(",")
            )
        }
        ChangeKind::Update => format!(
            "UPDATE {table} SET {} WHERE `id` = {}",
            list(ch.after.as_ref().unwrap(), ", "),
            get(ch.before.as_ref().unwrap(), "id").to_sql_literal()
        ),
        ChangeKind::Delete => format!(
            "DELETE FROM {table} WHERE `id` = {}",
            get(ch.before.as_ref().unwrap(), "id").to_sql_literal()
        ),
    };
    c.query_drop(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(c.affected_rows(), 1, "{sql}");
}

async fn rows_binary(c: &mut Conn, sql: &str) -> Vec<Vec<mysql_async::Value>> {
    let rows: Vec<mysql_async::Row> = c.exec(sql, ()).await.unwrap();
    rows.into_iter().map(|r| r.unwrap()).collect()
}

const TYPES_DDL: &str = "CREATE TABLE types (
    id INT NOT NULL PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED,
    dec1 DECIMAL(65,30), dec2 DECIMAL(10,2), dec3 DECIMAL(5,0) UNSIGNED, dec4 DECIMAL(19,9),
    f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME(6), dtm0 DATETIME, dtm3 DATETIME(3),
    ts TIMESTAMP(6) NULL DEFAULT NULL, ts0 TIMESTAMP NULL DEFAULT NULL, ts2 TIMESTAMP(2) NULL DEFAULT NULL,
    tm TIME, tm6 TIME(6), tm3 TIME(3), tm1 TIME(1), yr YEAR,
    c CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(300) CHARACTER SET utf8mb4,
    tx TEXT CHARACTER SET utf8mb4, l1 VARCHAR(20) CHARACTER SET latin1,
    bn BINARY(4), vb VARBINARY(10), bl BLOB, lb LONGBLOB,
    e ENUM('a','b','c'), st SET('x','y','z'),
    j JSON, bt BIT(64), b1 BIT(1), b5 BIT(5)
) ENGINE=InnoDB";

const TYPES_ROWS: &[&str] = &[
    "INSERT INTO types VALUES (1,
      127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
      9223372036854775807, 18446744073709551615,
      '99999999999999999999999999999999999.999999999999999999999999999999', '99999999.99', 99999, '1234567890.123456789',
      3.40282e38, 1.7976931348623157e308,
      '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59', '2020-02-29 12:34:56.789',
      '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07', '2000-01-01 00:00:00.01',
      '838:59:59', '838:59:59.000000', '-00:00:00.001', '-01:02:03.4', 2155,
      'héllo😀', CONCAT(REPEAT('x', 290), '🙂🙃'), '🐬 text\\nwith newline', 'café',
      X'00010000', X'000000', X'00FF00', X'0000',
      'c', 'x,z', '{\"a\": [1, 2.5, \"ü😀\"], \"b\": null}', b'1111111111111111111111111111111111111111111111111111111111111111', 1, b'10101')",
    "INSERT INTO types VALUES (2,
      -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
      -9223372036854775808, 0,
      '-99999999999999999999999999999999999.999999999999999999999999999999', '-12345678.90', 0, '-0.000000001',
      -1.17549435e-38, -2.2250738585072014e-308,
      '1000-01-01', '1000-01-01 00:00:00.000001', '1000-01-01 00:00:00', '1000-01-01 00:00:00.001',
      '1970-01-01 00:00:01.000001', '1970-01-01 00:00:01', '1999-12-31 23:59:59.99',
      '-838:59:59', '-838:59:59.000000', '-00:00:01.500', '00:00:00.1', 1901,
      '', '', '', '',
      X'00000000', X'', X'', X'',
      'a', '', '[]', 0, 0, 0)",
    "INSERT INTO types (id) VALUES (3)",
    "INSERT INTO types VALUES (4,
      0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
      '0', '0.10', 1, '0.5',
      0.1, 0.1,
      '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-06-30 23:59:59.5',
      '0000-00-00 00:00:00', '2024-03-31 01:30:00', '2024-10-27 00:30:00.5',
      '00:00:00', '-00:00:00.000001', '12:00:00.5', '-00:00:00.1', 0,
      ' trailing ', 'trailing  ', ' ', 'ÿ',
      X'20202020', X'00', X'00', REPEAT(X'00', 70000),
      'b', 'x,y,z', '\"just a string\"', 1, 0, 31)",
];

const TYPES_UPDATES: &[&str] = &[
    "UPDATE types SET tiu = 254, biu = 18446744073709551614, dec1 = '-0.000000000000000000000000000001',
       f = -3.40282e38, d = 4.9e-324, dtm = '2001-02-03 04:05:06.000007', ts = '2021-06-01 12:00:00.5',
       tm6 = '-838:59:58.999999', c = '😀😀', vb = X'FF00FF', e = 'a', st = 'y', j = '{}', bt = 9223372036854775808
     WHERE id = 1",
    "UPDATE types SET ti = NULL, vc = 'now set', bl = X'DEADBEEF00', yr = 1999 WHERE id = 2",
    "UPDATE types SET ti = 5, tx = 'was null' WHERE id = 3",
    "DELETE FROM types WHERE id = 4",
];

#[tokio::test]
async fn type_matrix_round_trips_through_literals() {
    let (src, mut c) = server().await.unwrap();
    let dst = TestMysqld::start().await.unwrap();
    let mut t = dst.conn().await.unwrap();
    t.query_drop("CREATE DATABASE app").await.unwrap();
    t.query_drop("USE app").await.unwrap();
    t.query_drop(TYPES_DDL).await.unwrap();
    for sql in keyshift_vrepl::APPLIER_SESSION_SQL {
        t.query_drop(*sql).await.unwrap();
    }
    c.query_drop(TYPES_DDL).await.unwrap();
    let start = pos(&mut c).await;
    // The source session's zone must not matter: TIMESTAMPs travel in UTC.
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for sql in TYPES_ROWS {
        c.query_drop(*sql).await.unwrap();
    }
    c.query_drop("SET time_zone = '-07:00'").await.unwrap();
    for sql in TYPES_UPDATES {
        c.query_drop(*sql).await.unwrap();
    }
    let end = pos(&mut c).await;
    let mut s = stream(&src, &start, TableFilter::tables("app", ["types"])).await;
    let events = collect_until(&mut s, &end).await;
    let all = changes(&events);
    assert_eq!(all.len(), TYPES_ROWS.len() + TYPES_UPDATES.len());

    // Spot checks of decoded values.
    let r1 = all[0].after.as_ref().unwrap();
    assert_eq!(get(r1, "biu"), &Value::UInt(u64::MAX));
    assert_eq!(get(r1, "bi"), &Value::Int(i64::MAX));
    assert_eq!(get(r1, "tiu"), &Value::UInt(255));
    assert_eq!(
        get(r1, "dec1"),
        &Value::Decimal(
            "99999999999999999999999999999999999.999999999999999999999999999999".into()
        )
    );
    assert_eq!(get(r1, "d"), &Value::Double(f64::MAX));
    assert_eq!(get(r1, "c"), &Value::Text("héllo😀".as_bytes().to_vec()));
    assert_eq!(get(r1, "bn"), &Value::Bytes(vec![0, 1, 0, 0]));
    assert_eq!(get(r1, "e"), &Value::Enum(3));
    assert_eq!(get(r1, "st"), &Value::Set(0b101));
    assert_eq!(get(r1, "bt"), &Value::Bit(u64::MAX));
    assert_eq!(
        get(r1, "ts"),
        &Value::Timestamp {
            secs: i32::MAX as u32,
            micros: 999_999
        }
    );
    assert!(matches!(get(r1, "j"), Value::Text(_)));
    let r2 = all[1].after.as_ref().unwrap();
    assert_eq!(get(r2, "bi"), &Value::Int(i64::MIN));
    assert_eq!(get(r2, "dec4"), &Value::Decimal("-0.000000001".into()));
    assert_eq!(
        get(r2, "tm"),
        &Value::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 0
        }
    );
    assert_eq!(
        get(r2, "tm3"),
        &Value::Time {
            negative: true,
            hours: 0,
            minutes: 0,
            seconds: 1,
            micros: 500_000
        }
    );
    assert_eq!(get(r2, "yr"), &Value::Year(1901));
    let r3 = all[2].after.as_ref().unwrap();
    assert!(r3.iter().skip(1).all(|(_, v)| v.is_null()));

    for ch in &all {
        apply(&mut t, "types", ch).await;
    }
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let q = "SELECT * FROM types ORDER BY id";
    let want = rows_binary(&mut c, q).await;
    let got = rows_binary(&mut t, q).await;
    assert_eq!(want.len(), 3);
    assert_eq!(got, want);
    // Text protocol too (FLOAT text, TIMESTAMPs by UNIX_TIMESTAMP).
    let q = "SELECT id, f, d, UNIX_TIMESTAMP(ts), UNIX_TIMESTAMP(ts2), HEX(bt), HEX(lb), j FROM types ORDER BY id";
    let want: Vec<mysql_async::Row> = c.query(q).await.unwrap();
    let got: Vec<mysql_async::Row> = t.query(q).await.unwrap();
    let unwrap = |v: Vec<mysql_async::Row>| v.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>();
    assert_eq!(unwrap(got), unwrap(want));
}

#[tokio::test]
async fn transactions_are_whole_ordered_and_filtered() {
    let (src, mut c) = server().await.unwrap();
    for t in ["a", "b", "c"] {
        c.query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(10))"
        ))
        .await
        .unwrap();
    }
    c.query_drop("CREATE DATABASE other").await.unwrap();
    c.query_drop("CREATE TABLE other.a (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let start = pos(&mut c).await;
    c.query_drop(
        "BEGIN; INSERT INTO a VALUES (1, 'a1'); INSERT INTO b VALUES (1, 'b1');
         INSERT INTO c VALUES (1, 'c1'); UPDATE a SET v = 'a2' WHERE id = 1;
         INSERT INTO other.a VALUES (1); DELETE FROM b WHERE id = 1;
         INSERT INTO a VALUES (2, 'x'), (3, 'y'); COMMIT",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO c VALUES (2, 'c2')")
        .await
        .unwrap();
    c.query_drop("INSERT INTO other.a VALUES (2)")
        .await
        .unwrap();
    // Matches no row: MariaDB writes no transaction at all.
    c.query_drop("UPDATE b SET v = 'zz'").await.unwrap();
    let end = pos(&mut c).await;

    let mut s = stream(&src, &start, TableFilter::tables("app", ["a", "b"])).await;
    let events = collect_until(&mut s, &end).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let Event::Transaction {
        changes, timestamp, ..
    } = &events[0]
    else {
        panic!("{:?}", events[0]);
    };
    assert!(*timestamp > 1_600_000_000);
    let shape: Vec<(&str, ChangeKind)> = changes.iter().map(|c| (&*c.table, c.kind)).collect();
    assert_eq!(
        shape,
        vec![
            ("a", ChangeKind::Insert),
            ("b", ChangeKind::Insert),
            ("a", ChangeKind::Update),
            ("b", ChangeKind::Delete),
            ("a", ChangeKind::Insert),
            ("a", ChangeKind::Insert),
        ]
    );
    assert!(changes.iter().all(|c| &*c.db == "app"));
    let upd = &changes[2];
    assert_eq!(
        get(upd.before.as_ref().unwrap(), "v"),
        &Value::Text(b"a1".to_vec())
    );
    assert_eq!(
        get(upd.after.as_ref().unwrap(), "v"),
        &Value::Text(b"a2".to_vec())
    );
    assert!(changes[3].after.is_none() && changes[0].before.is_none());
    for e in &events[1..] {
        assert!(matches!(e, Event::Other { .. }), "{e:?}");
    }
    // Every transaction advanced the position by one.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| match e.gtid() {
            Some(keyshift_vrepl::Gtid::MariaDB(g)) => g.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(events.last().unwrap().position_after(), Some(&end));
}

#[tokio::test]
async fn resume_mid_stream_across_domains_is_exact() {
    let (src, mut c) = server().await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let start = pos(&mut c).await;
    for i in 0..12 {
        let domain = if i % 3 == 0 { 1 } else { 0 };
        c.query_drop(format!("SET SESSION gtid_domain_id = {domain}"))
            .await
            .unwrap();
        c.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .unwrap();
    }
    c.query_drop("SET SESSION gtid_domain_id = 0")
        .await
        .unwrap();
    let end = pos(&mut c).await;
    assert_eq!(end.to_string().split(',').count(), 2, "{end}");

    let mut s = stream(&src, &start, TableFilter::all_tables("app")).await;
    let all = collect_until(&mut s, &end).await;
    assert_eq!(all.len(), 12);
    // The quiet point: the last position equals the server's own.
    assert_eq!(all.last().unwrap().position_after(), Some(&end));
    let ids = |evs: &[Event]| -> Vec<Value> {
        changes(evs)
            .iter()
            .map(|c| get(c.after.as_ref().unwrap(), "id").clone())
            .collect()
    };
    for cut in [1, 3, 4, 7, 11] {
        let from = all[cut - 1].position_after().unwrap().clone();
        let mut s = stream(&src, &from, TableFilter::all_tables("app")).await;
        let rest = collect_until(&mut s, &end).await;
        assert_eq!(
            ids(&rest),
            ids(&all[cut..]),
            "resuming after {cut} from {from}"
        );
        assert_eq!(rest.last().unwrap().position_after(), Some(&end));
    }
}

#[tokio::test]
async fn ddl_events_and_schema_changes() {
    let (src, mut c) = server().await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let start = pos(&mut c).await;
    c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    c.query_drop("ALTER TABLE t ADD COLUMN name VARCHAR(20) NOT NULL DEFAULT 'n'")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (2, 'two')")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE u (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("DROP TABLE u").await.unwrap();
    c.query_drop("CREATE USER 'someone'@'%' IDENTIFIED BY 'x'")
        .await
        .unwrap();
    let end = pos(&mut c).await;
    let mut s = stream(&src, &start, TableFilter::tables("app", ["t"])).await;
    let ev = collect_until(&mut s, &end).await;
    assert_eq!(ev.len(), 6, "{ev:#?}");
    assert!(matches!(&ev[0], Event::Transaction { .. }));
    match &ev[1] {
        Event::Ddl {
            db,
            sql,
            position_after,
            timestamp,
            ..
        } => {
            assert_eq!(db, "app");
            assert!(sql.starts_with("ALTER TABLE t ADD COLUMN name"), "{sql}");
            assert!(position_after.contains(ev[0].position_after().unwrap()));
            assert!(*timestamp > 0);
        }
        other => panic!("{other:?}"),
    }
    let ch = changes(&ev[2..3]);
    assert_eq!(
        get(ch[0].after.as_ref().unwrap(), "name"),
        &Value::Text(b"two".to_vec())
    );
    assert!(matches!(&ev[3], Event::Ddl { sql, .. } if sql.starts_with("CREATE TABLE u")));
    assert!(matches!(&ev[4], Event::Ddl { sql, .. } if sql.starts_with("DROP TABLE")));
    assert!(matches!(&ev[5], Event::Other { .. }), "{:?}", ev[5]);
}

#[tokio::test]
async fn names_and_signedness_fall_back_to_information_schema() {
    let (src, mut c) = server().await.unwrap();
    c.query_drop("SET GLOBAL binlog_row_metadata = 'NO_LOG'")
        .await
        .unwrap();
    c.query_drop(
        "CREATE TABLE t (id BIGINT UNSIGNED PRIMARY KEY, s VARCHAR(5) CHARACTER SET utf8mb4, b VARBINARY(5), y YEAR, u TINYINT UNSIGNED)",
    )
    .await
    .unwrap();
    let start = pos(&mut c).await;
    let mut w = src.conn().await.unwrap(); // a session that sees NO_LOG
    w.query_drop("INSERT INTO app.t VALUES (18446744073709551615, 'é', X'00', 2000, 200)")
        .await
        .unwrap();
    let end = pos(&mut c).await;
    let mut s = stream(&src, &start, TableFilter::all_tables("app")).await;
    let ch = changes(&collect_until(&mut s, &end).await);
    let row = ch[0].after.as_ref().unwrap();
    let names: Vec<&str> = row.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, ["id", "s", "b", "y", "u"]);
    assert_eq!(get(row, "id"), &Value::UInt(u64::MAX));
    assert_eq!(get(row, "u"), &Value::UInt(200));
    assert_eq!(get(row, "s"), &Value::Text("é".as_bytes().to_vec()));
    assert_eq!(get(row, "b"), &Value::Bytes(vec![0]));
}

#[tokio::test]
async fn idle_source_sends_heartbeats() {
    let (src, mut c) = server().await.unwrap();
    let here = pos(&mut c).await;
    let period = Duration::from_millis(500);
    let opts = BinlogOptions {
        heartbeat: period,
        ..BinlogOptions::default()
    };
    let t0 = Instant::now();
    let mut s = BinlogStream::start_with(
        &src.endpoint(),
        maria(),
        here,
        TableFilter::all_tables("app"),
        opts,
    )
    .await
    .unwrap();
    let mut beats = 0;
    while beats < 3 {
        let ev = s.next().await.unwrap().unwrap();
        if matches!(ev, Event::Heartbeat { .. }) {
            beats += 1;
            if beats == 1 {
                assert!(
                    t0.elapsed() < period * 2 + Duration::from_millis(300),
                    "{:?}",
                    t0.elapsed()
                );
            }
        } else {
            assert!(ev.position_after().is_none(), "nothing was written: {ev:?}");
        }
    }
    assert!(t0.elapsed() < period * 4 + Duration::from_secs(1));
}

#[tokio::test]
async fn killed_source_ends_the_stream_with_an_error() {
    let (mut src, mut c) = server().await.unwrap();
    let here = pos(&mut c).await;
    drop(c);
    let opts = BinlogOptions {
        heartbeat: Duration::from_millis(500),
        ..BinlogOptions::default()
    };
    let mut s = BinlogStream::start_with(
        &src.endpoint(),
        maria(),
        here,
        TableFilter::all_tables("app"),
        opts,
    )
    .await
    .unwrap();
    src.kill();
    let t0 = Instant::now();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("stream ended without an error"),
            Err(_) => panic!("no error within 5 s"),
        }
    };
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(err.is_transient(), "{err}");
    assert!(s.next().await.is_none(), "the stream ends after its error");
}

#[tokio::test]
async fn start_from_unknown_position_is_an_error() {
    let (src, _c) = server().await.unwrap();
    let future = Position::parse(Flavor::MariaDB, "0-1-999999").unwrap();
    let mut s = stream(&src, &future, TableFilter::all_tables("app")).await;
    let r = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(VreplError::Mysql(_))), "{r:?}");
}

/// The snapshot sees exactly its position: replaying the binlog from it
/// over the rows read in it gives the final table, with every insert
/// finding no row, every update and delete finding its before-image.
#[tokio::test]
async fn snapshot_position_is_exact_under_concurrent_writes() {
    let (src, mut c) = server().await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_50")
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let mut wc = src.conn().await.unwrap();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = (n * 7 + w * 13) % 60 + 1;
                let sql = match n % 4 {
                    0 => format!("DELETE FROM app.t WHERE id = {id}"),
                    1 => format!("INSERT IGNORE INTO app.t VALUES ({id}, {n})"),
                    _ => format!(
                        "BEGIN; UPDATE app.t SET v = v + 1 WHERE id = {id}; UPDATE app.t SET v = (v * 2 + 1) % 1000003 WHERE id = {}; COMMIT",
                        (id + 5) % 60 + 1
                    ),
                };
                wc.query_drop(sql).await.unwrap();
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap_conn = src.conn().await.unwrap();
    let mut snap = consistent_snapshot(snap_conn, &MariaDb).await.unwrap();
    let at = snap.position().clone();
    // Let writes land after the snapshot before reading it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows: Vec<(i32, i64)> = snap
        .conn()
        .query("SELECT id, v FROM app.t ORDER BY id")
        .await
        .unwrap();
    snap.finish().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert!(total > 50, "the writers ran ({total} statements)");
    let end = pos(&mut c).await;
    assert!(end.contains(&at) && end != at);

    let mut table: BTreeMap<i64, i64> = rows.into_iter().map(|(k, v)| (k.into(), v)).collect();
    let as_i64 = |v: &Value| match v {
        Value::Int(x) => *x,
        other => panic!("{other:?}"),
    };
    let mut s = stream(&src, &at, TableFilter::tables("app", ["t"])).await;
    let events = collect_until(&mut s, &end).await;
    let mut applied = 0;
    for ch in changes(&events) {
        applied += 1;
        match ch.kind {
            ChangeKind::Insert => {
                let r = ch.after.as_ref().unwrap();
                let prev = table.insert(as_i64(get(r, "id")), as_i64(get(r, "v")));
                assert!(prev.is_none(), "insert over an existing row: {ch:?}");
            }
            ChangeKind::Update => {
                let b = ch.before.as_ref().unwrap();
                let a = ch.after.as_ref().unwrap();
                let cur = table.remove(&as_i64(get(b, "id")));
                assert_eq!(cur, Some(as_i64(get(b, "v"))), "stale before-image: {ch:?}");
                table.insert(as_i64(get(a, "id")), as_i64(get(a, "v")));
            }
            ChangeKind::Delete => {
                let b = ch.before.as_ref().unwrap();
                let cur = table.remove(&as_i64(get(b, "id")));
                assert_eq!(cur, Some(as_i64(get(b, "v"))), "stale delete: {ch:?}");
            }
        }
    }
    assert!(applied > 0, "some changes happened after the snapshot");
    let fin: Vec<(i32, i64)> = c.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let fin: BTreeMap<i64, i64> = fin.into_iter().map(|(k, v)| (k.into(), v)).collect();
    assert_eq!(table, fin);
}
