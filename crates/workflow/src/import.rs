//! Import: bring a database from an external MySQL or MariaDB server (one
//! keyshift does not run) into a keyspace, while its application keeps
//! writing there.
//!
//! An import is a table-movement workflow whose source is the external
//! server, registered as an unsharded keyspace (default `ext_<database>`)
//! with one external primary tablet that holds the credentials. From there
//! on every phase is the one of MoveTables: copy, replicate, verify-data,
//! switch replicas, switch primaries (keyshift becomes primary and the
//! reverse workflow writes every change back into the external server, so
//! switching back loses nothing), complete or cancel. Two things differ:
//!
//! * complete and cancel never change tables on the external server, and
//!   they remove the registered keyspace with its stored credentials;
//! * before the external server is checked for anything else, keyshift
//!   connects to it with the given credentials and lists every problem of
//!   its configuration at once, each with the SQL or configuration line
//!   that fixes it (see [`validate_import`]).
//!
//! ```text
//!  import create ─► (checks) ─► pending ─► copying ─► running ─► switched_replicas ─► switched_primaries ─► completed
//!                                                                   (reads via gate)    (reverse into the        (reverse stopped,
//!                                                                                       external server)         credentials deleted)
//! ```
//!
//! Credentials live in the tablet record in the topo (the file topo is
//! mode 0600 with `secure_delete`, so a deleted record is overwritten) and
//! never in logs: every `Debug` of them is redacted.

use crate::WorkflowError;
use crate::model::{Options, Trigger, Workflow, WorkflowType};
use crate::ops::{Result, create_with};
use crate::validate::{CreateRequest, ValidationReport, check_with};
use keyshift_cluster::model::{KeyspaceRecord, ShardRecord, TabletRecord, TabletRole, keys};
use keyshift_cluster::ops;
use keyshift_tablet::{TlsMode, TlsSpec};
use keyshift_topo::{Cond, Op, Topo};
use keyshift_types::{KeyRange, TabletAlias};
use keyshift_vschema::KeyspaceVSchema;
use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Binlogs kept for less than this get a warning: a copy, a paused
/// workflow or an outage longer than the retention loses its position.
pub const MIN_BINLOG_RETENTION_SECS: u64 = 48 * 3600;

/// What `import create` is asked to do.
#[derive(Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub name: String,
    /// `mysql://user:password@host:port/database`; user and password
    /// percent-encoded. The password may instead come in `password`.
    pub from: String,
    /// The password, when it is not in `from` (kept out of URLs, shell
    /// history and process lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `disabled` (default), `required`, `verify-ca` or `verify-identity`,
    /// as the `mysql` client's `--ssl-mode`; overrides `ssl-mode=` in `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
    /// PEM text of the CA certificate(s) to trust for `verify-ca` and
    /// `verify-identity` (default: the public roots). `ssl-ca=PATH` in
    /// `from` names a file on the node instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ca: Option<String>,
    /// The keyspace that stands for the external server; default
    /// `ext_<database>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_keyspace: Option<String>,
    pub target_keyspace: String,
    /// The target keyspace's VSchema (the whole document, as `vschema
    /// apply` takes it), checked against the external server's tables and
    /// stored with the workflow. A sharded target needs one naming each
    /// imported table's primary vindex, and it cannot be applied earlier:
    /// until the import registers the external server, keyshift does not
    /// know its tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_vschema: Option<serde_json::Value>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub all_tables: bool,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    #[serde(default)]
    pub options: Options,
    #[serde(default = "default_trigger")]
    pub by: Trigger,
}

fn default_trigger() -> Trigger {
    Trigger::Api
}

impl fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRequest")
            .field("name", &self.name)
            .field("from", &redact_url(&self.from))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssl_mode", &self.ssl_mode)
            .field("source_keyspace", &self.source_keyspace)
            .field("target_keyspace", &self.target_keyspace)
            .field("tables", &self.tables)
            .field("all_tables", &self.all_tables)
            .finish_non_exhaustive()
    }
}

/// The external server, as parsed from `--from`.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    /// `ssl-mode=` of the URL, if any.
    pub ssl_mode: Option<String>,
    /// `ssl-ca=` of the URL: a path on the machine that connects.
    pub ssl_ca_path: Option<String>,
}

impl fmt::Debug for ExternalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .finish()
    }
}

