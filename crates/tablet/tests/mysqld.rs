//! Integration tests against real mariadbd servers, each on its own temp
//! datadir and free port, so they run in parallel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keyshift_tablet::{
    Endpoint, Mysqld, MysqldConfig, ProcessState, TabletError, find_binaries, free_port, probe,
    supervise,
};
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

fn config(dir: &Path) -> MysqldConfig {
    let binaries = find_binaries(None).expect("mariadb-server is installed");
    let mut cfg = MysqldConfig::new(binaries, dir.join("data"));
    cfg.admin_user = "ks_admin".into();
    cfg.admin_password = "pa'ss\\word".into();
    // Servers leaked by a failing test die with the test process.
    cfg.die_with_parent = true;
    cfg
}

fn pid_alive(pid: u32) -> bool {
    // A zombie counts as dead: it has exited, only its status is unread.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

async fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Kills a server on drop so a failing assertion leaves nothing running.
struct Guard(Option<Mysqld>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(m) = &mut self.0 {
            m.kill_and_wait();
        }
    }
}

impl Guard {
    fn take(&mut self) -> Mysqld {
        self.0.take().expect("server present")
    }
}

#[tokio::test]
async fn start_query_stop_and_restart_reuses_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.server_id = 4242;
    let started = Instant::now();
    let mut g = Guard(Some(Mysqld::start(cfg.clone()).await?));
    let first_start = started.elapsed();
    let m = g.0.as_ref().context("server")?;
    assert_ne!(m.port(), 0);
    assert!(!m.adopted());
    let mut conn = m.endpoint().connect().await?;
    let row: (u32, String, String, i64, String) = conn
        .query_first(
            "SELECT @@server_id, @@binlog_format, @@binlog_row_image, @@gtid_strict_mode, @@binlog_row_metadata",
        )
        .await?
        .context("one row")?;
    assert_eq!(row, (4242, "ROW".into(), "FULL".into(), 1, "FULL".into()));
    let (log_bin, domain, slave_updates): (i64, u32, i64) = conn
        .query_first("SELECT @@log_bin, @@gtid_domain_id, @@log_slave_updates")
        .await?
        .context("one row")?;
    assert_eq!((log_bin, domain, slave_updates), (1, 0, 1));
    conn.query_drop("CREATE DATABASE app").await?;
    conn.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))")
        .await?;
    conn.query_drop("INSERT INTO app.t VALUES (1, 'kept')")
        .await?;
    conn.disconnect().await?;

    let pid = g.0.as_ref().context("server")?.pid();
    g.take().stop().await?;
    assert!(!pid_alive(pid), "stop must end the process");
    assert!(!cfg.datadir.join("keyshift-owner.json").exists());

    let started = Instant::now();
    let mut g = Guard(Some(Mysqld::start(cfg.clone()).await?));
    let second_start = started.elapsed();
    let m = g.0.as_ref().context("server")?;
    let mut conn = m.endpoint().connect().await?;
    let v: Option<String> = conn.query_first("SELECT v FROM app.t WHERE id = 1").await?;
    assert_eq!(v.as_deref(), Some("kept"));
    conn.disconnect().await?;
    g.take().stop().await?;
    eprintln!("first start (with init) {first_start:?}, restart {second_start:?}");
    Ok(())
}

#[tokio::test]
async fn probe_reports_a_live_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.server_id = 77;
    let mut g = Guard(Some(Mysqld::start(cfg).await?));
    let m = g.0.as_ref().context("server")?;
    let mut conn = m.endpoint().connect().await?;
    conn.query_drop("CREATE DATABASE p").await?;
    conn.disconnect().await?;
    let s = probe(&m.endpoint(), Duration::from_secs(5)).await;
    assert!(s.healthy, "{s:?}");
    assert_eq!(s.server_id, Some(77));
    assert_eq!(s.read_only, Some(false));
    assert_eq!(s.flavor, Some(keyshift_types::Flavor::MariaDB));
    assert!(s.version.as_deref().is_some_and(|v| v.contains("MariaDB")));
    assert_eq!(s.gtid_binlog_pos.as_deref(), Some("0-77-1"));
    g.take().stop().await?;
    Ok(())
}

