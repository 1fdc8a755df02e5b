//! The benchmark harness keeps working (issue 9): `bench/run.sh small` runs
//! every scenario (copy, apply, verify, gate, cutover) at a small size with
//! this build's `keyshift` against its real peers (mydumper/myloader,
//! mariadb-dump, MariaDB replication, pt-table-checksum, sysbench), and
//! each scenario's correctness checks must pass. Judged on correctness, not
//! on time. Skipped (with the reason printed) only when a peer tool is
//! missing; `scripts/install-deps.sh --test` installs them all, and with `CI`
//! set a missing tool fails the test instead.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIOS: [&str; 5] = ["copy", "apply", "verify", "gate", "cutover"];
/// `bench/run.sh small`'s exit status when a tool is missing (nothing ran).
const SKIP: i32 = 77;
/// Far above the ~1-2 minutes it takes; a hung scenario must not hang CI.
const LIMIT: Duration = Duration::from_secs(15 * 60);

#[test]
fn every_scenario_runs_at_a_small_size_and_its_checks_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let log = tempfile::NamedTempFile::new().expect("log file");
    // One file description for both streams (a shared offset: no overwriting).
    let out_file = log.reopen().expect("log");
    let err_file = out_file.try_clone().expect("log");
    let started = Instant::now();
    let mut child = Command::new(root.join("bench/run.sh"))
        .arg("small")
        .current_dir(&root)
        .env("KEYSHIFT_BIN", env!("CARGO_BIN_EXE_keyshift"))
        .env_remove("KEEP")
        .env_remove("RESULTS")
        .env_remove("KEYSHIFT_CLUSTER")
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        // Its own process group, so that a timeout can stop every script
        // (each one's trap then stops its servers).
        .process_group(0)
        .spawn()
        .expect("run bench/run.sh");

    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(20));
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "bench/run.sh small did not finish in {LIMIT:?}:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(log.path()).expect("read log");
    let took = started.elapsed();

    if status.code() == Some(SKIP) {
        let reason = out.lines().last().unwrap_or("a tool is missing");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the benchmark harness, but {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    assert!(
        status.success(),
        "bench/run.sh small failed ({status}) after {took:?}:\n{out}"
    );
    for s in SCENARIOS {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("[{s}] check {s}: ok"))),
            "no `check {s}: ok` line:\n{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("== small {s}: passed"))),
            "scenario {s} did not pass:\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("bench small: all 5 scenarios passed")),
        "no final summary:\n{out}"
    );
    // The scenario lines, for whoever reads the test's output.
    for l in out
        .lines()
        .filter(|l| l.starts_with("== small") || l.starts_with("bench small"))
    {
        println!("{l}");
    }
    println!("bench/run.sh small took {took:?}");
}
