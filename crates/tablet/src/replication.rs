//! Replica tablets: managed `mariadbd` servers that replicate from their
//! shard's primary with MariaDB's GTID replication, so that `@replica` reads
//! have somewhere to go.
//!
//! # How a replica gets the data the primary already has
//!
//! A new replica is *seeded* from a consistent logical copy of the primary,
//! not left to replay the primary's binlogs from the start: the primary may
//! have purged its oldest binlogs (or started life as an external server with
//! data), and replaying all history is slow. [`ensure_replica`] pipes
//!
//! ```text
//! mariadb-dump --single-transaction --gtid --master-data=1 --all-databases
//!              --ignore-database=mysql --ignore-database=sys   (on the primary)
//!   | mariadb --init-command='SET sql_log_bin=0'                 (on the replica)
//! ```
//!
//! The dump reads every table in one consistent snapshot and ends with
//! `SET GLOBAL gtid_slave_pos='<the GTID position of that snapshot>'`, so
//! replication started afterwards with `MASTER_USE_GTID=slave_pos` applies
//! exactly the transactions the copy lacks: nothing is lost and nothing is
//! applied twice. `mysql` is left out because it holds the replica's own
//! admin user (other credentials than the primary's); `sys` is the server's
//! own. Users created on the primary later still replicate.
//!
//! Before loading, the replica is emptied (replication reset, every non-system
//! database dropped, binlog reset), so a seed interrupted halfway (a crash, a
//! primary restart) is simply done again. A replica counts as seeded once it
//! has a replication source (`Master_Host` in `SHOW SLAVE STATUS`), which is
//! configured only after the load succeeded.
//!
//! The load runs with `sql_log_bin=0` and the replica's binlog is reset first
//! because replicas run with `gtid_strict_mode` and `log_slave_updates`: a
//! GTID the replica generated itself in domain 0 would be out of order with
//! the primary's next one and stop replication.
//!
//! # Staying correct across restarts
//!
//! [`ensure_replica`] is idempotent; the node calls it whenever the replica
//! (re)starts, whenever the topo changes, and every few seconds:
//!
//! * never seeded: seed, `CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos`,
//!   `START SLAVE`;
//! * the configured source differs from the primary's record (the primary
//!   restarted on another port, or the shard has another primary): re-point;
//!   the position is `gtid_slave_pos`, so nothing is skipped;
//! * stopped without an error: `START SLAVE`. Replicas run with
//!   `--skip-slave-start`, so that after a restart a replica never reconnects
//!   to an address (possibly reused by another server) before its primary's
//!   record has been checked;
//! * broken (the SQL thread stopped on an error, or the IO thread gave up):
//!   left alone and reported by `keyshift status`, since reseeding on its own
//!   would hide a data problem.
//!
//! Replication is crash safe: the applied position lives in the InnoDB table
//! `mysql.gtid_slave_pos`, committed with each applied transaction, and the
//! relay logs are discarded whenever GTID slave threads start, so a replica
//! killed with SIGKILL resumes exactly where its last commit left it.
//! Replicas run with `read_only=ON` (a server flag, so it survives
//! restarts); the replication threads and keyshift's admin user bypass it.
//! The replica connects to the primary with the primary's admin credentials.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use serde::{Deserialize, Serialize};

use crate::mysqld::{sql_string, write_private};
use crate::{ClientTools, Endpoint};

/// Databases a seed neither copies nor drops: the server's own.
const SYSTEM_DATABASES: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];
/// How long a seed may take before it is abandoned (and redone later).
const SEED_TIMEOUT: Duration = Duration::from_secs(3600);
/// Seconds between reconnection attempts of the replica's IO thread: short,
/// so that a restarted primary is followed within a second or two.
const CONNECT_RETRY_SECS: u32 = 1;
/// MySQL/MariaDB error: access denied. A source that rejects the replica's
/// credentials gets them again from the primary's record.
const ER_ACCESS_DENIED: u32 = 1045;

