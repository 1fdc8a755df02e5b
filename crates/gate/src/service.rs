//! The gate as a service of the node: listens, serves sessions through the
//! [`crate::executor`], and follows the topo.
//!
//! Routing state (keyspaces, shards, VSchemas, routing rules, tablets) and
//! gate users are read from the topo at start and re-read whenever a watch
//! on their prefixes fires. Rebuilds run on their own task, a few
//! milliseconds after the first change of a burst (so a workflow writing
//! several records causes one rebuild), and swap the new state in
//! atomically: statements never wait for a rebuild, and each one sees
//! either the old state or the new one. Pools of tablets whose connection
//! settings did not change are kept.
//!
//! Besides TCP the gate can listen on a unix socket
//! ([`GateOptions::socket`]), like vtgate's `--mysql_server_socket_path`:
//! for applications on the same host it skips the loopback TCP stack, a
//! large part of the kernel's work per statement (bench/gate measures 12–26%
//! more TPS through the gate over it). Both listeners feed the same event
//! loops and the same sessions; socket peers authenticate as
//! `user@localhost`.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use keyshift_cluster::file::MAX_SOCKET_PATH;
use keyshift_cluster::model::keys;
use keyshift_cluster::{ClusterError, ops};
use keyshift_router::{KeyspaceSpec, SnapshotError};
use keyshift_topo::{Revision, Topo, TopoError, WatchEvent};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::backend::PoolConfig;
use crate::executor::{
    BackendSettings, ExecutorFactory, ExecutorOptions, Routing, ShardInput, TopologyBuilder,
    TopologyInput,
};
use crate::metrics::GateMetrics;
use crate::server::{Gate, GateConfig};
use crate::topo_auth::TopoUsers;

/// How the gate runs.
#[derive(Debug, Clone)]
pub struct GateOptions {
    pub pool: PoolConfig,
    pub connect_timeout: Duration,
    /// Longest wait for a backend's answer; with the pool's acquire timeout
    /// and the connect timeout it bounds how long a client can wait on a
    /// dead or stuck tablet before getting an error.
    pub backend_read_timeout: Duration,
    /// Announced in the handshake and returned by `@@version`.
    pub server_version: String,
    pub version_comment: String,
    pub max_allowed_packet: usize,
    /// How long after a topo change the gate waits for related changes
    /// before rebuilding its routing state.
    pub rebuild_debounce: Duration,
    /// Threads that serve client connections, each an event loop of its
    /// own (a single-threaded runtime) that the accepted connections are
    /// dealt to in turn. A session then wakes on the thread that polls its
    /// sockets, with no hand-over to another worker; on a small machine this
    /// costs the gate a third fewer context switches per statement than a
    /// shared work-stealing runtime. 0: connections run on the runtime
    /// that called [`start`].
    pub io_threads: usize,
    /// A unix socket to listen on as well as TCP (None: TCP only). A socket
    /// file left there by a gate that died is replaced, one that a live
    /// process answers on is not; the file is made owner-only (0600) and is
    /// removed when the gate stops.
    pub socket: Option<PathBuf>,
}

impl Default for GateOptions {
    fn default() -> Self {
        let exec = ExecutorOptions::default();
        GateOptions {
            pool: PoolConfig::default(),
            connect_timeout: Duration::from_secs(3),
            backend_read_timeout: Duration::from_secs(30),
            server_version: exec.server_version,
            version_comment: exec.version_comment,
            max_allowed_packet: GateConfig::default().max_allowed_packet,
            rebuild_debounce: Duration::from_millis(3),
            io_threads: default_io_threads(),
            socket: None,
        }
    }
}

/// One event loop per two CPUs (the other one is for the servers and the
/// clients that usually share the machine), at least one.
fn default_io_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().div_ceil(2))
        .unwrap_or(1)
}

