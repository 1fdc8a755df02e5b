//! Every `/api/v1` route, in one table ([`ROUTES`]) that both builds the
//! router and describes the operation for the OpenAPI document, so the two
//! cannot drift: a route added here is served and documented at once, and
//! the tests check the document against what the router really answers.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Code};
use crate::views::{self, WorkflowSummary, WorkflowView};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post, put};
use keyshift_cluster::ops;
use keyshift_cluster::status::{KeyspaceStatus, cluster_status};
use keyshift_topo::Topo;
use keyshift_types::TabletAlias;
use keyshift_workflow::import::redact_url;
use keyshift_workflow::model::now_ms;
use keyshift_workflow::{
    CompleteMode, CreateRequest, ImportRequest, OnDdl, Options, State as WfState, Trigger,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// A query parameter, for the document.
pub struct Param {
    pub name: &'static str,
    /// JSON-schema type: `string`, `integer`, `boolean`.
    pub kind: &'static str,
    pub description: &'static str,
}

/// One operation: how it is served and how it is documented.
pub struct Route {
    pub method: &'static str,
    /// Relative to `/api/v1`, in axum's and OpenAPI's `{param}` syntax.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub query: &'static [Param],
    /// Component schema of the JSON body, if it takes one.
    pub body: Option<&'static str>,
    /// Success status and the component schema of its body
    /// (`text/event-stream` for the event stream).
    pub ok: (u16, &'static str),
    /// Error statuses beyond 401, which every route may answer.
    pub errors: &'static [u16],
    pub handler: fn() -> MethodRouter<AppState>,
}

const WORKFLOW_FILTERS: &[Param] = &[
    Param {
        name: "state",
        kind: "string",
        description: "Comma-separated states to keep (pending, copying, running, stopped, error, switched_replicas, switched_primaries, completed, cancelled).",
    },
    Param {
        name: "created_after",
        kind: "integer",
        description: "Keep workflows created at or after this time (Unix milliseconds).",
    },
    Param {
        name: "created_before",
        kind: "integer",
        description: "Keep workflows created before this time (Unix milliseconds).",
    },
    Param {
        name: "limit",
        kind: "integer",
        description: "Page size, 1 to 500 (default 50).",
    },
    Param {
        name: "offset",
        kind: "integer",
        description: "Rows to skip (default 0); use `next_offset` of the previous page.",
    },
];

const DRY_RUN: &[Param] = &[Param {
    name: "dry_run",
    kind: "boolean",
    description: "Validate only; store nothing.",
}];

const EVENT_FILTER: &[Param] = &[Param {
    name: "workflow",
    kind: "string",
    description: "Only events about this workflow.",
}];

macro_rules! action_route {
    ($path:literal, $op:literal, $summary:literal, $body:expr, $handler:expr) => {
        action_route!($path, $op, $summary, $body, "Workflow", $handler)
    };
    ($path:literal, $op:literal, $summary:literal, $body:expr, $ok:literal, $handler:expr) => {
        Route {
            method: "POST",
            path: $path,
            operation_id: $op,
            tag: "workflows",
            summary: $summary,
            query: &[],
            body: $body,
            ok: (200, $ok),
            errors: &[400, 404, 409, 422, 500, 501, 502],
            handler: || post($handler),
        }
    };
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/cluster",
        operation_id: "getCluster",
        tag: "cluster",
        summary: "Every keyspace with its shards and tablets, each tablet probed for health.",
        query: &[],
        body: None,
        ok: (200, "ClusterStatus"),
        errors: &[500],
        handler: || get(get_cluster),
    },
    Route {
        method: "GET",
        path: "/keyspaces",
        operation_id: "listKeyspaces",
        tag: "cluster",
        summary: "Keyspaces and their shards.",
        query: &[],
        body: None,
        ok: (200, "KeyspaceList"),
        errors: &[500],
        handler: || get(list_keyspaces),
    },
    Route {
        method: "GET",
        path: "/keyspaces/{keyspace}",
        operation_id: "getKeyspace",
        tag: "cluster",
        summary: "One keyspace and its shards.",
        query: &[],
        body: None,
        ok: (200, "Keyspace"),
        errors: &[404, 500],
        handler: || get(get_keyspace),
    },
    Route {
        method: "GET",
        path: "/keyspaces/{keyspace}/shards",
        operation_id: "listShards",
        tag: "cluster",
        summary: "A keyspace's shards in key-range order.",
        query: &[],
        body: None,
        ok: (200, "ShardList"),
        errors: &[404, 500],
        handler: || get(list_shards),
    },
    Route {
        method: "GET",
        path: "/keyspaces/{keyspace}/tables",
        operation_id: "listTables",
        tag: "cluster",
        summary: "The tables of a keyspace, read from its first shard's primary (the table picker).",
        query: &[],
        body: None,
        ok: (200, "TableList"),
        errors: &[404, 500, 502],
        handler: || get(list_tables),
    },
    Route {
        method: "GET",
        path: "/keyspaces/{keyspace}/vschema",
        operation_id: "getVSchema",
        tag: "vschema",
        summary: "A keyspace's VSchema.",
        query: &[],
        body: None,
        ok: (200, "VSchema"),
        errors: &[404, 500],
        handler: || get(get_vschema),
    },
    Route {
        method: "PUT",
        path: "/keyspaces/{keyspace}/vschema",
        operation_id: "applyVSchema",
        tag: "vschema",
        summary: "Validates a VSchema against the live schemas and stores it; every fault is reported with its JSON path (422).",
        query: DRY_RUN,
        body: Some("VSchema"),
        ok: (200, "VSchemaApplied"),
        errors: &[400, 404, 422, 500],
        handler: || put(apply_vschema),
    },
    Route {
        method: "GET",
        path: "/tablets",
        operation_id: "listTablets",
        tag: "cluster",
        summary: "Every tablet with its health.",
        query: &[],
        body: None,
        ok: (200, "TabletList"),
        errors: &[500],
        handler: || get(list_tablets),
    },
    Route {
        method: "GET",
        path: "/tablets/{alias}",
        operation_id: "getTablet",
        tag: "cluster",
        summary: "One tablet with its health.",
        query: &[],
        body: None,
        ok: (200, "Tablet"),
        errors: &[400, 404, 500],
        handler: || get(get_tablet),
    },
    Route {
        method: "GET",
        path: "/routing-rules",
        operation_id: "getRoutingRules",
        tag: "vschema",
        summary: "The routing rules the gate obeys.",
        query: &[],
        body: None,
        ok: (200, "RoutingRules"),
        errors: &[500],
        handler: || get(get_routing_rules),
    },
    Route {
        method: "GET",
        path: "/workflows",
        operation_id: "listWorkflows",
        tag: "workflows",
        summary: "Workflows, newest first, filtered by state and creation time, paginated.",
        query: WORKFLOW_FILTERS,
        body: None,
        ok: (200, "WorkflowPage"),
        errors: &[422, 500],
        handler: || get(list_workflows),
    },
    Route {
        method: "POST",
        path: "/workflows",
        operation_id: "createWorkflow",
        tag: "workflows",
        summary: "Validates and creates a MoveTables workflow. With `validate_only` it only runs every pre-check and returns all findings (200).",
        query: &[],
        body: Some("CreateWorkflow"),
        ok: (201, "Workflow"),
        errors: &[400, 409, 422, 500, 502],
        handler: || post(create_workflow),
    },
    Route {
        method: "POST",
        path: "/imports",
        operation_id: "createImport",
        tag: "workflows",
        summary: "Validates and creates an import: a workflow (`type: import`) that brings a database from an external MySQL/MariaDB server into a keyspace. Every problem of the server and the request is a finding with its fix; warnings do not block. With `validate_only` it only checks (200). The password is never logged or answered; its later actions are the workflow routes.",
        query: &[],
        body: Some("CreateImport"),
        ok: (201, "Workflow"),
        errors: &[400, 409, 422, 500, 502],
        handler: || post(create_import),
    },
    Route {
        method: "GET",
        path: "/workflows/{name}",
        operation_id: "getWorkflow",
        tag: "workflows",
        summary: "The whole workflow record, the actions allowed now (and why the others are not), durations and the VDiff report.",
        query: &[],
        body: None,
        ok: (200, "Workflow"),
        errors: &[404, 500],
        handler: || get(get_workflow),
    },
    Route {
        method: "GET",
        path: "/workflows/{name}/lag",
        operation_id: "getWorkflowLag",
        tag: "workflows",
        summary: "Replication lag samples (highest over streams) seen by this API process, oldest first.",
        query: &[],
        body: None,
        ok: (200, "LagSeries"),
        errors: &[404, 500],
        handler: || get(get_lag),
    },
    action_route!(
        "/workflows/{name}/stop",
        "stopWorkflow",
        "Stops the streams; `start` resumes from committed progress.",
        None,
        stop_workflow
    ),
    action_route!(
        "/workflows/{name}/start",
        "startWorkflow",
        "Starts stopped streams from committed progress.",
        None,
        start_workflow
    ),
    action_route!(
        "/workflows/{name}/retry",
        "retryWorkflow",
        "Restarts a workflow in `error` from committed progress.",
        None,
        retry_workflow
    ),
    action_route!(
        "/workflows/{name}/verify-data",
        "verifyData",
        "Starts a VDiff: compares target rows with source rows at one logical point in time. Its report appears in the workflow's `vdiff`.",
        Some("VerifyData"),
        verify_data
    ),
    action_route!(
        "/workflows/{name}/verify-data/stop",
        "stopVerifyData",
        "Stops the workflow's running VDiff; `resume` continues it from the last compared key.",
        None,
        stop_verify_data
    ),
    action_route!(
        "/workflows/{name}/verify-data/resume",
        "resumeVerifyData",
        "Resumes the workflow's stopped or failed VDiff from the last compared key.",
        None,
        resume_verify_data
    ),
    action_route!(
        "/workflows/{name}/switch-traffic",
        "switchTraffic",
        "Switches reads (`replicas_only`) or reads and writes to the target keyspace.",
        Some("SwitchTraffic"),
        "SwitchResult",
        switch_traffic
    ),
    action_route!(
        "/workflows/{name}/reverse-traffic",
        "reverseTraffic",
        "Switches traffic back to the source keyspace over the reverse workflow.",
        Some("SwitchTraffic"),
        "SwitchResult",
        reverse_traffic
    ),
    action_route!(
        "/workflows/{name}/complete",
        "completeWorkflow",
        "Removes the reverse workflow and routing-rule artefacts and finishes the source tables.",
        Some("Complete"),
        complete_workflow
    ),
    action_route!(
        "/workflows/{name}/cancel",
        "cancelWorkflow",
        "Stops the streams and drops the target copies (unless `keep_data`).",
        Some("Cancel"),
        cancel_workflow
    ),
    Route {
        method: "GET",
        path: "/events",
        operation_id: "streamEvents",
        tag: "events",
        summary: "Server-sent events: `ready`, then `workflow`, `workflow_deleted`, `vdiff` and `resync` as the topo changes. `Last-Event-ID` resumes after a revision.",
        query: EVENT_FILTER,
        body: None,
        ok: (200, "text/event-stream"),
        errors: &[400, 500],
        handler: || get(crate::sse::events),
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        operation_id: "getOpenApi",
        tag: "meta",
        summary: "This document.",
        query: &[],
        body: None,
        ok: (200, "OpenApi"),
        errors: &[],
        handler: || get(openapi),
    },
];

/// How long one tablet probe may take for the cluster views: a dead server
/// costs this once (probes run in parallel), not a hung page.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

// ---- cluster ----

async fn get_cluster(State(app): State<AppState>) -> ApiResult<Json<Vec<KeyspaceStatus>>> {
    Ok(Json(
        cluster_status(app.topo.as_ref(), PROBE_TIMEOUT).await?,
    ))
}

#[derive(Serialize)]
struct ShardView {
    name: String,
    key_range: String,
    primary: Option<String>,
}

#[derive(Serialize)]
struct KeyspaceView {
    name: String,
    sharded: bool,
    /// Unix seconds.
    created_at: u64,
    shards: Vec<ShardView>,
}

async fn shard_views(topo: &dyn Topo, ks: &str) -> ApiResult<Vec<ShardView>> {
    Ok(ops::list_shards(topo, ks)
        .await?
        .into_iter()
        .map(|s| ShardView {
            key_range: s.key_range.name(),
            name: s.name,
            primary: s.primary.map(|a| a.to_string()),
        })
        .collect())
}

async fn list_keyspaces(State(app): State<AppState>) -> ApiResult<Json<Vec<KeyspaceView>>> {
    let mut out = Vec::new();
    for ks in ops::list_keyspaces(app.topo.as_ref()).await? {
        out.push(KeyspaceView {
            shards: shard_views(app.topo.as_ref(), &ks.name).await?,
            name: ks.name,
            sharded: ks.sharded,
            created_at: ks.created_at,
        });
    }
    Ok(Json(out))
}

async fn get_keyspace(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<KeyspaceView>> {
    let ks = ops::get_keyspace(app.topo.as_ref(), &name).await?;
    Ok(Json(KeyspaceView {
        shards: shard_views(app.topo.as_ref(), &ks.name).await?,
        name: ks.name,
        sharded: ks.sharded,
        created_at: ks.created_at,
    }))
}

async fn list_shards(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ShardView>>> {
    ops::get_keyspace(app.topo.as_ref(), &name).await?;
    Ok(Json(shard_views(app.topo.as_ref(), &name).await?))
}

async fn list_tables(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<keyshift_vschema::TableSchema>>> {
    ops::get_keyspace(app.topo.as_ref(), &name).await?;
    let primaries = ops::shard_primaries(app.topo.as_ref(), &name).await?;
    let primary = match primaries.into_iter().next() {
        None => {
            return Err(ApiError::new(
                Code::Conflict,
                format!("keyspace `{name}` has no shards"),
            ));
        }
        Some((s, None)) => {
            return Err(ApiError::new(
                Code::Conflict,
                format!("shard {name}/{} has no primary tablet", s.name),
            ));
        }
        Some((_, Some(p))) => p,
    };
    keyshift_cluster::schema::read_tables(&primary)
        .await
        .map(Json)
        .map_err(|e| ApiError::new(Code::Server, e))
}

async fn get_vschema(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<keyshift_vschema::KeyspaceVSchema>> {
    Ok(Json(ops::get_vschema(app.topo.as_ref(), &name).await?))
}

async fn apply_vschema(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let dry_run = bool_param(&q, "dry_run")?.unwrap_or(false);
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(Code::BadRequest, "the body is not UTF-8"))?;
    if let Err(e) = serde_json::from_str::<Value>(text) {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("the body is not JSON: {e}"),
        ));
    }
    let vs = ops::apply_vschema(app.topo.as_ref(), &name, text, dry_run).await?;
    Ok(Json(
        json!({ "keyspace": name, "applied": !dry_run, "vschema": vs }),
    ))
}

#[derive(Serialize)]
struct TabletInfo {
    alias: String,
    keyspace: String,
    shard: String,
    role: keyshift_cluster::TabletRole,
    managed: bool,
    address: String,
    database: String,
    health: keyshift_tablet::TabletStatus,
}

async fn tablet_infos(topo: &dyn Topo) -> ApiResult<Vec<TabletInfo>> {
    let mut out = Vec::new();
    for ks in cluster_status(topo, PROBE_TIMEOUT).await? {
        for shard in ks.shards {
            for t in shard.tablets {
                out.push(TabletInfo {
                    alias: t.alias,
                    keyspace: ks.name.clone(),
                    shard: shard.name.clone(),
                    role: t.role,
                    managed: t.managed,
                    address: t.address,
                    database: t.database,
                    health: t.status,
                });
            }
        }
    }
    Ok(out)
}

async fn list_tablets(State(app): State<AppState>) -> ApiResult<Json<Vec<TabletInfo>>> {
    Ok(Json(tablet_infos(app.topo.as_ref()).await?))
}

async fn get_tablet(
    State(app): State<AppState>,
    Path(alias): Path<String>,
) -> ApiResult<Json<TabletInfo>> {
    let parsed: TabletAlias = alias.parse().map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("`{alias}` is not a tablet alias like local-0000000100: {e}"),
        )
    })?;
    let want = parsed.to_string();
    tablet_infos(app.topo.as_ref())
        .await?
        .into_iter()
        .find(|t| t.alias == want)
        .map(Json)
        .ok_or_else(|| keyshift_cluster::ClusterError::NoSuchTablet(want).into())
}

