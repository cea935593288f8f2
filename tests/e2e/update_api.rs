//! Live update, the part before the root angel is asked to switch: the upload API
//! (`POST /api/v1/system/update`), its checks and refusals, the rollback call without
//! a previous version, and `brume update` on the command line, against the real
//! binary over real HTTP. Every refusal must leave everything as it was: the running
//! version, no `run/update.request`, no new file in `updates/`.
//!
//! The switch itself (hand-over, health check, re-exec, rollback) is tested in
//! `liveupdate.rs`; here a correctly signed upload is only seen to be taken (202) and
//! handed to the root angel.

use crate::harness::{login_token, wait_until, Server};
use crate::http::{self, Reply};
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UPLOAD: &str = "/api/v1/system/update";

fn brume_bytes() -> Vec<u8> {
    std::fs::read(env!("CARGO_BIN_EXE_brume")).expect("read the brume binary")
}

/// Uploads `body` as a new binary, with the token and the signature (base64) if any.
fn upload(port: u16, token: Option<&str>, body: &[u8], signature: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if let Some(s) = signature {
        headers.push(("X-Brume-Signature", s));
    }
    http::request(port, "POST", UPLOAD, &headers, Some(body)).expect("POST the update")
}

/// Announces a body of `length` bytes with `Expect: 100-continue` and sends none of
/// it: the answer must come without the server asking for the body.
fn announce(port: u16, token: Option<&str>, length: u64) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!(
        "POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\
         Expect: 100-continue\r\n"
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send the head");
    let raw = http::read_until_close(&mut s, Duration::from_secs(30)).expect("a reply");
    assert!(
        !raw.starts_with(b"HTTP/1.1 100"),
        "the server asked for the body: {}",
        http::preview(&raw)
    );
    http::parse_reply(&raw).unwrap_or_else(|| panic!("not HTTP: {}", http::preview(&raw)))
}

fn error_of(r: &Reply) -> String {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{}: not JSON: {}", r.status, r.text()));
    v["error"].as_str().unwrap_or("").to_string()
}

