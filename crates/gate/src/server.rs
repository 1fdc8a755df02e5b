//! The client-facing MySQL server: handshake, authentication, command
//! dispatch, and the [`Response`] through which a [`SessionHandler`] answers.
//!
//! Output is buffered per command and flushed once, after the handler
//! returns, so a typical response costs one `write` syscall.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::auth::{Authenticator, NATIVE_PASSWORD, new_scramble};
use crate::error::GateError;
use crate::fxhash::FxHashMap;
use crate::metrics::GateMetrics;
use crate::packet::{PacketError, PacketReader, PacketWriter};
use crate::params::{Param, StmtId, StmtState, parse_execute_params};
use crate::proto::{
    CapabilityFlags, Column, Reader, StatusFlags, Value, put_binary_row, put_eof, put_err, put_ok,
    put_text_value,
};

/// The writer every client connection uses; boxed so that [`Response`] needs
/// no type parameter in the handler trait.
pub type ClientWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Capabilities the gate offers. No SSL, no compression, no multi-statements,
/// no session tracking (so OK packets keep the classic shape).
///
/// FOUND_ROWS is offered because JDBC and mysql_async ask for it: backend
/// connections are pooled without it, and the executor turns the backend's
/// "Rows matched" into the affected-row count for clients that negotiated it.
/// (`INSERT ... ON DUPLICATE KEY UPDATE` that changes nothing still reports
/// 0, not 1, to such clients; the OK packet does not carry the difference.)
pub fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_FOUND_ROWS
}

/// Bits of the status word that describe the session and so come from the
/// handler, whatever a backend reported.
const SESSION_STATUS_BITS: u16 = StatusFlags::SERVER_STATUS_IN_TRANS.bits()
    | StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits()
    | StatusFlags::SERVER_STATUS_IN_TRANS_READONLY.bits();

const MORE_RESULTS: u16 = StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits();

/// Who connected, handed to the [`HandlerFactory`] once authentication succeeded.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub connection_id: u32,
    pub capabilities: CapabilityFlags,
}

/// What a prepare reports to the client; the server assigns the statement id.
#[derive(Debug, Clone, Default)]
pub struct PreparedMeta {
    /// One definition per `?`; clients only count them, so placeholders
    /// (`Column::new("?", MYSQL_TYPE_VAR_STRING)`) are fine.
    pub params: Vec<Column>,
    /// Result columns, empty for statements without a result set.
    pub columns: Vec<Column>,
}

/// The per-connection brain behind the protocol: the router implements it to
/// send each statement to the right shards; [`crate::PassthroughHandler`]
/// forwards everything to one backend.
///
/// Errors returned are sent to the client as ERR packets and the connection
/// stays open; a handler that already wrote a complete response must not
/// return an error.
#[async_trait]
pub trait SessionHandler: Send {
    async fn query(&mut self, sql: &str, out: &mut Response<'_>) -> Result<(), GateError>;

    /// `stmt` is the id the client will use; keep whatever the statement
    /// needs under it.
    async fn prepare(&mut self, stmt: StmtId, sql: &str) -> Result<PreparedMeta, GateError>;

    /// `params` has exactly as many entries as the prepare reported, with
    /// types resolved (re-executions without re-sent types reuse the last ones).
    async fn execute(
        &mut self,
        stmt: StmtId,
        params: &[Param<'_>],
        out: &mut Response<'_>,
    ) -> Result<(), GateError>;

    async fn close_stmt(&mut self, stmt: StmtId);

    /// COM_STMT_RESET: the server already dropped long data; cursors, if a
    /// handler ever keeps any, are dropped here.
    async fn reset_stmt(&mut self, _stmt: StmtId) -> Result<(), GateError> {
        Ok(())
    }

    /// COM_FIELD_LIST (sent by the `mariadb` CLI for tab completion).
    async fn field_list(
        &mut self,
        _table: &str,
        _wildcard: &str,
    ) -> Result<Vec<Column>, GateError> {
        Ok(Vec::new())
    }

    async fn init_db(&mut self, db: &str) -> Result<(), GateError>;

    /// COM_RESET_CONNECTION: roll back, forget session state and prepared
    /// statements (the server forgets its side of them too).
    async fn reset(&mut self) -> Result<(), GateError>;

    /// Current SERVER_STATUS_AUTOCOMMIT / IN_TRANS / IN_TRANS_READONLY bits,
    /// put into every OK/EOF the client sees.
    fn status_flags(&self) -> u16;

    /// The client is gone (or changed user): roll back backend work and give
    /// connections back.
    async fn on_disconnect(&mut self);
}

/// Makes one [`SessionHandler`] per authenticated client connection.
#[async_trait]
pub trait HandlerFactory: Send + Sync {
    /// An error (say, 1049 for an unknown database) is sent to the client and
    /// the connection is closed, as MySQL does for a bad handshake.
    async fn create(&self, session: &SessionInfo) -> Result<Box<dyn SessionHandler>, GateError>;
}

/// Lets a handler answer one command. The encoding of rows (text for
/// COM_QUERY, binary for COM_STMT_EXECUTE) and of end-of-result markers
/// (EOF or OK, per CLIENT_DEPRECATE_EOF) follows the command and the client;
/// raw packets from a backend can be forwarded unchanged.
pub struct Response<'a> {
    w: &'a mut PacketWriter<ClientWrite>,
    caps: CapabilityFlags,
    binary: bool,
    status_hint: u16,
    columns: Vec<Column>,
    in_result_set: bool,
    more_results: bool,
    /// A terminal packet (OK, EOF/OK after rows) has been written and no
    /// further result was announced.
    complete: bool,
    /// Where the status word of the last terminal packet sits in the output
    /// buffer, and the writer's flush count when it was recorded.
    last_status: Option<(usize, u64)>,
    client_failed: bool,
    scratch: Vec<u8>,
    /// The code of the ERR packet that ended the answer, when one did.
    error_code: Option<u16>,
}

impl<'a> Response<'a> {
    fn new(
        w: &'a mut PacketWriter<ClientWrite>,
        caps: CapabilityFlags,
        binary: bool,
        status_hint: u16,
    ) -> Self {
        Response {
            w,
            caps,
            binary,
            status_hint,
            columns: Vec::new(),
            in_result_set: false,
            more_results: false,
            complete: false,
            last_status: None,
            client_failed: false,
            scratch: Vec::new(),
            error_code: None,
        }
    }

