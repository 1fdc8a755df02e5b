//! A handler that sends every statement to one backend endpoint. It is the
//! gate's baseline: tests use it to exercise the protocol layer with real
//! clients, and its benchmark bounds what the router can reach.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{BackendError, Pool, PooledConn};
use crate::error::GateError;
use crate::params::{Param, StmtId};
use crate::proto::{Column, StatusFlags};
use crate::server::{HandlerFactory, PreparedMeta, Response, SessionHandler, SessionInfo};

const AUTOCOMMIT: u16 = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();

/// Creates a [`PassthroughHandler`] per client over one shared pool.
pub struct PassthroughFactory {
    pool: Pool,
}

impl PassthroughFactory {
    pub fn new(pool: Pool) -> Self {
        PassthroughFactory { pool }
    }
}

#[async_trait]
impl HandlerFactory for PassthroughFactory {
    async fn create(&self, session: &SessionInfo) -> Result<Box<dyn SessionHandler>, GateError> {
        let mut h = PassthroughHandler {
            pool: self.pool.clone(),
            conn: None,
            db: self.pool.backend().db.clone(),
            stmts: HashMap::new(),
            status: AUTOCOMMIT,
        };
        if let Some(db) = &session.db {
            // MySQL refuses an unknown database at connect time; so do we
            h.init_db(db).await?;
        }
        Ok(Box::new(h))
    }
}

/// Forwards every statement to the pool's backend. Outside transactions each
/// statement borrows a pooled connection; inside a transaction (or once the
/// client changed session state) the connection stays with the session.
pub struct PassthroughHandler {
    pool: Pool,
    conn: Option<PooledConn>,
    db: Option<String>,
    stmts: HashMap<StmtId, Arc<str>>,
    status: u16,
}

impl PassthroughHandler {
    async fn conn(&mut self) -> Result<PooledConn, GateError> {
        let mut c = match self.conn.take() {
            Some(c) => c,
            None => self.pool.get().await?,
        };
        if let Some(db) = &self.db
            && c.schema() != Some(db.as_str())
            && let Err(e) = c.init_db(db).await
        {
            self.done(c);
            return Err(e.into());
        }
        Ok(c)
    }

    /// Keeps the connection if the session needs it, else returns it to the
    /// pool; a broken connection ends any transaction the session had.
    fn done(&mut self, c: PooledConn) {
        if c.is_broken() {
            self.status = AUTOCOMMIT;
            return;
        }
        self.status = c.status();
        if c.needs_pinning() {
            self.conn = Some(c);
        }
    }

    fn finish(&mut self, c: PooledConn, r: Result<(), BackendError>) -> Result<(), GateError> {
        self.done(c);
        r.map_err(GateError::from)
    }
}

#[async_trait]
impl SessionHandler for PassthroughHandler {
    async fn query(&mut self, sql: &str, out: &mut Response<'_>) -> Result<(), GateError> {
        let mut c = self.conn().await?;
        let r = c.query_into(sql, out).await;
        self.finish(c, r)
    }

    async fn prepare(&mut self, stmt: StmtId, sql: &str) -> Result<PreparedMeta, GateError> {
        let mut c = self.conn().await?;
        let r = c.prepare(sql).await;
        self.done(c);
        let bs = r?;
        self.stmts.insert(stmt, Arc::from(sql));
        Ok(PreparedMeta {
            params: bs.params.clone(),
            columns: bs.columns.clone(),
        })
    }

    async fn execute(
        &mut self,
        stmt: StmtId,
        params: &[Param<'_>],
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        let Some(sql) = self.stmts.get(&stmt).cloned() else {
            return Err(GateError::unknown_stmt(stmt.0, "mysqld_stmt_execute"));
        };
        let mut c = self.conn().await?;
        let bs = match c.prepare(&sql).await {
            Ok(bs) => bs,
            Err(e) => {
                self.done(c);
                return Err(e.into());
            }
        };
        let r = c.execute_into(&bs, params, out).await;
        self.finish(c, r)
    }

    async fn close_stmt(&mut self, stmt: StmtId) {
        // the backend statement stays cached on its connection for the next
        // client that prepares the same text
        self.stmts.remove(&stmt);
    }

    async fn field_list(&mut self, table: &str, wildcard: &str) -> Result<Vec<Column>, GateError> {
        let mut c = self.conn().await?;
        let r = c.field_list(table, wildcard).await;
        self.done(c);
        Ok(r?)
    }

    async fn init_db(&mut self, db: &str) -> Result<(), GateError> {
        let mut c = match self.conn.take() {
            Some(c) => c,
            None => self.pool.get().await?,
        };
        let r = c.init_db(db).await;
        self.done(c);
        r?;
        self.db = Some(db.to_string());
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), GateError> {
        if let Some(c) = self.conn.take() {
            c.release().await;
        }
        self.stmts.clear();
        self.status = AUTOCOMMIT;
        Ok(())
    }

    fn status_flags(&self) -> u16 {
        self.status
    }

    async fn on_disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.release().await;
        }
        self.stmts.clear();
    }
}
