//! `keyshift workflow ...`: a thin shell over the node's REST API when a
//! node runs (so the node performs and records the action, trigger `api`),
//! else over `keyshift_workflow` on the topo (trigger `cli`), which is what
//! the API calls too. `--api URL` (or `KEYSHIFT_API`, token in
//! `KEYSHIFT_API_TOKEN`) operates a node elsewhere. Exit codes: 0 ok, 1 error, 2 validation findings, 3 action
//! not allowed in the current state (or on a reverse workflow), 4 no such
//! workflow, 5 `--wait-for` ended in `error` or timed out, 6 verify-data
//! found differences, 7 a traffic switch was refused or undone (nothing
//! changed; safe to try again).

use crate::Format;
use crate::client::{Client, ClientError, Target};
use crate::commands;
use crate::output::{print_json, table};
use anyhow::{Context, Result};
use clap::Subcommand;
use keyshift_topo::Topo;
use keyshift_workflow::{
    CompleteMode, CreateRequest, OnDdl, Options, State, Trigger, ValidationReport, Workflow,
    WorkflowError,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "verify.rs"]
mod verify;

#[path = "import.rs"]
pub mod import;

/// An error that carries its exit code up to `main`.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}
impl std::error::Error for Exit {}

/// `keyshift workflow [--api URL] COMMAND`.
#[derive(clap::Args)]
pub struct WorkflowArgs {
    /// The node's API, e.g. http://10.0.0.5:15000 (default: the node running
    /// from the cluster file, found through its `keyshift.ready`; without a
    /// running node the CLI works on the topo directly). The token is read
    /// from KEYSHIFT_API_TOKEN, else from the local node's data dir.
    #[arg(long, global = true, env = "KEYSHIFT_API")]
    pub api: Option<String>,
    #[command(subcommand)]
    pub cmd: WorkflowCmd,
}

