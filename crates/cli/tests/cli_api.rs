//! `keyshift workflow ...` goes through the node's REST API while a node
//! runs (the workflow's events and phases then name `api` as the trigger),
//! refuses a wrong token without doing anything, reaches a node with
//! `--api` from anywhere, and falls back to the topo (trigger `cli`) when
//! the node is down.

mod common;

use common::Cluster;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const CREATE: &[&str] = &[
    "workflow",
    "create",
    "--name",
    "move1",
    "--source-keyspace",
    "commerce",
    "--target-keyspace",
    "customer",
    "--tables",
    "customer,corder",
    "--copy-batch-rows",
    "50",
    "--copy-cycle",
    "300ms",
    "--format",
    "json",
];

/// Runs the binary from `cwd` with extra environment, without the
/// harness's `--cluster`.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyshift"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("KEYSHIFT_CLUSTER")
        .env_remove("KEYSHIFT_API")
        .env_remove("KEYSHIFT_API_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keyshift")
}

/// The harness's cluster file, with extra environment.
fn run_env(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> Output {
    let file = c.file();
    let mut all = vec!["--cluster", file.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run_in(c.dir.path(), &all, env)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn show(c: &Cluster) -> Value {
    json(&c.run(&["workflow", "show", "move1", "--format", "json"]))
}

/// Who triggered the event whose message contains `needle`, latest first.
fn event_by(w: &Value, needle: &str) -> Option<String> {
    w["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
        .and_then(|e| e["by"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_the_api_while_the_node_runs_and_the_topo_when_it_is_down() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let (base, token) = c.api();

    // A wrong token: a clear error, exit 1, and nothing created.
    let out = run_env(&c, CREATE, &[("KEYSHIFT_API_TOKEN", "wrong")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the token") && err.contains("KEYSHIFT_API_TOKEN"),
        "{err}"
    );
    assert!(err.contains("nothing was done"), "{err}");
    let all = json(&c.run(&["workflow", "list", "--format", "json"]));
    assert_eq!(
        all,
        Value::Array(vec![]),
        "a refused create created something"
    );

    // Create over the API: the record says the API did it.
    let created = json(&c.run(CREATE));
    assert_eq!(created["name"], "move1");
    assert_eq!(created["phases"][0]["by"], "api", "{created:#}");
    let w = json(&c.run(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "120s",
        "--format",
        "json",
    ]));
    assert_eq!(w["state"], "running");
    let listed = json(&c.run(&["workflow", "list", "--format", "json"]));
    assert_eq!(listed[0]["name"], "move1", "{listed:#}");

    // Prometheus metrics: behind the token; the workflow's state and copy,
    // and the gate's statements, per keyspace.
    let gate = Command::new("mariadb")
        .args(["-h127.0.0.1", "-uapp", "-papp-password", "-N", "-e"])
        .arg("SELECT COUNT(*) FROM commerce.customer")
        .arg(format!("-P{}", c.gate_port()))
        .output()
        .expect("mariadb");
    assert!(gate.status.success(), "{}", text(&gate));
    let http = reqwest::Client::new();
    let url = format!("{base}/metrics");
    let refused = http.get(&url).send().await.expect("scrape");
    assert_eq!(refused.status(), 401);
    let scrape = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        scrape.headers()
    );
    let m = scrape.text().await.expect("body");
    for line in [
        "keyshift_workflow_state{workflow=\"move1\",type=\"move_tables\",source_keyspace=\"commerce\",target_keyspace=\"customer\",state=\"running\"} 1",
        "keyshift_workflow_state{workflow=\"move1\",type=\"move_tables\",source_keyspace=\"commerce\",target_keyspace=\"customer\",state=\"copying\"} 0",
        "keyshift_workflow_rows_copied{workflow=\"move1\",table=\"customer\"} 5",
        "keyshift_workflow_copy_done{workflow=\"move1\",table=\"corder\"} 1",
        "keyshift_gate_statements_total{keyspace=\"commerce\"} 1",
        "keyshift_topo_up 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
    }
    for shard in ["-80", "80-"] {
        let prefix = format!(
            "keyshift_workflow_stream_lag_seconds{{workflow=\"move1\",stream=\"0→{shard}\"}} "
        );
        assert!(
            m.lines().any(|l| l.starts_with(&prefix)),
            "{prefix} not in\n{m}"
        );
    }

    // Errors keep their exit codes and messages over the API.
    let out = c.run(&["workflow", "start", "move1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowed now:"),
        "{}",
        text(&out)
    );
    let out = c.run(&["workflow", "show", "nosuch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("workflow `nosuch` does not exist"),
        "{}",
        text(&out)
    );

    // VDiff over the API: the record's trigger is the API.
    let out = c.run(&[
        "workflow",
        "verify-data",
        "move1",
        "--wait",
        "--timeout",
        "120s",
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["state"], "completed", "{report:#}");
    assert_eq!(report["trigger"], "api", "{report:#}");
    // stop and resume go over the API too: a finished VDiff can be neither,
    // and the API's 409 comes back as exit 3 with the state named.
    for what in ["stop", "resume"] {
        let out = c.run(&["workflow", "verify-data", what, "move1"]);
        assert_eq!(out.status.code(), Some(3), "verify-data {what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("completed"), "verify-data {what}: {err}");
    }
    // A row-level VDiff (no checksums) is expressible over the API now.
    let out = c.run(&[
        "workflow",
        "verify-data",
        "move1",
        "--row-level",
        "--wait",
        "--timeout",
        "120s",
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["state"], "completed", "{report:#}");
    assert_eq!(report["trigger"], "api", "{report:#}");

    // A replica-read switch and its reversal over the API.
    let out = c.ok(&[
        "workflow",
        "switch-traffic",
        "move1",
        "--replicas-only",
        "--format",
        "json",
    ]);
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["state"], "switched_replicas", "{r:#}");
    let w = show(&c);
    let phase = w["phases"]
        .as_array()
        .and_then(|p| p.iter().rev().find(|p| p["state"] == "switched_replicas"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(phase["by"], "api", "{w:#}");
    c.ok(&["workflow", "reverse-traffic", "move1"]);
    assert_eq!(show(&c)["state"], "running");

    // `--api` from a directory without any cluster file, token from the
    // environment.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let remote = [("KEYSHIFT_API_TOKEN", token.as_str())];
    let out = run_in(
        elsewhere.path(),
        &["workflow", "--api", &base, "stop", "move1"],
        &remote,
    );
    assert!(out.status.success(), "{}", text(&out));
    let w = json(&run_in(
        elsewhere.path(),
        &["workflow", "show", "move1", "--format", "json"],
        &[("KEYSHIFT_API", base.as_str()), remote[0]],
    ));
    assert_eq!(w["state"], "stopped", "{w:#}");
    assert_eq!(
        event_by(&w, "stopped by the operator").as_deref(),
        Some("api"),
        "{w:#}"
    );
    // ... and with a wrong token there: exit 1, nothing done.
    let out = run_in(
        elsewhere.path(),
        &["workflow", "--api", &base, "start", "move1"],
        &[("KEYSHIFT_API_TOKEN", "0000")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the token"),
        "{}",
        text(&out)
    );
    assert_eq!(show(&c)["state"], "stopped");
    // Without a token and without a local node: says how to give one.
    let out = run_in(elsewhere.path(), &["workflow", "--api", &base, "list"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KEYSHIFT_API_TOKEN"),
        "{}",
        text(&out)
    );

    // The node is down: the CLI works on the topo, silently, as the CLI.
    c.ok(&["down"]);
    let out = c.run(&["workflow", "start", "move1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("API"),
        "{}",
        text(&out)
    );
    let w = show(&c);
    assert_eq!(w["desired"], "running", "{w:#}");
    assert_eq!(
        event_by(&w, "started by the operator").as_deref(),
        Some("cli"),
        "{w:#}"
    );
}
