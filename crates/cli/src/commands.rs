//! Cluster configuration commands. Each is a thin shell over a
//! `keyshift_cluster` operation, which the API calls too.

use crate::Format;
use crate::output::{print_json, table};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use keyshift_cluster::ops::{self, ShardSpec, TabletSpec};
use keyshift_cluster::{ClusterFile, TabletRole, status};
use keyshift_topo::Topo;
use keyshift_types::TabletAlias;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The cluster file and its topo, opened.
pub struct Ctx {
    pub file: ClusterFile,
    pub topo: Arc<dyn Topo>,
}

pub async fn open(cluster: &Path) -> Result<Ctx> {
    let file = ClusterFile::load(cluster)?;
    let url = file.topo_url();
    if let Some(path) = url.strip_prefix("file:")
        && !Path::new(path).exists()
    {
        bail!(
            "no cluster has been started from {} yet (its topo {} does not exist); run `keyshift up` first",
            cluster.display(),
            path
        );
    }
    let topo = keyshift_topo::open(&url)
        .await
        .with_context(|| format!("opening the topo at {url}"))?;
    Ok(Ctx { file, topo })
}

#[derive(Subcommand)]
pub enum KeyspaceCmd {
    /// Create a keyspace: unsharded by default.
    Create {
        name: String,
        /// Explicit shard names, e.g. -80,80-
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "shard_count",
            allow_hyphen_values = true
        )]
        shards: Option<Vec<String>>,
        /// N equal key ranges.
        #[arg(long)]
        shard_count: Option<usize>,
        /// Do not create managed tablets for the shards.
        #[arg(long)]
        no_tablets: bool,
    },
    /// Delete a keyspace.
    Delete {
        name: String,
        /// Also remove its tablets (managed servers stop; datadirs stay).
        #[arg(long)]
        recursive: bool,
    },
    /// List keyspaces and their shards.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub enum TabletCmd {
    /// Add a tablet to a shard: managed by default, external with --host.
    Add {
        #[arg(long)]
        keyspace: String,
        #[arg(long)]
        shard: String,
        #[arg(long, default_value = "primary")]
        role: TabletRole,
        #[arg(long)]
        uid: Option<u32>,
        /// External server's host; without it keyshift runs a managed mariadbd.
        #[arg(long)]
        host: Option<String>,
        /// Managed: port to pin (0 = any). External: the server's port.
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, requires = "host")]
        user: Option<String>,
        /// Environment variable holding the external server's password.
        #[arg(long, requires = "host")]
        password_env: Option<String>,
        #[arg(long, requires = "host")]
        database: Option<String>,
    },
    /// Remove a tablet record (a managed server stops; its datadir stays).
    Remove { alias: TabletAlias },
    /// List tablets.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub enum VschemaCmd {
    /// Print a keyspace's VSchema as JSON.
    Get { keyspace: String },
    /// Validate and store a keyspace's VSchema.
    Apply {
        keyspace: String,
        /// JSON file (`-` for stdin).
        #[arg(long, conflicts_with = "json")]
        file: Option<PathBuf>,
        /// JSON text.
        #[arg(long)]
        json: Option<String>,
        /// Validate only.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum RoutingCmd {
    /// Print the routing rules as JSON.
    Get,
    /// Validate and store the routing rules.
    Apply {
        #[arg(long, conflicts_with = "json")]
        file: Option<PathBuf>,
        #[arg(long)]
        json: Option<String>,
    },
}

pub async fn status(cluster: &Path, format: Format) -> Result<()> {
    let ctx = open(cluster).await?;
    let node = crate::node::running_node(&ctx.file);
    let keyspaces = status::cluster_status(ctx.topo.as_ref(), Duration::from_secs(3)).await?;
    if format == Format::Json {
        return print_json(&serde_json::json!({
            "node": node,
            "keyspaces": keyspaces,
        }));
    }
    match &node {
        Some(n) => println!(
            "cluster: running (pid {}), data in {}",
            n.pid,
            ctx.file.data_dir().display()
        ),
        None => println!(
            "cluster: not running from {} — start it with `keyshift up`",
            ctx.file.data_dir().display()
        ),
    }
    let mut rows = Vec::new();
    for ks in &keyspaces {
        for shard in &ks.shards {
            if shard.tablets.is_empty() {
                rows.push(vec![
                    ks.name.clone(),
                    shard.name.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "no tablet".into(),
                    "".into(),
                    "".into(),
                ]);
            }
            for t in &shard.tablets {
                let health = if t.status.healthy {
                    "healthy".to_string()
                } else {
                    format!(
                        "DOWN: {}",
                        t.status.error.clone().unwrap_or_else(|| "unknown".into())
                    )
                };
                rows.push(vec![
                    ks.name.clone(),
                    shard.name.clone(),
                    t.alias.clone(),
                    format!("{}{}", t.role, if t.managed { "" } else { " (external)" }),
                    t.address.clone(),
                    health,
                    t.status.gtid_binlog_pos.clone().unwrap_or_default(),
                    t.replication
                        .as_ref()
                        .map(|r| r.summary.clone())
                        .unwrap_or_default(),
                ]);
            }
        }
    }
    table(
        &[
            "KEYSPACE",
            "SHARD",
            "TABLET",
            "ROLE",
            "ADDRESS",
            "HEALTH",
            "GTID",
            "REPLICATION",
        ],
        &rows,
    );
    let unhealthy = keyspaces
        .iter()
        .flat_map(|k| &k.shards)
        .flat_map(|s| &s.tablets)
        .filter(|t| !t.status.healthy)
        .count();
    if unhealthy > 0 {
        bail!("{unhealthy} tablet(s) are not healthy");
    }
    let broken = keyspaces
        .iter()
        .flat_map(|k| &k.shards)
        .flat_map(|s| &s.tablets)
        .filter(|t| t.replication.as_ref().is_some_and(|r| r.is_broken()))
        .count();
    if broken > 0 {
        bail!("replication is broken on {broken} tablet(s); the REPLICATION column says why");
    }
    Ok(())
}

