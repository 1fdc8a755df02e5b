//! The gate's unix socket listener (like vtgate's
//! `--mysql_server_socket_path`): the same protocol, authentication and
//! routing as over TCP, served by the same event loops; the socket file is
//! owner-only, removed when the gate stops, and a stale one left by a killed
//! gate is replaced while a live one is never taken over. Real servers behind
//! a topo, real clients (`mariadb -S`, mysql_async with a socket).

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use common::cluster::{GATE_PASSWORD, GATE_USER, SHARDED, TestCluster};
use keyshift_gate::service::{self, GateOptions, GateService, GateStartError};
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;

/// A second gate on the cluster's topo, listening on `socket` too. It reads
/// the routing state when it starts: set up tables and VSchemas first.
/// (Waiting for a topo revision would not do: the gates' heartbeats also
/// write to the topo, and a gate only moves to the revisions it routes by.)
async fn socket_gate(
    c: &TestCluster,
    socket: &Path,
    io_threads: usize,
) -> Result<(GateService, CancellationToken), GateStartError> {
    let cancel = CancellationToken::new();
    let opts = GateOptions {
        socket: Some(socket.to_path_buf()),
        io_threads,
        ..GateOptions::default()
    };
    let gate = service::start(
        c.topo.clone(),
        "127.0.0.1:0".parse().expect("addr"),
        opts,
        cancel.clone(),
    )
    .await?;
    Ok((gate, cancel))
}

fn socket_opts(socket: &Path, password: &str, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some(GATE_USER))
        .pass(Some(password))
        .db_name(db)
        .into()
}

/// `mariadb -S socket` as a user types it: (success, stdout, stderr).
fn mariadb_cli(socket: &Path, password: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("-S")
        .arg(socket)
        .arg(format!("-u{GATE_USER}"))
        .arg(format!("-p{password}"))
        .args(["-N", "-B", "-e", sql])
        .output()
        .expect("the mariadb client");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One short path per test (sockaddr_un is small), gone with the dir.
fn socket_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ks-sock-")
        .tempdir_in("/tmp")
        .expect("tempdir")
}

async fn customer_table(c: &TestCluster) -> anyhow::Result<()> {
    c.on_shards(
        "CREATE TABLE customer (customer_id BIGINT PRIMARY KEY, email VARCHAR(64)) ENGINE=InnoDB",
    )
    .await?;
    c.apply_vschema(
        SHARDED,
        r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}"#,
    )
    .await
}

