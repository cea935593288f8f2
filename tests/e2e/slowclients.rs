//! Clients that hold resources instead of using them: thousands of unfinished request
//! heads, keep-alive connections fed a byte every 8 s, RTMP handshakes fed a byte
//! every 5 s, RTMP connections announcing huge messages, a storm of wrong publish
//! keys. The listener and the controller run with a soft limit of 1,024 open files
//! (systemd's default, set on them with prlimit once they run, so not even the root
//! angel's raise of the limit helps): the caps alone must keep them within it.
//! Throughout each attack the API answers and a viewer gets bytes, and the whole
//! tree's memory and descriptors stay bounded; the figures before, during and after
//! are printed.

use crate::harness::{tree, wait_until, Server, SMALL_DEMO};
use crate::http::Viewer;
use brume_proto::{PushClient, PushEvent};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The soft limit on open files of the listener and the controller (systemd's default).
const SERVER_NOFILE: u64 = 1024;
/// Bound on the sum of the resident memory of the server's tree during an attack.
/// Sums of RSS count the pages a forked process shares with the listener once per
/// process (PSS, printed too, counts them once); with the caps, at most 16 RTMP inputs
/// or 64 workers of one address are alive at once.
const RSS_BOUND_KIB: u64 = 400 * 1024;
/// Bound on the growth of the tree's proportional memory during an attack.
const PSS_GROWTH_KIB: u64 = 64 * 1024;

/// Raises this test process's own soft limit on open files to its hard limit.
fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// A TCP connection to 127.0.0.1:`port` from the source address `src` (any 127/8
/// address is this machine's).
fn connect_from(src: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a new socket we own at once; bind and connect get valid sockaddr_in
    // structs of the size passed; setsockopt a valid timeval.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let a = sin(src, 0);
        if libc::bind(fd, &a as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let b = sin(Ipv4Addr::LOCALHOST, port);
        if libc::connect(fd, &b as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

/// The `i`th of `n` attacker addresses spread over 127.0.`net`.x.
fn attacker(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, 1 + i as u8)
}

/// Processes, summed RSS and PSS (KiB) and open descriptors of the server's tree.
#[derive(Clone, Copy, Debug)]
struct Figures {
    procs: usize,
    rss_kib: u64,
    pss_kib: u64,
    fds: usize,
}

fn figures(server: &Server) -> Figures {
    let mut f = Figures {
        procs: 0,
        rss_kib: 0,
        pss_kib: 0,
        fds: 0,
    };
    for p in tree(server.serve_pid()) {
        let kib = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/{}/{file}", p.pid))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        f.procs += 1;
        f.rss_kib += kib("status", "VmRSS:");
        f.pss_kib += kib("smaps_rollup", "Pss:");
        f.fds += std::fs::read_dir(format!("/proc/{}/fd", p.pid))
            .map(|d| d.count())
            .unwrap_or(0);
    }
    f
}

fn report(test: &str, when: &str, f: Figures) {
    eprintln!(
        "[{test}] {when:>7}: {:4} processes, RSS sum {:7.1} MiB, PSS sum {:6.1} MiB, {:5} fds",
        f.procs,
        f.rss_kib as f64 / 1024.0,
        f.pss_kib as f64 / 1024.0,
        f.fds
    );
}

/// Starts a server and lowers the soft open-files limit of its listener and
/// controller to `SERVER_NOFILE` (their later children inherit it).
fn start_limited(config: &str) -> Server {
    raise_own_nofile();
    let server = Server::start(Some(config));
    for role in ["listen", "controller"] {
        for pid in server.pids_of(role) {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: prlimit reads and writes local structs; the process is ours.
            unsafe {
                libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim);
                lim.rlim_cur = SERVER_NOFILE.min(lim.rlim_max);
                assert_eq!(
                    libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()),
                    0,
                    "prlimit on the {role}"
                );
            }
        }
    }
    server
}

/// Starts the small demo with the server's soft open-files limit at 1,024, logs in,
/// and opens a viewer that is getting bytes.
fn start() -> (Server, Viewer) {
    let server = start_limited(SMALL_DEMO);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let viewer = Viewer::open(server.http_port, "/demo.ts");
    viewer.wait_more_than(0, Duration::from_secs(20), "first bytes");
    (server, viewer)
}

/// The API and a viewer, checked every 300 ms while an attack runs.
struct Watch {
    stop: AtomicBool,
    api_ok: Mutex<u32>,
    api_failed: Mutex<Vec<String>>,
    api_slowest: Mutex<Duration>,
    viewer_stall: Mutex<Duration>,
    peak: Mutex<Option<Figures>>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            stop: AtomicBool::new(false),
            api_ok: Mutex::new(0),
            api_failed: Mutex::new(Vec::new()),
            api_slowest: Mutex::new(Duration::ZERO),
            viewer_stall: Mutex::new(Duration::ZERO),
            peak: Mutex::new(None),
        }
    }

    fn run(&self, server: &Server, viewer: &Viewer) {
        let mut last_bytes = viewer.bytes();
        let mut last_change = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                server.get("/api/v1/system")
            }));
            let took = t.elapsed();
            match r {
                Ok((200, _)) => *self.api_ok.lock().unwrap() += 1,
                Ok((st, v)) => self.api_failed.lock().unwrap().push(format!("{st}: {v}")),
                Err(_) => self.api_failed.lock().unwrap().push("no answer".into()),
            }
            let mut s = self.api_slowest.lock().unwrap();
            *s = (*s).max(took);
            drop(s);
            let b = viewer.bytes();
            if b > last_bytes {
                last_bytes = b;
                last_change = Instant::now();
            }
            let mut st = self.viewer_stall.lock().unwrap();
            *st = (*st).max(last_change.elapsed());
            drop(st);
            let f = figures(server);
            let mut peak = self.peak.lock().unwrap();
            *peak = Some(match *peak {
                None => f,
                Some(p) => Figures {
                    procs: p.procs.max(f.procs),
                    rss_kib: p.rss_kib.max(f.rss_kib),
                    pss_kib: p.pss_kib.max(f.pss_kib),
                    fds: p.fds.max(f.fds),
                },
            });
            drop(peak);
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Asserts that the API and the viewer kept working; prints the figures.
    fn check(&self, test: &str, before: Figures, viewer: &Viewer) -> Figures {
        let ok = *self.api_ok.lock().unwrap();
        let failed = self.api_failed.lock().unwrap().clone();
        let slowest = *self.api_slowest.lock().unwrap();
        let stall = *self.viewer_stall.lock().unwrap();
        let peak = self.peak.lock().unwrap().expect("figures were taken");
        report(test, "peak", peak);
        eprintln!(
            "[{test}] API: {ok} answers, {} failures, slowest {:.0} ms; viewer: longest stall {:.0} ms, {} bytes",
            failed.len(),
            slowest.as_secs_f64() * 1000.0,
            stall.as_secs_f64() * 1000.0,
            viewer.bytes()
        );
        assert!(
            failed.is_empty(),
            "the API failed during the attack: {failed:?}"
        );
        assert!(ok >= 1, "the API never answered");
        // Generous for a loaded machine: the listener at its descriptor limit (what
        // these attacks did before the caps) kept API requests waiting over 10 s.
        assert!(
            slowest < Duration::from_secs(5),
            "an API request waited {slowest:?}"
        );
        assert!(!viewer.closed(), "the viewer was cut off: {}", viewer.why());
        assert!(
            stall < Duration::from_secs(8),
            "the viewer got nothing for {stall:?}"
        );
        assert!(
            peak.rss_kib < RSS_BOUND_KIB,
            "RSS sum {} KiB over the bound {RSS_BOUND_KIB} KiB",
            peak.rss_kib
        );
        assert!(
            peak.pss_kib < before.pss_kib + PSS_GROWTH_KIB,
            "PSS sum grew from {} to {} KiB",
            before.pss_kib,
            peak.pss_kib
        );
        peak
    }
}

