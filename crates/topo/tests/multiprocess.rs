//! Several OS processes write one topo file at once, as `keyshift up` and CLI commands do.
//! The test binary re-runs itself as the child processes (see `child_incrementer`).

use std::time::Duration;

use keyshift_topo::conformance::{increment_concurrently, next_event};
use keyshift_topo::{FileTopo, Topo, TopoExt, WatchEvent};

const CHILD_PATH_ENV: &str = "KEYSHIFT_TOPO_TEST_CHILD_PATH";
const CHILDREN: u64 = 4;
const TASKS_PER_CHILD: u64 = 2;
const INCREMENTS_PER_TASK: u64 = 25;

/// Does nothing in a normal test run; in a child process it increments the shared counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_incrementer() {
    let Ok(path) = std::env::var(CHILD_PATH_ENV) else {
        return;
    };
    let topo = keyshift_topo::open(&path).await.expect("child opens topo");
    increment_concurrently(topo, "/counter", TASKS_PER_CHILD, INCREMENTS_PER_TASK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_a_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/topo.db");
    let exe = std::env::current_exe().unwrap();

    // Children start on a file that does not exist yet, racing to create it.
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        children.push(
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_incrementer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_PATH_ENV, &path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }

    // Meanwhile this process opens the same file and watches the counter from the beginning.
    let topo = FileTopo::open(&path).await.unwrap();
    let mut w = topo.watch("/counter", 0).await.unwrap();

    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("child timed out")
            .unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let total = CHILDREN * TASKS_PER_CHILD * INCREMENTS_PER_TASK;
    let (n, rev) = topo.get_json::<u64>("/counter").await.unwrap().unwrap();
    assert_eq!(n, total);
    assert_eq!(topo.revision().await.unwrap(), rev);

    // Every write was an increment, so the watcher must have seen 1, 2, ..., total in order.
    let mut last_rev = 0;
    for expected in 1..=total {
        let ev = next_event(&mut w).await;
        let WatchEvent::Put(kv) = ev else {
            panic!("unexpected {ev:?}")
        };
        assert!(kv.mod_revision > last_rev);
        last_rev = kv.mod_revision;
        let v: u64 = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(v, expected);
    }
    assert_eq!(last_rev, rev);
}