async fn get_routing_rules(
    State(app): State<AppState>,
) -> ApiResult<Json<keyshift_vschema::RoutingRules>> {
    Ok(Json(ops::get_routing_rules(app.topo.as_ref()).await?))
}

// ---- workflows ----

/// The VDiff record of a workflow (with `stale` computed), if one exists.
/// A record this build cannot decode (written by a newer keyshift) is
/// shown as stored rather than failing the whole workflow page.
pub async fn read_vdiff(topo: &dyn Topo, workflow: &str) -> ApiResult<Option<Value>> {
    match keyshift_vdiff::show(topo, workflow).await {
        Ok(None) => Ok(None),
        Ok(Some(rec)) => serde_json::to_value(rec)
            .map(Some)
            .map_err(|e| ApiError::new(Code::Internal, format!("encoding the VDiff: {e}"))),
        Err(keyshift_vdiff::VdiffError::Topo(keyshift_topo::TopoError::Json { .. })) => {
            match topo
                .get(&keyshift_cluster::model::keys::vdiff(workflow))
                .await?
            {
                Some(kv) => Ok(serde_json::from_slice(&kv.value).ok()),
                None => Ok(None),
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn workflow_view(topo: &dyn Topo, name: &str) -> ApiResult<WorkflowView> {
    let w = keyshift_workflow::show(topo, name).await?;
    let vdiff = read_vdiff(topo, name).await?;
    let notice = views::switch_notice(topo, &w).await;
    Ok(views::view(w, vdiff, now_ms(), notice))
}

#[derive(Serialize)]
struct WorkflowPage {
    workflows: Vec<WorkflowSummary>,
    /// Matching workflows over all pages.
    total: usize,
    offset: usize,
    limit: usize,
    /// The `offset` of the next page; absent on the last page.
    next_offset: Option<usize>,
}

fn int_param(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<u64>> {
    q.get(name)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                ApiError::fields(vec![(
                    name.to_string(),
                    format!("`{s}` is not a non-negative integer"),
                )])
            })
        })
        .transpose()
}

fn bool_param(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<bool>> {
    q.get(name)
        .map(|s| match s.as_str() {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::fields(vec![(
                name.to_string(),
                format!("`{s}` is not true or false"),
            )])),
        })
        .transpose()
}

async fn list_workflows(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<WorkflowPage>> {
    let mut problems = Vec::new();
    let mut states: Vec<WfState> = Vec::new();
    if let Some(s) = q.get("state").filter(|s| !s.is_empty()) {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<WfState>() {
                Ok(st) => states.push(st),
                Err(e) => problems.push(("state".to_string(), e)),
            }
        }
    }
    let mut num = |name: &str| match int_param(&q, name) {
        Ok(v) => v,
        Err(_) => {
            problems.push((
                name.to_string(),
                "must be a non-negative integer".to_string(),
            ));
            None
        }
    };
    let after = num("created_after");
    let before = num("created_before");
    let limit = num("limit").unwrap_or(50);
    let offset = num("offset").unwrap_or(0) as usize;
    if !(1..=500).contains(&limit) {
        problems.push(("limit".to_string(), "must be between 1 and 500".to_string()));
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    let limit = limit as usize;
    let mut all = keyshift_workflow::list(app.topo.as_ref()).await?;
    all.retain(|w| {
        (states.is_empty() || states.contains(&w.state))
            && after.is_none_or(|a| w.created_ms >= a)
            && before.is_none_or(|b| w.created_ms < b)
    });
    all.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| a.name.cmp(&b.name))
    });
    let total = all.len();
    let now = now_ms();
    let page: Vec<&keyshift_workflow::Workflow> = all.iter().skip(offset).take(limit).collect();
    // One look at the gates for the whole page, and only if a row needs it.
    let notice = if page.iter().any(|w| views::needs_switch_notice(w)) {
        Some(views::notice_text(app.topo.as_ref()).await)
    } else {
        None
    };
    let workflows: Vec<WorkflowSummary> = page
        .into_iter()
        .map(|w| {
            let n = notice.clone().filter(|_| views::needs_switch_notice(w));
            views::summary(w, now, n)
        })
        .collect();
    let next_offset = (offset + limit < total).then_some(offset + limit);
    Ok(Json(WorkflowPage {
        workflows,
        total,
        offset,
        limit,
        next_offset,
    }))
}