/// Why the gate did not start.
#[derive(Debug, thiserror::Error)]
pub enum GateStartError {
    #[error(
        "gate address {addr} is already in use by another process; set [gate] listen in the cluster file"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the cluster from the topo: {0}")]
    Topo(#[from] ClusterError),
    #[error("the cluster in the topo cannot be routed: {0}")]
    Routing(#[from] SnapshotError),
    #[error("cannot start the gate's event loop threads: {0}")]
    Threads(std::io::Error),
    #[error(
        "gate socket {} is in use by another process; set [gate] socket in the cluster file (\"\" turns it off)",
        path.display()
    )]
    SocketInUse { path: PathBuf },
    #[error("cannot listen on the unix socket {}: {reason}", path.display())]
    Socket { path: PathBuf, reason: String },
}

/// The gate's unix socket file while it listens; removes the file when the
/// gate stops, unless another process replaced it meanwhile (same path,
/// another inode), so that a gate never deletes a successor's socket.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), "cannot remove the gate socket: {e}");
                }
            }
            _ => {}
        }
    }
}

/// Binds the unix socket at `path`, replacing a stale socket file (one that
/// nothing answers on: its gate died without removing it). Anything else at
/// the path — a live socket, a regular file — is left alone and reported.
fn bind_socket(path: &Path) -> Result<(UnixListener, SocketFile), GateStartError> {
    let fail = |reason: String| GateStartError::Socket {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(fail(format!(
            "the path is {} bytes long; unix socket paths can have at most {MAX_SOCKET_PATH}",
            path.as_os_str().len()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A blocking connect to a unix socket returns at once: accepted
            // (or queued) by a listener, or refused when nobody listens.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(GateStartError::SocketInUse {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing a stale gate socket");
                    std::fs::remove_file(path)
                        .map_err(|e| fail(format!("cannot remove the stale socket file: {e}")))?;
                }
                Err(e) => return Err(fail(format!("cannot check the existing socket: {e}"))),
            }
        }
        Ok(_) => {
            return Err(fail(
                "the path exists and is not a socket; remove it or choose another path".to_string(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            // created by someone else between the check and the bind
            GateStartError::SocketInUse {
                path: path.to_path_buf(),
            }
        } else {
            fail(e.to_string())
        }
    })?;
    // Before the socket file is made owner-only it has the umask's mode; a
    // connection accepted in that instant still has to authenticate.
    let file = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::symlink_metadata(path))
        .map(|m| SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        });
    match file {
        Ok(f) => Ok((listener, f)),
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(path);
            Err(fail(format!(
                "cannot restrict the socket to its owner: {e}"
            )))
        }
    }
}

