//! A real keyshift cluster for gate tests: one throwaway mariadbd per shard
//! of a sharded keyspace `customer`, one for an unsharded keyspace `commerce`
//! (which holds sequence tables), a memory topo describing them as external
//! tablets, and the gate in front of it all on a port-0 listener.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use keyshift_cluster::TabletRole;
use keyshift_cluster::ops::{self, ManagedDefaults, ShardSpec, TabletSpec};
use keyshift_testkit::TestMysqld;
use keyshift_topo::Topo;
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;

/// The sharded keyspace.
pub const SHARDED: &str = "customer";
/// The unsharded keyspace.
pub const UNSHARDED: &str = "commerce";
pub const GATE_USER: &str = "app";
pub const GATE_PASSWORD: &str = "app-pw";

/// One shard's server.
pub struct ShardServer {
    pub keyspace: String,
    pub shard: String,
    pub mysqld: TestMysqld,
}

impl ShardServer {
    /// An admin connection with the keyspace's database selected.
    pub async fn conn(&self) -> anyhow::Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::from_opts(self.mysqld.endpoint().opts())
            .db_name(Some(self.keyspace.clone()));
        mysql_async::Conn::new(opts)
            .await
            .with_context(|| format!("connecting to shard {}/{}", self.keyspace, self.shard))
    }

    /// Runs `sql` (one or more statements) on this server, in its keyspace's
    /// database.
    pub async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        c.query_drop(sql)
            .await
            .with_context(|| format!("on shard {}/{}: {sql}", self.keyspace, self.shard))?;
        c.disconnect().await?;
        Ok(())
    }
}

pub struct TestCluster {
    pub topo: Arc<dyn Topo>,
    /// The shards of `customer`, in the order given to `start`.
    pub shards: Vec<ShardServer>,
    /// The one shard (`0`) of `commerce`.
    pub unsharded: ShardServer,
    pub gate: keyshift_gate::service::GateService,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

/// Servers for a test: short lock waits, so that a deadlock that spans two
/// shards (which no single InnoDB can see) ends in error 1205 within seconds
/// instead of stalling the test for the default 50 s.
async fn start_server() -> anyhow::Result<TestMysqld> {
    TestMysqld::start_with(|c| {
        c.extra_args
            .push("--innodb-lock-wait-timeout=10".to_string());
    })
    .await
}

impl TestCluster {
    /// Starts the servers, writes the topo (keyspaces, shards, external
    /// primary tablets, gate user `app`/`app-pw`) and the gate. Tables and
    /// VSchemas are the caller's: create tables with [`TestCluster::on_shards`]
    /// / [`ShardServer::exec`], then [`TestCluster::apply_vschema`].
    pub async fn start(shards: &[&str]) -> anyhow::Result<TestCluster> {
        assert!(
            shards.len() >= 2,
            "a sharded keyspace needs at least two shards"
        );
        // All servers start concurrently: bootstrapping dominates start-up.
        let mut starts = Vec::new();
        for _ in 0..=shards.len() {
            starts.push(tokio::spawn(start_server()));
        }
        let mut servers = Vec::new();
        for s in starts {
            servers.push(s.await??);
        }
        let unsharded_server = servers.pop().expect("one server per shard plus one");
        let topo = keyshift_topo::open("mem:").await?;
        let dir = tempfile::Builder::new()
            .prefix("keyshift-gate-test-")
            .tempdir()?;
        let defaults = ManagedDefaults {
            cell: "test".to_string(),
            data_dir: dir.path().to_path_buf(),
        };
        let names: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        ops::create_keyspace(&*topo, SHARDED, &ShardSpec::Named(names), None).await?;
        ops::create_keyspace(&*topo, UNSHARDED, &ShardSpec::Unsharded, None).await?;
        let mut shard_servers = Vec::new();
        for (shard, mysqld) in shards.iter().zip(servers) {
            shard_servers.push(ShardServer {
                keyspace: SHARDED.to_string(),
                shard: shard.to_string(),
                mysqld,
            });
        }
        let unsharded = ShardServer {
            keyspace: UNSHARDED.to_string(),
            shard: "0".to_string(),
            mysqld: unsharded_server,
        };
        for s in shard_servers.iter().chain(std::iter::once(&unsharded)) {
            let mut c = s.mysqld.conn().await?;
            c.query_drop(format!("CREATE DATABASE `{}`", s.keyspace))
                .await?;
            c.disconnect().await?;
            let ep = s.mysqld.endpoint();
            ops::add_tablet(
                &*topo,
                &defaults,
                &s.keyspace,
                &s.shard,
                TabletRole::Primary,
                None,
                TabletSpec::External {
                    host: ep.host.clone(),
                    port: ep.port,
                    user: ep.user.clone(),
                    password: ep.password.clone(),
                    database: Some(s.keyspace.clone()),
                },
            )
            .await?;
        }
        ops::set_gate_users(
            &*topo,
            &[(GATE_USER.to_string(), GATE_PASSWORD.to_string())],
        )
        .await?;
        let cancel = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let gate = keyshift_gate::service::start(
            topo.clone(),
            listen,
            keyshift_gate::service::GateOptions::default(),
            cancel.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the gate: {e}"))?;
        Ok(TestCluster {
            topo,
            shards: shard_servers,
            unsharded,
            gate,
            cancel,
            _dir: dir,
        })
    }

    pub fn gate_addr(&self) -> SocketAddr {
        self.gate.addr()
    }

    pub fn gate_port(&self) -> u16 {
        self.gate_addr().port()
    }

    /// `mysql://app:app-pw@127.0.0.1:port/db`
    pub fn gate_url(&self, db: &str) -> String {
        format!(
            "mysql://{GATE_USER}:{GATE_PASSWORD}@{}/{db}",
            self.gate_addr()
        )
    }

    /// Connection options for the gate, with `db` selected.
    pub fn gate_opts(&self, db: Option<&str>) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.gate_addr().ip().to_string())
            .tcp_port(self.gate_port())
            .user(Some(GATE_USER))
            .pass(Some(GATE_PASSWORD))
            .db_name(db)
            .prefer_socket(false)
    }

