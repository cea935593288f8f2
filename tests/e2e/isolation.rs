//! What a forked process inherits: a killed listener is back on its ports at once
//! (serve keeps the listening sockets; no worker holds one), and a worker holds only
//! its own client's socket (a response that ends reaches EOF at its client).

use crate::harness::{signal, wait_until, Proc, Server, PASSWORD};
use crate::http::{self, Viewer};
use crate::media::{rtmp_publisher, Background};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// 100 viewers come from one address here (127.0.0.1): more than an address's
/// default share of the listener's connections (64).
const DEMO_AND_CAM: &str = r#"{"streams":{
  "demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true},
  "cam":{"source":{"type":"rtmp","key":"s3cret"}}},
  "limits":{"max_connections_per_address":256}}"#;

const DEMO_AND_GONE: &str = r#"{"streams":{
  "demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true},
  "gone":{"source":{"type":"testsrc","width":160,"height":90,"fps":10,"bitrate_kbps":100},"always_on":true}}}"#;

/// A TCP socket of this machine (IPv4 loopback), from /proc/net/tcp.
#[derive(Clone, Copy, Debug)]
struct Tcp {
    local_port: u16,
    remote_port: u16,
    listening: bool,
}

/// Every IPv4 TCP socket by inode.
fn tcp_sockets() -> HashMap<u64, Tcp> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let inode = f.get(9)?.parse().ok()?;
            Some((
                inode,
                Tcp {
                    local_port: port(f.get(1)?),
                    remote_port: port(f.get(2)?),
                    listening: *f.get(3)? == "0A",
                },
            ))
        })
        .collect()
}