#[tokio::test]
async fn probe_of_a_dead_endpoint_is_quick_and_unhealthy() {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: free_port().expect("free port"),
        user: "x".into(),
        password: "y".into(),
        tls: None,
    };
    let t = Instant::now();
    let s = probe(&ep, Duration::from_secs(2)).await;
    assert!(!s.healthy);
    assert!(s.error.is_some(), "{s:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A blackholed address must be cut off by the timeout, not hang.
    let ep = Endpoint {
        host: "10.255.255.1".into(),
        port: 3306,
        ..ep
    };
    let t = Instant::now();
    let s = probe(&ep, Duration::from_millis(500)).await;
    assert!(!s.healthy);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn fixed_port_in_use_is_refused_before_anything_is_created() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let port = listener.local_addr()?.port();
    let mut cfg = config(dir.path());
    cfg.port = port;
    let err = Mysqld::start(cfg.clone()).await.expect_err("port is taken");
    assert!(
        matches!(err, TabletError::PortInUse { port: p } if p == port),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "port {port} on 127.0.0.1 is already in use by another process; choose another port or 0 for a free one"
        )
    );
    assert!(!cfg.datadir.exists(), "no datadir may be left behind");
    Ok(())
}

#[tokio::test]
async fn failed_first_init_removes_the_datadir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.binaries.install_db = "/bin/false".into();
    let err = Mysqld::start(cfg.clone()).await.expect_err("init fails");
    assert!(matches!(err, TabletError::InitFailed { .. }), "{err}");
    assert!(!cfg.datadir.exists(), "partial datadir must be removed");

    // An existing empty datadir (say a mount point) is emptied, not removed.
    std::fs::create_dir(&cfg.datadir)?;
    let err = Mysqld::start(cfg.clone()).await.expect_err("init fails");
    assert!(matches!(err, TabletError::InitFailed { .. }), "{err}");
    assert!(cfg.datadir.exists());
    assert_eq!(std::fs::read_dir(&cfg.datadir)?.count(), 0);

    // Missing mariadbd: a clear spawn error, and the dir is still usable.
    let mut cfg = config(dir.path());
    cfg.binaries.mariadbd = dir.path().join("no-such-mariadbd");
    let err = find_binaries(Some(&cfg.binaries.mariadbd)).expect_err("missing");
    assert!(matches!(
        err,
        TabletError::MissingBinary {
            binary: "mariadbd",
            ..
        }
    ));
    assert!(
        err.to_string()
            .contains("sudo apt-get install mariadb-server")
    );
    Ok(())
}

#[tokio::test]
async fn a_foreign_nonempty_dir_is_not_initialised() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    std::fs::create_dir_all(&cfg.datadir)?;
    std::fs::write(cfg.datadir.join("precious.txt"), "data")?;
    let err = Mysqld::start(cfg.clone()).await.expect_err("not a datadir");
    assert!(
        matches!(err, TabletError::DatadirNotMariadb { .. }),
        "{err}"
    );
    assert!(cfg.datadir.join("precious.txt").exists());
    Ok(())
}