pub async fn demo(cluster: &Path, wait: Duration) -> Result<()> {
    let ctx = open(cluster).await?;
    let defaults = ctx.file.managed_defaults();
    let report = keyshift_cluster::demo::run_demo(ctx.topo.as_ref(), Some(&defaults), wait).await?;
    for ks in &report.created_keyspaces {
        println!("created keyspace {ks}");
    }
    if report.loaded_data {
        println!(
            "loaded commerce: product (2 rows), customer (5), corder (5), sequences customer_seq, corder_seq"
        );
    } else {
        println!("commerce already has the demo tables; left them as they are");
    }
    for ks in &report.applied_vschemas {
        println!("applied the VSchema of {ks}");
    }
    println!(
        "demo ready: `keyshift status` shows the tablets; `keyshift vschema get customer` the sharding plan"
    );
    Ok(())
}

pub async fn keyspace(cluster: &Path, cmd: KeyspaceCmd) -> Result<()> {
    let ctx = open(cluster).await?;
    let topo = ctx.topo.as_ref();
    match cmd {
        KeyspaceCmd::Create {
            name,
            shards,
            shard_count,
            no_tablets,
        } => {
            let spec = match (shards, shard_count) {
                (Some(s), _) => ShardSpec::Named(s),
                (None, Some(n)) => ShardSpec::Count(n),
                (None, None) => ShardSpec::Unsharded,
            };
            let defaults = ctx.file.managed_defaults();
            let ks = ops::create_keyspace(topo, &name, &spec, (!no_tablets).then_some(&defaults))
                .await?;
            let shards = ops::list_shards(topo, &name).await?;
            println!(
                "created keyspace {} ({}) with shards {}",
                ks.name,
                if ks.sharded { "sharded" } else { "unsharded" },
                shards
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !no_tablets {
                println!("a running `keyshift up` starts one managed primary per shard now");
            }
        }
        KeyspaceCmd::Delete { name, recursive } => {
            ops::delete_keyspace(topo, &name, recursive).await?;
            println!("deleted keyspace {name}");
        }
        KeyspaceCmd::List { format } => {
            let mut out = Vec::new();
            for ks in ops::list_keyspaces(topo).await? {
                let shards = ops::list_shards(topo, &ks.name).await?;
                out.push((ks, shards));
            }
            if format == Format::Json {
                let v: Vec<_> = out
                    .iter()
                    .map(|(k, s)| serde_json::json!({"name": k.name, "sharded": k.sharded, "shards": s}))
                    .collect();
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = out
                .iter()
                .map(|(k, s)| {
                    vec![
                        k.name.clone(),
                        if k.sharded { "sharded" } else { "unsharded" }.to_string(),
                        s.iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect();
            table(&["KEYSPACE", "KIND", "SHARDS"], &rows);
        }
    }
    Ok(())
}

pub async fn tablet(cluster: &Path, cmd: TabletCmd) -> Result<()> {
    let ctx = open(cluster).await?;
    let topo = ctx.topo.as_ref();
    match cmd {
        TabletCmd::Add {
            keyspace,
            shard,
            role,
            uid,
            host,
            port,
            user,
            password_env,
            database,
        } => {
            let spec = match host {
                None => TabletSpec::Managed {
                    port: port.unwrap_or(0),
                },
                Some(host) => {
                    let password = match password_env {
                        Some(var) => std::env::var(&var)
                            .with_context(|| format!("reading the password from ${var}"))?,
                        None => String::new(),
                    };
                    TabletSpec::External {
                        host,
                        port: port.unwrap_or(3306),
                        user: user.unwrap_or_else(|| "root".to_string()),
                        password,
                        database,
                    }
                }
            };
            let t = ops::add_tablet(
                topo,
                &ctx.file.managed_defaults(),
                &keyspace,
                &shard,
                role,
                uid,
                spec,
            )
            .await?;
            println!(
                "added tablet {} ({} of {}/{}{})",
                t.alias,
                t.role,
                t.keyspace,
                t.shard,
                if t.managed.is_some() {
                    ", managed: a running `keyshift up` starts it now"
                } else {
                    ""
                }
            );
        }
        TabletCmd::Remove { alias } => {
            let t = ops::remove_tablet(topo, &alias).await?;
            println!("removed tablet {}", t.alias);
            if let Some(m) = t.managed {
                println!("its datadir stays at {}", m.datadir.display());
            }
        }
        TabletCmd::List { format } => {
            let tablets = ops::list_tablets(topo).await?;
            if format == Format::Json {
                let v: Vec<_> = tablets
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "alias": t.alias.to_string(), "keyspace": t.keyspace, "shard": t.shard,
                            "role": t.role, "host": t.host, "port": t.port, "database": t.database,
                            "managed": t.managed.is_some(),
                        })
                    })
                    .collect();
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = tablets
                .iter()
                .map(|t| {
                    vec![
                        t.alias.to_string(),
                        t.keyspace.clone(),
                        t.shard.clone(),
                        t.role.to_string(),
                        if t.managed.is_some() {
                            "managed"
                        } else {
                            "external"
                        }
                        .to_string(),
                        t.address(),
                    ]
                })
                .collect();
            table(
                &["TABLET", "KEYSPACE", "SHARD", "ROLE", "KIND", "ADDRESS"],
                &rows,
            );
        }
    }
    Ok(())
}

fn read_json_arg(file: Option<PathBuf>, json: Option<String>) -> Result<String> {
    match (file, json) {
        (_, Some(j)) => Ok(j),
        (Some(p), None) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading JSON from stdin")?;
            Ok(s)
        }
        (Some(p), None) => {
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        }
        (None, None) => bail!("give the JSON with --file PATH (or - for stdin) or --json TEXT"),
    }
}

pub async fn vschema(cluster: &Path, cmd: VschemaCmd) -> Result<()> {
    let ctx = open(cluster).await?;
    let topo = ctx.topo.as_ref();
    match cmd {
        VschemaCmd::Get { keyspace } => print_json(&ops::get_vschema(topo, &keyspace).await?),
        VschemaCmd::Apply {
            keyspace,
            file,
            json,
            dry_run,
        } => {
            let text = read_json_arg(file, json)?;
            ops::apply_vschema(topo, &keyspace, &text, dry_run).await?;
            if dry_run {
                println!("the VSchema of {keyspace} is valid (dry run: nothing stored)");
            } else {
                println!("applied the VSchema of {keyspace}");
            }
            Ok(())
        }
    }
}

pub async fn routing_rules(cluster: &Path, cmd: RoutingCmd) -> Result<()> {
    let ctx = open(cluster).await?;
    let topo = ctx.topo.as_ref();
    match cmd {
        RoutingCmd::Get => print_json(&ops::get_routing_rules(topo).await?),
        RoutingCmd::Apply { file, json } => {
            let text = read_json_arg(file, json)?;
            let rules = ops::apply_routing_rules(topo, &text).await?;
            println!("applied {} routing rule(s)", rules.rules.len());
            Ok(())
        }
    }
}

pub async fn vindex(cluster: &Path, kind: &str, value: &str, format: Format) -> Result<()> {
    let v = keyshift_vindex::new_vindex(kind, &Default::default())?;
    let input = match value.parse::<i64>() {
        Ok(i) if !kind.contains("md5") && kind != "xxhash" => keyshift_vindex::Value::Int(i),
        _ => match value.parse::<u64>() {
            Ok(u) if !kind.contains("md5") && kind != "xxhash" => keyshift_vindex::Value::UInt(u),
            _ => keyshift_vindex::Value::Bytes(value.as_bytes().to_vec()),
        },
    };
    let ksid = v.map(&input)?;
    // Shards are a bonus: without a cluster, the keyspace id alone is useful.
    let mut placements = Vec::new();
    if let Ok(ctx) = open(cluster).await {
        for ks in ops::list_keyspaces(ctx.topo.as_ref()).await? {
            if !ks.sharded {
                continue;
            }
            for shard in ops::list_shards(ctx.topo.as_ref(), &ks.name).await? {
                if shard.key_range.contains(&ksid.0) {
                    placements.push((ks.name.clone(), shard.name.clone()));
                }
            }
        }
    }
    if format == Format::Json {
        return print_json(&serde_json::json!({
            "vindex": kind,
            "value": value,
            "keyspace_id": ksid.to_string(),
            "shards": placements.iter().map(|(k, s)| serde_json::json!({"keyspace": k, "shard": s})).collect::<Vec<_>>(),
        }));
    }
    println!("{ksid}");
    for (ks, shard) in placements {
        println!("{ks}/{shard}");
    }
    Ok(())
}
