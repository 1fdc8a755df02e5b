//! `keyshift up` and `keyshift down`: the lifetime of a local node.
//!
//! One node per data dir, enforced by an exclusive `flock` on
//! `<data_dir>/keyshift.lock` held for the node's whole life (the kernel
//! drops it if the process dies, so a crash never leaves a stale lock).
//! Once every managed tablet runs, the node writes `keyshift.ready` with its
//! pid; `--detach` waits for that file, `down` signals that pid.

use anyhow::{Context, Result, bail};
use keyshift_cluster::node::{TabletRunner, seed};
use keyshift_cluster::{ClusterFile, ops};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub pid: u32,
    pub started_at: u64,
    pub data_dir: PathBuf,
    pub tablets: usize,
    /// Where applications connect (the gate's bound address).
    #[serde(default)]
    pub gate: Option<String>,
    /// The gate's unix socket, for applications on this host; None when
    /// `[gate] socket = ""` turns it off.
    #[serde(default)]
    pub gate_socket: Option<PathBuf>,
    /// The API and dashboard's bound address.
    #[serde(default)]
    pub api: Option<String>,
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keyshift.lock")
}
fn ready_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keyshift.ready")
}
fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keyshift.log")
}

/// Takes the node lock, or says who holds it.
fn try_lock(data_dir: &Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .mode(0o600)
        .open(lock_path(data_dir))
        .with_context(|| format!("opening {}", lock_path(data_dir).display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(anyhow::anyhow!(
            "cannot lock {}: {e}",
            lock_path(data_dir).display()
        )),
    }
}

/// The node running from this cluster file's data dir, if any.
pub fn running_node(file: &ClusterFile) -> Option<NodeInfo> {
    let data_dir = file.data_dir();
    if !data_dir.exists() {
        return None;
    }
    match try_lock(&data_dir) {
        Ok(Some(_lock)) => None, // nobody holds it; dropping releases it
        Ok(None) => {
            let text = std::fs::read_to_string(ready_path(&data_dir)).ok()?;
            serde_json::from_str(&text).ok()
        }
        Err(_) => None,
    }
}

fn holder_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(lock_path(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `json_logs`: the node (detached too) logs one JSON object per line.
pub async fn up(cluster: &Path, detach: bool, timeout: Duration, json_logs: bool) -> Result<()> {
    let file = ClusterFile::load(cluster)?;
    let data_dir = file.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", data_dir.display()))?;
    file.check_secrets()?;
    if detach {
        return up_detached(cluster, &file, timeout, json_logs).await;
    }
    let mut signals = ShutdownSignals::install()?;
    let Some(lock) = try_lock(&data_dir)? else {
        bail!(
            "a keyshift cluster is already running from {}{}; stop it with `keyshift down`",
            data_dir.display(),
            holder_pid(&data_dir)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default()
        );
    };
    std::fs::write(lock_path(&data_dir), format!("{}\n", std::process::id()))
        .context("writing the node's pid")?;
    let _ = std::fs::remove_file(ready_path(&data_dir));

    // Check for mariadbd before writing anything, so a machine without it gets
    // one clear message and an untouched topo.
    let binaries = keyshift_tablet::find_binaries(file.mariadbd.as_deref());
    let needs_managed = file.tablets.iter().any(|t| !t.is_external())
        || file.keyspaces.iter().any(|k| {
            !file
                .tablets
                .iter()
                .any(|t| t.keyspace == k.name && t.is_external())
        });
    let binaries = match binaries {
        Ok(b) => Some(b),
        Err(e) if needs_managed => return Err(e.into()),
        Err(_) => None,
    };

    // The gate's port is checked before anything is written or started, so a
    // clash costs nothing to fix.
    let gate_addr: std::net::SocketAddr = file
        .gate
        .listen
        .parse()
        .with_context(|| format!("[gate] listen = {:?}", file.gate.listen))?;
    if gate_addr.port() != 0 {
        std::net::TcpListener::bind(gate_addr).map_err(|e| {
            anyhow::anyhow!(
                "gate address {gate_addr} is already in use by another process ({e}); set [gate] listen in {}",
                file.path.display()
            )
        })?;
    }
    // So is its socket. A socket file that nothing answers on is a killed
    // node's leftover, which the gate replaces (this node holds the data
    // dir's lock, so no other node of this data dir can be starting on it);
    // one that answers belongs to a live process and is never taken over.
    let gate_socket = file.gate_socket().map_err(anyhow::Error::msg)?;
    if let Some(path) = &gate_socket
        && std::os::unix::net::UnixStream::connect(path).is_ok()
    {
        bail!(
            "gate socket {} is in use by another process; set [gate] socket in {} (\"\" turns it off)",
            path.display(),
            file.path.display()
        );
    }

    let topo = keyshift_topo::open(&file.topo_url())
        .await
        .with_context(|| format!("opening the topo at {}", file.topo_url()))?;
    for w in seed(topo.as_ref(), &file).await? {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    let managed: Vec<_> = ops::list_tablets(topo.as_ref())
        .await?
        .into_iter()
        .filter(|t| t.managed.is_some())
        .map(|t| t.alias)
        .collect();
    let cancel = CancellationToken::new();
    let runner = TabletRunner::spawn(topo.clone(), binaries, cancel.clone());
    eprintln!(
        "starting {} managed tablet(s) in {}",
        managed.len(),
        data_dir.display()
    );
    let started = tokio::select! {
        r = runner.wait_running(&managed, timeout) => r.map_err(anyhow::Error::from),
        _ = signals.recv() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = started {
        cancel.cancel();
        runner.join().await;
        return Err(e).context("starting the cluster (every server started so far was stopped)");
    }
    let gate = match keyshift_gate::service::start(
        topo.clone(),
        gate_addr,
        keyshift_gate::service::GateOptions {
            socket: gate_socket,
            ..keyshift_gate::service::GateOptions::default()
        },
        cancel.clone(),
    )
    .await
    {
        Ok(g) => g,
        Err(e) => {
            cancel.cancel();
            runner.join().await;
            return Err(anyhow::Error::new(e))
                .context("starting the gate (every server started so far was stopped)");
        }
    };
    // Workflows after the gate: a stream never starts on a node that failed
    // to come up.
    let workflows = keyshift_workflow::Controller::spawn(topo.clone(), cancel.clone());
    let _vdiffs = keyshift_vdiff::VdiffController::spawn(topo.clone(), cancel.clone());
    // The API and dashboard last: they operate what is already running.
    let api = match start_api(
        &file,
        topo.clone(),
        vec![gate.metrics_renderer()],
        cancel.clone(),
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            cancel.cancel();
            workflows.join().await;
            gate.join().await;
            runner.join().await;
            return Err(e).context("starting the API (every server started so far was stopped)");
        }
    };
    let info = NodeInfo {
        pid: std::process::id(),
        started_at: keyshift_cluster::model::now_unix(),
        data_dir: data_dir.clone(),
        tablets: managed.len(),
        gate: Some(gate.addr().to_string()),
        gate_socket: gate.socket().map(Path::to_path_buf),
        api: Some(api.server.addr().to_string()),
    };
    std::fs::write(ready_path(&data_dir), serde_json::to_vec_pretty(&info)?)
        .context("writing keyshift.ready")?;
    println!(
        "keyshift is up: {} managed tablet(s) running, data in {}",
        managed.len(),
        data_dir.display()
    );
    print_gate_hint(&file, &gate.addr().to_string(), gate.socket());
    print_api_hint(&api.server.addr().to_string(), &api.token_path);
    println!("  keyshift status   shows keyspaces, shards and tablets");
    println!("  Ctrl-C            stops everything");

    signals.recv().await;
    eprintln!("stopping...");
    cancel.cancel();
    api.server.join().await;
    workflows.join().await;
    gate.join().await;
    runner.join().await;
    let _ = std::fs::remove_file(ready_path(&data_dir));
    drop(lock);
    println!("keyshift stopped");
    Ok(())
}

/// SIGINT and SIGTERM, listened to from the start of `up`: a signal that
/// arrives before the handlers exist would kill the node with the default
/// action and orphan its servers.
struct ShutdownSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

async fn up_detached(
    cluster: &Path,
    file: &ClusterFile,
    timeout: Duration,
    json_logs: bool,
) -> Result<()> {
    let data_dir = file.data_dir();
    if let Some(node) = running_node(file) {
        bail!(
            "a keyshift cluster is already running from {} (pid {}); stop it with `keyshift down`",
            data_dir.display(),
            node.pid
        );
    }
    let exe = std::env::current_exe().context("finding the keyshift binary")?;
    let cluster_abs = std::fs::canonicalize(cluster)
        .with_context(|| format!("resolving {}", cluster.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path(&data_dir))
        .with_context(|| format!("opening {}", log_path(&data_dir).display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--cluster")
        .arg(&cluster_abs)
        .arg("up")
        .arg("--timeout")
        .arg(format!("{}s", timeout.as_secs().max(1)))
        .args(if json_logs {
            &["--log-format", "json"][..]
        } else {
            &[]
        })
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the node from the
    // terminal's process group so the shell's Ctrl-C does not reach it.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the background keyshift")?;
    let pid = child.id();
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "keyshift up exited ({status}) before the cluster was ready; the end of {}:\n{}",
                log_path(&data_dir).display(),
                tail(&log_path(&data_dir), 15)
            );
        }
        if let Some(node) = running_node(file)
            && node.pid == pid
        {
            println!(
                "keyshift is up in the background (pid {pid}): {} managed tablet(s), data in {}",
                node.tablets,
                data_dir.display()
            );
            if let Some(addr) = &node.gate {
                print_gate_hint(file, addr, node.gate_socket.as_deref());
            }
            if let Some(addr) = &node.api {
                print_api_hint(addr, &keyshift_api::token_path(&data_dir));
            }
            println!("  logs: {}", log_path(&data_dir).display());
            println!("  keyshift status   shows keyspaces, shards and tablets");
            println!("  keyshift down     stops it");
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            bail!(
                "the cluster was not ready within {timeout:?}; stopped it. The end of {}:\n{}",
                log_path(&data_dir).display(),
                tail(&log_path(&data_dir), 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Api {
    server: keyshift_api::ApiServer,
    token_path: PathBuf,
}

/// The API token (created with mode 0600 on the first `up`) and the server.
async fn start_api(
    file: &ClusterFile,
    topo: std::sync::Arc<dyn keyshift_topo::Topo>,
    metrics: Vec<keyshift_api::MetricsSource>,
    cancel: CancellationToken,
) -> Result<Api> {
    let addr: std::net::SocketAddr = file
        .api
        .listen
        .parse()
        .with_context(|| format!("[api] listen = {:?}", file.api.listen))?;
    let (token, token_path) = keyshift_api::load_or_create(&file.data_dir())?;
    let server = keyshift_api::start(topo, addr, token, metrics, cancel).await?;
    Ok(Api { server, token_path })
}

/// Where the dashboard is and how to call the API; never the token itself
/// (stdout of a detached node goes to its log).
fn print_api_hint(addr: &str, token_path: &Path) {
    println!(
        "  dashboard: http://{addr}/   (sign in with the token in {})",
        token_path.display()
    );
    println!(
        "  api: curl -H \"Authorization: Bearer $(cat {})\" http://{addr}/api/v1/workflows",
        token_path.display()
    );
    println!("  metrics (Prometheus, same token): http://{addr}/metrics");
}

/// How to connect, over TCP and over the unix socket, with the first gate
/// user as the example.
fn print_gate_hint(file: &ClusterFile, addr: &str, socket: Option<&Path>) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "15306"));
    match file.gate.users.first() {
        Some(u) => {
            println!(
                "  gate: {addr}   mariadb -h{host} -P{port} -u{} -p   (users: [[gate.user]] in {})",
                u.name,
                file.path.display()
            );
            if let Some(s) = socket {
                println!(
                    "  gate socket: {}   mariadb -S {} -u{} -p   (same host, faster)",
                    s.display(),
                    s.display(),
                    u.name
                );
            }
        }
        None => {
            println!(
                "  gate: {addr}   (no [[gate.user]] in {}: add one to connect)",
                file.path.display()
            );
            if let Some(s) = socket {
                println!("  gate socket: {}", s.display());
            }
        }
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub async fn down(cluster: &Path, timeout: Duration) -> Result<()> {
    let file = ClusterFile::load(cluster)?;
    let data_dir = file.data_dir();
    if !data_dir.exists() || try_lock(&data_dir)?.is_some() {
        bail!("no keyshift cluster is running from {}", data_dir.display());
    }
    let Some(pid) = holder_pid(&data_dir) else {
        bail!(
            "a keyshift process holds {} but its pid is unreadable; stop it by hand",
            lock_path(&data_dir).display()
        );
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("signalling keyshift (pid {pid})"))?;
    let deadline = Instant::now() + timeout;
    // The lock is released just before the process exits; wait for both, so
    // that when `down` returns nothing of the node is left.
    let alive = || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
    };
    while Instant::now() < deadline {
        if try_lock(&data_dir)?.is_some() && !alive() {
            println!("keyshift stopped (pid {pid})");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "keyshift (pid {pid}) is still stopping after {timeout:?}; see {}",
        log_path(&data_dir).display()
    )
}
