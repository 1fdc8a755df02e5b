//! The MySQL protocol layer of keyshift's gate, both directions.
//!
//! * [`server`]: what applications connect to — handshake, authentication,
//!   commands — answering through a [`SessionHandler`] per connection.
//! * [`backend`]: the gate's own client connections and pools towards the
//!   tablets, able to forward result packets to the client undecoded.
//! * [`passthrough`]: a handler that forwards everything to one backend.
//! * [`executor`]: the handler that runs the router's plans over the
//!   keyspaces and shards of the topo.
//! * [`service`]: the gate the node starts — listeners (TCP and a unix
//!   socket), executor, topo watch.
//! * [`topo_auth`]: gate users from the topo.
//!
//! Speed comes from a few rules: one flush per response, raw forwarding of
//! backend packets when nothing needs merging (buffered runs of rows in one
//! copy), prepared statements that stay prepared statements on the backend,
//! and client connections served by the gate's own single-threaded event
//! loops ([`GateOptions::io_threads`]), so that a session wakes where its
//! sockets are polled.

pub mod auth;
pub mod backend;
pub mod error;
pub mod executor;
mod fxhash;
pub mod holds;
pub mod metrics;
pub mod packet;
pub mod params;
pub mod passthrough;
pub mod proto;
pub mod server;
pub mod service;
pub mod topo_auth;

pub use auth::{Authenticator, PasswordHash, StaticUsers};
pub use backend::{
    BackendConfig, BackendConn, BackendError, BackendStmt, Pool, PoolConfig, PooledConn,
    QueryResult,
};
pub use error::GateError;
pub use executor::{ExecutorFactory, ExecutorOptions, Routing, Session, Topology};
pub use metrics::GateMetrics;
pub use params::{Param, ParamValue, StmtId};
pub use passthrough::{PassthroughFactory, PassthroughHandler};
pub use proto::{Column, ColumnType, Value};
pub use server::{
    Gate, GateConfig, HandlerFactory, PreparedMeta, Response, SessionHandler, SessionInfo,
};
pub use service::{GateOptions, GateService, GateStartError};
pub use topo_auth::TopoUsers;
