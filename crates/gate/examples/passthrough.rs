//! Runs the gate with the passthrough handler in front of one backend, for
//! benchmarks and manual poking:
//!
//! ```text
//! cargo run --release -p keyshift-gate --example passthrough -- \
//!     --listen 127.0.0.1:15306 --backend 127.0.0.1:3306 --user u --password p --db sbtest
//! ```
//! Clients log in with the same user and password as the backend's.

use std::sync::Arc;

use keyshift_gate::{
    BackendConfig, Gate, GateConfig, PassthroughFactory, Pool, PoolConfig, StaticUsers,
};

fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:15306".to_string();
    let mut backend = "127.0.0.1:3306".to_string();
    let mut user = "root".to_string();
    let mut password = String::new();
    let mut db: Option<String> = None;
    let mut workers = 2usize;
    let mut pool_size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--listen" => listen = v()?,
            "--backend" => backend = v()?,
            "--user" => user = v()?,
            "--password" => password = v()?,
            "--db" => db = Some(v()?),
            "--workers" => workers = v()?.parse()?,
            "--pool-size" => pool_size = v()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let mut bc = BackendConfig::new(backend, user.clone(), password.clone());
        bc.db = db;
        let pool = Pool::new(
            bc,
            PoolConfig {
                max_size: pool_size,
                ..PoolConfig::default()
            },
        );
        let users = StaticUsers::new().with_user(&user, &password);
        let gate = Gate::new(
            GateConfig::default(),
            Arc::new(users),
            Arc::new(PassthroughFactory::new(pool)),
        );
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("passthrough gate listening on {}", listener.local_addr()?);
        gate.serve(listener).await?;
        Ok(())
    })
}