    /// True when answering COM_STMT_EXECUTE: rows must be binary-encoded.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The capabilities negotiated with the client.
    pub fn client_capabilities(&self) -> CapabilityFlags {
        self.caps
    }

    pub fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Announces that another result follows the next terminal packet
    /// (multi-result responses).
    pub fn set_more_results(&mut self, more: bool) {
        self.more_results = more;
    }

    /// Whether a full response has been written.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    fn client_lost(&mut self, e: PacketError) -> GateError {
        self.client_failed = true;
        GateError::new(2013, *b"HY000", format!("client connection lost: {e}"))
    }

    async fn make_room(&mut self) -> Result<(), GateError> {
        if let Err(e) = self.w.flush_if_full().await {
            return Err(self.client_lost(e));
        }
        Ok(())
    }

    fn terminal_status(&self, status: u16) -> u16 {
        if self.more_results {
            status | MORE_RESULTS
        } else {
            status & !MORE_RESULTS
        }
    }

    fn after_terminal(&mut self, status_at: usize, status: u16) {
        self.last_status = Some((status_at, self.w.flush_count()));
        self.in_result_set = false;
        self.complete = status & MORE_RESULTS == 0;
        self.more_results = false;
    }

    /// An OK packet (statements without a result set).
    pub async fn ok(
        &mut self,
        affected_rows: u64,
        last_insert_id: u64,
        info: &str,
    ) -> Result<(), GateError> {
        let status = self.terminal_status(self.status_hint);
        self.write_ok(
            0x00,
            affected_rows,
            last_insert_id,
            status,
            0,
            info.as_bytes(),
        )
        .await
    }

    /// A raw OK-shaped packet with explicit fields, for forwarders.
    pub async fn write_ok(
        &mut self,
        header: u8,
        affected_rows: u64,
        last_insert_id: u64,
        status: u16,
        warnings: u16,
        info: &[u8],
    ) -> Result<(), GateError> {
        self.make_room().await?;
        let start = self.w.begin_packet();
        let pos = put_ok(
            self.w.buf_mut(),
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
        );
        self.w.end_packet(start);
        self.after_terminal(pos, status);
        Ok(())
    }

    /// An ERR packet as the final answer (also valid in place of a row).
    pub async fn error(&mut self, e: &GateError) -> Result<(), GateError> {
        self.make_room().await?;
        let start = self.w.begin_packet();
        put_err(self.w.buf_mut(), e.code, &e.sqlstate, &e.message);
        self.w.end_packet(start);
        self.error_code = Some(e.code);
        self.in_result_set = false;
        self.complete = true;
        self.more_results = false;
        Ok(())
    }

    /// Column count and definitions of a decoded result set.
    pub async fn begin_result_set(&mut self, columns: &[Column]) -> Result<(), GateError> {
        self.make_room().await?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        crate::proto::put_lenenc(&mut buf, columns.len() as u64);
        self.w.write_packet(&buf);
        for c in columns {
            buf.clear();
            c.encode(&mut buf);
            self.w.write_packet(&buf);
        }
        self.scratch = buf;
        self.columns.clear();
        self.columns.extend_from_slice(columns);
        self.end_of_columns(self.status_hint).await?;
        self.in_result_set = true;
        Ok(())
    }

