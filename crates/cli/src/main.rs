//! `keyshift`: the one binary. Every role is a subcommand; `keyshift up`
//! runs them all in one process.

mod client;
mod commands;
mod node;
mod output;
mod workflow;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keyshift",
    version,
    about = "Self-service sharding for MySQL and MariaDB",
    long_about = "Self-service sharding for MySQL and MariaDB.\n\nStart with `keyshift up` (reads ./keyshift.toml), then `keyshift demo` and `keyshift status`."
)]
struct Cli {
    /// The cluster file.
    #[arg(
        short,
        long,
        global = true,
        env = "KEYSHIFT_CLUSTER",
        default_value = "keyshift.toml"
    )]
    cluster: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster: managed tablets, (later) gate and API. Foreground
    /// until Ctrl-C unless --detach.
    Up {
        /// Run in the background; `keyshift down` stops it.
        #[arg(long)]
        detach: bool,
        /// How long to wait for the tablets to start.
        #[arg(long, default_value = "120s", value_parser = humantime_secs)]
        timeout: std::time::Duration,
    },
    /// Stop a cluster started with `keyshift up --detach`.
    Down {
        #[arg(long, default_value = "60s", value_parser = humantime_secs)]
        timeout: std::time::Duration,
    },
    /// Keyspaces, shards and tablets with health, role and GTID position.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create the demo: keyspace `commerce` with data, empty sharded `customer`.
    Demo {
        /// How long to wait for the demo's tablets to answer.
        #[arg(long, default_value = "120s", value_parser = humantime_secs)]
        wait: std::time::Duration,
    },
    /// Create, delete and list keyspaces.
    #[command(subcommand)]
    Keyspace(commands::KeyspaceCmd),
    /// Add, remove and list tablets.
    #[command(subcommand)]
    Tablet(commands::TabletCmd),
    /// Get and apply a keyspace's VSchema.
    #[command(subcommand)]
    Vschema(commands::VschemaCmd),
    /// Get and apply the routing rules.
    #[command(subcommand, name = "routing-rules")]
    RoutingRules(commands::RoutingCmd),
    /// Create, follow and operate data-motion workflows.
    Workflow(workflow::WorkflowArgs),
    /// Import a database from an external MySQL/MariaDB server (then
    /// operate it with `keyshift workflow`).
    Import(workflow::import::ImportArgs),
    /// Map a value through a vindex: the keyspace id and the shard of each
    /// sharded keyspace that holds it.
    Vindex {
        /// hash, xxhash, binary_md5, unicode_loose_md5, numeric
        kind: String,
        value: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Durations like `30s`, `2m`, `500ms`.
fn humantime_secs(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 2m or 500ms"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" | "" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        "h" => Ok(std::time::Duration::from_secs(n * 3600)),
        _ => Err(format!("`{s}` is not a duration like 30s, 2m or 500ms")),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYSHIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // Workflow commands print their own message and pick the code.
        Err(e) if e.downcast_ref::<workflow::Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<workflow::Exit>().map_or(1, |x| x.0))
        }
        Err(e) => {
            eprintln!("error: {}", output::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let cluster = cli.cluster;
    match cli.command {
        Command::Up { detach, timeout } => {
            let json_logs = matches!(cli.log_format, LogFormat::Json);
            node::up(&cluster, detach, timeout, json_logs).await
        }
        Command::Down { timeout } => node::down(&cluster, timeout).await,
        Command::Status { format } => commands::status(&cluster, format).await,
        Command::Demo { wait } => commands::demo(&cluster, wait).await,
        Command::Keyspace(cmd) => commands::keyspace(&cluster, cmd).await,
        Command::Tablet(cmd) => commands::tablet(&cluster, cmd).await,
        Command::Vschema(cmd) => commands::vschema(&cluster, cmd).await,
        Command::RoutingRules(cmd) => commands::routing_rules(&cluster, cmd).await,
        Command::Workflow(cmd) => workflow::run(&cluster, cmd).await,
        Command::Import(cmd) => workflow::import::run(&cluster, cmd).await,
        Command::Vindex {
            kind,
            value,
            format,
        } => commands::vindex(&cluster, &kind, &value, format).await,
    }
}
