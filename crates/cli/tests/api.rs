//! The REST API over real HTTP against a real cluster (`keyshift up` with
//! managed mariadbd): the token file and `up`'s hint, authentication, the
//! cluster and VSchema routes, create with validate-only, the error shapes,
//! list filters, a state conflict, live events, and the workflow's whole
//! lifecycle driven through the API.

mod common;

use common::Cluster;
use futures::StreamExt;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(c: &Cluster) -> Api {
        let (base, token) = c.api();
        Api {
            base,
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .timeout(Duration::from_secs(120));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call_as(Some(&self.token), reqwest::Method::GET, path, None)
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call_as(Some(&self.token), reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Polls the workflow until `pred` holds (bounded); returns it.
    async fn wait_for(&self, name: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, w) = self.get(&format!("/workflows/{name}")).await;
            assert_eq!(s, 200, "{w}");
            if pred(&w) {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "workflow {name} never reached the condition: {w:#}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn last_phase(w: &Value) -> Value {
    w["phases"]
        .as_array()
        .and_then(|p| p.last())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Reads server-sent events until one satisfies `pred`; returns its data.
async fn next_event<B: AsRef<[u8]>, E: std::fmt::Debug>(
    stream: &mut (impl futures::Stream<Item = Result<B, E>> + Unpin),
    buf: &mut String,
    within: Duration,
    pred: impl Fn(&str, &Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(i) = buf.find("\n\n") {
            let raw: String = buf.drain(..i + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in raw.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if pred(event, &v) {
                return v;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("timed out waiting for an event")
            .expect("event stream ended")
            .expect("event stream failed");
        buf.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_a_workflow_from_validation_to_completion() {
    let c = Cluster::example();
    let up = c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);

    // The token: created by up, private, never printed, and `up` says how
    // to use it.
    let token_file = c.data_dir().join("api-token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let api = Api::new(&c);
    assert_eq!(api.token.len(), 64);
    assert!(up.contains("dashboard: http://127.0.0.1:"), "{up}");
    assert!(
        up.contains(&format!(
            "Authorization: Bearer $(cat {})",
            token_file.display()
        )),
        "{up}"
    );
    assert!(!up.contains(&api.token), "up printed the token");
    let log = std::fs::read_to_string(c.data_dir().join("keyshift.log")).unwrap_or_default();
    assert!(!log.contains(&api.token), "the log has the token");

    // Missing or wrong token: 401, and nothing is done.
    let create = json!({
        "name": "move1", "source_keyspace": "commerce", "target_keyspace": "customer",
        "tables": ["customer", "corder"],
        "options": { "copy_batch_rows": 2, "copy_cycle_ms": 300 }
    });
    for token in [None, Some("nope"), Some(&api.token[..63])] {
        let (s, b) = api
            .call_as(
                token,
                reqwest::Method::POST,
                "/workflows",
                Some(create.clone()),
            )
            .await;
        assert_eq!((s, code(&b)), (401, "unauthorized"), "{b}");
    }
    let (s, b) = api.get("/workflows").await;
    assert_eq!(s, 200);
    assert_eq!(b["total"], 0, "a refused create created something: {b}");

    // The cluster, with health.
    let (s, cluster) = api.get("/cluster").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = cluster
        .as_array()
        .expect("keyspaces")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, vec!["commerce", "customer"]);
    let (s, tablets) = api.get("/tablets").await;
    assert_eq!(s, 200);
    let tablets = tablets.as_array().expect("tablets").clone();
    assert_eq!(tablets.len(), 3);
    assert!(
        tablets.iter().all(|t| t["health"]["healthy"] == true),
        "{tablets:?}"
    );
    assert!(tablets.iter().all(|t| t.get("password").is_none()));
    let alias = tablets[0]["alias"].as_str().expect("alias");
    let (s, one) = api.get(&format!("/tablets/{alias}")).await;
    assert_eq!((s, one["alias"].as_str()), (200, Some(alias)));
    let (s, b) = api.get("/tablets/local-0000000999").await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, b) = api.get("/keyspaces/customer").await;
    assert_eq!(s, 200);
    assert_eq!(b["sharded"], true);
    assert_eq!(b["shards"].as_array().map(Vec::len), Some(2));
    let (s, tables) = api.get("/keyspaces/commerce/tables").await;
    assert_eq!(s, 200);
    let tnames: Vec<&str> = tables
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in ["corder", "customer", "product"] {
        assert!(tnames.contains(&t), "{tnames:?}");
    }

    // VSchema: get, and apply with every fault reported with its path.
    let (s, vs) = api.get("/keyspaces/customer/vschema").await;
    assert_eq!(s, 200);
    assert_eq!(vs["sharded"], true);
    let (s, b) = api
        .call_as(
            Some(&api.token),
            reqwest::Method::PUT,
            "/keyspaces/customer/vschema?dry_run=true",
            Some(vs.clone()),
        )
        .await;
    assert_eq!((s, &b["applied"]), (200, &json!(false)), "{b}");
    let mut bad = vs.clone();
    bad["tables"]["customer"]["column_vindexes"][0]["name"] = json!("nosuch_vindex");
    bad["vindexes"]["hash"]["type"] = json!("no_such_type");
    let (s, b) = api
        .call_as(
            Some(&api.token),
            reqwest::Method::PUT,
            "/keyspaces/customer/vschema",
            Some(bad),
        )
        .await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b}");
    let faults = b["error"]["details"]["faults"].as_array().expect("faults");
    assert!(faults.len() >= 2, "{b}");
    assert!(
        faults
            .iter()
            .all(|f| f["path"].as_str().is_some_and(|p| !p.is_empty())),
        "{b}"
    );
    let (_, after) = api.get("/keyspaces/customer/vschema").await;
    assert_eq!(after, vs, "an invalid VSchema was stored");
    let (s, b) = api.get("/routing-rules").await;
    assert_eq!(s, 200);
    assert!(b["rules"].is_array(), "{b}");

    // Validate-only reports every problem at once and creates nothing.
    let (s, report) = api
        .post(
            "/workflows",
            json!({
                "name": "bad", "source_keyspace": "commerce", "target_keyspace": "customer",
                "tables": ["customer", "nosuch", "product"], "validate_only": true
            }),
        )
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["ok"], false);
    let findings = report["findings"].as_array().expect("findings").clone();
    assert!(
        findings.iter().any(|f| f["table"] == "nosuch"),
        "{report:#}"
    );
    assert!(
        findings.iter().any(|f| f["table"] == "product"
            && f["problem"].as_str().is_some_and(|p| p.contains("VSchema"))),
        "{report:#}"
    );
    assert!(
        findings
            .iter()
            .all(|f| f["fix"].as_str().is_some_and(|x| !x.is_empty()))
    );
    let (s, b) = api.get("/workflows/bad").await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    // The same request for real: 422 with the same findings.
    let (s, b) = api
        .post(
            "/workflows",
            json!({
                "name": "bad", "source_keyspace": "commerce", "target_keyspace": "customer",
                "tables": ["customer", "nosuch", "product"]
            }),
        )
        .await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b}");
    assert_eq!(
        b["error"]["details"]["findings"].as_array().map(Vec::len),
        Some(findings.len())
    );
    // Malformed fields: 422 naming each.
    let (s, b) = api
        .post(
            "/workflows",
            json!({ "name": 7, "target_keyspace": "customer", "tables": "customer" }),
        )
        .await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b}");
    let fields: Vec<&str> = b["error"]["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["name", "source_keyspace"], "{b}");
    let (s, report) = api
        .post("/workflows?validate_only=true", create.clone())
        .await;
    assert_eq!((s, &report["ok"]), (200, &json!(true)), "{report}");

    // Live events: subscribe, then create; the stream shows it reach running.
    let resp = api
        .http
        .get(format!("{}/api/v1/events?workflow=move1", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    );
    let mut events = resp.bytes_stream();
    let mut buf = String::new();
    next_event(&mut events, &mut buf, Duration::from_secs(10), |e, _| {
        e == "ready"
    })
    .await;

    let (s, w) = api.post("/workflows", create.clone()).await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["name"], "move1");
    assert_eq!(w["phases"][0]["by"], "api");
    assert!(
        w["events"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("created"))
    );
    let running = next_event(&mut events, &mut buf, Duration::from_secs(120), |e, v| {
        e == "workflow" && v["state"] == "running"
    })
    .await;
    assert_eq!(running["name"], "move1");
    assert!(
        running["allowed_actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("stop"))),
        "{running}"
    );
    drop(events);

    // Creating it again: the pre-check names the existing workflow.
    let (s, b) = api.post("/workflows", create.clone()).await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b}");

    // List filters and pagination.
    let (s, page) = api.get("/workflows?state=running").await;
    assert_eq!(s, 200);
    assert_eq!(page["workflows"][0]["name"], "move1");
    assert!(
        page["workflows"][0]["durations"]["copy_ms"].is_u64(),
        "{page}"
    );
    let (_, page) = api.get("/workflows?state=stopped,error").await;
    assert_eq!(page["total"], 0);
    let (_, page) = api.get("/workflows?created_after=0&limit=1").await;
    assert_eq!(page["workflows"].as_array().map(Vec::len), Some(1));
    let (s, b) = api.get("/workflows?created_before=abc").await;
    assert_eq!((s, code(&b)), (422, "invalid"));

    // The wrong state: 409 listing what is allowed now.
    let (s, b) = api.post("/workflows/move1/start", json!({})).await;
    assert_eq!((s, code(&b)), (409, "not_allowed"), "{b}");
    let (_, w) = api.get("/workflows/move1").await;
    assert_eq!(
        b["error"]["details"]["allowed_actions"],
        w["allowed_actions"]
    );
    assert_eq!(b["error"]["details"]["state"], "running");
    let (s, b) = api.post("/workflows/nosuch/stop", json!({})).await;
    assert_eq!((s, code(&b)), (404, "not_found"));

    // Stop and start, recorded as the API's doing.
    let (s, w) = api.post("/workflows/move1/stop", json!({})).await;
    assert_eq!((s, &w["state"]), (200, &json!("stopped")), "{w}");
    assert_eq!(last_phase(&w)["by"], "api");
    let (s, w) = api.post("/workflows/move1/start", json!({})).await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(last_phase(&w)["by"], "api");
    api.wait_for("move1", Duration::from_secs(60), |w| {
        w["state"] == "running" && w["max_lag_seconds"].as_u64().is_some_and(|l| l <= 1)
    })
    .await;

    // Verify the data; the report lands in the workflow.
    let (s, w) = api.post("/workflows/move1/verify-data", json!({})).await;
    assert_eq!(s, 200, "{w}");
    let w = api
        .wait_for("move1", Duration::from_secs(120), |w| {
            matches!(w["vdiff"]["state"].as_str(), Some("completed" | "error"))
        })
        .await;
    assert_eq!(w["vdiff"]["state"], "completed", "{:#}", w["vdiff"]);
    assert_eq!(w["vdiff"]["has_mismatch"], false, "{:#}", w["vdiff"]);
    assert_eq!(w["vdiff"]["trigger"], "api");

    // Switch reads, then writes, back, forth, and complete; each once the
    // streams have caught up (VDiff paused them for its snapshot).
    let caught_up = |w: &Value| w["max_lag_seconds"].as_u64().is_some_and(|l| l <= 1);
    api.wait_for("move1", Duration::from_secs(60), caught_up)
        .await;
    let (s, w) = api
        .post(
            "/workflows/move1/switch-traffic",
            json!({ "replicas_only": true }),
        )
        .await;
    assert_eq!((s, &w["state"]), (200, &json!("switched_replicas")), "{w}");
    assert!(w["report"]["steps"].is_array(), "{w}");
    api.wait_for("move1", Duration::from_secs(60), caught_up)
        .await;
    let (s, w) = api.post("/workflows/move1/switch-traffic", json!({})).await;
    assert_eq!((s, &w["state"]), (200, &json!("switched_primaries")), "{w}");
    assert_eq!(last_phase(&w)["by"], "api");
    let (s, b) = api.post("/workflows/move1/cancel", json!({})).await;
    assert_eq!((s, code(&b)), (409, "not_allowed"), "{b}");
    let (s, w) = api
        .post("/workflows/move1/reverse-traffic", json!({}))
        .await;
    assert_eq!(s, 200, "{w}");
    assert_ne!(w["state"], "switched_primaries", "{w}");
    api.wait_for("move1", Duration::from_secs(60), caught_up)
        .await;
    let (s, w) = api.post("/workflows/move1/switch-traffic", json!({})).await;
    assert_eq!((s, &w["state"]), (200, &json!("switched_primaries")), "{w}");
    let (s, w) = api
        .post(
            "/workflows/move1/complete",
            json!({ "mode": "rename_tables" }),
        )
        .await;
    assert_eq!((s, &w["state"]), (200, &json!("completed")), "{w}");
    assert!(w["durations"]["complete_ms"].is_u64(), "{w}");
    assert_eq!(w["allowed_actions"], json!([]));
    let (_, page) = api.get("/workflows?state=completed").await;
    assert_eq!(page["workflows"][0]["name"], "move1", "{page}");
}
