use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::{Endpoint, MariadbBinaries, TabletError, procfs, spawn};

/// How long a server may take to accept its admin user after (re)start.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a free port is tried when another process grabs it first.
const PORT_ATTEMPTS: u32 = 5;
/// Unix socket paths longer than this do not fit `sockaddr_un` (108 bytes
/// with the terminating NUL, and some systems allow less).
const MAX_SOCKET_PATH: usize = 100;
/// Lines of the error log quoted in startup errors.
const LOG_TAIL_LINES: usize = 20;

const PID_FILE: &str = "mariadbd.pid";
const ERROR_LOG: &str = "error.log";
const SOCKET: &str = "mysqld.sock";
/// Records the server keyshift started here, so that a later keyshift can
/// take it over after its own crash instead of refusing the datadir.
const OWNER_FILE: &str = "keyshift-owner.json";
/// Present while a first initialisation runs; found at start, it means that
/// initialisation was interrupted and its leftovers may be wiped.
const INIT_MARKER: &str = ".keyshift-initializing";
const BOOTSTRAP_SQL: &str = ".keyshift-bootstrap.sql";
/// Private temp dir. mariadbd deletes every `#sql*` file in its tmpdir when
/// it starts, so servers sharing /tmp break each other's temporary tables
/// (concurrent mariadb-install-db runs fail with "Can't find file
/// '/tmp/#sql-temptable-...'"). Hidden from SHOW DATABASES by
/// --ignore-db-dirs.
const TMP_DIR: &str = ".tmp";
/// Small enough to create quickly and keep test datadirs light, large enough
/// for steady replication work (the 10.11 default is 96M).
const REDO_LOG_SIZE: &str = "32M";

/// Everything needed to run one managed server. The datadir belongs to
/// keyshift: socket, pid file, error log and ownership record live there too.
#[derive(Clone)]
pub struct MysqldConfig {
    pub binaries: MariadbBinaries,
    pub datadir: PathBuf,
    /// 0 picks a free loopback port; `Mysqld::port` reports the chosen one.
    pub port: u16,
    /// Must be unique among servers that replicate with each other.
    pub server_id: u32,
    /// Created at first initialisation with ALL PRIVILEGES WITH GRANT OPTION
    /// at 127.0.0.1 and localhost; a reused datadir keeps its users.
    pub admin_user: String,
    pub admin_password: String,
    /// Appended after keyshift's own flags, so they can override them.
    pub extra_args: Vec<String>,
    /// SIGKILL the server when this process dies. Only for test servers:
    /// keyshift-managed tablets must outlive a detached or crashed keyshift.
    pub die_with_parent: bool,
}

impl fmt::Debug for MysqldConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqldConfig")
            .field("binaries", &self.binaries)
            .field("datadir", &self.datadir)
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"<redacted>")
            .field("extra_args", &self.extra_args)
            .field("die_with_parent", &self.die_with_parent)
            .finish()
    }
}

impl MysqldConfig {
    /// A config with a free port, server id 1 and an `admin` user, for
    /// callers that only care about where the data lives.
    pub fn new(binaries: MariadbBinaries, datadir: impl Into<PathBuf>) -> MysqldConfig {
        MysqldConfig {
            binaries,
            datadir: datadir.into(),
            port: 0,
            server_id: 1,
            admin_user: "admin".to_string(),
            admin_password: "admin".to_string(),
            extra_args: Vec::new(),
            die_with_parent: false,
        }
    }

    pub fn error_log(&self) -> PathBuf {
        self.datadir.join(ERROR_LOG)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.datadir.join(TMP_DIR)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.datadir.join(PID_FILE)
    }

    /// The server's unix socket: in the datadir when the path is short
    /// enough for `sockaddr_un`, else a stable per-datadir path under /tmp.
    pub fn socket_path(&self) -> PathBuf {
        let in_datadir = self.datadir.join(SOCKET);
        if in_datadir.as_os_str().len() < MAX_SOCKET_PATH {
            return in_datadir;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.datadir.as_os_str().as_encoded_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        PathBuf::from(format!("/tmp/keyshift-{h:016x}.sock"))
    }

    /// The admin connection target on a given port.
    pub fn endpoint(&self, port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".to_string(),
            port,
            user: self.admin_user.clone(),
            password: self.admin_password.clone(),
            tls: None,
        }
    }