impl ExternalSource {
    /// `mysql://user@host:port/database`, never with the password.
    pub fn display(&self) -> String {
        format!(
            "mysql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// `mysql://user:pass@host` → `mysql://user:***@host`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".into();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (a, h),
        None => return url.to_string(),
    };
    let user = auth.split(':').next().unwrap_or("");
    if auth.contains(':') {
        format!("{scheme}://{user}:***@{host}")
    } else {
        format!("{scheme}://{user}@{host}")
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-escapes do not decode to UTF-8".to_string())
}

/// Parses `mysql://user[:password]@host[:port]/database`. `password`
/// fills in a password the URL does not carry.
pub fn parse_source_url(
    url: &str,
    password: Option<&str>,
) -> std::result::Result<ExternalSource, String> {
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or("the URL must start with mysql:// (mysql://user:password@host:3306/database)")?;
    let (auth, hostpart) = rest
        .rsplit_once('@')
        .ok_or("the URL names no user (mysql://user:password@host:3306/database)")?;
    let (user, url_password) = match auth.split_once(':') {
        Some((u, p)) => (percent_decode(u)?, Some(percent_decode(p)?)),
        None => (percent_decode(auth)?, None),
    };
    if user.is_empty() {
        return Err("the URL names no user".into());
    }
    let (hostport, database) = hostpart
        .split_once('/')
        .ok_or("the URL names no database (…@host:3306/database)")?;
    let (database, query) = database.split_once('?').unwrap_or((database, ""));
    let database = percent_decode(database)?;
    let mut ssl_mode = None;
    let mut ssl_ca_path = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k.to_ascii_lowercase().replace('_', "-").as_str() {
            "ssl-mode" | "sslmode" => ssl_mode = Some(percent_decode(v)?),
            "ssl-ca" | "sslca" => ssl_ca_path = Some(percent_decode(v)?),
            _ => {
                return Err(format!(
                    "unknown URL parameter `{k}` (known: ssl-mode, ssl-ca)"
                ));
            }
        }
    }
    if database.is_empty() {
        return Err("the URL names no database (…@host:3306/database)".into());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port `{p}`"))?,
            None if after.is_empty() => 3306,
            None => return Err(format!("unexpected `{after}` after the host")),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port `{p}`"))?,
            ),
            None => (hostport.to_string(), 3306),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    let password = match (url_password, password) {
        (Some(p), _) => p,
        (None, Some(p)) => p.to_string(),
        (None, None) => String::new(),
    };
    Ok(ExternalSource {
        host,
        port,
        user,
        password,
        database,
        ssl_mode,
        ssl_ca_path,
    })
}

/// The TLS settings of an import: `ssl_mode`/`ssl_ca` of the request, else
/// the URL's parameters.
fn tls_of(
    req: &ImportRequest,
    src: &ExternalSource,
) -> std::result::Result<Option<TlsSpec>, String> {
    let mode = req.ssl_mode.clone().or_else(|| src.ssl_mode.clone());
    let mode = match mode.as_deref().map(str::trim) {
        None | Some("") => return Ok(None),
        Some(m) if m.eq_ignore_ascii_case("disabled") => return Ok(None),
        Some(m) if m.eq_ignore_ascii_case("preferred") => {
            return Err("ssl mode `preferred` would fall back to plain text silently; use required, verify-ca or verify-identity (or disabled)".into());
        }
        Some(m) => m.parse::<TlsMode>()?,
    };
    let ca_pem = match (&req.ssl_ca, &src.ssl_ca_path) {
        (Some(pem), _) if !pem.trim().is_empty() => Some(pem.clone()),
        (_, Some(path)) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("reading ssl-ca {path}: {e}"))?)
        }
        _ => None,
    };
    if let Some(pem) = &ca_pem
        && !pem.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err("the CA given is not a PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(Some(TlsSpec { mode, ca_pem }))
}