/// A running gate. Dropping it stops the gate as cancelling does.
pub struct GateService {
    addr: SocketAddr,
    socket: Option<PathBuf>,
    routing: Arc<Routing>,
    users: Arc<TopoUsers>,
    stop: CancellationToken,
    /// This gate's instance id in the topo (`/gate/instances/{id}`).
    id: String,
    metrics: Arc<GateMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl GateService {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn metrics(&self) -> &Arc<GateMetrics> {
        &self.metrics
    }

    /// This gate's metrics in Prometheus text form, as a handle the API
    /// keeps after the service is moved (see [`render_metrics`]).
    pub fn metrics_renderer(&self) -> Arc<dyn Fn(&mut String) + Send + Sync> {
        let metrics = self.metrics.clone();
        let routing = self.routing.clone();
        Arc::new(move |out: &mut String| render_metrics(&metrics, &routing, out))
    }

    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The unix socket the gate listens on, if any.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The routing state sessions use.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    pub fn users(&self) -> &Arc<TopoUsers> {
        &self.users
    }

    /// Waits until the gate's routing reflects topo revision `revision`
    /// (e.g. the revision after a routing-rule change); false on timeout.
    pub async fn wait_for_revision(&self, revision: Revision, timeout: Duration) -> bool {
        self.routing.wait_for(revision, timeout).await
    }

    /// Waits until the gate has stopped (after the cancellation token fired).
    pub async fn join(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for GateService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds `listen` (and [`GateOptions::socket`]), loads the cluster from the
/// topo and starts serving. Cancelling `cancel` stops accepting, closes
/// every client connection (their backend transactions roll back), removes
/// the socket file and ends the topo watch.
pub async fn start(
    topo: Arc<dyn Topo>,
    listen: SocketAddr,
    opts: GateOptions,
    cancel: CancellationToken,
) -> Result<GateService, GateStartError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            GateStartError::PortInUse { addr: listen }
        } else {
            GateStartError::Listen {
                addr: listen,
                source: e,
            }
        }
    })?;
    let addr = listener.local_addr().map_err(|e| GateStartError::Listen {
        addr: listen,
        source: e,
    })?;
    let socket = opts.socket.as_deref().map(bind_socket).transpose()?;
    // From here on a failed start must not leave the socket file behind.
    let socket = SocketGuard(socket);

    // Watches start from the revision read before loading, so a change made
    // while loading is seen again rather than missed.
    let start_rev = topo.revision().await.map_err(ClusterError::from)?;
    let mut builder = TopologyBuilder::new(BackendSettings {
        connect_timeout: opts.connect_timeout,
        read_timeout: opts.backend_read_timeout,
        pool: opts.pool.clone(),
    });
    let input = read_input(topo.as_ref()).await?;
    let topology = builder.build(input)?;
    let routing = Arc::new(Routing::new(topology, start_rev));
    let users = Arc::new(
        TopoUsers::load(topo.as_ref())
            .await
            .map_err(ClusterError::from)?,
    );

    let gate_id = crate::holds::new_gate_id();
    let factory = Arc::new(ExecutorFactory::new(
        routing.clone(),
        ExecutorOptions {
            server_version: opts.server_version.clone(),
            version_comment: opts.version_comment.clone(),
        },
    ));
    let activity = factory.activity().clone();
    let metrics = factory.metrics().clone();
    let gate = Gate::new(
        GateConfig {
            server_version: opts.server_version.clone(),
            max_allowed_packet: opts.max_allowed_packet,
            metrics: metrics.clone(),
            ..GateConfig::default()
        },
        users.clone(),
        factory,
    );

    let stop = cancel.child_token();
    let socket_path = socket.0.as_ref().map(|(_, f)| f.path.clone());
    let listeners = Listeners {
        tcp: listener,
        unix: socket.take(),
    };
    let accept = if opts.io_threads == 0 {
        tokio::spawn(accept_loop(gate, listeners, stop.clone()))
    } else {
        let mut loops = Vec::with_capacity(opts.io_threads);
        for i in 0..opts.io_threads {
            match IoLoop::start(i, gate.clone(), stop.clone()) {
                Ok(l) => loops.push(l),
                Err(e) => {
                    // the loops already started end with the token
                    stop.cancel();
                    listeners.close();
                    return Err(GateStartError::Threads(e));
                }
            }
        }
        tokio::spawn(accept_into_loops(listeners, loops, stop.clone()))
    };
    let holds = tokio::spawn(crate::holds::run(
        topo.clone(),
        routing.clone(),
        activity,
        gate_id.clone(),
        addr.to_string(),
        stop.clone(),
    ));
    let watcher = tokio::spawn(
        Watcher {
            topo,
            routing: routing.clone(),
            users: users.clone(),
            builder,
            debounce: opts.rebuild_debounce,
            stop: stop.clone(),
        }
        .run(start_rev),
    );
    match &socket_path {
        Some(path) => tracing::info!(%addr, socket = %path.display(), "gate listening"),
        None => tracing::info!(%addr, "gate listening"),
    }
    Ok(GateService {
        addr,
        socket: socket_path,
        routing,
        users,
        stop,
        id: gate_id,
        metrics,
        tasks: vec![accept, watcher, holds],
    })
}