/// Rows of `customer` on each shard, read directly.
async fn rows_per_shard(c: &TestCluster) -> anyhow::Result<Vec<Vec<i64>>> {
    let mut out = Vec::new();
    for s in &c.shards {
        let mut conn = s.conn().await?;
        let ids: Vec<i64> = conn
            .query("SELECT customer_id FROM customer ORDER BY 1")
            .await?;
        conn.disconnect().await?;
        out.push(ids);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_authenticate_and_route_over_the_socket() -> anyhow::Result<()> {
    let c = TestCluster::start(&["-80", "80-"]).await?;
    customer_table(&c).await?;
    let dir = socket_dir();
    let path = dir.path().join("gate.sock");
    let (gate, cancel) = socket_gate(&c, &path, GateOptions::default().io_threads)
        .await
        .context("starting the socket gate")?;
    assert_eq!(gate.socket(), Some(path.as_path()));
    let meta = std::fs::symlink_metadata(&path)?;
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");

    // mysql_async over the socket: writes go to the shard of their keyspace id.
    let mut conn = mysql_async::Conn::new(socket_opts(&path, GATE_PASSWORD, Some(SHARDED)))
        .await
        .context("mysql_async over the socket")?;
    for id in 1..=8i64 {
        conn.exec_drop(
            "INSERT INTO customer (customer_id, email) VALUES (?, ?)",
            (id, format!("c{id}@example.com")),
        )
        .await?;
    }
    let email: Option<String> = conn
        .exec_first("SELECT email FROM customer WHERE customer_id = ?", (5,))
        .await?;
    assert_eq!(email.as_deref(), Some("c5@example.com"));
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM customer").await?;
    assert_eq!(n, Some(8), "a scatter count over both shards");
    // Never a tablet's own socket: drivers would reconnect there, around
    // the gate.
    let socket: Option<Option<String>> = conn.query_first("SELECT @@socket").await?;
    assert_eq!(socket, Some(None));
    conn.disconnect().await?;
    let shards = rows_per_shard(&c).await?;
    assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), 8);
    assert!(
        shards.iter().all(|s| !s.is_empty()),
        "rows on both shards: {shards:?}"
    );
    for (s, ids) in c.shards.iter().zip(&shards) {
        for id in ids {
            let v = keyshift_vindex::new_vindex("hash", &Default::default()).expect("hash");
            let ksid = v.map(&keyshift_vindex::Value::Int(*id)).expect("map");
            assert_eq!(c.shard_of(&ksid.0).shard, s.shard, "row {id}");
        }
    }

    // mysql_async with a wrong password: 1045, naming user@localhost.
    let err = mysql_async::Conn::new(socket_opts(&path, "wrong", None))
        .await
        .expect_err("wrong password");
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1045, "{e:?}");
            assert!(
                e.message.contains(&format!("'{GATE_USER}'@'localhost'")),
                "{}",
                e.message
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }

    // The mariadb CLI over the socket, as a user types it.
    let (ok, out, err) = mariadb_cli(
        &path,
        GATE_PASSWORD,
        "SELECT email FROM customer.customer WHERE customer_id = 3",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "c3@example.com\n");
    let (ok, _, err) = mariadb_cli(&path, "wrong", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1045"), "{err}");

    // TCP still works on the same gate.
    let mut tcp = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(gate.addr().port())
            .user(Some(GATE_USER))
            .pass(Some(GATE_PASSWORD))
            .prefer_socket(false),
    )
    .await?;
    let n: Option<i64> = tcp
        .query_first("SELECT COUNT(*) FROM customer.customer")
        .await?;
    assert_eq!(n, Some(8));
    tcp.disconnect().await?;

    // A clean stop removes the socket file.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), gate.join())
        .await
        .context("the gate stops")?;
    assert!(!path.exists(), "socket removed on shutdown");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_served_without_event_loop_threads_too() -> anyhow::Result<()> {
    let c = TestCluster::start(&["-80", "80-"]).await?;
    let dir = socket_dir();
    let path = dir.path().join("gate.sock");
    let (gate, cancel) = socket_gate(&c, &path, 0).await?;
    let mut conn = mysql_async::Conn::new(socket_opts(&path, GATE_PASSWORD, None)).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    conn.disconnect().await?;
    cancel.cancel();
    gate.join().await;
    assert!(!path.exists(), "socket removed on shutdown");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not_taken() -> anyhow::Result<()> {
    let c = TestCluster::start(&["-80", "80-"]).await?;
    let dir = socket_dir();

    // Stale: a socket file nobody listens on (what a killed gate leaves).
    let stale: PathBuf = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    assert!(std::fs::symlink_metadata(&stale)?.file_type().is_socket());
    let (gate, cancel) = socket_gate(&c, &stale, 1)
        .await
        .context("a stale socket file is replaced")?;
    let mut conn = mysql_async::Conn::new(socket_opts(&stale, GATE_PASSWORD, None)).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    conn.disconnect().await?;

    // Live: a second gate on the first one's socket is refused, and the
    // first one keeps serving on it.
    match socket_gate(&c, &stale, 1).await {
        Err(GateStartError::SocketInUse { path }) => assert_eq!(path, stale),
        Err(e) => panic!("expected SocketInUse, got {e}"),
        Ok(_) => panic!("a second gate took over a live socket"),
    }
    let mut conn = mysql_async::Conn::new(socket_opts(&stale, GATE_PASSWORD, None)).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    conn.disconnect().await?;
    cancel.cancel();
    gate.join().await;
    assert!(!stale.exists());

    // Another process's live socket is not touched either.
    let theirs = dir.path().join("theirs.sock");
    let listener = std::os::unix::net::UnixListener::bind(&theirs)?;
    let err = socket_gate(&c, &theirs, 1).await.err().expect("refused");
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(std::fs::symlink_metadata(&theirs)?.file_type().is_socket());
    drop(listener);

    // Nor is a regular file.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "data")?;
    let err = socket_gate(&c, &file, 1).await.err().expect("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file)?, "data");

    // A path too long for sockaddr_un is reported as such.
    let long = dir.path().join("x".repeat(120));
    let err = socket_gate(&c, &long, 1).await.err().expect("refused");
    assert!(err.to_string().contains("at most 107"), "{err}");
    Ok(())
}
