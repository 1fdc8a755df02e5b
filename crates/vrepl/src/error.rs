//! The one error type of this crate.
//!
//! Callers branch on it: a stream that lost its source is retried from the
//! last committed position ([`VreplError::is_transient`]); a malformed or
//! unsupported event is not going to fix itself and must stop the workflow
//! with a reason a human can act on.

use std::time::Duration;

use keyshift_types::GtidError;

#[derive(Debug, thiserror::Error)]
pub enum VreplError {
    /// The server answered with an error, or the connection broke.
    #[error("source server: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// Nothing, not even a heartbeat, arrived within the read deadline: the
    /// source is dead or unreachable.
    #[error(
        "no binlog event or heartbeat from the source for {0:?}: the source is dead or unreachable"
    )]
    Timeout(Duration),
    /// The source ended the binlog stream (shutdown, or the dump thread was
    /// killed).
    #[error("the source closed the binlog stream")]
    StreamEnded,
    /// Bytes that do not follow the documented event format.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A valid event we cannot turn into row changes (statement-based
    /// binlog, XA, compressed events, unknown column types...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The table's definition needed to decode its rows is missing or does
    /// not match the binlog.
    #[error("schema of `{db}`.`{table}`: {detail}")]
    Schema {
        db: String,
        table: String,
        detail: String,
    },
    /// The server did not report an exact snapshot position.
    #[error("snapshot position: {0}")]
    SnapshotPosition(String),
    /// A position of the wrong flavor, or unparsable GTIDs from the server.
    #[error(transparent)]
    Gtid(#[from] GtidError),
    /// A failure of the source read shared by the streams of a source
    /// shard, as each of them reports it.
    #[error("{detail}")]
    Shared { detail: String, transient: bool },
    /// An operation this flavor does not offer.
    #[error("{flavor} flavor: {detail}")]
    Flavor {
        flavor: keyshift_types::Flavor,
        detail: String,
    },
}

impl VreplError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> VreplError {
        VreplError::Malformed {
            what,
            detail: detail.into(),
        }
    }

    /// Whether retrying later (reconnecting, resuming from the last
    /// committed position) may succeed: lost connections, dead sources,
    /// deadlines. Decoding and schema errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            VreplError::Mysql(e) => !matches!(e, mysql_async::Error::Server(_)),
            VreplError::Timeout(_) | VreplError::StreamEnded => true,
            VreplError::Shared { transient, .. } => *transient,
            _ => false,
        }
    }
}

pub type Result<T, E = VreplError> = std::result::Result<T, E>;
