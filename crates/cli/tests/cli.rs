//! The `keyshift` binary end to end, as a user runs it: a cluster file, `up`,
//! `demo`, `status`, `down`, `up` again, and the bad inputs of issue 2. Every
//! server here is a real `mariadbd` that the binary started itself.

mod common;

use common::{Cluster, processes_under};
use keyshift_cluster::ops;
use mysql_async::prelude::*;
use std::process::Command;

async fn commerce_rows(cluster: &Cluster, table: &str) -> Vec<(i64, String)> {
    let topo = cluster.topo().await;
    let primaries = ops::shard_primaries(topo.as_ref(), "commerce")
        .await
        .expect("primaries");
    let t = primaries[0].1.clone().expect("commerce primary");
    let opts = mysql_async::OptsBuilder::from_opts(t.endpoint().opts()).db_name(Some("commerce"));
    let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
    let rows = conn
        .query(format!("SELECT customer_id, email FROM {table} ORDER BY 1"))
        .await
        .expect("select");
    conn.disconnect().await.expect("disconnect");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_status_down_up_keeps_the_data() {
    let c = Cluster::example();
    let out = c.ok(&["up", "--detach"]);
    assert!(out.contains("3 managed tablet(s)"), "{out}");
    // A second node on the same data dir is refused.
    let err = c.fails(&["up", "--detach"]);
    assert!(err.contains("already running"), "{err}");

    let out = c.ok(&["demo"]);
    assert!(out.contains("loaded commerce"), "{out}");

    let status: serde_json::Value =
        serde_json::from_str(&c.ok(&["status", "--format", "json"])).expect("status json");
    let tablets: Vec<&serde_json::Value> = status["keyspaces"]
        .as_array()
        .expect("keyspaces")
        .iter()
        .flat_map(|k| k["shards"].as_array().expect("shards"))
        .flat_map(|s| s["tablets"].as_array().expect("tablets"))
        .collect();
    assert_eq!(tablets.len(), 3, "{status:#}");
    for t in &tablets {
        assert_eq!(t["status"]["healthy"], true, "{t:#}");
        assert_eq!(t["role"], "primary");
        assert!(
            t["status"]["gtid_binlog_pos"].as_str().is_some(),
            "GTID position shown: {t:#}"
        );
    }
    let shards: Vec<String> = status["keyspaces"]
        .as_array()
        .expect("keyspaces")
        .iter()
        .flat_map(|k| {
            let name = k["name"].as_str().unwrap_or_default().to_string();
            k["shards"]
                .as_array()
                .expect("shards")
                .iter()
                .map(move |s| format!("{name}/{}", s["name"].as_str().unwrap_or_default()))
        })
        .collect();
    assert_eq!(shards, ["commerce/0", "customer/-80", "customer/80-"]);
    let table = c.ok(&["status"]);
    assert!(
        table.contains("healthy") && !table.contains("DOWN"),
        "{table}"
    );

    let vs: serde_json::Value =
        serde_json::from_str(&c.ok(&["vschema", "get", "customer"])).expect("vschema json");
    assert_eq!(vs["sharded"], true);
    assert_eq!(
        vs["tables"]["corder"]["column_vindexes"][0]["column"],
        "customer_id"
    );
    let before = commerce_rows(&c, "customer").await;
    assert_eq!(before.len(), 5);

    let out = c.ok(&["down"]);
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(processes_under(c.dir.path()), 0, "down stops every server");
    let err = c.fails(&["down"]);
    assert!(err.contains("no keyshift cluster is running"), "{err}");

    c.ok(&["up", "--detach"]);
    assert_eq!(commerce_rows(&c, "customer").await, before);
    // The demo is idempotent.
    let out = c.ok(&["demo"]);
    assert!(out.contains("already has the demo tables"), "{out}");
    assert_eq!(commerce_rows(&c, "customer").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_starts_tablets_of_new_keyspaces_and_restarts_dead_ones() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    let out = c.ok(&["up", "--detach"]);
    assert!(out.contains("1 managed tablet(s)"), "{out}");
    let out = c.ok(&["keyspace", "create", "orders", "--shard-count", "2"]);
    assert!(out.contains("-80, 80-"), "{out}");
    let topo = c.topo().await;
    let orders = keyshift_cluster::demo::wait_for_primaries(
        topo.as_ref(),
        "orders",
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("the node starts the new keyspace's servers");
    assert_eq!(orders.len(), 2);

    // Kill one server; the node restarts it on the same datadir.
    let victim = &orders[0];
    let mut conn = mysql_async::Conn::new(victim.endpoint().opts())
        .await
        .expect("connect");
    conn.query_drop("CREATE TABLE orders.t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    let pid: u32 = conn
        .query_first("SELECT @@pid_file")
        .await
        .ok()
        .flatten()
        .and_then(|p: String| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
        .expect("server pid");
    drop(conn);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let again = keyshift_cluster::demo::wait_for_primaries(
        topo.as_ref(),
        "orders",
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("restarted");
    let mut conn = mysql_async::Conn::new(again[0].endpoint().opts())
        .await
        .expect("reconnect");
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'orders' AND table_name = 't'")
        .await
        .expect("query");
    assert_eq!(n, Some(1), "the restarted server kept its data");
    drop(conn);

    // Deleting the keyspace stops its servers; `down` waits for all of them.
    c.ok(&["keyspace", "delete", "orders", "--recursive"]);
    c.ok(&["down"]);
    assert_eq!(processes_under(c.dir.path()), 0, "every server stopped");
}

#[test]
fn a_malformed_cluster_file_names_the_line() {
    let c = Cluster::new("[[keyspace]]\nname = \"a\"\nshard_count = \"two\"\n");
    let err = c.fails(&["up"]);
    assert!(
        err.contains("line 3") && err.contains("keyshift.toml"),
        "{err}"
    );
    assert!(!c.data_dir().exists(), "nothing created");

    let c = Cluster::new("[[keyspace]]\nname = \"a\"\nshards = [\"-80\"]\n");
    let err = c.fails(&["up"]);
    assert!(err.contains("belong to no shard"), "{err}");
}

#[test]
fn a_missing_cluster_file_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .current_dir(dir.path())
        .arg("status")
        .env_remove("KEYSHIFT_CLUSTER")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keyshift.toml") && err.contains("--cluster"),
        "{err}"
    );
}

#[test]
fn a_missing_mariadbd_is_reported_before_anything_is_created() {
    let c = Cluster::new(
        "mariadbd = \"/nonexistent/bin/mariadbd\"\n[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    let err = c.fails(&["up"]);
    assert!(err.contains("mariadb-server"), "{err}");
    assert!(!c.data_dir().join("topo.db").exists(), "no topo written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_fails_cleanly() {
    // A port below the ephemeral range: once it is released, no other test
    // binding port 0 (and no outgoing connection) can take it before the
    // second `up` does.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    let taken = (0..1000u32)
        .find_map(|i| {
            let port = 20_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 12_000) as u16;
            std::net::TcpListener::bind(("127.0.0.1", port)).ok()
        })
        .expect("a free port below the ephemeral range");
    let port = taken.local_addr().expect("addr").port();
    let c = Cluster::new(&format!(
        "[[keyspace]]\nname = \"main\"\n[[tablet]]\nkeyspace = \"main\"\nshard = \"0\"\nuid = 100\nport = {port}\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n"
    ));
    let err = c.fails(&["up", "--timeout", "60s"]);
    assert!(
        err.contains(&port.to_string()) && err.contains("in use"),
        "{err}"
    );
    assert_eq!(processes_under(c.dir.path()), 0, "nothing left running");
    // Once the port is free, the same file starts.
    drop(taken);
    c.ok(&["up", "--detach"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datadir_owned_by_another_server_is_refused() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\n[[tablet]]\nkeyspace = \"main\"\nshard = \"0\"\nuid = 100\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    // Someone else's server (not started by keyshift) on the datadir keyshift
    // would use for tablet 100.
    let datadir = c.data_dir().join("tablets").join("local-0000000100");
    std::fs::create_dir_all(&datadir).expect("mkdir");
    let install = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg("--auth-root-authentication-method=normal")
        .output()
        .expect("mariadb-install-db");
    assert!(install.status.success(), "{install:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut other = Command::new("mariadbd")
        .arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}/other.sock", datadir.display()))
        .arg(format!("--pid-file={}/other.pid", datadir.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a foreign mariadbd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "foreign mariadbd did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = c.fails(&["up", "--timeout", "60s"]);
    assert!(err.contains("in use"), "{err}");
    // The foreign server is untouched.
    assert!(other.try_wait().expect("wait").is_none(), "still running");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let _ = other.kill();
    let _ = other.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_what_is_wrong() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    c.ok(&["up", "--detach"]);
    let err = c.fails(&["vschema", "get", "nope"]);
    assert!(err.contains("keyspace `nope` does not exist"), "{err}");
    let err = c.fails(&["keyspace", "create", "bad", "--shards", "-80,40-"]);
    assert!(err.contains("overlap"), "{err}");
    let err = c.fails(&["keyspace", "create", "gappy", "--shards", "-40,80-"]);
    assert!(err.contains("gap"), "{err}");
    let err = c.fails(&["keyspace", "create", "main"]);
    assert!(err.contains("already exists"), "{err}");
    c.ok(&[
        "keyspace",
        "create",
        "sh",
        "--shard-count",
        "2",
        "--no-tablets",
    ]);
    let err = c.fails(&[
        "vschema",
        "apply",
        "sh",
        "--json",
        r#"{"sharded": true, "vindexes": {"v": {"type": "hsah"}}, "tables": {"t": {}}}"#,
    ]);
    assert!(err.contains("vindexes.v.type"), "{err}");
    assert!(err.contains("tables.t"), "{err}");
    // Nothing was applied.
    let vs: serde_json::Value =
        serde_json::from_str(&c.ok(&["vschema", "get", "sh"])).expect("json");
    assert!(vs.get("vindexes").is_none(), "{vs}");
    let err = c.fails(&[
        "routing-rules",
        "apply",
        "--json",
        r#"{"rules": [{"from_table": "t", "to_tables": ["nowhere.t"]}]}"#,
    ]);
    assert!(err.contains("rules[0].to_tables[0]"), "{err}");
    // Document faults and schema faults come together.
    let err = c.fails(&[
        "vschema",
        "apply",
        "main",
        "--json",
        r#"{"tables": {"nope": {"type": "weird"}}}"#,
    ]);
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("tables.nope.type: unknown table type"),
        "{err}"
    );
    assert!(
        err.contains("tables.nope: table `nope` exists neither"),
        "{err}"
    );
    // The keyspace without a tablet is named as a place it might be.
    assert!(
        err.contains("`sh` (shard -80 has no primary tablet)"),
        "{err}"
    );
}

#[test]
fn vindex_prints_the_keyspace_id_without_a_cluster() {
    let c = Cluster::new("");
    for (value, ksid) in [
        ("1", "166b40b44aba4bd6"),
        ("2", "06e7ea22ce92708f"),
        ("3", "4eb190c9a2fa169c"),
        ("4", "d2fd8867d50d2dfe"),
        ("5", "70bb023c810ca87a"),
    ] {
        let out = c.ok(&["vindex", "hash", value]);
        assert_eq!(out.lines().next(), Some(ksid), "hash({value})");
    }
    let err = c.fails(&["vindex", "nope", "1"]);
    assert!(err.contains("hash"), "lists the known kinds: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vindex_names_the_shard_that_holds_the_value() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    let out = c.ok(&["vindex", "hash", "1"]);
    assert_eq!(out, "166b40b44aba4bd6\ncustomer/-80\n");
    let out = c.ok(&["vindex", "hash", "4"]);
    assert_eq!(out, "d2fd8867d50d2dfe\ncustomer/80-\n");
}

#[test]
fn ctrl_c_stops_a_foreground_node_and_its_servers() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\nshard_count = 2\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .arg("--cluster")
        .arg(c.file())
        .arg("up")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start keyshift up");
    // Wait for the "keyshift is up" line rather than sleeping.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(
        first.starts_with("keyshift is up: 2 managed tablet(s)"),
        "{first}"
    );
    assert_eq!(
        processes_under(c.dir.path()),
        3,
        "keyshift and two mariadbd"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = child.wait().expect("wait");
    assert!(status.success(), "clean exit: {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "keyshift stopped"), "{rest:?}");
    assert_eq!(processes_under(c.dir.path()), 0, "every server stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_tablet_is_probed_not_managed() {
    let external = keyshift_testkit::TestMysqld::start()
        .await
        .expect("external server");
    let ep = external.endpoint();
    // SAFETY of the test: a unique variable name, read by the child only.
    let var = format!("KEYSHIFT_TEST_PW_{}", std::process::id());
    let c = Cluster::new(&format!(
        "[[keyspace]]\nname = \"legacy\"\n[[tablet]]\nkeyspace = \"legacy\"\nshard = \"0\"\nuid = 900\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\npassword = \"env:{var}\"\ndatabase = \"shop\"\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
        ep.port, ep.user
    ));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyshift"))
            .arg("--cluster")
            .arg(c.file())
            .args(args)
            .env(&var, &ep.password)
            .output()
            .expect("run")
    };
    let out = run(&["up", "--detach"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["status", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let t = &status["keyspaces"][0]["shards"][0]["tablets"][0];
    assert_eq!(t["alias"], "local-0000000900");
    assert_eq!(t["managed"], false);
    assert_eq!(t["database"], "shop");
    assert_eq!(t["status"]["healthy"], true, "{t:#}");
    // The password never reaches the topo's JSON output or the log.
    let log = std::fs::read_to_string(c.data_dir().join("keyshift.log")).unwrap_or_default();
    assert!(!log.contains(&ep.password));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&ep.password));
    // Stopping keyshift leaves someone else's server running.
    c.ok(&["down"]);
    let mut conn = external.conn().await.expect("external still up");
    let one: Option<i64> = conn.query_first("SELECT 1").await.expect("query");
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_of_keyshift_the_next_up_takes_over_its_servers() {
    let c = Cluster::new(
        "[[keyspace]]\nname = \"main\"\n[[tablet]]\nkeyspace = \"main\"\nshard = \"0\"\nuid = 100\n[gate]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    c.ok(&["up", "--detach"]);
    // The orphaned mariadbd keeps serving.
    c.kill_node();
    assert_eq!(processes_under(c.dir.path()), 1, "the orphaned mariadbd");
    let out = c.ok(&["up", "--detach"]);
    assert!(out.contains("1 managed tablet(s)"), "{out}");
    let topo = c.topo().await;
    keyshift_cluster::demo::wait_for_primaries(
        topo.as_ref(),
        "main",
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("serving again");
    assert_eq!(
        processes_under(c.dir.path()),
        2,
        "the new node and the same one mariadbd"
    );
    c.ok(&["down"]);
    assert_eq!(processes_under(c.dir.path()), 0);
}

/// The gate address a running node wrote into its ready file.
fn gate_addr(c: &Cluster) -> String {
    let node: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("json");
    node["gate"].as_str().expect("gate address").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_serves_the_demo_to_a_real_client() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let addr = gate_addr(&c);
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    // The mariadb CLI, as a user would type it.
    let out = Command::new("mariadb")
        .args([
            "-h",
            host,
            "-P",
            port,
            "-u",
            "app",
            "-papp-password",
            "-N",
            "-B",
        ])
        .args([
            "-e",
            "SELECT email FROM commerce.customer WHERE customer_id = 3",
        ])
        .output()
        .expect("mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "charlie@domain.com\n");
    let out = Command::new("mariadb")
        .args([
            "-h", host, "-P", port, "-u", "app", "-pwrong", "-e", "SELECT 1",
        ])
        .output()
        .expect("mariadb client");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1045"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_gate_port_in_use_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let c = Cluster::new(&format!(
        "[[keyspace]]\nname = \"main\"\n[gate]\nlisten = \"127.0.0.1:{port}\"\n[api]\nlisten = \"127.0.0.1:0\"\n"
    ));
    let err = c.fails(&["up"]);
    assert!(
        err.contains(&format!("gate address 127.0.0.1:{port} is already in use")),
        "{err}"
    );
    assert!(!c.data_dir().join("topo.db").exists(), "no topo written");
    assert_eq!(processes_under(c.dir.path()), 0);
}
