//! What differs between MariaDB and MySQL, behind one small trait.
//!
//! Everything above this module (snapshots, binlog streams, workflows)
//! speaks [`Position`] and [`Gtid`] and never asks which server it talks to.
//! The differences are few but sharp:
//!
//! | | MariaDB | MySQL |
//! |---|---|---|
//! | start a dump at a GTID set | user variables `@slave_connect_state`, `@mariadb_slave_capability=4`, then a plain COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID carrying the encoded set |
//! | current position | `@@gtid_binlog_pos` | `@@gtid_executed` |
//! | exact snapshot position | `START TRANSACTION WITH CONSISTENT SNAPSHOT`, then `Binlog_snapshot_file/position` through `BINLOG_GTID_POS()` | the same transaction opened under `FLUSH TABLES WITH READ LOCK`, reading `@@gtid_executed` before unlocking (as mysqldump does) |
//! | GTID event | type 162: seq, domain, flags (standalone = no BEGIN/COMMIT) | type 33: sid, gno |
//!
//! The MariaDB side runs against real servers in this crate's tests. The
//! MySQL side is unit-tested for its encodings only: no MySQL server runs in
//! the test environment, so its SQL and its dump handshake are untested.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyshift_types::{Flavor, MariaGtid, MysqlGtidSet, Position, Sid};
use mysql_async::BinlogStreamRequest;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::bytes::Cursor;
use crate::error::{Result, VreplError};

/// One transaction's GTID in either flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gtid {
    MariaDB(MariaGtid),
    MySQL { sid: Sid, gno: u64 },
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDB(g) => g.fmt(f),
            Gtid::MySQL { sid, gno } => write!(f, "{sid}:{gno}"),
        }
    }
}

impl Gtid {
    pub fn flavor(&self) -> Flavor {
        match self {
            Gtid::MariaDB(_) => Flavor::MariaDB,
            Gtid::MySQL { .. } => Flavor::MySQL,
        }
    }
}

/// Adds `gtid` to `pos`: the position after the transaction `gtid` names.
///
/// MariaDB: the domain's entry becomes this GTID (positions never move
/// backwards, see `MariaGtidSet::update`). MySQL: the gno joins the sid's
/// intervals.
pub fn advance(pos: &mut Position, gtid: &Gtid) -> Result<()> {
    match (pos, gtid) {
        (Position::MariaDB(set), Gtid::MariaDB(g)) => {
            set.update(g);
            Ok(())
        }
        (Position::MySQL(set), Gtid::MySQL { sid, gno }) => Ok(set.add_sid(*sid, *gno)?),
        (pos, g) => Err(VreplError::Flavor {
            flavor: pos.flavor(),
            detail: format!("cannot add the {} GTID {g} to a position", g.flavor()),
        }),
    }
}

/// What a GTID event says about the transaction it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEvent {
    pub gtid: Gtid,
    /// `Some(true)`: a single statement with no BEGIN/COMMIT around it (DDL
    /// and other auto-committing statements) — MariaDB says so in the event.
    /// `None`: the flavor does not say; the statement after the GTID tells
    /// (MySQL writes `BEGIN` before transactions and nothing before DDL).
    pub standalone: Option<bool>,
    /// MariaDB marks event groups that contain DDL.
    pub ddl: bool,
    /// The group is the prepared half of an XA transaction (MariaDB
    /// `XA PREPARE`): its rows are not committed yet.
    pub xa_prepared: bool,
}

/// The flavor-specific parts of talking to a source.
#[async_trait]
pub trait ServerFlavor: fmt::Debug + Send + Sync {
    fn flavor(&self) -> Flavor;

    /// Statements to run on the connection that becomes the binlog dump
    /// connection, before the dump request. `heartbeat` is how often the
    /// server must send a heartbeat when it has nothing else to send.
    fn dump_session_sql(&self, from: &Position, heartbeat: Duration) -> Result<Vec<String>>;

    /// The dump request that streams every transaction after `from`.
    fn dump_request(&self, server_id: u32, from: &Position)
    -> Result<BinlogStreamRequest<'static>>;

    /// The server's current binlog position: every transaction it has
    /// written to its binlog.
    async fn current_position(&self, conn: &mut Conn) -> Result<Position>;

    /// Opens a consistent-snapshot transaction on `conn` and returns the
    /// exact position it sees: every transaction in the position is visible
    /// in the snapshot and no other is. `conn` stays in the transaction.
    async fn start_snapshot(&self, conn: &mut Conn) -> Result<Position>;

