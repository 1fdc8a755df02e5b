//! Real, throwaway MariaDB servers for integration tests anywhere in the
//! workspace.
//!
//! Each [`TestMysqld`] has its own temporary datadir and free loopback port,
//! so tests run in parallel without coordination. Servers are SIGKILLed and
//! their datadirs removed on Drop, even when the test panics; and because
//! they are spawned with `PR_SET_PDEATHSIG` (`MysqldConfig::die_with_parent`)
//! they also die when the test process itself is killed.

use std::path::Path;

use anyhow::Context;
pub use keyshift_tablet::{Endpoint, MysqldConfig};
use keyshift_tablet::{Mysqld, find_binaries};

const ADMIN_USER: &str = "keyshift";
const ADMIN_PASSWORD: &str = "keyshift-test";

/// A real mariadbd for one test, killed and removed on Drop.
pub struct TestMysqld {
    // Declared before `dir` so the server dies before its datadir goes.
    server: Option<Mysqld>,
    config: MysqldConfig,
    dir: tempfile::TempDir,
}

impl TestMysqld {
    pub async fn start() -> anyhow::Result<TestMysqld> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `f` adjusted its config (server id, extra
    /// flags, a fixed port...). The datadir is a fresh temp dir unless `f`
    /// points it elsewhere. `die_with_parent` stays on whatever `f` does: a
    /// test server must never outlive the test process.
    pub async fn start_with(f: impl FnOnce(&mut MysqldConfig)) -> anyhow::Result<TestMysqld> {
        let binaries = find_binaries(None)?;
        let dir = tempfile::Builder::new()
            .prefix("keyshift-test-")
            .tempdir()
            .context("creating a temp dir for the test server")?;
        let mut config = MysqldConfig::new(binaries, dir.path().join("data"));
        config.admin_user = ADMIN_USER.to_string();
        config.admin_password = ADMIN_PASSWORD.to_string();
        config.die_with_parent = true;
        // Test data need not survive a power cut; durability costs an fsync
        // per commit, which adds up across a parallel test suite.
        config.extra_args = vec![
            "--innodb-flush-log-at-trx-commit=2".to_string(),
            "--sync-binlog=0".to_string(),
            "--innodb-doublewrite=0".to_string(),
        ];
        f(&mut config);
        config.die_with_parent = true;
        let server = Mysqld::start(config.clone()).await?;
        config.port = server.port();
        Ok(TestMysqld {
            server: Some(server),
            config,
            dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn endpoint(&self) -> Endpoint {
        self.config.endpoint(self.config.port)
    }

    /// `mysql://user:pass@127.0.0.1:port`
    pub fn url(&self) -> String {
        self.endpoint().url()
    }

    pub async fn conn(&self) -> anyhow::Result<mysql_async::Conn> {
        self.endpoint()
            .connect()
            .await
            .with_context(|| format!("connecting to the test server on port {}", self.port()))
    }

    /// The pid of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Mysqld::pid)
    }

    /// SIGKILL and wait until the process is gone, for fault tests.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill_and_wait();
        }
    }

    /// Graceful shutdown; `restart` brings it back.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.server.take() {
            s.stop().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same datadir and port (after `kill` or
    /// `stop`; a running server is stopped first).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let server = Mysqld::start(self.config.clone()).await?;
        self.server = Some(server);
        Ok(())
    }

    pub fn datadir(&self) -> &Path {
        &self.config.datadir
    }

    /// The config the server runs with (port resolved).
    pub fn config(&self) -> &MysqldConfig {
        &self.config
    }

    /// The temp dir that holds the datadir, for tests that need scratch
    /// space removed together with the server.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestMysqld {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Picks a free loopback port (bind :0). Panics if the machine has none,
/// which no test could survive anyway.
pub fn free_port() -> u16 {
    keyshift_tablet::free_port().expect("binding 127.0.0.1:0 to find a free port")
}