/// The database name as an identifier: anything but letters, digits and
/// `_` becomes `_`.
fn identifier_of(database: &str) -> String {
    database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The keyspace name an import uses for its external server.
pub fn source_keyspace_name(req: &ImportRequest, src: &ExternalSource) -> String {
    req.source_keyspace
        .clone()
        .unwrap_or_else(|| format!("ext_{}", identifier_of(&src.database)))
}

/// The workflow name when none is given: `import_<database>`, or `import`
/// when the URL does not parse (the checks then report the URL).
pub fn default_workflow_name(from: &str) -> String {
    match parse_source_url(from, None) {
        Ok(src) => format!("import_{}", identifier_of(&src.database)),
        Err(_) => "import".to_string(),
    }
}

fn create_request(req: &ImportRequest, source_keyspace: &str) -> CreateRequest {
    CreateRequest {
        name: req.name.clone(),
        source_keyspace: source_keyspace.to_string(),
        target_keyspace: req.target_keyspace.clone(),
        tables: req.tables.clone(),
        all_tables: req.all_tables,
        exclude_tables: req.exclude_tables.clone(),
        options: req.options.clone(),
        by: req.by,
    }
}

/// Everything `create` would check, without creating anything: the
/// external server (reachable, authenticated, binlog and GTID settings,
/// binlog retention, privileges, storage engines, views and triggers) and
/// then every check of a table-movement workflow against it.
pub async fn validate_import(topo: &dyn Topo, req: &ImportRequest) -> Result<ValidationReport> {
    Ok(prepare(topo, req).await?.0)
}

/// What a successful validation hands to `create`.
struct Prepared {
    source_keyspace: String,
    shard: ShardRecord,
    tablet: TabletRecord,
    target_vschema: Option<KeyspaceVSchema>,
}

/// Parses and validates `--target-vschema` against the live schemas plus
/// the external server's tables; faults become findings with their path.
async fn check_target_vschema(
    topo: &dyn Topo,
    req: &ImportRequest,
    source_keyspace: &str,
    tablet: &TabletRecord,
    r: &mut ValidationReport,
) -> Result<Option<KeyspaceVSchema>> {
    let Some(doc) = &req.target_vschema else {
        return Ok(None);
    };
    let fault = |r: &mut ValidationReport, path: &str, msg: &str| {
        r.add(
            None,
            "vschema",
            format!("target VSchema: {path}: {msg}"),
            "correct the target VSchema (--target-vschema) at that path",
        )
    };
    let vs = match keyshift_vschema::parse_vschema_shape(&doc.to_string()) {
        Ok(v) => v,
        Err(faults) => {
            for f in faults.0 {
                fault(r, &f.path, &f.message);
            }
            return Ok(None);
        }
    };
    let Ok(target) = ops::get_keyspace(topo, &req.target_keyspace).await else {
        // The keyspace check reports it.
        return Ok(None);
    };
    let mut catalog = keyshift_cluster::schema::read_catalog(topo)
        .await
        .map_err(|e| WorkflowError::Server(format!("reading the keyspaces' schemas: {e}")))?;
    match keyshift_cluster::schema::read_tables(tablet).await {
        Ok(tables) => {
            catalog.insert_keyspace(source_keyspace);
            for t in tables {
                catalog.insert(source_keyspace, t);
            }
        }
        Err(why) => catalog.mark_unreadable(source_keyspace, why),
    }
    let mut others = ops::all_vschemas(topo)
        .await
        .map_err(|e| WorkflowError::Server(format!("reading the VSchemas: {e}")))?;
    others.remove(&req.target_keyspace);
    if let Err(faults) = keyshift_vschema::validate_vschema(
        &req.target_keyspace,
        target.sharded,
        &vs,
        &catalog,
        &others,
    ) {
        for f in faults.0 {
            fault(r, &f.path, &f.message);
        }
        return Ok(None);
    }
    Ok(Some(vs))
}

async fn prepare(
    topo: &dyn Topo,
    req: &ImportRequest,
) -> Result<(ValidationReport, Option<Prepared>)> {
    let mut r = ValidationReport::default();
    let src = match parse_source_url(&req.from, req.password.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            r.add(
                None,
                "request",
                format!("--from `{}`: {e}", redact_url(&req.from)),
                "give --from mysql://user:password@host:3306/database",
            );
            return Ok((r, None));
        }
    };
    let tls = match tls_of(req, &src) {
        Ok(t) => t,
        Err(e) => {
            r.add(
                None,
                "request",
                format!("TLS settings: {e}"),
                "give --ssl-mode required|verify-ca|verify-identity and, to verify, --ssl-ca with the server's CA certificate (PEM)",
            );
            return Ok((r, None));
        }
    };
    let ks = source_keyspace_name(req, &src);
    if !keyshift_vschema::valid_identifier(&ks) {
        r.add(
            None,
            "request",
            format!("`{ks}` is not a valid keyspace name"),
            "pass --source-keyspace with letters, digits and underscores",
        );
    } else if ops::get_keyspace(topo, &ks).await.is_ok() {
        r.add(
            None,
            "keyspace",
            format!("keyspace `{ks}` already exists"),
            "pass another --source-keyspace (it names the external server inside keyshift)",
        );
    }
    // The alias's cell follows the target's tablets; the uid is handed out
    // only when the import is created.
    let cell = match ops::shard_primaries(topo, &req.target_keyspace).await {
        Ok(shards) => shards
            .iter()
            .find_map(|(_, t)| t.as_ref().map(|t| t.alias.cell.clone())),
        Err(_) => None,
    }
    .unwrap_or_else(|| "local".to_string());
    let shard = ShardRecord {
        keyspace: ks.clone(),
        name: "0".into(),
        key_range: KeyRange::full(),
        primary: None,
    };
    let tablet = TabletRecord {
        alias: TabletAlias::new(cell, 0),
        keyspace: ks.clone(),
        shard: "0".into(),
        role: TabletRole::Primary,
        database: src.database.clone(),
        host: src.host.clone(),
        port: src.port,
        user: src.user.clone(),
        password: src.password.clone(),
        managed: None,
        socket: None,
        tls: tls.clone(),
    };

    if !check_external(&src, tls.as_ref(), req, &mut r).await {
        // Unreachable: nothing else can be checked.
        return Ok((r, None));
    }
    let target_vschema = check_target_vschema(topo, req, &ks, &tablet, &mut r).await?;
    let creq = create_request(req, &ks);
    let (regular, _) = check_with(
        topo,
        &creq,
        Some(vec![(shard.clone(), tablet.clone())]),
        target_vschema.as_ref(),
    )
    .await?;
    r.tables = regular.tables;
    r.findings.extend(regular.findings);
    let ok = r.ok();
    Ok((
        r,
        ok.then_some(Prepared {
            source_keyspace: ks,
            shard,
            tablet,
            target_vschema,
        }),
    ))
}

