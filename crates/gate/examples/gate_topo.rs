//! Runs the gate alone (the executor, as `keyshift up` runs it) over an
//! existing cluster's topo, for profiling the gate without the rest of the
//! node:
//!
//! ```text
//! cargo build --release -p keyshift-gate --example gate_topo
//! valgrind --tool=callgrind target/release/examples/gate_topo \
//!     --topo file:/tmp/ks-bench.XXXX/data/topo --listen 127.0.0.1:16306
//! ```
//!
//! `--workers 0` uses a current-thread runtime; the default is tokio's
//! multi-thread runtime with one worker per CPU, as the node uses.
//! `--io-threads N` sets [`keyshift_gate::GateOptions::io_threads`].

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let mut topo_url = String::new();
    let mut listen: SocketAddr = "127.0.0.1:16306".parse()?;
    let mut workers: Option<usize> = None;
    let mut opts = keyshift_gate::GateOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--topo" => topo_url = v()?,
            "--listen" => listen = v()?.parse()?,
            "--workers" => workers = Some(v()?.parse()?),
            "--io-threads" => opts.io_threads = v()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(!topo_url.is_empty(), "--topo URL is required");
    let rt = match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    rt.block_on(async move {
        let topo = keyshift_topo::open(&topo_url).await?;
        let cancel = CancellationToken::new();
        let gate = keyshift_gate::service::start(topo, listen, opts, cancel.clone())
            .await
            .map_err(|e| anyhow::anyhow!("starting the gate: {e}"))?;
        eprintln!("gate listening on {}", gate.addr());
        tokio::signal::ctrl_c().await?;
        cancel.cancel();
        gate.join().await;
        Ok(())
    })
}
