//! The cluster file: what a user declares, in TOML, before `keyshift up`.
//!
//! It seeds the topo. Once a keyspace, shard or tablet exists in the topo the
//! topo is the truth (a workflow may have resharded since), and a cluster file
//! that disagrees gets a warning, not a rewrite. See `keyshift.toml` at the
//! repository root for a commented example.

use crate::model::TabletRole;
use keyshift_types::KeyRange;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error(
        "cannot read cluster file {path}: {source}\n  create one (see keyshift.toml in the keyshift repository) or pass --cluster PATH"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster file {path} is not valid: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("cluster file {path} has {} problem{}:\n{}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Where the topo, managed datadirs, logs and the API token live.
    /// Relative paths are relative to the cluster file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Topo address: `file` (default, `<data_dir>/topo.db`), `file:/path`, or
    /// `etcd://host:port`.
    #[serde(default)]
    pub topo: Option<String>,
    /// The cell of the tablets this file declares (Vitess's word for a
    /// failure domain); tablet aliases read `cell-uid`.
    #[serde(default = "default_cell")]
    pub cell: String,
    /// Path of `mariadbd`, when it is not in PATH or /usr/sbin.
    #[serde(default)]
    pub mariadbd: Option<PathBuf>,
    #[serde(default)]
    pub gate: GateSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default, rename = "keyspace")]
    pub keyspaces: Vec<KeyspaceDecl>,
    #[serde(default, rename = "tablet")]
    pub tablets: Vec<TabletDecl>,
    /// The directory the file was read from; relative paths resolve here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("keyshift-data")
}
fn default_cell() -> String {
    "local".to_string()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    #[serde(default = "default_gate_listen")]
    pub listen: String,
    /// The gate's unix socket, for applications on this host (`mariadb -S
    /// PATH`): absent means `<data_dir>/gate.sock`, `""` none; a relative
    /// path is relative to the cluster file's directory, like `data_dir`.
    /// See [`ClusterFile::gate_socket`].
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default, rename = "user")]
    pub users: Vec<GateUserDecl>,
}

impl Default for GateSection {
    fn default() -> Self {
        GateSection {
            listen: default_gate_listen(),
            socket: None,
            users: Vec::new(),
        }
    }
}

/// Longest path a unix socket can have (`sockaddr_un.sun_path` is 108 bytes
/// on Linux, with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The default gate socket's name in the data dir.
const GATE_SOCKET: &str = "gate.sock";

fn default_gate_listen() -> String {
    "127.0.0.1:15306".to_string()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateUserDecl {
    pub name: String,
    /// The password itself, or `env:VAR` to read it from the environment.
    pub password: String,
}

impl std::fmt::Debug for GateUserDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateUserDecl")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    #[serde(default = "default_api_listen")]
    pub listen: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: default_api_listen(),
        }
    }
}

fn default_api_listen() -> String {
    "127.0.0.1:15000".to_string()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceDecl {
    pub name: String,
    /// Explicit shard names (`["-80", "80-"]`), or ...
    #[serde(default)]
    pub shards: Option<Vec<String>>,
    /// ... N equal key ranges. Neither: one unsharded shard `0`.
    #[serde(default)]
    pub shard_count: Option<usize>,
}

impl KeyspaceDecl {
    pub fn shard_spec(&self) -> Result<crate::ops::ShardSpec, String> {
        match (&self.shards, self.shard_count) {
            (Some(_), Some(_)) => Err(format!(
                "keyspace `{}`: give `shards` or `shard_count`, not both",
                self.name
            )),
            (Some(s), None) => Ok(crate::ops::ShardSpec::Named(s.clone())),
            (None, Some(n)) => Ok(crate::ops::ShardSpec::Count(n)),
            (None, None) => Ok(crate::ops::ShardSpec::Unsharded),
        }
    }
}

/// A tablet: managed (keyshift runs mariadbd; the default) or external (give
/// `host`, and usually `port`, `user`, `password`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TabletDecl {
    pub keyspace: String,
    pub shard: String,
    /// Unique number; picked automatically when absent.
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub role: TabletRole,
    /// Managed: the port to run on (absent or 0: any free loopback port).
    /// External: the server's port (default 3306).
    #[serde(default)]
    pub port: Option<u16>,
    /// External tablets only.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The password itself, or `env:VAR`.
    #[serde(default)]
    pub password: Option<String>,
    /// Database holding the keyspace's tables (default: the keyspace name).
    #[serde(default)]
    pub database: Option<String>,
}

