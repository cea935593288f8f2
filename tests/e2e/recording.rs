//! Recording a stream to fragmented MP4 files: start and stop through the API, list,
//! download (whole and by range), delete; a recorder killed with SIGKILL leaves a file
//! that plays up to the kill.

use crate::harness::{signal, wait_until, Server, SMALL_DEMO};
use crate::media::{assert_decodes_clean, duration_of};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The stream's recording state from its status JSON.
fn recording_of(server: &Server) -> Value {
    server.stream("demo")["status"]["recording"].clone()
}

/// Waits for the recorder to report its file; returns its path relative to the dir.
fn wait_file(server: &Server, not: Option<&str>) -> String {
    wait_until(Duration::from_secs(20), "the recording's file", || {
        let r = recording_of(server);
        r["file"]
            .as_str()
            .filter(|f| Some(*f) != not)
            .map(str::to_string)
    })
}

fn listed(server: &Server) -> Vec<Value> {
    let (st, v) = server.get("/api/v1/recordings");
    assert_eq!(st, 200, "GET /api/v1/recordings: {v}");
    v["recordings"].as_array().cloned().unwrap_or_default()
}

#[test]
fn recording_by_api_lists_downloads_and_deletes() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));

    let start = Instant::now();
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "start recording: {v}");
    assert_eq!(v["recording"]["active"], true, "{v}");
    let file = wait_file(&server, None);
    std::thread::sleep(Duration::from_secs(5).saturating_sub(start.elapsed()));
    let elapsed = start.elapsed().as_secs_f64();
    let (st, v) = server.delete("/api/v1/streams/demo/recording");
    assert_eq!(st, 200, "stop recording: {v}");
    assert_eq!(v["recording"]["active"], false, "{v}");

    // Listed, with its size.
    let list = listed(&server);
    let entry = list
        .iter()
        .find(|r| r["path"] == file.as_str())
        .unwrap_or_else(|| panic!("{file} is not listed: {list:?}"));
    assert_eq!(entry["stream"], "demo");
    let size = entry["size"].as_u64().expect("a size");
    assert!(size > 0, "{entry}");

    // Downloaded whole, then by range.
    let url = format!("/api/v1/recordings/{file}");
    let whole = server.raw("GET", &url, None);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body.len() as u64, size);
    let local: PathBuf = server.dir.join("download.mp4");
    std::fs::write(&local, &whole.body).expect("write the download");
    let on_disk = std::fs::read(server.dir.join("recordings").join(&file)).expect("the file");
    assert_eq!(whole.body, on_disk, "the download differs from the file");

    let token = crate::harness::login_token(server.http_port);
    let part = crate::http::request(
        server.http_port,
        "GET",
        &url,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Range", "bytes=100-1099"),
        ],
        None,
    )
    .expect("range request");
    assert_eq!(part.status, 206, "{}", part.text());
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1099/{size}").as_str())
    );
    assert_eq!(part.body, whole.body[100..1100]);
    let tail = crate::http::request(
        server.http_port,
        "GET",
        &url,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Range", &format!("bytes={size}-")),
        ],
        None,
    )
    .expect("unsatisfiable range request");
    assert_eq!(tail.status, 416, "{}", tail.text());

    // It plays, and lasts as long as the recording ran.
    let local = local.to_str().expect("utf-8 path");
    assert_decodes_clean(local, None);
    let d = duration_of(local);
    assert!(
        (d - elapsed).abs() <= 1.0,
        "the file lasts {d:.2} s; the recording ran {elapsed:.2} s"
    );

    // Paths out of the directory are refused.
    for bad in [
        "/api/v1/recordings/../brume.json",
        "/api/v1/recordings/demo/../../brume.json",
        "/api/v1/recordings/%2e%2e/brume.json",
    ] {
        let r = server.raw("GET", bad, None);
        assert_eq!(r.status, 400, "GET {bad}: {}", r.text());
        let r = server.raw("DELETE", bad, None);
        assert_eq!(r.status, 400, "DELETE {bad}: {}", r.text());
    }
    assert!(server.config_path.exists());

    // Deleted.
    let (st, v) = server.delete(&url);
    assert_eq!(st, 204, "DELETE {url}: {v}");
    assert!(!listed(&server).iter().any(|r| r["path"] == file.as_str()));
    assert_eq!(server.raw("GET", &url, None).status, 404);
}

