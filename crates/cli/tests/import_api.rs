//! Imports over the REST API against a real cluster (`keyshift up` with
//! managed mariadbd) and an "external" mariadbd keyshift does not manage:
//! validation lists every finding with its severity (a view is a warning,
//! not a reason to refuse), a bad `from` is a `request` finding, the
//! created workflow is of kind `import` and carries the notice about
//! writing through the gate (as does a primary switch), and the password
//! is never answered nor logged.

mod common;

use common::Cluster;
use keyshift_testkit::TestMysqld;
use mysql_async::prelude::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Distinctive, so that finding it anywhere means it leaked.
const PASSWORD: &str = "Imp0rt-Pw-7c1f9e2d";

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        assert!(
            !text.contains(PASSWORD),
            "{method} {path} answered the password: {text}"
        );
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The external server: database `shop` with a table, its rows and a view,
/// and a user for keyshift with the password above.
async fn external() -> TestMysqld {
    let ext = TestMysqld::start().await.expect("external mariadbd");
    let mut c = ext.conn().await.expect("connect to the external server");
    for sql in [
        "CREATE DATABASE shop".to_string(),
        "CREATE TABLE shop.customer (customer_id BIGINT NOT NULL, email VARCHAR(128), PRIMARY KEY (customer_id)) ENGINE=InnoDB".into(),
        "INSERT INTO shop.customer VALUES (1, 'ann@example.com'), (2, 'bob@example.com'), (3, 'cy@example.com')".into(),
        "CREATE VIEW shop.v_customer_emails AS SELECT email FROM shop.customer".into(),
    ] {
        c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Every host spelling, so that no anonymous account shadows it.
    for host in ["%", "localhost", "127.0.0.1"] {
        c.query_drop(format!(
            "CREATE USER 'importer'@'{host}' IDENTIFIED BY '{PASSWORD}'"
        ))
        .await
        .expect("create user");
        c.query_drop(format!(
            "GRANT ALL PRIVILEGES ON *.* TO 'importer'@'{host}'"
        ))
        .await
        .expect("grant");
    }
    let _ = c.disconnect().await;
    ext
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_validates_and_creates_an_import_without_leaking_the_password() {
    let ext = external().await;
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let (base, token) = c.api();
    let api = Api {
        base,
        token,
        http: reqwest::Client::new(),
    };
    let ready: Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("ready json");
    let gate = ready["gate"].as_str().expect("gate address").to_string();
    let from = format!("mysql://importer@127.0.0.1:{}/shop", ext.port());
    let request = json!({
        "name": "imp1", "from": from, "password": PASSWORD,
        "target_keyspace": "customer", "all_tables": true,
        "options": { "copy_batch_rows": 2 }
    });

    // Validation: every finding with its severity; the view is a warning
    // and does not block.
    let mut v = request.clone();
    v["validate_only"] = json!(true);
    let (s, report) = api.post("/imports", v).await;
    assert_eq!(s, 200, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["tables"], json!(["customer"]), "{report:#}");
    let findings = report["findings"].as_array().expect("findings").clone();
    assert!(
        findings.iter().all(
            |f| matches!(f["severity"].as_str(), Some("error" | "warning"))
                && f["fix"].as_str().is_some_and(|x| !x.is_empty())
        ),
        "{report:#}"
    );
    let view = findings
        .iter()
        .find(|f| f["check"] == "views")
        .unwrap_or_else(|| panic!("no finding about the view: {report:#}"));
    assert_eq!(view["severity"], "warning", "{report:#}");
    assert!(
        view["problem"]
            .as_str()
            .is_some_and(|p| p.contains("v_customer_emails")),
        "{report:#}"
    );
    // The password in the URL instead: the same, and never answered.
    let mut v = request.clone();
    v["from"] = json!(format!(
        "mysql://importer:{PASSWORD}@127.0.0.1:{}/shop",
        ext.port()
    ));
    v.as_object_mut().expect("object").remove("password");
    v["validate_only"] = json!(true);
    let (s, r) = api.post("/imports", v).await;
    assert_eq!((s, &r["ok"]), (200, &json!(true)), "{r:#}");
    // A wrong password: a `connection` finding saying what to check.
    let mut v = request.clone();
    v["password"] = json!("not-the-password");
    v["validate_only"] = json!(true);
    let (s, r) = api.post("/imports", v).await;
    assert_eq!((s, &r["ok"]), (200, &json!(false)), "{r:#}");
    assert_eq!(r["findings"][0]["check"], "connection", "{r:#}");

    // A bad `from`: 422 with a `request` finding, nothing created.
    let mut bad = request.clone();
    bad["from"] = json!(format!("mysql://importer@127.0.0.1:{}/", ext.port()));
    let (s, b) = api.post("/imports", bad).await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b:#}");
    let f = b["error"]["details"]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        f.iter()
            .any(|x| x["check"] == "request" && x["severity"] == "error"),
        "{b:#}"
    );
    let (_, page) = api.get("/workflows").await;
    assert_eq!(page["total"], 0, "{page:#}");
    let (s, _) = api.get("/keyspaces/ext_shop").await;
    assert_eq!(s, 404, "a refused import registered its keyspace");

    // Create: a workflow of kind import, with the notice about the gate.
    let (s, w) = api.post("/imports", request.clone()).await;
    assert_eq!(s, 201, "{w:#}");
    assert_eq!(w["name"], "imp1");
    assert_eq!(w["type"], "import", "{w:#}");
    assert_eq!(w["source_keyspace"], "ext_shop");
    assert_eq!(w["phases"][0]["by"], "api");
    let notice = w["switch_notice"].as_str().expect("switch_notice");
    assert!(
        notice.contains(&gate),
        "{notice} should name the gate {gate}"
    );
    let (s, w) = api.get("/workflows/imp1").await;
    assert_eq!(s, 200);
    assert_eq!(w["switch_notice"].as_str(), Some(notice));
    let (_, page) = api.get("/workflows").await;
    assert_eq!(page["workflows"][0]["type"], "import", "{page:#}");
    assert_eq!(page["workflows"][0]["switch_notice"].as_str(), Some(notice));
    // The external server appears as a keyspace; no view shows the
    // credentials.
    let (s, ks) = api.get("/keyspaces/ext_shop").await;
    assert_eq!((s, &ks["sharded"]), (200, &json!(false)), "{ks:#}");
    let (s, _) = api.get("/tablets").await;
    assert_eq!(s, 200);
    let (s, _) = api.get("/cluster").await;
    assert_eq!(s, 200);
    // Creating it again is refused by the pre-checks.
    let (s, b) = api.post("/imports", request.clone()).await;
    assert_eq!((s, code(&b)), (422, "invalid"), "{b:#}");

    // Once it runs, a primary switch (a dry run here) answers the notice.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, w) = api.get("/workflows/imp1").await;
        if w["state"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline && w["state"] != "error",
            "the import never reached running: {w:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, r) = api
        .post("/workflows/imp1/switch-traffic", json!({ "dry_run": true }))
        .await;
    assert_eq!(s, 200, "{r:#}");
    assert_eq!(r["report"]["dry_run"], true);
    assert_eq!(r["notice"].as_str(), Some(notice), "{r:#}");
    let (s, r) = api
        .post(
            "/workflows/imp1/switch-traffic",
            json!({ "dry_run": true, "replicas_only": true }),
        )
        .await;
    assert_eq!(s, 200, "{r:#}");
    assert!(r.get("notice").is_none(), "{r:#}");

    // Cancel: the notice goes, and so does the external server's keyspace
    // with its stored credentials.
    let (s, w) = api.post("/workflows/imp1/cancel", json!({})).await;
    assert_eq!((s, &w["state"]), (200, &json!("cancelled")), "{w:#}");
    assert!(w.get("switch_notice").is_none(), "{w:#}");
    let (s, _) = api.get("/keyspaces/ext_shop").await;
    assert_eq!(s, 404, "cancel left the external server registered");

    // The password is in no log of the node.
    let mut logs = Vec::new();
    collect_logs(&c.data_dir(), &mut logs);
    assert!(
        logs.iter().any(|p| p.ends_with("keyshift.log")),
        "no node log among {logs:?}"
    );
    for p in logs {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
        assert!(!text.contains(PASSWORD), "{} has the password", p.display());
        assert!(
            !text.contains(&format!("importer:{PASSWORD}")),
            "{} has the URL with the password",
            p.display()
        );
    }
}

/// Every log file under `dir` (the node's and the managed servers').
fn collect_logs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_logs(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "log" || x == "err" || x == "out")
        {
            out.push(p);
        }
    }
}
