//! The one error shape every API route answers with:
//!
//! ```json
//! { "error": { "code": "not_allowed", "message": "...", "details": { ... } } }
//! ```
//!
//! `code` is stable (scripts and the dashboard branch on it); `message` is
//! for people; `details` carries what a caller needs to act (the allowed
//! actions, every validation finding, the JSON paths of VSchema faults).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyshift_cluster::ClusterError;
use keyshift_workflow::WorkflowError;
use serde_json::{Value, json};

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 400: the body is not JSON, or a parameter has the wrong syntax.
    BadRequest,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: the named keyspace, tablet or workflow does not exist.
    NotFound,
    /// 404: no API route has this path.
    NoRoute,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: the thing to create exists already.
    Exists,
    /// 409: the action is not allowed in the workflow's current state.
    NotAllowed,
    /// 409: the cluster's state forbids the change (routing rules point at it...).
    Conflict,
    /// 422: the request is well-formed but invalid (fields, findings, faults).
    Invalid,
    /// 500: the topo failed.
    Topo,
    /// 500: anything else on our side.
    Internal,
    /// 501: this build does not implement the operation yet.
    NotImplemented,
    /// 502: a tablet (MySQL/MariaDB server) refused or failed.
    Server,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::Unauthorized => "unauthorized",
            Code::NotFound => "not_found",
            Code::NoRoute => "no_route",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Exists => "exists",
            Code::NotAllowed => "not_allowed",
            Code::Conflict => "conflict",
            Code::Invalid => "invalid",
            Code::Topo => "topo",
            Code::Internal => "internal",
            Code::NotImplemented => "not_implemented",
            Code::Server => "server",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::NotFound | Code::NoRoute => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Exists | Code::NotAllowed | Code::Conflict => StatusCode::CONFLICT,
            Code::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Code::Topo | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Server => StatusCode::BAD_GATEWAY,
        }
    }

    /// Every code, for the OpenAPI document's enum and its test.
    pub const ALL: &'static [Code] = &[
        Code::BadRequest,
        Code::Unauthorized,
        Code::NotFound,
        Code::NoRoute,
        Code::MethodNotAllowed,
        Code::Exists,
        Code::NotAllowed,
        Code::Conflict,
        Code::Invalid,
        Code::Topo,
        Code::Internal,
        Code::NotImplemented,
        Code::Server,
    ];
}

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// 422 naming each bad field: `details.fields = [{field, problem}]`.
    pub fn fields(problems: Vec<(String, String)>) -> ApiError {
        let message = problems
            .iter()
            .map(|(f, p)| format!("{f}: {p}"))
            .collect::<Vec<_>>()
            .join("; ");
        let fields: Vec<Value> = problems
            .into_iter()
            .map(|(field, problem)| json!({ "field": field, "problem": problem }))
            .collect();
        ApiError::new(Code::Invalid, format!("invalid request: {message}"))
            .with_details(json!({ "fields": fields }))
    }

    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(
            Code::NotImplemented,
            format!("{what} is not available in this build of keyshift yet"),
        )
    }

    pub fn body(&self) -> Value {
        let mut e = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        json!({ "error": e })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code.status().is_server_error() {
            tracing::warn!(code = self.code.as_str(), "api: {}", self.message);
        }
        let mut resp = (self.code.status(), axum::Json(self.body())).into_response();
        if self.code == Code::Unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyshift\""),
            );
        }
        resp
    }
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> ApiError {
        let message = e.to_string();
        match e {
            WorkflowError::NotFound(name) => ApiError::new(Code::NotFound, message)
                .with_details(json!({ "kind": "workflow", "name": name })),
            WorkflowError::Exists(name) => ApiError::new(Code::Exists, message)
                .with_details(json!({ "kind": "workflow", "name": name })),
            WorkflowError::Invalid(report) => ApiError::new(Code::Invalid, message).with_details(
                json!({ "tables": report.tables, "findings": findings_json(&report.findings) }),
            ),
            WorkflowError::NotAllowed {
                name,
                action,
                state,
                allowed,
            } => ApiError::new(Code::NotAllowed, message).with_details(json!({
                "workflow": name,
                "action": action,
                "state": state,
                "allowed_actions": allowed,
            })),
            WorkflowError::IsReverse { name, of, action } => {
                ApiError::new(Code::NotAllowed, message).with_details(json!({
                    "workflow": name,
                    "action": action,
                    "reverse_of": of,
                    "allowed_actions": [],
                }))
            }
            WorkflowError::SwitchFailed(_) => ApiError::new(Code::Conflict, message)
                .with_details(json!({ "nothing_changed": true })),
            WorkflowError::Server(_) => ApiError::new(Code::Server, message),
            WorkflowError::Topo(_) => ApiError::new(Code::Topo, message),
            WorkflowError::Cluster(c) => c.into(),
        }
    }
}

