//! The gate's unix socket as `keyshift up` runs it: `<data_dir>/gate.sock`
//! by default, shown by `up` and published in `keyshift.ready` and
//! `status`, served to the `mariadb` CLI and mysql_async with the gate's
//! users and routing, removed by `down`, replaced after a killed node, never
//! taken from a live process, and off with `[gate] socket = ""`.

mod common;

use common::{Cluster, conn_for, processes_under};
use mysql_async::prelude::*;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `mariadb -S socket -uapp -p<password> -N -B -e sql`: (success, stdout, stderr).
fn mariadb_socket(socket: &Path, password: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("-S")
        .arg(socket)
        .args(["-u", "app", &format!("-p{password}"), "-N", "-B", "-e", sql])
        .output()
        .expect("mariadb client");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ready(c: &Cluster) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("ready json")
}

fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Which demo shard of `customer` holds `customer_id` (Vitess's hash vindex).
fn customer_shard(id: i64) -> &'static str {
    let v = keyshift_vindex::new_vindex("hash", &Default::default()).expect("hash vindex");
    let ksid = v.map(&keyshift_vindex::Value::Int(id)).expect("map");
    if ksid.0[0] < 0x80 { "-80" } else { "80-" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_serves_its_unix_socket_and_cleans_it_up() {
    let c = Cluster::example();
    let sock: PathBuf = c.data_dir().join("gate.sock");
    let out = c.ok(&["up", "--detach"]);
    assert!(
        out.contains(&format!("mariadb -S {} -uapp -p", sock.display())),
        "up shows how to connect over the socket:\n{out}"
    );
    assert_eq!(ready(&c)["gate_socket"], sock.to_string_lossy().as_ref());
    let status: serde_json::Value =
        serde_json::from_str(&c.ok(&["status", "--format", "json"])).expect("status json");
    assert_eq!(
        status["node"]["gate_socket"],
        sock.to_string_lossy().as_ref()
    );
    assert!(is_socket(&sock));
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner only");
    c.ok(&["demo"]);
    // The demo leaves `customer` empty, VSchema ready: give its shards the table.
    for shard in ["-80", "80-"] {
        let mut direct = conn_for(&c, "customer", shard).await;
        direct
            .query_drop(
                "CREATE TABLE corder (order_id BIGINT NOT NULL, customer_id BIGINT, sku VARCHAR(128), price BIGINT, PRIMARY KEY (order_id)) ENGINE=InnoDB",
            )
            .await
            .expect("create corder");
        direct.disconnect().await.expect("disconnect");
    }

    // mysql_async: writes land on the shard their keyspace id names.
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(sock.to_string_lossy()))
        .user(Some("app"))
        .pass(Some("app-password"))
        .db_name(Some("customer"));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("mysql_async over the socket");
    // The node learns the demo's VSchema from the topo a moment after
    // `demo` returns (it polls another process's writes): wait until the
    // gate knows the table.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match conn.query_drop("SELECT COUNT(*) FROM corder").await {
            Ok(()) => break,
            Err(mysql_async::Error::Server(e))
                if e.code == 1146 && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the gate never learned of corder: {e}"),
        }
    }
    for id in 1..=6i64 {
        conn.exec_drop(
            "INSERT INTO corder (order_id, customer_id, sku, price) VALUES (?, ?, ?, ?)",
            (900 + id, id, format!("SKU-{id}"), 100),
        )
        .await
        .expect("insert through the socket");
    }
    let n: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM corder")
        .await
        .expect("scatter count");
    assert_eq!(n, Some(6));
    conn.disconnect().await.expect("disconnect");
    for shard in ["-80", "80-"] {
        let mut direct = conn_for(&c, "customer", shard).await;
        let here: Vec<i64> = direct
            .query("SELECT customer_id FROM corder ORDER BY 1")
            .await
            .expect("direct read");
        let want: Vec<i64> = (1..=6).filter(|id| customer_shard(*id) == shard).collect();
        assert_eq!(here, want, "rows of shard {shard}");
        direct.disconnect().await.expect("disconnect");
    }

    // The mariadb CLI: a routed read, and a wrong password.
    let (ok, out, err) = mariadb_socket(
        &sock,
        "app-password",
        "SELECT sku FROM customer.corder WHERE customer_id = 3",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "SKU-3\n");
    let (ok, _, err) = mariadb_socket(&sock, "wrong", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1045"), "{err}");
    assert!(err.contains("'app'@'localhost'"), "{err}");

    // `down` removes the socket.
    c.ok(&["down"]);
    assert!(!sock.exists(), "socket removed on shutdown");

    // A killed node leaves its socket behind; the next `up` replaces it.
    c.ok(&["up", "--detach"]);
    c.kill_node();
    assert!(is_socket(&sock), "a killed node leaves its socket file");
    c.ok(&["up", "--detach"]);
    let (ok, out, err) = mariadb_socket(
        &sock,
        "app-password",
        "SELECT email FROM commerce.customer WHERE customer_id = 3",
    );
    assert!(ok, "the stale socket was replaced: {err}");
    assert_eq!(out, "charlie@domain.com\n");
    c.ok(&["down"]);
    assert!(!sock.exists());
    assert_eq!(processes_under(c.dir.path()), 0);
}

#[test]
fn a_live_socket_is_not_taken_and_an_empty_path_turns_it_off() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:0\"\n[[gate.user]]\nname = \"app\"\npassword = \"pw\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    std::fs::create_dir_all(c.data_dir()).expect("data dir");
    let sock = c.data_dir().join("gate.sock");
    let live = std::os::unix::net::UnixListener::bind(&sock).expect("someone else's socket");
    let err = c.fails(&["up"]);
    assert!(
        err.contains(&format!("gate socket {} is in use", sock.display())),
        "{err}"
    );
    assert!(is_socket(&sock), "left alone");
    assert!(!c.data_dir().join("topo.db").exists(), "nothing started");
    drop(live);
    std::fs::remove_file(&sock).expect("remove");

    std::fs::write(
        c.file(),
        "[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:0\"\nsocket = \"\"\n[[gate.user]]\nname = \"app\"\npassword = \"pw\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("rewrite the cluster file");
    let out = c.ok(&["up", "--detach"]);
    assert!(!out.contains("mariadb -S"), "{out}");
    assert_eq!(ready(&c)["gate_socket"], serde_json::Value::Null);
    assert!(!sock.exists());
    c.ok(&["down"]);
}
