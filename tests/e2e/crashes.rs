//! Crashes (SIGKILL) of one viewer's worker and of an input: contained and repaired.

use crate::harness::{signal, wait_until, Proc, Server, SMALL_DEMO};
use crate::http::Viewer;
use crate::media::assert_decodes_clean;
use std::time::Duration;

#[test]
fn viewer_worker_kill_spares_the_others() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let port = server.http_port;
    let mut viewers: Vec<Viewer> = (0..20).map(|_| Viewer::open(port, "/demo.ts")).collect();
    for v in &viewers {
        v.wait_more_than(0, Duration::from_secs(20), "first bytes");
        assert!(
            v.status_line().starts_with("HTTP/1.1 200"),
            "{}",
            v.status_line()
        );
    }

    // The victim's worker: the listener's child serving that connection.
    let victim = 7;
    let local = viewers[victim].local.to_string();
    let pid = wait_until(
        Duration::from_secs(10),
        "the victim's connection in the API",
        || {
            server
                .connection_of(&local)
                .and_then(|c| c["pid"].as_i64())
                .filter(|p| *p > 0)
        },
    ) as i32;
    let workers = server.pids_of("worker");
    assert!(
        workers.len() >= 20,
        "expected a worker process per viewer, found {workers:?}"
    );
    assert!(
        workers.contains(&pid),
        "the connection's pid {pid} is not a child of the listener ({workers:?})"
    );
    let killed = Proc::read(pid).expect("the worker runs");

    let before: Vec<u64> = viewers.iter().map(Viewer::bytes).collect();
    signal(pid, libc::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "the killed worker to be gone",
        || (!killed.alive()).then_some(()),
    );

    // Every other viewer keeps receiving.
    for (i, v) in viewers.iter().enumerate() {
        if i != victim {
            v.wait_more_than(
                before[i],
                Duration::from_secs(10),
                "another viewer after the kill",
            );
        }
    }

    // The killed viewer's connection is resumed by a new worker...
    let resumed = wait_until(
        Duration::from_secs(10),
        "the victim's connection to be resumed in a new worker",
        || {
            server.connection_of(&local).filter(|c| {
                c["pid"].as_i64().is_some_and(|p| p > 0 && p as i32 != pid)
                    && c["worker_restarts"].as_u64().is_some_and(|r| r >= 1)
            })
        },
    );
    let new_pid = resumed["pid"].as_i64().expect("pid") as i32;
    assert!(
        server.pids_of("worker").contains(&new_pid),
        "the resuming worker {new_pid} is not a child of the listener"
    );
    // ...and its bytes keep coming on the same connection: far more than what could
    // have been in flight when the worker died.
    let v = &viewers[victim];
    v.wait_more_than(
        before[victim] + 64 * 1024,
        Duration::from_secs(20),
        "the killed viewer's bytes after the resume",
    );
    assert!(!v.closed(), "the killed viewer's connection was closed");

    // What that viewer received, across the crash, is still a clean stream.
    for v in &mut viewers {
        v.stop();
    }
    let body = viewers[victim].body();
    let saved = server.dir.join("saved.ts");
    std::fs::write(&saved, &body).expect("save the viewer's bytes");
    assert_decodes_clean(saved.to_str().expect("utf-8 path"), None);
}

#[test]
fn input_kill_is_restarted_and_outputs_resume() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    let status = server.wait_live("demo", Duration::from_secs(20));
    let port = server.http_port;
    let ts = Viewer::open(port, "/demo.ts");
    let mp4 = Viewer::open(port, "/demo.mp4");
    ts.wait_more_than(0, Duration::from_secs(20), "first TS bytes");
    mp4.wait_more_than(0, Duration::from_secs(20), "first MP4 bytes");

    let old = status["status"]["input_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no input_pid: {status}")) as i32;
    assert_eq!(
        server.pids_of("input"),
        vec![old],
        "the API's input_pid is not the controller's input child"
    );
    let restarts0 = status["status"]["restarts"].as_u64().unwrap_or(0);
    let killed = Proc::read(old).expect("the input runs");
    signal(old, libc::SIGKILL);

    let after = wait_until(
        Duration::from_secs(10),
        "the API to show the input restarted and live",
        || {
            let v = server.stream("demo");
            let s = &v["status"];
            let pid = s["input_pid"].as_i64().unwrap_or(0) as i32;
            (s["restarts"].as_u64().unwrap_or(0) > restarts0
                && pid > 0
                && pid != old
                && s["state"] == "live")
                .then_some(v)
        },
    );
    assert!(!killed.alive(), "the killed input still runs");
    let new = after["status"]["input_pid"].as_i64().expect("pid") as i32;
    assert!(
        server.pids_of("input").contains(&new),
        "the new input_pid {new} is not an input process of this server"
    );

    // Both viewers get the restarted input's pictures on their open connections.
    let (t0, m0) = (ts.bytes(), mp4.bytes());
    ts.wait_more_than(
        t0 + 32 * 1024,
        Duration::from_secs(20),
        "TS bytes after the input restart",
    );
    mp4.wait_more_than(
        m0 + 32 * 1024,
        Duration::from_secs(20),
        "MP4 bytes after the input restart",
    );

    let (st, v) = server.get("/api/v1/logs");
    assert_eq!(st, 200);
    assert!(
        v["lines"].as_array().is_some_and(|l| l
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("input crashed")))),
        "GET /api/v1/logs does not report the crash: {v}"
    );
}