    /// One decoded row, encoded as the command requires.
    pub async fn row(&mut self, values: &[Value]) -> Result<(), GateError> {
        if !self.in_result_set {
            return Err(GateError::internal("row written outside a result set"));
        }
        if values.len() != self.columns.len() {
            return Err(GateError::internal(
                "row width does not match the column count",
            ));
        }
        self.make_room().await?;
        let start = self.w.begin_packet();
        let buf = self.w.buf_mut();
        if self.binary {
            put_binary_row(buf, values, &self.columns);
        } else {
            for (v, c) in values.iter().zip(&self.columns) {
                put_text_value(buf, v, Some(c));
            }
        }
        self.w.end_packet(start);
        Ok(())
    }

    /// Ends a decoded result set.
    pub async fn end_result_set(&mut self, warnings: u16) -> Result<(), GateError> {
        let status = self.terminal_status(self.status_hint);
        self.end_of_rows(0, 0, status, warnings, b"").await
    }

    /// Writes a whole decoded result set.
    pub async fn result_set(
        &mut self,
        columns: &[Column],
        rows: &[Vec<Value>],
    ) -> Result<(), GateError> {
        self.begin_result_set(columns).await?;
        for r in rows {
            self.row(r).await?;
        }
        self.end_result_set(0).await
    }

    /// Forwards one packet payload as-is (column counts, column definitions,
    /// rows, ERR packets), with the next sequence id.
    pub async fn raw_packet(&mut self, payload: &[u8]) -> Result<(), GateError> {
        self.make_room().await?;
        self.w.write_packet(payload);
        Ok(())
    }

    /// Forwards a run of whole frames from a backend (see
    /// [`crate::packet::PacketReader::buffered_run`]), renumbered.
    pub async fn raw_frames(&mut self, frames: &[u8]) -> Result<(), GateError> {
        self.make_room().await?;
        self.w.append_frames(frames);
        Ok(())
    }

    /// Records that a forwarded ERR packet (`payload`) ended the response.
    pub fn raw_error_done(&mut self, payload: &[u8]) {
        self.error_code = payload.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
        self.in_result_set = false;
        self.complete = true;
    }

    /// The MySQL error code that ended this answer, if it ended in one.
    pub fn error_code(&self) -> Option<u16> {
        self.error_code
    }

    /// The marker after column definitions: an EOF packet for clients
    /// without CLIENT_DEPRECATE_EOF, nothing otherwise.
    pub async fn end_of_columns(&mut self, status: u16) -> Result<(), GateError> {
        if !self.deprecate_eof() {
            self.make_room().await?;
            let start = self.w.begin_packet();
            put_eof(self.w.buf_mut(), 0, status);
            self.w.end_packet(start);
        }
        self.in_result_set = true;
        Ok(())
    }

    /// The marker after the last row: OK with 0xFE header under
    /// CLIENT_DEPRECATE_EOF, else a classic EOF. `status` is written as
    /// given (MORE_RESULTS included).
    pub async fn end_of_rows(
        &mut self,
        affected_rows: u64,
        last_insert_id: u64,
        status: u16,
        warnings: u16,
        info: &[u8],
    ) -> Result<(), GateError> {
        if self.deprecate_eof() {
            return self
                .write_ok(0xFE, affected_rows, last_insert_id, status, warnings, info)
                .await;
        }
        self.make_room().await?;
        let start = self.w.begin_packet();
        let pos = put_eof(self.w.buf_mut(), warnings, status);
        self.w.end_packet(start);
        self.after_terminal(pos, status);
        Ok(())
    }

    /// Puts the handler's session bits into the final terminal packet, if it
    /// is still in the buffer (it always is unless a flush followed it).
    fn patch_final_status(&mut self, session_status: u16) {
        if let Some((pos, flushes)) = self.last_status
            && flushes == self.w.flush_count()
        {
            let old = self.w.read_u16(pos);
            let new = (old & !SESSION_STATUS_BITS) | (session_status & SESSION_STATUS_BITS);
            if new != old {
                self.w.patch_u16(pos, new);
            }
        }
    }
}

/// Settings of the client-facing server.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Reported in the handshake and by `SELECT VERSION()` if the handler
    /// answers it; clients pick features by it.
    pub server_version: String,
    /// Largest packet accepted from a client; larger ones get error 1153 and
    /// the connection is closed, as with mysqld.
    pub max_allowed_packet: usize,
    /// Collation id announced in the handshake (45 = utf8mb4_general_ci).
    pub collation: u8,
    /// Time a client has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Where connections, logins and oversized packets are counted; share
    /// it with the handler factory so statements land in the same place.
    pub metrics: Arc<GateMetrics>,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            server_version: "8.0.40-keyshift".to_string(),
            max_allowed_packet: 64 << 20,
            collation: 45,
            handshake_timeout: Duration::from_secs(10),
            metrics: Arc::default(),
        }
    }
}