    /// Decodes a GTID event of this flavor; `None` for event types that are
    /// not this flavor's GTID event. `server_id` comes from the event
    /// header.
    fn decode_gtid_event(
        &self,
        event_type: u8,
        server_id: u32,
        body: &[u8],
    ) -> Result<Option<GtidEvent>>;
}

/// The implementation for `flavor`.
pub fn for_flavor(flavor: Flavor) -> Arc<dyn ServerFlavor> {
    match flavor {
        Flavor::MariaDB => Arc::new(MariaDb),
        Flavor::MySQL => Arc::new(MySql),
    }
}

/// Asks the server which flavor it is (`VERSION()` says `MariaDB`).
pub async fn detect(conn: &mut Conn) -> Result<Flavor> {
    let v: Option<String> = conn.query_first("SELECT VERSION()").await?;
    Ok(match v {
        Some(v) if v.to_ascii_lowercase().contains("mariadb") => Flavor::MariaDB,
        _ => Flavor::MySQL,
    })
}

fn wrong_flavor(flavor: Flavor, pos: &Position) -> VreplError {
    VreplError::Flavor {
        flavor,
        detail: format!("given the {} position `{pos}`", pos.flavor()),
    }
}

/// A position as a SQL string literal; GTID text is digits, `-`, `:`, `,`
/// and hex, but quote it properly all the same.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

// ---------------------------------------------------------------- MariaDB

/// MariaDB 10.x.
#[derive(Debug, Clone, Copy, Default)]
pub struct MariaDb;

/// MariaDB binlog event types of its own.
pub mod mariadb_event {
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    pub const QUERY_COMPRESSED: u8 = 165;
    /// Compressed rows events (`log_bin_compress=ON`): 166–171.
    pub const FIRST_ROWS_COMPRESSED: u8 = 166;
    pub const LAST_ROWS_COMPRESSED: u8 = 171;
}

// Flags of MariaDB's GTID event (log_event.h, Gtid_log_event::FL_*).
const FL_STANDALONE: u8 = 1;
const FL_GROUP_COMMIT_ID: u8 = 2;
const FL_DDL: u8 = 32;
const FL_PREPARED_XA: u8 = 64;

/// MARIA_SLAVE_CAPABILITY_GTID: the replica understands GTID events, so the
/// server sends them instead of rewriting them to `BEGIN`.
const MARIA_SLAVE_CAPABILITY_GTID: u32 = 4;

impl MariaDb {
    /// Decodes the body of a MariaDB GTID event (type 162): sequence number
    /// (8 bytes), domain id (4), flags (1), then the commit id when
    /// FL_GROUP_COMMIT_ID is set, then XA/extra data we do not need.
    pub fn decode_gtid(server_id: u32, body: &[u8]) -> Result<GtidEvent> {
        let mut c = Cursor::new(body, "MariaDB GTID event");
        let seq = c.u64_le()?;
        let domain = c.u32_le()?;
        let flags = c.u8()?;
        if flags & FL_GROUP_COMMIT_ID != 0 {
            c.u64_le()?;
        }
        Ok(GtidEvent {
            gtid: Gtid::MariaDB(MariaGtid {
                domain,
                server_id,
                seq,
            }),
            standalone: Some(flags & FL_STANDALONE != 0),
            ddl: flags & FL_DDL != 0,
            xa_prepared: flags & FL_PREPARED_XA != 0,
        })
    }

