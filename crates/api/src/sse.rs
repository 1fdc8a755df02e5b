//! Live updates: `GET /api/v1/events`, a server-sent event stream fed by a
//! topo watch on `/workflows/` and `/vdiffs/`.
//!
//! The watch is the source (not a hook in the action handlers) so that
//! changes made by the controller, the CLI or another keyshift process reach
//! the browser exactly like the API's own.
//!
//! Events:
//! * `ready` — `{ "revision": N }`, first, once the watch is open: a client
//!   that acts after seeing it cannot miss the resulting change.
//! * `workflow` — the full workflow view (as `GET /workflows/{name}`).
//! * `workflow_deleted` — `{ "name": ... }`.
//! * `vdiff` — `{ "workflow": ..., "vdiff": <record or null> }`.
//! * `resync` — the stream fell too far behind and ends; re-read and
//!   reconnect.
//!
//! Every change event carries `id: <topo revision>`; reconnecting with
//! `Last-Event-ID` resumes after it.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Code};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use keyshift_cluster::model::keys;
use keyshift_topo::{Revision, TopoError, WatchEvent};
use keyshift_workflow::Workflow;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

pub async fn events(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let filter = q.get("workflow").cloned();
    let after: Revision = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
    {
        Some(s) => s.parse().map_err(|_| {
            ApiError::new(
                Code::BadRequest,
                format!("Last-Event-ID {s:?} is not a revision"),
            )
        })?,
        None => app.topo.revision().await?,
    };
    // A client resuming from history the topo no longer keeps starts from
    // now; its `ready` makes it re-read what it shows.
    let (after, workflows) = match app.topo.watch(keys::WORKFLOWS, after).await {
        Err(TopoError::Compacted { .. }) => {
            let now = app.topo.revision().await?;
            (now, app.topo.watch(keys::WORKFLOWS, now).await?)
        }
        r => (after, r?),
    };
    let vdiffs = app.topo.watch(keys::VDIFFS, after).await?;
    let merged: BoxStream<'static, Result<WatchEvent, TopoError>> =
        stream::select(workflows, vdiffs).boxed();

    let ready = Event::default()
        .event("ready")
        .data(json!({ "revision": after }).to_string());
    let topo = app.topo.clone();
    let changes = merged
        .then(move |ev| {
            let topo = topo.clone();
            let filter = filter.clone();
            async move { to_event(topo.as_ref(), ev, filter.as_deref()).await }
        })
        // A `resync` is the last event: stop after it.
        .scan(false, |ended, item| {
            let out = if *ended {
                None
            } else {
                if let Some(Step::End(_)) = &item {
                    *ended = true;
                }
                Some(item)
            };
            futures::future::ready(out)
        })
        .filter_map(|item| {
            futures::future::ready(match item {
                Some(Step::Send(e)) | Some(Step::End(e)) => Some(e),
                None => None,
            })
        });
    let s = stream::once(futures::future::ready(ready))
        .chain(changes)
        .take_until(app.cancel.clone().cancelled_owned())
        .map(Ok::<_, Infallible>);
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

enum Step {
    Send(Event),
    End(Event),
}

async fn to_event(
    topo: &dyn keyshift_topo::Topo,
    ev: Result<WatchEvent, TopoError>,
    filter: Option<&str>,
) -> Option<Step> {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            return Some(Step::End(
                Event::default()
                    .event("resync")
                    .data(json!({ "reason": e.to_string() }).to_string()),
            ));
        }
    };
    let rev = ev.revision();
    let key = ev.key().to_string();
    let (kind, name) = if let Some(n) = key.strip_prefix(keys::WORKFLOWS) {
        ("workflow", n.to_string())
    } else if let Some(n) = key.strip_prefix(keys::VDIFFS) {
        ("vdiff", n.to_string())
    } else {
        return None;
    };
    if filter.is_some_and(|f| f != name) {
        return None;
    }
    let (event, data) = match (kind, ev) {
        ("workflow", WatchEvent::Put(kv)) => match serde_json::from_slice::<Workflow>(&kv.value) {
            Ok(w) => {
                let vdiff = crate::routes::read_vdiff(topo, &name).await.ok().flatten();
                let notice = crate::views::switch_notice(topo, &w).await;
                let view = crate::views::view(w, vdiff, keyshift_workflow::model::now_ms(), notice);
                ("workflow", serde_json::to_string(&view).ok()?)
            }
            Err(e) => {
                tracing::debug!("api: {key} is not a workflow: {e}");
                return None;
            }
        },
        ("workflow", WatchEvent::Delete { .. }) => {
            ("workflow_deleted", json!({ "name": name }).to_string())
        }
        (_, WatchEvent::Put(kv)) => {
            let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
            ("vdiff", json!({ "workflow": name, "vdiff": v }).to_string())
        }
        (_, WatchEvent::Delete { .. }) => (
            "vdiff",
            json!({ "workflow": name, "vdiff": null }).to_string(),
        ),
    };
    Some(Step::Send(
        Event::default().event(event).id(rev.to_string()).data(data),
    ))
}
