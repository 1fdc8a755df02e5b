//! The embedded default backend: one SQLite file (WAL mode) shared by every keyshift process on
//! the host, e.g. the `keyshift up` server and a `keyshift keyspace create` CLI run.
//!
//! Cross-process safety comes from SQLite's file locks: every transaction is one
//! `BEGIN IMMEDIATE` transaction, so writers serialise on the file and conditions are checked
//! under the write lock. Watchers in other processes learn about writes by polling the `events`
//! table (an indexed range query on `seq`); writers in this process also wake them at once.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::BoxStream;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::watch::{self, Cursor, EventSource};
use crate::{Cond, KeyValue, Op, Revision, Topo, TopoError, WatchEvent, txn};

/// Marks the file as ours (`PRAGMA application_id`, "KSTO"), so a foreign SQLite file is refused.
const APPLICATION_ID: i64 = 0x4B53_544F;
/// Bumped on incompatible schema changes; an older binary refuses a newer file.
const FORMAT_VERSION: i64 = 1;
/// Most events handed to a watcher per poll, bounding memory for a watcher far behind.
const BATCH: i64 = 512;
const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// Tuning knobs; the defaults suit the embedded single-host deployment.
#[derive(Clone, Debug)]
pub struct FileTopoOptions {
    /// The event log keeps at least this many newest events (at least 1)...
    pub retain_events: u64,
    /// ...and every event younger than this, so watchers that restart can resume.
    pub retain_age: Duration,
    /// How often a watcher looks for writes made by other processes.
    pub poll_interval: Duration,
    /// How long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for FileTopoOptions {
    fn default() -> Self {
        FileTopoOptions {
            retain_events: 10_000,
            retain_age: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(20),
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// The file-backed topo. Several instances (in one or many processes) may share one file.
pub struct FileTopo {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Writes go through their own connection so that reads and watch polls never queue behind
    /// a writer waiting for another process's lock.
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    notify: Notify,
    closed: AtomicBool,
    opts: FileTopoOptions,
    /// The store's revision as a watcher's poll last read it, shared by all
    /// watchers: an idle one whose cursor is already there skips its own
    /// read while the probe is younger than half a poll interval. A node has
    /// a dozen watchers polling every 20 ms; without this each one was an
    /// SQLite read on a blocking thread, hundreds a second on an idle node.
    probe: Mutex<Option<Probe>>,
    /// Held while a poll reads the store, so that watchers whose timers
    /// fire together wait for that read's probe instead of all reading.
    polling: tokio::sync::Mutex<()>,
    /// Bumped by every write made through this handle, which makes any
    /// probe taken before it stale: in-process writes reach watchers at once.
    writes: AtomicU64,
    /// SQLite reads made by watch polls (for tests and debugging).
    poll_reads: AtomicU64,
}

/// See [`Inner::probe`].
#[derive(Clone, Copy)]
struct Probe {
    /// When the read that saw `revision` started.
    at: Instant,
    revision: Revision,
    /// [`Inner::writes`] when that read started.
    writes: u64,
}

impl Inner {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> TopoError {
        backend_err(&self.path, what, e)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Runs SQLite work off the async runtime, on the chosen connection.
    async fn run<R, F>(self: &Arc<Self>, write: bool, f: F) -> Result<R, TopoError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<R, TopoError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(TopoError::Closed);
        }
        let inner = self.clone();
        tokio::task::spawn_blocking(move || {
            let mutex = if write { &inner.writer } else { &inner.reader };
            // A panic mid-transaction rolls the transaction back when it unwinds, so the
            // connection is still usable.
            let mut conn = mutex.lock().unwrap_or_else(|e| e.into_inner());
            f(&inner, &mut conn)
        })
        .await
        .map_err(|e| self.err("sqlite worker task failed", e))?
    }
}

fn backend_err(path: &Path, what: &str, e: impl std::fmt::Display) -> TopoError {
    TopoError::Backend(format!("file topo {}: {what}: {e}", path.display()))
}

fn not_a_topo(path: &Path, why: &str) -> TopoError {
    TopoError::Backend(format!(
        "{} is not a keyshift topo file ({why}); refusing to use it",
        path.display()
    ))
}

impl Drop for FileTopo {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl FileTopo {
    /// Opens (creating if needed, with mode 0600 since it will hold credentials) the topo file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, TopoError> {
        Self::open_with(path, FileTopoOptions::default()).await
    }

    pub async fn open_with(
        path: impl AsRef<Path>,
        opts: FileTopoOptions,
    ) -> Result<Self, TopoError> {
        let path = path.as_ref().to_path_buf();
        let inner = tokio::task::spawn_blocking(move || open_blocking(path, opts))
            .await
            .map_err(|e| TopoError::Backend(format!("file topo open task failed: {e}")))??;
        Ok(FileTopo {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// SQLite reads made by watch polls so far: shows that idle watchers
    /// share their polls (see the shared revision probe) instead of each
    /// reading the file every poll interval.
    pub fn watch_poll_reads(&self) -> u64 {
        self.inner.poll_reads.load(Ordering::Relaxed)
    }
}

fn open_blocking(path: PathBuf, mut opts: FileTopoOptions) -> Result<Inner, TopoError> {
    opts.retain_events = opts.retain_events.max(1);
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| backend_err(&path, "creating parent directories", e))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| backend_err(&path, "opening", e))?;
    let meta = file
        .metadata()
        .map_err(|e| backend_err(&path, "reading metadata", e))?;
    if !meta.is_file() {
        return Err(not_a_topo(&path, "not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| backend_err(&path, "restricting permissions to 0600", e))?;
    }
    if meta.len() > 0 {
        let mut header = [0u8; 16];
        if meta.len() < 100 || file.read_exact(&mut header).is_err() {
            return Err(not_a_topo(&path, "too short to be an SQLite database"));
        }
        if &header != b"SQLite format 3\0" {
            return Err(not_a_topo(&path, "not an SQLite database"));
        }
    }
    drop(file);

    let mut writer = connect(&path, &opts)?;
    init_schema(&path, &mut writer)?;
    let reader = connect(&path, &opts)?;
    Ok(Inner {
        path,
        writer: Mutex::new(writer),
        reader: Mutex::new(reader),
        notify: Notify::new(),
        closed: AtomicBool::new(false),
        opts,
        probe: Mutex::new(None),
        polling: tokio::sync::Mutex::new(()),
        writes: AtomicU64::new(0),
        poll_reads: AtomicU64::new(0),
    })
}

fn map_open_err(path: &Path, what: &str, e: rusqlite::Error) -> TopoError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => not_a_topo(path, "not an SQLite database"),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => not_a_topo(path, "corrupt SQLite database"),
        _ => backend_err(path, what, e),
    }
}

fn connect(path: &Path, opts: &FileTopoOptions) -> Result<Connection, TopoError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| map_open_err(path, "opening sqlite", e))?;
    conn.busy_timeout(opts.busy_timeout)
        .map_err(|e| backend_err(path, "setting busy_timeout", e))?;
    // Intent must survive power loss once a write has returned.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| map_open_err(path, "setting synchronous", e))?;
    // Records hold credentials (tablets, imported servers): overwrite what
    // is deleted instead of leaving it in free pages.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(|e| map_open_err(path, "setting secure_delete", e))?;
    // Switching to WAL needs a brief exclusive lock; when another process is doing the same at
    // the same moment SQLite may report BUSY without invoking the busy handler.
    let mut attempt = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(backend_err(
                    path,
                    "enabling WAL",
                    format!("journal_mode stays {mode}"),
                ));
            }
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && attempt < 200 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(map_open_err(path, "enabling WAL", e)),
        }
    }
    Ok(conn)
}

