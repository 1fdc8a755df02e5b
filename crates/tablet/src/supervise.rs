use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Mysqld, MysqldConfig};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A server that ran this long is healthy again: its next crash restarts
/// quickly instead of inheriting the backoff of earlier crashes.
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// What a supervised server is doing, for status pages and for callers that
/// wait until their tablets run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessState {
    Starting,
    Running {
        pid: u32,
        port: u16,
    },
    Restarting {
        reason: String,
        attempt: u32,
    },
    /// The server runs but does not serve yet: a replica being seeded from
    /// its primary, or waiting for it. Set by the cluster layer, which knows
    /// what serving means for the tablet; never by [`supervise`].
    Preparing {
        reason: String,
    },
    /// The supervisor gave up; the reason says what the operator must fix.
    Failed {
        reason: String,
    },
    Stopped,
}

/// Supervises one managed mariadbd: starts it, restarts it when it dies
/// (backoff 0.5 s doubling to 10 s, reset after 60 s healthy), stops it
/// cleanly when `cancel` fires.
///
/// A server that never came up is not retried: the first start's error is
/// reported as `Failed` and the task ends, because it needs an operator
/// (wrong binary, port taken, datadir in use). Once it has run, every later
/// failure is retried with backoff, since the same configuration worked.
/// A port of 0 is resolved at the first start and then kept, so clients and
/// the topo keep a stable address across restarts.
pub fn supervise(
    cfg: MysqldConfig,
    cancel: CancellationToken,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<ProcessState>) {
    let (tx, rx) = watch::channel(ProcessState::Starting);
    let handle = tokio::spawn(run(cfg, cancel, tx));
    (handle, rx)
}

async fn run(mut cfg: MysqldConfig, cancel: CancellationToken, tx: watch::Sender<ProcessState>) {
    let wanted_free_port = cfg.port == 0;
    let mut ever_ran = false;
    let mut attempt: u32 = 0;
    let mut backoff = BACKOFF_START;
    loop {
        if cancel.is_cancelled() {
            tx.send_replace(ProcessState::Stopped);
            return;
        }
        // Not raced against `cancel`: dropping a half-done start could leave
        // a server running unsupervised. A start is bounded by its timeouts.
        let reason = match Mysqld::start(cfg.clone()).await {
            Ok(mut m) => {
                ever_ran = true;
                cfg.port = m.port();
                tx.send_replace(ProcessState::Running {
                    pid: m.pid(),
                    port: m.port(),
                });
                let since = Instant::now();
                tokio::select! {
                    _ = cancel.cancelled() => {
                        if let Err(e) = m.stop().await {
                            tracing::error!(datadir = %cfg.datadir.display(), error = %e, "stopping mariadbd");
                        }
                        tx.send_replace(ProcessState::Stopped);
                        return;
                    }
                    info = m.wait_exit() => {
                        if since.elapsed() >= HEALTHY_RESET {
                            attempt = 0;
                            backoff = BACKOFF_START;
                        }
                        format!("mariadbd (pid {}) {info}", m.pid())
                    }
                }
            }
            Err(e) if !ever_ran || !e.is_transient() => {
                tracing::error!(datadir = %cfg.datadir.display(), error = %e, "mariadbd cannot start");
                tx.send_replace(ProcessState::Failed {
                    reason: e.to_string(),
                });
                return;
            }
            Err(e) => {
                if wanted_free_port && matches!(e, crate::TabletError::PortInUse { .. }) {
                    cfg.port = 0;
                }
                e.to_string()
            }
        };
        attempt += 1;
        tracing::warn!(datadir = %cfg.datadir.display(), %reason, attempt, ?backoff, "restarting mariadbd");
        tx.send_replace(ProcessState::Restarting {
            reason: reason.clone(),
            attempt,
        });
        tokio::select! {
            _ = cancel.cancelled() => {
                tx.send_replace(ProcessState::Stopped);
                return;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tx.send_replace(ProcessState::Starting);
    }
}
