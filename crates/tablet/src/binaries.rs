use std::path::{Path, PathBuf};

use crate::TabletError;

/// The two MariaDB programs a managed tablet needs, resolved once so that a
/// missing installation is reported before anything is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MariadbBinaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
}

/// Fixed places where distributions and tarballs put the server, searched
/// after PATH because /usr/sbin is often missing from a user's PATH.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/usr/local/mysql/bin"];

/// Finds mariadbd and mariadb-install-db: the explicit mariadbd path if given
/// (install-db is then looked for next to it first), else PATH, /usr/sbin and
/// /usr/local/mysql/bin.
pub fn find_binaries(explicit_mariadbd: Option<&Path>) -> Result<MariadbBinaries, TabletError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();

    let mariadbd = match explicit_mariadbd {
        Some(p) => {
            if !is_executable(p) {
                return Err(TabletError::MissingBinary {
                    binary: "mariadbd",
                    looked: vec![p.to_path_buf()],
                });
            }
            if let Some(parent) = p.parent() {
                dirs.push(parent.to_path_buf());
            }
            p.to_path_buf()
        }
        None => {
            let search: Vec<PathBuf> = path_dirs
                .iter()
                .cloned()
                .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
                .collect();
            find_in(&search, &["mariadbd", "mysqld"]).ok_or_else(|| TabletError::MissingBinary {
                binary: "mariadbd",
                looked: search.clone(),
            })?
        }
    };
    dirs.extend(path_dirs);
    dirs.extend(FALLBACK_DIRS.iter().map(PathBuf::from));
    // Tarball layouts keep install-db in ../scripts or next to the client tools.
    if let Some(base) = mariadbd.parent().and_then(Path::parent) {
        dirs.push(base.join("scripts"));
        dirs.push(base.join("bin"));
    }
    dirs.push(PathBuf::from("/usr/bin"));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        if seen.contains(d) {
            false
        } else {
            seen.push(d.clone());
            true
        }
    });
    let install_db = find_in(&dirs, &["mariadb-install-db", "mysql_install_db"]).ok_or(
        TabletError::MissingBinary {
            binary: "mariadb-install-db",
            looked: dirs,
        },
    )?;
    Ok(MariadbBinaries {
        mariadbd,
        install_db,
    })
}

/// The client programs that seed a replica from its primary
/// (`mariadb-dump | mariadb`). Resolved only when a replica needs seeding, so
/// a cluster without replicas does not require them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTools {
    pub dump: PathBuf,
    pub client: PathBuf,
}

/// Finds mariadb-dump and mariadb: next to the server's install-db and
/// mariadbd first (a tarball keeps them together), then PATH and /usr/bin.
pub fn find_client_tools(binaries: &MariadbBinaries) -> Result<ClientTools, TabletError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in [&binaries.install_db, &binaries.mariadbd] {
        if let Some(parent) = p.parent() {
            dirs.push(parent.to_path_buf());
            if let Some(base) = parent.parent() {
                dirs.push(base.join("bin"));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.push(PathBuf::from("/usr/local/mysql/bin"));
    let dump = find_in(&dirs, &["mariadb-dump", "mysqldump"]).ok_or_else(|| {
        TabletError::MissingBinary {
            binary: "mariadb-dump",
            looked: dirs.clone(),
        }
    })?;
    let client =
        find_in(&dirs, &["mariadb", "mysql"]).ok_or_else(|| TabletError::MissingBinary {
            binary: "mariadb",
            looked: dirs.clone(),
        })?;
    Ok(ClientTools { dump, client })
}

fn find_in(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_names_the_binary_and_the_fix() {
        let err = find_binaries(Some(Path::new("/nonexistent/keyshift/mariadbd"))).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            TabletError::MissingBinary {
                binary: "mariadbd",
                ..
            }
        ));
        assert!(msg.contains("/nonexistent/keyshift/mariadbd"), "{msg}");
        assert!(msg.contains("sudo apt-get install mariadb-server"), "{msg}");
        assert!(msg.contains("`mariadbd = \"/path\"`"), "{msg}");
    }

    #[test]
    fn finds_the_installed_server() {
        let b = find_binaries(None).expect("mariadb-server is installed on this machine");
        assert!(b.mariadbd.ends_with("mariadbd") || b.mariadbd.ends_with("mysqld"));
        assert!(b.install_db.exists());
        let tools = find_client_tools(&b).expect("the client tools come with the server");
        assert!(tools.dump.exists() && tools.client.exists());
    }
}
