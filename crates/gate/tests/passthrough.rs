//! Real clients against the passthrough gate in front of a real MariaDB.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keyshift_gate::GateConfig;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

const IN_TRANS: u16 = 0x0001;
const AUTOCOMMIT: u16 = 0x0002;

type TypedRow = (
    i64,
    Option<i32>,
    Option<u64>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

async fn setup() -> (Mysqld, TestGate) {
    let m = Mysqld::start();
    let g = start_gate(
        &m,
        Some("test"),
        GateConfig::default(),
        Duration::from_secs(5),
    )
    .await;
    (m, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_prepared_statements_with_mysql_async() -> anyhow::Result<()> {
    let (_m, g) = setup().await;
    let mut c = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;

    // many columns, NULLs, text protocol
    let ncols = 60;
    let defs: Vec<String> = (0..ncols)
        .map(|i| format!("c{i} VARCHAR(20) NULL"))
        .collect();
    c.query_drop(format!(
        "CREATE TABLE wide (id INT PRIMARY KEY, {})",
        defs.join(",")
    ))
    .await?;
    let vals: Vec<String> = (0..ncols)
        .map(|i| {
            if i % 3 == 0 {
                "NULL".into()
            } else {
                format!("'v{i}'")
            }
        })
        .collect();
    c.query_drop(format!("INSERT INTO wide VALUES (1, {})", vals.join(",")))
        .await?;
    let row: Row = c.query_first("SELECT * FROM wide").await?.unwrap();
    assert_eq!(row.len(), ncols + 1);
    for i in 0..ncols {
        let v: Option<String> = row.get(i + 1).unwrap();
        assert_eq!(
            v,
            if i % 3 == 0 {
                None
            } else {
                Some(format!("v{i}"))
            }
        );
    }
    // same through a prepared statement (binary rows forwarded raw)
    let row: Row = c
        .exec_first("SELECT * FROM wide WHERE id = ?", (1,))
        .await?
        .unwrap();
    for i in 0..ncols {
        let v: Option<String> = row.get(i + 1).unwrap();
        assert_eq!(
            v,
            if i % 3 == 0 {
                None
            } else {
                Some(format!("v{i}"))
            }
        );
    }

    // typed values through prepared statements, re-executed with different param types
    c.query_drop(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, i INT, u BIGINT UNSIGNED, d DOUBLE, s VARCHAR(100), dt DATETIME(6), tm TIME, b LONGBLOB)",
    )
    .await?;
    let stmt = c
        .prep("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .await?;
    c.exec_drop(
        &stmt,
        (
            1,
            -5i32,
            u64::MAX,
            1.5f64,
            "héllo",
            Value::Date(2024, 2, 29, 13, 14, 15, 123456),
            Value::Time(true, 1, 2, 3, 4, 0),
            vec![0u8, 1, 2, 255],
        ),
    )
    .await?;
    // ints as strings, NULLs, float, etc.
    c.exec_drop(
        &stmt,
        (
            "2",
            "7",
            Value::NULL,
            "2.25",
            42i64,
            "2020-01-01 00:00:00",
            Value::NULL,
            Value::NULL,
        ),
    )
    .await?;
    c.exec_drop(
        &stmt,
        (
            3u8,
            Value::NULL,
            5u16,
            3i32,
            Value::NULL,
            Value::NULL,
            "10:00:00",
            "",
        ),
    )
    .await?;
    let rows: Vec<TypedRow> = c
        .query("SELECT id, i, u, d, s, CAST(dt AS CHAR), CAST(tm AS CHAR), b FROM t ORDER BY id")
        .await?;
    assert_eq!(
        rows[0],
        (
            1,
            Some(-5),
            Some(u64::MAX),
            Some(1.5),
            Some("héllo".into()),
            Some("2024-02-29 13:14:15.123456".into()),
            Some("-26:03:04".into()),
            Some(vec![0, 1, 2, 255])
        )
    );
    assert_eq!(
        rows[1],
        (
            2,
            Some(7),
            None,
            Some(2.25),
            Some("42".into()),
            Some("2020-01-01 00:00:00.000000".into()),
            None,
            None
        )
    );
    assert_eq!(
        rows[2],
        (
            3,
            None,
            Some(5),
            Some(3.0),
            None,
            None,
            Some("10:00:00".into()),
            Some(vec![])
        )
    );
    // binary result decoding of every type
    let sel = c
        .prep("SELECT id, i, u, d, s, dt, tm, b FROM t WHERE id = ?")
        .await?;
    let r: Row = c.exec_first(&sel, (1,)).await?.unwrap();
    assert_eq!(r.get::<u64, _>(2), Some(u64::MAX));
    assert_eq!(
        r.get::<Value, _>(5),
        Some(Value::Date(2024, 2, 29, 13, 14, 15, 123456))
    );
    assert_eq!(r.get::<Value, _>(6), Some(Value::Time(true, 1, 2, 3, 4, 0)));
    for _ in 0..50 {
        let r: Row = c.exec_first(&sel, ("2",)).await?.unwrap();
        assert_eq!(r.get::<i64, _>(0), Some(2));
    }

    // blobs: 2 MB, and 17 MB (multi-frame packets in both directions)
    for size in [2 << 20, 17 << 20] {
        let blob: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        c.exec_drop(
            "INSERT INTO t (id, b) VALUES (?, ?)",
            (1000 + size as i64, blob.clone()),
        )
        .await?;
        let back: Option<Vec<u8>> = c
            .exec_first("SELECT b FROM t WHERE id = ?", (1000 + size as i64,))
            .await?;
        assert_eq!(back.as_deref(), Some(&blob[..]), "prepared blob of {size}");
        let back: Option<Vec<u8>> = c
            .query_first(format!("SELECT b FROM t WHERE id = {}", 1000 + size))
            .await?;
        assert_eq!(back.as_deref(), Some(&blob[..]), "text blob of {size}");
    }

    // backend errors reach the client and the connection stays usable
    let e = c.query_drop("SELECT * FROM nope").await.unwrap_err();
    match e {
        mysql_async::Error::Server(se) => assert_eq!(se.code, 1146),
        other => panic!("{other:?}"),
    }
    let e = c
        .exec_drop("SELECT * FROM nope WHERE a = ?", (1,))
        .await
        .unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref se) if se.code == 1146),
        "{e:?}"
    );
    let one: Option<i32> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    // multi-result: a stored procedure call
    c.query_drop("CREATE PROCEDURE p2() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END")
        .await?;
    let mut res = c.query_iter("CALL p2()").await?;
    let a: Vec<i32> = res.collect().await?;
    let bc: Vec<(i32, i32)> = res.collect().await?;
    drop(res);
    assert_eq!((a, bc), (vec![1], vec![(2, 3)]));
    let e = c.exec_drop(&stmt, (1,)).await;
    assert!(e.is_err());
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_status_flags_and_disconnect_rollback() -> anyhow::Result<()> {
    let (m, g) = setup().await;
    m.sql("CREATE TABLE test.k (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO test.k VALUES (1, 0)");
    for deprecate_eof in [false, true] {
        let mut c = RawClient::connect(g.port, USER, PASS, deprecate_eof)
            .await
            .unwrap();
        let (_, st) = c.query("SELECT v FROM k").await;
        assert_eq!(st.unwrap() & (IN_TRANS | AUTOCOMMIT), AUTOCOMMIT);
        let (_, st) = c.query("BEGIN").await;
        assert_eq!(st.unwrap() & (IN_TRANS | AUTOCOMMIT), IN_TRANS | AUTOCOMMIT);
        let (pk, st) = c.query("SELECT v FROM k").await;
        assert_eq!(st.unwrap() & IN_TRANS, IN_TRANS);
        assert_eq!(pk.len(), if deprecate_eof { 4 } else { 5 });
        let (_, st) = c.query("COMMIT").await;
        assert_eq!(st.unwrap() & (IN_TRANS | AUTOCOMMIT), AUTOCOMMIT);
        let (_, st) = c.query("SET autocommit = 0").await;
        assert_eq!(st.unwrap() & AUTOCOMMIT, 0);
        c.command(0x0E, &[]).await; // ping reports the session status too
        let (_, st) = c.response().await;
        assert_eq!(st.unwrap() & AUTOCOMMIT, 0);
    }

    // pinning: uncommitted work is invisible elsewhere, then rolled back at disconnect
    let mut a = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    let mut b = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    a.query_drop("BEGIN").await?;
    a.query_drop("UPDATE k SET v = 42 WHERE id = 1").await?;
    a.exec_drop("INSERT INTO k VALUES (?, ?)", (2, 2)).await?;
    let seen: i32 = a
        .query_first("SELECT v FROM k WHERE id = 1")
        .await?
        .unwrap();
    assert_eq!(seen, 42);
    let other: i32 = b
        .query_first("SELECT v FROM k WHERE id = 1")
        .await?
        .unwrap();
    assert_eq!(other, 0);
    drop(a); // no COM_QUIT: socket just closes
    // the row lock must go away once the gate rolls back
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        b.query_drop("SET innodb_lock_wait_timeout = 1").await?;
        match b.query_drop("UPDATE k SET v = v + 1 WHERE id = 1").await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for rollback: {e}");
                continue;
            }
            Err(e) => panic!("lock never released: {e}"),
        }
    }
    let v: i32 = b
        .query_first("SELECT v FROM k WHERE id = 1")
        .await?
        .unwrap();
    assert_eq!(v, 1);
    let n: i64 = b.query_first("SELECT COUNT(*) FROM k").await?.unwrap();
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_is_not_leaked_between_clients() -> anyhow::Result<()> {
    let m = Mysqld::start();
    let g = start_gate(
        &m,
        Some("test"),
        GateConfig::default(),
        Duration::from_secs(5),
    )
    .await;
    let mut a = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    a.query_drop("SET @x = 5").await?;
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'").await?;
    let x: Option<i64> = a.query_first("SELECT @x").await?.unwrap();
    assert_eq!(x, Some(5));
    a.disconnect().await?;
    // the pool has few connections; new clients must never see @x or the sql_mode
    for _ in 0..5 {
        let mut b = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
        let x: Option<i64> = b.query_first("SELECT @x").await?.unwrap();
        assert_eq!(x, None);
        let mode: String = b.query_first("SELECT @@SESSION.sql_mode").await?.unwrap();
        assert!(!mode.contains("ANSI_QUOTES"), "{mode}");
        b.disconnect().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexecute_without_types_raw() {
    let (m, g) = setup().await;
    m.sql("CREATE TABLE test.r (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO test.r VALUES (1,'a'),(2,'b'),(3,'c')");
    let mut c = RawClient::connect(g.port, USER, PASS, true).await.unwrap();
    c.command(0x02, b"test").await;
    assert_eq!(c.read().await[0], 0);
    c.command(0x16, b"SELECT s FROM r WHERE id = ? OR s = ?")
        .await;
    let ok = c.read().await;
    assert_eq!(ok[0], 0);
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    assert_eq!(u16::from_le_bytes([ok[7], ok[8]]), 2);
    for _ in 0..3 {
        c.read().await; // 2 param defs + 1 column def, no EOFs
    }
    let exec = |bound: bool, v: u32, s: Option<&str>| {
        let mut p = id.to_le_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(if s.is_none() { 0b10 } else { 0 });
        p.push(bound as u8);
        if bound {
            p.extend_from_slice(&[3, 0, 253, 0]);
        }
        p.extend_from_slice(&v.to_le_bytes());
        if let Some(s) = s {
            p.push(s.len() as u8);
            p.extend_from_slice(s.as_bytes());
        }
        p
    };
    let value_of = |pk: &[Vec<u8>]| -> Vec<String> {
        pk[2..pk.len() - 1]
            .iter()
            .map(|r| String::from_utf8_lossy(&r[3..]).into_owned())
            .collect()
    };
    c.command(0x17, &exec(true, 1, Some("zz"))).await;
    let (pk, _) = c.response().await;
    assert_eq!(value_of(&pk), vec!["a"]);
    // new_params_bound_flag = 0: types from the previous execute
    c.command(0x17, &exec(false, 2, Some("c"))).await;
    let (pk, _) = c.response().await;
    assert_eq!(value_of(&pk), vec!["b", "c"]);
    c.command(0x17, &exec(false, 3, None)).await;
    let (pk, _) = c.response().await;
    assert_eq!(value_of(&pk), vec!["c"]);
    // long data replaces the second parameter
    let mut ld = id.to_le_bytes().to_vec();
    ld.extend_from_slice(&1u16.to_le_bytes());
    ld.extend_from_slice(b"a");
    c.command(0x18, &ld).await;
    let mut p = id.to_le_bytes().to_vec();
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0);
    p.push(0);
    p.extend_from_slice(&9u32.to_le_bytes());
    c.command(0x17, &p).await;
    let (pk, _) = c.response().await;
    assert_eq!(value_of(&pk), vec!["a"]);
    // COM_STMT_RESET, then close; executing a closed statement is 1243
    c.command(0x1A, &id.to_le_bytes()).await;
    assert_eq!(c.read().await[0], 0);
    c.command(0x19, &id.to_le_bytes()).await;
    c.command(0x17, &exec(true, 1, Some("a"))).await;
    let e = c.read().await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1243));
    // first execute without ever binding types is 1210
    c.command(0x16, b"SELECT ?").await;
    let ok = c.read().await;
    let id2 = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    for _ in 0..2 {
        c.read().await;
    }
    let mut p = id2.to_le_bytes().to_vec();
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0]);
    c.command(0x17, &p).await;
    let e = c.read().await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1210));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misc_commands_raw() {
    let (m, g) = setup().await;
    m.sql("CREATE TABLE test.f (id INT PRIMARY KEY, name VARCHAR(10))");
    let mut c = RawClient::connect(g.port, USER, PASS, false).await.unwrap();
    // COM_FIELD_LIST
    c.command(0x04, b"f\0").await;
    let mut names = Vec::new();
    loop {
        let p = c.read().await;
        if p[0] == 0xFE && p.len() < 9 {
            break;
        }
        let col = keyshift_gate::Column::parse(&p).unwrap();
        names.push(col.name);
    }
    assert_eq!(names, vec!["id", "name"]);
    // COM_STATISTICS
    c.command(0x09, &[]).await;
    let s = String::from_utf8(c.read().await).unwrap();
    assert!(s.starts_with("Uptime: "), "{s}");
    // unknown command
    c.command(0x1D, &[]).await;
    let e = c.read().await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1047));
    // COM_INIT_DB to an unknown database
    c.command(0x02, b"nosuchdb").await;
    let e = c.read().await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1049));
    // still usable
    let (pk, st) = c.query("SELECT DATABASE()").await;
    assert!(st.is_some());
    assert_eq!(&pk[pk.len() - 2][1..], b"test");
    // COM_SET_OPTION acknowledged with EOF
    c.command(0x1B, &1u16.to_le_bytes()).await;
    assert_eq!(c.read().await[0], 0xFE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication() -> anyhow::Result<()> {
    let (_m, g) = setup().await;
    // wrong password
    let e = Conn::new(opts(g.port, USER, "wrong", None))
        .await
        .unwrap_err();
    match e {
        mysql_async::Error::Server(se) => {
            assert_eq!((se.code, se.state.as_str()), (1045, "28000"));
            assert_eq!(
                se.message,
                "Access denied for user 'u'@'127.0.0.1' (using password: YES)"
            );
        }
        other => panic!("{other:?}"),
    }
    // unknown user
    let e = Conn::new(opts(g.port, "nobody", "x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref se) if se.code == 1045),
        "{e:?}"
    );
    // empty password for a user that has one
    let e = Conn::new(opts(g.port, USER, "", None)).await.unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref se) if se.code == 1045 && se.message.ends_with("(using password: NO)")),
        "{e:?}"
    );
    // unknown database at connect
    let e = Conn::new(opts(g.port, USER, PASS, Some("nosuchdb")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref se) if se.code == 1049),
        "{e:?}"
    );
    // raw client with a wrong password
    let e = RawClient::connect(g.port, USER, "bad", true)
        .await
        .err()
        .unwrap();
    assert_eq!(u16::from_le_bytes([e[1], e[2]]), 1045);
    // fresh scrambles, printable
    let (a, _) = RawClient::greet(g.port).await;
    let (b, _) = RawClient::greet(g.port).await;
    assert_eq!(a.scramble.len(), 20);
    assert_ne!(a.scramble, b.scramble);
    assert!(a.scramble.iter().all(|&c| (0x21..0x7f).contains(&c)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_and_reset_connection() -> anyhow::Result<()> {
    let (_m, g) = setup().await;
    let mut c = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    let id1: u32 = c.query_first("SELECT 1").await?.unwrap();
    assert_eq!(id1, 1);
    c.query_drop("SET @v = 7").await?;
    c.query_drop("CREATE TEMPORARY TABLE tmp (a INT)").await?;
    let st = c.prep("SELECT ?").await?;
    assert!(c.reset().await?);
    let v: Option<i64> = c.query_first("SELECT @v").await?.unwrap();
    assert_eq!(v, None, "user variable survived COM_RESET_CONNECTION");
    assert!(
        c.query_drop("SELECT * FROM tmp").await.is_err(),
        "temporary table survived reset"
    );
    // statements are gone after reset; mysql_async re-prepares transparently
    let _ = st;
    let x: Option<i64> = c.exec_first("SELECT ?", (5,)).await?;
    assert_eq!(x, Some(5));

    c.query_drop("SET @v = 8").await?;
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("other".into()))
            .with_pass(Some("secret2".into())),
    )
    .await?;
    let v: Option<i64> = c.query_first("SELECT @v").await?.unwrap();
    assert_eq!(v, None);
    let x: Option<i64> = c.exec_first("SELECT ? + 1", (5,)).await?;
    assert_eq!(x, Some(6));
    // a wrong password on change user is refused
    let r = c
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("u".into()))
                .with_pass(Some("bad".into())),
        )
        .await;
    assert!(
        matches!(r, Err(mysql_async::Error::Server(ref se)) if se.code == 1045),
        "{r:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli() {
    let (m, g) = setup().await;
    m.sql("CREATE TABLE test.cli (id INT, s VARCHAR(10)); INSERT INTO test.cli VALUES (1, 'x'), (2, NULL)");
    let port = g.port;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uu",
                "-pp",
                "test",
                "-e",
            ])
            .arg("select id, s from cli order by id; select 'a' as x")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "id\ts\n1\tx\n2\tNULL\nx\na\n"
    );
    // wrong password through the CLI
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uu",
                "-pnope",
                "-e",
                "select 1",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1045"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // interactive-style session with tab completion data (COM_FIELD_LIST)
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uu",
                "-pp",
                "--auto-rehash",
                "test",
                "-e",
                "select count(*) from cli",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "count(*)\n2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packet_is_an_error() -> anyhow::Result<()> {
    let m = Mysqld::start();
    let cfg = GateConfig {
        max_allowed_packet: 1 << 20,
        ..GateConfig::default()
    };
    let g = start_gate(&m, Some("test"), cfg, Duration::from_secs(5)).await;
    let mut c = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    let big = format!("SELECT '{}'", "x".repeat(2 << 20));
    let e = c.query_drop(big).await.unwrap_err();
    eprintln!("oversized: {e:?}");
    match e {
        mysql_async::Error::Server(se) => assert_eq!(se.code, 1153),
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {}
        other => panic!("{other:?}"),
    }
    // the gate is still fine
    let mut c = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    let one: Option<i32> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_or_stopped_backend_gives_errors_quickly() -> anyhow::Result<()> {
    let mut m = Mysqld::start();
    let g = start_gate(
        &m,
        Some("test"),
        GateConfig::default(),
        Duration::from_secs(2),
    )
    .await;
    let mut c = Conn::new(opts(g.port, USER, PASS, Some("test"))).await?;
    c.query_drop("BEGIN").await?;
    c.query_drop("SELECT 1").await?;

    // stopped (SIGSTOP): the read timeout fires
    let pid = m.pid().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()?;
    tokio::time::sleep(Duration::from_millis(200)).await; // let every thread stop
    let t = Instant::now();
    let r = c.query_drop("SELECT 2").await;
    let took = t.elapsed();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()?;
    assert!(
        matches!(r, Err(mysql_async::Error::Server(ref se)) if se.code == 2013),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");

    // killed: errors right away, for the pinned session and for new statements
    let one: Option<i32> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    c.query_drop("BEGIN").await?;
    m.kill();
    let t = Instant::now();
    let r = c.query_drop("SELECT 3").await;
    assert!(r.is_err());
    let r = c.query_drop("SELECT 4").await;
    assert!(
        matches!(r, Err(mysql_async::Error::Server(ref se)) if se.code == 2013),
        "{r:?}"
    );
    let r = c.exec_drop("SELECT ?", (4,)).await;
    assert!(r.is_err());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    Ok(())
}