#[test]
fn recorder_killed_mid_recording_leaves_a_file_that_plays_to_the_kill() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));

    let start = Instant::now();
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "start recording: {v}");
    let file = wait_file(&server, None);
    let path = server.dir.join("recordings").join(&file);
    let pid = recording_of(&server)["pid"]
        .as_i64()
        .expect("a recorder pid") as i32;
    std::thread::sleep(Duration::from_secs(4).saturating_sub(start.elapsed()));

    // Kill it just after a fragment landed: nothing written may be lost.
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while size(&path) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(size(&path) > before, "the recording did not grow");
    signal(pid, libc::SIGKILL);
    let elapsed = start.elapsed().as_secs_f64();

    // The angel restarts the recorder, on a new file.
    let next = wait_file(&server, Some(&file));
    let r = recording_of(&server);
    assert_eq!(r["active"], true, "{r}");
    assert!(r["restarts"].as_u64() >= Some(1), "{r}");
    assert_ne!(r["pid"].as_i64(), Some(i64::from(pid)), "{r}");

    let p = path.to_str().expect("utf-8 path");
    assert_decodes_clean(p, None);
    let d = duration_of(p);
    assert!(
        (d - elapsed).abs() <= 1.0,
        "the killed recording lasts {d:.2} s; it ran {elapsed:.2} s"
    );

    let (st, v) = server.delete("/api/v1/streams/demo/recording");
    assert_eq!(st, 200, "stop recording: {v}");
    let list = listed(&server);
    for f in [&file, &next] {
        assert!(
            list.iter().any(|r| r["path"] == f.as_str()),
            "{f} is not listed: {list:?}"
        );
    }
}

/// A small tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).expect("mount point");
        // SAFETY: getuid takes no arguments.
        assert_eq!(
            unsafe { libc::getuid() },
            0,
            "this test mounts a small tmpfs to fill it up: run it as root (tests/run does)"
        );
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount a tmpfs on {}", at.display());
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn events_named(server: &Server, name: &str) -> Vec<Value> {
    let (_, v) = server.get("/api/v1/events?limit=500");
    v["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

/// A full disk: with a retention policy the oldest recordings make room and the
/// recording goes on; without one it stops cleanly with "disk full". Both fire
/// `disk.low`, and what was written plays.
#[test]
fn full_disk_fires_disk_low_and_retention_makes_room() {
    let config = r#"{"streams":{"demo":{"source":{"type":"testsrc","width":640,"height":360,"fps":15,"bitrate_kbps":4000,"jpeg_fps":0},"always_on":true}},
        "recording":{"dir":"rec","segment_s":10,"disk_low_mb":1,"retention":{"min_free_mb":1}}}"#;
    let server = Server::start(Some(config));
    let rec = server.dir.join("rec");
    let _fs = Tmpfs::mount(rec.clone(), "1536k");
    // An old recording that retention may delete: less than 1 MiB stays free.
    let old = rec.join("demo/2020-01-01/demo-000000.mp4");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, vec![0u8; 700 * 1024]).unwrap();
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "{v}");

    // The disk fills: the old file goes, the recording goes on.
    wait_until(
        Duration::from_secs(60),
        "retention to delete the old recording",
        || (!old.exists()).then_some(()),
    );
    wait_until(Duration::from_secs(30), "a disk.low event", || {
        events_named(&server, "disk.low").first().cloned()
    });
    let r = recording_of(&server);
    assert_eq!(
        r["active"], true,
        "with retention the recording goes on: {r}"
    );
    assert!(
        server.log().contains("retention deleted a recording"),
        "the deletion is logged"
    );

    // Without retention, the next full disk stops the recording cleanly.
    let mut c = server.config_on_disk();
    c["recording"].as_object_mut().unwrap().remove("retention");
    let (st, v) = server.put("/api/v1/config", &c.to_string());
    assert_eq!(st, 200, "{v}");
    let r = wait_until(
        Duration::from_secs(90),
        "the recording to stop on a full disk",
        || {
            let r = recording_of(&server);
            (r["active"] == false).then_some(r)
        },
    );
    assert_eq!(r["error"], "disk full", "{r}");
    let full = wait_until(Duration::from_secs(10), "disk.low with full=true", || {
        events_named(&server, "disk.low")
            .into_iter()
            .find(|e| e["full"] == true)
    });
    assert_eq!(full["stream"], "demo", "{full}");
    let ended = events_named(&server, "recording.ended");
    assert!(
        ended.iter().any(|e| e["reason"] == "disk full"),
        "{ended:?}"
    );
    // The file it was writing plays up to where the disk filled.
    let file = r["file"].as_str().expect("the last file").to_string();
    let path = rec.join(&file);
    let copy = server.dir.join("last.mp4");
    std::fs::copy(&path, &copy).expect("copy the last file");
    assert_decodes_clean(copy.to_str().unwrap(), None);
    assert!(duration_of(copy.to_str().unwrap()) > 0.5);
}

