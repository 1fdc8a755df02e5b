//! `keyshift import create`: an import from an external MySQL/MariaDB
//! server. Everything after creation (show, verify-data, switch-traffic,
//! reverse-traffic, complete, cancel) is the workflow's own commands.

use super::{Backend, Domain, Exit, api_fail, fail, print_findings};
use crate::Format;
use crate::client::ClientError;
use crate::output::print_json;
use anyhow::Result;
use clap::Subcommand;
use keyshift_workflow::{
    ImportRequest, OnDdl, Options, Trigger, ValidationReport, Workflow, WorkflowError,
};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// `keyshift import [--api URL] COMMAND`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The node's API (see `keyshift workflow --help`).
    #[arg(long, global = true, env = "KEYSHIFT_API")]
    pub api: Option<String>,
    #[command(subcommand)]
    pub cmd: ImportCmd,
}

#[derive(Subcommand)]
pub enum ImportCmd {
    /// Check an external server and create an import workflow from it.
    ///
    /// The password is read from the URL, or else from the environment
    /// variable named by --password-env (default KEYSHIFT_IMPORT_PASSWORD),
    /// which keeps it out of shell history and process lists.
    Create {
        /// mysql://user[:password]@host[:port]/database
        #[arg(long)]
        from: String,
        #[arg(long)]
        target_keyspace: String,
        /// Workflow name (default: import_<database>).
        #[arg(long)]
        name: Option<String>,
        /// The keyspace that stands for the external server inside keyshift
        /// (default: ext_<database>).
        #[arg(long)]
        source_keyspace: Option<String>,
        /// The target keyspace's VSchema: a JSON document, or the path of a
        /// file holding one. Needed for a sharded target (each table's
        /// primary vindex); checked against the external server's tables and
        /// stored with the import, replacing the keyspace's VSchema.
        #[arg(long)]
        target_vschema: Option<String>,
        #[arg(long, value_delimiter = ',', required_unless_present = "all_tables")]
        tables: Vec<String>,
        #[arg(long, conflicts_with = "tables")]
        all_tables: bool,
        #[arg(long, value_delimiter = ',', requires = "all_tables")]
        exclude_tables: Vec<String>,
        /// TLS to the external server: disabled (default), required,
        /// verify-ca or verify-identity, as the mysql client's --ssl-mode.
        #[arg(long)]
        ssl_mode: Option<String>,
        /// CA certificate (PEM file) to verify the server with.
        #[arg(long)]
        ssl_ca: Option<std::path::PathBuf>,
        /// Environment variable holding the password when the URL has none.
        #[arg(long, default_value = "KEYSHIFT_IMPORT_PASSWORD")]
        password_env: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        defer_secondary_keys: bool,
        #[arg(long, default_value = "stop")]
        on_ddl: OnDdl,
        #[arg(long)]
        stop_after_copy: bool,
        /// Rows per copy batch.
        #[arg(long, default_value_t = 10_000)]
        copy_batch_rows: usize,
        /// How long one copy snapshot stays open.
        #[arg(long, default_value = "1h", value_parser = crate::humantime_secs)]
        copy_cycle: Duration,
        /// Only run the checks.
        #[arg(long)]
        validate_only: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn body(req: &ImportRequest, validate_only: bool) -> Value {
    let mut v = serde_json::to_value(req).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        // The API records who acted itself.
        m.remove("by");
        m.insert("validate_only".into(), json!(validate_only));
    }
    v
}

impl Backend {
    async fn import_validate(&self, req: &ImportRequest) -> Result<ValidationReport> {
        match &self.api {
            Some(c) => c
                .post("/imports", &body(req, true))
                .await
                .map_err(|e| api_fail(c, e, Domain::Workflow)),
            None => keyshift_workflow::validate_import(self.topo().await?, req)
                .await
                .map_err(fail),
        }
    }

