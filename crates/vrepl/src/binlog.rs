//! A source's binlog as a stream of whole transactions.
//!
//! [`BinlogStream::start`] connects as a replica, asks for every transaction
//! after a GTID position and yields one [`Event`] per transaction (event
//! group), each carrying the exact position after it. Consumers store that
//! position next to the rows they apply and resume from it; since every
//! transaction — even one without changes for the workflow — yields an
//! event with its position, the stored position always advances and never
//! skips.
//!
//! The stream ends with an error when the source dies, closes the stream,
//! or stays silent (no event, no heartbeat) for the read deadline; callers
//! reconnect from their last committed position.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use keyshift_tablet::Endpoint;
use keyshift_types::Position;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::bytes::Cursor;
use crate::error::{Result, VreplError};
use crate::flavor::{Gtid, GtidEvent, ServerFlavor, advance, mariadb_event};
use crate::rows::{
    BINARY_COLLATION, ColumnDef, RowChange, TableDef, TableMap, decode_rows_event, rows_event_kind,
    rows_event_table_id, table_map_header,
};

/// Which tables' row changes a stream keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFilter {
    /// The source database (schema) name.
    pub db: String,
    /// The tables to keep; `None` keeps every table of `db`.
    pub tables: Option<Vec<String>>,
}

impl TableFilter {
    /// Only `tables` of `db`.
    pub fn tables<I, S>(db: impl Into<String>, tables: I) -> TableFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TableFilter {
            db: db.into(),
            tables: Some(tables.into_iter().map(Into::into).collect()),
        }
    }

    /// Every table of `db`.
    pub fn all_tables(db: impl Into<String>) -> TableFilter {
        TableFilter {
            db: db.into(),
            tables: None,
        }
    }

    /// Names are compared exactly, as the binlog spells them.
    pub fn matches(&self, db: &str, table: &str) -> bool {
        db == self.db
            && self
                .tables
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| t == table))
    }
}

/// One item of a binlog stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A committed transaction with row changes for the filtered tables, in
    /// binlog order.
    Transaction {
        gtid: Gtid,
        /// The source's full position after this transaction (all domains).
        position_after: Position,
        /// When the source committed it (seconds since the epoch, source
        /// clock), for lag.
        timestamp: u32,
        changes: Vec<crate::rows::RowChange>,
    },
    /// A schema change (CREATE/ALTER/DROP/RENAME/TRUNCATE) anywhere on the
    /// source; `db` is the statement's default database, and the consumer
    /// decides whether it concerns its tables (the SQL may name others).
    Ddl {
        gtid: Gtid,
        position_after: Position,
        db: String,
        sql: String,
        timestamp: u32,
    },
    /// The source is alive and has nothing to send: the stream is caught
    /// up (lag 0). `timestamp` is the source's clock when it says so.
    Heartbeat { timestamp: Option<u32> },
    /// A transaction with nothing for this stream (other tables, other
    /// statements); it only advances the position.
    Other {
        gtid: Gtid,
        position_after: Position,
        timestamp: u32,
    },
}

impl Event {
    /// The position after this event, for all but heartbeats.
    pub fn position_after(&self) -> Option<&Position> {
        match self {
            Event::Transaction { position_after, .. }
            | Event::Ddl { position_after, .. }
            | Event::Other { position_after, .. } => Some(position_after),
            Event::Heartbeat { .. } => None,
        }
    }

    pub fn gtid(&self) -> Option<&Gtid> {
        match self {
            Event::Transaction { gtid, .. }
            | Event::Ddl { gtid, .. }
            | Event::Other { gtid, .. } => Some(gtid),
            Event::Heartbeat { .. } => None,
        }
    }
}

/// How a stream talks to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogOptions {
    /// The replica server id to register with. It must differ from the
    /// source's and from every other replica's: the source drops an older
    /// connection that registers the same id.
    pub server_id: u32,
    /// How often an idle source sends a heartbeat.
    pub heartbeat: Duration,
    /// How long a read may wait before the source is declared dead;
    /// `None` means [`SILENT_PERIODS`] heartbeat periods. A dead server or
    /// a closed connection is seen at once; this deadline is only for a
    /// source that hangs or a network that drops packets.
    pub read_timeout: Option<Duration>,
}

/// Heartbeat periods without any event before a source is declared dead.
/// Three was too few: on a machine at load 10 a busy source's dump thread
/// stayed silent for 3 s and a healthy stream was put in error.
pub const SILENT_PERIODS: u32 = 10;

