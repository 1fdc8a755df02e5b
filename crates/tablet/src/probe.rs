use std::fmt;
use std::time::Duration;

use keyshift_types::Flavor;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::ReplicationStatus;

/// How long `Endpoint::connect` waits for a server; mysql_async itself has
/// no connect timeout, and an unreachable host must not hang a caller.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connection target of any tablet, managed or external.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// TLS for servers reached over a network keyshift does not control
    /// (an import's external server); `None` is plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// How keyshift's connections to a server use TLS, with the names of the
/// `mysql` client's `--ssl-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Encrypted, the certificate not checked (protects against sniffing,
    /// not against a man in the middle).
    Required,
    /// Encrypted, the certificate signed by a trusted CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyIdentity,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "required" => Ok(TlsMode::Required),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-identity" => Ok(TlsMode::VerifyIdentity),
            _ => Err(format!(
                "unknown ssl mode `{s}`: use disabled, required, verify-ca or verify-identity"
            )),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Required => "required",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyIdentity => "verify-identity",
        })
    }
}

/// TLS settings of an [`Endpoint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSpec {
    pub mode: TlsMode,
    /// PEM text of the CA certificates to trust, kept as text (not a path)
    /// so that every keyshift process, on any machine, can use it. `None`:
    /// the usual public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl TlsSpec {
    fn ssl_opts(&self) -> mysql_async::SslOpts {
        let mut o = mysql_async::SslOpts::default();
        if let Some(pem) = &self.ca_pem {
            o = o.with_root_certs(vec![pem.as_bytes().to_vec().into()]);
        }
        o.with_danger_accept_invalid_certs(self.mode == TlsMode::Required)
            .with_danger_skip_domain_validation(self.mode != TlsMode::VerifyIdentity)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("tls", &self.tls.as_ref().map(|t| t.mode))
            .finish()
    }
}

impl Endpoint {
    /// Options for a TCP connection to exactly this host and port: the
    /// client's switch to a local socket is off, so every caller exercises
    /// the path other hosts would use. mysql_async has no connect timeout:
    /// use `connect` (or wrap `Conn::new` in a timeout).
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
            .ssl_opts(self.tls.as_ref().map(TlsSpec::ssl_opts))
            .into()
    }

    /// A connection, or an error after CONNECT_TIMEOUT at most.
    pub async fn connect(&self) -> Result<mysql_async::Conn, mysql_async::Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(self.opts())).await {
            Ok(r) => r,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer from {}:{} within {} s",
                        self.host,
                        self.port,
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ),
            ))),
        }
    }

    /// `mysql://user:pass@host:port` with user and password percent-encoded.
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@{}:{}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            self.host,
            self.port
        )
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Health and replication facts of one tablet, for `keyshift status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabletStatus {
    pub healthy: bool,
    /// Why it is not healthy, as the client reported it.
    pub error: Option<String>,
    pub version: Option<String>,
    pub server_id: Option<u32>,
    pub read_only: Option<bool>,
    /// MariaDB `@@gtid_binlog_pos`; on MySQL `@@gtid_executed`.
    pub gtid_binlog_pos: Option<String>,
    /// MariaDB `@@gtid_current_pos`; on MySQL `@@gtid_executed`.
    pub gtid_current_pos: Option<String>,
    pub flavor: Option<Flavor>,
    /// `SHOW SLAVE STATUS` of a server that replicates from another; None
    /// when it has no replication source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
}

impl TabletStatus {
    fn unhealthy(error: String) -> TabletStatus {
        TabletStatus {
            healthy: false,
            error: Some(error),
            ..Default::default()
        }
    }
}

/// Health and replication facts, bounded by `timeout`: an unreachable
/// server is healthy=false with the error text, never a hang.
pub async fn probe(ep: &Endpoint, timeout: Duration) -> TabletStatus {
    match tokio::time::timeout(timeout, probe_inner(ep)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => TabletStatus::unhealthy(format!("{}:{}: {e}", ep.host, ep.port)),
        Err(_) => TabletStatus::unhealthy(format!(
            "{}:{}: no answer within {:.1} s",
            ep.host,
            ep.port,
            timeout.as_secs_f64()
        )),
    }
}

async fn probe_inner(ep: &Endpoint) -> Result<TabletStatus, mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(ep.opts()).await?;
    let row: Option<(String, u32, i64)> = conn
        .query_first("SELECT VERSION(), @@server_id, @@read_only")
        .await?;
    let Some((version, server_id, read_only)) = row else {
        return Ok(TabletStatus::unhealthy(
            "the server returned no row for SELECT VERSION()".into(),
        ));
    };
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDB
    } else {
        Flavor::MySQL
    };
    let (binlog_pos, current_pos) = match flavor {
        Flavor::MariaDB => conn
            .query_first::<(String, String), _>("SELECT @@gtid_binlog_pos, @@gtid_current_pos")
            .await?
            .unzip(),
        Flavor::MySQL => {
            let executed: Option<String> =
                conn.query_first("SELECT @@global.gtid_executed").await?;
            (executed.clone(), executed)
        }
    };
    let mut replication = crate::replication_status(&mut conn).await?;
    if let Some(r) = &mut replication
        && flavor == Flavor::MariaDB
    {
        r.gtid_slave_pos = conn.query_first("SELECT @@GLOBAL.gtid_slave_pos").await?;
    }
    let _ = conn.disconnect().await;
    Ok(TabletStatus {
        healthy: true,
        error: None,
        version: Some(version),
        server_id: Some(server_id),
        read_only: Some(read_only != 0),
        gtid_binlog_pos: binlog_pos,
        gtid_current_pos: current_pos,
        flavor: Some(flavor),
        replication,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let ep = Endpoint {
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: "s3cret".into(),
            tls: None,
        };
        assert!(!format!("{ep:?}").contains("s3cret"));
        assert_eq!(
            Endpoint {
                password: "p@ss:w".into(),
                ..ep
            }
            .url(),
            "mysql://u:p%40ss%3Aw@h:1"
        );
    }
}
