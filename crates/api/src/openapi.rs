//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
//!
//! Paths and operations come from [`crate::routes::ROUTES`], the same table
//! that builds the router; the schemas are written here by hand (the record
//! types live in crates that do not derive schemas). Tests check that every
//! route is documented, that every documented operation is answered by the
//! router, and that every schema reference resolves.

use crate::error::Code;
use crate::routes::ROUTES;
use keyshift_workflow::model::ALL_STATES;
use serde_json::{Map, Value, json};

/// The path prefix every operation in the document is under.
pub const BASE: &str = "/api/v1";

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| {
                json!({
                    "name": p, "in": "path", "required": true,
                    "schema": { "type": "string" }
                })
            })
            .collect();
        for q in r.query {
            params.push(json!({
                "name": q.name, "in": "query", "required": false,
                "description": q.description, "schema": { "type": q.kind }
            }));
        }
        let mut responses = Map::new();
        let (status, schema) = r.ok;
        let ok = if schema == "text/event-stream" {
            json!({
                "description": "An event stream (see the operation's summary).",
                "content": { "text/event-stream": { "schema": { "type": "string" } } }
            })
        } else {
            json!({
                "description": "Success.",
                "content": { "application/json": { "schema": reference(schema) } }
            })
        };
        responses.insert(status.to_string(), ok);
        if r.operation_id == "createWorkflow" || r.operation_id == "createImport" {
            responses.insert(
                "200".into(),
                json!({
                    "description": "With `validate_only`: every pre-check finding; nothing created.",
                    "content": { "application/json": { "schema": reference("ValidationReport") } }
                }),
            );
        }
        for code in std::iter::once(&401u16).chain(r.errors) {
            responses.insert(
                code.to_string(),
                json!({
                    "description": error_description(*code),
                    "content": { "application/json": { "schema": reference("Error") } }
                }),
            );
        }
        let mut op = json!({
            "operationId": r.operation_id,
            "tags": [r.tag],
            "summary": r.summary,
            "responses": responses,
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": reference(body) } }
            });
        }
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keyshift API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-service sharding for MySQL and MariaDB: cluster, VSchema, routing rules and workflows (MoveTables, and imports from external servers). Every route needs `Authorization: Bearer <token>`; the token is in `<data_dir>/api-token`. Errors are `{\"error\": {\"code\", \"message\", \"details\"}}` with stable codes."
        },
        "servers": [{ "url": BASE }],
        "security": [{ "bearer": [] }],
        "tags": [
            { "name": "cluster", "description": "Keyspaces, shards and tablets." },
            { "name": "vschema", "description": "VSchemas and routing rules." },
            { "name": "workflows", "description": "Data-motion workflows and their actions." },
            { "name": "events", "description": "Live updates." },
            { "name": "meta", "description": "This document." }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "The contents of <data_dir>/api-token." }
            },
            "schemas": schemas(),
        }
    })
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

/// `{name}` segments of a path, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn error_description(status: u16) -> String {
    let codes: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| c.as_str())
        .collect();
    format!("Error; `code` is one of: {}.", codes.join(", "))
}