impl Default for BinlogOptions {
    fn default() -> Self {
        BinlogOptions {
            server_id: default_server_id(),
            heartbeat: Duration::from_secs(1),
            read_timeout: None,
        }
    }
}

/// A replica server id unlikely to collide with real servers (which use
/// small ids) or with other streams of this process (time-derived).
fn default_server_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(0);
    let mixed = nanos ^ std::process::id().rotate_left(16);
    0x4000_0000 | (mixed & 0x3fff_ffff)
}

/// A source's binlog as a stream of [`Event`]s. After the first error the
/// stream ends.
pub struct BinlogStream {
    inner: BoxStream<'static, Result<Event>>,
}

impl std::fmt::Debug for BinlogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BinlogStream")
    }
}

impl BinlogStream {
    /// Streams every transaction after `from` with default options
    /// (1 s heartbeat, 10 s read deadline, a generated server id).
    pub async fn start(
        endpoint: &Endpoint,
        flavor: Arc<dyn ServerFlavor>,
        from: Position,
        filter: TableFilter,
    ) -> Result<BinlogStream> {
        Self::start_with(endpoint, flavor, from, filter, BinlogOptions::default()).await
    }

    pub async fn start_with(
        endpoint: &Endpoint,
        flavor: Arc<dyn ServerFlavor>,
        from: Position,
        filter: TableFilter,
        options: BinlogOptions,
    ) -> Result<BinlogStream> {
        let read_timeout = options
            .read_timeout
            .unwrap_or(options.heartbeat * SILENT_PERIODS);
        let session = flavor.dump_session_sql(&from, options.heartbeat)?;
        let request = flavor.dump_request(options.server_id, &from)?;
        // The whole handshake is bounded too: a source that accepts TCP
        // but never answers must not hang the caller.
        let handshake = async {
            let mut conn = endpoint.connect().await?;
            for sql in session {
                conn.query_drop(sql).await?;
            }
            Ok::<_, VreplError>(conn.get_binlog_stream(request).await?)
        };
        let limit = keyshift_tablet::CONNECT_TIMEOUT + read_timeout;
        let stream = tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| VreplError::Timeout(limit))??;
        let decoder = Decoder {
            stream,
            flavor,
            filter,
            position: from,
            read_timeout,
            endpoint: endpoint.clone(),
            schema_conn: None,
            schema_cache: HashMap::new(),
            tables: HashMap::new(),
            group: None,
        };
        let inner = futures::stream::unfold(Some(decoder), |state| async move {
            let mut d = state?;
            match d.next_event().await {
                Ok(ev) => Some((Ok(ev), Some(d))),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed();
        Ok(BinlogStream { inner })
    }
}

impl Stream for BinlogStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

// ------------------------------------------------------------ decoding

// Common binlog event types (MySQL's Log_event_type; MariaDB shares them).
const QUERY_EVENT: u8 = 2;
const XID_EVENT: u8 = 16;
const TABLE_MAP_EVENT: u8 = 19;
const HEARTBEAT_EVENT: u8 = 27;
const XA_PREPARE_EVENT: u8 = 38;

/// The transaction being assembled.
struct Group {
    gtid: GtidEvent,
    saw_begin: bool,
    changes: Vec<RowChange>,
    ddl: Option<(String, String)>,
}

/// A column as `information_schema` describes it, for binlogs written
/// without column names or signedness (`binlog_row_metadata=NO_LOG`).
#[derive(Debug, Clone)]
struct SchemaColumn {
    name: String,
    unsigned: bool,
    binary: bool,
}

struct Decoder {
    stream: mysql_async::BinlogStream,
    flavor: Arc<dyn ServerFlavor>,
    filter: TableFilter,
    position: Position,
    read_timeout: Duration,
    endpoint: Endpoint,
    schema_conn: Option<Conn>,
    schema_cache: HashMap<(String, String), Arc<Vec<SchemaColumn>>>,
    /// Per table id: the TABLE_MAP body last seen and its decoded table
    /// (`None`: filtered out). Servers repeat the same TABLE_MAP before every
    /// transaction, so an identical body is not decoded again.
    tables: HashMap<u64, (Vec<u8>, Option<Arc<TableDef>>)>,
    group: Option<Group>,
}

/// What a query event's statement means for transaction boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatementKind {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, ROLLBACK TO, RELEASE SAVEPOINT, XA …: no row effect.
    Ignorable,
    Ddl,
    Other,
}

/// Classifies a statement by its leading keywords (after comments).
pub(crate) fn statement_kind(sql: &str) -> StatementKind {
    let mut s = sql.trim_start();
    // Skip leading /* ... */ comments (not /*! ... */ executable ones).
    while s.starts_with("/*") && !s.starts_with("/*!") {
        match s.find("*/") {
            Some(end) => s = s[end + 2..].trim_start(),
            None => break,
        }
    }
    let mut words = s
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == '`')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    match first.as_str() {
        "BEGIN" => StatementKind::Begin,
        "COMMIT" => StatementKind::Commit,
        "ROLLBACK" if second == "TO" => StatementKind::Ignorable,
        "ROLLBACK" => StatementKind::Rollback,
        "SAVEPOINT" | "RELEASE" | "XA" => StatementKind::Ignorable,
        "CREATE" | "ALTER" | "DROP" | "RENAME" => {
            if matches!(second.as_str(), "USER" | "ROLE" | "SERVER") {
                StatementKind::Other
            } else {
                StatementKind::Ddl
            }
        }
        "TRUNCATE" => StatementKind::Ddl,
        _ => StatementKind::Other,
    }
}