/// A gate's metrics in Prometheus text form: its counters, plus what
/// is read at scrape time — the backend pools of the current topology
/// and the topo revision it has applied.
pub fn render_metrics(metrics: &GateMetrics, routing: &Routing, out: &mut String) {
    use keyshift_types::prom::{self, Kind};
    metrics.render(out);
    let topology = routing.current();
    for (name, help, in_use) in [
        (
            "keyshift_gate_backend_connections_in_use",
            "Backend connections checked out by sessions, per tablet.",
            true,
        ),
        (
            "keyshift_gate_backend_connections_idle",
            "Backend connections idle in the pool, per tablet.",
            false,
        ),
    ] {
        prom::family(out, name, help, Kind::Gauge);
        for (t, role) in topology.pools() {
            let n = if in_use {
                t.pool.in_use()
            } else {
                t.pool.idle_count()
            };
            prom::sample(
                out,
                name,
                &[
                    ("keyspace", &t.keyspace),
                    ("shard", &t.shard),
                    ("tablet", &t.alias),
                    ("role", role),
                ],
                n as f64,
            );
        }
    }
    prom::family(
        out,
        "keyshift_gate_topo_revision",
        "The topo revision whose routing this gate serves (rules, VSchemas, tablets).",
        Kind::Gauge,
    );
    prom::sample(
        out,
        "keyshift_gate_topo_revision",
        &[],
        routing.applied_revision() as f64,
    );
}

/// The socket file of a gate that is still starting: removed if the start
/// fails before [`Listeners`] own it.
struct SocketGuard(Option<(UnixListener, SocketFile)>);

impl SocketGuard {
    fn take(mut self) -> Option<(UnixListener, SocketFile)> {
        self.0.take()
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Some((listener, file)) = self.0.take() {
            drop(listener);
            file.remove();
        }
    }
}

/// What the gate accepts connections on.
struct Listeners {
    tcp: TcpListener,
    unix: Option<(UnixListener, SocketFile)>,
}

/// One accepted client connection, of either transport.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listeners {
    /// The next connection from either listener. Errors (EMFILE and
    /// friends) are transient: the caller logs them and pauses.
    async fn accept(&self) -> std::io::Result<Accepted> {
        let unix = async {
            match &self.unix {
                Some((l, _)) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.tcp.accept() => r.map(|(s, peer)| Accepted::Tcp(s, peer)),
            r = unix => r,
        }
    }

    /// Stops listening and removes the socket file.
    fn close(self) {
        drop(self.tcp);
        if let Some((listener, file)) = self.unix {
            drop(listener);
            file.remove();
        }
    }
}

impl Accepted {
    async fn serve(self, gate: Arc<Gate>) {
        match self {
            Accepted::Tcp(s, peer) => gate.handle_connection(s, peer).await,
            Accepted::Unix(s) => gate.handle_unix_connection(s).await,
        }
    }

    /// Detaches the stream from the accepting runtime, to be registered
    /// with an event loop's.
    fn into_std(self) -> std::io::Result<StdAccepted> {
        Ok(match self {
            Accepted::Tcp(s, peer) => StdAccepted::Tcp(s.into_std()?, peer),
            Accepted::Unix(s) => StdAccepted::Unix(s.into_std()?),
        })
    }
}

/// An accepted connection on its way to an event loop (std streams, still
/// in non-blocking mode, belong to no runtime).
enum StdAccepted {
    Tcp(std::net::TcpStream, SocketAddr),
    Unix(std::os::unix::net::UnixStream),
}

impl StdAccepted {
    /// Registers the stream with the current runtime.
    fn into_tokio(self) -> std::io::Result<Accepted> {
        Ok(match self {
            StdAccepted::Tcp(s, peer) => Accepted::Tcp(TcpStream::from_std(s)?, peer),
            StdAccepted::Unix(s) => Accepted::Unix(UnixStream::from_std(s)?),
        })
    }
}

