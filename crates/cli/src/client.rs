//! The CLI's client of the node's REST API.
//!
//! Workflow commands go through the API when a node runs, so that the node
//! (which runs the streams, the gate and the VDiffs) performs every action
//! the same way whichever front end asked, serialises concurrent requests,
//! and records them; and so that the CLI can operate a node on another
//! machine (`--api URL` with `KEYSHIFT_API_TOKEN`). When no node runs (after
//! `keyshift down` or a crash) the CLI falls back to the library on the topo
//! (see `workflow.rs`).

use anyhow::{Context, Result, anyhow, bail};
use keyshift_cluster::ClusterFile;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Environment variable holding the bearer token for `--api` (a flag would
/// put the secret in `ps` output and shell history).
pub const TOKEN_ENV: &str = "KEYSHIFT_API_TOKEN";

/// How long the first request may take to connect before the node is
/// considered gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Upper bound on one request: actions (create's pre-checks, a switch) run
/// inside the request, but a hung node must not hang a script forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// The probe reads one page of the list: a node that cannot answer that
/// quickly is not going to run an action well either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong talking to the API; callers branch on `Api.code` to pick
/// the exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing was sent: the connection itself failed.
    #[error("cannot reach the keyshift API at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request may have been sent but no (complete) answer came back.
    #[error("the keyshift API at {url} did not answer: {source}")]
    NoAnswer {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API's error answer: `{"error":{"code","message","details"}}`.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Value,
    },
    /// An answer that is not what this build expects (another version?).
    #[error("unexpected answer from the keyshift API at {url}: {why}")]
    Protocol { url: String, why: String },
}

/// A connection to one node's API.
pub struct Client {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: String,
    http: reqwest::Client,
    /// Where the token came from, for the 401 message.
    token_source: String,
}

/// How to reach the API: where, and with which token.
pub enum Target {
    /// `--api URL` or `KEYSHIFT_API`: this node or an error, no fallback.
    Explicit(Client),
    /// Found through `keyshift.ready`; absent when no node runs.
    Local(Option<Client>),
}

impl Client {
    fn new(base: &str, token: String, token_source: String) -> Result<Client> {
        let base = base.trim().trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base,
            token,
            http,
            token_source,
        })
    }

    /// Finds the API to use: `explicit` (`--api`) if given, else the node
    /// running from the cluster file's data dir (`keyshift.ready`, only
    /// while the node holds its lock, so a stale file after `kill -9` does
    /// not count), checked with one request so that a node whose API does
    /// not answer is treated as down.
    pub async fn locate(cluster: &Path, explicit: Option<&str>) -> Result<Target> {
        let env_token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        if let Some(url) = explicit.filter(|u| !u.trim().is_empty()) {
            let (token, source) = match env_token {
                Some(t) => (t.trim().to_string(), format!("${TOKEN_ENV}")),
                None => {
                    // A local node's token file, if the cluster file is here.
                    let file = ClusterFile::load(cluster).map_err(|_| {
                        anyhow!("--api {url} needs a token: set {TOKEN_ENV} (the node's <data_dir>/api-token)")
                    })?;
                    read_token(&file)?
                }
            };
            let client = Client::new(url, token, source)?;
            client.probe().await.map_err(|e| describe(&client, e))?;
            return Ok(Target::Explicit(client));
        }
        // No cluster file: the library path reports it as it always did.
        let Ok(file) = ClusterFile::load(cluster) else {
            return Ok(Target::Local(None));
        };
        let Some(addr) = crate::node::running_node(&file).and_then(|n| n.api) else {
            return Ok(Target::Local(None));
        };
        let (token, source) = match env_token {
            Some(t) => (t.trim().to_string(), format!("${TOKEN_ENV}")),
            None => read_token(&file)?,
        };
        let client = Client::new(&addr, token, source)?;
        match client.probe().await {
            Ok(()) => Ok(Target::Local(Some(client))),
            // The node is going away (or its API died): the topo still
            // works, and nothing was sent.
            Err(ClientError::Unreachable { .. }) => Ok(Target::Local(None)),
            Err(e) => Err(describe(&client, e)),
        }
    }

    /// One cheap authenticated request: proves the API answers and the
    /// token is right before any action is attempted.
    async fn probe(&self) -> Result<(), ClientError> {
        self.call::<Value>(
            reqwest::Method::GET,
            "/workflows?limit=1",
            None,
            Some(PROBE_TIMEOUT),
        )
        .await
        .map(|_| ())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.call(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    /// Subscribes to the node's server-sent events about `workflow`
    /// (`GET /events?workflow=`), so a follower wakes when the topo changes
    /// instead of on a polling period. `None` when the node does not offer
    /// them; the caller then polls.
    pub async fn events(&self, workflow: &str) -> Option<Events> {
        let url = format!("{}/api/v1/events?workflow={}", self.base, workflow);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            // The stream lives as long as the follower.
            .timeout(Duration::from_secs(7 * 24 * 3600))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut ev = Events { resp };
        // `ready` comes first, once the server's watch is open: anything
        // written after this returns is seen.
        ev.next().await?;
        Some(ev)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|source| {
            if source.is_connect() {
                ClientError::Unreachable {
                    url: self.base.clone(),
                    source,
                }
            } else {
                ClientError::NoAnswer {
                    url: self.base.clone(),
                    source,
                }
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| ClientError::NoAnswer {
            url: self.base.clone(),
            source,
        })?;
        let protocol = |why: String| ClientError::Protocol {
            url: self.base.clone(),
            why,
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| protocol(format!("{path}: {e}")));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            protocol(format!(
                "{path}: HTTP {status} without a JSON error: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        let e = &v["error"];
        match (e["code"].as_str(), e["message"].as_str()) {
            (Some(code), Some(message)) => Err(ClientError::Api {
                status: status.as_u16(),
                code: code.to_string(),
                message: message.to_string(),
                details: e["details"].clone(),
            }),
            _ => Err(protocol(format!("{path}: HTTP {status}: {v}"))),
        }
    }

    /// The message for a refused token, naming where the token came from.
    pub fn unauthorized(&self, message: &str) -> String {
        format!(
            "the keyshift API at {} refused the token from {}: {message}",
            self.base, self.token_source
        )
    }
}

/// A failed probe as an error for `main` (exit 1): nothing was done.
fn describe(client: &Client, e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Api { code, message, .. } if code == "unauthorized" => {
            anyhow!("{}; nothing was done", client.unauthorized(message))
        }
        _ => anyhow::Error::new(e),
    }
}

/// The node's token file: `<data_dir>/api-token`.
fn read_token(file: &ClusterFile) -> Result<(String, String)> {
    let path = keyshift_api::token_path(&file.data_dir());
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the API token {} (or set {TOKEN_ENV})",
            path.display()
        )
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("the API token file {} is empty", path.display());
    }
    Ok((token, path.display().to_string()))
}

/// An open event stream ([`Client::events`]).
pub struct Events {
    resp: reqwest::Response,
}

impl Events {
    /// Waits for the next piece of the stream (an event or a keep-alive);
    /// `None` once it ended or failed.
    pub async fn next(&mut self) -> Option<()> {
        match self.resp.chunk().await {
            Ok(Some(_)) => Some(()),
            _ => None,
        }
    }
}