fn schemas() -> Value {
    let states: Vec<&str> = ALL_STATES.iter().map(|s| s.as_str()).collect();
    // As serialized (snake_case), which is what bodies carry; the URL
    // segments of the action routes are the kebab-case spellings.
    let actions: Vec<Value> = crate::views::ALL_ACTIONS
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok())
        .collect();
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let str_array = json!({ "type": "array", "items": { "type": "string" } });
    let switch_notice = json!({
        "type": "string",
        "description": "Imports (`type: import`) whose primaries are not switched yet: what switching them means (applications must write through the gate, with its address, to avoid a split brain). Show it before switch-traffic."
    });
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": codes },
                    "message": { "type": "string" },
                    "details": { "description": "not_allowed: {workflow, action, state, allowed_actions}; invalid: {fields: [{field, problem}]} or {tables, findings} or {faults: [{path, message}]}; not_found/exists: {kind, name}." }
                }
            } }
        },
        "State": { "type": "string", "enum": states },
        "Action": { "type": "string", "enum": actions },
        "Trigger": { "type": "string", "enum": ["cli", "api", "controller"] },
        "TabletHealth": {
            "type": "object",
            "properties": {
                "healthy": { "type": "boolean" },
                "error": { "type": ["string", "null"] },
                "version": { "type": ["string", "null"] },
                "server_id": { "type": ["integer", "null"] },
                "read_only": { "type": ["boolean", "null"] },
                "gtid_binlog_pos": { "type": ["string", "null"] },
                "gtid_current_pos": { "type": ["string", "null"] },
                "flavor": { "type": ["string", "null"] }
            }
        },
        "ClusterStatus": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "sharded": { "type": "boolean" },
                    "shards": { "type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string" },
                            "key_range": { "type": "string" },
                            "primary": { "type": ["string", "null"] },
                            "tablets": { "type": "array", "items": {
                                "type": "object",
                                "properties": {
                                    "alias": { "type": "string" },
                                    "role": { "type": "string", "enum": ["primary", "replica"] },
                                    "managed": { "type": "boolean" },
                                    "address": { "type": "string" },
                                    "database": { "type": "string" },
                                    "status": reference("TabletHealth")
                                }
                            } }
                        }
                    } }
                }
            }
        },
        "Shard": {
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "key_range": { "type": "string" },
                "primary": { "type": ["string", "null"] }
            }
        },
        "ShardList": { "type": "array", "items": reference("Shard") },
        "Keyspace": {
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "sharded": { "type": "boolean" },
                "created_at": { "type": "integer", "description": "Unix seconds." },
                "shards": { "type": "array", "items": reference("Shard") }
            }
        },
        "KeyspaceList": { "type": "array", "items": reference("Keyspace") },
        "TableList": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "columns": { "type": "array", "items": {
                        "type": "object",
                        "properties": { "name": { "type": "string" }, "data_type": { "type": "string" } }
                    } },
                    "primary_key": str_array
                }
            }
        },
        "Tablet": {
            "type": "object",
            "properties": {
                "alias": { "type": "string" },
                "keyspace": { "type": "string" },
                "shard": { "type": "string" },
                "role": { "type": "string", "enum": ["primary", "replica"] },
                "managed": { "type": "boolean" },
                "address": { "type": "string" },
                "database": { "type": "string" },
                "health": reference("TabletHealth")
            }
        },
        "TabletList": { "type": "array", "items": reference("Tablet") },
        "VSchema": {
            "type": "object",
            "description": "Vitess's VSchema shape: sharded, vindexes, tables (column_vindexes, auto_increment, columns).",
            "properties": {
                "sharded": { "type": "boolean" },
                "vindexes": { "type": "object" },
                "tables": { "type": "object" }
            }
        },
        "VSchemaApplied": {
            "type": "object",
            "properties": {
                "keyspace": { "type": "string" },
                "applied": { "type": "boolean", "description": "False for dry_run." },
                "vschema": reference("VSchema")
            }
        },
        "RoutingRules": {
            "type": "object",
            "properties": { "rules": { "type": "array", "items": {
                "type": "object",
                "properties": { "from_table": { "type": "string" }, "to_tables": str_array }
            } } }
        },
        "Durations": {
            "type": "object",
            "properties": {
                "total_ms": { "type": "integer" },
                "copy_ms": { "type": ["integer", "null"], "description": "Creation to the end of the copy." },
                "complete_ms": { "type": ["integer", "null"], "description": "Creation to completed." }
            }
        },
        "WorkflowSummary": {
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "type": { "type": "string", "enum": ["move_tables", "reshard", "import", "materialize"], "description": "The workflow's kind." },
                "state": reference("State"),
                "source_keyspace": { "type": "string" },
                "target_keyspace": { "type": "string" },
                "tables": str_array,
                "created_ms": { "type": "integer" },
                "updated_ms": { "type": "integer" },
                "error": { "type": ["string", "null"] },
                "durations": reference("Durations"),
                "max_lag_seconds": { "type": ["integer", "null"] },
                "copy_percent": { "type": "number" },
                "allowed_actions": { "type": "array", "items": reference("Action") },
                "switch_notice": switch_notice.clone()
            }
        },
        "WorkflowPage": {
            "type": "object",
            "properties": {
                "workflows": { "type": "array", "items": reference("WorkflowSummary") },
                "total": { "type": "integer" },
                "offset": { "type": "integer" },
                "limit": { "type": "integer" },
                "next_offset": { "type": ["integer", "null"] }
            }
        },
        "Options": {
            "type": "object",
            "properties": {
                "defer_secondary_keys": { "type": "boolean", "default": true },
                "on_ddl": { "type": "string", "enum": ["ignore", "stop", "exec", "exec_ignore"], "default": "stop" },
                "stop_after_copy": { "type": "boolean", "default": false },
                "copy_batch_rows": { "type": "integer", "minimum": 1, "default": 10000 },
                "copy_cycle_ms": { "type": "integer", "minimum": 100, "default": 3600000 },
                "copy_parallel_tables": { "type": "integer", "minimum": 0, "maximum": 8, "default": 0, "description": "Tables each stream copies at once; 0: half the CPUs, 1 to 4." },
                "max_transient_retries": { "type": "integer", "minimum": 0, "default": 5 }
            }
        },
        "CreateWorkflow": {
            "type": "object",
            "required": ["name", "source_keyspace", "target_keyspace"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string" },
                "source_keyspace": { "type": "string" },
                "target_keyspace": { "type": "string" },
                "tables": { "type": "array", "items": { "type": "string" } },
                "all_tables": { "type": "boolean" },
                "exclude_tables": { "type": "array", "items": { "type": "string" } },
                "options": reference("Options"),
                "validate_only": { "type": "boolean", "description": "Run every pre-check, create nothing (also `?validate_only=true`)." }
            }
        },
        "CreateImport": {
            "type": "object",
            "required": ["name", "from", "target_keyspace"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "description": "The workflow's name." },
                "from": { "type": "string", "description": "The external server and database: `mysql://user@host:3306/database` (a password in the URL, percent-encoded, is accepted too). Only ever shown redacted." },
                "password": { "type": "string", "format": "password", "writeOnly": true, "description": "The password of `from`'s user, when the URL carries none. Stored with the cluster's tablet records (never in logs) until the import completes or is cancelled." },
                "source_keyspace": { "type": "string", "description": "The keyspace that stands for the external server (default `ext_<database>`)." },
                "ssl_mode": { "type": "string", "enum": ["disabled", "required", "verify-ca", "verify-identity"], "description": "TLS to the external server, as the mysql client's --ssl-mode (default disabled; `ssl-mode=` in `from` works too)." },
                "ssl_ca": { "type": "string", "description": "PEM text of the CA certificate(s) to verify the server with (verify-ca, verify-identity)." },
                "target_keyspace": { "type": "string" },
                "target_vschema": { "type": "object", "description": "The target keyspace's whole VSchema, checked against the external server's tables and stored with the import (a sharded target needs each table's primary vindex). Faults come back as `vschema` findings with their path." },
                "tables": { "type": "array", "items": { "type": "string" } },
                "all_tables": { "type": "boolean" },
                "exclude_tables": { "type": "array", "items": { "type": "string" } },
                "options": reference("Options"),
                "validate_only": { "type": "boolean", "description": "Check the external server and the request, create nothing (also `?validate_only=true`)." }
            }
        },
        "Finding": {
            "type": "object",
            "properties": {
                "table": { "type": ["string", "null"] },
                "check": { "type": "string", "description": "A stable name of the check: request, keyspace, tablet, connection, tls, binlog, binlog_retention, privileges, engine, views, triggers, table_exists, primary_key, charset, vschema, target_empty, other_workflow." },
                "severity": { "type": "string", "enum": ["error", "warning"], "default": "error", "description": "Errors block creation; warnings do not." },
                "problem": { "type": "string" },
                "fix": { "type": "string", "description": "The SQL statement, configuration line or command that fixes it." }
            }
        },
        "ValidationReport": {
            "type": "object",
            "properties": {
                "ok": { "type": "boolean" },
                "tables": str_array,
                "findings": { "type": "array", "items": reference("Finding") }
            }
        },
        "ActionState": {
            "type": "object",
            "properties": {
                "action": reference("Action"),
                "allowed": { "type": "boolean" },
                "reason": { "type": "string", "description": "Why it is not allowed now." }
            }
        },
        "Workflow": {
            "type": "object",
            "description": "The workflow record as stored, plus allowed_actions, actions, durations, max_lag_seconds, copy_percent, vdiff and (imports) switch_notice.",
            "properties": {
                "name": { "type": "string" },
                "type": { "type": "string", "enum": ["move_tables", "reshard", "import", "materialize"], "description": "The workflow's kind." },
                "source_keyspace": { "type": "string" },
                "target_keyspace": { "type": "string" },
                "tables": { "type": "array", "items": { "type": "object" } },
                "options": reference("Options"),
                "state": reference("State"),
                "desired": { "type": "string", "enum": ["running", "stopped"] },
                "created_ms": { "type": "integer" },
                "updated_ms": { "type": "integer" },
                "phases": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "state": reference("State"), "at_ms": { "type": "integer" }, "by": reference("Trigger") }
                } },
                "error": { "type": ["string", "null"] },
                "events": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "at_ms": { "type": "integer" }, "by": reference("Trigger"), "message": { "type": "string" } }
                } },
                "streams": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer" },
                        "source_shard": { "type": "string" },
                        "target_shard": { "type": "string" },
                        "state": { "type": "string" },
                        "position": { "type": ["string", "null"] },
                        "lag_seconds": { "type": ["integer", "null"] },
                        "transactions_applied": { "type": "integer" },
                        "last_error": { "type": ["string", "null"] }
                    }
                } },
                "table_progress": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "rows_copied": { "type": "integer" },
                        "estimated_rows": { "type": "integer" },
                        "percent": { "type": "number" },
                        "done": { "type": "boolean" },
                        "eta_seconds": { "type": ["integer", "null"] }
                    }
                } },
                "copy_done": { "type": "boolean" },
                "allowed_actions": { "type": "array", "items": reference("Action") },
                "actions": { "type": "array", "items": reference("ActionState") },
                "durations": reference("Durations"),
                "max_lag_seconds": { "type": ["integer", "null"] },
                "copy_percent": { "type": "number" },
                "vdiff": { "description": "The VDiff record, when one exists." },
                "switch_notice": switch_notice
            }
        },
        "SwitchResult": {
            "allOf": [
                reference("Workflow"),
                { "type": "object", "properties": { "report": {
                    "type": "object",
                    "properties": {
                        "workflow": { "type": "string" },
                        "dry_run": { "type": "boolean" },
                        "steps": str_array,
                        "state": reference("State"),
                        "duration_ms": { "type": "integer" },
                        "held_ms": { "type": ["integer", "null"], "description": "How long statements were held." }
                    }
                },
                "notice": { "type": "string", "description": "Imports, when primaries are switched (dry runs included): applications must write through the gate from now on, not to the external server." } } }
            ]
        },
        "LagSeries": {
            "type": "object",
            "properties": {
                "workflow": { "type": "string" },
                "samples": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "at_ms": { "type": "integer" }, "lag_seconds": { "type": "integer" } }
                } }
            }
        },
        "SwitchTraffic": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "replicas_only": { "type": "boolean", "default": false, "description": "Switch reads only (replica traffic)." },
                "tablet_types": { "type": "string", "enum": ["replicas", "primaries"], "description": "Vitess's spelling of replicas_only." },
                "max_lag_seconds": { "type": "integer", "description": "Refuse when a stream lags more." },
                "timeout_seconds": { "type": "integer" },
                "hold_window_ms": { "type": "integer", "description": "Longest time statements are held during a primary switch (default 10000)." },
                "max_held_queries": { "type": "integer", "description": "Statements held at once per gate; more fail at once (default 1000)." },
                "dry_run": { "type": "boolean" }
            }
        },
        "VerifyData": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "tables": { "type": "array", "items": { "type": "string" }, "description": "Default: every table of the workflow." },
                "max_rows_per_second": { "type": "integer", "minimum": 1 },
                "batch_rows": { "type": "integer", "minimum": 1, "default": 10000 },
                "max_samples": { "type": "integer", "minimum": 0, "default": 10 },
                "row_level": { "type": "boolean", "default": false, "description": "Compare every row, skipping the checksums of key ranges." },
                "chunk_rows": { "type": "integer", "minimum": 1, "default": 50000, "description": "Source rows per checksummed key range." }
            }
        },
        "Complete": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "mode": { "type": "string", "enum": ["drop", "keep_data", "rename_tables"], "default": "drop", "description": "What happens to the source tables." }
            }
        },
        "Cancel": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "keep_data": { "type": "boolean", "default": false, "description": "Keep the target copies." }
            }
        },
        "OpenApi": { "type": "object", "description": "An OpenAPI 3.1 document." }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names a schema that exists.
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .clone();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 20);
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected ref {r}"));
            assert!(schemas.contains_key(name), "dangling $ref {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or_default().to_string());
                    } else {
                        collect_refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
            _ => {}
        }
    }
}
