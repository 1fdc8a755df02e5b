//! VReplication building blocks: the pieces every keyshift workflow stream
//! is made of.
//!
//! * [`flavor`]: MariaDB vs MySQL differences (dump handshake, positions,
//!   GTID events) behind [`ServerFlavor`];
//! * [`snapshot`]: a consistent snapshot with its exact GTID position, for
//!   the copy phase;
//! * [`binlog`]: a source's binlog as a stream of whole transactions with
//!   typed row changes and the exact position after each, for the running
//!   phase;
//! * [`value`]: column values that round-trip exactly through SQL literals;
//! * [`stream`]: the stream engine (copy + replication of one source shard
//!   into one target shard, progress committed on the target).

pub mod binlog;
mod bytes;
pub mod error;
pub mod flavor;
pub mod rows;
pub mod snapshot;
pub mod stream;
pub mod value;

pub use binlog::{BinlogOptions, BinlogStream, Event, TableFilter};
pub use error::{Result, VreplError};
pub use flavor::{Gtid, MariaDb, MySql, ServerFlavor, advance, detect, for_flavor};
pub use rows::{ChangeKind, Row, RowChange};
pub use snapshot::{Snapshot, consistent_snapshot};
pub use stream::{
    CopyGroup, OnDdl, StreamError, StreamExit, StreamProgress, StreamSpec, StreamState,
    TableProgress, TableSpec, committed_position, forget_stream, run_stream, start_at,
};
pub use value::{APPLIER_SESSION_SQL, Value};