#[tokio::test]
async fn exit_during_startup_quotes_the_error_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.extra_args = vec!["--no-such-option-for-keyshift".into()];
    let err = Mysqld::start(cfg).await.expect_err("bad flag");
    assert!(
        matches!(err, TabletError::ExitedDuringStartup { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("no-such-option-for-keyshift"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn wrong_admin_credentials_on_a_reused_datadir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    Mysqld::start(cfg.clone()).await?.stop().await?;
    let mut other = cfg.clone();
    other.admin_password = "different".into();
    let err = Mysqld::start(other).await.expect_err("wrong password");
    assert!(matches!(err, TabletError::AdminRejected { .. }), "{err}");
    // The server it started to find out is gone again.
    let pid: u32 = std::fs::read_to_string(cfg.pid_file())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(pid == 0 || !pid_alive(pid));
    // And the right credentials still work.
    Mysqld::start(cfg).await?.stop().await?;
    Ok(())
}

/// Starts mariadbd the way an operator would, without keyshift's ownership
/// record, and waits until it answers.
async fn start_foreign(cfg: &MysqldConfig, extra: &[String]) -> Result<std::process::Child> {
    let port = free_port()?;
    let child = Command::new(&cfg.binaries.mariadbd)
        .args(cfg.server_args(port))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let ep = cfg.endpoint(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if probe(&ep, Duration::from_secs(1)).await.healthy {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("foreign mariadbd did not come up")
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn datadir_in_use_by_a_foreign_server_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    Mysqld::start(cfg.clone()).await?.stop().await?;

    // Found through the pid file in the datadir.
    let foreign = ChildGuard(start_foreign(&cfg, &[]).await?);
    let err = Mysqld::start(cfg.clone()).await.expect_err("in use");
    let pid = foreign.0.id();
    assert!(
        matches!(&err, TabletError::DatadirInUse { pid: p, .. } if *p == pid),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "datadir {} is in use by a running mariadbd (pid {pid}); stop that server or use another data_dir",
            cfg.datadir.display()
        )
    );
    drop(foreign);

    // Found through InnoDB's lock when the pid file lives elsewhere.
    let elsewhere = dir.path().join("elsewhere.pid");
    let foreign =
        ChildGuard(start_foreign(&cfg, &[format!("--pid-file={}", elsewhere.display())]).await?);
    let pid = foreign.0.id();
    let err = Mysqld::start(cfg.clone()).await.expect_err("in use");
    assert!(
        matches!(&err, TabletError::DatadirInUse { pid: p, .. } if *p == pid),
        "{err}"
    );
    drop(foreign);

    // Once it is gone the datadir is ours again.
    Mysqld::start(cfg).await?.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_forgotten_server_is_adopted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    let m = Mysqld::start(cfg.clone()).await?;
    let (pid, port) = (m.pid(), m.port());
    let mut conn = m.endpoint().connect().await?;
    conn.query_drop("CREATE DATABASE adopted").await?;
    conn.disconnect().await?;
    // What a `kill -9` of keyshift leaves: a running server and no handle.
    std::mem::forget(m);

    let mut g = Guard(Some(Mysqld::start(cfg.clone()).await?));
    let a = g.0.as_ref().context("server")?;
    assert!(a.adopted());
    assert_eq!((a.pid(), a.port()), (pid, port));
    let s = probe(&a.endpoint(), Duration::from_secs(5)).await;
    assert!(s.healthy, "{s:?}");

    // An adopted server is still supervised: its death is noticed.
    let a = g.0.as_mut().context("server")?;
    sigkill(pid);
    let info = tokio::time::timeout(Duration::from_secs(10), a.wait_exit()).await?;
    assert_eq!(
        info.signal,
        Some(9),
        "our own forgotten child is reaped: {info}"
    );
    g.take();

    // A stale ownership record whose pid now names another process (pid
    // reuse) is not adopted; the server starts normally.
    let me = std::process::id();
    std::fs::write(
        cfg.datadir.join("keyshift-owner.json"),
        format!(r#"{{"pid":{me},"port":{port},"start_ticks":1}}"#),
    )?;
    let mut g = Guard(Some(Mysqld::start(cfg.clone()).await?));
    let m = g.0.as_ref().context("server")?;
    assert!(!m.adopted());
    assert_ne!(m.pid(), me);
    // Stopping an adopted server by pid works too.
    let pid = m.pid();
    std::mem::forget(g.take());
    let a = Mysqld::start(cfg).await?;
    assert!(a.adopted());
    a.stop().await?;
    assert!(wait_dead(pid, Duration::from_secs(5)).await);
    Ok(())
}

#[tokio::test]
async fn supervisor_restarts_a_killed_server_and_stops_on_cancel() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    let cancel = CancellationToken::new();
    let (handle, mut rx) = supervise(cfg.clone(), cancel.clone());
    let _stop = cancel.clone().drop_guard();

    let running = |rx: &mut tokio::sync::watch::Receiver<ProcessState>| {
        let mut rx = rx.clone();
        async move {
            let state = rx
                .wait_for(|s| {
                    matches!(
                        s,
                        ProcessState::Running { .. } | ProcessState::Failed { .. }
                    )
                })
                .await?
                .clone();
            match state {
                ProcessState::Running { pid, port } => Ok((pid, port)),
                other => bail!("supervisor gave up: {other:?}"),
            }
        }
    };
    let (pid, port) = tokio::time::timeout(Duration::from_secs(60), running(&mut rx)).await??;
    let ep = cfg.endpoint(port);
    let mut conn = ep.connect().await?;
    conn.query_drop("CREATE DATABASE s").await?;
    conn.query_drop("CREATE TABLE s.t (id INT PRIMARY KEY)")
        .await?;
    conn.query_drop("INSERT INTO s.t VALUES (1), (2), (3)")
        .await?;
    drop(conn);

    sigkill(pid);
    let restarting = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| matches!(s, ProcessState::Restarting { .. })),
    )
    .await??
    .clone();
    match &restarting {
        ProcessState::Restarting { reason, attempt } => {
            assert_eq!(*attempt, 1);
            assert!(reason.contains("SIGKILL"), "{reason}");
        }
        other => bail!("unexpected {other:?}"),
    }
    let (pid2, port2) = tokio::time::timeout(Duration::from_secs(60), running(&mut rx)).await??;
    assert_ne!(pid2, pid);
    assert_eq!(port2, port, "the port stays stable across restarts");
    let mut conn = ep.connect().await?;
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM s.t").await?;
    assert_eq!(n, Some(3));
    drop(conn);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(70), handle).await??;
    assert_eq!(*rx.borrow(), ProcessState::Stopped);
    assert!(!pid_alive(pid2));
    Ok(())
}

#[tokio::test]
async fn supervisor_reports_a_server_that_cannot_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let mut cfg = config(dir.path());
    cfg.port = listener.local_addr()?.port();
    let (handle, rx) = supervise(cfg, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), handle).await??;
    match &*rx.borrow() {
        ProcessState::Failed { reason } => assert!(reason.contains("already in use"), "{reason}"),
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

/// Run as a child process by `test_servers_die_with_their_process`.
#[tokio::test]
#[ignore = "helper, run by another test"]
async fn helper_start_and_hang() -> Result<()> {
    let Ok(dir) = std::env::var("KEYSHIFT_PDEATH_DIR") else {
        return Ok(());
    };
    let m = match Mysqld::start(config(Path::new(&dir))).await {
        Ok(m) => m,
        Err(e) => {
            println!("ERR {e}");
            return Err(e.into());
        }
    };
    println!("PID {}", m.pid());
    std::mem::forget(m);
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[tokio::test]
async fn test_servers_die_with_their_process() -> Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let mut helper = ChildGuard(
        Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "helper_start_and_hang",
                "--ignored",
                "--nocapture",
            ])
            .env("KEYSHIFT_PDEATH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = helper.0.stdout.take().context("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .find(|l| l.starts_with("PID ") || l.starts_with("ERR "))
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await??
        .context("helper printed no pid")?;
    if line.starts_with("ERR ") {
        bail!("helper could not start mariadbd: {line}");
    }
    let pid: u32 = line.trim_start_matches("PID ").trim().parse()?;
    assert!(pid_alive(pid));
    // The helper's runtime threads are all alive here; kill the process.
    drop(helper);
    let died = wait_dead(pid, Duration::from_secs(10)).await;
    if !died {
        sigkill(pid);
    }
    assert!(died, "mariadbd {pid} outlived the process that started it");
    Ok(())
}