/// Validates, then registers the external server (keyspace, shard, tablet
/// with its credentials) in the same topo transaction that creates the
/// workflow: a failed import leaves nothing behind.
pub async fn create_import(topo: &dyn Topo, req: &ImportRequest) -> Result<Workflow> {
    let (report, prepared) = prepare(topo, req).await?;
    let Some(Prepared {
        source_keyspace,
        mut shard,
        mut tablet,
        target_vschema,
    }) = prepared
    else {
        return Err(WorkflowError::Invalid(report));
    };
    let uid = ops::allocate_uids(topo, 1)
        .await
        .map_err(|e| WorkflowError::Server(format!("allocating a tablet uid: {e}")))?[0];
    tablet.alias.uid = uid;
    shard.primary = Some(tablet.alias.clone());
    let record = KeyspaceRecord {
        name: source_keyspace.clone(),
        sharded: false,
        created_at: keyshift_cluster::model::now_unix(),
        import_of: Some(req.name.clone()),
    };
    let vschema = KeyspaceVSchema {
        sharded: false,
        ..Default::default()
    };
    let mut extra = vec![
        put(&keys::keyspace(&source_keyspace), &record)?,
        put(&keys::vschema(&source_keyspace), &vschema)?,
        put(&keys::shard(&source_keyspace, "0"), &shard)?,
        put(&keys::tablet(&tablet.alias), &tablet)?,
    ];
    if let Some(vs) = &target_vschema {
        let key = keys::vschema(&req.target_keyspace);
        let mut op = put(&key, vs)?;
        if let Op::Put { cond, .. } = &mut op {
            // Replaces the target's VSchema, as `vschema apply` does.
            *cond = Cond::Any;
        }
        extra.push(op);
    }
    let creq = create_request(req, &source_keyspace);
    create_with(
        topo,
        &creq,
        WorkflowType::Import,
        Some(vec![(shard, tablet)]),
        target_vschema.as_ref(),
        extra,
    )
    .await
}

fn put<T: Serialize>(key: &str, v: &T) -> Result<Op> {
    let value =
        serde_json::to_vec(v).map_err(|e| WorkflowError::Server(format!("encoding {key}: {e}")))?;
    Ok(Op::Put {
        key: key.to_string(),
        value,
        cond: Cond::Absent,
    })
}

/// Deletes of the external server's registration (keyspace, shards,
/// VSchema, tablets and so the credentials), for the final transaction of
/// complete or cancel. Empty when `w` is not an import or the keyspace is
/// gone already.
pub(crate) async fn registration_deletes(topo: &dyn Topo, w: &Workflow) -> Result<Vec<Op>> {
    if w.kind != WorkflowType::Import {
        return Ok(Vec::new());
    }
    let ks = &w.source_keyspace;
    match ops::get_keyspace(topo, ks).await {
        Ok(k) if k.import_of.as_deref() == Some(w.name.as_str()) => {}
        _ => return Ok(Vec::new()),
    }
    let mut out = Vec::new();
    for kv in topo.list(&keys::keyspace_dir(ks)).await? {
        out.push(Op::Delete {
            key: kv.key,
            cond: Cond::Any,
        });
    }
    let tablets = ops::list_tablets(topo)
        .await
        .map_err(|e| WorkflowError::Server(format!("listing tablets: {e}")))?;
    for t in tablets.iter().filter(|t| &t.keyspace == ks) {
        out.push(Op::Delete {
            key: keys::tablet(&t.alias),
            cond: Cond::Any,
        });
    }
    Ok(out)
}