fn init_schema(path: &Path, conn: &mut Connection) -> Result<(), TopoError> {
    let e = |what: &'static str| move |e: rusqlite::Error| map_open_err(path, what, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e("locking for schema check"))?;
    let app_id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(e("reading application_id"))?;
    let tables: i64 = tx
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )
        .map_err(e("reading schema"))?;
    if app_id == 0 && tables == 0 {
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE kv (
                 key BLOB PRIMARY KEY,
                 value BLOB NOT NULL,
                 create_rev INTEGER NOT NULL,
                 mod_rev INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 rev INTEGER NOT NULL,
                 key BLOB NOT NULL,
                 kind INTEGER NOT NULL,
                 value BLOB,
                 create_rev INTEGER NOT NULL,
                 ts_ms INTEGER NOT NULL
             );
             CREATE INDEX events_rev ON events(rev);
             INSERT INTO meta (name, value) VALUES
                 ('format', {FORMAT_VERSION}), ('revision', 0), ('compact_rev', 0);"
        ))
        .map_err(e("creating schema"))?;
        tx.commit().map_err(e("committing schema"))?;
        return Ok(());
    }
    if app_id != APPLICATION_ID {
        return Err(not_a_topo(
            path,
            "an SQLite database that belongs to something else",
        ));
    }
    let format: Option<i64> = tx
        .query_row("SELECT value FROM meta WHERE name = 'format'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| not_a_topo(path, &format!("no readable format marker: {e}")))?;
    match format {
        Some(FORMAT_VERSION) => Ok(()),
        Some(v) => Err(backend_err(
            path,
            "checking format",
            format!("format version {v}, this binary reads {FORMAT_VERSION}"),
        )),
        None => Err(not_a_topo(path, "format marker missing")),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| to_i64(d.as_millis() as u64))
}