impl std::fmt::Debug for TabletDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabletDecl")
            .field("keyspace", &self.keyspace)
            .field("shard", &self.shard)
            .field("uid", &self.uid)
            .field("role", &self.role)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TabletDecl {
    pub fn is_external(&self) -> bool {
        self.host.is_some()
    }
}

/// Resolves `env:VAR` indirections so secrets need not sit in the file.
pub fn resolve_secret(value: &str) -> Result<String, String> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .map_err(|_| format!("environment variable {var} is not set (named by `env:{var}`)")),
        None => Ok(value.to_string()),
    }
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<ClusterFile, ClusterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = Self::parse(&text, path)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        file.base_dir = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        Ok(file)
    }

    /// Parses and checks the file's own consistency; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterFile, ClusterFileError> {
        let mut file: ClusterFile = toml::from_str(text).map_err(|e| ClusterFileError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        file.path = path.to_path_buf();
        file.base_dir = PathBuf::from(".");
        let problems = file.problems();
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(ClusterFileError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !keyshift_vschema::valid_identifier(&self.cell) || self.cell.contains('$') {
            p.push(format!("cell `{}`: use letters, digits and '_'", self.cell));
        }
        if self.gate.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "[gate] listen = \"{}\" is not an address like 127.0.0.1:15306",
                self.gate.listen
            ));
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "[api] listen = \"{}\" is not an address like 127.0.0.1:15000",
                self.api.listen
            ));
        }
        let mut users = BTreeSet::new();
        for u in &self.gate.users {
            if u.name.is_empty() || u.name.len() > 80 {
                p.push("[[gate.user]] name must be 1 to 80 characters".to_string());
            }
            if !users.insert(&u.name) {
                p.push(format!("[[gate.user]] `{}` is declared twice", u.name));
            }
            if u.password.is_empty() {
                p.push(format!(
                    "[[gate.user]] `{}` has an empty password; the gate refuses passwordless users",
                    u.name
                ));
            }
        }
        let mut shards_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ks in &self.keyspaces {
            if !keyshift_vschema::valid_identifier(&ks.name) {
                p.push(format!(
                    "[[keyspace]] name `{}`: use letters, digits and '_'",
                    ks.name
                ));
            }
            if shards_of.contains_key(ks.name.as_str()) {
                p.push(format!("[[keyspace]] `{}` is declared twice", ks.name));
            }
            match ks.shard_spec().and_then(|s| s.key_ranges()) {
                Ok(ranges) => {
                    shards_of.insert(&ks.name, ranges.into_iter().map(|(n, _)| n).collect());
                }
                Err(e) => p.push(format!("[[keyspace]] `{}`: {e}", ks.name)),
            }
        }
        let mut uids = BTreeSet::new();
        let mut primaries = BTreeSet::new();
        for t in &self.tablets {
            let what = format!("[[tablet]] {}/{}", t.keyspace, t.shard);
            match shards_of.get(t.keyspace.as_str()) {
                None => p.push(format!(
                    "{what}: keyspace `{}` is not declared in a [[keyspace]] section",
                    t.keyspace
                )),
                Some(shards) if !shards.contains(&t.shard) => p.push(format!(
                    "{what}: keyspace `{}` has no shard `{}` (its shards: {})",
                    t.keyspace,
                    t.shard,
                    shards.join(", ")
                )),
                Some(_) => {}
            }
            if let Some(uid) = t.uid
                && !uids.insert(uid)
            {
                p.push(format!("{what}: uid {uid} is used by another tablet"));
            }
            if t.role == TabletRole::Primary && !primaries.insert((&t.keyspace, &t.shard)) {
                p.push(format!("{what}: the shard already has a primary"));
            }
            if !t.is_external() && (t.user.is_some() || t.password.is_some()) {
                p.push(format!(
                    "{what}: user/password are for external tablets (give `host`); keyshift makes its own credentials for managed ones"
                ));
            }
            if t.is_external() && t.user.is_none() {
                p.push(format!("{what}: an external tablet needs `user`"));
            }
        }
        p
    }

    /// Resolves every `env:` secret, listing all that are missing. Only `up`
    /// needs the secrets, so only `up` checks them: `down` and `status` work
    /// from a shell that lacks them.
    pub fn check_secrets(&self) -> Result<(), ClusterFileError> {
        let mut problems = Vec::new();
        for t in &self.tablets {
            if let Some(Err(e)) = t.password.as_deref().map(resolve_secret) {
                problems.push(format!("[[tablet]] {}/{}: {e}", t.keyspace, t.shard));
            }
        }
        for u in &self.gate.users {
            if let Err(e) = resolve_secret(&u.password) {
                problems.push(format!("[[gate.user]] `{}`: {e}", u.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ClusterFileError::Invalid {
                path: self.path.clone(),
                problems,
            })
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.base_dir.join(&self.data_dir)
    }

    /// Where the gate listens for unix socket clients, None when `[gate]
    /// socket = ""` turns it off. The default is `<data_dir>/gate.sock`, or,
    /// when that path is too long for a unix socket, a path under /tmp
    /// named by a hash of the data dir (stable across restarts, distinct per
    /// data dir). An explicit path that is too long is an error: silently
    /// listening elsewhere would leave its clients failing.
    pub fn gate_socket(&self) -> Result<Option<PathBuf>, String> {
        match &self.gate.socket {
            Some(p) if p.as_os_str().is_empty() => Ok(None),
            Some(p) => {
                let path = self.base_dir.join(p);
                if path.as_os_str().len() > MAX_SOCKET_PATH {
                    return Err(format!(
                        "[gate] socket: {} is {} bytes long; unix socket paths can have at most {MAX_SOCKET_PATH}",
                        path.display(),
                        path.as_os_str().len()
                    ));
                }
                Ok(Some(path))
            }
            None => {
                let dir = self.data_dir();
                let path = dir.join(GATE_SOCKET);
                if path.as_os_str().len() <= MAX_SOCKET_PATH {
                    return Ok(Some(path));
                }
                // FNV-1a, as the managed tablets' long-path sockets use
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in dir.as_os_str().as_encoded_bytes() {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                Ok(Some(PathBuf::from(format!(
                    "/tmp/keyshift-gate-{h:016x}.sock"
                ))))
            }
        }
    }

    /// The topo URL, with the default file store under the data dir.
    pub fn topo_url(&self) -> String {
        match self.topo.as_deref() {
            None | Some("file") => format!("file:{}", self.data_dir().join("topo.db").display()),
            Some(other) => match other.strip_prefix("file:") {
                Some(p) if Path::new(p).is_relative() => {
                    format!("file:{}", self.base_dir.join(p).display())
                }
                _ => other.to_string(),
            },
        }
    }
}

/// Names and key ranges of a shard layout; used by the file checks and by
/// keyspace creation alike.
pub(crate) fn named_ranges(names: &[String]) -> Result<Vec<(String, KeyRange)>, String> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let r = KeyRange::parse(n).map_err(|e| format!("shard `{n}`: {e}"))?;
        out.push((n.clone(), r));
    }
    if out.len() == 1 && out[0].1.is_full() {
        return Ok(out);
    }
    let ranges: Vec<KeyRange> = out.iter().map(|(_, r)| r.clone()).collect();
    keyshift_types::check_partition(&ranges).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterFile, ClusterFileError> {
        ClusterFile::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_repository_example_is_valid() {
        let text = include_str!("../../../keyshift.toml");
        let f = parse(text).expect("example parses");
        assert_eq!(f.keyspaces.len(), 2);
        assert_eq!(f.tablets.len(), 3);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("[[keyspace]]\nname = \"a\"\nshard_count = \"two\"\n").expect_err("bad");
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        let err = parse("[gate]\nlisten = \"127.0.0.1:1\"\nport = 3\n").expect_err("unknown");
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn all_problems_are_listed() {
        let err = parse(
            r#"
            [[keyspace]]
            name = "customer"
            shards = ["-80", "40-"]
            [[keyspace]]
            name = "commerce"
            [[tablet]]
            keyspace = "commerce"
            shard = "-80"
            [[tablet]]
            keyspace = "nowhere"
            shard = "0"
            user = "x"
            "#,
        )
        .expect_err("invalid");
        let ClusterFileError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("overlap"), "{}", problems[0]);
        assert!(problems[1].contains("no shard `-80`"), "{}", problems[1]);
        assert!(problems[2].contains("not declared"), "{}", problems[2]);
        assert!(problems[3].contains("external"), "{}", problems[3]);
    }

    #[test]
    fn replicas_share_a_shard_with_its_primary() {
        let f = parse(
            r#"
            [[keyspace]]
            name = "commerce"
            [[tablet]]
            keyspace = "commerce"
            shard = "0"
            uid = 100
            [[tablet]]
            keyspace = "commerce"
            shard = "0"
            uid = 101
            role = "replica"
            [[tablet]]
            keyspace = "commerce"
            shard = "0"
            uid = 102
            role = "replica"
            "#,
        )
        .expect("a primary and two replicas");
        let roles: Vec<TabletRole> = f.tablets.iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            [
                TabletRole::Primary,
                TabletRole::Replica,
                TabletRole::Replica
            ]
        );
        let err = parse(
            "[[keyspace]]\nname = \"a\"\n[[tablet]]\nkeyspace = \"a\"\nshard = \"0\"\nrole = \"rdonly\"\n",
        )
        .expect_err("unknown role");
        assert!(err.to_string().contains("rdonly"), "{err}");
    }

    #[test]
    fn the_gate_socket_defaults_to_the_data_dir_and_can_be_turned_off() {
        let mut f = parse("data_dir = \"d\"\n").expect("parses");
        f.base_dir = PathBuf::from("/srv/ks");
        assert_eq!(
            f.gate_socket(),
            Ok(Some(PathBuf::from("/srv/ks/d/gate.sock")))
        );
        let mut f = parse("[gate]\nsocket = \"\"\n").expect("parses");
        f.base_dir = PathBuf::from("/srv/ks");
        assert_eq!(f.gate_socket(), Ok(None));
        let mut f = parse("[gate]\nsocket = \"run/g.sock\"\n").expect("parses");
        f.base_dir = PathBuf::from("/srv/ks");
        assert_eq!(
            f.gate_socket(),
            Ok(Some(PathBuf::from("/srv/ks/run/g.sock")))
        );
        let mut f = parse("[gate]\nsocket = \"/run/keyshift/gate.sock\"\n").expect("parses");
        f.base_dir = PathBuf::from("/srv/ks");
        assert_eq!(
            f.gate_socket(),
            Ok(Some(PathBuf::from("/run/keyshift/gate.sock")))
        );
    }

    #[test]
    fn a_long_gate_socket_path_moves_to_tmp_unless_explicit() {
        let long = format!("/srv/{}", "x".repeat(120));
        let mut f = parse("").expect("parses");
        f.base_dir = PathBuf::from(&long);
        let p = f.gate_socket().expect("default").expect("on");
        assert!(
            p.to_string_lossy().starts_with("/tmp/keyshift-gate-"),
            "{}",
            p.display()
        );
        assert!(p.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(f.gate_socket().expect("stable"), Some(p.clone()));
        f.base_dir = PathBuf::from(format!("{long}y"));
        assert_ne!(f.gate_socket().expect("other dir"), Some(p));
        let mut f = parse("[gate]\nsocket = \"g.sock\"\n").expect("parses");
        f.base_dir = PathBuf::from(&long);
        let err = f.gate_socket().expect_err("too long");
        assert!(err.contains("at most 107"), "{err}");
    }

    #[test]
    fn secrets_from_the_environment_must_exist() {
        let file =
            parse("[[gate.user]]\nname = \"app\"\npassword = \"env:KEYSHIFT_TEST_SURELY_UNSET\"\n")
                .expect("parses without the secret");
        let err = file.check_secrets().expect_err("unset env");
        assert!(err.to_string().contains("KEYSHIFT_TEST_SURELY_UNSET"));
    }
}