/// The gate's protocol server. Holds everything connections share; no
/// process-wide state.
pub struct Gate {
    config: GateConfig,
    auth: Arc<dyn Authenticator>,
    factory: Arc<dyn HandlerFactory>,
    next_connection_id: AtomicU32,
    started: Instant,
    questions: AtomicU64,
    threads: AtomicU64,
}

impl Gate {
    pub fn new(
        config: GateConfig,
        auth: Arc<dyn Authenticator>,
        factory: Arc<dyn HandlerFactory>,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            config,
            auth,
            factory,
            next_connection_id: AtomicU32::new(1),
            started: Instant::now(),
            questions: AtomicU64::new(0),
            threads: AtomicU64::new(0),
        })
    }

    /// Accepts connections until the listener fails; each connection runs in
    /// its own task. Abort the task running this to stop accepting.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends are transient; do not spin
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let gate = self.clone();
            tokio::spawn(async move { gate.handle_connection(stream, peer).await });
        }
    }

    /// Runs one TCP client connection to completion.
    pub async fn handle_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        self.serve_client(r, Box::new(w), peer.ip().to_string())
            .await;
    }

    /// Runs one unix socket client connection to completion. Its peer is
    /// on this host, so it authenticates as `user@localhost`, as with
    /// mysqld.
    pub async fn handle_unix_connection(self: Arc<Self>, stream: UnixStream) {
        let (r, w) = stream.into_split();
        self.serve_client(r, Box::new(w), "localhost".to_string())
            .await;
    }

    /// The connection itself, whatever the transport. Generic over the read
    /// half, so that the hot path (every command is read through it) keeps
    /// static dispatch; the writer is boxed anyway for [`Response`].
    async fn serve_client<R>(self: Arc<Self>, read: R, write: ClientWrite, host: String)
    where
        R: AsyncRead + Send + Unpin,
    {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        self.threads.fetch_add(1, Ordering::Relaxed);
        let metrics = self.config.metrics.clone();
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let reader = PacketReader::new(read, self.config.max_allowed_packet);
        let writer = PacketWriter::new(write);
        let mut conn = Conn {
            gate: self.clone(),
            reader,
            writer,
            caps: CapabilityFlags::empty(),
            id,
            scramble: new_scramble(),
            host,
            user: String::new(),
            stmts: FxHashMap::default(),
            next_stmt: 1,
        };
        let timeout = self.config.handshake_timeout;
        let handler = match tokio::time::timeout(timeout, conn.handshake()).await {
            Ok(Ok(h)) => Some(h),
            Ok(Err(e)) => {
                tracing::debug!(conn = id, "handshake failed: {e}");
                None
            }
            Err(_) => None,
        };
        if let Some(mut handler) = handler {
            if let Err(e) = conn.run(&mut handler).await {
                tracing::debug!(conn = id, "connection ended: {e}");
            }
            handler.on_disconnect().await;
        }
        conn.writer.shutdown().await;
        self.threads.fetch_sub(1, Ordering::Relaxed);
        metrics.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("{0}")]
    Rejected(GateError),
}

/// One client connection; `R` is the read half of its stream (TCP or unix).
struct Conn<R> {
    gate: Arc<Gate>,
    reader: PacketReader<R>,
    writer: PacketWriter<ClientWrite>,
    caps: CapabilityFlags,
    id: u32,
    scramble: [u8; 20],
    host: String,
    user: String,
    stmts: FxHashMap<u32, StmtState>,
    next_stmt: u32,
}