/// Whether a statement-based change (`INSERT`, `UPDATE`, ...) may write to
/// database `watched`. What counts is the table written, not the default
/// database nor tables only read: the `INTO` table of an INSERT/REPLACE
/// (its `SELECT` part only reads), and for UPDATE/DELETE every table named
/// before `SET`/`WHERE` (multi-table forms), else the first one. An
/// unqualified table is in the default database; an unrecognised statement
/// is attributed to the default database. pt-table-checksum's
/// `REPLACE INTO percona.checksums ... SELECT ... FROM app.t` and
/// `UPDATE percona.checksums ...`, run with `app` as default database,
/// write nothing of `app` and must not stop the streams.
pub(crate) fn statement_touches_db(sql: &str, default_db: &str, watched: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let w = watched.to_ascii_lowercase();
    let default_db = default_db.to_ascii_lowercase();
    let mut s = lower.trim_start();
    while s.starts_with("/*") && !s.starts_with("/*!") {
        match s.find("*/") {
            Some(end) => s = s[end + 2..].trim_start(),
            None => break,
        }
    }
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    const MODIFIERS: &[&str] = &[
        "low_priority",
        "delayed",
        "high_priority",
        "ignore",
        "quick",
        "into",
        "from",
    ];
    let first = words.first().copied().unwrap_or("");
    let db_of = |table: Option<&str>| {
        table
            .and_then(|t| t.split_once('.'))
            .map(|(db, _)| db.trim_matches('`').to_string())
            .unwrap_or_else(|| default_db.clone())
    };
    match first {
        "insert" | "replace" => {
            db_of(words[1..].iter().find(|w| !MODIFIERS.contains(w)).copied()) == w
        }
        "update" | "delete" => {
            let end = if first == "update" {
                " set "
            } else {
                " where "
            };
            let head = s.find(end).map_or(s, |i| &s[..i]);
            head.contains(&format!("`{w}`."))
                || head.contains(&format!(" {w}."))
                || head.contains(&format!(",{w}."))
                || db_of(words[1..].iter().find(|w| !MODIFIERS.contains(w)).copied()) == w
        }
        _ => default_db == w,
    }
}

/// The parts of a query event body we use: default database and statement.
fn parse_query_event(body: &[u8]) -> Result<(String, String)> {
    let mut c = Cursor::new(body, "query event");
    c.bytes(8)?; // thread id, execution time
    let db_len = usize::from(c.u8()?);
    c.bytes(2)?; // error code
    let status_len = usize::from(c.u16_le()?);
    c.bytes(status_len)?;
    let db = c.bytes(db_len)?;
    c.bytes(1)?; // NUL
    let sql = c.rest();
    Ok((
        String::from_utf8_lossy(db).into_owned(),
        String::from_utf8_lossy(sql).into_owned(),
    ))
}