fn key_string(inner: &Inner, bytes: Vec<u8>) -> Result<String, TopoError> {
    String::from_utf8(bytes).map_err(|e| inner.err("stored key is not UTF-8", e))
}

fn meta_value(inner: &Inner, conn: &Connection, name: &str) -> Result<u64, TopoError> {
    let v: i64 = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(|e| inner.err(&format!("reading {name}"), e))?;
    Ok(v as u64)
}

/// Applies a validated transaction under the write lock; returns (revision, changed).
fn apply_txn(
    inner: &Inner,
    conn: &mut Connection,
    ops: Vec<Op>,
) -> Result<(Revision, bool), TopoError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| inner.err("beginning write transaction", e))?;
    for op in &ops {
        if let Op::Put { key, cond, .. } | Op::Delete { key, cond } = op {
            if matches!(cond, Cond::Any) {
                continue;
            }
            let current: Option<i64> = tx
                .prepare_cached("SELECT mod_rev FROM kv WHERE key = ?1")
                .and_then(|mut s| s.query_row([key.as_bytes()], |r| r.get(0)).optional())
                .map_err(|e| inner.err("checking condition", e))?;
            txn::check_cond(key, cond, current.map(|m| m as u64))?;
        }
    }
    let current = meta_value(inner, &tx, "revision")?;
    let rev = current + 1;
    let rev_i = to_i64(rev);
    let ts = now_ms();
    let mut changed = false;
    {
        let w = |e: rusqlite::Error| inner.err("writing", e);
        let mut get_create = tx
            .prepare_cached("SELECT create_rev FROM kv WHERE key = ?1")
            .map_err(w)?;
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev",
            )
            .map_err(w)?;
        let mut del = tx
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(w)?;
        let mut event = tx
            .prepare_cached(
                "INSERT INTO events (rev, key, kind, value, create_rev, ts_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(w)?;
        for op in ops {
            match op {
                Op::Put { key, value, .. } => {
                    let create: i64 = get_create
                        .query_row([key.as_bytes()], |r| r.get(0))
                        .optional()
                        .map_err(w)?
                        .unwrap_or(rev_i);
                    upsert
                        .execute(params![key.as_bytes(), value, create, rev_i])
                        .map_err(w)?;
                    event
                        .execute(params![rev_i, key.as_bytes(), KIND_PUT, value, create, ts])
                        .map_err(w)?;
                    changed = true;
                }
                Op::Delete { key, .. } => {
                    if del.execute([key.as_bytes()]).map_err(w)? > 0 {
                        event
                            .execute(params![
                                rev_i,
                                key.as_bytes(),
                                KIND_DELETE,
                                None::<Vec<u8>>,
                                0,
                                ts
                            ])
                            .map_err(w)?;
                        changed = true;
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let keys = keys_in_prefix(&tx, prefix.as_bytes()).map_err(w)?;
                    for key in keys {
                        del.execute([&key]).map_err(w)?;
                        event
                            .execute(params![rev_i, key, KIND_DELETE, None::<Vec<u8>>, 0, ts])
                            .map_err(w)?;
                        changed = true;
                    }
                }
            }
        }
    }
    if !changed {
        // Nothing to write: release the lock without bumping the revision, as etcd does.
        tx.rollback().map_err(|e| inner.err("rolling back", e))?;
        return Ok((current, false));
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'revision'",
        [rev_i],
    )
    .map_err(|e| inner.err("bumping revision", e))?;
    trim_events(inner, &tx, ts)?;
    tx.commit()
        .map_err(|e| inner.err("committing write transaction", e))?;
    Ok((rev, true))
}