/// Parses a JSON object body (an empty body is `{}`), telling a syntax
/// error (400) from a document of the wrong shape (handled by callers).
fn object_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(
            Code::BadRequest,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            Code::BadRequest,
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// Field-by-field reading of a JSON object that collects every problem, so
/// a 422 names each bad field at once.
struct Fields {
    map: Map<String, Value>,
    prefix: &'static str,
    problems: Vec<(String, String)>,
}

impl Fields {
    fn new(map: Map<String, Value>, prefix: &'static str) -> Fields {
        Fields {
            map,
            prefix,
            problems: Vec::new(),
        }
    }

    fn bad(&mut self, field: &str, problem: impl Into<String>) {
        self.problems
            .push((format!("{}{field}", self.prefix), problem.into()));
    }

    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.map.remove(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::String(_)) if required => {
                self.bad(field, "must not be empty");
                None
            }
            None | Some(Value::Null) if required => {
                self.bad(field, "is required");
                None
            }
            None | Some(Value::Null) | Some(Value::String(_)) => None,
            Some(_) => {
                self.bad(field, "must be a string");
                None
            }
        }
    }

    fn bool(&mut self, field: &str) -> Option<bool> {
        match self.map.remove(field) {
            Some(Value::Bool(b)) => Some(b),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.bad(field, "must be true or false");
                None
            }
        }
    }

    fn uint(&mut self, field: &str, min: u64) -> Option<u64> {
        match self.map.remove(field) {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= min => Some(v),
                _ => {
                    self.bad(field, format!("must be an integer of at least {min}"));
                    None
                }
            },
            None | Some(Value::Null) => None,
            Some(_) => {
                self.bad(field, "must be an integer");
                None
            }
        }
    }

    fn strings(&mut self, field: &str) -> Option<Vec<String>> {
        match self.map.remove(field) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, v) in items.into_iter().enumerate() {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => self.bad(&format!("{field}[{i}]"), "must be a non-empty string"),
                    }
                }
                Some(out)
            }
            // "a,b" is accepted too: what people type into a form or curl.
            Some(Value::String(s)) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.bad(field, "must be an array of table names");
                None
            }
        }
    }

    fn object(&mut self, field: &str) -> Option<Map<String, Value>> {
        match self.map.remove(field) {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.bad(field, "must be an object");
                None
            }
        }
    }

    /// Fields nobody read: typos must not be silently ignored.
    fn finish(mut self) -> Vec<(String, String)> {
        let rest: Vec<String> = self.map.keys().cloned().collect();
        for k in rest {
            self.bad(&k, "unknown field");
        }
        self.problems
    }
}

