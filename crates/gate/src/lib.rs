//! The MySQL protocol layer of keyshift's gate, both directions.
//!
//! * [`server`]: what applications connect to — handshake, authentication,
//!   commands — answering through a [`SessionHandler`] per connection.
//! * [`backend`]: the gate's own client connections and pools towards the
//!   tablets, able to forward result packets to the client undecoded.
//! * [`passthrough`]: a handler that forwards everything to one backend.
//!
//! Speed comes from three rules: one flush per response, raw forwarding of
//! backend packets when nothing needs merging, and prepared statements that
//! stay prepared statements on the backend.

pub mod auth;
pub mod backend;
pub mod error;
pub mod packet;
pub mod params;
pub mod passthrough;
pub mod proto;
pub mod server;

pub use auth::{Authenticator, PasswordHash, StaticUsers};
pub use backend::{
    BackendConfig, BackendConn, BackendError, BackendStmt, Pool, PoolConfig, PooledConn,
    QueryResult,
};
pub use error::GateError;
pub use params::{Param, ParamValue, StmtId};
pub use passthrough::{PassthroughFactory, PassthroughHandler};
pub use proto::{Column, ColumnType, Value};
pub use server::{
    Gate, GateConfig, HandlerFactory, PreparedMeta, Response, SessionHandler, SessionInfo,
};