fn keys_in_prefix(conn: &Connection, prefix: &[u8]) -> rusqlite::Result<Vec<Vec<u8>>> {
    match txn::prefix_end(prefix) {
        Some(end) => {
            let mut s = conn
                .prepare_cached("SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")?;
            s.query_map(params![prefix, end], |r| r.get(0))?.collect()
        }
        None => {
            let mut s = conn.prepare_cached("SELECT key FROM kv WHERE key >= ?1 ORDER BY key")?;
            s.query_map(params![prefix], |r| r.get(0))?.collect()
        }
    }
}

/// Drops whole revisions from the front of the event log once they are both beyond the newest
/// `retain_events` events and older than `retain_age`. Cost is proportional to what is removed.
fn trim_events(inner: &Inner, conn: &Connection, now: i64) -> Result<(), TopoError> {
    let t = |e: rusqlite::Error| inner.err("trimming event log", e);
    let max_seq: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(t)?;
    let first_kept_seq = max_seq - to_i64(inner.opts.retain_events) + 1;
    if first_kept_seq <= 1 {
        return Ok(());
    }
    let Some(count_limit): Option<i64> = conn
        .prepare_cached("SELECT rev FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1")
        .and_then(|mut s| s.query_row([first_kept_seq], |r| r.get(0)).optional())
        .map_err(t)?
    else {
        return Ok(());
    };
    let young_after = now - to_i64(inner.opts.retain_age.as_millis() as u64);
    let age_limit: Option<i64> = conn
        .prepare_cached("SELECT rev FROM events WHERE rev < ?1 AND ts_ms > ?2 ORDER BY rev LIMIT 1")
        .and_then(|mut s| {
            s.query_row([count_limit, young_after], |r| r.get(0))
                .optional()
        })
        .map_err(t)?;
    let limit = age_limit.map_or(count_limit, |a| a.min(count_limit));
    let removed = conn
        .prepare_cached("DELETE FROM events WHERE rev < ?1")
        .and_then(|mut s| s.execute([limit]))
        .map_err(t)?;
    if removed > 0 {
        conn.execute(
            "UPDATE meta SET value = max(value, ?1) WHERE name = 'compact_rev'",
            [limit - 1],
        )
        .map_err(t)?;
    }
    Ok(())
}

fn row_to_kv(
    inner: &Inner,
    key: Vec<u8>,
    value: Vec<u8>,
    create: i64,
    modr: i64,
) -> Result<KeyValue, TopoError> {
    Ok(KeyValue {
        key: key_string(inner, key)?,
        value,
        create_revision: create as u64,
        mod_revision: modr as u64,
    })
}

type RawRow = (Vec<u8>, Vec<u8>, i64, i64);

