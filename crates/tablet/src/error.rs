use std::path::PathBuf;

/// Why a tablet server could not be found, started or stopped. Each message
/// says what is wrong and what to do, because it reaches the operator as is.
#[derive(Debug, thiserror::Error)]
pub enum TabletError {
    #[error(
        "{binary} was not found (looked in: {}); install Debian's mariadb-server (sudo apt-get install mariadb-server) or set `mariadbd = \"/path\"` in the cluster file",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingBinary {
        binary: &'static str,
        looked: Vec<PathBuf>,
    },

    #[error(
        "port {port} on 127.0.0.1 is already in use by another process; choose another port or 0 for a free one"
    )]
    PortInUse { port: u16 },

    #[error(
        "datadir {} is in use by a running mariadbd (pid {pid}); stop that server or use another data_dir",
        datadir.display()
    )]
    DatadirInUse { datadir: PathBuf, pid: u32 },

    #[error(
        "datadir {} is not empty and does not look like a MariaDB datadir (no `mysql` directory); point data_dir at an empty or missing directory",
        datadir.display()
    )]
    DatadirNotMariadb { datadir: PathBuf },

    #[error(
        "initialising datadir {} with mariadb-install-db failed ({status}); the partial datadir was removed. Its output ends with:\n{output}",
        datadir.display()
    )]
    InitFailed {
        datadir: PathBuf,
        status: String,
        output: String,
    },

    #[error(
        "mariadbd {status} during startup; the end of its error log {}:\n{log_tail}",
        error_log.display()
    )]
    ExitedDuringStartup {
        status: String,
        error_log: PathBuf,
        log_tail: String,
    },

    #[error(
        "mariadbd (pid {pid}) did not accept connections on 127.0.0.1:{port} within {secs} s and was stopped; the end of its error log {}:\n{log_tail}",
        error_log.display()
    )]
    StartupTimeout {
        pid: u32,
        port: u16,
        secs: u64,
        error_log: PathBuf,
        log_tail: String,
    },

    #[error(
        "mariadbd in datadir {} is up but rejects user `{user}`: {message}; the datadir was initialised with other credentials, so use those or a new data_dir",
        datadir.display()
    )]
    AdminRejected {
        datadir: PathBuf,
        user: String,
        message: String,
    },

    #[error("cannot run {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl TabletError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> TabletError {
        TabletError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same configuration later may succeed. Supervisors
    /// keep restarting on these and give up on the others, which need an
    /// operator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TabletError::PortInUse { .. }
                | TabletError::ExitedDuringStartup { .. }
                | TabletError::StartupTimeout { .. }
                | TabletError::DatadirInUse { .. }
        )
    }
}