#[derive(Subcommand)]
pub enum WorkflowCmd {
    /// Validate and create a MoveTables workflow.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        source_keyspace: String,
        #[arg(long)]
        target_keyspace: String,
        #[arg(long, value_delimiter = ',', required_unless_present = "all_tables")]
        tables: Vec<String>,
        #[arg(long, conflicts_with = "tables")]
        all_tables: bool,
        #[arg(long, value_delimiter = ',', requires = "all_tables")]
        exclude_tables: Vec<String>,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        defer_secondary_keys: bool,
        #[arg(long, default_value = "stop")]
        on_ddl: OnDdl,
        #[arg(long)]
        stop_after_copy: bool,
        /// Only run the pre-checks.
        #[arg(long)]
        validate_only: bool,
        /// Rows per copy batch.
        #[arg(long, default_value_t = 10_000)]
        copy_batch_rows: usize,
        /// How long one copy snapshot stays open.
        #[arg(long, default_value = "1h", value_parser = crate::humantime_secs)]
        copy_cycle: Duration,
        /// Tables each stream copies at once, each with its own writer on
        /// the target; 0: half the CPUs, 1 to 4.
        #[arg(long, default_value_t = 0)]
        copy_parallel_tables: usize,
        /// Transient stream failures retried before the workflow goes to error.
        #[arg(long, default_value_t = 5)]
        max_retries: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Every workflow with its state.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A workflow's state, progress, streams and allowed actions.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Wait (with progress bars) until the workflow reaches this state.
        #[arg(long)]
        wait_for: Option<State>,
        /// With --wait-for running: also wait until every stream's lag is 0.
        #[arg(long, requires = "wait_for")]
        caught_up: bool,
        #[arg(long, default_value = "300s", value_parser = crate::humantime_secs)]
        timeout: Duration,
    },
    /// Stop the streams; `start` resumes from committed progress.
    Stop { name: String },
    /// Resume a stopped workflow.
    Start { name: String },
    /// Resume a workflow in error from committed progress.
    Retry { name: String },
    /// Verify that the target equals the source (VDiff): `verify-data NAME`
    /// requests one; `show`, `stop`, `resume` operate the latest.
    VerifyData(verify::VerifyArgs),
    /// Send the tables' traffic to the target: replica reads only, or
    /// everything (queries are held briefly, never failed).
    SwitchTraffic {
        name: String,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Send traffic back to the source (over the reverse workflow after a
    /// primary switch, so nothing written on the target is lost).
    ReverseTraffic {
        name: String,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Finish a switched workflow: remove the reverse workflow and routing
    /// rules, and drop (default), rename or keep the source tables.
    Complete {
        name: String,
        #[arg(long, conflicts_with = "rename_tables")]
        keep_data: bool,
        #[arg(long)]
        rename_tables: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Abandon a workflow whose primaries were not switched: streams and
    /// target tables are removed, routing rules restored; the source is not
    /// touched.
    Cancel {
        name: String,
        /// Keep the target tables and their rows.
        #[arg(long)]
        keep_data: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(clap::Args)]
pub struct SwitchArgs {
    /// Only @replica/@rdonly reads.
    #[arg(long)]
    replicas_only: bool,
    /// Refuse when a stream lags more than this.
    #[arg(long, default_value = "30s", value_parser = crate::humantime_secs)]
    max_replication_lag_allowed: Duration,
    /// The switch must finish within this (and within the hold window).
    #[arg(long, default_value = "30s", value_parser = crate::humantime_secs)]
    timeout: Duration,
    /// Longest time queries are held during a primary switch.
    #[arg(long, default_value = "10s", value_parser = crate::humantime_secs)]
    hold_window: Duration,
    /// Queries held at once per gate; more fail at once.
    #[arg(long, default_value_t = 1000)]
    max_held_queries: usize,
    /// Print the steps without doing anything.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl SwitchArgs {
    fn options(&self) -> keyshift_workflow::SwitchOptions {
        keyshift_workflow::SwitchOptions {
            replicas_only: self.replicas_only,
            max_lag: self.max_replication_lag_allowed,
            timeout: self.timeout,
            dry_run: self.dry_run,
            hold_window: self.hold_window,
            max_queued: self.max_held_queries,
            // A test hook (see SwitchOptions::fail_after_step); not a flag,
            // so that nobody types it by accident.
            fail_after_step: std::env::var("KEYSHIFT_TEST_FAIL_SWITCH_AFTER")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    /// The API's body for these options, or `None` when the API cannot
    /// express them (whole seconds for the lag and timeout, no test hook):
    /// such a switch runs on the topo instead.
    fn api_body(&self) -> Option<Value> {
        let o = self.options();
        let whole = |t: Duration| (t.subsec_nanos() == 0).then_some(t.as_secs());
        let expressible = o.fail_after_step.is_none()
            && o.timeout >= Duration::from_secs(1)
            && o.hold_window >= Duration::from_millis(1);
        let (max_lag, timeout) = (whole(o.max_lag)?, whole(o.timeout)?);
        expressible.then(|| {
            json!({
                "replicas_only": o.replicas_only,
                "max_lag_seconds": max_lag,
                "timeout_seconds": timeout,
                "hold_window_ms": o.hold_window.as_millis() as u64,
                "max_held_queries": o.max_queued,
                "dry_run": o.dry_run,
            })
        })
    }
}

/// What a switch did: the library's `SwitchReport`, or the API's `report`
/// (same fields), printed the same way either way.
#[derive(serde::Serialize, serde::Deserialize)]
struct SwitchOut {
    workflow: String,
    dry_run: bool,
    steps: Vec<String>,
    state: State,
    duration_ms: u64,
    held_ms: Option<u64>,
}

impl From<keyshift_workflow::SwitchReport> for SwitchOut {
    fn from(r: keyshift_workflow::SwitchReport) -> Self {
        SwitchOut {
            workflow: r.workflow,
            dry_run: r.dry_run,
            steps: r.steps,
            state: r.state,
            duration_ms: r.duration_ms,
            held_ms: r.held_ms,
        }
    }
}

fn print_switch(r: &SwitchOut, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(r);
    }
    if r.dry_run {
        println!("dry run: workflow {} would:", r.workflow);
        for (i, s) in r.steps.iter().enumerate() {
            println!("  {}. {s}", i + 1);
        }
        return Ok(());
    }
    match r.held_ms {
        Some(h) => println!(
            "workflow {}: {} (took {} ms; queries held {} ms)",
            r.workflow, r.state, r.duration_ms, h
        ),
        None => println!(
            "workflow {}: {} (took {} ms)",
            r.workflow, r.state, r.duration_ms
        ),
    }
    Ok(())
}

fn exit_for(e: &WorkflowError) -> u8 {
    match e {
        WorkflowError::Invalid(_) => 2,
        WorkflowError::NotAllowed { .. } | WorkflowError::IsReverse { .. } => 3,
        WorkflowError::NotFound(_) => 4,
        WorkflowError::SwitchFailed(_) => 7,
        _ => 1,
    }
}

/// Prints the error and turns it into its exit code.
fn fail(e: WorkflowError) -> anyhow::Error {
    let code = exit_for(&e);
    match &e {
        WorkflowError::Invalid(r) => print_findings(r),
        _ => eprintln!("error: {e}"),
    }
    anyhow::Error::new(Exit(code))
}

/// Which library an API error stands for: the API answers a VDiff in the
/// wrong state with `conflict`, which for a workflow means a refused switch.
#[derive(Clone, Copy, PartialEq)]
enum Domain {
    Workflow,
    Vdiff,
}

/// Prints an API error the way the library path prints the same failure
/// and turns it into the same exit code (mapped by the stable `code`).
fn api_fail(client: &Client, e: ClientError, domain: Domain) -> anyhow::Error {
    let ClientError::Api {
        code,
        message,
        details,
        ..
    } = &e
    else {
        eprintln!("error: {e}");
        return anyhow::Error::new(Exit(1));
    };
    let exit = match code.as_str() {
        "invalid" => match findings(details) {
            Some(r) => {
                print_findings(&r);
                return anyhow::Error::new(Exit(2));
            }
            None => 2,
        },
        "not_allowed" => 3,
        "not_found" => 4,
        "conflict" if details["nothing_changed"] == Value::Bool(true) => 7,
        "conflict" if domain == Domain::Vdiff => 3,
        "unauthorized" => {
            eprintln!("error: {}; nothing was done", client.unauthorized(message));
            return anyhow::Error::new(Exit(1));
        }
        _ => 1,
    };
    eprintln!("error: {message}");
    anyhow::Error::new(Exit(exit))
}

/// The validation report in a 422's details (create's pre-checks), if the
/// error is one.
fn findings(details: &Value) -> Option<ValidationReport> {
    details.get("findings")?;
    serde_json::from_value(details.clone()).ok()
}

fn print_findings(r: &ValidationReport) {
    eprintln!("validation found {} problem(s):", r.errors().count());
    for f in &r.findings {
        eprintln!(
            "  {}[{}] {}: {}\n      fix: {}",
            if f.severity.is_error() {
                ""
            } else {
                "warning "
            },
            f.check,
            f.table.as_deref().unwrap_or("-"),
            f.problem,
            f.fix
        );
    }
}

/// Where the commands act: the node's API, or the topo when no node runs
/// (opened lazily, so that commands over the API need no local topo).
pub struct Backend {
    api: Option<Client>,
    /// `--api` was given: never fall back to a local topo behind the
    /// user's back.
    explicit: bool,
    cluster: PathBuf,
    topo: tokio::sync::OnceCell<Arc<dyn Topo>>,
}

/// Path segment escaping for workflow names (they are validated on create,
/// but `show` takes whatever is typed).
fn seg(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Backend {
    async fn new(cluster: &Path, api: Option<&str>) -> Result<Backend> {
        let (api, explicit) = match Client::locate(cluster, api).await? {
            Target::Explicit(c) => (Some(c), true),
            Target::Local(c) => (c, false),
        };
        Ok(Backend {
            api,
            explicit,
            cluster: cluster.to_path_buf(),
            topo: tokio::sync::OnceCell::new(),
        })
    }

    /// The topo, for the library path.
    async fn topo(&self) -> Result<&dyn Topo> {
        let t = self
            .topo
            .get_or_try_init(|| async { commands::open(&self.cluster).await.map(|c| c.topo) })
            .await?;
        Ok(t.as_ref())
    }

    /// The topo for an operation the API cannot express yet: fine next to
    /// the node (the library coordinates through the topo), refused with
    /// `--api` (the user asked for that remote node).
    async fn local_topo(&self, what: &str) -> Result<&dyn Topo> {
        if self.explicit {
            eprintln!(
                "error: {what} is not available over the API yet; run it on the node's machine without --api"
            );
            return Err(Exit(1).into());
        }
        self.topo().await
    }

    fn api_err(&self, c: &Client, domain: Domain) -> impl Fn(ClientError) -> anyhow::Error {
        move |e| api_fail(c, e, domain)
    }

    pub async fn show(&self, name: &str) -> Result<Workflow> {
        match &self.api {
            Some(c) => c
                .get(&format!("/workflows/{}", seg(name)))
                .await
                .map_err(self.api_err(c, Domain::Workflow)),
            None => keyshift_workflow::show(self.topo().await?, name)
                .await
                .map_err(fail),
        }
    }

    /// Every workflow, in name order (the topo's order).
    async fn list(&self) -> Result<Vec<Workflow>> {
        let Some(c) = &self.api else {
            return keyshift_workflow::list(self.topo().await?)
                .await
                .map_err(fail);
        };
        let err = self.api_err(c, Domain::Workflow);
        let mut names = Vec::new();
        let mut offset = 0u64;
        loop {
            let page: Value = c
                .get(&format!("/workflows?limit=500&offset={offset}"))
                .await
                .map_err(&err)?;
            for w in page["workflows"].as_array().into_iter().flatten() {
                if let Some(n) = w["name"].as_str() {
                    names.push(n.to_string());
                }
            }
            match page["next_offset"].as_u64() {
                Some(n) if n > offset => offset = n,
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        // The list rows are summaries; scripts get the whole records, as
        // on the library path.
        let mut all = Vec::with_capacity(names.len());
        for n in names {
            match c.get(&format!("/workflows/{}", seg(&n))).await {
                Ok(w) => all.push(w),
                // Deleted (cancelled and cleaned) between the two calls.
                Err(ClientError::Api { code, .. }) if code == "not_found" => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(all)
    }

    fn create_body(req: &CreateRequest, validate_only: bool) -> Value {
        let o = &req.options;
        json!({
            "name": req.name,
            "source_keyspace": req.source_keyspace,
            "target_keyspace": req.target_keyspace,
            "tables": req.tables,
            "all_tables": req.all_tables,
            "exclude_tables": req.exclude_tables,
            "validate_only": validate_only,
            "options": {
                "defer_secondary_keys": o.defer_secondary_keys,
                "on_ddl": o.on_ddl,
                "stop_after_copy": o.stop_after_copy,
                "copy_batch_rows": o.copy_batch_rows,
                "copy_cycle_ms": o.copy_cycle_ms,
                "copy_parallel_tables": o.copy_parallel_tables,
                "max_transient_retries": o.max_transient_retries,
            },
        })
    }

    async fn validate_only(&self, req: &CreateRequest) -> Result<ValidationReport> {
        match &self.api {
            Some(c) => c
                .post("/workflows", &Self::create_body(req, true))
                .await
                .map_err(self.api_err(c, Domain::Workflow)),
            None => keyshift_workflow::validate_only(self.topo().await?, req)
                .await
                .map_err(fail),
        }
    }

    /// Creates; a failed validation is printed as JSON for scripts.
    async fn create(&self, req: &CreateRequest, format: Format) -> Result<Workflow> {
        let Some(c) = &self.api else {
            return match keyshift_workflow::create(self.topo().await?, req).await {
                Ok(w) => Ok(w),
                Err(WorkflowError::Invalid(r)) if format == Format::Json => {
                    print_json(&r)?;
                    Err(Exit(2).into())
                }
                Err(e) => Err(fail(e)),
            };
        };
        match c.post("/workflows", &Self::create_body(req, false)).await {
            Ok(w) => Ok(w),
            Err(ClientError::Api { code, details, .. })
                if code == "invalid" && format == Format::Json && findings(&details).is_some() =>
            {
                print_json(&findings(&details))?;
                Err(Exit(2).into())
            }
            Err(e) => Err(api_fail(c, e, Domain::Workflow)),
        }
    }

    /// A parameterless action (stop, start, retry).
    async fn simple(&self, action: &str, name: &str) -> Result<Workflow> {
        let Some(c) = &self.api else {
            let topo = self.topo().await?;
            let r = match action {
                "stop" => keyshift_workflow::stop(topo, name, Trigger::Cli).await,
                "start" => keyshift_workflow::start(topo, name, Trigger::Cli).await,
                _ => keyshift_workflow::retry(topo, name, Trigger::Cli).await,
            };
            return r.map_err(fail);
        };
        c.post(&format!("/workflows/{}/{action}", seg(name)), &json!({}))
            .await
            .map_err(self.api_err(c, Domain::Workflow))
    }

    async fn switch(&self, name: &str, args: &SwitchArgs, reverse: bool) -> Result<SwitchOut> {
        if let (Some(c), Some(body)) = (&self.api, args.api_body()) {
            #[derive(serde::Deserialize)]
            struct WithReport {
                report: SwitchOut,
            }
            let path = format!(
                "/workflows/{}/{}",
                seg(name),
                if reverse {
                    "reverse-traffic"
                } else {
                    "switch-traffic"
                }
            );
            let r: WithReport = c
                .post(&path, &body)
                .await
                .map_err(self.api_err(c, Domain::Workflow))?;
            return Ok(r.report);
        }
        let topo = self
            .local_topo("switching with sub-second durations or the test hook")
            .await?;
        let o = args.options();
        let r = if reverse {
            keyshift_workflow::reverse_traffic(topo, name, &o, Trigger::Cli).await
        } else {
            keyshift_workflow::switch_traffic(topo, name, &o, Trigger::Cli).await
        };
        r.map(SwitchOut::from).map_err(fail)
    }

    async fn complete(&self, name: &str, mode: CompleteMode) -> Result<Workflow> {
        let Some(c) = &self.api else {
            return keyshift_workflow::complete(self.topo().await?, name, mode, Trigger::Cli)
                .await
                .map_err(fail);
        };
        let mode = match mode {
            CompleteMode::KeepData => "keep_data",
            CompleteMode::RenameTables => "rename_tables",
            CompleteMode::Drop => "drop",
        };
        c.post(
            &format!("/workflows/{}/complete", seg(name)),
            &json!({ "mode": mode }),
        )
        .await
        .map_err(self.api_err(c, Domain::Workflow))
    }

    async fn cancel(&self, name: &str, keep_data: bool) -> Result<Workflow> {
        let Some(c) = &self.api else {
            return keyshift_workflow::cancel(self.topo().await?, name, keep_data, Trigger::Cli)
                .await
                .map_err(fail);
        };
        c.post(
            &format!("/workflows/{}/cancel", seg(name)),
            &json!({ "keep_data": keep_data }),
        )
        .await
        .map_err(self.api_err(c, Domain::Workflow))
    }
}

pub async fn run(cluster: &Path, args: WorkflowArgs) -> Result<()> {
    let backend = Backend::new(cluster, args.api.as_deref()).await?;
    let b = &backend;
    match args.cmd {
        WorkflowCmd::Create {
            name,
            source_keyspace,
            target_keyspace,
            tables,
            all_tables,
            exclude_tables,
            defer_secondary_keys,
            on_ddl,
            stop_after_copy,
            validate_only,
            copy_batch_rows,
            copy_cycle,
            copy_parallel_tables,
            max_retries,
            format,
        } => {
            let req = CreateRequest {
                name,
                source_keyspace,
                target_keyspace,
                tables,
                all_tables,
                exclude_tables,
                options: Options {
                    defer_secondary_keys,
                    on_ddl,
                    stop_after_copy,
                    copy_batch_rows,
                    copy_cycle_ms: copy_cycle.as_millis() as u64,
                    max_transient_retries: max_retries,
                    copy_parallel_tables,
                },
                by: Trigger::Cli,
            };
            if validate_only {
                let r = b.validate_only(&req).await?;
                if format == Format::Json {
                    print_json(&r)?;
                } else if r.ok() {
                    println!(
                        "validation passed: {} table(s): {}",
                        r.tables.len(),
                        r.tables.join(", ")
                    );
                }
                if !r.ok() {
                    if format == Format::Table {
                        print_findings(&r);
                    }
                    return Err(Exit(2).into());
                }
                return Ok(());
            }
            let w = b.create(&req, format).await?;
            if format == Format::Json {
                print_json(&w)?;
            } else {
                println!(
                    "created workflow {}: {} from {} to {} with {} stream(s); `keyshift workflow show {} --wait-for running` follows it",
                    w.name,
                    w.table_names().join(", "),
                    w.source_keyspace,
                    w.target_keyspace,
                    w.streams.len(),
                    w.name
                );
            }
            Ok(())
        }
        WorkflowCmd::List { format } => {
            let all = b.list().await?;
            if format == Format::Json {
                return print_json(&all);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|w| {
                    vec![
                        w.name.clone(),
                        w.kind.to_string(),
                        format!("{} → {}", w.source_keyspace, w.target_keyspace),
                        w.table_names().join(","),
                        w.state.to_string(),
                        lag_text(w),
                    ]
                })
                .collect();
            table(
                &["NAME", "TYPE", "KEYSPACES", "TABLES", "STATE", "LAG"],
                &rows,
            );
            Ok(())
        }
        WorkflowCmd::Show {
            name,
            format,
            wait_for,
            caught_up,
            timeout,
        } => {
            let w = match wait_for {
                Some(state) => wait(b, &name, state, caught_up, timeout, format).await?,
                None => b.show(&name).await?,
            };
            if format == Format::Json {
                print_json(&ShowJson::from(&w))
            } else {
                print_show(&w);
                Ok(())
            }
        }
        WorkflowCmd::Stop { name } => {
            let w = b.simple("stop", &name).await?;
            // The node's controller cancels the streams when it sees the
            // record change; wait for its acknowledgement so that nothing is
            // applied after `stop` returns.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let now = b.show(&name).await?;
                if !now.streams_active {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "workflow {name} is marked stopped but its streams have not confirmed within 30 s; is `keyshift up` running?"
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            println!("workflow {}: {}", w.name, w.state);
            Ok(())
        }
        WorkflowCmd::Start { name } => action(b.simple("start", &name).await),
        WorkflowCmd::VerifyData(args) => verify::run(b, args).await,
        WorkflowCmd::Retry { name } => action(b.simple("retry", &name).await),
        WorkflowCmd::SwitchTraffic { name, switch } => {
            if !switch.replicas_only
                && let Ok(w) = b.show(&name).await
                && w.kind == keyshift_workflow::WorkflowType::Import
                && w.reverse_of.is_none()
            {
                eprintln!(
                    "notice: {}",
                    keyshift_workflow::import::switch_notice(&import::gate_hint(cluster))
                );
            }
            let r = b.switch(&name, &switch, false).await?;
            print_switch(&r, switch.format)
        }
        WorkflowCmd::ReverseTraffic { name, switch } => {
            let r = b.switch(&name, &switch, true).await?;
            print_switch(&r, switch.format)
        }
        WorkflowCmd::Complete {
            name,
            keep_data,
            rename_tables,
            format,
        } => {
            let mode = if keep_data {
                CompleteMode::KeepData
            } else if rename_tables {
                CompleteMode::RenameTables
            } else {
                CompleteMode::Drop
            };
            let w = b.complete(&name, mode).await?;
            finished(&w, format)
        }
        WorkflowCmd::Cancel {
            name,
            keep_data,
            format,
        } => {
            let w = b.cancel(&name, keep_data).await?;
            finished(&w, format)
        }
    }
}

fn finished(w: &Workflow, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(&ShowJson::from(w));
    }
    let last = w.events.back().map(|e| e.message.as_str()).unwrap_or("");
    println!("workflow {}: {} ({last})", w.name, w.state);
    Ok(())
}

fn action(r: Result<Workflow>) -> Result<()> {
    let w = r?;
    println!("workflow {}: {}", w.name, w.state);
    Ok(())
}

fn lag_text(w: &Workflow) -> String {
    w.max_lag()
        .map(|l| format!("{l}s"))
        .unwrap_or_else(|| "-".into())
}

/// The record plus what is derived for display.
#[derive(serde::Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    workflow: &'a Workflow,
    allowed_actions: Vec<String>,
    max_lag_seconds: Option<u64>,
}

impl<'a> From<&'a Workflow> for ShowJson<'a> {
    fn from(w: &'a Workflow) -> Self {
        ShowJson {
            workflow: w,
            allowed_actions: w.allowed_actions().iter().map(|a| a.to_string()).collect(),
            max_lag_seconds: w.max_lag(),
        }
    }
}

fn print_show(w: &Workflow) {
    println!("workflow   {} ({})", w.name, w.kind);
    println!("keyspaces  {} → {}", w.source_keyspace, w.target_keyspace);
    println!("state      {} (desired {:?})", w.state, w.desired);
    if let Some(e) = &w.error {
        println!("error      {e}");
    }
    let allowed: Vec<String> = w.allowed_actions().iter().map(|a| a.to_string()).collect();
    println!(
        "actions    {}",
        if allowed.is_empty() {
            "none".into()
        } else {
            allowed.join(", ")
        }
    );
    println!();
    let rows: Vec<Vec<String>> = w
        .table_progress
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.rows_copied.to_string(),
                t.estimated_rows.to_string(),
                format!("{:.1}%", t.percent),
                t.eta_seconds
                    .map(|s| format!("{s}s"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        let names: Vec<Vec<String>> = w
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    "-".into(),
                    "-".into(),
                    "0.0%".into(),
                    "-".into(),
                ]
            })
            .collect();
        table(&["TABLE", "COPIED", "ESTIMATED", "PERCENT", "ETA"], &names);
    } else {
        table(&["TABLE", "COPIED", "ESTIMATED", "PERCENT", "ETA"], &rows);
    }
    println!();
    let streams: Vec<Vec<String>> = w
        .streams
        .iter()
        .map(|s| {
            vec![
                format!("{} → {}", s.source_shard, s.target_shard),
                if s.state.is_empty() {
                    "-".into()
                } else {
                    s.state.clone()
                },
                s.position.clone().unwrap_or_else(|| "-".into()),
                s.lag_seconds
                    .map(|l| format!("{l}s"))
                    .unwrap_or_else(|| "-".into()),
                s.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["STREAM", "STATE", "POSITION", "LAG", "LAST ERROR"],
        &streams,
    );
}

/// Polls the record until it reaches `state` (and, with `caught_up`, lag
/// 0), drawing a progress bar per table on a terminal.
async fn wait(
    backend: &Backend,
    name: &str,
    state: State,
    caught_up: bool,
    timeout: Duration,
    format: Format,
) -> Result<Workflow> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bars = MultiProgress::with_draw_target(if format == Format::Table {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>16} [{bar:40}] {pos}/{len} rows {msg}")
        .context("building the progress bar style")?
        .progress_chars("=> ");
    let mut per_table: std::collections::HashMap<String, ProgressBar> = Default::default();
    let deadline = Instant::now() + timeout;
    loop {
        let w = backend.show(name).await?;
        for t in &w.table_progress {
            let bar = per_table.entry(t.name.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(t.estimated_rows.max(1)));
                b.set_style(style.clone());
                b.set_prefix(t.name.clone());
                b
            });
            bar.set_length(t.estimated_rows.max(t.rows_scanned).max(1));
            bar.set_position(t.rows_scanned);
            bar.set_message(match (t.done, t.eta_seconds) {
                (true, _) => "done".to_string(),
                (false, Some(s)) => format!("{:.1}% eta {s}s", t.percent),
                (false, None) => format!("{:.1}%", t.percent),
            });
        }
        let reached = w.state == state && (!caught_up || w.max_lag() == Some(0));
        if reached {
            for b in per_table.values() {
                b.finish();
            }
            return Ok(w);
        }
        if w.state == State::Error && state != State::Error {
            for b in per_table.values() {
                b.abandon();
            }
            eprintln!(
                "error: workflow {name} is in error: {}",
                w.error.as_deref().unwrap_or("(no reason recorded)")
            );
            return Err(Exit(5).into());
        }
        if Instant::now() > deadline {
            eprintln!(
                "error: workflow {name} did not reach {state}{} within {timeout:?} (now {}, lag {})",
                if caught_up { " with lag 0" } else { "" },
                w.state,
                lag_text(&w)
            );
            return Err(Exit(5).into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