fn list_blocking(
    inner: &Inner,
    conn: &Connection,
    prefix: &str,
) -> Result<Vec<KeyValue>, TopoError> {
    let p = prefix.as_bytes();
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<RawRow> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let rows: rusqlite::Result<Vec<RawRow>> = match txn::prefix_end(p) {
        Some(end) => conn
            .prepare_cached(
                "SELECT key, value, create_rev, mod_rev FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )
            .and_then(|mut s| s.query_map(params![p, end], map)?.collect()),
        None => conn
            .prepare_cached(
                "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ?1 ORDER BY key",
            )
            .and_then(|mut s| s.query_map(params![p], map)?.collect()),
    };
    rows.map_err(|e| inner.err("listing", e))?
        .into_iter()
        .map(|(k, v, c, m)| row_to_kv(inner, k, v, c, m))
        .collect()
}

type EventRow = (i64, i64, Vec<u8>, i64, Option<Vec<u8>>, i64);

fn read_events_blocking(
    inner: &Inner,
    conn: &mut Connection,
    prefix: &str,
    mut cursor: Cursor,
) -> Result<(Vec<WatchEvent>, Cursor, Revision), TopoError> {
    let r = |e: rusqlite::Error| inner.err("reading event log", e);
    // Every watcher polls every `poll_interval` (changes made by other
    // processes are seen no other way), and nearly always nothing changed:
    // then one indexed read answers, instead of a transaction and four
    // queries. A revision no newer than `seen_rev` means no event is
    // missing, and compaction never passes the current revision.
    if cursor.seq.is_some() {
        let revision = meta_value(inner, conn, "revision")?;
        if revision <= cursor.seen_rev {
            return Ok((Vec::new(), cursor, revision));
        }
    }
    // One read transaction, so the compaction point, the revision and the events agree.
    let tx = conn.transaction().map_err(r)?;
    let compact = meta_value(inner, &tx, "compact_rev")?;
    if compact > cursor.seen_rev {
        return Err(TopoError::Compacted {
            requested: cursor.seen_rev,
            compacted: compact,
        });
    }
    let revision = meta_value(inner, &tx, "revision")?;
    let start_seq: i64 = match cursor.seq {
        Some(s) => to_i64(s),
        None => tx
            .prepare_cached(
                "SELECT seq FROM events WHERE rev <= ?1 ORDER BY rev DESC, seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([to_i64(cursor.seen_rev)], |r| r.get(0))
                    .optional()
            })
            .map_err(r)?
            .unwrap_or(0),
    };
    let head_seq: i64 = tx
        .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(r)?;
    let p = prefix.as_bytes();
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<EventRow> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    };
    let rows: Vec<EventRow> = match txn::prefix_end(p) {
        Some(end) => tx
            .prepare_cached(
                "SELECT seq, rev, key, kind, value, create_rev FROM events
                 WHERE seq > ?1 AND key >= ?2 AND key < ?3 ORDER BY seq LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![start_seq, p, end, BATCH], map)?
                    .collect()
            }),
        None => tx
            .prepare_cached(
                "SELECT seq, rev, key, kind, value, create_rev FROM events
                 WHERE seq > ?1 AND key >= ?2 ORDER BY seq LIMIT ?3",
            )
            .and_then(|mut s| s.query_map(params![start_seq, p, BATCH], map)?.collect()),
    }
    .map_err(r)?;
    drop(tx);
    let full = rows.len() as i64 >= BATCH;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = (start_seq, cursor.seen_rev);
    for (seq, rev, key, kind, value, create) in rows {
        let key = key_string(inner, key)?;
        last = (seq, rev as u64);
        out.push(if kind == KIND_PUT {
            WatchEvent::Put(KeyValue {
                key,
                value: value.unwrap_or_default(),
                create_revision: create as u64,
                mod_revision: rev as u64,
            })
        } else {
            WatchEvent::Delete {
                key,
                revision: rev as u64,
            }
        });
    }
    if full {
        // The batch may have stopped inside a revision; only the ones before it are complete.
        cursor.seq = Some(last.0 as u64);
        cursor.seen_rev = cursor.seen_rev.max(last.1.saturating_sub(1));
    } else {
        cursor.seq = Some(head_seq.max(start_seq) as u64);
        cursor.seen_rev = cursor.seen_rev.max(revision);
    }
    Ok((out, cursor, revision))
}