/// Runs `attack` while a watcher checks the API and the viewer; returns what the
/// attack returned.
fn under_attack<T: Send>(
    test: &str,
    server: &Server,
    viewer: &Viewer,
    attack: impl FnOnce() -> T + Send,
) -> T {
    let before = figures(server);
    report(test, "before", before);
    let watch = Watch::new();
    /// Stops the watcher however the attack ends (a failed assertion too).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let out = std::thread::scope(|s| {
        s.spawn(|| watch.run(server, viewer));
        let _stop = Stop(&watch.stop);
        attack()
    });
    watch.check(test, before, viewer);
    // After: the tree is back near where it started.
    let after = wait_until(
        Duration::from_secs(20),
        "the tree to give back its descriptors",
        || {
            let f = figures(server);
            (f.fds <= before.fds + 16).then_some(f)
        },
    );
    report(test, "after", after);
    out
}

/// True once the server closed (or reset) the connection.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Waits until the server has closed every connection; returns how long it took.
fn all_closed(conns: &mut [TcpStream], timeout: Duration, what: &str) -> Duration {
    let t = Instant::now();
    let mut open: Vec<usize> = (0..conns.len()).collect();
    loop {
        open.retain(|i| !closed_by_server(&mut conns[*i]));
        if open.is_empty() {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "{what}: {} of {} connections still open after {timeout:?}",
            open.len(),
            conns.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn unfinished_request_heads_do_not_starve_the_api() {
    const TEST: &str = "2000 partial heads";
    let (server, viewer) = start();
    let port = server.http_port;
    under_attack(TEST, &server, &viewer, || {
        // 2,000 connections from 40 addresses (50 each, under the per-address cap),
        // each with half a request line, then nothing.
        let t = Instant::now();
        let mut conns = Vec::new();
        let mut refused_at_once = 0;
        for i in 0..2000 {
            let Ok(mut s) = connect_from(attacker(2, i % 40), port) else {
                refused_at_once += 1;
                continue;
            };
            if s.write_all(b"GET /api/v1/sys").is_err() {
                refused_at_once += 1;
            }
            conns.push(s);
        }
        eprintln!(
            "[{TEST}] {} connections opened in {:.1} s ({refused_at_once} failed at once)",
            conns.len(),
            t.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(2));
        // Each is answered 503 (no room) or 408 (its 10 s are up), never held longer.
        let took = all_closed(&mut conns, Duration::from_secs(25), TEST);
        eprintln!(
            "[{TEST}] the server closed all of them {:.1} s after the last was opened",
            took.as_secs_f64() + 2.0
        );
    });
}

#[test]
fn trickled_keep_alive_connections_are_capped_and_timed_out() {
    const TEST: &str = "1100 trickled keep-alive";
    let (server, viewer) = start();
    let port = server.http_port;
    let own = raise_own_nofile();
    let n = 1100.min(own.saturating_sub(200) as usize);
    let workers_before = server.pids_of("worker").len();
    let peak_workers = under_attack(TEST, &server, &viewer, || {
        // From one address: a complete keep-alive request for the playlist, then the
        // next request one byte every 8 s.
        let src = Ipv4Addr::new(127, 0, 0, 2);
        let mut conns = Vec::new();
        let t = Instant::now();
        for _ in 0..n {
            let Ok(mut s) = connect_from(src, port) else {
                continue;
            };
            let _ = s.write_all(
                b"GET /hls/demo/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
            );
            conns.push(s);
        }
        eprintln!(
            "[{TEST}] {} connections opened in {:.1} s",
            conns.len(),
            t.elapsed().as_secs_f64()
        );
        let next = b"GET /hls/demo/index.m3u8 HTTP/1.1\r\n";
        let started = Instant::now();
        let mut open: Vec<usize> = (0..conns.len()).collect();
        let mut sent = 0;
        let mut peak = 0;
        loop {
            open.retain(|i| !closed_by_server(&mut conns[*i]));
            peak = peak.max(
                server
                    .pids_of("worker")
                    .len()
                    .saturating_sub(workers_before),
            );
            if open.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} trickling connections still open after 30 s",
                open.len()
            );
            if started.elapsed() >= Duration::from_secs(8 * sent as u64) && sent < next.len() {
                for i in &open {
                    let _ = conns[*i].write_all(&next[sent..sent + 1]);
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "[{TEST}] at most {peak} workers at once (the rest refused with 503), all closed {:.1} s after the first byte of the next request; {sent} bytes trickled",
            started.elapsed().as_secs_f64()
        );
        peak
    });
    assert!(
        peak_workers <= 64,
        "{peak_workers} workers served one address at once (its cap is 64)"
    );
}

/// An RTMP handshake's first bytes: C0 and the start of C1.
const C0: [u8; 1] = [3];

#[test]
fn trickling_rtmp_handshakes_are_capped_and_timed_out() {
    const TEST: &str = "500 trickling RTMP handshakes";
    let (server, viewer) = start();
    let port = server.rtmp_port;
    let workers_before = server.pids_of("worker").len();
    let peak_inputs = under_attack(TEST, &server, &viewer, || {
        // 500 connections from 50 addresses; each sends C0, then one byte of C1
        // every 5 s.
        let mut conns: Vec<TcpStream> = (0..500)
            .filter_map(|i| connect_from(attacker(3, i % 50), port).ok())
            .collect();
        for s in &mut conns {
            let _ = s.write_all(&C0);
        }
        let started = Instant::now();
        let mut open: Vec<usize> = (0..conns.len()).collect();
        let mut sent = 0u64;
        let mut peak = 0;
        loop {
            open.retain(|i| !closed_by_server(&mut conns[*i]));
            peak = peak.max(
                server
                    .pids_of("worker")
                    .len()
                    .saturating_sub(workers_before),
            );
            if open.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} trickling RTMP handshakes still open after 30 s",
                open.len()
            );
            if started.elapsed() >= Duration::from_secs(5 * sent) {
                for i in &open {
                    let _ = conns[*i].write_all(&[0]);
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "[{TEST}] {} connections, at most {peak} RTMP input processes at once, all closed after {:.1} s",
            conns.len(),
            started.elapsed().as_secs_f64()
        );
        peak
    });
    assert!(
        peak_inputs <= 16,
        "{peak_inputs} RTMP inputs were not publishing at once (the cap is 16)"
    );
}

#[test]
fn huge_unfinished_rtmp_messages_are_refused_before_publishing() {
    const TEST: &str = "50 huge RTMP messages";
    let (server, viewer) = start();
    let port = server.rtmp_port;
    under_attack(TEST, &server, &viewer, || {
        // 50 connections from 50 addresses: a handshake, then a command message
        // announcing 3.9 MiB, of which as much as the server takes is sent.
        let mut conns = Vec::new();
        for i in 0..50 {
            let Ok(mut s) = connect_from(attacker(4, i), port) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut c0c1 = vec![3u8];
            c0c1.extend_from_slice(&[0u8; 1536]);
            if s.write_all(&c0c1).is_err() {
                continue;
            }
            let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
            if s.read_exact(&mut s0s1s2).is_err() {
                continue; // refused at the door (the cap on connections not publishing)
            }
            let _ = s.write_all(&s0s1s2[1..1537]);
            let len: u32 = 3_900_000;
            let l = len.to_be_bytes();
            // fmt 0, csid 3: timestamp 0, length, type 20 (AMF0 command), stream 0.
            let mut chunk = vec![0x03, 0, 0, 0, l[1], l[2], l[3], 0x14, 0, 0, 0, 0];
            chunk.extend_from_slice(&[0u8; 128]);
            let _ = s.write_all(&chunk);
            conns.push(s);
        }
        // Push the rest of the message in 128-byte chunks (type 3 headers) on all of
        // them, for as long as the server reads.
        let piece: Vec<u8> = std::iter::once(0xC3u8)
            .chain(std::iter::repeat_n(0u8, 128))
            .collect();
        let mut blob = Vec::new();
        for _ in 0..256 {
            blob.extend_from_slice(&piece);
        }
        let t = Instant::now();
        let mut pushed = 0u64;
        while t.elapsed() < Duration::from_secs(5) {
            for s in &mut conns {
                let _ = s.set_nonblocking(true);
                if let Ok(n) = s.write(&blob) {
                    pushed += n as u64;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "[{TEST}] {} connections got to send a message header; {:.1} MiB pushed in 5 s",
            conns.len(),
            pushed as f64 / (1 << 20) as f64
        );
        let took = all_closed(&mut conns, Duration::from_secs(20), TEST);
        eprintln!("[{TEST}] all closed {:.1} s later", took.as_secs_f64());
    });
}

enum Publish {
    Accepted,
    Rejected(String),
    Closed(String),
}

/// Publishes `path` (`live/<stream>?key=...`) from `src` as far as the server lets it.
fn try_publish(src: Ipv4Addr, port: u16, path: &str) -> Publish {
    let mut client = PushClient::new(&format!("rtmp://127.0.0.1:{port}/{path}")).expect("URL");
    let mut s = match connect_from(src, port) {
        Ok(s) => s,
        Err(e) => return Publish::Closed(e.to_string()),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 16384];
    loop {
        let out = client.take_output();
        if !out.is_empty() && s.write_all(&out).is_err() {
            return Publish::Closed("write failed".into());
        }
        if Instant::now() >= deadline {
            return Publish::Closed("no answer in time".into());
        }
        let n = match s.read(&mut buf) {
            Ok(0) => return Publish::Closed("closed".into()),
            Ok(n) => n,
            Err(e) => return Publish::Closed(e.to_string()),
        };
        match client.receive(&buf[..n]) {
            Ok(events) => match events.into_iter().next() {
                Some(PushEvent::Publishing) => return Publish::Accepted,
                Some(PushEvent::Rejected(why)) => return Publish::Rejected(why),
                None => {}
            },
            Err(e) => return Publish::Closed(e.to_string()),
        }
    }
}

#[test]
fn wrong_key_storm_is_refused_per_address() {
    const TEST: &str = "wrong-key storm";
    let cam = r#"{"streams":{"demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true},"cam":{"source":{"type":"rtmp","key":"s3cret"}}}}"#;
    let server = start_limited(cam);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let viewer = Viewer::open(server.http_port, "/demo.ts");
    viewer.wait_more_than(0, Duration::from_secs(20), "first bytes");
    let port = server.rtmp_port;
    let storm = Ipv4Addr::LOCALHOST;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    under_attack(TEST, &server, &viewer, || {
        let (mut rejected, mut refused) = (0, 0);
        for i in 0..30 {
            match try_publish(storm, port, &format!("live/cam?key=guess{i}")) {
                Publish::Rejected(_) => rejected += 1,
                Publish::Closed(_) => refused += 1,
                Publish::Accepted => panic!("a wrong key was accepted"),
            }
        }
        eprintln!(
            "[{TEST}] 30 wrong keys from {storm}: {rejected} answered \"rejected\", {refused} refused at the door"
        );
        assert_eq!(rejected, 5, "after 5 wrong keys the address is refused");
        // The right key from the refused address waits out the minute too ...
        assert!(
            matches!(
                try_publish(storm, port, "live/cam?key=s3cret"),
                Publish::Closed(_)
            ),
            "the refused address could publish"
        );
        // ... while another address publishes.
        match try_publish(other, port, "live/cam?key=s3cret") {
            Publish::Accepted => {}
            Publish::Rejected(why) | Publish::Closed(why) => {
                panic!("{other} could not publish with the right key: {why}")
            }
        }
        eprintln!("[{TEST}] {other} published with the right key meanwhile");
    });
    let logs = server.all_logs();
    assert!(
        logs.contains("RTMP address refused after wrong publish keys"),
        "no log line about the refused address"
    );
    assert!(!logs.contains("guess1"), "a publish key reached the logs");
}