/// `tables` / `all_tables` of a create or import body: one of them.
fn check_tables(f: &mut Fields, tables: &[String], all_tables: bool) {
    if !all_tables && tables.is_empty() && !f.problems.iter().any(|(k, _)| k.starts_with("tables"))
    {
        f.bad("tables", "name at least one table, or set all_tables");
    }
    if all_tables && !tables.is_empty() {
        f.bad("tables", "give tables or all_tables, not both");
    }
}

/// The `options` object of a create or import body, and its problems.
fn parse_options(f: &mut Fields) -> (Options, Vec<(String, String)>) {
    let mut options = Options::default();
    let Some(o) = f.object("options") else {
        return (options, Vec::new());
    };
    let mut of = Fields::new(o, "options.");
    if let Some(v) = of.bool("defer_secondary_keys") {
        options.defer_secondary_keys = v;
    }
    if let Some(v) = of.string("on_ddl", false) {
        match v.parse::<OnDdl>() {
            Ok(d) => options.on_ddl = d,
            Err(e) => of.bad("on_ddl", e),
        }
    }
    if let Some(v) = of.bool("stop_after_copy") {
        options.stop_after_copy = v;
    }
    if let Some(v) = of.uint("copy_batch_rows", 1) {
        options.copy_batch_rows = v as usize;
    }
    if let Some(v) = of.uint("copy_cycle_ms", 100) {
        options.copy_cycle_ms = v;
    }
    if let Some(v) = of.uint("max_transient_retries", 0) {
        options.max_transient_retries = v as u32;
    }
    if let Some(v) = of.uint("copy_parallel_tables", 0) {
        options.copy_parallel_tables = v as usize;
    }
    (options, of.finish())
}