    pub async fn gate_conn(&self, db: Option<&str>) -> anyhow::Result<mysql_async::Conn> {
        mysql_async::Conn::new(self.gate_opts(db))
            .await
            .context("connecting to the gate")
    }

    /// Runs `sql` on every shard of `customer`, directly.
    pub async fn on_shards(&self, sql: &str) -> anyhow::Result<()> {
        for s in &self.shards {
            s.exec(sql).await?;
        }
        Ok(())
    }

    /// Stores a VSchema (validated against the live schemas, so create the
    /// tables first) and waits until the gate routes with it.
    pub async fn apply_vschema(&self, keyspace: &str, json: &str) -> anyhow::Result<()> {
        ops::apply_vschema(&*self.topo, keyspace, json, false)
            .await
            .map_err(|e| anyhow::anyhow!("applying the VSchema of {keyspace}: {e}"))?;
        self.wait_for_gate().await
    }

    /// Waits until the gate routes with everything written to the topo so
    /// far (it follows the topo with a short delay).
    pub async fn wait_for_gate(&self) -> anyhow::Result<()> {
        let rev = self.topo.revision().await?;
        anyhow::ensure!(
            self.gate
                .wait_for_revision(rev, std::time::Duration::from_secs(10))
                .await,
            "the gate did not pick up topo revision {rev} within 10 s"
        );
        Ok(())
    }

    /// Which shard of `customer` holds keyspace id `ksid`.
    pub fn shard_of(&self, ksid: &[u8]) -> &ShardServer {
        self.shards
            .iter()
            .find(|s| {
                keyshift_types::KeyRange::parse(&s.shard)
                    .expect("shard names are key ranges")
                    .contains(ksid)
            })
            .expect("the shards cover the keyspace")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
