//! The API's router against an in-memory topo: the OpenAPI document against
//! what the router really answers, authentication, error shapes, list
//! filters and pagination, state checks, and the event stream. No servers
//! needed: workflow records are written into the topo directly.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use keyshift_api::{ApiToken, AppState, app, lag::LagHistory, openapi, routes::ROUTES};
use keyshift_cluster::model::keys;
use keyshift_topo::{Cond, MemTopo, Topo, TopoExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Fixture {
    topo: Arc<dyn Topo>,
    app: axum::Router,
    cancel: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn fixture() -> Fixture {
    let topo: Arc<dyn Topo> = Arc::new(MemTopo::new());
    let cancel = CancellationToken::new();
    let state = AppState {
        topo: topo.clone(),
        lag: Arc::new(LagHistory::default()),
        cancel: cancel.clone(),
        metrics: Vec::new(),
    };
    Fixture {
        topo,
        app: app(state, ApiToken::new(TOKEN)),
        cancel,
    }
}

/// A stored workflow record in `state`, created at `created_ms`.
fn record(name: &str, state: &str, created_ms: u64) -> Value {
    json!({
        "name": name, "type": "move_tables", "source_keyspace": "commerce",
        "target_keyspace": "customer",
        "tables": [{ "name": "customer", "pk_columns": ["customer_id"] }],
        "options": {}, "state": state, "desired": "running",
        "created_ms": created_ms, "updated_ms": created_ms,
        "phases": [{ "state": "pending", "at_ms": created_ms, "by": "cli" }],
        "streams": [{ "id": 1, "source_shard": "0", "target_shard": "-80", "lag_seconds": 3 }],
        "table_progress": [{ "name": "customer", "rows_copied": 50, "rows_scanned": 50,
                              "estimated_rows": 200, "percent": 25.0, "done": false }]
    })
}

async fn put_record(topo: &dyn Topo, v: &Value) {
    let name = v["name"].as_str().expect("name");
    topo.put_json(&keys::workflow(name), v, Cond::Any)
        .await
        .expect("put");
}

async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let is_stream = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        return (status, json!({ "stream": true }));
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{path}: not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })
    };
    (status, v)
}