struct HandshakeResponse {
    caps: CapabilityFlags,
    user: String,
    auth: Vec<u8>,
    db: Option<String>,
    plugin: Option<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl<R: AsyncRead + Send + Unpin> Conn<R> {
    async fn send_error(&mut self, e: &GateError) -> Result<(), PacketError> {
        let start = self.writer.begin_packet();
        put_err(self.writer.buf_mut(), e.code, &e.sqlstate, &e.message);
        self.writer.end_packet(start);
        self.writer.flush().await
    }

    fn write_ok_now(&mut self, status: u16) {
        let start = self.writer.begin_packet();
        put_ok(self.writer.buf_mut(), 0, 0, 0, status, 0, b"");
        self.writer.end_packet(start);
    }

    async fn handshake(&mut self) -> Result<Box<dyn SessionHandler>, ConnError> {
        let gate = self.gate.clone();
        let caps = server_capabilities();
        // Protocol::HandshakeV10
        self.writer.set_seq(0);
        let start = self.writer.begin_packet();
        {
            let b = self.writer.buf_mut();
            b.push(10);
            b.extend_from_slice(gate.config.server_version.as_bytes());
            b.push(0);
            b.extend_from_slice(&self.id.to_le_bytes());
            b.extend_from_slice(&self.scramble[..8]);
            b.push(0);
            b.extend_from_slice(&(caps.bits() as u16).to_le_bytes());
            b.push(gate.config.collation);
            b.extend_from_slice(&StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits().to_le_bytes());
            b.extend_from_slice(&((caps.bits() >> 16) as u16).to_le_bytes());
            b.push(21);
            b.extend_from_slice(&[0; 10]);
            b.extend_from_slice(&self.scramble[8..]);
            b.push(0);
            b.extend_from_slice(NATIVE_PASSWORD.as_bytes());
            b.push(0);
        }
        self.writer.end_packet(start);
        self.writer.flush().await?;

        let (seq, payload) = self.reader.read().await?;
        self.writer.set_seq(seq.wrapping_add(1));
        let resp = match parse_handshake_response(payload, caps) {
            Ok(r) => r,
            Err(e) => {
                self.send_error(&e).await?;
                return Err(ConnError::Rejected(e));
            }
        };
        self.caps = resp.caps;
        let auth = self
            .authenticate(&resp.user, resp.plugin.as_deref(), resp.auth)
            .await?;
        if let Err(e) = auth {
            self.send_error(&e).await?;
            return Err(ConnError::Rejected(e));
        }
        self.user = resp.user.clone();
        let info = SessionInfo {
            user: resp.user,
            host: self.host.clone(),
            db: resp.db,
            connection_id: self.id,
            capabilities: self.caps,
        };
        match gate.factory.create(&info).await {
            Ok(h) => {
                self.write_ok_now(h.status_flags());
                self.writer.flush().await?;
                Ok(h)
            }
            Err(e) => {
                self.send_error(&e).await?;
                Err(ConnError::Rejected(e))
            }
        }
    }

    /// Verifies a native-password response, switching the client to
    /// mysql_native_password first when it proposed another plugin. The outer
    /// error means the connection failed; the inner one is an access denial
    /// to report.
    async fn authenticate(
        &mut self,
        user: &str,
        plugin: Option<&str>,
        mut response: Vec<u8>,
    ) -> Result<Result<(), GateError>, ConnError> {
        if plugin.is_some_and(|p| p != NATIVE_PASSWORD) {
            let start = self.writer.begin_packet();
            {
                let b = self.writer.buf_mut();
                b.push(0xFE);
                b.extend_from_slice(NATIVE_PASSWORD.as_bytes());
                b.push(0);
                b.extend_from_slice(&self.scramble);
                b.push(0);
            }
            self.writer.end_packet(start);
            self.writer.flush().await?;
            let (seq, payload) = self.reader.read().await?;
            self.writer.set_seq(seq.wrapping_add(1));
            response = payload.to_vec();
        }
        let ok = match self.gate.auth.lookup(user, &self.host) {
            Some(hash) => hash.verify(&self.scramble, &response),
            None => false,
        };
        if ok {
            Ok(Ok(()))
        } else {
            self.gate
                .config
                .metrics
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            Ok(Err(GateError::access_denied(
                user,
                &self.host,
                !response.is_empty(),
            )))
        }
    }

    async fn run(&mut self, handler: &mut Box<dyn SessionHandler>) -> Result<(), ConnError> {
        loop {
            let (seq, payload) = match self.reader.read().await {
                Ok(x) => x,
                Err(PacketError::Closed) => return Ok(()),
                Err(PacketError::TooLarge { .. }) => {
                    self.gate
                        .config
                        .metrics
                        .too_large
                        .fetch_add(1, Ordering::Relaxed);
                    self.writer.set_seq(1);
                    let _ = self.send_error(&GateError::packet_too_large()).await;
                    self.drain().await;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            self.writer.set_seq(seq.wrapping_add(1));
            self.gate.questions.fetch_add(1, Ordering::Relaxed);
            let Some((&cmd, body)) = payload.split_first() else {
                self.send_error(&GateError::malformed("empty command"))
                    .await?;
                continue;
            };
            let caps = self.caps;
            match cmd {
                0x01 => return Ok(()), // COM_QUIT
                0x03 => {
                    let status = handler.status_flags();
                    let mut out = Response::new(&mut self.writer, caps, false, status);
                    let r = match std::str::from_utf8(body) {
                        Ok(sql) => handler.query(sql, &mut out).await,
                        Err(_) => Err(GateError::new(
                            1300,
                            *b"HY000",
                            "Invalid utf8mb4 character string in statement",
                        )),
                    };
                    finish(out, r, handler.as_ref())?;
                }
                0x17 => {
                    // COM_STMT_EXECUTE
                    let mut r = Reader::new(body);
                    let header = (r.u32(), r.u8(), r.u32());
                    let (Ok(id), Ok(_flags), Ok(_iterations)) = header else {
                        self.send_error(&GateError::malformed("short COM_STMT_EXECUTE"))
                            .await?;
                        continue;
                    };
                    let status = handler.status_flags();
                    let Some(st) = self.stmts.get_mut(&id) else {
                        self.send_error(&GateError::unknown_stmt(id, "mysqld_stmt_execute"))
                            .await?;
                        continue;
                    };
                    let mut params: Vec<Param<'_>> = Vec::with_capacity(st.param_count);
                    let parsed = parse_execute_params(&mut r, st, &mut params);
                    let mut out = Response::new(&mut self.writer, caps, true, status);
                    let res = match parsed {
                        Ok(()) => handler.execute(StmtId(id), &params, &mut out).await,
                        Err(e) => Err(e),
                    };
                    finish(out, res, handler.as_ref())?;
                    drop(params);
                    if let Some(st) = self.stmts.get_mut(&id) {
                        for d in st.long_data.iter_mut() {
                            *d = None;
                        }
                    }
                }
                0x16 => {
                    // COM_STMT_PREPARE
                    let Ok(sql) = std::str::from_utf8(body) else {
                        let e = GateError::new(
                            1300,
                            *b"HY000",
                            "Invalid utf8mb4 character string in statement",
                        );
                        self.send_error(&e).await?;
                        continue;
                    };
                    let id = self.next_stmt;
                    self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
                    match handler.prepare(StmtId(id), sql).await {
                        Ok(meta) => {
                            self.write_prepare_ok(id, &meta, handler.status_flags());
                            self.stmts.insert(
                                id,
                                StmtState {
                                    param_count: meta.params.len(),
                                    types: None,
                                    long_data: vec![None; meta.params.len()],
                                },
                            );
                        }
                        Err(e) => {
                            let start = self.writer.begin_packet();
                            put_err(self.writer.buf_mut(), e.code, &e.sqlstate, &e.message);
                            self.writer.end_packet(start);
                        }
                    }
                }
                0x18 => {
                    // COM_STMT_SEND_LONG_DATA: no response
                    let mut r = Reader::new(body);
                    if let (Ok(id), Ok(param)) = (r.u32(), r.u16())
                        && let Some(st) = self.stmts.get_mut(&id)
                        && let Some(slot) = st.long_data.get_mut(param as usize)
                    {
                        slot.get_or_insert_with(Vec::new)
                            .extend_from_slice(r.rest());
                    }
                    continue;
                }
                0x19 => {
                    // COM_STMT_CLOSE: no response
                    if let Ok(id) = Reader::new(body).u32()
                        && self.stmts.remove(&id).is_some()
                    {
                        handler.close_stmt(StmtId(id)).await;
                    }
                    continue;
                }
                0x1A => {
                    // COM_STMT_RESET
                    let id = Reader::new(body).u32().unwrap_or(0);
                    match self.stmts.get_mut(&id) {
                        Some(st) => {
                            for d in st.long_data.iter_mut() {
                                *d = None;
                            }
                            match handler.reset_stmt(StmtId(id)).await {
                                Ok(()) => self.write_ok_now(handler.status_flags()),
                                Err(e) => {
                                    let start = self.writer.begin_packet();
                                    put_err(self.writer.buf_mut(), e.code, &e.sqlstate, &e.message);
                                    self.writer.end_packet(start);
                                }
                            }
                        }
                        None => {
                            self.send_error(&GateError::unknown_stmt(id, "mysqld_stmt_reset"))
                                .await?;
                            continue;
                        }
                    }
                }
                0x0E => self.write_ok_now(handler.status_flags()), // COM_PING
                0x02 => {
                    // COM_INIT_DB
                    let db = lossy(body);
                    match handler.init_db(&db).await {
                        Ok(()) => self.write_ok_now(handler.status_flags()),
                        Err(e) => {
                            self.send_error(&e).await?;
                            continue;
                        }
                    }
                }
                0x1F => {
                    // COM_RESET_CONNECTION
                    self.stmts.clear();
                    match handler.reset().await {
                        Ok(()) => self.write_ok_now(handler.status_flags()),
                        Err(e) => {
                            self.send_error(&e).await?;
                            continue;
                        }
                    }
                }
                0x11 => {
                    // COM_CHANGE_USER
                    let body = body.to_vec();
                    self.change_user(&body, handler).await?;
                }
                0x04 => {
                    // COM_FIELD_LIST
                    let mut r = Reader::new(body);
                    let table = lossy(r.nul_str());
                    let wildcard = lossy(r.rest());
                    match handler.field_list(&table, &wildcard).await {
                        Ok(cols) => {
                            let mut buf = Vec::new();
                            for c in &cols {
                                buf.clear();
                                c.encode(&mut buf);
                                crate::proto::put_lenenc_str(&mut buf, b"");
                                self.writer.write_packet(&buf);
                            }
                            self.write_eof_or_ok(handler.status_flags());
                        }
                        Err(e) => {
                            self.send_error(&e).await?;
                            continue;
                        }
                    }
                }
                0x1B => {
                    // COM_SET_OPTION: multi-statements are not offered; acknowledge
                    self.write_eof_or_ok(handler.status_flags());
                }
                0x09 => {
                    // COM_STATISTICS: a bare string, like mysqld's
                    let up = self.gate.started.elapsed().as_secs().max(1);
                    let q = self.gate.questions.load(Ordering::Relaxed);
                    let s = format!(
                        "Uptime: {up}  Threads: {}  Questions: {q}  Slow queries: 0  Opens: 0  Open tables: 0  Queries per second avg: {:.3}",
                        self.gate.threads.load(Ordering::Relaxed),
                        q as f64 / up as f64
                    );
                    self.writer.write_packet(s.as_bytes());
                }
                other => {
                    self.send_error(&GateError::unknown_command(other)).await?;
                    continue;
                }
            }
            self.writer.flush().await?;
        }
    }

    fn write_eof_or_ok(&mut self, status: u16) {
        let start = self.writer.begin_packet();
        if self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            put_ok(self.writer.buf_mut(), 0xFE, 0, 0, status, 0, b"");
        } else {
            put_eof(self.writer.buf_mut(), 0, status);
        }
        self.writer.end_packet(start);
    }

    fn write_prepare_ok(&mut self, id: u32, meta: &PreparedMeta, status: u16) {
        let start = self.writer.begin_packet();
        {
            let b = self.writer.buf_mut();
            b.push(0);
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&(meta.columns.len() as u16).to_le_bytes());
            b.extend_from_slice(&(meta.params.len() as u16).to_le_bytes());
            b.push(0);
            b.extend_from_slice(&0u16.to_le_bytes());
        }
        self.writer.end_packet(start);
        let deprecate_eof = self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        for defs in [&meta.params, &meta.columns] {
            if defs.is_empty() {
                continue;
            }
            for c in defs.iter() {
                let start = self.writer.begin_packet();
                c.encode(self.writer.buf_mut());
                self.writer.end_packet(start);
            }
            if !deprecate_eof {
                let start = self.writer.begin_packet();
                put_eof(self.writer.buf_mut(), 0, status);
                self.writer.end_packet(start);
            }
        }
    }

    async fn change_user(
        &mut self,
        body: &[u8],
        handler: &mut Box<dyn SessionHandler>,
    ) -> Result<(), ConnError> {
        let mut r = Reader::new(body);
        let user = lossy(r.nul_str());
        let auth = if self
            .caps
            .contains(CapabilityFlags::CLIENT_SECURE_CONNECTION)
        {
            let n = r.u8().unwrap_or(0) as usize;
            r.take(n).unwrap_or(&[]).to_vec()
        } else {
            r.nul_str().to_vec()
        };
        let db = lossy(r.nul_str());
        if r.remaining() >= 2 {
            let _charset = r.u16();
        }
        let plugin = if self.caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
            Some(lossy(r.nul_str()))
        } else {
            None
        };
        handler.on_disconnect().await;
        self.stmts.clear();
        if let Err(e) = self.authenticate(&user, plugin.as_deref(), auth).await? {
            self.send_error(&e).await?;
            return Err(ConnError::Rejected(e));
        }
        let info = SessionInfo {
            user: user.clone(),
            host: self.host.clone(),
            db: (!db.is_empty()).then_some(db),
            connection_id: self.id,
            capabilities: self.caps,
        };
        match self.gate.factory.create(&info).await {
            Ok(h) => {
                *handler = h;
                self.user = user;
                self.write_ok_now(handler.status_flags());
                Ok(())
            }
            Err(e) => {
                self.send_error(&e).await?;
                Err(ConnError::Rejected(e))
            }
        }
    }