async fn accept_loop(gate: Arc<Gate>, listeners: Listeners, stop: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = listeners.accept() => match r {
                Ok(c) => {
                    conns.spawn(c.serve(gate.clone()));
                }
                Err(e) => {
                    // EMFILE and friends are transient; do not spin
                    tracing::warn!("gate accept failed: {e}");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
            // reap finished connections so the set does not grow
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    listeners.close();
    conns.shutdown().await;
    tracing::info!("gate stopped");
}

/// A thread running a single-threaded runtime that serves the client
/// connections handed to it (see [`GateOptions::io_threads`]).
struct IoLoop {
    conns: tokio::sync::mpsc::UnboundedSender<StdAccepted>,
    /// Fires (or is dropped) when the thread has closed its connections.
    done: tokio::sync::oneshot::Receiver<()>,
}

impl IoLoop {
    fn start(index: usize, gate: Arc<Gate>, stop: CancellationToken) -> std::io::Result<IoLoop> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StdAccepted>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("keyshift-gate-{index}"))
            .spawn(move || {
                rt.block_on(async move {
                    let mut conns = JoinSet::new();
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            c = rx.recv() => match c {
                                Some(c) => match c.into_tokio() {
                                    Ok(c) => {
                                        conns.spawn(c.serve(gate.clone()));
                                    }
                                    Err(e) => tracing::warn!("gate cannot serve a connection: {e}"),
                                },
                                None => break,
                            },
                            Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        }
                    }
                    conns.shutdown().await;
                });
                drop(rt);
                let _ = done_tx.send(());
            })?;
        Ok(IoLoop {
            conns: tx,
            done: done_rx,
        })
    }
}