/// A synthetic camera that cannot keep up (here: frozen with SIGSTOP for 3 s, the worst
/// case of a loaded machine) loses frames, not time: the recording lasts as long as it
/// ran by the clock, and the missed frames show in the stream's `dropped_frames`.
#[test]
fn a_stalled_synthetic_camera_drops_frames_and_keeps_clock_time() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let input = server.pids_of("input");
    assert_eq!(input.len(), 1, "one input: {input:?}");
    let before = server.stream("demo")["status"]["dropped_frames"]
        .as_u64()
        .unwrap_or(0);

    let start = Instant::now();
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "start recording: {v}");
    let file = wait_file(&server, None);
    std::thread::sleep(Duration::from_secs(2));
    signal(input[0], libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    signal(input[0], libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(8).saturating_sub(start.elapsed()));
    let elapsed = start.elapsed().as_secs_f64();
    let (st, v) = server.delete("/api/v1/streams/demo/recording");
    assert_eq!(st, 200, "stop recording: {v}");

    let dropped = server.stream("demo")["status"]["dropped_frames"]
        .as_u64()
        .unwrap_or(0)
        - before;
    // 15 fps for 3 s: about 45 frames could not be made.
    assert!(
        (35..=60).contains(&dropped),
        "dropped_frames grew by {dropped} over a 3 s stall at 15 fps"
    );
    let path = server.dir.join("recordings").join(&file);
    let path = path.to_str().expect("utf-8 path");
    assert_decodes_clean(path, None);
    let d = duration_of(path);
    eprintln!("recording of {elapsed:.2} s with a 3 s stall: {d:.2} s, {dropped} frames dropped");
    assert!(
        (d - elapsed).abs() <= 1.0,
        "the file lasts {d:.2} s; the recording ran {elapsed:.2} s (a stall must not shorten it)"
    );
}

/// A recording started through the API stays wanted: a power cut (the whole tree
/// killed at once) or a restart resumes it in a new file, and the status says it was
/// resumed. Stopping it through the API is what ends it for good.
#[test]
fn an_api_recording_resumes_after_a_power_cut_and_a_restart() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "start recording: {v}");
    let first = wait_file(&server, None);
    std::thread::sleep(Duration::from_secs(3)); // a few fragments on disk

    // Power cut: every process killed at once.
    let server = server.kill_tree().restart();
    server.login();
    let second = wait_file(&server, Some(&first));
    let r = recording_of(&server);
    assert_eq!(r["active"], true, "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    std::thread::sleep(Duration::from_secs(3));

    // A clean restart (SIGTERM) resumes it too.
    let mut server = server;
    server.terminate(Duration::from_secs(20));
    let server = server.kill_tree().restart();
    server.login();
    let third = wait_file(&server, Some(&second));
    assert_ne!(third, first);
    std::thread::sleep(Duration::from_secs(3));

    // Stopped through the API: a restart leaves it stopped.
    let (st, v) = server.delete("/api/v1/streams/demo/recording");
    assert_eq!(st, 200, "stop recording: {v}");
    let server = server.kill_tree().restart();
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let r = recording_of(&server);
    assert_eq!(r["active"], false, "a stopped recording came back: {r}");
    // Every file of the recording plays.
    for f in [&first, &second, &third] {
        let p = server.dir.join("recordings").join(f);
        assert_decodes_clean(p.to_str().expect("utf-8"), None);
    }
}