/// Why a replica could not be brought to replicate. Callers retry the
/// transient ones and report the others.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot reach the replica at {addr}: {source}")]
    ReplicaUnreachable {
        addr: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("cannot reach the primary at {addr}: {source}")]
    PrimaryUnreachable {
        addr: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error(
        "seeding the replica from the primary at {primary} failed ({status}); it will be emptied and seeded again. Output:\n{output}"
    )]
    SeedFailed {
        primary: String,
        status: String,
        output: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReplicationError {
    /// Whether the same call may succeed later without an operator: servers
    /// restart, seeds are redone from scratch.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ReplicationError::Io { .. })
    }

    fn sql(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> ReplicationError {
        let context = context.into();
        move |source| ReplicationError::Sql { context, source }
    }
}

/// What `SHOW SLAVE STATUS` says about a replica, for `keyshift status` and
/// for [`ensure_replica`]'s decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub source_host: String,
    pub source_port: u16,
    pub source_user: String,
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: bool,
    /// `Seconds_Behind_Master`; absent while a thread is not running.
    pub seconds_behind: Option<u64>,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// MariaDB `@@gtid_slave_pos`: the last transaction applied from the
    /// source, per domain.
    pub gtid_slave_pos: Option<String>,
}

/// The one-word verdict on a replica's replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationState {
    Replicating,
    /// The IO thread is (re)connecting to the source, e.g. while the
    /// primary restarts.
    Connecting,
    /// Both threads stopped without an error.
    Stopped,
    /// A thread stopped on an error; it needs an operator.
    Broken,
}

impl std::fmt::Display for ReplicationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationState::Replicating => "replicating",
            ReplicationState::Connecting => "connecting",
            ReplicationState::Stopped => "stopped",
            ReplicationState::Broken => "BROKEN",
        })
    }
}

impl ReplicationStatus {
    pub fn state(&self) -> ReplicationState {
        if !self.sql_running && (self.last_sql_errno != 0 || !self.last_sql_error.is_empty()) {
            return ReplicationState::Broken;
        }
        let io_stopped = self.io_running.eq_ignore_ascii_case("no");
        if io_stopped && (self.last_io_errno != 0 || !self.last_io_error.is_empty()) {
            return ReplicationState::Broken;
        }
        if self.io_running.eq_ignore_ascii_case("connecting") {
            return ReplicationState::Connecting;
        }
        if self.io_running.eq_ignore_ascii_case("yes") && self.sql_running {
            return ReplicationState::Replicating;
        }
        ReplicationState::Stopped
    }

    /// What is wrong, in words an operator can act on; None while it
    /// replicates.
    pub fn problem(&self) -> Option<String> {
        let source = format!("{}:{}", self.source_host, self.source_port);
        match self.state() {
            ReplicationState::Replicating => None,
            ReplicationState::Broken if !self.sql_running && !self.last_sql_error.is_empty() => {
                Some(format!(
                    "replication from {source} is broken: applying stopped on error {}: {}. Fix the cause and run START SLAVE on the replica, or remove the tablet and add a new one (it is seeded afresh)",
                    self.last_sql_errno, self.last_sql_error
                ))
            }
            ReplicationState::Broken => Some(format!(
                "replication from {source} is broken: reading the primary's binlog stopped on error {}: {}. Fix the cause and run START SLAVE on the replica, or remove the tablet and add a new one (it is seeded afresh)",
                self.last_io_errno,
                if self.last_io_error.is_empty() {
                    &self.last_sql_error
                } else {
                    &self.last_io_error
                }
            )),
            ReplicationState::Connecting if !self.last_io_error.is_empty() => Some(format!(
                "connecting to the primary {source}: {}",
                self.last_io_error
            )),
            ReplicationState::Connecting => Some(format!("connecting to the primary {source}")),
            ReplicationState::Stopped => Some(format!(
                "replication from {source} is stopped (a running keyshift restarts it)"
            )),
        }
    }

