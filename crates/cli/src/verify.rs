//! `keyshift workflow verify-data`: request, follow, stop and resume a VDiff
//! (a thin shell over `keyshift_vdiff`, which the API calls too).
//!
//! ```text
//! keyshift workflow verify-data NAME [--tables a,b] [--wait]   request one (and follow it)
//! keyshift workflow verify-data show NAME [--wait]             progress or report
//! keyshift workflow verify-data stop NAME                      stop, keeping progress
//! keyshift workflow verify-data resume NAME [--wait]           continue after the last keys
//! ```
//!
//! Over the node's API when one runs (request, show and follow), else on
//! the topo; `stop` and `resume` have no API route yet and always use the
//! topo, as do `--row-level` and `--chunk-rows` (no API field yet).
//!
//! Exit codes as for every workflow command, plus 6: the report found
//! differences (with `--wait`, or `show` of a completed report).

use super::{Backend, Domain, Exit, api_fail, seg};
use crate::Format;
use crate::output::{print_json, table};
use anyhow::{Context, Result};
use clap::Subcommand;
use keyshift_topo::TopoExt;
use keyshift_vdiff::{DiffKind, TableState, VdiffError, VdiffOptions, VdiffRecord, VdiffState};
use keyshift_workflow::{Trigger, WorkflowError};
use serde_json::json;
use std::time::{Duration, Instant};