impl Decoder {
    async fn next_event(&mut self) -> Result<Event> {
        loop {
            let ev = match tokio::time::timeout(self.read_timeout, self.stream.next()).await {
                Err(_) => return Err(VreplError::Timeout(self.read_timeout)),
                Ok(None) => return Err(VreplError::StreamEnded),
                Ok(Some(r)) => r?,
            };
            let header = ev.header();
            let ty = header.event_type_raw();
            let timestamp = header.timestamp();
            let body = ev.data();
            if let Some(g) = self
                .flavor
                .decode_gtid_event(ty, header.server_id(), body)?
            {
                if let Some(open) = &self.group {
                    return Err(VreplError::malformed(
                        "binlog",
                        format!(
                            "GTID {} starts before transaction {} ended",
                            g.gtid, open.gtid.gtid
                        ),
                    ));
                }
                self.group = Some(Group {
                    gtid: g,
                    saw_begin: false,
                    changes: Vec::new(),
                    ddl: None,
                });
                continue;
            }
            match ty {
                HEARTBEAT_EVENT => {
                    if self.group.is_none() {
                        return Ok(Event::Heartbeat {
                            timestamp: (timestamp != 0).then_some(timestamp),
                        });
                    }
                }
                TABLE_MAP_EVENT => self.table_map(body).await?,
                XID_EVENT => {
                    if self.group.is_some() {
                        return self.finish(timestamp);
                    }
                }
                QUERY_EVENT => {
                    if let Some(ev) = self.query(body, timestamp)? {
                        return Ok(ev);
                    }
                }
                XA_PREPARE_EVENT => {
                    if let Some(g) = &self.group {
                        if !g.changes.is_empty() {
                            return Err(VreplError::Unsupported(format!(
                                "XA transaction {} changes tables of `{}`",
                                g.gtid.gtid, self.filter.db
                            )));
                        }
                        return self.finish(timestamp);
                    }
                }
                mariadb_event::QUERY_COMPRESSED
                | mariadb_event::FIRST_ROWS_COMPRESSED..=mariadb_event::LAST_ROWS_COMPRESSED => {
                    return Err(VreplError::Unsupported(
                        "compressed binlog events: turn log_bin_compress off on the source".into(),
                    ));
                }
                _ => {
                    if let Some((kind, v2)) = rows_event_kind(ty) {
                        self.rows(body, kind, v2)?;
                    }
                    // Everything else (FORMAT_DESCRIPTION, ROTATE, GTID_LIST,
                    // BINLOG_CHECKPOINT, ANNOTATE_ROWS, STOP, PREVIOUS_GTIDS,
                    // INTVAR/RAND/USER_VAR of statement-based logging...)
                    // neither delimits a transaction nor changes rows.
                }
            }
        }
    }

    /// Ends the open transaction: the position advances by its GTID.
    fn finish(&mut self, timestamp: u32) -> Result<Event> {
        let Some(g) = self.group.take() else {
            return Err(VreplError::malformed(
                "binlog",
                "commit outside a transaction",
            ));
        };
        let gtid = g.gtid.gtid;
        advance(&mut self.position, &gtid)?;
        let position_after = self.position.clone();
        Ok(if let Some((db, sql)) = g.ddl {
            // Definitions may have changed: look them up again.
            self.schema_cache.clear();
            self.tables.clear();
            Event::Ddl {
                gtid,
                position_after,
                db,
                sql,
                timestamp,
            }
        } else if !g.changes.is_empty() {
            Event::Transaction {
                gtid,
                position_after,
                timestamp,
                changes: g.changes,
            }
        } else {
            Event::Other {
                gtid,
                position_after,
                timestamp,
            }
        })
    }

    fn query(&mut self, body: &[u8], timestamp: u32) -> Result<Option<Event>> {
        let Some(g) = self.group.as_mut() else {
            // Outside any GTID group only a server without GTIDs writes
            // queries; nothing to attribute them to.
            return Ok(None);
        };
        let (db, sql) = parse_query_event(body)?;
        let kind = statement_kind(&sql);
        let standalone = match g.gtid.standalone {
            Some(s) => s,
            None => !g.saw_begin,
        };
        match kind {
            StatementKind::Begin => {
                g.saw_begin = true;
                Ok(None)
            }
            StatementKind::Commit | StatementKind::Rollback => self.finish(timestamp).map(Some),
            _ if standalone => {
                if kind == StatementKind::Ddl {
                    g.ddl = Some((db, sql));
                }
                self.finish(timestamp).map(Some)
            }
            StatementKind::Ignorable => Ok(None),
            StatementKind::Ddl => {
                // CREATE TABLE … SELECT: DDL and rows in one transaction.
                g.ddl = Some((db, sql));
                Ok(None)
            }
            StatementKind::Other => {
                if statement_touches_db(&sql, &db, &self.filter.db) {
                    return Err(VreplError::Unsupported(format!(
                        "statement-based binlog event in `{db}` ({}): the source needs binlog_format=ROW",
                        sql.chars().take(80).collect::<String>()
                    )));
                }
                Ok(None)
            }
        }
    }