    /// After refusing an oversized packet, swallow what the client is still
    /// sending (briefly) so that it reads our error instead of a reset.
    async fn drain(&mut self) {
        self.reader
            .discard_input(Duration::from_secs(2), 256 << 20)
            .await;
    }
}

/// Completes a handler's answer: an OK when it wrote nothing, the error when
/// it failed, and the session status bits in the final terminal packet.
fn finish(
    mut out: Response<'_>,
    r: Result<(), GateError>,
    handler: &dyn SessionHandler,
) -> Result<(), ConnError> {
    if out.client_failed {
        return Err(ConnError::Packet(PacketError::Closed));
    }
    match r {
        Ok(()) => {
            if !out.complete {
                if out.in_result_set {
                    // a handler that forgot to end its rows
                    let status = handler.status_flags();
                    let start = out.w.begin_packet();
                    if out.deprecate_eof() {
                        put_ok(out.w.buf_mut(), 0xFE, 0, 0, status, 0, b"");
                    } else {
                        put_eof(out.w.buf_mut(), 0, status);
                    }
                    out.w.end_packet(start);
                } else {
                    let start = out.w.begin_packet();
                    put_ok(out.w.buf_mut(), 0, 0, 0, handler.status_flags(), 0, b"");
                    out.w.end_packet(start);
                }
            } else {
                out.patch_final_status(handler.status_flags());
            }
        }
        Err(e) => {
            if out.complete {
                tracing::warn!("handler returned an error after a complete response: {e}");
            } else {
                let start = out.w.begin_packet();
                put_err(out.w.buf_mut(), e.code, &e.sqlstate, &e.message);
                out.w.end_packet(start);
            }
        }
    }
    Ok(())
}

