//! The gate's own client for the data path to MySQL/MariaDB tablets.
//!
//! It exists (instead of `mysql_async`) so that result packets can be
//! forwarded to the gate's client without decoding: only sequence ids and the
//! end-of-result markers are rewritten. Decoded rows are available for the
//! router's merges. Every wait on the backend is bounded by a read timeout,
//! so a dead or stopped backend becomes an error, never a hung client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GateError;
use crate::fxhash::FxHashMap;
use crate::packet::{MAX_FRAME, PacketError, PacketReader, PacketWriter};
use crate::params::Param;
use crate::proto::{
    CapabilityFlags, Column, Malformed, OkPacket, Reader, StatusFlags, Value, parse_binary_row,
    parse_err, parse_text_row,
};
use crate::server::Response;

const MORE_RESULTS: u16 = StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits();
const IN_TRANS: u16 = StatusFlags::SERVER_STATUS_IN_TRANS.bits();
const AUTOCOMMIT: u16 = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();
const STATE_CHANGED: u16 = StatusFlags::SERVER_SESSION_STATE_CHANGED.bits();

type BackendRead = Box<dyn AsyncRead + Send + Unpin>;
type BackendWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where and how to reach one backend (one tablet).
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// `host:port`, or the path of a Unix socket (starting with `/`, or
    /// prefixed `unix:`). A local tablet is much cheaper to reach over its
    /// socket: loopback TCP costs the gate about twice the kernel time.
    pub addr: String,
    pub user: String,
    pub password: String,
    /// Default schema of new connections.
    pub db: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for any bytes of a response; a statement that runs longer
    /// without sending anything fails with 2013 and the connection is closed.
    pub read_timeout: Duration,
    pub max_packet: usize,
}

impl BackendConfig {
    pub fn new(
        addr: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        BackendConfig {
            addr: addr.into(),
            user: user.into(),
            password: password.into(),
            db: None,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
            max_packet: 1 << 30,
        }
    }

    pub fn with_db(mut self, db: impl Into<String>) -> Self {
        self.db = Some(db.into());
        self
    }
}

/// Why a backend operation failed. Callers branch on it: a `Server` error is
/// the backend's answer (the connection is fine), everything else leaves the
/// connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to backend {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to backend {0} timed out")]
    ConnectTimeout(String),
    #[error("backend connection failed: {0}")]
    Packet(#[from] PacketError),
    #[error("backend protocol error: {0}")]
    Protocol(String),
    #[error("backend authentication failed: {0}")]
    Auth(String),
    /// An ERR packet from the backend.
    #[error("{0}")]
    Server(GateError),
    #[error("no backend connection became free within {0:?}")]
    PoolTimeout(Duration),
    /// Writing to the gate's client failed while forwarding.
    #[error("{0}")]
    Client(GateError),
}

impl From<Malformed> for BackendError {
    fn from(m: Malformed) -> Self {
        BackendError::Protocol(m.0.to_string())
    }
}

impl From<BackendError> for GateError {
    fn from(e: BackendError) -> GateError {
        match e {
            BackendError::Server(g) | BackendError::Client(g) => g,
            BackendError::PoolTimeout(_) => GateError::new(1040, *b"08004", e.to_string()),
            BackendError::Auth(_) => GateError::new(1045, *b"28000", e.to_string()),
            other => GateError::backend_lost(other),
        }
    }
}

/// A statement prepared on one backend connection.
#[derive(Debug, Clone)]
pub struct BackendStmt {
    pub id: u32,
    pub params: Vec<Column>,
    pub columns: Vec<Column>,
}

/// A fully read, decoded result (for merges and internal queries).
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub warnings: u16,
    pub status: u16,
    pub info: String,
}

/// Most statements one connection keeps prepared; beyond it the least
/// recently prepared one is closed (servers cap prepared statements globally).
const STMT_CACHE_MAX: usize = 512;

/// One client connection to a backend.
pub struct BackendConn {
    r: PacketReader<BackendRead>,
    w: PacketWriter<BackendWrite>,
    caps: CapabilityFlags,
    connection_id: u32,
    server_version: String,
    status: u16,
    schema: Option<String>,
    /// Session state differs from a fresh connection's (user variables,
    /// session variables, temporary tables, ...), as reported by session
    /// state tracking; the connection must be reset before someone else uses it.
    dirty: bool,
    broken: bool,
    stmts: FxHashMap<String, Arc<BackendStmt>>,
    stmt_order: Vec<String>,
    last_used: Instant,
    /// The thread that opened the connection: with the gate's event loops
    /// (single-threaded runtimes), the one whose loop polls its socket.
    home: std::thread::ThreadId,
    /// A `BEGIN` sits in the output buffer, unsent: it goes out with the
    /// next command, in the same write, and its OK is read right after
    /// (see [`BackendConn::queue_begin`]).
    pending_begin: bool,
}

