//! sysbench oltp_read_write with server-side prepared statements through the
//! passthrough gate: the workload that broke opensrv-mysql (re-executions
//! without re-sent parameter types).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use keyshift_gate::GateConfig;

fn sysbench(port: u16, args: &[&str]) -> std::process::Output {
    Command::new("sysbench")
        .arg("oltp_read_write")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={USER}"))
        .arg(format!("--mysql-password={PASS}"))
        .arg("--mysql-db=sbtest")
        .arg("--tables=4")
        .arg("--table-size=20000")
        .args(args)
        .output()
        .expect("sysbench")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_prepared() {
    let m = Mysqld::start();
    m.sql("CREATE DATABASE sbtest");
    let direct = m.port;
    let out = tokio::task::spawn_blocking(move || sysbench(direct, &["prepare"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "prepare: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = start_gate(
        &m,
        Some("sbtest"),
        GateConfig::default(),
        Duration::from_secs(10),
    )
    .await;
    let port = g.port;
    let out = tokio::task::spawn_blocking(move || {
        sysbench(
            port,
            &[
                "--threads=4",
                "--time=10",
                "--db-ps-mode=auto",
                "--report-interval=0",
                "run",
            ],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or("")
            .to_string()
    };
    eprintln!(
        "{}\n{}\n{}",
        line("transactions:"),
        line("ignored errors:"),
        line("reconnects:")
    );
    let field = |key: &str| -> u64 {
        line(key)
            .split_whitespace()
            .nth(if key == "ignored errors:" { 2 } else { 1 })
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX)
    };
    // sysbench's "ignored errors" are deadlocks and lock wait timeouts between
    // its own threads (MariaDB reports them directly too); everything else is fatal
    let tx = field("transactions:");
    assert!(field("ignored errors:") * 100 <= tx, "{stdout}");
    assert_eq!(field("reconnects:"), 0, "{stdout}");
    assert!(tx > 100, "{stdout}");
    assert!(!stdout.contains("FATAL"), "{stdout}");
}