    /// Decodes a GTID_LIST event (type 163): a count (low 28 bits; the top
    /// 4 are flags) and that many (domain 4, server id 4, seq 8) triples.
    /// The server sends one at the start of every binlog file and of every
    /// dump.
    pub fn decode_gtid_list(body: &[u8]) -> Result<Vec<MariaGtid>> {
        let mut c = Cursor::new(body, "MariaDB GTID_LIST event");
        let n = c.u32_le()? & 0x0fff_ffff;
        if u64::from(n) * 16 > c.remaining() as u64 {
            return Err(VreplError::malformed(
                "MariaDB GTID_LIST event",
                format!("{n} GTIDs in {} bytes", c.remaining()),
            ));
        }
        (0..n)
            .map(|_| {
                Ok(MariaGtid {
                    domain: c.u32_le()?,
                    server_id: c.u32_le()?,
                    seq: c.u64_le()?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ServerFlavor for MariaDb {
    fn flavor(&self) -> Flavor {
        Flavor::MariaDB
    }

    fn dump_session_sql(&self, from: &Position, heartbeat: Duration) -> Result<Vec<String>> {
        let Position::MariaDB(set) = from else {
            return Err(wrong_flavor(Flavor::MariaDB, from));
        };
        // The server reads these user variables of the dump connection:
        // the capability makes it send GTID events, the connect state makes
        // a plain COM_BINLOG_DUMP start right after `from` (file and offset
        // are then ignored), strict mode makes it refuse a position it does
        // not have instead of silently skipping, and the heartbeat period
        // (in nanoseconds) keeps an idle stream talking.
        Ok(vec![
            format!("SET @mariadb_slave_capability = {MARIA_SLAVE_CAPABILITY_GTID}"),
            format!("SET @slave_connect_state = {}", quote(&set.to_string())),
            "SET @slave_gtid_strict_mode = 1".to_string(),
            format!("SET @master_heartbeat_period = {}", heartbeat.as_nanos()),
        ])
    }

    fn dump_request(
        &self,
        server_id: u32,
        from: &Position,
    ) -> Result<BinlogStreamRequest<'static>> {
        if from.flavor() != Flavor::MariaDB {
            return Err(wrong_flavor(Flavor::MariaDB, from));
        }
        Ok(BinlogStreamRequest::new(server_id).with_pos(4u64))
    }

    async fn current_position(&self, conn: &mut Conn) -> Result<Position> {
        let pos: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await?;
        Ok(Position::parse(Flavor::MariaDB, &pos.unwrap_or_default())?)
    }

    async fn start_snapshot(&self, conn: &mut Conn) -> Result<Position> {
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        // These two status variables hold the binlog coordinates of the
        // snapshot just taken (MariaDB keeps binlog commit order and InnoDB
        // snapshots consistent); @@gtid_binlog_pos could already include
        // transactions the snapshot does not see.
        let rows: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await?;
        let get = |name: &str| {
            rows.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (Some(file), Some(offset)) =
            (get("Binlog_snapshot_file"), get("Binlog_snapshot_position"))
        else {
            return Err(VreplError::SnapshotPosition(
                "the server reports no Binlog_snapshot_file/position (is log_bin on?)".into(),
            ));
        };
        let offset: u64 = offset.parse().map_err(|_| {
            VreplError::SnapshotPosition(format!("Binlog_snapshot_position `{offset}`"))
        })?;
        if file.is_empty() {
            return Err(VreplError::SnapshotPosition(
                "Binlog_snapshot_file is empty (is log_bin on?)".into(),
            ));
        }
        let gtids: Option<Option<String>> = conn
            .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), offset))
            .await?;
        let Some(Some(gtids)) = gtids else {
            return Err(VreplError::SnapshotPosition(format!(
                "BINLOG_GTID_POS('{file}', {offset}) is NULL: the file was purged or the offset is not an event boundary"
            )));
        };
        Ok(Position::parse(Flavor::MariaDB, &gtids)?)
    }

    fn decode_gtid_event(
        &self,
        event_type: u8,
        server_id: u32,
        body: &[u8],
    ) -> Result<Option<GtidEvent>> {
        if event_type != mariadb_event::GTID {
            return Ok(None);
        }
        MariaDb::decode_gtid(server_id, body).map(Some)
    }
}

// ---------------------------------------------------------------- MySQL

/// MySQL 5.7/8.x with `gtid_mode=ON`. Untested against a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MySql;

/// MySQL's GTID event type.
pub const MYSQL_GTID_EVENT: u8 = 33;
/// MySQL's event for transactions without a GTID (gtid_mode OFF).
pub const MYSQL_ANONYMOUS_GTID_EVENT: u8 = 34;

impl MySql {
    /// Decodes a MySQL GTID event body: commit flag (1 byte), sid (16),
    /// gno (8, little-endian), then logical clocks we do not need.
    pub fn decode_gtid(body: &[u8]) -> Result<GtidEvent> {
        let mut c = Cursor::new(body, "MySQL GTID event");
        c.u8()?;
        let mut sid = [0u8; 16];
        sid.copy_from_slice(c.bytes(16)?);
        let gno = c.u64_le()?;
        if gno == 0 {
            return Err(VreplError::malformed("MySQL GTID event", "gno 0"));
        }
        Ok(GtidEvent {
            gtid: Gtid::MySQL { sid: Sid(sid), gno },
            standalone: None,
            ddl: false,
            xa_prepared: false,
        })
    }

    /// The set as COM_BINLOG_DUMP_GTID wants it, in mysql_common's types
    /// (intervals there are half-open: `end` is one past the last gno).
    pub fn sid_block(set: &MysqlGtidSet) -> Vec<mysql_common::packets::Sid<'static>> {
        set.intervals()
            .map(|(sid, ivs)| {
                mysql_common::packets::Sid::new(sid.0).with_intervals(
                    ivs.iter()
                        .map(|&(a, b)| mysql_common::packets::GnoInterval::new(a, b + 1))
                        .collect(),
                )
            })
            .collect()
    }

    /// The encoded GTID set of COM_BINLOG_DUMP_GTID, written from MySQL's
    /// protocol documentation (independently of mysql_common, to check it):
    /// n_sids (8 LE), then per sid: uuid (16), n_intervals (8 LE), and per
    /// interval start (8 LE) and end + 1 (8 LE).
    pub fn encode_gtid_set(set: &MysqlGtidSet) -> Vec<u8> {
        let mut out = Vec::new();
        let sids: Vec<_> = set.intervals().collect();
        out.extend_from_slice(&(sids.len() as u64).to_le_bytes());
        for (sid, ivs) in sids {
            out.extend_from_slice(&sid.0);
            out.extend_from_slice(&(ivs.len() as u64).to_le_bytes());
            for &(a, b) in ivs {
                out.extend_from_slice(&a.to_le_bytes());
                out.extend_from_slice(&(b + 1).to_le_bytes());
            }
        }
        out
    }
}

#[async_trait]
impl ServerFlavor for MySql {
    fn flavor(&self) -> Flavor {
        Flavor::MySQL
    }

    fn dump_session_sql(&self, from: &Position, heartbeat: Duration) -> Result<Vec<String>> {
        if from.flavor() != Flavor::MySQL {
            return Err(wrong_flavor(Flavor::MySQL, from));
        }
        Ok(vec![format!(
            "SET @master_heartbeat_period = {}",
            heartbeat.as_nanos()
        )])
    }

    fn dump_request(
        &self,
        server_id: u32,
        from: &Position,
    ) -> Result<BinlogStreamRequest<'static>> {
        let Position::MySQL(set) = from else {
            return Err(wrong_flavor(Flavor::MySQL, from));
        };
        Ok(BinlogStreamRequest::new(server_id)
            .with_gtid()
            .with_pos(4u64)
            .with_gtid_set(MySql::sid_block(set)))
    }

    async fn current_position(&self, conn: &mut Conn) -> Result<Position> {
        let pos: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
        Ok(Position::parse(Flavor::MySQL, &pos.unwrap_or_default())?)
    }

    async fn start_snapshot(&self, conn: &mut Conn) -> Result<Position> {
        // MySQL has no snapshot coordinates; block commits for the instant
        // it takes to open the snapshot and read the executed set, as
        // mysqldump --single-transaction --source-data does.
        conn.query_drop("FLUSH TABLES WITH READ LOCK").await?;
        let res = async {
            conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await?;
            let pos: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
            Ok::<_, VreplError>(Position::parse(Flavor::MySQL, &pos.unwrap_or_default())?)
        }
        .await;
        conn.query_drop("UNLOCK TABLES").await?;
        res
    }

    fn decode_gtid_event(
        &self,
        event_type: u8,
        _server_id: u32,
        body: &[u8],
    ) -> Result<Option<GtidEvent>> {
        match event_type {
            MYSQL_GTID_EVENT => MySql::decode_gtid(body).map(Some),
            MYSQL_ANONYMOUS_GTID_EVENT => Err(VreplError::Unsupported(
                "a transaction without GTID: the source needs gtid_mode=ON".into(),
            )),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::proto::MySerialize;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mariadb_gtid_event() {
        let mut b = 145u64.to_le_bytes().to_vec();
        b.extend_from_slice(&7u32.to_le_bytes());
        b.push(FL_STANDALONE | FL_DDL);
        b.extend_from_slice(&[0; 6]);
        let e = MariaDb::decode_gtid(3, &b).unwrap();
        assert_eq!(e.gtid.to_string(), "7-3-145");
        assert_eq!(e.standalone, Some(true));
        assert!(e.ddl && !e.xa_prepared);
        assert!(MariaDb::decode_gtid(3, &b[..10]).is_err());
        let mut b2 = 5u64.to_le_bytes().to_vec();
        b2.extend_from_slice(&0u32.to_le_bytes());
        b2.push(FL_GROUP_COMMIT_ID);
        b2.extend_from_slice(&9u64.to_le_bytes());
        let e = MariaDb::decode_gtid(1, &b2).unwrap();
        assert_eq!(
            (e.gtid.to_string(), e.standalone),
            ("0-1-5".into(), Some(false))
        );
    }

    #[test]
    fn mariadb_gtid_list() {
        let mut b = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 10u64), (1, 2, 3)] {
            b.extend_from_slice(&d.to_le_bytes());
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        let l = MariaDb::decode_gtid_list(&b).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].to_string(), "1-2-3");
        assert!(MariaDb::decode_gtid_list(&b[..20]).is_err());
    }