fn client_caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_SESSION_TRACK
}

impl BackendConn {
    /// Connects, authenticates and turns on session state tracking (which is
    /// how the gate learns that a client changed session state).
    pub async fn connect(cfg: &BackendConfig) -> Result<BackendConn, BackendError> {
        let unix_path = cfg
            .addr
            .strip_prefix("unix:")
            .or_else(|| cfg.addr.starts_with('/').then_some(cfg.addr.as_str()));
        let connect = async {
            match unix_path {
                Some(path) => {
                    let s = UnixStream::connect(path).await?;
                    let (r, w) = s.into_split();
                    Ok::<_, std::io::Error>((
                        Box::new(r) as BackendRead,
                        Box::new(w) as BackendWrite,
                    ))
                }
                None => {
                    let s = TcpStream::connect(&cfg.addr).await?;
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    Ok((Box::new(r) as BackendRead, Box::new(w) as BackendWrite))
                }
            }
        };
        let (r, w) = match tokio::time::timeout(cfg.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(BackendError::Connect {
                    addr: cfg.addr.clone(),
                    source: e,
                });
            }
            Err(_) => return Err(BackendError::ConnectTimeout(cfg.addr.clone())),
        };
        let mut r = PacketReader::new(r, cfg.max_packet);
        r.set_timeout(Some(
            cfg.connect_timeout
                .max(cfg.read_timeout.min(Duration::from_secs(10))),
        ));
        let mut conn = BackendConn {
            r,
            w: PacketWriter::new(w),
            caps: CapabilityFlags::empty(),
            connection_id: 0,
            server_version: String::new(),
            status: AUTOCOMMIT,
            schema: None,
            dirty: false,
            broken: false,
            stmts: FxHashMap::default(),
            stmt_order: Vec::new(),
            last_used: Instant::now(),
            home: std::thread::current().id(),
            pending_begin: false,
        };
        conn.handshake(cfg).await?;
        conn.r.set_timeout(Some(cfg.read_timeout));
        conn.simple_command_sql("SET SESSION session_track_state_change = ON")
            .await?;
        conn.dirty = false;
        Ok(conn)
    }

    async fn handshake(&mut self, cfg: &BackendConfig) -> Result<(), BackendError> {
        let (seq, p) = self.r.read().await?;
        if p.first() == Some(&0xFF) {
            return Err(BackendError::Server(parse_err(p)?));
        }
        let mut rd = Reader::new(p);
        if rd.u8()? != 10 {
            return Err(BackendError::Protocol(
                "unsupported handshake version".into(),
            ));
        }
        self.server_version = String::from_utf8_lossy(rd.nul_str()).into_owned();
        self.connection_id = rd.u32()?;
        let mut nonce = rd.take(8)?.to_vec();
        rd.skip(1)?;
        let caps_lo = rd.u16()? as u32;
        let _charset = rd.u8()?;
        self.status = rd.u16()?;
        let caps_hi = rd.u16()? as u32;
        let server_caps = CapabilityFlags::from_bits_truncate(caps_lo | (caps_hi << 16));
        let auth_len = rd.u8()? as usize;
        rd.skip(10)?;
        if server_caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let n = auth_len.saturating_sub(8).max(13);
            let part2 = rd.take(n.min(rd.remaining()))?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            nonce.extend_from_slice(part2);
        }
        let plugin = String::from_utf8_lossy(rd.nul_str()).into_owned();
        if !server_caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            return Err(BackendError::Protocol(
                "backend does not support CLIENT_DEPRECATE_EOF (MySQL >= 5.7.5 / MariaDB >= 10.2 required)".into(),
            ));
        }
        let mut caps = client_caps();
        if cfg.db.is_some() {
            caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        }
        caps &= server_caps;
        self.caps = caps;

        let native = "mysql_native_password";
        let auth = if plugin == native || plugin.is_empty() {
            mysql_common::scramble::scramble_native(&nonce, cfg.password.as_bytes())
                .map(|a| a.to_vec())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.w.set_seq(seq.wrapping_add(1));
        let start = self.w.begin_packet();
        {
            let b = self.w.buf_mut();
            b.extend_from_slice(&caps.bits().to_le_bytes());
            b.extend_from_slice(&(1u32 << 30).to_le_bytes());
            b.push(45);
            b.extend_from_slice(&[0; 23]);
            b.extend_from_slice(cfg.user.as_bytes());
            b.push(0);
            crate::proto::put_lenenc_str(b, &auth);
            if let Some(db) = &cfg.db {
                b.extend_from_slice(db.as_bytes());
                b.push(0);
            }
            b.extend_from_slice(native.as_bytes());
            b.push(0);
        }
        self.w.end_packet(start);
        self.w.flush().await?;
        loop {
            let (seq, p) = self.r.read().await?;
            match p.first() {
                Some(0x00) => {
                    let ok = OkPacket::parse(p, self.caps)?;
                    self.status = ok.status;
                    self.schema = cfg.db.clone();
                    return Ok(());
                }
                Some(0xFF) => {
                    let e = parse_err(p)?;
                    return Err(BackendError::Auth(e.to_string()));
                }
                Some(0xFE) => {
                    let mut rd = Reader::new(&p[1..]);
                    let plugin = String::from_utf8_lossy(rd.nul_str()).into_owned();
                    let data = rd.rest();
                    let data = data.strip_suffix(&[0]).unwrap_or(data);
                    if plugin != native {
                        return Err(BackendError::Auth(format!(
                            "backend asks for auth plugin {plugin}; only mysql_native_password is supported"
                        )));
                    }
                    let resp =
                        mysql_common::scramble::scramble_native(data, cfg.password.as_bytes())
                            .map(|a| a.to_vec())
                            .unwrap_or_default();
                    self.w.set_seq(seq.wrapping_add(1));
                    self.w.write_packet(&resp);
                    self.w.flush().await?;
                }
                _ => {
                    return Err(BackendError::Auth(
                        "unsupported authentication exchange (only mysql_native_password)".into(),
                    ));
                }
            }
        }
    }

    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }
    pub fn server_version(&self) -> &str {
        &self.server_version
    }
    /// Status flags from the backend's last OK/EOF.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// Whether a transaction is open, or begun by a queued `BEGIN` that the
    /// next command will carry.
    pub fn in_transaction(&self) -> bool {
        self.pending_begin || self.status & IN_TRANS != 0
    }
    pub fn autocommit(&self) -> bool {
        self.status & AUTOCOMMIT != 0
    }
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
    pub fn is_broken(&self) -> bool {
        self.broken
    }
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
    /// Whether the connection must stay with its session: open transaction,
    /// autocommit off, or changed session state.
    pub fn needs_pinning(&self) -> bool {
        self.in_transaction() || !self.autocommit() || self.dirty
    }
    /// Clean enough to hand to another session as is.
    pub fn is_reusable(&self) -> bool {
        !self.broken && !self.needs_pinning() && !self.r.has_buffered()
    }

    fn fail<E: Into<BackendError>>(&mut self, e: E) -> BackendError {
        self.broken = true;
        e.into()
    }

    fn note_ok(&mut self, ok: &OkPacket) {
        self.status = ok.status;
        if ok.status & STATE_CHANGED != 0 {
            self.dirty = true;
            if let Some(schema) = session_schema(&ok.session_state) {
                self.schema = Some(schema);
            }
        }
    }

    fn start_command(&mut self, cmd: u8) -> usize {
        self.last_used = Instant::now();
        self.w.set_seq(0);
        let start = self.w.begin_packet();
        self.w.buf_mut().push(cmd);
        start
    }

    async fn send_command(&mut self, cmd: u8, arg: &[u8]) -> Result<(), BackendError> {
        if self.broken {
            return Err(BackendError::Protocol("connection is broken".into()));
        }
        let start = self.start_command(cmd);
        self.w.buf_mut().extend_from_slice(arg);
        self.w.end_packet(start);
        if let Err(e) = self.w.flush().await {
            return Err(self.fail(e));
        }
        self.finish_pending_begin().await
    }

    /// Queues `sql` (a plain `BEGIN`, which can only fail when the
    /// connection does) to go out with the next command in one write,
    /// saving the round trip a separate `BEGIN` costs. Until then the
    /// connection counts as in a transaction, so whoever holds it commits,
    /// rolls back or resets it as for a begun one.
    pub fn queue_begin(&mut self, sql: &str) {
        if self.pending_begin {
            return;
        }
        let start = self.start_command(0x03);
        self.w.buf_mut().extend_from_slice(sql.as_bytes());
        self.w.end_packet(start);
        self.pending_begin = true;
    }

    /// Reads the answer to a queued `BEGIN` once the command sent after it
    /// is on its way. Should the `BEGIN` fail anyway, that command's answer
    /// is still unread: the connection cannot be reused.
    async fn finish_pending_begin(&mut self) -> Result<(), BackendError> {
        if !self.pending_begin {
            return Ok(());
        }
        self.pending_begin = false;
        match self.read_ok().await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Reads one packet, marking the connection broken on failure.
    async fn read(&mut self) -> Result<&[u8], BackendError> {
        match self.r.read().await {
            Ok((_, p)) => Ok(p),
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// Reads an OK or ERR answer.
    async fn read_ok(&mut self) -> Result<OkPacket, BackendError> {
        let caps = self.caps;
        let p = self.read().await?;
        match p.first() {
            Some(0x00) | Some(0xFE) => {
                let ok = OkPacket::parse(p, caps)?;
                self.note_ok(&ok);
                Ok(ok)
            }
            Some(0xFF) => Err(BackendError::Server(parse_err(p)?)),
            _ => Err(self.fail(BackendError::Protocol("expected OK or ERR".into()))),
        }
    }

    async fn simple_command_sql(&mut self, sql: &str) -> Result<(), BackendError> {
        self.query_rows(sql).await.map(|_| ())
    }

    pub async fn ping(&mut self) -> Result<(), BackendError> {
        self.send_command(0x0E, &[]).await?;
        self.read_ok().await.map(|_| ())
    }

    /// COM_INIT_DB. Our own schema switch does not make the connection dirty:
    /// the schema is tracked and re-set by whoever uses it next.
    pub async fn init_db(&mut self, db: &str) -> Result<(), BackendError> {
        let was_dirty = self.dirty;
        self.send_command(0x02, db.as_bytes()).await?;
        self.read_ok().await?;
        self.dirty = was_dirty;
        self.schema = Some(db.to_string());
        Ok(())
    }

    /// COM_RESET_CONNECTION: rolls back and drops all session state,
    /// including prepared statements; then restores what `connect` set up.
    pub async fn reset(&mut self, default_db: Option<&str>) -> Result<(), BackendError> {
        self.send_command(0x1F, &[]).await?;
        self.read_ok().await?;
        self.stmts.clear();
        self.stmt_order.clear();
        self.simple_command_sql("SET SESSION session_track_state_change = ON")
            .await?;
        if let Some(db) = default_db
            && self.schema.as_deref() != Some(db)
        {
            self.init_db(db).await?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Runs a text query and forwards its result packets to the client
    /// unchanged (apart from sequence ids and end-of-result markers). Backend
    /// ERR packets are forwarded too and count as a complete response.
    pub async fn query_into(
        &mut self,
        sql: &str,
        out: &mut Response<'_>,
    ) -> Result<(), BackendError> {
        self.send_command(0x03, sql.as_bytes()).await?;
        self.forward_response(out, false).await
    }

    /// Executes a statement prepared on this connection, forwarding the
    /// binary rows raw. Parameter types are always sent, so the statement
    /// may have been executed through another client before.
    pub async fn execute_into(
        &mut self,
        stmt: &BackendStmt,
        params: &[Param<'_>],
        out: &mut Response<'_>,
    ) -> Result<(), BackendError> {
        self.send_execute(stmt, params).await?;
        self.forward_response(out, true).await
    }

    async fn send_execute(
        &mut self,
        stmt: &BackendStmt,
        params: &[Param<'_>],
    ) -> Result<(), BackendError> {
        if self.broken {
            return Err(BackendError::Protocol("connection is broken".into()));
        }
        if params.len() != stmt.params.len() {
            return Err(BackendError::Server(GateError::wrong_arguments(
                "mysqld_stmt_execute",
            )));
        }
        let start = self.start_command(0x17);
        let b = self.w.buf_mut();
        b.extend_from_slice(&stmt.id.to_le_bytes());
        b.push(0); // CURSOR_TYPE_NO_CURSOR
        b.extend_from_slice(&1u32.to_le_bytes());
        if !params.is_empty() {
            let bm = b.len();
            b.resize(bm + params.len().div_ceil(8), 0);
            for (i, p) in params.iter().enumerate() {
                if p.is_null() {
                    b[bm + i / 8] |= 1 << (i % 8);
                }
            }
            b.push(1);
            for p in params {
                b.extend_from_slice(&p.type_bytes());
            }
            for p in params {
                p.encode(b);
            }
        }
        self.w.end_packet(start);
        if let Err(e) = self.w.flush().await {
            return Err(self.fail(e));
        }
        self.finish_pending_begin().await
    }

    /// The response state machine shared by COM_QUERY and COM_STMT_EXECUTE.
    /// The backend always speaks DEPRECATE_EOF; the client may not, and rows
    /// are re-encoded only when the client expects the other row format.
    async fn forward_response(
        &mut self,
        out: &mut Response<'_>,
        rows_binary: bool,
    ) -> Result<(), BackendError> {
        let caps = self.caps;
        let convert = out.is_binary() != rows_binary;
        let client = |e: GateError| BackendError::Client(e);
        loop {
            let p = match self.r.read().await {
                Ok((_, p)) => p,
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            };
            match p.first() {
                Some(0x00) => {
                    let ok =
                        OkPacket::parse(p, caps).map_err(|e| BackendError::Protocol(e.0.into()));
                    let ok = match ok {
                        Ok(ok) => ok,
                        Err(e) => return Err(self.fail(e)),
                    };
                    self.note_ok(&ok);
                    let r = out
                        .write_ok(
                            0,
                            ok.affected_rows,
                            ok.last_insert_id,
                            ok.status,
                            ok.warnings,
                            &ok.info,
                        )
                        .await;
                    if let Err(e) = r {
                        self.broken = true;
                        return Err(client(e));
                    }
                    if ok.status & MORE_RESULTS == 0 {
                        return Ok(());
                    }
                }
                Some(0xFF) => {
                    let r = out.raw_packet(p).await;
                    if let Err(e) = r {
                        self.broken = true;
                        return Err(client(e));
                    }
                    out.raw_error_done(p);
                    return Ok(());
                }
                Some(0xFB) => {
                    // LOCAL INFILE request: refuse by sending an empty file
                    self.w.set_seq(2);
                    self.w.write_packet(&[]);
                    if let Err(e) = self.w.flush().await {
                        return Err(self.fail(e));
                    }
                }
                None => return Err(self.fail(BackendError::Protocol("empty packet".into()))),
                Some(_) => {
                    let ncols = match Reader::new(p).lenenc() {
                        Ok(n) => n as usize,
                        Err(e) => return Err(self.fail(e)),
                    };
                    if convert {
                        self.forward_converted(out, ncols, rows_binary).await?;
                        if self.status & MORE_RESULTS == 0 {
                            return Ok(());
                        }
                        continue;
                    }
                    if let Err(e) = out.raw_packet(p).await {
                        self.broken = true;
                        return Err(client(e));
                    }
                    let mut left = ncols;
                    while left > 0 {
                        // column definitions already buffered move in one copy
                        let (run, n) = self.r.buffered_run(left, |_| true);
                        if n > 0 {
                            let len = run.len();
                            if let Err(e) = out.raw_frames(run).await {
                                self.broken = true;
                                return Err(client(e));
                            }
                            self.r.consume(len);
                            left -= n;
                            continue;
                        }
                        let p = match self.r.read().await {
                            Ok((_, p)) => p,
                            Err(e) => {
                                self.broken = true;
                                return Err(e.into());
                            }
                        };
                        if let Err(e) = out.raw_packet(p).await {
                            self.broken = true;
                            return Err(client(e));
                        }
                        left -= 1;
                    }
                    if let Err(e) = out.end_of_columns(self.status).await {
                        self.broken = true;
                        return Err(client(e));
                    }
                    loop {
                        // so do rows: everything up to the end marker (OK
                        // or ERR, which start with 0xFE / 0xFF; a row
                        // never does unless it spans several frames)
                        let (run, n) = self
                            .r
                            .buffered_run(usize::MAX, |p| !matches!(p.first(), Some(0xFE | 0xFF)));
                        if n > 0 {
                            let len = run.len();
                            if let Err(e) = out.raw_frames(run).await {
                                self.broken = true;
                                return Err(client(e));
                            }
                            self.r.consume(len);
                        }
                        let p = match self.r.read().await {
                            Ok((_, p)) => p,
                            Err(e) => {
                                self.broken = true;
                                return Err(e.into());
                            }
                        };
                        match p.first() {
                            Some(0xFE) if p.len() < MAX_FRAME => {
                                let ok = match OkPacket::parse(p, caps) {
                                    Ok(ok) => ok,
                                    Err(e) => return Err(self.fail(e)),
                                };
                                self.note_ok(&ok);
                                let r = out
                                    .end_of_rows(
                                        ok.affected_rows,
                                        ok.last_insert_id,
                                        ok.status,
                                        ok.warnings,
                                        &ok.info,
                                    )
                                    .await;
                                if let Err(e) = r {
                                    self.broken = true;
                                    return Err(client(e));
                                }
                                break;
                            }
                            Some(0xFF) => {
                                if let Err(e) = out.raw_packet(p).await {
                                    self.broken = true;
                                    return Err(client(e));
                                }
                                out.raw_error_done(p);
                                return Ok(());
                            }
                            _ => {
                                if let Err(e) = out.raw_packet(p).await {
                                    self.broken = true;
                                    return Err(client(e));
                                }
                            }
                        }
                    }
                    if self.status & MORE_RESULTS == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Forwards one result set whose row format differs from what the client
    /// expects, decoding and re-encoding each row.
    async fn forward_converted(
        &mut self,
        out: &mut Response<'_>,
        ncols: usize,
        rows_binary: bool,
    ) -> Result<(), BackendError> {
        let mut cols = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let p = self.read().await?;
            match Column::parse(p) {
                Ok(c) => cols.push(c),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let client = |s: &mut Self, e: GateError| {
            s.broken = true;
            BackendError::Client(e)
        };
        if let Err(e) = out.begin_result_set(&cols).await {
            return Err(client(self, e));
        }
        loop {
            let caps = self.caps;
            let p = self.read().await?;
            match p.first() {
                Some(0xFE) if p.len() < MAX_FRAME => {
                    let ok = match OkPacket::parse(p, caps) {
                        Ok(ok) => ok,
                        Err(e) => return Err(self.fail(e)),
                    };
                    self.note_ok(&ok);
                    if let Err(e) = out
                        .end_of_rows(0, 0, ok.status, ok.warnings, &ok.info)
                        .await
                    {
                        return Err(client(self, e));
                    }
                    return Ok(());
                }
                Some(0xFF) => {
                    if let Err(e) = out.raw_packet(p).await {
                        return Err(client(self, e));
                    }
                    out.raw_error_done(p);
                    self.status &= !MORE_RESULTS;
                    return Ok(());
                }
                _ => {
                    let row = if rows_binary {
                        parse_binary_row(p, &cols)
                    } else {
                        parse_text_row(p, ncols)
                    };
                    let row = match row {
                        Ok(r) => r,
                        Err(e) => return Err(self.fail(e)),
                    };
                    if let Err(e) = out.row(&row).await {
                        return Err(client(self, e));
                    }
                }
            }
        }
    }

    /// Runs a text query and decodes its (first) result; rows stay bytes as
    /// the text protocol delivers them.
    pub async fn query_rows(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.send_command(0x03, sql.as_bytes()).await?;
        self.read_result(false).await
    }

    /// Executes a prepared statement and decodes its (first) result.
    pub async fn execute_rows(
        &mut self,
        stmt: &BackendStmt,
        params: &[Param<'_>],
    ) -> Result<QueryResult, BackendError> {
        self.send_execute(stmt, params).await?;
        self.read_result(true).await
    }

    async fn read_result(&mut self, binary: bool) -> Result<QueryResult, BackendError> {
        let mut first: Option<QueryResult> = None;
        loop {
            let caps = self.caps;
            let p = self.read().await?;
            let mut res = QueryResult::default();
            match p.first() {
                Some(0x00) => {
                    let ok = OkPacket::parse(p, caps)?;
                    self.note_ok(&ok);
                    res.affected_rows = ok.affected_rows;
                    res.last_insert_id = ok.last_insert_id;
                    res.status = ok.status;
                    res.warnings = ok.warnings;
                    res.info = String::from_utf8_lossy(&ok.info).into_owned();
                }
                Some(0xFF) => {
                    let e = parse_err(p)?;
                    return Err(BackendError::Server(e));
                }
                None => return Err(self.fail(BackendError::Protocol("empty packet".into()))),
                Some(_) => {
                    let ncols = Reader::new(p).lenenc()? as usize;
                    for _ in 0..ncols {
                        let p = self.read().await?;
                        res.columns.push(Column::parse(p)?);
                    }
                    loop {
                        let p = self.read().await?;
                        match p.first() {
                            Some(0xFE) if p.len() < MAX_FRAME => {
                                let ok = OkPacket::parse(p, caps)?;
                                self.note_ok(&ok);
                                res.status = ok.status;
                                res.warnings = ok.warnings;
                                break;
                            }
                            Some(0xFF) => {
                                let e = parse_err(p)?;
                                return Err(BackendError::Server(e));
                            }
                            _ => {
                                let row = if binary {
                                    parse_binary_row(p, &res.columns)?
                                } else {
                                    parse_text_row(p, ncols)?
                                };
                                res.rows.push(row);
                            }
                        }
                    }
                }
            }
            let more = res.status & MORE_RESULTS != 0;
            if first.is_none() {
                first = Some(res);
            }
            if !more {
                return Ok(first.unwrap_or_default());
            }
        }
    }

    /// Prepares `sql` unless this connection already has it prepared.
    pub async fn prepare(&mut self, sql: &str) -> Result<Arc<BackendStmt>, BackendError> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        self.send_command(0x16, sql.as_bytes()).await?;
        let p = self.read().await?;
        if p.first() == Some(&0xFF) {
            return Err(BackendError::Server(parse_err(p)?));
        }
        let mut rd = Reader::new(p);
        rd.skip(1)?;
        let id = rd.u32()?;
        let ncols = rd.u16()? as usize;
        let nparams = rd.u16()? as usize;
        let mut params = Vec::with_capacity(nparams);
        for _ in 0..nparams {
            let p = self.read().await?;
            params.push(Column::parse(p)?);
        }
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let p = self.read().await?;
            columns.push(Column::parse(p)?);
        }
        let stmt = Arc::new(BackendStmt {
            id,
            params,
            columns,
        });
        if self.stmts.len() >= STMT_CACHE_MAX && !self.stmt_order.is_empty() {
            let old = self.stmt_order.remove(0);
            if let Some(s) = self.stmts.remove(&old) {
                self.close_stmt_id(s.id).await?;
            }
        }
        self.stmts.insert(sql.to_string(), stmt.clone());
        self.stmt_order.push(sql.to_string());
        Ok(stmt)
    }

    async fn close_stmt_id(&mut self, id: u32) -> Result<(), BackendError> {
        self.send_command(0x19, &id.to_le_bytes()).await
    }

    /// Closes the statement prepared for `sql` on this connection, if any.
    pub async fn close_stmt(&mut self, sql: &str) -> Result<(), BackendError> {
        if let Some(s) = self.stmts.remove(sql) {
            self.stmt_order.retain(|x| x != sql);
            self.close_stmt_id(s.id).await?;
        }
        Ok(())
    }

    /// COM_FIELD_LIST, for clients that still send it.
    pub async fn field_list(
        &mut self,
        table: &str,
        wildcard: &str,
    ) -> Result<Vec<Column>, BackendError> {
        let mut arg = Vec::with_capacity(table.len() + wildcard.len() + 1);
        arg.extend_from_slice(table.as_bytes());
        arg.push(0);
        arg.extend_from_slice(wildcard.as_bytes());
        self.send_command(0x04, &arg).await?;
        let caps = self.caps;
        let mut cols = Vec::new();
        loop {
            let p = self.read().await?;
            match p.first() {
                Some(0xFF) => return Err(BackendError::Server(parse_err(p)?)),
                Some(0xFE) if p.len() < MAX_FRAME => {
                    let ok = OkPacket::parse(p, caps)?;
                    self.status = ok.status;
                    return Ok(cols);
                }
                _ => cols.push(Column::parse(p)?),
            }
        }
    }
}

/// Extracts the new default schema from a session-state-change block.
fn session_schema(block: &[u8]) -> Option<String> {
    let mut r = Reader::new(block);
    let mut schema = None;
    while !r.is_empty() {
        let ty = r.u8().ok()?;
        let data = r.lenenc_str().ok()?;
        if ty == 1 {
            let name = Reader::new(data).lenenc_str().ok()?;
            schema = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    schema
}

/// Sizing and health-check policy of a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open at once (checked out plus idle).
    pub max_size: usize,
    /// How long a session waits for a free connection before getting 1040.
    pub acquire_timeout: Duration,
    /// Idle connections older than this are pinged before reuse (the server
    /// may have closed them: wait_timeout, restart).
    pub ping_after_idle: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 64,
            acquire_timeout: Duration::from_secs(5),
            ping_after_idle: Duration::from_secs(1),
        }
    }
}

struct PoolInner {
    backend: BackendConfig,
    cfg: PoolConfig,
    /// Boxed as [`PooledConn`] holds them, so that checking out and in
    /// moves a pointer.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<BackendConn>>>,
    permits: Arc<Semaphore>,
}

/// A bounded pool of connections to one backend endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    pub fn new(backend: BackendConfig, cfg: PoolConfig) -> Pool {
        let permits = Arc::new(Semaphore::new(cfg.max_size.max(1)));
        Pool {
            inner: Arc::new(PoolInner {
                backend,
                cfg,
                idle: Mutex::new(Vec::new()),
                permits,
            }),
        }
    }

    pub fn backend(&self) -> &BackendConfig {
        &self.inner.backend
    }

    pub fn idle_count(&self) -> usize {
        self.inner.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Connections currently checked out.
    pub fn in_use(&self) -> usize {
        self.inner.cfg.max_size.max(1) - self.inner.permits.available_permits()
    }

    /// A connection, reused when one is idle. Waits at most the acquire
    /// timeout for a free slot; connects within the connect timeout.
    pub async fn get(&self) -> Result<PooledConn, BackendError> {
        let inner = &self.inner;
        let permit = match tokio::time::timeout(
            inner.cfg.acquire_timeout,
            inner.permits.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => return Err(BackendError::PoolTimeout(inner.cfg.acquire_timeout)),
        };
        let here = std::thread::current().id();
        loop {
            let max = inner.cfg.max_size.max(1);
            let busy = max - inner.permits.available_permits();
            let idle = inner.idle.lock().ok().and_then(|mut v| {
                // room for a new connection within max_size?
                let may_connect = v.len() + busy <= max;
                take_idle(&mut v, here, may_connect)
            });
            let Some(mut conn) = idle else { break };
            if conn.last_used.elapsed() >= inner.cfg.ping_after_idle && conn.ping().await.is_err() {
                continue;
            }
            return Ok(PooledConn {
                conn: Some(conn),
                pool: inner.clone(),
                _permit: permit,
            });
        }
        let conn = Box::new(BackendConn::connect(&inner.backend).await?);
        Ok(PooledConn {
            conn: Some(conn),
            pool: inner.clone(),
            _permit: permit,
        })
    }
}

/// An idle connection for a session on thread `here`: one made on this
/// thread if any (its socket is polled by this thread's event loop, see
/// [`crate::service::GateOptions::io_threads`]; another thread's would
/// cost a cross-thread wake-up per response), else, when no new one may be
/// opened, any.
#[allow(clippy::vec_box)] // the pool's list, see PoolInner::idle
fn take_idle(
    idle: &mut Vec<Box<BackendConn>>,
    here: std::thread::ThreadId,
    may_connect: bool,
) -> Option<Box<BackendConn>> {
    if let Some(i) = idle.iter().rposition(|c| c.home == here) {
        return Some(idle.remove(i));
    }
    if may_connect { None } else { idle.pop() }
}

/// A checked-out connection. Dropping it returns it to the pool when it is
/// clean and discards it otherwise; [`PooledConn::release`] also resets dirty
/// connections so that they can be reused.
pub struct PooledConn {
    /// Boxed: sessions move their connections around on every statement,
    /// and a connection with its buffers is several hundred bytes.
    conn: Option<Box<BackendConn>>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    /// Gives the connection back, first rolling back / resetting it if the
    /// session left a transaction open or changed session state; a
    /// connection that fails the reset is closed.
    pub async fn release(mut self) {
        if let Some(mut c) = self.conn.take() {
            if !c.broken && c.needs_pinning() {
                let db = self.pool.backend.db.clone();
                if c.reset(db.as_deref()).await.is_err() {
                    return;
                }
            }
            self.put_back(c);
        }
    }

    fn put_back(&self, mut c: Box<BackendConn>) {
        // the next user may run on another runtime than this one
        c.r.disarm();
        if c.is_reusable()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(c);
        }
    }
}

impl std::ops::Deref for PooledConn {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        // `conn` is only None inside release/drop, which consume self
        self.conn.as_ref().expect("pooled connection present")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn.as_mut().expect("pooled connection present")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.put_back(c);
        }
    }
}