/// Accepts on the caller's runtime and deals the connections of both
/// listeners to the event loops in turn.
async fn accept_into_loops(listeners: Listeners, loops: Vec<IoLoop>, stop: CancellationToken) {
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = listeners.accept() => match r {
                Ok(c) => {
                    let c = match c.into_std() {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("gate cannot serve a connection: {e}");
                            continue;
                        }
                    };
                    let l = &loops[next % loops.len()];
                    next = next.wrapping_add(1);
                    if l.conns.send(c).is_err() {
                        tracing::warn!("a gate event loop has stopped");
                    }
                }
                Err(e) => {
                    tracing::warn!("gate accept failed: {e}");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    listeners.close();
    stop.cancel();
    for l in loops {
        drop(l.conns);
        let _ = l.done.await;
    }
    tracing::info!("gate stopped");
}

/// Reads everything routing needs from the topo.
pub async fn read_input(topo: &dyn Topo) -> Result<TopologyInput, ClusterError> {
    // Holds before the routing rules: a switch lifts its hold in the same
    // topo transaction that changes the rules, so reading in this order
    // can pair an old hold with new rules (harmless: still held) but never
    // a lifted hold with old rules.
    let holds = crate::holds::read_holds(topo).await?;
    let keyspaces = ops::list_keyspaces(topo).await?;
    let vschemas = ops::all_vschemas(topo).await?;
    let rules = ops::get_routing_rules(topo).await?;
    let tablets = ops::list_tablets(topo).await?;
    let mut input = TopologyInput {
        rules,
        tablets,
        holds,
        ..TopologyInput::default()
    };
    for ks in keyspaces {
        let shards = ops::list_shards(topo, &ks.name).await?;
        for s in &shards {
            input.shards.push(ShardInput {
                keyspace: ks.name.clone(),
                shard: s.name.clone(),
                primary: s.primary.as_ref().map(|a| a.to_string()),
            });
        }
        input.keyspaces.push(KeyspaceSpec {
            sharded: ks.sharded,
            shards: shards.into_iter().map(|s| s.name).collect(),
            vschema: vschemas.get(&ks.name).cloned().unwrap_or_default(),
            name: ks.name,
        });
    }
    Ok(input)
}

const WATCHED: [&str; 5] = [
    keys::KEYSPACES,
    keys::TABLETS,
    keys::ROUTING_RULES,
    keys::GATE_USERS,
    keys::GATE_HOLDS,
];

/// After a failed rebuild or watch, how long before trying again.
const RETRY: Duration = Duration::from_millis(500);

struct Watcher {
    topo: Arc<dyn Topo>,
    routing: Arc<Routing>,
    users: Arc<TopoUsers>,
    builder: TopologyBuilder,
    debounce: Duration,
    stop: CancellationToken,
}

enum Next {
    Event(Revision),
    /// The watch failed (compacted history, backend error): re-read all and
    /// watch again from now.
    Broken,
    /// The topo closed or the gate stops.
    End,
}

impl Watcher {
    async fn open(
        &self,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<WatchEvent, TopoError>>, TopoError> {
        // One watch over the whole topo, filtered here: a store shared with
        // other processes (the file topo) is polled once per watch, so one
        // watch instead of one per prefix costs a fifth of the polling.
        let events = self.topo.watch("/", after).await?;
        Ok(events
            .filter(|ev| {
                let keep = match ev {
                    Ok(e) => WATCHED.iter().any(|p| e.key().starts_with(p)),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed())
    }

    async fn next(&self, events: &mut BoxStream<'static, Result<WatchEvent, TopoError>>) -> Next {
        tokio::select! {
            _ = self.stop.cancelled() => Next::End,
            ev = events.next() => match ev {
                None => Next::End,
                Some(Ok(ev)) => Next::Event(ev.revision()),
                Some(Err(TopoError::Closed)) => Next::End,
                Some(Err(e)) => {
                    tracing::warn!("gate topo watch failed, re-reading the cluster: {e}");
                    Next::Broken
                }
            }
        }
    }

    /// Sleeps unless the gate stops first; false when it stops.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn rebuild(&mut self, revision: Revision) -> Result<(), String> {
        let input = read_input(self.topo.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let users = TopoUsers::read(self.topo.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let topology = self.builder.build(input).map_err(|e| e.to_string())?;
        self.users.replace(users);
        self.routing.install(topology, revision);
        tracing::debug!(revision, "gate routing rebuilt");
        Ok(())
    }

    /// Rebuilds until it works or the gate stops; false when it stops.
    async fn rebuild_until_done(&mut self, revision: Revision) -> bool {
        loop {
            match self.rebuild(revision).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(
                        "gate keeps its previous routing; rebuilding from the topo failed: {e}"
                    );
                    if !self.pause(RETRY).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn run(mut self, start: Revision) {
        let mut after = start;
        'watch: loop {
            let mut events = match self.open(after).await {
                Ok(s) => s,
                Err(TopoError::Closed) => return,
                Err(e) => {
                    tracing::warn!("gate cannot watch the topo: {e}");
                    if !self.pause(RETRY).await {
                        return;
                    }
                    match self.topo.revision().await {
                        Ok(r) if self.rebuild_until_done(r).await => after = r,
                        Ok(_) => return,
                        Err(_) => {}
                    }
                    continue;
                }
            };
            loop {
                let mut latest = match self.next(&mut events).await {
                    Next::Event(rev) => rev,
                    Next::End => return,
                    Next::Broken => {
                        let Ok(r) = self.topo.revision().await else {
                            if !self.pause(RETRY).await {
                                return;
                            }
                            continue 'watch;
                        };
                        if !self.rebuild_until_done(r).await {
                            return;
                        }
                        after = r;
                        continue 'watch;
                    }
                };
                // collect the rest of the burst
                let deadline = tokio::time::Instant::now() + self.debounce;
                loop {
                    match tokio::time::timeout_at(deadline, self.next(&mut events)).await {
                        Err(_) => break,
                        Ok(Next::Event(rev)) => latest = latest.max(rev),
                        Ok(Next::End) => return,
                        Ok(Next::Broken) => {
                            let r = self.topo.revision().await.unwrap_or(latest);
                            if !self.rebuild_until_done(r.max(latest)).await {
                                return;
                            }
                            after = r.max(latest);
                            continue 'watch;
                        }
                    }
                }
                if !self.rebuild_until_done(latest).await {
                    return;
                }
                after = latest;
            }
        }
    }
}
