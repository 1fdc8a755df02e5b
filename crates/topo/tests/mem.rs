use std::sync::Arc;

use futures::StreamExt;
use keyshift_topo::{Cond, MemTopo, Topo, TopoError, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_conformance() {
    conformance::run_all(Arc::new(MemTopo::new())).await;
}

#[tokio::test]
async fn mem_conformance_current_thread() {
    conformance::run_all(Arc::new(MemTopo::new())).await;
}

#[tokio::test]
async fn mem_open_url() {
    let topo = keyshift_topo::open("mem:").await.unwrap();
    topo.put("/x", b"1".to_vec(), Cond::Any).await.unwrap();
    assert_eq!(topo.revision().await.unwrap(), 1);
}

#[tokio::test]
async fn mem_compacted_history() {
    let topo = MemTopo::with_retention(5);
    for i in 0..20u8 {
        topo.put("/k", vec![i], Cond::Any).await.unwrap();
    }
    assert!(matches!(
        topo.watch("/", 1).await,
        Err(TopoError::Compacted { requested: 1, .. })
    ));
    // The newest five revisions are still there.
    let mut w = topo.watch("/", 15).await.unwrap();
    for rev in 16..=20 {
        assert_eq!(w.next().await.unwrap().unwrap().revision(), rev);
    }
}

#[tokio::test]
async fn mem_lagging_watcher_gets_compacted() {
    let topo = MemTopo::with_retention(3);
    let mut w = topo.watch("/", 0).await.unwrap();
    topo.put("/k", vec![0], Cond::Any).await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 1);
    for i in 0..10u8 {
        topo.put("/k", vec![i], Cond::Any).await.unwrap();
    }
    // The watcher has seen revision 1 only; 2..7 are gone.
    assert!(matches!(
        w.next().await,
        Some(Err(TopoError::Compacted { .. }))
    ));
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn etcd_not_built_yet() {
    match keyshift_topo::open("etcd://127.0.0.1:2379").await {
        Err(TopoError::Backend(msg)) => assert!(msg.contains("etcd")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("etcd backend should not exist yet"),
    }
}