    async fn import_create(&self, req: &ImportRequest, format: Format) -> Result<Workflow> {
        let Some(c) = &self.api else {
            return match keyshift_workflow::create_import(self.topo().await?, req).await {
                Ok(w) => Ok(w),
                Err(WorkflowError::Invalid(r)) if format == Format::Json => {
                    print_json(&r)?;
                    Err(Exit(2).into())
                }
                Err(e) => Err(fail(e)),
            };
        };
        match c.post("/imports", &body(req, false)).await {
            Ok(w) => Ok(w),
            Err(ClientError::Api { code, details, .. })
                if code == "invalid"
                    && format == Format::Json
                    && details.get("findings").is_some() =>
            {
                print_json(&details)?;
                Err(Exit(2).into())
            }
            Err(e) => Err(api_fail(c, e, Domain::Workflow)),
        }
    }
}

/// Prints warnings (which do not block) after a successful validation or
/// create.
fn print_warnings(r: &ValidationReport) {
    for f in &r.findings {
        eprintln!(
            "  warning [{}] {}: {}\n      fix: {}",
            f.check,
            f.table.as_deref().unwrap_or("-"),
            f.problem,
            f.fix
        );
    }
}

pub async fn run(cluster: &Path, args: ImportArgs) -> Result<()> {
    let backend = Backend::new(cluster, args.api.as_deref()).await?;
    let b = &backend;
    match args.cmd {
        ImportCmd::Create {
            from,
            target_keyspace,
            name,
            source_keyspace,
            target_vschema,
            tables,
            all_tables,
            exclude_tables,
            ssl_mode,
            ssl_ca,
            password_env,
            defer_secondary_keys,
            on_ddl,
            stop_after_copy,
            copy_batch_rows,
            copy_cycle,
            validate_only,
            format,
        } => {
            let password = std::env::var(&password_env).ok();
            let name =
                name.unwrap_or_else(|| keyshift_workflow::import::default_workflow_name(&from));
            let target_vschema = match target_vschema {
                None => None,
                Some(v) => {
                    let text = if v.trim_start().starts_with('{') {
                        v
                    } else {
                        std::fs::read_to_string(&v).map_err(|e| {
                            eprintln!("error: reading --target-vschema {v}: {e}");
                            anyhow::Error::new(Exit(2))
                        })?
                    };
                    Some(serde_json::from_str::<Value>(&text).map_err(|e| {
                        eprintln!("error: --target-vschema is not JSON: {e}");
                        anyhow::Error::new(Exit(2))
                    })?)
                }
            };
            // The CA travels as text: the node that connects may be on
            // another machine than this file.
            let ssl_ca = match ssl_ca {
                None => None,
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    eprintln!("error: reading --ssl-ca {}: {e}", path.display());
                    anyhow::Error::new(Exit(2))
                })?),
            };
            let req = ImportRequest {
                name,
                from,
                password,
                ssl_mode,
                ssl_ca,
                source_keyspace,
                target_keyspace,
                target_vschema,
                tables,
                all_tables,
                exclude_tables,
                options: Options {
                    defer_secondary_keys,
                    on_ddl,
                    stop_after_copy,
                    copy_batch_rows,
                    copy_cycle_ms: copy_cycle.as_millis() as u64,
                    ..Options::default()
                },
                by: Trigger::Cli,
            };
            if validate_only {
                let r = b.import_validate(&req).await?;
                if format == Format::Json {
                    print_json(&r)?;
                } else if r.ok() {
                    println!(
                        "checks passed: {} table(s) to import: {}",
                        r.tables.len(),
                        r.tables.join(", ")
                    );
                    print_warnings(&r);
                } else {
                    print_findings(&r);
                }
                return if r.ok() { Ok(()) } else { Err(Exit(2).into()) };
            }
            if format == Format::Table {
                // The checks once more, for their warnings (create reports
                // only what blocks it).
                let r = b.import_validate(&req).await?;
                if !r.ok() {
                    print_findings(&r);
                    return Err(Exit(2).into());
                }
                print_warnings(&r);
            }
            let w = b.import_create(&req, format).await?;
            if format == Format::Json {
                return print_json(&w);
            }
            println!(
                "created import {}: {} from {} (keyspace {}) into {} with {} stream(s); `keyshift workflow show {} --wait-for running` follows it",
                w.name,
                w.table_names().join(", "),
                keyshift_workflow::import::parse_source_url(&req.from, None)
                    .map(|s| s.display())
                    .unwrap_or_default(),
                w.source_keyspace,
                w.target_keyspace,
                w.streams.len(),
                w.name
            );
            println!(
                "note: until you switch primaries the external server stays the primary; {}",
                keyshift_workflow::import::switch_notice(&gate_hint(cluster))
            );
            Ok(())
        }
    }
}

/// The gate's address for the notice: the running local node's (from its
/// ready file, which has the real port when the file asks for port 0), else
/// the cluster file's.
pub(super) fn gate_hint(cluster: &Path) -> String {
    let Ok(file) = keyshift_cluster::file::ClusterFile::load(cluster) else {
        return "the gate".to_string();
    };
    std::fs::read_to_string(file.data_dir().join("keyshift.ready"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["gate"].as_str().map(str::to_string))
        .unwrap_or(file.gate.listen)
}