    /// The full mariadbd command line for `port`, `--no-defaults` first as
    /// mariadbd requires.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let d = |p: PathBuf| p.display().to_string();
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", d(self.datadir.clone())),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--socket={}", d(self.socket_path())),
            format!("--pid-file={}", d(self.pid_file())),
            format!("--log-error={}", d(self.error_log())),
            format!("--tmpdir={}", d(self.tmp_dir())),
            format!("--ignore-db-dirs={TMP_DIR}"),
            format!("--server-id={}", self.server_id),
            "--log-bin=binlog".to_string(),
            // Named after the hostname by default, which breaks replicas
            // when the host is renamed.
            "--relay-log=relay-bin".to_string(),
            "--binlog-format=ROW".to_string(),
            "--binlog-row-image=FULL".to_string(),
            "--binlog-row-metadata=FULL".to_string(),
            "--gtid-strict-mode=ON".to_string(),
            "--gtid-domain-id=0".to_string(),
            "--log-slave-updates".to_string(),
            "--skip-name-resolve".to_string(),
            "--innodb-buffer-pool-size=64M".to_string(),
            format!("--innodb-log-file-size={REDO_LOG_SIZE}"),
            "--innodb-buffer-pool-dump-at-shutdown=OFF".to_string(),
            "--innodb-buffer-pool-load-at-startup=OFF".to_string(),
            "--performance-schema=OFF".to_string(),
        ];
        if let Some(user) = root_user_flag() {
            args.push(user);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// mariadbd refuses to run as root unless told to, so say so when we are.
fn root_user_flag() -> Option<String> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return None;
    }
    let name = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".to_string());
    Some(format!("--user={name}"))
}

/// How a server process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    fn from_status(st: ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: st.code(),
            signal: st.signal(),
        }
    }

    const UNKNOWN: ExitInfo = ExitInfo {
        code: None,
        signal: None,
    };
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "was killed by signal {s} ({sig})"),
                Err(_) => write!(f, "was killed by signal {s}"),
            },
            // An adopted server is not our child: its status goes elsewhere.
            (None, None) => write!(f, "exited (exit status unknown)"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Ownership {
    pid: u32,
    port: u16,
    start_ticks: u64,
}

/// One running managed server: either our child or, after a keyshift crash,
/// a server an earlier keyshift started and this one adopted. Dropping it
/// leaves the server running (tablets outlive keyshift); use `stop` or
/// `kill` to end it.
pub struct Mysqld {
    config: MysqldConfig,
    port: u16,
    pid: u32,
    start_ticks: Option<u64>,
    child: Option<Child>,
    exited: Option<ExitInfo>,
}

impl fmt::Debug for Mysqld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mysqld")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("adopted", &self.child.is_none())
            .field("datadir", &self.config.datadir)
            .finish()
    }
}

impl Mysqld {
    /// Initialises the datadir if it is missing or empty (install-db, then
    /// the admin user), reuses it otherwise, starts mariadbd on 127.0.0.1 and
    /// waits until it accepts the admin user. A server that an earlier
    /// keyshift started on this datadir and that still runs is adopted.
    pub async fn start(mut cfg: MysqldConfig) -> Result<Mysqld, TabletError> {
        cfg.datadir = std::path::absolute(&cfg.datadir).map_err(|e| {
            TabletError::io(format!("resolving datadir {}", cfg.datadir.display()), e)
        })?;
        if let Some(adopted) = adopt_or_refuse(&cfg).await? {
            return Ok(adopted);
        }
        if cfg.port != 0 {
            check_port_free(cfg.port)?;
        }
        prepare_datadir(&cfg).await?;
        launch(cfg).await
    }

    /// The port the server listens on (the chosen one when config said 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The config it runs with; `port` there is the actual port.
    pub fn config(&self) -> &MysqldConfig {
        &self.config
    }

    /// Whether this server was taken over from an earlier keyshift rather
    /// than started by this one.
    pub fn adopted(&self) -> bool {
        self.child.is_none()
    }

    pub fn endpoint(&self) -> Endpoint {
        self.config.endpoint(self.port)
    }