    #[test]
    fn mariadb_dump_session() {
        let pos = Position::parse(Flavor::MariaDB, "0-1-5,1-2-7").unwrap();
        let sql = MariaDb
            .dump_session_sql(&pos, Duration::from_millis(1500))
            .unwrap();
        assert!(sql.contains(&"SET @slave_connect_state = '0-1-5,1-2-7'".to_string()));
        assert!(sql.contains(&"SET @master_heartbeat_period = 1500000000".to_string()));
        let my = Position::parse(Flavor::MySQL, &format!("{U1}:1-5")).unwrap();
        assert!(
            MariaDb
                .dump_session_sql(&my, Duration::from_secs(1))
                .is_err()
        );
        assert!(MySql.dump_request(1, &pos).is_err());
    }

    #[test]
    fn mysql_gtid_event() {
        let sid: Sid = U1.parse().unwrap();
        let mut b = vec![1];
        b.extend_from_slice(&sid.0);
        b.extend_from_slice(&42u64.to_le_bytes());
        b.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let e = MySql
            .decode_gtid_event(MYSQL_GTID_EVENT, 9, &b)
            .unwrap()
            .unwrap();
        assert_eq!(e.gtid.to_string(), format!("{U1}:42"));
        assert_eq!(e.standalone, None);
        assert!(
            MySql
                .decode_gtid_event(MYSQL_ANONYMOUS_GTID_EVENT, 9, &b)
                .is_err()
        );
        assert!(MySql.decode_gtid_event(2, 9, &b).unwrap().is_none());
        assert!(MySql::decode_gtid(&b[..20]).is_err());
    }