/// The notice every interface shows before an import's primaries are
/// switched.
pub fn switch_notice(gate_hint: &str) -> String {
    format!(
        "After switching primaries keyshift is the primary for these tables: applications must write through the gate ({gate_hint}), not to the external server. Writes made directly to the external server from then on are not replicated anywhere (split brain) and would be overwritten or lost when switching back."
    )
}

/// Checks of the external server itself; false when it cannot be reached
/// (the other checks need a connection).
async fn check_external(
    src: &ExternalSource,
    tls: Option<&TlsSpec>,
    req: &ImportRequest,
    r: &mut ValidationReport,
) -> bool {
    let ep = keyshift_tablet::Endpoint {
        host: src.host.clone(),
        port: src.port,
        user: src.user.clone(),
        password: src.password.clone(),
        tls: tls.cloned(),
    };
    let loopback = src.host == "localhost"
        || src
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if tls.is_none() && !loopback {
        r.warn(
            None,
            "tls",
            format!(
                "the connection to {}:{} is not encrypted: rows and changes cross the network in clear text",
                src.host, src.port
            ),
            "add --ssl-mode verify-identity --ssl-ca <the server's CA certificate> (or ?ssl-mode=verify-identity&ssl-ca=PATH in --from)",
        );
    }
    if let Some(t) = tls
        && t.mode == TlsMode::Required
    {
        r.warn(
            None,
            "tls",
            "ssl-mode required encrypts but does not check the server's certificate: a man in the middle would not be noticed",
            "use --ssl-mode verify-ca or verify-identity with --ssl-ca",
        );
    }
    let opts = mysql_async::OptsBuilder::from_opts(ep.opts()).db_name(Some(src.database.clone()));
    let conn = tokio::time::timeout(
        keyshift_tablet::CONNECT_TIMEOUT,
        mysql_async::Conn::new(opts),
    )
    .await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let (problem, fix) = connect_failure(src, tls.is_some(), &e);
            r.add(None, "connection", problem, fix);
            return false;
        }
        Err(_) => {
            r.add(
                None,
                "connection",
                format!(
                    "{}:{} did not answer within {} s",
                    src.host,
                    src.port,
                    keyshift_tablet::CONNECT_TIMEOUT.as_secs()
                ),
                "check the host and port, and that this machine may reach them (firewall, bind_address)",
            );
            return false;
        }
    };
    if let Err(e) = facts_checks(&mut conn, src, req, r).await {
        r.add(
            None,
            "connection",
            format!("reading the server's settings failed: {e}"),
            "let the user read information_schema and the server's variables",
        );
    }
    let _ = conn.disconnect().await;
    true
}

fn connect_failure(
    src: &ExternalSource,
    tls_used: bool,
    e: &mysql_async::Error,
) -> (String, String) {
    let code = match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    };
    let at = format!("{}:{}", src.host, src.port);
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("secure transport") || text.contains("insecure transport") {
        return (
            format!("{at} accepts only encrypted connections: {e}"),
            "add --ssl-mode verify-ca --ssl-ca <the server's CA certificate> (or verify-identity)"
                .into(),
        );
    }
    if matches!(e, mysql_async::Error::Io(mysql_async::IoError::Tls(_)))
        || text.contains("certificate")
        || text.contains("tls")
    {
        return (
            format!("TLS with {at} failed: {e}"),
            "check --ssl-ca (the CA that signed the server's certificate), --ssl-mode, and for verify-identity that the certificate names the host in --from".into(),
        );
    }
    match code {
        Some(1045) => (
            format!("{at} refused user `{}`: {e}", src.user),
            format!(
                "check the user and password in --from (on the server: CREATE USER '{}'@'%' IDENTIFIED BY '...'){}",
                src.user,
                if tls_used {
                    ""
                } else {
                    "; if the server or the user requires TLS (require_secure_transport, REQUIRE SSL), MariaDB refuses plain connections this way too: add --ssl-mode verify-identity --ssl-ca <the server's CA certificate>"
                }
            ),
        ),
        Some(1044) | Some(1049) => (
            format!("cannot use database `{}` on {at}: {e}", src.database),
            format!(
                "check the database name in --from, and GRANT SELECT ON `{}`.* TO '{}'@'%'",
                src.database, src.user
            ),
        ),
        _ => (
            format!("cannot connect to {at}: {e}"),
            "check the host and port, that the server runs, and that this machine may reach it (firewall, bind_address)".into(),
        ),
    }
}