    async fn table_map(&mut self, body: &[u8]) -> Result<()> {
        let (table_id, db, table) = table_map_header(body)?;
        if let Some((raw, _)) = self.tables.get(&table_id)
            && raw.as_slice() == body
        {
            return Ok(());
        }
        let def = if self.filter.matches(&db, &table) {
            let tm = TableMap::parse(body)?;
            Some(Arc::new(self.table_def(tm).await?))
        } else {
            None
        };
        self.tables.insert(table_id, (body.to_vec(), def));
        Ok(())
    }

    fn rows(&mut self, body: &[u8], kind: crate::rows::ChangeKind, v2: bool) -> Result<()> {
        let table_id = rows_event_table_id(body)?;
        let Some((_, def)) = self.tables.get(&table_id) else {
            return Err(VreplError::malformed(
                "binlog",
                format!("rows event for table id {table_id} without a TABLE_MAP"),
            ));
        };
        let Some(def) = def else {
            return Ok(());
        };
        let Some(g) = self.group.as_mut() else {
            return Err(VreplError::malformed(
                "binlog",
                "rows event outside a transaction",
            ));
        };
        decode_rows_event(body, kind, v2, def, &mut g.changes)
    }

    /// Names and signedness from the binlog when it has them
    /// (binlog_row_metadata=FULL), else from `information_schema` — which
    /// describes the table as it is now, not as it was when the event was
    /// written, so the binlog's own metadata is always preferred.
    async fn table_def(&mut self, tm: TableMap) -> Result<TableDef> {
        let n = tm.kinds.len();
        let complete = tm.names.is_some()
            && tm.unsigned.is_some()
            && (tm.collations.is_some() || !tm.kinds.iter().any(|k| k.is_character()));
        let schema = if complete {
            None
        } else {
            let cols = self.schema_columns(&tm.db, &tm.table).await?;
            if cols.len() != n {
                return Err(VreplError::Schema {
                    db: tm.db.clone(),
                    table: tm.table.clone(),
                    detail: format!(
                        "the binlog has {n} columns, information_schema {}",
                        cols.len()
                    ),
                });
            }
            Some(cols)
        };
        let mut columns = Vec::with_capacity(n);
        for (i, &kind) in tm.kinds.iter().enumerate() {
            let sc = schema.as_ref().map(|s| &s[i]);
            let name = match (&tm.names, sc) {
                (Some(names), _) => names[i].clone(),
                (None, Some(sc)) => sc.name.clone(),
                (None, None) => format!("@{}", i + 1),
            };
            let unsigned = match (&tm.unsigned, sc) {
                (Some(u), _) => u[i],
                (None, Some(sc)) => sc.unsigned,
                (None, None) => false,
            };
            let binary = match (&tm.collations, sc) {
                (Some(c), _) => c[i] == Some(BINARY_COLLATION),
                (None, Some(sc)) => sc.binary,
                (None, None) => true,
            };
            columns.push(ColumnDef {
                name: name.into(),
                kind,
                unsigned,
                binary,
            });
        }
        Ok(TableDef {
            db: tm.db.into(),
            table: tm.table.into(),
            columns,
            primary_key: tm.primary_key,
        })
    }