/// A process's open descriptors: (fd, link target).
fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// The socket inodes among a process's descriptors.
fn socket_inodes(fds: &[(i32, String)]) -> Vec<u64> {
    fds.iter()
        .filter_map(|(_, t)| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// The TCP sockets a process holds.
fn tcp_of(pid: i32, all: &HashMap<u64, Tcp>) -> Vec<Tcp> {
    socket_inodes(&fds_of(pid))
        .iter()
        .filter_map(|i| all.get(i).copied())
        .collect()
}

/// Descriptors (above stdio) of `pid` without the close-on-exec flag.
fn inheritable_fds(pid: i32) -> Vec<(i32, String)> {
    const O_CLOEXEC: u32 = 0o2000000;
    fds_of(pid)
        .into_iter()
        .filter(|(fd, _)| *fd > 2)
        .filter(|(fd, _)| {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
            flags.is_some_and(|f| f & O_CLOEXEC == 0)
        })
        .collect()
}

/// The processes of the server's tree holding its listening HTTP socket, besides
/// `serve` (which keeps the listening sockets for the appliance's whole life and
/// passes them to each listener).
fn listeners(server: &Server) -> Vec<i32> {
    let all = tcp_sockets();
    let serve = server.serve_pid();
    assert!(
        tcp_of(serve, &all)
            .iter()
            .any(|t| t.listening && t.local_port == server.http_port),
        "serve keeps the listening socket"
    );
    server
        .tree()
        .iter()
        .filter(|p| p.pid != serve)
        .filter(|p| {
            tcp_of(p.pid, &all)
                .iter()
                .any(|t| t.listening && t.local_port == server.http_port)
        })
        .map(|p| p.pid)
        .collect()
}

fn frames(server: &Server, stream: &str) -> u64 {
    server.stream(stream)["status"]["frames"]
        .as_u64()
        .unwrap_or(0)
}

/// Opens `n` viewers alternating between TS and MP4 and waits for each one's first
/// bytes.
fn viewers(port: u16, n: usize) -> Vec<Viewer> {
    let v: Vec<Viewer> = (0..n)
        .map(|i| Viewer::open(port, if i % 2 == 0 { "/demo.ts" } else { "/demo.mp4" }))
        .collect();
    for x in &v {
        x.wait_more_than(0, Duration::from_secs(60), "first bytes");
        assert!(
            x.status_line().starts_with("HTTP/1.1 200"),
            "{}: {}",
            x.path,
            x.status_line()
        );
    }
    v
}

#[test]
fn listener_kill_with_100_viewers_and_a_publisher_is_back_at_once() {
    let server = Server::start(Some(DEMO_AND_CAM));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let url = format!("rtmp://127.0.0.1:{}/live/cam?key=s3cret", server.rtmp_port);
    let log = server.dir.join("publish.log");
    let mut ff = Background::spawn(rtmp_publisher(&url, "320x180", 300, 25), &log);
    let publish_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(30), "cam to be live", || {
        if let Some(code) = ff.exited() {
            panic!("the publisher ended early ({code:?}):\n{}", publish_log());
        }
        (server.stream("cam")["status"]["state"] == "live").then_some(())
    });

    let port = server.http_port;
    let viewers = viewers(port, 100);
    let listener = listeners(&server);
    assert_eq!(listener.len(), 1, "one listener: {listener:?}");
    let old = Proc::read(listener[0]).expect("the listener runs");

    // Every child of the listener (the 100 workers and the RTMP input) holds exactly
    // one TCP socket: its own connection, never a listening socket.
    let all = tcp_sockets();
    let children = server.pids_of("worker");
    assert_eq!(
        children.len(),
        101,
        "a worker per viewer and one RTMP input: {children:?}"
    );
    for pid in &children {
        let tcp = tcp_of(*pid, &all);
        assert!(
            tcp.len() == 1 && !tcp[0].listening,
            "child {pid} of the listener holds {tcp:?}, not just its own connection"
        );
    }

    let (st, login) = server.post(
        "/api/v1/login",
        &serde_json::json!({ "password": PASSWORD }).to_string(),
    );
    assert_eq!(st, 200, "login: {login}");
    let token = format!("Bearer {}", login["token"].as_str().expect("a token"));

    let before: Vec<u64> = viewers.iter().map(Viewer::bytes).collect();
    let frames_before = frames(&server, "cam");
    signal(old.pid, libc::SIGKILL);
    let killed = Instant::now();

    // The API answers again...
    let api = wait_until(
        Duration::from_secs(40),
        "the API to answer after the listener kill",
        || {
            let r = http::request(
                port,
                "GET",
                "/api/v1/system",
                &[("Authorization", &token)],
                None,
            );
            matches!(r, Ok(r) if r.status == 200).then(|| killed.elapsed())
        },
    );
    // ...and a new viewer is served.
    let new = Viewer::open(port, "/demo.ts");
    new.wait_more_than(0, Duration::from_secs(20), "the new viewer's first bytes");
    let viewer = killed.elapsed();
    assert!(
        new.status_line().starts_with("HTTP/1.1 200"),
        "the new viewer: {}",
        new.status_line()
    );
    eprintln!(
        "listener killed with 100 viewers and a publisher: API answered after {} ms, a new viewer's first bytes after {} ms",
        api.as_millis(),
        viewer.as_millis()
    );
    assert!(
        api < Duration::from_secs(3),
        "the API answered only {api:?} after the listener was killed"
    );
    assert!(
        viewer < Duration::from_secs(5),
        "a new viewer got its first bytes only {viewer:?} after the listener was killed"
    );
    // The orphaned workers are children of serve now, like the new listener: that is
    // the one holding the listening socket.
    let relisten = listeners(&server);
    assert!(
        relisten.len() == 1 && relisten[0] != old.pid,
        "one new listener should hold the port: {relisten:?}"
    );
    assert!(!old.alive(), "the killed listener still runs");

    // The 100 viewers kept their connections and keep receiving.
    for (i, v) in viewers.iter().enumerate() {
        v.wait_more_than(
            before[i],
            Duration::from_secs(20),
            "a viewer after the listener kill",
        );
    }
    // The publisher keeps publishing: the stream's frame count grows.
    wait_until(
        Duration::from_secs(20),
        "cam's frame count to grow after the listener kill",
        || {
            if let Some(code) = ff.exited() {
                panic!(
                    "the publisher ended after the listener kill ({code:?}):\n{}",
                    publish_log()
                );
            }
            (frames(&server, "cam") > frames_before + 25).then_some(())
        },
    );
    assert_eq!(server.stream("cam")["status"]["state"], "live");
    assert!(
        viewers.iter().all(|v| !v.closed()),
        "a viewer's connection ended after the listener kill"
    );
}

#[test]
fn workers_hold_only_their_own_client_socket() {
    let server = Server::start(Some(DEMO_AND_GONE));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    server.wait_live("gone", Duration::from_secs(20));
    let port = server.http_port;

    // The first viewer (its worker forked before the others), of a stream that will be
    // deleted.
    let doomed = Viewer::open(port, "/gone.ts");
    doomed.wait_more_than(
        0,
        Duration::from_secs(20),
        "the doomed viewer's first bytes",
    );
    let viewers = viewers(port, 20);

    let all = tcp_sockets();
    let workers = server.pids_of("worker");
    assert_eq!(workers.len(), 21, "a worker per viewer: {workers:?}");
    let mut ours: HashSet<u16> = viewers.iter().map(|v| v.local.port()).collect();
    ours.insert(doomed.local.port());
    let mut served = HashSet::new();
    let mut fd_counts = Vec::new();
    for pid in &workers {
        let fds = fds_of(*pid);
        fd_counts.push(fds.len());
        let tcp: Vec<Tcp> = socket_inodes(&fds)
            .iter()
            .filter_map(|i| all.get(i).copied())
            .collect();
        assert!(
            tcp.len() == 1
                && !tcp[0].listening
                && tcp[0].local_port == port
                && ours.contains(&tcp[0].remote_port),
            "worker {pid} holds TCP sockets {tcp:?} besides (or instead of) its own client's; its descriptors: {fds:?}"
        );
        served.insert(tcp[0].remote_port);
        // Stdio, its client socket, its log socket (and a message to the controller
        // in flight): a handful, however many viewers there are.
        assert!(
            fds.len() <= 8,
            "worker {pid} holds more than its own descriptors: {fds:?}"
        );
    }
    assert_eq!(served, ours, "every viewer is served by its own worker");
    eprintln!(
        "descriptors per worker with 21 viewers: min {}, max {}",
        fd_counts.iter().min().unwrap_or(&0),
        fd_counts.iter().max().unwrap_or(&0)
    );

    // Nothing the listener, the controller or serve holds is inherited across exec;
    // the processes they exec (the inputs) hold no TCP socket.
    for role in ["listen", "controller"] {
        for pid in server.pids_of(role) {
            let open = inheritable_fds(pid);
            assert!(
                open.is_empty(),
                "the {role} ({pid}) holds descriptors without close-on-exec: {open:?}"
            );
        }
    }
    for pid in server.pids_of("input") {
        let tcp = tcp_of(pid, &all);
        assert!(tcp.is_empty(), "input {pid} holds TCP sockets: {tcp:?}");
    }

    // A response that ends reaches EOF at its client, with later-forked workers alive.
    let deleted = Instant::now();
    let (st, v) = server.delete("/api/v1/streams/gone");
    assert_eq!(st, 204, "DELETE /api/v1/streams/gone: {v}");
    let eof = wait_until(
        Duration::from_secs(30),
        "EOF at the deleted stream's viewer",
        || doomed.closed().then(|| deleted.elapsed()),
    );
    eprintln!(
        "the deleted stream's viewer saw EOF {} ms after the DELETE was sent",
        eof.as_millis()
    );
    assert_eq!(doomed.why(), "closed by the server");
    assert!(
        eof < Duration::from_secs(5),
        "the deleted stream's viewer saw EOF only {eof:?} after the DELETE"
    );
    for v in &viewers {
        let b = v.bytes();
        v.wait_more_than(
            b,
            Duration::from_secs(20),
            "another viewer after the DELETE",
        );
    }
}