fn parse_handshake_response(
    payload: &[u8],
    server_caps: CapabilityFlags,
) -> Result<HandshakeResponse, GateError> {
    let mut r = Reader::new(payload);
    let client_caps = CapabilityFlags::from_bits_truncate(r.u32()?);
    if !client_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(GateError::new(
            1251,
            *b"08004",
            "Client does not support protocol 4.1",
        ));
    }
    if client_caps.contains(CapabilityFlags::CLIENT_SSL) && payload.len() <= 32 {
        return Err(GateError::new(
            1043,
            *b"08S01",
            "SSL is not offered by this server",
        ));
    }
    let caps = client_caps & server_caps;
    let _max_packet = r.u32()?;
    let _charset = r.u8()?;
    r.skip(23)?;
    let user = lossy(r.nul_str());
    let auth = if client_caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
        r.lenenc_str()?.to_vec()
    } else if client_caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let n = r.u8()? as usize;
        r.take(n)?.to_vec()
    } else {
        r.nul_str().to_vec()
    };
    let db = if client_caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !r.is_empty() {
        let d = lossy(r.nul_str());
        (!d.is_empty()).then_some(d)
    } else {
        None
    };
    let plugin = if client_caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
        let p = lossy(r.nul_str());
        (!p.is_empty()).then_some(p)
    } else {
        None
    };
    Ok(HandshakeResponse {
        caps,
        user,
        auth,
        db,
        plugin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::{AuthPlugin, HandshakeResponse as ClientHandshake};
    use mysql_common::proto::MySerialize;
    use proptest::prelude::*;

    /// A name without NUL (NUL ends it on the wire).
    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_@.\\-ü☃]{1,24}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// What a client library writes (mysql_common's encoder, the one
        /// mysql_async uses) reads back field for field, whichever way the
        /// auth data is framed.
        #[test]
        fn handshake_responses_round_trip(
            user in name(),
            db in proptest::option::of(name()),
            auth in proptest::collection::vec(any::<u8>(), 0..=250),
            with_plugin in any::<bool>(),
            lenenc in any::<bool>(),
        ) {
            let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_LONG_PASSWORD
                | CapabilityFlags::CLIENT_TRANSACTIONS;
            if lenenc {
                caps |= CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
            }
            let plugin = with_plugin.then_some(AuthPlugin::MysqlNativePassword);
            let packet = ClientHandshake::new(
                Some(auth.clone()),
                (10, 11, 6),
                Some(user.clone().into_bytes()),
                db.clone().map(String::into_bytes),
                plugin,
                caps,
                None,
                1 << 24,
            );
            let mut buf = Vec::new();
            packet.serialize(&mut buf);
            let parsed = parse_handshake_response(&buf, server_capabilities())
                .map_err(|e| TestCaseError::fail(e.message))?;
            prop_assert_eq!(parsed.user, user);
            prop_assert_eq!(parsed.auth, auth);
            prop_assert_eq!(parsed.db, db);
            prop_assert_eq!(
                parsed.plugin.as_deref(),
                with_plugin.then_some(NATIVE_PASSWORD)
            );
            prop_assert!(parsed.caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41));
        }

        /// Bytes from a client are untrusted: any of them give a response
        /// or an error, never a panic.
        #[test]
        fn arbitrary_handshake_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            protocol_41 in any::<bool>(),
        ) {
            let mut bytes = bytes;
            if protocol_41 && bytes.len() >= 4 {
                bytes[1] |= (CapabilityFlags::CLIENT_PROTOCOL_41.bits() >> 8) as u8;
            }
            let _ = parse_handshake_response(&bytes, server_capabilities());
        }
    }
}
