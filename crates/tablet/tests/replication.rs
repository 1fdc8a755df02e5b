//! `ensure_replica` against real servers: seeding (including over the
//! leftovers of an interrupted seed), idempotence, restarting stopped
//! replication, and following a primary that moved to another port.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keyshift_tablet::{
    EnsureOutcome, Mysqld, MysqldConfig, ReplicaSetup, ReplicationState, ensure_replica,
    find_binaries, find_client_tools, free_port, probe,
};
use mysql_async::prelude::Queryable;

fn config(dir: &Path, name: &str, server_id: u32) -> MysqldConfig {
    let binaries = find_binaries(None).expect("mariadb-server is installed");
    let mut cfg = MysqldConfig::new(binaries, dir.join(name));
    cfg.server_id = server_id;
    cfg.admin_user = "ks_admin".into();
    // Quotes and backslashes reach the client tools' option files and
    // CHANGE MASTER intact.
    cfg.admin_password = format!("pa\"ss'w\\ord-{name}");
    cfg.die_with_parent = true;
    cfg
}

/// Kills the servers on drop so a failing assertion leaves nothing running.
struct Servers(Vec<Mysqld>);

impl Drop for Servers {
    fn drop(&mut self) {
        for m in &mut self.0 {
            m.kill_and_wait();
        }
    }
}

async fn count(m: &Mysqld, table: &str) -> Result<u64> {
    let mut conn = m.endpoint().connect().await?;
    let n: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await?;
    let _ = conn.disconnect().await;
    n.context("no row")
}

async fn wait_count(m: &Mysqld, table: &str, want: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = count(m, table).await;
        match &got {
            Ok(n) if *n == want => return Ok(()),
            _ if Instant::now() > deadline => bail!("{table}: {got:?}, want {want}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn exec(m: &Mysqld, sql: &str) -> Result<()> {
    let mut conn = m.endpoint().connect().await?;
    conn.query_drop(sql)
        .await
        .with_context(|| sql.to_string())?;
    let _ = conn.disconnect().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_seeded_kept_running_and_follows_a_moved_primary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pcfg = config(dir.path(), "primary", 10);
    let mut rcfg = config(dir.path(), "replica", 11);
    rcfg.extra_args = vec!["--read-only".into(), "--skip-slave-start".into()];
    let (p, r) = tokio::try_join!(Mysqld::start(pcfg.clone()), Mysqld::start(rcfg.clone()))?;
    let mut servers = Servers(vec![p, r]);
    let tools = find_client_tools(&servers.0[0].config().binaries)?;
    let scratch = rcfg.tmp_dir();

    exec(
        &servers.0[0],
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v BLOB); \
         INSERT INTO shop.t SELECT seq, UNHEX('00FF27') FROM shop.seq_1_to_500",
    )
    .await?;
    // What an interrupted seed would leave: it must not survive the next one.
    exec(&servers.0[1], "CREATE DATABASE leftover").await?;

    let ensure = |p: &Mysqld, r: &Mysqld| {
        let (primary, replica) = (p.endpoint(), r.endpoint());
        let (tools, scratch) = (tools.clone(), scratch.clone());
        async move {
            ensure_replica(&ReplicaSetup {
                tools: &tools,
                replica: &replica,
                primary: &primary,
                scratch_dir: &scratch,
            })
            .await
        }
    };
    assert_eq!(
        ensure(&servers.0[0], &servers.0[1]).await?,
        EnsureOutcome::Seeded
    );
    wait_count(&servers.0[1], "shop.t", 500).await?;
    let leftovers = std::fs::read_dir(&scratch)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cnf"))
        .count();
    assert_eq!(leftovers, 0, "credentials files are removed");
    let mut conn = servers.0[1].endpoint().connect().await?;
    let stray: Option<String> = conn.query_first("SHOW DATABASES LIKE 'leftover'").await?;
    assert_eq!(stray, None, "seeding starts from an empty replica");
    let blob: Option<Vec<u8>> = conn
        .query_first("SELECT v FROM shop.t WHERE id = 7")
        .await?;
    assert_eq!(blob.as_deref(), Some(&[0u8, 0xff, 0x27][..]));
    let _ = conn.disconnect().await;

    exec(&servers.0[0], "INSERT INTO shop.t VALUES (501, 'x')").await?;
    wait_count(&servers.0[1], "shop.t", 501).await?;
    assert_eq!(
        ensure(&servers.0[0], &servers.0[1]).await?,
        EnsureOutcome::Unchanged
    );
    let st = probe(&servers.0[1].endpoint(), Duration::from_secs(3)).await;
    let rep = st.replication.context("the replica reports replication")?;
    assert_eq!(rep.state(), ReplicationState::Replicating, "{rep:?}");
    assert_eq!(st.read_only, Some(true));
    assert!(rep.gtid_slave_pos.is_some_and(|g| g.starts_with("0-10-")));
    let primary_st = probe(&servers.0[0].endpoint(), Duration::from_secs(3)).await;
    assert_eq!(primary_st.replication, None);

    // Stopped without an error: started again.
    exec(&servers.0[1], "STOP SLAVE").await?;
    assert_eq!(
        ensure(&servers.0[0], &servers.0[1]).await?,
        EnsureOutcome::Started
    );

    // The primary restarts on another port and takes writes meanwhile: the
    // replica is re-pointed and misses nothing.
    let old = servers.0.remove(0);
    old.stop().await?;
    let mut moved = pcfg.clone();
    moved.port = free_port()?;
    servers.0.insert(0, Mysqld::start(moved).await?);
    exec(
        &servers.0[0],
        "INSERT INTO shop.t SELECT seq, 'y' FROM shop.seq_502_to_600",
    )
    .await?;
    assert_eq!(
        ensure(&servers.0[0], &servers.0[1]).await?,
        EnsureOutcome::Repointed
    );
    wait_count(&servers.0[1], "shop.t", 600).await?;
    Ok(())
}
