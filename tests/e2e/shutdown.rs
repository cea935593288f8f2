//! Stopping: a clean stop leaves nothing behind; an outright kill leaves shared memory
//! that the next start reclaims.

use crate::harness::{shm_files, wait_until, Server, SMALL_DEMO};
use crate::http::Viewer;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn sigterm_leaves_nothing_in_dev_shm() {
    let mut server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let prefix = server.prefix.clone();
    // A viewer, so a connection worker runs too.
    let viewer = Viewer::open(server.http_port, "/demo.ts");
    viewer.wait_more_than(0, Duration::from_secs(20), "first bytes");
    assert!(
        PathBuf::from(format!("/dev/shm/{prefix}-demo")).exists(),
        "no stream buffer in /dev/shm: {:?}",
        shm_files(&prefix)
    );
    let tree = server.tree();
    for role in ["controller", "listen", "input", "worker"] {
        assert!(
            !server.pids_of(role).is_empty(),
            "no {role} process in the tree"
        );
    }

    let status = server.terminate(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "brume serve should exit 0 on SIGTERM, got {status}"
    );
    assert_eq!(
        shm_files(&prefix),
        Vec::<PathBuf>::new(),
        "shared memory left behind after SIGTERM"
    );
    let left: Vec<_> = tree.iter().filter(|p| p.alive()).collect();
    assert!(left.is_empty(), "processes left after SIGTERM: {left:?}");
}

#[test]
fn kill_9_tree_then_restart_reclaims() {
    let server = Server::start(Some(SMALL_DEMO));
    let prefix = server.prefix.clone();
    let demo = PathBuf::from(format!("/dev/shm/{prefix}-demo"));
    let conns = PathBuf::from(format!("/dev/shm/{prefix}.conns"));
    wait_until(Duration::from_secs(20), "the demo stream buffer", || {
        (demo.exists() && conns.exists()).then_some(())
    });
    let viewer = Viewer::open(server.http_port, "/demo.ts");
    viewer.wait_more_than(0, Duration::from_secs(20), "first bytes");

    let left = server.kill_tree();
    assert!(
        left.procs.len() >= 5,
        "expected serve, controller, listen, input and a worker: {:?}",
        left.procs
    );
    assert!(
        demo.exists() && conns.exists(),
        "SIGKILL should leave the shared memory behind (nothing could remove it): {:?}",
        shm_files(&prefix)
    );
    drop(viewer);

    let mut server = left.restart();
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let viewer = Viewer::open(server.http_port, "/demo.ts");
    viewer.wait_more_than(
        64 * 1024,
        Duration::from_secs(20),
        "the restarted server's demo stream",
    );
    assert!(viewer.status_line().starts_with("HTTP/1.1 200"));
    drop(viewer);

    let status = server.terminate(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert_eq!(
        shm_files(&prefix),
        Vec::<PathBuf>::new(),
        "shared memory left behind after the restart and SIGTERM"
    );
}