/// What the library allows in `state`, as the API serializes it.
fn allowed(state: &str) -> Value {
    let st: keyshift_workflow::State = state.parse().expect("state");
    serde_json::to_value(keyshift_workflow::allowed_actions(st)).expect("json")
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let f = fixture();
    let (status, doc) = call(
        &f.app,
        Method::GET,
        "/api/v1/openapi.json",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");

    // Every route of the table is documented with its method...
    for r in ROUTES {
        let op = &paths[r.path][r.method.to_ascii_lowercase()];
        assert_eq!(
            op["operationId"], r.operation_id,
            "{} {} is not in the document",
            r.method, r.path
        );
    }
    // ...and every documented operation is answered by the router (not by
    // its no-route or wrong-method fallbacks), while every method the
    // document does not list for a path is refused.
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = openapi::path_params(path)
            .into_iter()
            .fold(path.clone(), |p, name| {
                p.replace(&format!("{{{name}}}"), "x")
            });
        let url = format!("{}{concrete}", openapi::BASE);
        for method in ["get", "post", "put", "delete", "patch"] {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (status, body) = call(&f.app, m, &url, Some(TOKEN), None).await;
            if item.get(method).is_some() {
                operations += 1;
                assert!(
                    !matches!(code(&body), "no_route" | "method_not_allowed"),
                    "documented {method} {path} is not served: {status} {body}"
                );
                // Declared responses cover what came back.
                let declared = item[method]["responses"]
                    .as_object()
                    .expect("responses")
                    .contains_key(status.as_str());
                assert!(
                    declared,
                    "{method} {path} answered undocumented {status}: {body}"
                );
            } else {
                assert_eq!(
                    (status, code(&body)),
                    (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    assert_eq!(operations, ROUTES.len());
    assert_eq!(
        doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|i| i.as_object().map_or(0, |o| o.len()))
            .sum::<usize>(),
        ROUTES.len(),
        "the document has operations the route table does not"
    );

    // A path the document does not have is not served either.
    let (status, body) = call(&f.app, Method::GET, "/api/v1/nope", Some(TOKEN), None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_route"));
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_and_nothing_is_done() {
    let f = fixture();
    put_record(f.topo.as_ref(), &record("w1", "running", 1000)).await;
    for token in [None, Some("wrong"), Some(&TOKEN[1..])] {
        for (method, path) in [
            (Method::GET, "/api/v1/workflows"),
            (Method::GET, "/api/v1/openapi.json"),
            (Method::GET, "/api/v1/events"),
            (Method::POST, "/api/v1/workflows/w1/stop"),
            (Method::GET, "/api/v1/no-such-route"),
        ] {
            let (status, body) = call(&f.app, method.clone(), path, token, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(code(&body), "unauthorized");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.contains(TOKEN))
            );
        }
    }
    let (w, _) = f
        .topo
        .get_json::<Value>(&keys::workflow("w1"))
        .await
        .expect("get")
        .expect("record");
    assert_eq!(w["state"], "running", "a refused stop changed the workflow");

    // The header's scheme is case-insensitive, the token is not.
    let req = Request::builder()
        .uri("/api/v1/workflows")
        .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let req = Request::builder()
        .uri("/api/v1/workflows")
        .body(Body::empty())
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(
        resp.headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer realm=\"keyshift\""[..])
    );

    // The dashboard itself is public: it holds no data.
    let (status, _) = {
        let req = Request::builder()
            .uri("/")
            .body(Body::empty())
            .expect("request");
        let resp = f.app.clone().oneshot(req).await.expect("infallible");
        (resp.status(), ())
    };
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn errors_have_one_shape_and_stable_codes() {
    let f = fixture();
    put_record(f.topo.as_ref(), &record("w1", "running", 1000)).await;
    let t = Some(TOKEN);

    let (s, b) = call(&f.app, Method::GET, "/api/v1/workflows/nosuch", t, None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        b["error"]["details"],
        json!({ "kind": "workflow", "name": "nosuch" })
    );

    let (s, b) = call(&f.app, Method::GET, "/api/v1/keyspaces/nosuch", t, None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(b["error"]["details"]["kind"], "keyspace");

    let (s, b) = call(
        &f.app,
        Method::GET,
        "/api/v1/tablets/not-an-alias!",
        t,
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "bad_request"));

    // Wrong state: 409 with what is allowed now.
    let (s, b) = call(&f.app, Method::POST, "/api/v1/workflows/w1/start", t, None).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "not_allowed"), "{b}");
    assert_eq!(b["error"]["details"]["allowed_actions"], allowed("running"));
    assert_eq!(b["error"]["details"]["state"], "running");

    // Not JSON: 400. JSON of the wrong shape: 422 naming every field.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/workflows")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{not json"))
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (s, b) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows",
        t,
        Some(json!({ "source_keyspace": 1, "tables": [], "optionz": {} })),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    let fields: Vec<&str> = b["error"]["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for want in [
        "name",
        "source_keyspace",
        "target_keyspace",
        "tables",
        "optionz",
    ] {
        assert!(fields.contains(&want), "{want} not named in {b}");
    }
    let (s, b) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/w1/stop",
        t,
        Some(json!({ "force": true })),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));

    let (s, b) = call(
        &f.app,
        Method::GET,
        "/api/v1/workflows?state=runing",
        t,
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    assert_eq!(b["error"]["details"]["fields"][0]["field"], "state");

    let (s, b) = call(&f.app, Method::DELETE, "/api/v1/workflows", t, None).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    // The error object holds exactly code, message and (optionally) details.
    let keys: Vec<&String> = b["error"]
        .as_object()
        .expect("error object")
        .keys()
        .collect();
    assert_eq!(keys, vec!["code", "message"], "{b}");
}

#[tokio::test]
async fn lists_filter_by_state_and_time_and_paginate() {
    let f = fixture();
    for i in 0..7u64 {
        let state = if i % 2 == 0 { "running" } else { "stopped" };
        put_record(
            f.topo.as_ref(),
            &record(&format!("w{i}"), state, 1000 + i * 100),
        )
        .await;
    }
    let t = Some(TOKEN);
    let names = |b: &Value| -> Vec<String> {
        b["workflows"]
            .as_array()
            .expect("workflows")
            .iter()
            .map(|w| w["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    let (s, b) = call(&f.app, Method::GET, "/api/v1/workflows", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["total"], 7);
    assert_eq!(names(&b)[0], "w6", "newest first");
    assert_eq!(b["workflows"][0]["max_lag_seconds"], 3);
    assert_eq!(b["workflows"][0]["copy_percent"], 25.0);

    let (_, b) = call(
        &f.app,
        Method::GET,
        "/api/v1/workflows?state=stopped",
        t,
        None,
    )
    .await;
    assert_eq!(names(&b), vec!["w5", "w3", "w1"]);
    let (_, b) = call(
        &f.app,
        Method::GET,
        "/api/v1/workflows?state=stopped,running&created_after=1200&created_before=1500",
        t,
        None,
    )
    .await;
    assert_eq!(names(&b), vec!["w4", "w3", "w2"]);

    // Pages of 3 walk everything once.
    let mut seen = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let (s, b) = call(
            &f.app,
            Method::GET,
            &format!("/api/v1/workflows?limit=3&offset={o}"),
            t,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert!(names(&b).len() <= 3);
        seen.extend(names(&b));
        offset = b["next_offset"].as_u64();
    }
    assert_eq!(seen, vec!["w6", "w5", "w4", "w3", "w2", "w1", "w0"]);

    let (s, b) = call(&f.app, Method::GET, "/api/v1/workflows?limit=0", t, None).await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
}

#[tokio::test]
async fn get_shows_everything_and_actions_say_why_not() {
    let f = fixture();
    put_record(f.topo.as_ref(), &record("w1", "running", 1000)).await;
    f.topo
        .put_json(
            &keys::vdiff("w1"),
            &json!({ "state": "completed", "tables": [] }),
            Cond::Any,
        )
        .await
        .expect("put vdiff");
    let (s, b) = call(
        &f.app,
        Method::GET,
        "/api/v1/workflows/w1",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for key in [
        "type",
        "state",
        "source_keyspace",
        "target_keyspace",
        "tables",
        "options",
        "phases",
        "events",
        "streams",
        "table_progress",
        "allowed_actions",
        "actions",
        "durations",
        "vdiff",
    ] {
        assert!(b.get(key).is_some(), "{key} missing from {b}");
    }
    assert_eq!(b["vdiff"]["state"], "completed");
    assert_eq!(b["phases"][0]["by"], "cli");
    let start = b["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["action"] == "start")
        .expect("start")
        .clone();
    assert_eq!(start["allowed"], false);
    assert!(
        start["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stopped")),
        "{start}"
    );
}

#[tokio::test]
async fn actions_are_recorded_as_the_api_and_stream_live() {
    let f = fixture();
    put_record(f.topo.as_ref(), &record("w1", "running", 1000)).await;
    put_record(f.topo.as_ref(), &record("other", "running", 1000)).await;

    let req = Request::builder()
        .uri("/api/v1/events?workflow=w1")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::new();
    // Reads until `pred` holds on what arrived, bounded in time.
    async fn until(
        body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
        text: &mut String,
        pred: impl Fn(&str) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pred(text) {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .unwrap_or_else(|_| panic!("timed out; got so far:\n{text}"))
                .expect("stream ended")
                .expect("chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    until(&mut body, &mut text, |t| t.contains("event: ready")).await;

    // A change to another workflow is filtered out; ours arrives.
    let (s, _) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/other/stop",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/w1/stop",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["state"], "stopped");
    assert_eq!(
        b["phases"]
            .as_array()
            .and_then(|p| p.last())
            .map(|p| p["by"].clone()),
        Some(json!("api"))
    );
    until(&mut body, &mut text, |t| t.contains("event: workflow\n")).await;
    let data = text
        .split("\n\n")
        .find(|e| e.contains("event: workflow\n"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .expect("data line");
    let v: Value = serde_json::from_str(data).expect("json");
    assert_eq!(v["name"], "w1");
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["allowed_actions"], allowed("stopped"));
    assert!(
        !text.contains("\"name\":\"other\""),
        "filter leaked: {text}"
    );

    // Two clicks at once: one runs, the other is told it is not allowed.
    let a = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/w1/start",
        Some(TOKEN),
        None,
    );
    let b = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/w1/start",
        Some(TOKEN),
        None,
    );
    let ((sa, _), (sb, _)) = tokio::join!(a, b);
    let mut statuses = [sa, sb];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
}

#[tokio::test]
async fn imports_carry_the_switch_notice_until_primaries_are_switched() {
    let f = fixture();
    let t = Some(TOKEN);
    let mut imp = record("imp", "running", 2000);
    imp["type"] = json!("import");
    imp["source_keyspace"] = json!("ext_shop");
    put_record(f.topo.as_ref(), &imp).await;
    let mut done = record("imp_done", "switched_primaries", 1500);
    done["type"] = json!("import");
    put_record(f.topo.as_ref(), &done).await;
    put_record(f.topo.as_ref(), &record("mt", "running", 1000)).await;

    // No live gate known: the notice says "the gate".
    let (s, w) = call(&f.app, Method::GET, "/api/v1/workflows/imp", t, None).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["type"], "import");
    let notice = w["switch_notice"].as_str().expect("switch_notice");
    assert!(notice.contains("(the gate)"), "{notice}");
    assert!(notice.contains("split brain"), "{notice}");

    // With a live gate, its address.
    let gate = keyshift_cluster::model::GateInstance {
        id: "g1".into(),
        addr: "127.0.0.1:15306".into(),
        pid: 1,
        seen_ms: keyshift_cluster::model::now_ms(),
    };
    f.topo
        .put_json(
            &keyshift_cluster::model::keys::gate_instance("g1"),
            &gate,
            Cond::Any,
        )
        .await
        .expect("gate");
    let (_, w) = call(&f.app, Method::GET, "/api/v1/workflows/imp", t, None).await;
    let notice = w["switch_notice"].as_str().expect("switch_notice");
    assert!(notice.contains("127.0.0.1:15306"), "{notice}");
    let (_, w) = call(&f.app, Method::GET, "/api/v1/workflows/imp_done", t, None).await;
    assert!(w.get("switch_notice").is_none(), "{w}");
    let (_, w) = call(&f.app, Method::GET, "/api/v1/workflows/mt", t, None).await;
    assert!(w.get("switch_notice").is_none(), "{w}");

    // The list rows too.
    let (_, page) = call(&f.app, Method::GET, "/api/v1/workflows", t, None).await;
    let rows = page["workflows"].as_array().expect("rows");
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).expect("row").clone();
    assert_eq!(row("imp")["type"], "import");
    assert!(
        row("imp")["switch_notice"]
            .as_str()
            .is_some_and(|n| n.contains("127.0.0.1:15306")),
        "{page}"
    );
    assert!(row("imp_done").get("switch_notice").is_none());
    assert_eq!(row("mt")["type"], "move_tables");
    assert!(row("mt").get("switch_notice").is_none());

    // A switch of the primaries (here a dry run) answers with the notice;
    // a replica switch and other workflows do not.
    let (s, r) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/imp/switch-traffic",
        t,
        Some(json!({ "dry_run": true })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["report"]["dry_run"], true);
    assert!(
        r["notice"]
            .as_str()
            .is_some_and(|n| n.contains("write through the gate (127.0.0.1:15306)")),
        "{r}"
    );
    let (s, r) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/imp/switch-traffic",
        t,
        Some(json!({ "dry_run": true, "replicas_only": true })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r.get("notice").is_none(), "{r}");
    let (s, r) = call(
        &f.app,
        Method::POST,
        "/api/v1/workflows/mt/switch-traffic",
        t,
        Some(json!({ "dry_run": true })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r.get("notice").is_none(), "{r}");
}

#[tokio::test]
async fn import_requests_are_checked_and_never_echo_the_password() {
    let f = fixture();
    let t = Some(TOKEN);
    // Malformed fields: 422 naming each, never quoting the password.
    let (s, b) = call(
        &f.app,
        Method::POST,
        "/api/v1/imports",
        t,
        Some(json!({ "name": "i", "password": 7, "tables": ["a"], "color": 1 })),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    let fields: Vec<&str> = b["error"]["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for want in ["from", "password", "target_keyspace", "color"] {
        assert!(fields.contains(&want), "{want} not named in {b}");
    }

    // A `from` that is no URL: a `request` finding, as validation and as
    // a refused create.
    let bad = json!({
        "name": "imp", "from": "postgres://app:Hunter2Secret@db/shop",
        "target_keyspace": "customer", "all_tables": true
    });
    let mut v = bad.clone();
    v["validate_only"] = json!(true);
    let (s, r) = call(&f.app, Method::POST, "/api/v1/imports", t, Some(v)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ok"], false);
    assert_eq!(r["findings"][0]["check"], "request", "{r}");
    assert_eq!(r["findings"][0]["severity"], "error", "{r}");
    assert!(!r.to_string().contains("Hunter2Secret"), "{r}");
    let (s, b) = call(&f.app, Method::POST, "/api/v1/imports", t, Some(bad)).await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    let findings = b["error"]["details"]["findings"]
        .as_array()
        .expect("findings");
    assert!(findings.iter().any(|f| f["check"] == "request"), "{b}");
    assert!(!b.to_string().contains("Hunter2Secret"), "{b}");

    // A server that is not there: a `connection` finding with its fix;
    // neither the URL's password nor the separate one is answered.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for body in [
        json!({ "name": "imp", "from": format!("mysql://app:Hunter2Secret@127.0.0.1:{port}/shop"),
                "target_keyspace": "customer", "tables": "a, b", "validate_only": true }),
        json!({ "name": "imp", "from": format!("mysql://app@127.0.0.1:{port}/shop"),
                "password": "Hunter2Secret", "target_keyspace": "customer", "tables": ["a"],
                "validate_only": true }),
    ] {
        let (s, r) = call(&f.app, Method::POST, "/api/v1/imports", t, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["ok"], false);
        assert!(
            r["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .any(|f| f["check"] == "connection"
                    && f["fix"].as_str().is_some_and(|x| !x.is_empty())),
            "{r}"
        );
        assert!(!r.to_string().contains("Hunter2Secret"), "{r}");
    }
    // Nothing was created.
    let (_, page) = call(&f.app, Method::GET, "/api/v1/workflows", t, None).await;
    assert_eq!(page["total"], 0, "{page}");
}