    async fn schema_columns(&mut self, db: &str, table: &str) -> Result<Arc<Vec<SchemaColumn>>> {
        let key = (db.to_string(), table.to_string());
        if let Some(c) = self.schema_cache.get(&key) {
            return Ok(c.clone());
        }
        let limit = keyshift_tablet::CONNECT_TIMEOUT + self.read_timeout;
        let lookup = async {
            if self.schema_conn.is_none() {
                self.schema_conn = Some(self.endpoint.connect().await?);
            }
            let Some(conn) = self.schema_conn.as_mut() else {
                return Err(VreplError::StreamEnded);
            };
            let rows: Vec<(String, String, Option<String>)> = conn
                .exec(
                    "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME \
                     FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (db, table),
                )
                .await?;
            Ok(rows)
        };
        let rows = match tokio::time::timeout(limit, lookup).await {
            Ok(r) => r?,
            Err(_) => {
                // A half-used connection is not reusable.
                self.schema_conn = None;
                return Err(VreplError::Timeout(limit));
            }
        };
        let cols: Vec<SchemaColumn> = rows
            .into_iter()
            .map(|(name, ty, cs)| SchemaColumn {
                name,
                unsigned: ty.to_ascii_lowercase().contains("unsigned"),
                binary: cs.is_none_or(|cs| cs.eq_ignore_ascii_case("binary")),
            })
            .collect();
        let cols = Arc::new(cols);
        self.schema_cache.insert(key, cols.clone());
        Ok(cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_based_changes_are_attributed_to_their_database() {
        let touches = |sql: &str, default_db: &str| statement_touches_db(sql, default_db, "app");
        // pt-table-checksum's bookkeeping, run with the application's db as default.
        assert!(!touches(
            "REPLACE INTO `percona`.`checksums` (db, tbl) SELECT 'app', 'orders'",
            "app"
        ));
        assert!(!touches("INSERT INTO other.t VALUES (1)", "app"));
        assert!(touches("INSERT INTO t VALUES (1)", "app"));
        assert!(touches("UPDATE LOW_PRIORITY `app`.`t` SET a = 1", "other"));
        assert!(touches("delete from app.t where id = 1", ""));
        assert!(!touches("delete from t where id = 1", "other"));
        // A multi-table statement naming the watched database among the
        // tables it may write.
        assert!(touches(
            "UPDATE other.a JOIN `app`.`b` ON a.id = b.id SET a.x = b.x",
            "other"
        ));
        // Tables only read do not count: pt-table-checksum's statements.
        assert!(!touches(
            "REPLACE INTO `percona`.`checksums` (db, tbl, chunk, this_crc) SELECT 'app', 'sbtest1', 1, COUNT(*) FROM `app`.`sbtest1` FORCE INDEX(`PRIMARY`) WHERE ((`id` >= '1'))",
            "app"
        ));
        assert!(!touches(
            "UPDATE `percona`.`checksums` SET chunk_time = '0.01', master_crc = 'abc' WHERE db = 'app' AND tbl = 'sbtest1'",
            "app"
        ));
        assert!(touches(
            "DELETE a FROM app.a JOIN other.b USING (id) WHERE b.x = 1",
            "other"
        ));
        // Unknown forms fall back to the default database.
        assert!(touches("LOAD DATA INFILE 'x' INTO TABLE t", "app"));
    }

    #[test]
    fn classify_statements() {
        use StatementKind::*;
        assert_eq!(statement_kind("BEGIN"), Begin);
        assert_eq!(statement_kind("COMMIT"), Commit);
        assert_eq!(statement_kind("ROLLBACK"), Rollback);
        assert_eq!(statement_kind("ROLLBACK TO `sp1`"), Ignorable);
        assert_eq!(statement_kind("SAVEPOINT `sp1`"), Ignorable);
        assert_eq!(statement_kind("XA END X'01',X'',1"), Ignorable);
        assert_eq!(statement_kind("  /* c */ alter table t add x int"), Ddl);
        assert_eq!(
            statement_kind("DROP TABLE `t` /* generated by server */"),
            Ddl
        );
        assert_eq!(statement_kind("CREATE USER 'a'@'%'"), Other);
        assert_eq!(statement_kind("truncate t"), Ddl);
        assert_eq!(statement_kind("GRANT ALL ON *.* TO x"), Other);
        assert_eq!(statement_kind(""), Other);
    }

    #[test]
    fn filter_matches() {
        let f = TableFilter::tables("d", ["a", "b"]);
        assert!(f.matches("d", "a"));
        assert!(!f.matches("d", "c"));
        assert!(!f.matches("e", "a"));
        assert!(TableFilter::all_tables("d").matches("d", "zzz"));
    }

    #[test]
    fn query_event_body() {
        let mut b = vec![0; 8];
        b.push(2);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&[0, 1, 2]);
        b.extend_from_slice(b"db\0ALTER TABLE t ADD c INT");
        let (db, sql) = parse_query_event(&b).unwrap();
        assert_eq!(
            (db.as_str(), sql.as_str()),
            ("db", "ALTER TABLE t ADD c INT")
        );
        assert!(parse_query_event(&b[..12]).is_err());
    }

    #[test]
    fn server_ids_stay_clear_of_small_ids() {
        let id = default_server_id();
        assert!(id >= 0x4000_0000);
    }
}
