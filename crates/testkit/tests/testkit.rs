use std::time::Duration;

use anyhow::{Context, Result};
use keyshift_testkit::{TestMysqld, free_port};
use mysql_async::prelude::Queryable;

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn five_servers_start_concurrently() -> Result<()> {
    let handles: Vec<_> = (0..5).map(|_| tokio::spawn(TestMysqld::start())).collect();
    let mut servers = Vec::new();
    for h in handles {
        servers.push(h.await??);
    }
    let mut ports: Vec<u16> = servers.iter().map(TestMysqld::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5);
    for s in &servers {
        let mut conn = s.conn().await?;
        let one: Option<i64> = conn.query_first("SELECT 1").await?;
        assert_eq!(one, Some(1));
        conn.disconnect().await?;
        let pool = mysql_async::Pool::new(s.url().as_str());
        let mut c = pool.get_conn().await?;
        let fmt: Option<String> = c.query_first("SELECT @@binlog_format").await?;
        assert_eq!(fmt.as_deref(), Some("ROW"));
        drop(c);
        pool.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn restart_keeps_data_and_port() -> Result<()> {
    let mut s = TestMysqld::start_with(|c| c.server_id = 9).await?;
    let port = s.port();
    let mut conn = s.conn().await?;
    conn.query_drop("CREATE DATABASE k").await?;
    conn.query_drop("CREATE TABLE k.t (id INT PRIMARY KEY)")
        .await?;
    conn.query_drop("INSERT INTO k.t VALUES (1)").await?;
    drop(conn);

    s.kill();
    assert!(s.conn().await.is_err(), "killed server must not answer");
    s.restart().await?;
    assert_eq!(s.port(), port);
    let mut conn = s.conn().await?;
    let (id, server_id): (i64, u32) = conn
        .query_first("SELECT id, @@server_id FROM k.t")
        .await?
        .context("row survives a SIGKILL")?;
    assert_eq!((id, server_id), (1, 9));
    drop(conn);

    s.restart().await?;
    assert_eq!(s.port(), port);
    assert!(s.datadir().join("k").is_dir());
    Ok(())
}

#[tokio::test]
async fn drop_kills_the_server_and_removes_the_datadir() -> Result<()> {
    let s = TestMysqld::start().await?;
    let pid = s.pid().context("running")?;
    let dir = s.temp_dir().to_path_buf();
    assert!(pid_alive(pid));
    drop(s);
    assert!(!pid_alive(pid));
    assert!(!dir.exists());
    Ok(())
}

#[tokio::test]
async fn drop_cleans_up_after_a_panic() -> Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let s = TestMysqld::start().await.expect("start");
        let _ = tx.send((s.pid(), s.temp_dir().to_path_buf()));
        panic!("test failure with a server running");
    });
    assert!(task.await.is_err());
    let (pid, dir) = rx.await?;
    let pid = pid.context("running")?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pid_alive(pid));
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn free_ports_are_bindable() {
    let p = free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port is bindable");
}
