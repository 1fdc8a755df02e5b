//! Consistent snapshots with their exact binlog position.
//!
//! Copying a table reads it inside one snapshot, then replays the binlog
//! from the snapshot's position. That is exact only if the position names
//! precisely the transactions the snapshot sees: one fewer and a change is
//! applied twice, one more and a change is lost. The flavor knows how to get
//! that position ([`ServerFlavor::start_snapshot`]).

use keyshift_types::Position;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::Result;
use crate::flavor::ServerFlavor;

/// A connection inside a consistent-snapshot, read-only transaction.
///
/// Everything read through [`Snapshot::conn`] sees the source exactly at
/// [`Snapshot::position`]. Keep it short-lived: an open snapshot holds back
/// the server's purge of old row versions.
#[derive(Debug)]
pub struct Snapshot {
    conn: Conn,
    position: Position,
}

impl Snapshot {
    /// The GTID position the snapshot sees: every transaction in it and no
    /// other.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The connection to read through (inside the snapshot transaction).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Ends the snapshot transaction and returns the connection.
    pub async fn finish(mut self) -> Result<Conn> {
        self.conn.query_drop("COMMIT").await?;
        Ok(self.conn)
    }
}

/// Opens a consistent snapshot on `conn` and returns it with its exact
/// position. `conn` should be a dedicated connection: it stays inside the
/// snapshot transaction until [`Snapshot::finish`].
pub async fn consistent_snapshot(mut conn: Conn, flavor: &dyn ServerFlavor) -> Result<Snapshot> {
    let position = flavor.start_snapshot(&mut conn).await?;
    Ok(Snapshot { conn, position })
}