/// The create body, checked field by field (422 naming each bad one), as a
/// library request made by the API.
pub fn parse_create(body: Map<String, Value>) -> ApiResult<(CreateRequest, bool)> {
    let mut f = Fields::new(body, "");
    let name = f.string("name", true);
    let source = f.string("source_keyspace", true);
    let target = f.string("target_keyspace", true);
    let tables = f.strings("tables").unwrap_or_default();
    let all_tables = f.bool("all_tables").unwrap_or(false);
    let exclude = f.strings("exclude_tables").unwrap_or_default();
    let validate_only = f.bool("validate_only").unwrap_or(false);
    check_tables(&mut f, &tables, all_tables);
    let (options, problems) = parse_options(&mut f);
    let mut all = f.finish();
    all.extend(problems);
    if !all.is_empty() {
        return Err(ApiError::fields(all));
    }
    let (Some(name), Some(source_keyspace), Some(target_keyspace)) = (name, source, target) else {
        return Err(ApiError::new(
            Code::Internal,
            "a required field went missing",
        ));
    };
    Ok((
        CreateRequest {
            name,
            source_keyspace,
            target_keyspace,
            tables,
            all_tables,
            exclude_tables: exclude,
            options,
            by: Trigger::Api,
        },
        validate_only,
    ))
}

async fn create_workflow(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (req, in_body) = parse_create(object_body(&body)?)?;
    let validate_only = in_body || bool_param(&q, "validate_only")?.unwrap_or(false);
    if validate_only {
        let report = keyshift_workflow::validate_only(app.topo.as_ref(), &req).await?;
        return Ok((StatusCode::OK, Json(report_json(&report))));
    }
    let w = keyshift_workflow::create(app.topo.as_ref(), &req).await?;
    created(app.topo.as_ref(), w).await
}

/// A validation report as the API answers it: `ok`, `tables`, and every
/// finding with its `severity` spelt out (`error` or `warning`).
pub fn report_json(report: &keyshift_workflow::ValidationReport) -> Value {
    json!({
        "ok": report.ok(),
        "tables": report.tables,
        "findings": crate::error::findings_json(&report.findings),
    })
}