    /// Graceful: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
    pub async fn stop(mut self) -> Result<(), TabletError> {
        if self.poll_exit().is_none() {
            self.signal(Signal::SIGTERM)?;
            if !self.wait_exit_for(STOP_TIMEOUT).await {
                tracing::warn!(pid = self.pid, "mariadbd ignored SIGTERM; sending SIGKILL");
                self.signal(Signal::SIGKILL)?;
                if !self.wait_exit_for(Duration::from_secs(10)).await {
                    return Err(TabletError::io(
                        format!("stopping mariadbd (pid {})", self.pid),
                        std::io::Error::other("it is still running 10 s after SIGKILL"),
                    ));
                }
            }
        }
        remove_owner_file(&self.config.datadir, self.pid);
        Ok(())
    }

    /// SIGKILL now, for fault tests; does not wait.
    pub fn kill(&mut self) {
        if self.poll_exit().is_none() {
            let _ = self.signal(Signal::SIGKILL);
        }
    }

    /// SIGKILL and block until the process is gone, for Drop impls that
    /// cannot await.
    pub fn kill_and_wait(&mut self) -> ExitInfo {
        self.kill();
        if let Some(child) = &mut self.child
            && self.exited.is_none()
            && let Ok(st) = child.wait()
        {
            self.exited = Some(ExitInfo::from_status(st));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(info) = self.poll_exit() {
                return info;
            }
            if Instant::now() > deadline {
                return ExitInfo::UNKNOWN;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resolves when the process exits, with how it exited. Cancel-safe.
    pub async fn wait_exit(&mut self) -> ExitInfo {
        loop {
            if let Some(info) = self.poll_exit() {
                return info;
            }
            let pause = if self.child.is_some() { 100 } else { 250 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    async fn wait_exit_for(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.wait_exit()).await.is_ok()
    }

    /// The exit status if the process has ended; never blocks.
    fn poll_exit(&mut self) -> Option<ExitInfo> {
        if let Some(e) = &self.exited {
            return Some(e.clone());
        }
        let info = match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(st)) => ExitInfo::from_status(st),
                Ok(None) => return None,
                Err(_) if procfs::is_alive(self.pid) => return None,
                Err(_) => ExitInfo::UNKNOWN,
            },
            None => {
                let alive = match self.start_ticks {
                    Some(t) => procfs::is_same_process(self.pid, t),
                    None => procfs::is_alive(self.pid),
                };
                if alive {
                    return None;
                }
                reap_if_our_child(self.pid)?
            }
        };
        self.exited = Some(info.clone());
        Some(info)
    }

    fn signal(&mut self, sig: Signal) -> Result<(), TabletError> {
        // An adopted pid is re-checked so that a reused pid is never hit.
        if self.child.is_none()
            && let Some(t) = self.start_ticks
            && !procfs::is_same_process(self.pid, t)
        {
            return Ok(());
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(TabletError::io(
                format!("sending {sig} to mariadbd (pid {})", self.pid),
                e.into(),
            )),
        }
    }
}

/// Collects the exit status of an adopted server that happens to be our own
/// child (a handle was forgotten); otherwise the status is not ours to know.
/// None while our child is still exiting: a multi-threaded process shows as a
/// zombie before its last thread has gone and it can be reaped.
fn reap_if_our_child(pid: u32) -> Option<ExitInfo> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    match waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitInfo {
            code: Some(code),
            signal: None,
        }),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitInfo {
            code: None,
            signal: Some(sig as i32),
        }),
        Ok(WaitStatus::StillAlive) => None,
        _ => Some(ExitInfo::UNKNOWN),
    }
}

/// Picks a free loopback port by binding port 0. Another process may take it
/// before the server binds it; `Mysqld::start` retries in that case.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

fn check_port_free(port: u16) -> Result<(), TabletError> {
    // std sets SO_REUSEADDR, as mariadbd does, so only a listener conflicts.
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(TabletError::PortInUse { port }),
        Err(e) => Err(TabletError::io(format!("binding 127.0.0.1:{port}"), e)),
    }
}

