//! The HTTP API and the web dashboard of a keyshift node.
//!
//! * `/api/v1/...` — JSON over HTTP, every route behind a bearer token
//!   ([`auth`]), described by an OpenAPI document ([`openapi`]) built from
//!   the same route table that builds the router ([`routes::ROUTES`]), with
//!   live updates as server-sent events ([`sse`]). Errors share one shape
//!   with stable codes ([`error`]).
//! * `/metrics` — Prometheus metrics, behind the same token ([`metrics`]).
//! * `/` — the dashboard, embedded in the binary ([`assets`]).
//!
//! The API is a thin layer over the library calls every front end uses
//! (`keyshift_cluster::ops`, `keyshift_workflow`): it adds no state of its
//! own except the lag series it samples for the chart ([`lag`]).

#![recursion_limit = "512"]

pub mod assets;
pub mod auth;
pub mod error;
pub mod lag;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod sse;
pub mod views;

pub use auth::{ApiToken, TokenError, load_or_create, token_path};
pub use error::{ApiError, Code};
pub use metrics::MetricsSource;

use axum::Router;
use keyshift_topo::Topo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub topo: Arc<dyn Topo>,
    pub lag: Arc<lag::LagHistory>,
    /// Ends the event streams on shutdown, so a graceful stop does not wait
    /// for browsers to hang up.
    pub cancel: CancellationToken,
    /// Metrics of the node's other parts (its gate), added to each scrape.
    pub metrics: Vec<MetricsSource>,
}

/// The whole app: `/api/v1` behind the token, and the dashboard.
pub fn app(state: AppState, token: ApiToken) -> Router {
    let mut api: Router<AppState> = Router::new();
    for r in routes::ROUTES {
        api = api.route(r.path, (r.handler)());
    }
    // After the routes: it applies to the routes registered so far.
    let api = api
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            token.clone(),
            auth::require_token,
        ));
    let scrape = Router::new()
        .route("/metrics", axum::routing::get(metrics::handler))
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    Router::new()
        .nest(openapi::BASE, api)
        .merge(scrape)
        .merge(assets::router())
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("API address {addr} is not available ({source}); set [api] listen in the cluster file")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running API server.
pub struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// The bound address (the real port when the configured one is 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has stopped (after `cancel`).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves until `cancel`. Binding happens before this
/// returns, so a port clash is reported to `up`, not logged later.
pub async fn start(
    topo: Arc<dyn Topo>,
    addr: SocketAddr,
    token: ApiToken,
    metrics: Vec<MetricsSource>,
    cancel: CancellationToken,
) -> Result<ApiServer, StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let history = Arc::new(lag::LagHistory::default());
    let sampler = tokio::spawn(lag::run(topo.clone(), history.clone(), cancel.clone()));
    let state = AppState {
        topo,
        lag: history,
        cancel: cancel.clone(),
        metrics,
    };
    let app = app(state, token);
    let task = tokio::spawn(async move {
        let shutdown = cancel.clone().cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("api server on {addr} failed: {e}");
        }
        let _ = sampler.await;
    });
    tracing::info!("api listening on http://{addr}/");
    Ok(ApiServer { addr, task })
}
