//! `keyshift workflow ...`: a thin shell over `keyshift_workflow`, which the
//! API calls too. Exit codes: 0 ok, 1 error, 2 validation findings, 3 action
//! not allowed in the current state (or on a reverse workflow), 4 no such
//! workflow, 5 `--wait-for` ended in `error` or timed out, 6 verify-data
//! found differences, 7 a traffic switch was refused or undone (nothing
//! changed; safe to try again).

use crate::Format;
use crate::commands;
use crate::output::{print_json, table};
use anyhow::{Context, Result};
use clap::Subcommand;
use keyshift_workflow::{
    CreateRequest, OnDdl, Options, State, Trigger, ValidationReport, Workflow, WorkflowError,
};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "verify.rs"]
mod verify;

/// An error that carries its exit code up to `main`.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}
impl std::error::Error for Exit {}

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
}

fn print_switch(r: &keyshift_workflow::SwitchReport, format: Format) -> Result<()> {
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

fn print_findings(r: &ValidationReport) {
    eprintln!("validation found {} problem(s):", r.findings.len());
    for f in &r.findings {
        eprintln!(
            "  [{}] {}: {}\n      fix: {}",
            f.check,
            f.table.as_deref().unwrap_or("-"),
            f.problem,
            f.fix
        );
    }
}

pub async fn run(cluster: &Path, cmd: WorkflowCmd) -> Result<()> {
    let ctx = commands::open(cluster).await?;
    let topo = ctx.topo.as_ref();
    match cmd {
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
                },
                by: Trigger::Cli,
            };
            if validate_only {
                let r = keyshift_workflow::validate_only(topo, &req)
                    .await
                    .map_err(fail)?;
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
            match keyshift_workflow::create(topo, &req).await {
                Ok(w) => {
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
                Err(WorkflowError::Invalid(r)) if format == Format::Json => {
                    print_json(&r)?;
                    Err(Exit(2).into())
                }
                Err(e) => Err(fail(e)),
            }
        }
        WorkflowCmd::List { format } => {
            let all = keyshift_workflow::list(topo).await.map_err(fail)?;
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
                Some(state) => wait(topo, &name, state, caught_up, timeout, format).await?,
                None => keyshift_workflow::show(topo, &name).await.map_err(fail)?,
            };
            if format == Format::Json {
                print_json(&ShowJson::from(&w))
            } else {
                print_show(&w);
                Ok(())
            }
        }
        WorkflowCmd::Stop { name } => {
            let w = keyshift_workflow::stop(topo, &name, Trigger::Cli)
                .await
                .map_err(fail)?;
            // The node's controller cancels the streams when it sees the
            // record change; wait for its acknowledgement so that nothing is
            // applied after `stop` returns.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let now = keyshift_workflow::show(topo, &name).await.map_err(fail)?;
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
        WorkflowCmd::Start { name } => {
            action(keyshift_workflow::start(topo, &name, Trigger::Cli).await)
        }
        WorkflowCmd::VerifyData(args) => verify::run(topo, args).await,
        WorkflowCmd::Retry { name } => {
            action(keyshift_workflow::retry(topo, &name, Trigger::Cli).await)
        }
        WorkflowCmd::SwitchTraffic { name, switch } => {
            let r = keyshift_workflow::switch_traffic(topo, &name, &switch.options(), Trigger::Cli)
                .await
                .map_err(fail)?;
            print_switch(&r, switch.format)
        }
        WorkflowCmd::ReverseTraffic { name, switch } => {
            let r =
                keyshift_workflow::reverse_traffic(topo, &name, &switch.options(), Trigger::Cli)
                    .await
                    .map_err(fail)?;
            print_switch(&r, switch.format)
        }
        WorkflowCmd::Complete {
            name,
            keep_data,
            rename_tables,
            format,
        } => {
            let mode = if keep_data {
                keyshift_workflow::CompleteMode::KeepData
            } else if rename_tables {
                keyshift_workflow::CompleteMode::RenameTables
            } else {
                keyshift_workflow::CompleteMode::Drop
            };
            let w = keyshift_workflow::complete(topo, &name, mode, Trigger::Cli)
                .await
                .map_err(fail)?;
            finished(&w, format)
        }
        WorkflowCmd::Cancel {
            name,
            keep_data,
            format,
        } => {
            let w = keyshift_workflow::cancel(topo, &name, keep_data, Trigger::Cli)
                .await
                .map_err(fail)?;
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

fn action(r: Result<Workflow, WorkflowError>) -> Result<()> {
    let w = r.map_err(fail)?;
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
    topo: &dyn keyshift_topo::Topo,
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
        let w = keyshift_workflow::show(topo, name).await.map_err(fail)?;
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