    #[test]
    fn mysql_gtid_set_encoding_matches_protocol() {
        let set = MysqlGtidSet::parse(&format!(
            "{U1}:1-5:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3"
        ))
        .unwrap();
        let ours = MySql::encode_gtid_set(&set);
        // 8 + 2 * (16 + 8) + 3 intervals * 16
        assert_eq!(ours.len(), 8 + 48 + 48);
        assert_eq!(&ours[..8], &2u64.to_le_bytes());
        assert_eq!(&ours[8 + 16..8 + 24], &2u64.to_le_bytes());
        assert_eq!(&ours[8 + 24..8 + 32], &1u64.to_le_bytes());
        assert_eq!(&ours[8 + 32..8 + 40], &6u64.to_le_bytes());
        // What mysql_async will send ends with the same bytes.
        let pos = Position::MySQL(set);
        let req = mysql_common::packets::binlog_request::BinlogRequest::new(5)
            .with_use_gtid(true)
            .with_sids(MySql::sid_block(match &pos {
                Position::MySQL(s) => s,
                _ => unreachable!(),
            }));
        let mut wire = Vec::new();
        match req.as_cmd() {
            mysql_common::misc::raw::Either::Right(cmd) => cmd.serialize(&mut wire),
            mysql_common::misc::raw::Either::Left(_) => panic!("not a GTID dump"),
        }
        assert!(wire.ends_with(&ours));
        let len_at = wire.len() - ours.len() - 4;
        assert_eq!(
            &wire[len_at..len_at + 4],
            &(ours.len() as u32).to_le_bytes()
        );
        assert!(MySql.dump_request(5, &pos).is_ok());
    }

    #[test]
    fn advance_positions() {
        let mut p = Position::parse(Flavor::MariaDB, "0-1-5").unwrap();
        advance(&mut p, &Gtid::MariaDB("1-2-3".parse().unwrap())).unwrap();
        advance(&mut p, &Gtid::MariaDB("0-1-6".parse().unwrap())).unwrap();
        assert_eq!(p.to_string(), "0-1-6,1-2-3");
        let sid: Sid = U1.parse().unwrap();
        assert!(advance(&mut p, &Gtid::MySQL { sid, gno: 1 }).is_err());
        let mut m = Position::parse(Flavor::MySQL, &format!("{U1}:1-5")).unwrap();
        advance(&mut m, &Gtid::MySQL { sid, gno: 6 }).unwrap();
        assert_eq!(m.to_string(), format!("{U1}:1-6"));
    }
}