/// Findings as the API answers them: `severity` always present (`error`
/// or `warning`; the stored form omits the default `error`).
pub fn findings_json(findings: &[keyshift_workflow::Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.entry("severity").or_insert_with(|| json!("error"));
                }
                v
            })
            .collect(),
    )
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        let message = e.to_string();
        match e {
            ClusterError::NoSuchKeyspace(name) => ApiError::new(Code::NotFound, message)
                .with_details(json!({ "kind": "keyspace", "name": name })),
            ClusterError::NoSuchShard {
                keyspace, shard, ..
            } => ApiError::new(Code::NotFound, message)
                .with_details(json!({ "kind": "shard", "keyspace": keyspace, "name": shard })),
            ClusterError::NoSuchTablet(name) => ApiError::new(Code::NotFound, message)
                .with_details(json!({ "kind": "tablet", "name": name })),
            ClusterError::KeyspaceExists(name) => ApiError::new(Code::Exists, message)
                .with_details(json!({ "kind": "keyspace", "name": name })),
            ClusterError::Invalid(_) => ApiError::new(Code::Invalid, message),
            ClusterError::Faults { what, faults } => ApiError::new(
                Code::Invalid,
                format!("{what} is not valid: {} problem(s)", faults.0.len()),
            )
            .with_details(json!({ "faults": faults.0 })),
            ClusterError::Conflict(_) => ApiError::new(Code::Conflict, message),
            ClusterError::Topo(_) => ApiError::new(Code::Topo, message),
        }
    }
}

impl From<keyshift_vdiff::VdiffError> for ApiError {
    fn from(e: keyshift_vdiff::VdiffError) -> ApiError {
        use keyshift_vdiff::VdiffError as V;
        let message = e.to_string();
        match e {
            V::Workflow(w) => w.into(),
            V::NotFound(name) => ApiError::new(Code::NotFound, message)
                .with_details(json!({ "kind": "vdiff", "name": name })),
            V::WrongState {
                workflow, state, ..
            } => ApiError::new(Code::Conflict, message)
                .with_details(json!({ "workflow": workflow, "vdiff_state": state })),
            V::CopyNotDone(workflow) => {
                ApiError::new(Code::Conflict, message).with_details(json!({ "workflow": workflow }))
            }
            V::UnknownTable { table, .. } => ApiError::fields(vec![(
                "tables".to_string(),
                format!("`{table}` is not moved by this workflow"),
            )]),
            V::Topo(_) => ApiError::new(Code::Topo, message),
            V::Schema(_) | V::Failed(_) => ApiError::new(Code::Server, message),
            V::Cancelled | V::Lost => ApiError::new(Code::Conflict, message),
        }
    }
}

impl From<keyshift_topo::TopoError> for ApiError {
    fn from(e: keyshift_topo::TopoError) -> ApiError {
        ApiError::new(Code::Topo, format!("topo: {e}"))
    }
}

/// Answers paths no route has, in the same shape as every other error.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(Code::NoRoute, format!("no API route {}", uri.path()))
}

/// Answers a known path with a method it does not have.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_fit() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        assert_eq!(Code::NotAllowed.status(), StatusCode::CONFLICT);
        assert_eq!(Code::Invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn not_allowed_lists_the_allowed_actions() {
        use keyshift_workflow::{Action, State};
        let e: ApiError = WorkflowError::NotAllowed {
            name: "w".into(),
            action: Action::Start,
            state: State::Running,
            allowed: vec![Action::Stop],
        }
        .into();
        let b = e.body();
        assert_eq!(b["error"]["code"], "not_allowed");
        assert_eq!(b["error"]["details"]["allowed_actions"], json!(["stop"]));
        assert_eq!(b["error"]["details"]["state"], "running");
    }
}
