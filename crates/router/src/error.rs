//! Errors the planner reports to the client, each with the MySQL error code and
//! SQLSTATE a MySQL server would use for the same fault, so that client
//! libraries react to them as they would to the server's own.

/// Why a statement cannot be planned (or bound).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The parser could not read the statement and it is not one of the forms
    /// the parser is known to miss.
    #[error("You have an error in your SQL syntax: {0}")]
    Syntax(String),
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    /// `table` is what the client wrote, qualified with the keyspace it was
    /// looked up in when there was one.
    #[error("Table '{0}' doesn't exist")]
    NoSuchTable(String),
    #[error("No database selected")]
    NoDatabaseSelected,
    /// The statement is valid SQL but keyshift cannot route or merge it; the
    /// message names the table and the reason.
    #[error("{0}")]
    Unsupported(String),
    /// A prepared statement was executed with the wrong number of parameters.
    #[error(
        "Incorrect arguments to mysqld_stmt_execute: expected {expected} parameters, got {got}"
    )]
    WrongParamCount { expected: usize, got: usize },
}

impl RouteError {
    /// The MySQL error number for the error packet.
    pub fn code(&self) -> u16 {
        match self {
            RouteError::Syntax(_) => 1064,
            RouteError::UnknownDatabase(_) => 1049,
            RouteError::NoSuchTable(_) => 1146,
            RouteError::NoDatabaseSelected => 1046,
            RouteError::Unsupported(_) => 1105,
            RouteError::WrongParamCount { .. } => 1210,
        }
    }

    /// The SQLSTATE for the error packet.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RouteError::Syntax(_) | RouteError::UnknownDatabase(_) => "42000",
            RouteError::NoSuchTable(_) => "42S02",
            RouteError::NoDatabaseSelected => "3D000",
            RouteError::Unsupported(_) | RouteError::WrongParamCount { .. } => "HY000",
        }
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        RouteError::Unsupported(msg.into())
    }
}