/// What the server says about itself, for [`settings_findings`].
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    pub mariadb: bool,
    /// Binlog retention in seconds; 0 = kept forever; None = unknown.
    pub retention_secs: Option<u64>,
    /// `SHOW GRANTS` as (privileges, object).
    pub grants: Vec<(Vec<String>, String)>,
    /// `'user'@'host'` as the server knows the account.
    pub account: String,
    /// (table, engine) of the tables to import.
    pub engines: Vec<(String, String)>,
    pub views: Vec<String>,
    /// (trigger, table).
    pub triggers: Vec<(String, String)>,
}

/// Findings about retention, privileges, engines, views and triggers.
/// Binlog format, row image, GTIDs, keys and character sets are checked
/// by the table-movement validation that follows.
pub fn settings_findings(f: &ServerFacts, db: &str, r: &mut ValidationReport) {
    if let Some(s) = f.retention_secs
        && s > 0
        && s < MIN_BINLOG_RETENTION_SECS
    {
        r.warn(
            None,
            "binlog_retention",
            format!(
                "the server keeps binlogs for {:.1} hours; a copy, a stopped workflow or an outage longer than that cannot resume",
                s as f64 / 3600.0
            ),
            format!(
                "SET GLOBAL binlog_expire_logs_seconds = {MIN_BINLOG_RETENTION_SECS}; and binlog_expire_logs_seconds = {MIN_BINLOG_RETENTION_SECS} under [mysqld] in the server's configuration"
            ),
        );
    }
    let held = |obj_ok: &dyn Fn(&str) -> bool, alts: &[&str]| {
        f.grants.iter().any(|(p, obj)| {
            obj_ok(obj)
                && p.iter()
                    .any(|p| p == "ALL PRIVILEGES" || p == "ALL" || alts.iter().any(|a| p == a))
        })
    };
    let global = |o: &str| o == "*.*";
    let on_db = |o: &str| o == "*.*" || o == format!("{db}.*");
    let on_sidecar = |o: &str| o == "*.*" || o == "_keyshift.*" || o == "\\_keyshift.*";
    let mut missing_global = Vec::new();
    if !held(&global, &["RELOAD", "LOCK TABLES"]) && !held(&on_db, &["LOCK TABLES"]) {
        missing_global.push("RELOAD");
    }
    if !missing_global.is_empty() {
        r.add(
            None,
            "privileges",
            format!(
                "{} lacks RELOAD or LOCK TABLES (needed for consistent snapshots)",
                f.account
            ),
            format!("GRANT RELOAD ON *.* TO {}", f.account),
        );
    }
    let writes: Vec<&str> = ["INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .filter(|p| !held(&on_db, &[p]))
        .collect();
    if !writes.is_empty() {
        r.add(
            None,
            "privileges",
            format!(
                "{} lacks {} on `{db}`: after switching primaries, reverse replication writes every change back into this server so that switching back loses nothing",
                f.account,
                writes.join(", ")
            ),
            format!("GRANT {} ON `{db}`.* TO {}", writes.join(", "), f.account),
        );
    }
    let sidecar: Vec<&str> = ["CREATE", "INSERT", "UPDATE", "DELETE", "SELECT"]
        .into_iter()
        .filter(|p| !held(&on_sidecar, &[p]))
        .collect();
    if !sidecar.is_empty() {
        r.add(
            None,
            "privileges",
            format!(
                "{} lacks {} on `_keyshift`: reverse replication keeps its position there, next to the rows it writes",
                f.account,
                sidecar.join(", ")
            ),
            format!("GRANT {} ON `_keyshift`.* TO {}", sidecar.join(", "), f.account),
        );
    }
    for (t, engine) in &f.engines {
        if !engine.eq_ignore_ascii_case("InnoDB") {
            r.add(
                Some(t),
                "engine",
                format!("table `{t}` uses {engine}: only InnoDB has the consistent snapshots and transactional binlog an online copy needs"),
                format!("ALTER TABLE `{db}`.`{t}` ENGINE=InnoDB"),
            );
        }
    }
    if !f.views.is_empty() {
        r.warn(
            None,
            "views",
            format!("views are not imported: {}", f.views.join(", ")),
            "create them in the target keyspace through the gate once the tables are imported (SHOW CREATE VIEW on the external server gives their definitions)",
        );
    }
    // information_schema.triggers shows only triggers of tables the user
    // has the TRIGGER privilege on: without it, none is not a "none".
    if f.triggers.is_empty() && !held(&on_db, &["TRIGGER"]) {
        r.warn(
            None,
            "triggers",
            format!(
                "{} cannot see triggers (that needs the TRIGGER privilege), so keyshift cannot tell whether any would be left behind; triggers are not imported",
                f.account
            ),
            format!("GRANT TRIGGER ON `{db}`.* TO {} to have them listed here, or check SHOW TRIGGERS FROM `{db}` as an administrator", f.account),
        );
    }
    for (trigger, table) in &f.triggers {
        r.warn(
            Some(table),
            "triggers",
            format!("trigger `{trigger}` on `{table}` is not imported: its effects reach keyshift only as replicated rows while importing, and stop after switching primaries"),
            format!("re-create its logic in the application, or run SHOW CREATE TRIGGER `{db}`.`{trigger}` and create it on every target shard after completing"),
        );
    }
}

async fn facts_checks(
    conn: &mut mysql_async::Conn,
    src: &ExternalSource,
    req: &ImportRequest,
    r: &mut ValidationReport,
) -> std::result::Result<(), mysql_async::Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let mariadb = version
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("mariadb");
    // MariaDB 10.6+ and MySQL 8 have binlog_expire_logs_seconds; older
    // servers only expire_logs_days.
    let secs: Option<Option<String>> = conn
        .query_first("SELECT CAST(@@binlog_expire_logs_seconds AS CHAR)")
        .await
        .ok();
    let retention_secs = match secs.flatten().and_then(|s| s.parse::<f64>().ok()) {
        Some(s) => Some(s as u64),
        None => conn
            .query_first::<Option<String>, _>("SELECT CAST(@@expire_logs_days AS CHAR)")
            .await
            .ok()
            .flatten()
            .flatten()
            .and_then(|d| d.parse::<f64>().ok())
            .map(|d| (d * 86400.0) as u64),
    };
    let grants: Vec<String> = conn.query("SHOW GRANTS").await?;
    let grants = grants
        .iter()
        .filter_map(|l| crate::validate::parse_grant(l))
        .collect();
    let account: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    let account = match account.as_deref().and_then(|a| a.rsplit_once('@')) {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => format!("'{}'@'%'", src.user),
    };
    let tables: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT table_name, engine FROM information_schema.tables \
             WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
            (src.database.as_str(),),
        )
        .await?;
    let wanted: BTreeSet<&str> = req.tables.iter().map(String::as_str).collect();
    let engines = tables
        .into_iter()
        .filter(|(t, _)| {
            if req.all_tables {
                !req.exclude_tables.contains(t)
            } else {
                wanted.contains(t.as_str())
            }
        })
        .map(|(t, e)| (t, e.unwrap_or_else(|| "unknown".into())))
        .collect();
    let views: Vec<String> = conn
        .exec(
            "SELECT table_name FROM information_schema.views WHERE table_schema = ? ORDER BY table_name",
            (src.database.as_str(),),
        )
        .await?;
    let triggers: Vec<(String, String)> = conn
        .exec(
            "SELECT trigger_name, event_object_table FROM information_schema.triggers \
             WHERE trigger_schema = ? ORDER BY trigger_name",
            (src.database.as_str(),),
        )
        .await?;
    let facts = ServerFacts {
        mariadb,
        retention_secs,
        grants,
        account,
        engines,
        views,
        triggers,
    };
    settings_findings(&facts, &src.database, r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Severity, parse_grant};

    #[test]
    fn urls_parse_with_defaults_and_escapes() {
        let s = parse_source_url("mysql://app:p%40ss%3Aw@db.example:3307/shop", None).unwrap();
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.password.as_str()
            ),
            ("db.example", 3307, "app", "p@ss:w")
        );
        assert_eq!(s.database, "shop");
        let s = parse_source_url("mysql://app@[::1]/shop?ssl-mode=required", Some("x")).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.password.as_str()),
            ("::1", 3306, "x")
        );
        assert_eq!(s.database, "shop");
        for bad in [
            "postgres://a@b/c",
            "mysql://b/c",
            "mysql://a@b",
            "mysql://a@b/",
            "mysql://a@b:x/c",
            "mysql://a@b/%zz",
        ] {
            assert!(parse_source_url(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_comes_from_the_request_or_the_url() {
        let req = |mode: Option<&str>, ca: Option<&str>| ImportRequest {
            name: "i".into(),
            from: String::new(),
            password: None,
            ssl_mode: mode.map(str::to_string),
            ssl_ca: ca.map(str::to_string),
            source_keyspace: None,
            target_keyspace: "t".into(),
            target_vschema: None,
            tables: vec![],
            all_tables: true,
            exclude_tables: vec![],
            options: Options::default(),
            by: Trigger::Cli,
        };
        let plain = parse_source_url("mysql://a@h/db", None).unwrap();
        assert_eq!(tls_of(&req(None, None), &plain).unwrap(), None);
        assert_eq!(tls_of(&req(Some("DISABLED"), None), &plain).unwrap(), None);
        assert!(tls_of(&req(Some("preferred"), None), &plain).is_err());
        assert!(tls_of(&req(Some("bogus"), None), &plain).is_err());
        let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        let t = tls_of(&req(Some("verify_ca"), Some(pem)), &plain)
            .unwrap()
            .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyCa);
        assert_eq!(t.ca_pem.as_deref(), Some(pem));
        assert!(tls_of(&req(Some("verify-ca"), Some("not a cert")), &plain).is_err());
        let url = parse_source_url("mysql://a@h/db?ssl-mode=required", None).unwrap();
        assert_eq!(url.ssl_mode.as_deref(), Some("required"));
        let t = tls_of(&req(None, None), &url).unwrap().unwrap();
        assert_eq!((t.mode, t.ca_pem), (TlsMode::Required, None));
        // The request's flags win over the URL's.
        assert_eq!(tls_of(&req(Some("disabled"), None), &url).unwrap(), None);
        assert!(parse_source_url("mysql://a@h/db?sslmode=x&bogus=1", None).is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://app:secret@h:1/db"),
            "mysql://app:***@h:1/db"
        );
        assert_eq!(redact_url("mysql://app@h/db"), "mysql://app@h/db");
        let req = ImportRequest {
            name: "i".into(),
            from: "mysql://app:secret@h:1/db".into(),
            password: Some("other-secret".into()),
            ssl_mode: None,
            ssl_ca: None,
            source_keyspace: None,
            target_keyspace: "t".into(),
            target_vschema: None,
            tables: vec![],
            all_tables: true,
            exclude_tables: vec![],
            options: Options::default(),
            by: Trigger::Cli,
        };
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    fn facts(grants: &[&str]) -> ServerFacts {
        ServerFacts {
            mariadb: true,
            retention_secs: Some(0),
            grants: grants.iter().filter_map(|l| parse_grant(l)).collect(),
            account: "'app'@'%'".into(),
            engines: vec![("t".into(), "InnoDB".into())],
            views: vec![],
            triggers: vec![],
        }
    }

    #[test]
    fn a_well_set_up_server_has_no_findings() {
        let mut r = ValidationReport::default();
        settings_findings(
            &facts(&[
                "GRANT RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `app`@`%`",
                "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON `shop`.* TO `app`@`%`",
                "GRANT ALL PRIVILEGES ON `_keyshift`.* TO `app`@`%`",
            ]),
            "shop",
            &mut r,
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn each_problem_has_its_finding_and_fix() {
        let mut f = facts(&["GRANT SELECT ON `shop`.* TO `app`@`%`"]);
        f.retention_secs = Some(86400);
        f.engines.push(("legacy".into(), "MyISAM".into()));
        f.views = vec!["v_orders".into()];
        f.triggers = vec![("trg_audit".into(), "t".into())];
        let mut r = ValidationReport::default();
        settings_findings(&f, "shop", &mut r);
        let by =
            |check: &str| -> Vec<_> { r.findings.iter().filter(|x| x.check == check).collect() };
        let ret = by("binlog_retention");
        assert_eq!(ret.len(), 1);
        assert_eq!(ret[0].severity, Severity::Warning);
        assert!(ret[0].problem.contains("24.0 hours"), "{}", ret[0].problem);
        assert!(ret[0].fix.contains("binlog_expire_logs_seconds = 172800"));
        let privs = by("privileges");
        assert_eq!(privs.len(), 3, "{privs:?}");
        assert_eq!(privs[0].fix, "GRANT RELOAD ON *.* TO 'app'@'%'");
        assert_eq!(
            privs[1].fix,
            "GRANT INSERT, UPDATE, DELETE ON `shop`.* TO 'app'@'%'"
        );
        assert!(
            privs[2]
                .fix
                .starts_with("GRANT CREATE, INSERT, UPDATE, DELETE, SELECT ON `_keyshift`.*")
        );
        let eng = by("engine");
        assert_eq!(eng.len(), 1);
        assert_eq!(eng[0].fix, "ALTER TABLE `shop`.`legacy` ENGINE=InnoDB");
        assert_eq!(by("views")[0].severity, Severity::Warning);
        assert!(by("views")[0].problem.contains("v_orders"));
        assert_eq!(by("triggers")[0].table.as_deref(), Some("t"));
        assert!(!r.ok());
        // Warnings alone do not block.
        let mut w = ValidationReport::default();
        let mut ok = facts(&["GRANT ALL PRIVILEGES ON *.* TO `app`@`%`"]);
        ok.views = vec!["v".into()];
        ok.retention_secs = Some(3600);
        settings_findings(&ok, "shop", &mut w);
        assert_eq!(w.findings.len(), 2);
        assert!(w.ok());
    }
}