/// The report found differences.
pub const EXIT_DIFFERENCES: u8 = 6;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct VerifyArgs {
    #[command(subcommand)]
    pub action: Option<VerifyCmd>,
    /// The workflow to verify.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Only these tables (default: every table of the workflow).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Follow it (progress bars) and print the report; exit 6 on
    /// differences.
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "1h", value_parser = crate::humantime_secs)]
    pub timeout: Duration,
    /// Sample keys kept per table and kind of difference.
    #[arg(long, default_value_t = 10)]
    pub max_samples: usize,
    /// Rows per query on each shard.
    #[arg(long, default_value_t = 10_000)]
    pub batch_rows: usize,
    /// Bound the load on the primaries (keys compared per second).
    #[arg(long)]
    pub max_rows_per_second: Option<u64>,
    /// Compare every row, skipping the server-side checksums of key ranges.
    #[arg(long)]
    pub row_level: bool,
    /// Source rows per checksummed key range.
    #[arg(long, default_value_t = 50_000)]
    pub chunk_rows: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum VerifyCmd {
    /// The latest VDiff's progress, or its report.
    Show {
        name: String,
        /// Follow it until it ends.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "1h", value_parser = crate::humantime_secs)]
        timeout: Duration,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Stop a running VDiff; `resume` continues after the last compared keys.
    Stop {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Continue a stopped or failed VDiff on new snapshots.
    Resume {
        name: String,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "1h", value_parser = crate::humantime_secs)]
        timeout: Duration,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn exit_for(e: &VdiffError) -> u8 {
    match e {
        VdiffError::Workflow(WorkflowError::NotAllowed { .. }) => 3,
        VdiffError::Workflow(WorkflowError::NotFound(_)) | VdiffError::NotFound(_) => 4,
        VdiffError::WrongState { .. } | VdiffError::CopyNotDone(_) => 3,
        VdiffError::UnknownTable { .. } => 2,
        _ => 1,
    }
}

fn fail(e: VdiffError) -> anyhow::Error {
    eprintln!("error: {e}");
    anyhow::Error::new(Exit(exit_for(&e)))
}

/// The VDiff part of a workflow as the API answers it.
#[derive(serde::Deserialize)]
struct WithVdiff {
    vdiff: Option<VdiffRecord>,
}

impl Backend {
    /// The latest VDiff of a workflow, if one was run.
    async fn vdiff_show(&self, name: &str) -> Result<Option<VdiffRecord>> {
        match &self.api {
            Some(c) => c
                .get::<WithVdiff>(&format!("/workflows/{}", seg(name)))
                .await
                .map(|w| w.vdiff)
                .map_err(|e| api_fail(c, e, Domain::Vdiff)),
            None => keyshift_vdiff::show(self.topo().await?, name)
                .await
                .map_err(fail),
        }
    }

    async fn vdiff_start(&self, name: &str, options: VdiffOptions) -> Result<VdiffRecord> {
        match &self.api {
            Some(c) => {
                let body = json!({
                    "tables": options.tables,
                    "max_samples": options.max_samples,
                    "batch_rows": options.batch_rows,
                    "max_rows_per_second": options.max_rows_per_second,
                    "row_level": !options.checksum,
                    "chunk_rows": options.chunk_rows,
                });
                let w: WithVdiff = c
                    .post(&format!("/workflows/{}/verify-data", seg(name)), &body)
                    .await
                    .map_err(|e| api_fail(c, e, Domain::Vdiff))?;
                w.vdiff.ok_or_else(|| {
                    eprintln!("error: the API started a VDiff of workflow {name} but shows none");
                    anyhow::Error::new(Exit(1))
                })
            }
            None => {
                let topo = self.topo().await?;
                keyshift_vdiff::start(topo, name, options, Trigger::Cli)
                    .await
                    .map_err(fail)
            }
        }
    }

    /// `stop` or `resume` of the latest VDiff, over the API when a node runs.
    async fn vdiff_act(&self, name: &str, stop: bool) -> Result<VdiffRecord> {
        match &self.api {
            Some(c) => {
                let what = if stop { "stop" } else { "resume" };
                let w: WithVdiff = c
                    .post(
                        &format!("/workflows/{}/verify-data/{what}", seg(name)),
                        &json!({}),
                    )
                    .await
                    .map_err(|e| api_fail(c, e, Domain::Vdiff))?;
                w.vdiff.ok_or_else(|| {
                    eprintln!("error: workflow {name} shows no VDiff after {what}");
                    anyhow::Error::new(Exit(1))
                })
            }
            None => {
                let topo = self.topo().await?;
                if stop {
                    keyshift_vdiff::stop(topo, name, Trigger::Cli).await
                } else {
                    keyshift_vdiff::resume(topo, name, Trigger::Cli).await
                }
                .map_err(fail)
            }
        }
    }
}

pub async fn run(b: &Backend, args: VerifyArgs) -> Result<()> {
    match args.action {
        Some(VerifyCmd::Show {
            name,
            wait,
            timeout,
            format,
        }) => {
            let rec = if wait {
                follow(b, &name, timeout, format).await?
            } else {
                b.vdiff_show(&name)
                    .await?
                    .ok_or_else(|| fail(VdiffError::NotFound(name.clone())))?
            };
            report(&rec, format)
        }
        Some(VerifyCmd::Stop { name, format }) => {
            let rec = b.vdiff_act(&name, true).await?;
            // The runner records the stop when it has ended.
            let rec = wait_until(b, &name, Duration::from_secs(30), |r| !r.state.is_active())
                .await?
                .unwrap_or(rec);
            if format == Format::Json {
                print_json(&rec)
            } else {
                println!("VDiff of workflow {}: {}", rec.workflow, rec.state);
                Ok(())
            }
        }
        Some(VerifyCmd::Resume {
            name,
            wait,
            timeout,
            format,
        }) => {
            let rec = b.vdiff_act(&name, false).await?;
            if wait {
                let rec = follow(b, &name, timeout, format).await?;
                return report(&rec, format);
            }
            requested(&rec, format, "resumed")
        }
        None => {
            let Some(name) = args.name else {
                anyhow::bail!("name the workflow to verify");
            };
            let options = VdiffOptions {
                tables: (!args.tables.is_empty()).then_some(args.tables),
                max_samples: args.max_samples,
                batch_rows: args.batch_rows,
                max_rows_per_second: args.max_rows_per_second,
                checksum: !args.row_level,
                chunk_rows: args.chunk_rows,
                ..VdiffOptions::default()
            };
            let rec = b.vdiff_start(&name, options).await?;
            if args.wait {
                let rec = follow(b, &name, args.timeout, args.format).await?;
                return report(&rec, args.format);
            }
            requested(&rec, args.format, "requested")
        }
    }
}

fn requested(rec: &VdiffRecord, format: Format, what: &str) -> Result<()> {
    if format == Format::Json {
        return print_json(rec);
    }
    println!(
        "VDiff of workflow {} {what} ({} table(s)); `keyshift workflow verify-data show {} --wait` follows it",
        rec.workflow,
        rec.tables.len(),
        rec.workflow
    );
    Ok(())
}

/// Polls the record until `done` holds (None if there is no record).
async fn wait_until(
    b: &Backend,
    name: &str,
    within: Duration,
    done: impl Fn(&VdiffRecord) -> bool,
) -> Result<Option<VdiffRecord>> {
    let deadline = Instant::now() + within;
    loop {
        let rec = b.vdiff_show(name).await?;
        match rec {
            None => return Ok(None),
            Some(r) if done(&r) || Instant::now() > deadline => return Ok(Some(r)),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Follows a VDiff until it ends, with a progress bar per table on a
/// terminal.
async fn follow(b: &Backend, name: &str, timeout: Duration, format: Format) -> Result<VdiffRecord> {
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
    // Wake on changes to the record rather than on a fixed period: through
    // the node's event stream, or a topo watch on the library path.
    let mut events = match &b.api {
        Some(c) => c.events(&seg(name)).await,
        None => None,
    };
    loop {
        let rev = match &b.api {
            None => Some(
                b.topo()
                    .await?
                    .revision()
                    .await
                    .map_err(anyhow::Error::new)?,
            ),
            Some(_) => None,
        };
        let rec = b
            .vdiff_show(name)
            .await?
            .ok_or_else(|| fail(VdiffError::NotFound(name.to_string())))?;
        for t in &rec.tables {
            let bar = per_table.entry(t.name.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(t.estimated_rows.max(1)));
                b.set_style(style.clone());
                b.set_prefix(t.name.clone());
                b
            });
            bar.set_length(t.estimated_rows.max(t.rows_compared).max(1));
            bar.set_position(t.rows_compared);
            bar.set_message(match (t.state, t.eta_seconds) {
                (TableState::Done, _) => format!("done, {} difference(s)", t.differences()),
                (TableState::Pending, _) => "waiting".to_string(),
                (TableState::Running, Some(s)) => format!("{:.1}% eta {s}s", t.percent),
                (TableState::Running, None) => format!("{:.1}%", t.percent),
            });
        }
        if !rec.state.is_active() {
            for b in per_table.values() {
                b.finish();
            }
            return Ok(rec);
        }
        if Instant::now() > deadline {
            for b in per_table.values() {
                b.abandon();
            }
            eprintln!(
                "error: the VDiff of workflow {name} did not end within {timeout:?} (now {}); is `keyshift up` running?",
                rec.state
            );
            return Err(Exit(5).into());
        }
        // At least this often, so bars and ETAs move.
        let refresh = Duration::from_millis(250);
        match (&mut events, rev) {
            (Some(ev), _) => {
                if let Ok(None) = tokio::time::timeout(refresh, ev.next()).await {
                    // The stream ended (node going away?): poll.
                    events = None;
                }
            }
            (None, Some(rev)) => {
                let key = keyshift_cluster::model::keys::vdiff(name);
                b.topo().await?.wait_change(&key, rev, refresh).await;
            }
            (None, None) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn ago(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Prints the record; the exit code says whether differences were found.
fn report(rec: &VdiffRecord, format: Format) -> Result<()> {
    if format == Format::Json {
        print_json(rec)?;
    } else {
        print_report(rec);
    }
    match rec.state {
        VdiffState::Completed if rec.has_mismatch => Err(Exit(EXIT_DIFFERENCES).into()),
        VdiffState::Error => {
            eprintln!(
                "error: the VDiff failed: {}",
                rec.error.as_deref().unwrap_or("(no reason recorded)")
            );
            Err(Exit(1).into())
        }
        _ => Ok(()),
    }
}

fn print_report(rec: &VdiffRecord) {
    let took = match (rec.started_ms, rec.completed_ms) {
        (Some(a), Some(b)) => format!(", took {:.1} s", b.saturating_sub(a) as f64 / 1000.0),
        _ => String::new(),
    };
    println!("VDiff      workflow {} ({})", rec.workflow, rec.id);
    println!("state      {}", rec.state);
    if let Some(e) = &rec.error {
        println!("error      {e}");
    }
    println!(
        "ran        requested {}, started {}, completed {}{took}",
        ago(Some(rec.requested_ms)),
        ago(rec.started_ms),
        ago(rec.completed_ms)
    );
    if rec.stale {
        println!("STALE      this report is more than 24 hours old; run verify-data again");
    }
    let verdict = match (rec.state, rec.has_mismatch) {
        (_, true) => "DIFFERENCES FOUND",
        (VdiffState::Completed, false) => "no differences: the target equals the source",
        _ => "no differences so far",
    };
    println!("result     {verdict}");
    println!();
    let rows: Vec<Vec<String>> = rec
        .tables
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{:?}", t.state).to_lowercase(),
                t.rows_compared.to_string(),
                t.matching.to_string(),
                t.missing_on_target.to_string(),
                t.extra_on_target.to_string(),
                t.mismatched.to_string(),
                t.misplaced.to_string(),
                format!("{:.1}%", t.percent),
                t.eta_seconds
                    .filter(|_| t.state == TableState::Running)
                    .map(|s| format!("{s}s"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "TABLE",
            "STATE",
            "COMPARED",
            "MATCHING",
            "MISSING",
            "EXTRA",
            "MISMATCHED",
            "MISPLACED",
            "PROGRESS",
            "ETA",
        ],
        &rows,
    );
    let samples: Vec<Vec<String>> = rec
        .tables
        .iter()
        .flat_map(|t| {
            t.samples.iter().map(move |s| {
                let key = t
                    .pk_columns
                    .iter()
                    .zip(&s.key)
                    .map(|(c, v)| format!("{c}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let detail = match s.kind {
                    DiffKind::Mismatched => s
                        .columns
                        .iter()
                        .map(|c| format!("{}: {:?} → {:?}", c.column, c.source, c.target))
                        .collect::<Vec<_>>()
                        .join("; "),
                    _ => s.note.clone().unwrap_or_default(),
                };
                vec![
                    t.name.clone(),
                    s.kind.as_str().to_string(),
                    if key.is_empty() { s.key.join(",") } else { key },
                    s.shard.clone().unwrap_or_else(|| "-".into()),
                    detail,
                ]
            })
        })
        .collect();
    if !samples.is_empty() {
        println!();
        table(&["TABLE", "DIFFERENCE", "KEY", "SHARD", "DETAIL"], &samples);
    }
}