impl Inner {
    /// Whether a recent enough poll saw the store at or before `seen`, with
    /// no write through this handle since.
    fn probe_says_nothing_after(&self, seen: Revision) -> bool {
        let probe = *self.probe.lock().unwrap_or_else(|e| e.into_inner());
        probe.is_some_and(|p| {
            p.revision <= seen
                && p.writes == self.writes.load(Ordering::Acquire)
                && p.at.elapsed() < self.opts.poll_interval / 2
        })
    }
}

impl EventSource for Inner {
    fn notify(&self) -> &Notify {
        &self.notify
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.opts.poll_interval)
    }

    async fn read_events(
        self: Arc<Self>,
        prefix: Arc<str>,
        cursor: Cursor,
    ) -> Result<(Vec<WatchEvent>, Cursor), TopoError> {
        if cursor.seq.is_some() && self.probe_says_nothing_after(cursor.seen_rev) {
            return Ok((Vec::new(), cursor));
        }
        let _polling = self.polling.lock().await;
        if cursor.seq.is_some() && self.probe_says_nothing_after(cursor.seen_rev) {
            return Ok((Vec::new(), cursor));
        }
        let (at, writes) = (Instant::now(), self.writes.load(Ordering::Acquire));
        self.poll_reads.fetch_add(1, Ordering::Relaxed);
        let (events, cursor, revision) = self
            .run(false, move |inner, conn| {
                read_events_blocking(inner, conn, &prefix, cursor)
            })
            .await?;
        let mut probe = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        if probe.is_none_or(|p| p.at < at) {
            *probe = Some(Probe {
                at,
                revision,
                writes,
            });
        }
        Ok((events, cursor))
    }
}

#[async_trait::async_trait]
impl Topo for FileTopo {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, TopoError> {
        let key = key.to_string();
        self.inner
            .run(false, move |inner, conn| {
                let row: Option<(Vec<u8>, i64, i64)> = conn
                    .prepare_cached("SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1")
                    .and_then(|mut s| {
                        s.query_row([key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(|e| inner.err(&format!("reading key {key}"), e))?;
                Ok(row.map(|(value, c, m)| KeyValue {
                    key,
                    value,
                    create_revision: c as u64,
                    mod_revision: m as u64,
                }))
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, TopoError> {
        let prefix = prefix.to_string();
        self.inner
            .run(false, move |inner, conn| {
                list_blocking(inner, conn, &prefix)
            })
            .await
    }

    async fn put(&self, key: &str, value: Vec<u8>, cond: Cond) -> Result<Revision, TopoError> {
        self.txn(vec![Op::Put {
            key: key.to_string(),
            value,
            cond,
        }])
        .await
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Revision, TopoError> {
        self.txn(vec![Op::Delete {
            key: key.to_string(),
            cond,
        }])
        .await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, TopoError> {
        txn::validate(&ops)?;
        let (rev, changed) = self
            .inner
            .run(true, move |inner, conn| apply_txn(inner, conn, ops))
            .await?;
        if changed {
            self.inner.writes.fetch_add(1, Ordering::AcqRel);
            self.inner.notify.notify_waiters();
        }
        Ok(rev)
    }

    async fn revision(&self) -> Result<Revision, TopoError> {
        self.inner
            .run(false, |inner, conn| meta_value(inner, conn, "revision"))
            .await
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<WatchEvent, TopoError>>, TopoError> {
        let compact = self
            .inner
            .run(false, |inner, conn| meta_value(inner, conn, "compact_rev"))
            .await?;
        if after < compact {
            return Err(TopoError::Compacted {
                requested: after,
                compacted: compact,
            });
        }
        Ok(watch::stream(self.inner.clone(), prefix, after))
    }

    async fn close(&self) {
        self.inner.close();
    }
}
