//! Errors that reach the client as MySQL ERR packets.

use std::fmt;

/// An error the client sees as an ERR packet: MySQL error number, SQLSTATE and
/// message, so that client libraries react to it as they would to a server's
/// own. After it is sent the client connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sqlstate),
            self.message
        )
    }
}

impl std::error::Error for GateError {}

impl GateError {
    pub fn new(code: u16, sqlstate: [u8; 5], message: impl Into<String>) -> Self {
        GateError {
            code,
            sqlstate,
            message: message.into(),
        }
    }

    /// ER_UNKNOWN_ERROR's cousin that MySQL uses for "cannot do that here".
    pub fn internal(message: impl Into<String>) -> Self {
        GateError::new(1105, *b"HY000", message)
    }

    pub fn access_denied(user: &str, host: &str, using_password: bool) -> Self {
        GateError::new(
            1045,
            *b"28000",
            format!(
                "Access denied for user '{user}'@'{host}' (using password: {})",
                if using_password { "YES" } else { "NO" }
            ),
        )
    }

    pub fn unknown_command(cmd: u8) -> Self {
        GateError::new(1047, *b"08S01", format!("Unknown command {cmd:#04x}"))
    }

    pub fn malformed(what: &str) -> Self {
        GateError::new(
            1835,
            *b"HY000",
            format!("Malformed communication packet: {what}"),
        )
    }

    pub fn packet_too_large() -> Self {
        GateError::new(
            1153,
            *b"08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        )
    }

    pub fn unknown_stmt(id: u32, op: &str) -> Self {
        GateError::new(
            1243,
            *b"HY000",
            format!("Unknown prepared statement handler ({id}) given to {op}"),
        )
    }

    pub fn wrong_arguments(op: &str) -> Self {
        GateError::new(1210, *b"HY000", format!("Incorrect arguments to {op}"))
    }

    /// The backend could not be reached or stopped answering; 2013 is what
    /// client libraries report for a lost server, so applications retry.
    pub fn backend_lost(detail: impl fmt::Display) -> Self {
        GateError::new(
            2013,
            *b"HY000",
            format!("Lost connection to backend during query: {detail}"),
        )
    }

    pub fn sqlstate_str(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or("HY000")
    }
}