    /// One line for `keyshift status`.
    pub fn summary(&self) -> String {
        match self.problem() {
            Some(p) => format!("{}: {p}", self.state()),
            None => format!(
                "replicating from {}:{}, {} behind",
                self.source_host,
                self.source_port,
                self.seconds_behind
                    .map(|s| format!("{s} s"))
                    .unwrap_or_else(|| "? s".to_string())
            ),
        }
    }

    /// Whether replication is configured against exactly this source.
    fn points_at(&self, primary: &Endpoint) -> bool {
        self.source_host == primary.host
            && self.source_port == primary.port
            && self.source_user == primary.user
    }
}

/// Reads a replica's replication status; None when no source is configured.
/// Works on MariaDB and MySQL (whose 8.4 only knows `SHOW REPLICA STATUS`
/// with `Source_*` columns).
pub async fn replication_status(
    conn: &mut mysql_async::Conn,
) -> Result<Option<ReplicationStatus>, mysql_async::Error> {
    let rows: Vec<Row> = match conn.query("SHOW SLAVE STATUS").await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query("SHOW REPLICA STATUS").await?
        }
        Err(e) => return Err(e),
    };
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let text = |names: &[&str]| column_text(&row, names).unwrap_or_default();
    let number = |names: &[&str]| column_text(&row, names).and_then(|s| s.trim().parse().ok());
    let status = ReplicationStatus {
        source_host: text(&["Master_Host", "Source_Host"]),
        source_port: number(&["Master_Port", "Source_Port"])
            .and_then(|p: u64| u16::try_from(p).ok())
            .unwrap_or(0),
        source_user: text(&["Master_User", "Source_User"]),
        io_running: text(&["Slave_IO_Running", "Replica_IO_Running"]),
        sql_running: text(&["Slave_SQL_Running", "Replica_SQL_Running"])
            .eq_ignore_ascii_case("yes"),
        seconds_behind: number(&["Seconds_Behind_Master", "Seconds_Behind_Source"]),
        last_io_errno: number(&["Last_IO_Errno"])
            .and_then(|n: u64| u32::try_from(n).ok())
            .unwrap_or(0),
        last_io_error: text(&["Last_IO_Error"]),
        last_sql_errno: number(&["Last_SQL_Errno"])
            .and_then(|n: u64| u32::try_from(n).ok())
            .unwrap_or(0),
        last_sql_error: text(&["Last_SQL_Error"]),
        gtid_slave_pos: None,
    };
    if status.source_host.is_empty() {
        return Ok(None);
    }
    Ok(Some(status))
}

/// The value of the first of `names` that the row has, as text; None for
/// NULL or a missing column.
fn column_text(row: &Row, names: &[&str]) -> Option<String> {
    let columns = row.columns_ref();
    let idx = names
        .iter()
        .find_map(|n| columns.iter().position(|c| c.name_str() == *n))?;
    match row.as_ref(idx)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// What [`ensure_replica`] needs: both servers and the tools that copy one
/// into the other.
#[derive(Clone, Debug)]
pub struct ReplicaSetup<'a> {
    pub tools: &'a ClientTools,
    pub replica: &'a Endpoint,
    pub primary: &'a Endpoint,
    /// A directory only this user can read (the replica's private tmpdir):
    /// the client tools read their credentials from files there.
    pub scratch_dir: &'a Path,
}

/// What [`ensure_replica`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// Copied the primary's data and started replicating.
    Seeded,
    /// Pointed replication at the primary's current address.
    Repointed,
    /// Restarted replication that was stopped without an error.
    Started,
    /// Replication stopped on an error; left for an operator.
    Broken,
    /// Already replicating from the primary, or connecting to it.
    Unchanged,
}