/// 201 with the view of a workflow just created.
async fn created(
    topo: &dyn Topo,
    w: keyshift_workflow::Workflow,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let notice = views::switch_notice(topo, &w).await;
    let view = views::view(w, None, now_ms(), notice);
    let body = serde_json::to_value(view)
        .map_err(|e| ApiError::new(Code::Internal, format!("encoding the workflow: {e}")))?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// The import body, checked field by field like the create body. The
/// password is taken as given (not trimmed) and never appears in a
/// problem.
pub fn parse_import(body: Map<String, Value>) -> ApiResult<(ImportRequest, bool)> {
    let mut f = Fields::new(body, "");
    let name = f.string("name", true);
    let from = f.string("from", true);
    let password = match f.map.remove("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.is_empty() => None,
        Some(Value::String(p)) => Some(p),
        Some(_) => {
            f.bad("password", "must be a string");
            None
        }
    };
    let source_keyspace = f.string("source_keyspace", false);
    let ssl_mode = f.string("ssl_mode", false);
    let ssl_ca = f.string("ssl_ca", false);
    let target = f.string("target_keyspace", true);
    // The target keyspace's VSchema document, checked by the import itself
    // (faults come back as findings with their path).
    let target_vschema = match f.map.remove("target_vschema") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => {
            f.bad("target_vschema", "must be a VSchema object");
            None
        }
    };
    let tables = f.strings("tables").unwrap_or_default();
    let all_tables = f.bool("all_tables").unwrap_or(false);
    let exclude = f.strings("exclude_tables").unwrap_or_default();
    let validate_only = f.bool("validate_only").unwrap_or(false);
    check_tables(&mut f, &tables, all_tables);
    let (options, problems) = parse_options(&mut f);
    let mut all = f.finish();
    all.extend(problems);
    if !all.is_empty() {
        return Err(ApiError::fields(all));
    }
    let (Some(name), Some(from), Some(target_keyspace)) = (name, from, target) else {
        return Err(ApiError::new(
            Code::Internal,
            "a required field went missing",
        ));
    };
    Ok((
        ImportRequest {
            name,
            from,
            password,
            ssl_mode,
            ssl_ca,
            source_keyspace,
            target_keyspace,
            target_vschema,
            tables,
            all_tables,
            exclude_tables: exclude,
            options,
            by: Trigger::Api,
        },
        validate_only,
    ))
}

/// What must never leave the API in an answer or a log line: the password
/// as given and as the URL carries it (encoded and decoded), and the URL
/// itself (replaced by its redacted form).
fn secrets_of(req: &ImportRequest) -> Vec<(String, String)> {
    let mut out = vec![(req.from.clone(), redact_url(&req.from))];
    let mut pw: Vec<String> = req.password.iter().cloned().collect();
    if let Some((_, rest)) = req.from.split_once("://")
        && let Some((auth, _)) = rest.rsplit_once('@')
        && let Some((_, p)) = auth.split_once(':')
    {
        pw.push(p.to_string());
    }
    if let Ok(src) = keyshift_workflow::import::parse_source_url(&req.from, req.password.as_deref())
    {
        pw.push(src.password);
    }
    // A very short password would garble every message it occurs in by
    // chance; it is also no secret worth the name.
    pw.retain(|p| p.chars().count() >= 4);
    pw.sort();
    pw.dedup();
    // Longest first: a password that contains another is replaced whole.
    pw.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.extend(pw.into_iter().map(|p| (p, "***".to_string())));
    out
}

fn scrub_str(s: &str, secrets: &[(String, String)]) -> String {
    let mut s = s.to_string();
    for (secret, with) in secrets {
        if !secret.is_empty() && s.contains(secret.as_str()) {
            s = s.replace(secret.as_str(), with);
        }
    }
    s
}

fn scrub_value(v: &mut Value, secrets: &[(String, String)]) {
    match v {
        Value::String(s) => *s = scrub_str(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_value(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| scrub_value(x, secrets)),
        _ => {}
    }
}

/// An import's error with every secret taken out, before it is answered
/// (and, for 5xx, logged).
fn scrub_error(mut e: ApiError, secrets: &[(String, String)]) -> ApiError {
    e.message = scrub_str(&e.message, secrets);
    if let Some(d) = &mut e.details {
        scrub_value(d, secrets);
    }
    e
}

/// An import's error as the API answers it, secrets removed.
fn import_error(e: keyshift_workflow::WorkflowError, secrets: &[(String, String)]) -> ApiError {
    scrub_error(ApiError::from(e), secrets)
}

async fn create_import(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (req, in_body) = parse_import(object_body(&body)?)?;
    let validate_only = in_body || bool_param(&q, "validate_only")?.unwrap_or(false);
    let secrets = secrets_of(&req);
    if validate_only {
        let report = keyshift_workflow::validate_import(app.topo.as_ref(), &req)
            .await
            .map_err(|e| import_error(e, &secrets))?;
        let mut v = report_json(&report);
        scrub_value(&mut v, &secrets);
        return Ok((StatusCode::OK, Json(v)));
    }
    let w = keyshift_workflow::create_import(app.topo.as_ref(), &req)
        .await
        .map_err(|e| import_error(e, &secrets))?;
    let (status, Json(mut v)) = created(app.topo.as_ref(), w).await?;
    scrub_value(&mut v, &secrets);
    Ok((status, Json(v)))
}

async fn get_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkflowView>> {
    Ok(Json(workflow_view(app.topo.as_ref(), &name).await?))
}

async fn get_lag(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    // 404 for unknown workflows, like every other workflow route.
    keyshift_workflow::show(app.topo.as_ref(), &name).await?;
    Ok(Json(
        json!({ "workflow": name, "samples": app.lag.get(&name) }),
    ))
}

/// Answers an action with the workflow as it is after the action.
async fn after_action(app: &AppState, name: &str) -> ApiResult<Json<WorkflowView>> {
    Ok(Json(workflow_view(app.topo.as_ref(), name).await?))
}

async fn stop_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    no_fields(&body)?;
    keyshift_workflow::stop(app.topo.as_ref(), &name, Trigger::Api).await?;
    after_action(&app, &name).await
}

async fn start_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    no_fields(&body)?;
    keyshift_workflow::start(app.topo.as_ref(), &name, Trigger::Api).await?;
    after_action(&app, &name).await
}

async fn stop_verify_data(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    no_fields(&body)?;
    keyshift_vdiff::stop(app.topo.as_ref(), &name, Trigger::Api).await?;
    after_action(&app, &name).await
}

async fn resume_verify_data(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    no_fields(&body)?;
    keyshift_vdiff::resume(app.topo.as_ref(), &name, Trigger::Api).await?;
    after_action(&app, &name).await
}

