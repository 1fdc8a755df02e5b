//! The harness shared by the CLI's end-to-end tests: a cluster file in its
//! own temp dir, the real `keyshift` binary run against it, and cleanup that
//! holds even when a test fails.
#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A cluster file in its own temp dir; `down` on drop and, as a backstop,
/// SIGKILL of any process still using the temp dir, so a failing test leaves
/// nothing running.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(body: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keyshift.toml"), body).expect("write cluster file");
        Cluster { dir }
    }

    /// The repository's example, with ports that cannot collide.
    pub fn example() -> Cluster {
        let text = include_str!("../../../../keyshift.toml")
            .replace("127.0.0.1:15306", "127.0.0.1:0")
            .replace("127.0.0.1:15000", "127.0.0.1:0");
        Cluster::new(&text)
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("keyshift.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("keyshift-data")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keyshift"))
            .arg("--cluster")
            .arg(self.file())
            .args(args)
            .env_remove("KEYSHIFT_CLUSTER")
            .output()
            .expect("run keyshift")
    }

    /// Runs and requires success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keyshift {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and requires failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "keyshift {args:?} should have failed:\nstdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub async fn topo(&self) -> std::sync::Arc<dyn keyshift_topo::Topo> {
        let url = format!("file:{}", self.data_dir().join("topo.db").display());
        keyshift_topo::open(&url).await.expect("open topo")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--timeout", "30s"]);
        kill_processes_under(self.dir.path());
    }
}

/// SIGKILLs every process whose command line mentions `dir`.
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn processes_under(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

impl Cluster {
    /// The port of the running node's gate (from its ready file).
    pub fn gate_port(&self) -> u16 {
        let node: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.data_dir().join("keyshift.ready")).expect("ready file"),
        )
        .expect("ready json");
        node["gate"]
            .as_str()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .expect("gate port in keyshift.ready")
    }

    /// The node's API: its base URL (`http://host:port`) and bearer token.
    pub fn api(&self) -> (String, String) {
        let node: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.data_dir().join("keyshift.ready")).expect("ready file"),
        )
        .expect("ready json");
        let addr = node["api"].as_str().expect("api address in keyshift.ready");
        let token = std::fs::read_to_string(self.data_dir().join("api-token")).expect("api token");
        (format!("http://{addr}"), token.trim().to_string())
    }

    /// `kill -9` of the keyshift node (the pid in its ready file); returns
    /// the pid once the process is gone. Its mariadbd servers keep running.
    pub fn kill_node(&self) -> i32 {
        let node: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.data_dir().join("keyshift.ready")).expect("ready file"),
        )
        .expect("ready json");
        let pid = node["pid"].as_i64().expect("pid in keyshift.ready") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 the node");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "keyshift {pid} did not die"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pid
    }
}

/// A connection to the primary of `ks`/`shard`, in its database.
pub async fn conn_for(c: &Cluster, ks: &str, shard: &str) -> mysql_async::Conn {
    let topo = c.topo().await;
    let t = keyshift_cluster::ops::shard_primaries(topo.as_ref(), ks)
        .await
        .expect("primaries")
        .into_iter()
        .find(|(s, _)| s.name == shard)
        .and_then(|(_, t)| t)
        .expect("primary");
    let opts =
        mysql_async::OptsBuilder::from_opts(t.endpoint().opts()).db_name(Some(t.database.clone()));
    mysql_async::Conn::new(opts).await.expect("connect")
}

/// `workflow show NAME --format json`.
pub fn show_json(c: &Cluster, name: &str) -> serde_json::Value {
    serde_json::from_str(&c.ok(&["workflow", "show", name, "--format", "json"])).expect("json")
}

/// The pid of the mariadbd serving a tablet (its datadir is in its command line).
pub fn mariadbd_pid(c: &Cluster, alias: &str) -> i32 {
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("mariadbd")
            && cmd.contains(&*c.dir.path().to_string_lossy())
            && cmd.contains(alias)
        {
            return pid;
        }
    }
    panic!("no mariadbd for {alias}");
}