/// Brings a replica to replicate from `primary`, seeding it first if it
/// never was; see the module doc for every case. Idempotent.
pub async fn ensure_replica(setup: &ReplicaSetup<'_>) -> Result<EnsureOutcome, ReplicationError> {
    let mut conn = connect_replica(setup.replica).await?;
    let status = replication_status(&mut conn)
        .await
        .map_err(ReplicationError::sql(
            "reading the replica's SHOW SLAVE STATUS",
        ))?;
    // Checked before set: setting read_only waits for every open write
    // transaction, the replication thread's included.
    let read_only: Option<i64> = conn
        .query_first("SELECT @@GLOBAL.read_only")
        .await
        .map_err(ReplicationError::sql("reading read_only on the replica"))?;
    if read_only != Some(1) {
        conn.query_drop("SET GLOBAL read_only = ON")
            .await
            .map_err(ReplicationError::sql("setting read_only on the replica"))?;
    }
    let outcome = match status {
        None => {
            seed(setup, &mut conn).await?;
            point_at(&mut conn, setup.primary).await?;
            EnsureOutcome::Seeded
        }
        Some(s)
            if !s.points_at(setup.primary)
                || (s.last_io_errno == ER_ACCESS_DENIED
                    && s.state() != ReplicationState::Replicating) =>
        {
            tracing::info!(
                from = %format!("{}:{}", s.source_host, s.source_port),
                to = %format!("{}:{}", setup.primary.host, setup.primary.port),
                "re-pointing the replica at its primary"
            );
            point_at(&mut conn, setup.primary).await?;
            EnsureOutcome::Repointed
        }
        Some(s) => match s.state() {
            ReplicationState::Stopped => {
                conn.query_drop("START SLAVE")
                    .await
                    .map_err(ReplicationError::sql("starting replication"))?;
                EnsureOutcome::Started
            }
            ReplicationState::Broken => EnsureOutcome::Broken,
            ReplicationState::Replicating | ReplicationState::Connecting => {
                EnsureOutcome::Unchanged
            }
        },
    };
    let _ = conn.disconnect().await;
    Ok(outcome)
}

async fn connect_replica(ep: &Endpoint) -> Result<mysql_async::Conn, ReplicationError> {
    ep.connect()
        .await
        .map_err(|source| ReplicationError::ReplicaUnreachable {
            addr: format!("{}:{}", ep.host, ep.port),
            source,
        })
}

/// `CHANGE MASTER TO` the primary at the position the replica has applied,
/// then `START SLAVE`.
async fn point_at(
    conn: &mut mysql_async::Conn,
    primary: &Endpoint,
) -> Result<(), ReplicationError> {
    conn.query_drop("STOP SLAVE")
        .await
        .map_err(ReplicationError::sql("stopping replication"))?;
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = {CONNECT_RETRY_SECS}",
        sql_string(&primary.host),
        primary.port,
        sql_string(&primary.user),
        sql_string(&primary.password),
    );
    conn.query_drop(change)
        .await
        .map_err(ReplicationError::sql(
            "configuring replication (CHANGE MASTER TO)",
        ))?;
    conn.query_drop("START SLAVE")
        .await
        .map_err(ReplicationError::sql("starting replication"))?;
    Ok(())
}