async fn retry_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    no_fields(&body)?;
    keyshift_workflow::retry(app.topo.as_ref(), &name, Trigger::Api).await?;
    after_action(&app, &name).await
}

/// Actions that take no parameters still refuse unknown ones.
fn no_fields(body: &Bytes) -> ApiResult<()> {
    let problems = Fields::new(object_body(body)?, "").finish();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields(problems))
    }
}

/// Parameters of switch-traffic and reverse-traffic.
#[derive(Debug, Default, PartialEq)]
pub struct SwitchParams {
    pub replicas_only: bool,
    pub max_lag_seconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub hold_window_ms: Option<u64>,
    pub max_held_queries: Option<u64>,
    pub dry_run: bool,
}

pub fn parse_switch(body: Map<String, Value>) -> ApiResult<SwitchParams> {
    let mut f = Fields::new(body, "");
    let mut p = SwitchParams {
        replicas_only: f.bool("replicas_only").unwrap_or(false),
        max_lag_seconds: f.uint("max_lag_seconds", 0),
        timeout_seconds: f.uint("timeout_seconds", 1),
        hold_window_ms: f.uint("hold_window_ms", 1),
        max_held_queries: f.uint("max_held_queries", 1),
        dry_run: f.bool("dry_run").unwrap_or(false),
    };
    // Vitess spells the choice as tablet types; accept that too.
    if let Some(t) = f.string("tablet_types", false) {
        match t.as_str() {
            "replica" | "replicas" | "replica,rdonly" | "rdonly,replica" => p.replicas_only = true,
            "primary" | "primaries" | "all" => p.replicas_only = false,
            _ => f.bad("tablet_types", "use replicas or primaries"),
        }
    }
    let problems = f.finish();
    if problems.is_empty() {
        Ok(p)
    } else {
        Err(ApiError::fields(problems))
    }
}

async fn verify_data(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    let mut f = Fields::new(object_body(&body)?, "");
    let mut options = keyshift_vdiff::VdiffOptions::default();
    if let Some(t) = f.strings("tables") {
        options.tables = (!t.is_empty()).then_some(t);
    }
    if let Some(v) = f.uint("max_rows_per_second", 1) {
        options.max_rows_per_second = Some(v);
    }
    if let Some(v) = f.uint("batch_rows", 1) {
        options.batch_rows = v as usize;
    }
    if let Some(v) = f.uint("max_samples", 0) {
        options.max_samples = v as usize;
    }
    if let Some(v) = f.bool("row_level") {
        options.checksum = !v;
    }
    if let Some(v) = f.uint("chunk_rows", 1) {
        options.chunk_rows = v as usize;
    }
    let problems = f.finish();
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    keyshift_vdiff::start(app.topo.as_ref(), &name, options, Trigger::Api).await?;
    after_action(&app, &name).await
}

fn switch_options(p: &SwitchParams) -> keyshift_workflow::SwitchOptions {
    let mut o = keyshift_workflow::SwitchOptions {
        replicas_only: p.replicas_only,
        dry_run: p.dry_run,
        ..Default::default()
    };
    if let Some(s) = p.max_lag_seconds {
        o.max_lag = Duration::from_secs(s);
    }
    if let Some(s) = p.timeout_seconds {
        o.timeout = Duration::from_secs(s);
    }
    if let Some(ms) = p.hold_window_ms {
        o.hold_window = Duration::from_millis(ms);
    }
    if let Some(n) = p.max_held_queries {
        o.max_queued = n as usize;
    }
    o
}

/// A switch's answer: the workflow after it, plus what the switch did
/// (`report.steps`, which is all a dry run does).
///
/// A switch of an import's primaries (dry run included) also carries
/// `notice`: applications must write through the gate from then on.
async fn after_switch(
    app: &AppState,
    name: &str,
    report: keyshift_workflow::SwitchReport,
    primaries: bool,
) -> ApiResult<Json<Value>> {
    let view = workflow_view(app.topo.as_ref(), name).await?;
    let import = view.workflow.kind == keyshift_workflow::WorkflowType::Import;
    let mut v = serde_json::to_value(view)
        .map_err(|e| ApiError::new(Code::Internal, format!("encoding the workflow: {e}")))?;
    v["report"] = serde_json::to_value(report)
        .map_err(|e| ApiError::new(Code::Internal, format!("encoding the report: {e}")))?;
    if import && primaries {
        v["notice"] = json!(views::notice_text(app.topo.as_ref()).await);
    }
    Ok(Json(v))
}

async fn switch_traffic(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let params = parse_switch(object_body(&body)?)?;
    let report = keyshift_workflow::switch_traffic(
        app.topo.as_ref(),
        &name,
        &switch_options(&params),
        Trigger::Api,
    )
    .await?;
    after_switch(&app, &name, report, !params.replicas_only).await
}

async fn reverse_traffic(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let params = parse_switch(object_body(&body)?)?;
    let report = keyshift_workflow::reverse_traffic(
        app.topo.as_ref(),
        &name,
        &switch_options(&params),
        Trigger::Api,
    )
    .await?;
    after_switch(&app, &name, report, false).await
}

pub fn parse_complete(body: Map<String, Value>) -> ApiResult<CompleteMode> {
    let mut f = Fields::new(body, "");
    let mode = match f.string("mode", false).as_deref() {
        None | Some("drop") => CompleteMode::Drop,
        Some("keep_data") | Some("keep") => CompleteMode::KeepData,
        Some("rename_tables") | Some("rename") => CompleteMode::RenameTables,
        Some(other) => {
            f.bad(
                "mode",
                format!("`{other}` is not one of drop, keep_data, rename_tables"),
            );
            CompleteMode::Drop
        }
    };
    let problems = f.finish();
    if problems.is_empty() {
        Ok(mode)
    } else {
        Err(ApiError::fields(problems))
    }
}