fn refused(r: &Reply, status: u16, wanted: &str) -> String {
    let e = error_of(r);
    assert_eq!(r.status, status, "{e}");
    assert!(e.contains(wanted), "{wanted:?} not in {e:?}");
    e
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn system(port: u16, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    let r = http::request(
        port,
        "GET",
        "/api/v1/system",
        &[("Authorization", &auth)],
        None,
    )
    .expect("GET /api/v1/system");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("system JSON")
}

/// The version running and the last update report.
fn before(port: u16, token: &str) -> (Value, Value) {
    let v = system(port, token);
    assert!(v["version"].as_str().is_some_and(|v| !v.is_empty()), "{v}");
    assert!(v.get("update").is_some(), "no update field: {v}");
    (v["version"].clone(), v["update"].clone())
}

/// Nothing changed: the same version runs, no update was asked for or reported, and
/// the updates directory holds no file.
fn nothing_changed(s: &Server, token: &str, before: &(Value, Value)) {
    let v = system(s.http_port, token);
    assert_eq!(v["version"], before.0);
    assert_eq!(v["update"], before.1, "an update was reported");
    assert!(
        !s.dir.join("run/update.request").exists(),
        "an update was requested"
    );
    let left = files_in(&s.dir.join("updates"));
    assert!(left.is_empty(), "files left in updates/: {left:?}");
}

/// A copy of the brume binary that says it is for another machine.
fn for_another_machine() -> (Vec<u8>, &'static str) {
    let mut b = brume_bytes();
    let little = b[5] == 1;
    let half = |v: u16| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let own = if little {
        u16::from_le_bytes([b[18], b[19]])
    } else {
        u16::from_be_bytes([b[18], b[19]])
    };
    let (m, name) = if own == 183 {
        (62, "x86-64")
    } else {
        (183, "aarch64")
    };
    b[18..20].copy_from_slice(&half(m));
    (b, name)
}

#[test]
fn an_anonymous_upload_is_refused_before_its_body() {
    let s = Server::start(Some(r#"{"streams":{}}"#));
    let port = s.http_port;
    // As curl sends a large body: the refusal comes instead of "100 Continue".
    let r = announce(port, None, 40 << 20);
    refused(&r, 401, "log in first");
    // A client that sends its body at once gets the same answer.
    let r = upload(port, None, &brume_bytes()[..256 * 1024], None);
    refused(&r, 401, "log in first");
    // A forged session is no better.
    let r = upload(port, Some("not-a-token"), b"\x7fELF", None);
    refused(&r, 401, "log in first");
    assert!(
        !s.dir.join("updates").exists(),
        "an anonymous upload reached the disk: {:?}",
        files_in(&s.dir.join("updates"))
    );
    let token = login_token(port);
    let was = before(port, &token);
    nothing_changed(&s, &token, &was);
}

#[test]
fn binaries_that_are_not_for_this_appliance_are_refused() {
    let s = Server::start(Some(r#"{"streams":{}}"#));
    let port = s.http_port;
    let token = login_token(port);
    let was = before(port, &token);

    let r = upload(port, Some(&token), b"#!/bin/sh\necho brume 9.9.9\n", None);
    refused(&r, 422, "not an executable (no ELF header)");

    let (foreign, name) = for_another_machine();
    let r = upload(port, Some(&token), &foreign, None);
    let e = refused(&r, 422, &format!("the file is an ELF for {name}"));
    assert!(e.contains("this appliance runs"), "{e}");

    // An ELF for this machine that runs but is not Brume: its words are quoted.
    let r = upload(
        port,
        Some(&token),
        &std::fs::read("/bin/true").unwrap(),
        None,
    );
    let e = refused(&r, 422, "not a Brume binary");
    assert!(e.contains("true (GNU coreutils)"), "{e}");

    // The body must be the binary itself, declared as such.
    let auth = format!("Bearer {token}");
    let r = http::request(
        port,
        "POST",
        UPLOAD,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    )
    .unwrap();
    refused(&r, 415, "application/octet-stream");
    let r = upload(port, Some(&token), b"", None);
    refused(&r, 400, "the body is empty");
    let r = upload(port, Some(&token), b"\x7fELF", Some("not base64!"));
    refused(&r, 400, "X-Brume-Signature");
    // Over the cap: refused from the head, without the body.
    let r = announce(port, Some(&token), 300 << 20);
    refused(&r, 413, "at most 256 MiB");

    // Nothing to roll back to.
    let r = http::request(
        port,
        "POST",
        "/api/v1/system/rollback",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    refused(&r, 409, "no previous version");

    nothing_changed(&s, &token, &was);
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs `file` with `key` as the README says, returns the signature's base64.
fn sign(key: &Path, file: &Path) -> (PathBuf, String) {
    use std::io::Read;
    let sig = file.with_extension("sig");
    openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        key.to_str().unwrap(),
        "-in",
        file.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
    ]);
    let mut raw = Vec::new();
    std::fs::File::open(&sig)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len(), 64, "an ed25519 signature");
    let b64 = Command::new("base64")
        .args(["-w0", sig.to_str().unwrap()])
        .output()
        .expect("base64");
    (sig, String::from_utf8(b64.stdout).unwrap())
}

#[test]
fn with_a_key_unsigned_and_wrongly_signed_updates_change_nothing() {
    let keys = std::env::temp_dir().join(format!("brume-e2e-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("key.pem");
    let other = keys.join("other.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        other.to_str().unwrap(),
    ]);
    let public = Command::new("openssl")
        .args(["pkey", "-in", key.to_str().unwrap(), "-pubout"])
        .output()
        .unwrap();
    let public = String::from_utf8(public.stdout).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let config = serde_json::json!({ "streams": {}, "update": { "public_key": public } });
    let s = Server::start(Some(&config.to_string()));
    let port = s.http_port;
    let token = login_token(port);
    let was = before(port, &token);

    let brume = keys.join("brume");
    std::fs::copy(env!("CARGO_BIN_EXE_brume"), &brume).unwrap();
    let binary = std::fs::read(&brume).unwrap();
    let r = upload(port, Some(&token), &binary, None);
    refused(&r, 422, "the update is not signed");

    let (_, by_other) = sign(&other, &brume);
    let r = upload(port, Some(&token), &binary, Some(&by_other));
    refused(&r, 422, "the signature does not match the configured key");

    // The right key's signature over other bytes (one byte changed).
    let (_, good) = sign(&key, &brume);
    let mut changed = binary.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    let r = upload(port, Some(&token), &changed, Some(&good));
    refused(&r, 422, "the signature does not match the configured key");
    nothing_changed(&s, &token, &was);

    // openssl's signature is what the appliance checks: a correctly signed file
    // passes the signature and is refused only for what it is (not Brume).
    let t = keys.join("true");
    std::fs::copy("/bin/true", &t).unwrap();
    let (t_sig, t_good) = sign(&key, &t);
    let r = upload(
        port,
        Some(&token),
        &std::fs::read(&t).unwrap(),
        Some(&t_good),
    );
    refused(&r, 422, "not a Brume binary");

    // The key cannot be changed through the API: an import keeps the file's.
    let auth = format!("Bearer {token}");
    let r = http::request(
        port,
        "PUT",
        "/api/v1/config",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"streams":{},"update":{}}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let on_disk = s.config_on_disk();
    assert_eq!(
        on_disk["update"]["public_key"].as_str(),
        Some(public.as_str())
    );
    let r = upload(port, Some(&token), &binary, None);
    refused(&r, 422, "the update is not signed");

    // The command line: the same checks, with the signature as a file.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brume"))
            .arg("update")
            .args(args)
            .arg("--config")
            .arg(&s.config_path)
            .env_remove("BRUME_RUN_DIR")
            .env_remove("BRUME_CONFIG")
            .output()
            .expect("brume update");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = cli(&[brume.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the update is not signed"), "{text}");
    let (other_sig, _) = sign(&other, &brume);
    let (code, text) = cli(&[
        brume.to_str().unwrap(),
        "--sig",
        other_sig.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("does not match the configured key"), "{text}");
    let (code, text) = cli(&[t.to_str().unwrap(), "--sig", t_sig.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not a Brume binary"), "{text}");
    let (code, text) = cli(&["--rollback"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no previous version"), "{text}");
    let (code, text) = cli(&["--bogus"]);
    assert_eq!(code, Some(2), "{text}");

    nothing_changed(&s, &token, &was);

    // A correctly signed Brume binary is taken: 202 once it is checked and staged, and
    // the root angel gets the request. (The switch itself is liveupdate.rs's to test;
    // here it is only waited out before the server stops.)
    let r = upload(port, Some(&token), &binary, Some(&good));
    assert_eq!(r.status, 202, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(v["state"], "updating", "{v}");
    assert_eq!(v["version"], was.0, "{v}");
    let version = was.0.as_str().unwrap();
    assert_eq!(
        files_in(&s.dir.join("updates")),
        vec![format!("brume-{version}")]
    );
    let auth = format!("Bearer {token}");
    let outcome = wait_until(Duration::from_secs(60), "the switch's outcome", || {
        let r = http::request(
            port,
            "GET",
            "/api/v1/system",
            &[("Authorization", &auth)],
            None,
        )
        .ok()
        .filter(|r| r.status == 200)?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let state = v["update"]["state"].as_str()?.to_string();
        (state != "updating").then_some(v["update"].clone())
    });
    assert_eq!(outcome["target_version"], was.0, "{outcome}");
    let _ = std::fs::remove_dir_all(&keys);
}