/// Empties the replica and loads a consistent copy of the primary into it,
/// leaving `gtid_slave_pos` at the copy's position.
async fn seed(
    setup: &ReplicaSetup<'_>,
    conn: &mut mysql_async::Conn,
) -> Result<(), ReplicationError> {
    let primary = setup.primary;
    // Fail early, and with the primary named, when it is not up yet.
    primary
        .connect()
        .await
        .map_err(|source| ReplicationError::PrimaryUnreachable {
            addr: format!("{}:{}", primary.host, primary.port),
            source,
        })?
        .disconnect()
        .await
        .ok();
    tracing::info!(
        primary = %format!("{}:{}", primary.host, primary.port),
        replica = %format!("{}:{}", setup.replica.host, setup.replica.port),
        "seeding the replica from its primary"
    );
    let started = std::time::Instant::now();
    empty_replica(conn).await?;

    let mut scratch = Scratch::new(setup.scratch_dir);
    let source_cnf = scratch.defaults_file("keyshift-seed-source.cnf", primary)?;
    let target_cnf = scratch.defaults_file("keyshift-seed-target.cnf", setup.replica)?;
    let mut dump = tokio::process::Command::new(&setup.tools.dump);
    dump.arg(format!("--defaults-file={}", source_cnf.display()))
        .args([
            "--protocol=TCP",
            "--single-transaction",
            "--gtid",
            "--master-data=1",
            "--all-databases",
            "--ignore-database=mysql",
            "--ignore-database=sys",
            "--routines",
            "--triggers",
            "--hex-blob",
            "--skip-dump-date",
            "--max-allowed-packet=1G",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_us(&mut dump);
    let mut dump = dump.spawn().map_err(|e| ReplicationError::Io {
        context: format!("running {}", setup.tools.dump.display()),
        source: e,
    })?;
    let dump_out: Stdio = dump
        .stdout
        .take()
        .ok_or_else(|| ReplicationError::Io {
            context: "reading mariadb-dump's output".to_string(),
            source: std::io::Error::other("no stdout pipe"),
        })?
        .try_into()
        .map_err(|e| ReplicationError::Io {
            context: "piping mariadb-dump into mariadb".to_string(),
            source: e,
        })?;
    let mut load = tokio::process::Command::new(&setup.tools.client);
    load.arg(format!("--defaults-file={}", target_cnf.display()))
        .args([
            "--protocol=TCP",
            "--batch",
            "--max-allowed-packet=1G",
            "--init-command=SET sql_log_bin = 0",
        ])
        .stdin(dump_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_us(&mut load);
    let load = load.spawn().map_err(|e| ReplicationError::Io {
        context: format!("running {}", setup.tools.client.display()),
        source: e,
    })?;
    let both = async { tokio::join!(dump.wait_with_output(), load.wait_with_output()) };
    let failed = |status: String, output: String| ReplicationError::SeedFailed {
        primary: format!("{}:{}", primary.host, primary.port),
        status,
        output,
    };
    let (dumped, loaded) = tokio::time::timeout(SEED_TIMEOUT, both)
        .await
        .map_err(|_| failed(format!("not done after {SEED_TIMEOUT:?}"), String::new()))?;
    let dumped = dumped.map_err(|e| ReplicationError::Io {
        context: "waiting for mariadb-dump".to_string(),
        source: e,
    })?;
    let loaded = loaded.map_err(|e| ReplicationError::Io {
        context: "waiting for mariadb".to_string(),
        source: e,
    })?;
    if !dumped.status.success() {
        return Err(failed(
            format!("mariadb-dump {}", dumped.status),
            tool_errors(&dumped.stderr),
        ));
    }
    if !loaded.status.success() {
        return Err(failed(
            format!("mariadb {}", loaded.status),
            tool_errors(&loaded.stderr),
        ));
    }
    let pos: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_slave_pos")
        .await
        .map_err(ReplicationError::sql("reading the seeded position"))?;
    tracing::info!(
        gtid_slave_pos = pos.as_deref().unwrap_or(""),
        elapsed = ?started.elapsed(),
        "seeded the replica"
    );
    Ok(())
}

/// SIGKILL the seeding tools if keyshift dies: a loader that outlived it
/// would keep writing into the replica while the next keyshift seeds it
/// again, and could end by setting its stale `gtid_slave_pos`. (The signal
/// follows the thread that spawned the tool; runtime worker threads live as
/// long as the runtime.)
fn die_with_us(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only makes an
    // async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Removes everything a previous (possibly partial) seed or the replica's own
/// first start left, so that the load starts from nothing.
async fn empty_replica(conn: &mut mysql_async::Conn) -> Result<(), ReplicationError> {
    for q in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET SESSION sql_log_bin = 0",
    ] {
        conn.query_drop(q)
            .await
            .map_err(ReplicationError::sql(format!(
                "preparing the replica ({q})"
            )))?;
    }
    let databases: Vec<String> = conn
        .query("SHOW DATABASES")
        .await
        .map_err(ReplicationError::sql("listing the replica's databases"))?;
    for db in databases {
        if SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str()) {
            continue;
        }
        conn.query_drop(format!("DROP DATABASE `{}`", db.replace('`', "``")))
            .await
            .map_err(ReplicationError::sql(format!(
                "dropping database `{db}` on the replica before seeding"
            )))?;
    }
    for q in [
        "RESET MASTER",
        "SET GLOBAL gtid_slave_pos = ''",
        "SET SESSION sql_log_bin = 1",
    ] {
        conn.query_drop(q)
            .await
            .map_err(ReplicationError::sql(format!(
                "preparing the replica ({q})"
            )))?;
    }
    Ok(())
}

/// The lines of a client tool's stderr that say what went wrong.
fn tool_errors(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("[Warning]") && !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Credentials files for the client tools (passwords never appear on a
/// command line, where `ps` shows them), removed on drop.
struct Scratch<'a> {
    dir: &'a Path,
    files: Vec<PathBuf>,
}

impl<'a> Scratch<'a> {
    fn new(dir: &'a Path) -> Scratch<'a> {
        Scratch {
            dir,
            files: Vec::new(),
        }
    }

    fn defaults_file(&mut self, name: &str, ep: &Endpoint) -> Result<PathBuf, ReplicationError> {
        let path = self.dir.join(name);
        let text = format!(
            "[client]\nhost={}\nport={}\nuser={}\npassword={}\n",
            option_value(&ep.host),
            ep.port,
            option_value(&ep.user),
            option_value(&ep.password)
        );
        std::fs::create_dir_all(self.dir)
            .and_then(|()| write_private(&path, text.as_bytes()))
            .map_err(|e| ReplicationError::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })?;
        self.files.push(path.clone());
        Ok(path)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A value for a MySQL option file: double-quoted, with the escapes the
/// option-file reader understands.
fn option_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ReplicationStatus {
        ReplicationStatus {
            source_host: "127.0.0.1".into(),
            source_port: 4000,
            source_user: "keyshift".into(),
            io_running: "Yes".into(),
            sql_running: true,
            seconds_behind: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn states_follow_the_threads_and_their_errors() {
        let s = status();
        assert_eq!(s.state(), ReplicationState::Replicating);
        assert_eq!(s.problem(), None);
        assert_eq!(s.summary(), "replicating from 127.0.0.1:4000, 0 s behind");

        let broken = ReplicationStatus {
            sql_running: false,
            last_sql_errno: 1062,
            last_sql_error: "Duplicate entry '1' for key 'PRIMARY'".into(),
            seconds_behind: None,
            ..status()
        };
        assert_eq!(broken.state(), ReplicationState::Broken);
        let msg = broken.summary();
        assert!(msg.starts_with("BROKEN"), "{msg}");
        assert!(
            msg.contains("1062") && msg.contains("Duplicate entry"),
            "{msg}"
        );

        let gave_up = ReplicationStatus {
            io_running: "No".into(),
            last_io_errno: 1236,
            last_io_error: "Could not find GTID state requested by slave".into(),
            ..status()
        };
        assert_eq!(gave_up.state(), ReplicationState::Broken);
        assert!(gave_up.summary().contains("1236"), "{}", gave_up.summary());

        let connecting = ReplicationStatus {
            io_running: "Connecting".into(),
            last_io_errno: 2003,
            last_io_error: "error connecting to master".into(),
            ..status()
        };
        assert_eq!(connecting.state(), ReplicationState::Connecting);
        assert!(connecting.summary().contains("error connecting"));

        let stopped = ReplicationStatus {
            io_running: "No".into(),
            sql_running: false,
            ..status()
        };
        assert_eq!(stopped.state(), ReplicationState::Stopped);
    }

    #[test]
    fn a_source_is_recognised_by_address_and_user() {
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 4000,
            user: "keyshift".into(),
            password: "x".into(),
            tls: None,
        };
        assert!(status().points_at(&ep));
        assert!(!status().points_at(&Endpoint {
            port: 4001,
            ..ep.clone()
        }));
    }

    #[test]
    fn option_values_are_quoted() {
        assert_eq!(option_value(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