async fn complete_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    let mode = parse_complete(object_body(&body)?)?;
    keyshift_workflow::complete(app.topo.as_ref(), &name, mode, Trigger::Api).await?;
    after_action(&app, &name).await
}

async fn cancel_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WorkflowView>> {
    let mut f = Fields::new(object_body(&body)?, "");
    let keep_data = f.bool("keep_data").unwrap_or(false);
    let problems = f.finish();
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    keyshift_workflow::cancel(app.topo.as_ref(), &name, keep_data, Trigger::Api).await?;
    after_action(&app, &name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn create_names_every_bad_field() {
        let err = parse_create(obj(json!({
            "source_keyspace": 3,
            "target_keyspace": "",
            "tables": ["a", 7],
            "options": { "on_ddl": "sometimes", "copy_batch_rows": 0, "colour": "red" },
            "nonsense": true
        })))
        .expect_err("invalid");
        assert_eq!(err.code, Code::Invalid);
        let details = err.details.expect("details");
        let fields: Vec<&str> = details["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["field"].as_str().expect("field"))
            .collect();
        for want in [
            "name",
            "source_keyspace",
            "target_keyspace",
            "tables[1]",
            "nonsense",
            "options.on_ddl",
            "options.copy_batch_rows",
            "options.colour",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn create_reads_a_good_request_as_the_api() {
        let message = parse_create(obj(json!({
            "name": "m", "source_keyspace": "a", "target_keyspace": "b",
            "tables": "x, y", "by": "cli"
        })))
        .map(|_| ())
        .expect_err("`by` is not a field of the API")
        .message;
        assert!(message.contains("by: unknown field"), "{message}");
        let (req, validate_only) = parse_create(obj(json!({
            "name": "m", "source_keyspace": "a", "target_keyspace": "b",
            "tables": "x, y", "validate_only": true,
            "options": { "on_ddl": "exec", "copy_cycle_ms": 500 }
        })))
        .expect("valid");
        assert!(validate_only);
        assert_eq!(req.tables, vec!["x", "y"]);
        assert_eq!(req.by, Trigger::Api);
        assert_eq!(req.options.on_ddl, OnDdl::Exec);
        assert_eq!(req.options.copy_cycle_ms, 500);
    }

    #[test]
    fn import_reads_every_field_and_names_every_bad_one() {
        let err = parse_import(obj(json!({
            "from": 5, "password": ["x"], "tables": [], "all_tables": "yes",
            "options": { "on_ddl": "never" }, "by": "cli"
        })))
        .map(|_| ())
        .expect_err("invalid");
        let details = err.details.expect("details");
        let fields: Vec<&str> = details["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["field"].as_str().expect("field"))
            .collect();
        for want in [
            "name",
            "from",
            "password",
            "target_keyspace",
            "all_tables",
            "by",
            "options.on_ddl",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        let (req, validate_only) = parse_import(obj(json!({
            "name": "imp", "from": " mysql://app@db:3306/shop ", "password": " p w ",
            "source_keyspace": "legacy", "target_keyspace": "main",
            "all_tables": true, "exclude_tables": "audit, tmp", "validate_only": true,
            "options": { "copy_batch_rows": 500 }
        })))
        .expect("valid");
        assert!(validate_only);
        assert_eq!(req.from, "mysql://app@db:3306/shop");
        assert_eq!(
            req.password.as_deref(),
            Some(" p w "),
            "passwords are not trimmed"
        );
        assert_eq!(req.source_keyspace.as_deref(), Some("legacy"));
        assert_eq!(req.exclude_tables, vec!["audit", "tmp"]);
        assert_eq!(req.options.copy_batch_rows, 500);
        assert_eq!(req.by, Trigger::Api);
        let (req, _) = parse_import(obj(json!({
            "name": "imp", "from": "mysql://app@db/shop", "password": "",
            "target_keyspace": "main", "tables": ["a"]
        })))
        .expect("valid");
        assert_eq!(req.password, None);
    }

    #[test]
    fn secrets_are_scrubbed_from_import_errors() {
        let (req, _) = parse_import(obj(json!({
            "name": "imp", "from": "mysql://app:p%40ssw0rd@db/shop", "password": "other-secret",
            "target_keyspace": "main", "all_tables": true
        })))
        .expect("valid");
        let secrets = secrets_of(&req);
        let e = ApiError::new(
            Code::Server,
            "cannot reach mysql://app:p%40ssw0rd@db/shop with p@ssw0rd or other-secret",
        )
        .with_details(json!({ "findings": [{ "problem": "p@ssw0rd!" }] }));
        let e = scrub_error(e, &secrets);
        assert_eq!(
            e.message,
            "cannot reach mysql://app:***@db/shop with *** or ***"
        );
        assert_eq!(
            e.details.expect("details")["findings"][0]["problem"],
            "***!"
        );
    }

    #[test]
    fn switch_accepts_vitess_tablet_types() {
        let p = parse_switch(obj(
            json!({ "tablet_types": "replica", "max_lag_seconds": 5 }),
        ))
        .expect("valid");
        assert!(p.replicas_only);
        assert_eq!(p.max_lag_seconds, Some(5));
        let p = parse_switch(obj(
            json!({ "hold_window_ms": 2500, "max_held_queries": 7 }),
        ))
        .expect("hold options");
        let o = switch_options(&p);
        assert_eq!(o.hold_window, Duration::from_millis(2500));
        assert_eq!(o.max_queued, 7);
        assert!(parse_switch(obj(json!({ "hold_window_ms": 0 }))).is_err());
        assert!(parse_switch(obj(json!({ "tablet_types": "rdonly-ish" }))).is_err());
    }
}
