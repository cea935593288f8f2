//! Started by systemd with Type=notify and WatchdogSec: brume serve says READY=1,
//! pings the watchdog at half its period, says STOPPING=1 on SIGTERM, and only the
//! root angel speaks (children do not inherit the socket).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn notifies_systemd_ready_watchdog_and_stopping() {
    let dir = std::env::temp_dir().join(format!("brume-e2e-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.join("brume.json"), br#"{"streams":{}}"#).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_brume"))
        .args(["serve", "--config"])
        .arg(dir.join("brume.json"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--rtmp", "off"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("BRUME_RTSP_LISTEN", "off")
        .env("WATCHDOG_USEC", "1000000")
        .env("BRUME_ADMIN_PASSWORD", "notify-test")
        .env(
            "BRUME_SHM_PREFIX",
            format!("brumee2enotify{}t", std::process::id()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    // READY first, then at least three watchdog pings (every 0.5 s).
    while seen.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "messages so far: {seen:?}"
        );
        let (n, _) = sock.recv_from(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen[0].starts_with("READY=1"), "first message: {seen:?}");
    // The controller and the listener do not carry systemd's variables.
    let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let kids: Vec<&str> = kids.split_whitespace().collect();
    assert!(kids.len() >= 2, "children of serve: {kids:?}");
    for k in kids {
        let env = std::fs::read(format!("/proc/{k}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&env).contains("NOTIFY_SOCKET="),
            "child {k} inherited NOTIFY_SOCKET"
        );
    }
    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("STOPPING=1 after SIGTERM");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