fn read_owner(datadir: &Path) -> Option<Ownership> {
    let text = std::fs::read_to_string(datadir.join(OWNER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_owner(datadir: &Path, owner: &Ownership) -> Result<(), TabletError> {
    let path = datadir.join(OWNER_FILE);
    let tmp = datadir.join(format!("{OWNER_FILE}.tmp"));
    let text = serde_json::to_string(owner)
        .map_err(|e| TabletError::io("encoding the ownership record", e.into()))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| TabletError::io(format!("writing {}", path.display()), e))
}

fn remove_owner_file(datadir: &Path, pid: u32) {
    if read_owner(datadir).is_some_and(|o| o.pid == pid) {
        let _ = std::fs::remove_file(datadir.join(OWNER_FILE));
    }
}

/// Adopts the live server this datadir's ownership record names, or refuses
/// a datadir that any other live server uses. Checked before anything runs,
/// because a second server on one datadir corrupts it.
async fn adopt_or_refuse(cfg: &MysqldConfig) -> Result<Option<Mysqld>, TabletError> {
    let datadir = &cfg.datadir;
    if let Some(owner) = read_owner(datadir)
        && procfs::is_same_process(owner.pid, owner.start_ticks)
    {
        if cfg.port != 0 && cfg.port != owner.port {
            tracing::warn!(
                datadir = %datadir.display(),
                configured = cfg.port,
                actual = owner.port,
                "adopting a running mariadbd that listens on another port than configured"
            );
        }
        tracing::info!(pid = owner.pid, port = owner.port, datadir = %datadir.display(), "adopting running mariadbd");
        let mut config = cfg.clone();
        config.port = owner.port;
        let mut m = Mysqld {
            config,
            port: owner.port,
            pid: owner.pid,
            start_ticks: Some(owner.start_ticks),
            child: None,
            exited: None,
        };
        wait_ready(&mut m, 0, false).await?;
        return Ok(Some(m));
    }
    let from_pid_file = std::fs::read_to_string(cfg.pid_file())
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&pid| procfs::is_alive(pid) && procfs::is_mysql_server(pid));
    let holder = from_pid_file.or_else(|| procfs::innodb_lock_holder(datadir));
    match holder {
        Some(pid) => Err(TabletError::DatadirInUse {
            datadir: datadir.clone(),
            pid,
        }),
        None => Ok(None),
    }
}

/// Runs the first initialisation when the datadir is new, so that a fresh
/// tablet needs nothing but a path. A failed or interrupted initialisation
/// leaves nothing behind.
async fn prepare_datadir(cfg: &MysqldConfig) -> Result<(), TabletError> {
    let datadir = &cfg.datadir;
    let existed = datadir.exists();
    if existed {
        if !datadir.is_dir() {
            return Err(TabletError::DatadirNotMariadb {
                datadir: datadir.clone(),
            });
        }
        if datadir.join(INIT_MARKER).exists() {
            tracing::warn!(datadir = %datadir.display(), "an earlier initialisation was interrupted; starting over");
            clear_dir(datadir)
                .map_err(|e| TabletError::io(format!("clearing {}", datadir.display()), e))?;
        } else if datadir.join("mysql").is_dir() {
            return Ok(());
        } else if !is_empty_dir(datadir)? {
            return Err(TabletError::DatadirNotMariadb {
                datadir: datadir.clone(),
            });
        }
    }
    std::fs::create_dir_all(datadir)
        .map_err(|e| TabletError::io(format!("creating datadir {}", datadir.display()), e))?;
    let result = initialise(cfg).await;
    if result.is_err() {
        let cleanup = if existed {
            clear_dir(datadir)
        } else {
            std::fs::remove_dir_all(datadir)
        };
        if let Err(e) = cleanup {
            tracing::warn!(datadir = %datadir.display(), error = %e, "cannot remove the partial datadir");
        }
    }
    result
}

async fn initialise(cfg: &MysqldConfig) -> Result<(), TabletError> {
    let datadir = &cfg.datadir;
    let marker = datadir.join(INIT_MARKER);
    std::fs::write(&marker, b"")
        .map_err(|e| TabletError::io(format!("writing {}", marker.display()), e))?;
    std::fs::create_dir_all(cfg.tmp_dir())
        .map_err(|e| TabletError::io(format!("creating {}", cfg.tmp_dir().display()), e))?;
    let sql_path = datadir.join(BOOTSTRAP_SQL);
    write_private(
        &sql_path,
        bootstrap_sql(&cfg.admin_user, &cfg.admin_password).as_bytes(),
    )
    .map_err(|e| TabletError::io(format!("writing {}", sql_path.display()), e))?;

    let mut cmd = tokio::process::Command::new(&cfg.binaries.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--extra-file={}", sql_path.display()))
        .arg(format!("--tmpdir={}", cfg.tmp_dir().display()))
        .arg(format!("--ignore-db-dirs={TMP_DIR}"))
        .arg("--innodb-buffer-pool-size=64M")
        // As the server will run, so its first start need not resize the redo log.
        .arg(format!("--innodb-log-file-size={REDO_LOG_SIZE}"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(user) = root_user_flag() {
        cmd.arg(user);
    }
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await;
    let _ = std::fs::remove_file(&sql_path);
    let failed = |status: String, text: String| TabletError::InitFailed {
        datadir: datadir.clone(),
        status,
        output: install_db_errors(&text),
    };
    let output = match output {
        Err(_) => return Err(failed("timed out after 120 s".into(), String::new())),
        Ok(Err(e)) => {
            return Err(TabletError::Spawn {
                binary: cfg.binaries.install_db.clone(),
                source: e,
            });
        }
        Ok(Ok(o)) => o,
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(failed(
            ExitInfo::from_status(output.status).to_string(),
            text,
        ));
    }
    std::fs::remove_file(&marker)
        .map_err(|e| TabletError::io(format!("removing {}", marker.display()), e))?;
    tracing::info!(datadir = %datadir.display(), elapsed = ?started.elapsed(), "initialised datadir");
    Ok(())
}

/// SQL run once at initialisation: drop the passwordless network root
/// accounts install-db creates, and create the admin user.
fn bootstrap_sql(user: &str, password: &str) -> String {
    let u = sql_string(user);
    let p = sql_string(password);
    let mut sql = String::from(
        "FLUSH PRIVILEGES;\n\
         DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';\n\
         DELETE FROM mysql.proxies_priv WHERE User = 'root' AND Host <> 'localhost';\n\
         FLUSH PRIVILEGES;\n",
    );
    for host in ["127.0.0.1", "localhost"] {
        sql.push_str(&format!(
            "CREATE OR REPLACE USER {u}@'{host}' IDENTIFIED BY {p};\n\
             GRANT ALL PRIVILEGES ON *.* TO {u}@'{host}' WITH GRANT OPTION;\n"
        ));
    }
    sql
}

/// A single-quoted SQL string literal (default sql_mode: backslash escapes).
pub(crate) fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

fn is_empty_dir(dir: &Path) -> Result<bool, TabletError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| TabletError::io(format!("reading datadir {}", dir.display()), e))?;
    Ok(entries.next().is_none())
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

enum LaunchError {
    /// Another process bound the port first.
    PortTaken(u16),
    Other(TabletError),
}

async fn launch(cfg: MysqldConfig) -> Result<Mysqld, TabletError> {
    let pick_free = cfg.port == 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = if pick_free {
            free_port().map_err(|e| TabletError::io("picking a free loopback port", e))?
        } else {
            check_port_free(cfg.port)?;
            cfg.port
        };
        match launch_once(&cfg, port).await {
            Ok(m) => return Ok(m),
            Err(LaunchError::PortTaken(port)) if pick_free && attempt < PORT_ATTEMPTS => {
                tracing::info!(
                    port,
                    attempt,
                    "free port was taken before mariadbd bound it; trying another"
                );
            }
            Err(LaunchError::PortTaken(port)) => return Err(TabletError::PortInUse { port }),
            Err(LaunchError::Other(e)) => return Err(e),
        }
    }
}

async fn launch_once(cfg: &MysqldConfig, port: u16) -> Result<Mysqld, LaunchError> {
    let log_path = cfg.error_log();
    let log_offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(cfg.pid_file());
    std::fs::create_dir_all(cfg.tmp_dir()).map_err(|e| {
        LaunchError::Other(TabletError::io(
            format!("creating {}", cfg.tmp_dir().display()),
            e,
        ))
    })?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| {
            LaunchError::Other(TabletError::io(
                format!("opening {}", log_path.display()),
                e,
            ))
        })?;
    let log2 = log.try_clone().map_err(|e| {
        LaunchError::Other(TabletError::io(
            format!("opening {}", log_path.display()),
            e,
        ))
    })?;
    let mut cmd = Command::new(&cfg.binaries.mariadbd);
    cmd.args(cfg.server_args(port))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let child = spawn::spawn(cmd, cfg.die_with_parent).map_err(|e| {
        LaunchError::Other(TabletError::Spawn {
            binary: cfg.binaries.mariadbd.clone(),
            source: e,
        })
    })?;
    let pid = child.id();
    let start_ticks = procfs::start_ticks(pid);
    let mut config = cfg.clone();
    config.port = port;
    let mut m = Mysqld {
        config,
        port,
        pid,
        start_ticks,
        child: Some(child),
        exited: None,
    };
    if let Some(ticks) = start_ticks {
        let owner = Ownership {
            pid,
            port,
            start_ticks: ticks,
        };
        if let Err(e) = write_owner(&cfg.datadir, &owner) {
            m.kill_and_wait();
            return Err(LaunchError::Other(e));
        }
    }
    match wait_ready(&mut m, log_offset, true).await {
        Ok(()) => {
            tracing::info!(pid, port, datadir = %cfg.datadir.display(), "mariadbd is ready");
            Ok(m)
        }
        Err(e) => {
            m.kill_and_wait();
            remove_owner_file(&cfg.datadir, pid);
            let since = read_from(&log_path, log_offset);
            if since.contains("Address already in use") || since.contains("Bind on TCP/IP port") {
                return Err(LaunchError::PortTaken(port));
            }
            Err(LaunchError::Other(e))
        }
    }
}

/// Polls real connections as the admin user until one succeeds, the
/// process exits, or STARTUP_TIMEOUT passes.
async fn wait_ready(m: &mut Mysqld, log_offset: u64, ours: bool) -> Result<(), TabletError> {
    let started = Instant::now();
    let opts = m.endpoint().opts();
    let log_path = m.config.error_log();
    let log_tail = || {
        let since = read_from(&log_path, log_offset);
        let text = if since.trim().is_empty() {
            read_from(&log_path, 0)
        } else {
            since
        };
        tail_lines(&text, LOG_TAIL_LINES)
    };
    loop {
        if let Some(info) = m.poll_exit() {
            return Err(TabletError::ExitedDuringStartup {
                status: info.to_string(),
                error_log: log_path.clone(),
                log_tail: log_tail(),
            });
        }
        match tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone()))
            .await
        {
            Ok(Ok(conn)) => {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            Ok(Err(mysql_async::Error::Server(se))) if se.code == 1045 => {
                if ours {
                    m.kill_and_wait();
                }
                return Err(TabletError::AdminRejected {
                    datadir: m.config.datadir.clone(),
                    user: m.config.admin_user.clone(),
                    message: se.message,
                });
            }
            _ => {}
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            m.kill_and_wait();
            return Err(TabletError::StartupTimeout {
                pid: m.pid,
                port: m.port,
                secs: STARTUP_TIMEOUT.as_secs(),
                error_log: log_path.clone(),
                log_tail: log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    // Only the end is ever quoted; do not load a huge log.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(256 * 1024));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// install-db ends every failure with the same page of advice; the lines
/// that say what went wrong come before it.
fn install_db_errors(text: &str) -> String {
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("[Warning]"))
        .take(LOG_TAIL_LINES)
        .collect();
    if errors.is_empty() {
        tail_lines(text, LOG_TAIL_LINES)
    } else {
        errors.join("\n")
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_strings_are_escaped() {
        assert_eq!(sql_string("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn long_datadirs_get_a_short_stable_socket() {
        let b = MariadbBinaries {
            mariadbd: "/x".into(),
            install_db: "/y".into(),
        };
        let short = MysqldConfig::new(b.clone(), "/tmp/d");
        assert_eq!(short.socket_path(), PathBuf::from("/tmp/d/mysqld.sock"));
        let long = MysqldConfig::new(b, format!("/tmp/{}", "x".repeat(120)));
        let s = long.socket_path();
        assert!(s.as_os_str().len() < MAX_SOCKET_PATH);
        assert_eq!(s, long.socket_path());
    }

    #[test]
    fn exit_info_reads_well() {
        let k = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(k.to_string(), "was killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn config_debug_hides_the_password() {
        let b = MariadbBinaries {
            mariadbd: "/x".into(),
            install_db: "/y".into(),
        };
        let mut c = MysqldConfig::new(b, "/tmp/d");
        c.admin_password = "s3cret".into();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
