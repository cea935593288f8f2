//! `brume update FILE [--sig SIGFILE] [--config PATH]` and `brume update --rollback`:
//! the command-line side of a live update. It stages and checks the binary as the API
//! does (`update::verify`), asks the running root angel to switch, and follows
//! `run/update.json` until the outcome is known.

use crate::config::Config;
use crate::update::{self, verify, Request, Status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
usage: brume update FILE [--sig SIGFILE] [--config PATH]
       brume update --rollback [--config PATH]
    Switch the running appliance (brume serve on PATH's run directory) to the brume
    binary FILE without dropping its viewers, or back to the binary the last update
    replaced. FILE is copied into the updates directory next to PATH and checked
    first: an ELF for this machine, `FILE --version` prints `brume <version>`, and,
    when the configuration has update.public_key, SIGFILE is the ed25519 signature of
    FILE (64 raw bytes or their base64, as `openssl pkeyutl -sign -rawin` makes it).
    Then waits up to 60 s for the outcome, printing each step.

    --config PATH   the configuration file (default: $BRUME_CONFIG, else brume.json);
                    the run directory is $BRUME_RUN_DIR, else run/ next to PATH

    Exit status: 0 the appliance runs the version asked for (the new one, or for
    --rollback the previous one); 1 refused (the checks, or the root angel) or
    failed; 3 the new binary failed its health check and the appliance rolled back;
    4 no outcome within 60 s (see GET /api/v1/system); 2 wrong usage.
";

/// How long the command waits for the root angel's outcome.
const WAIT: Duration = Duration::from_secs(60);

struct Options {
    file: Option<PathBuf>,
    sig: Option<PathBuf>,
    config: PathBuf,
    rollback: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut file = None;
    let mut sig = None;
    let mut config = None;
    let mut rollback = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sig" | "--config" => {
                let v = it
                    .next()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{a} needs a value"))?;
                if a == "--sig" {
                    sig = Some(PathBuf::from(v));
                } else {
                    config = Some(PathBuf::from(v));
                }
            }
            "--rollback" => rollback = true,
            o if o.starts_with('-') => return Err(format!("unknown option {o:?}")),
            f if file.is_none() => file = Some(PathBuf::from(f)),
            f => return Err(format!("unexpected argument {f:?}")),
        }
    }
    match (&file, rollback) {
        (None, false) => return Err("the binary to update to is missing".into()),
        (Some(_), true) => return Err("--rollback takes no FILE".into()),
        _ => {}
    }
    if rollback && sig.is_some() {
        return Err("--rollback takes no --sig".into());
    }
    let config = config
        .or_else(|| std::env::var_os(crate::env::CONFIG).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("brume.json"));
    Ok(Options {
        file,
        sig,
        config,
        rollback,
    })
}

pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("brume update: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(o) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("brume update: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: Options) -> Result<u8, String> {
    let config_path = std::path::absolute(&o.config).map_err(|e| e.to_string())?;
    let run_dir = std::env::var_os(crate::env::RUN_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::env::default_run_dir(&config_path));
    let request = if o.rollback {
        rollback_request(&run_dir)?
    } else {
        let file = o.file.as_deref().expect("checked by parse");
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        let key = config.update.key().map_err(|e| e.to_string())?;
        let signature = match &o.sig {
            None => None,
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Some(verify::parse_signature(&bytes).map_err(|e| format!("{}: {e}", p.display()))?)
            }
        };
        let (exe, version) = stage(
            &config_path,
            &run_dir,
            file,
            signature.as_ref(),
            key.as_ref(),
        )?;
        println!("checked: brume {version}, staged as {}", exe.display());
        Request {
            exe,
            version,
            rollback: false,
        }
    };
    if let Some(s) = update::status(&run_dir).filter(|s| s.state == "updating") {
        eprintln!(
            "brume update: note: the last report is an update to {} in progress",
            s.target_version.as_deref().unwrap_or("?")
        );
    }
    let sent_ms = now_ms();
    update::send_request(&run_dir, &request)?;
    println!(
        "asked brume serve to switch to {} ({})",
        request.version,
        request.exe.display()
    );
    Ok(follow(&run_dir, &request, sent_ms))
}

/// Copies `file` into the updates directory and checks it there.
fn stage(
    config: &Path,
    run_dir: &Path,
    file: &Path,
    signature: Option<&[u8; 64]>,
    key: Option<&[u8; 32]>,
) -> Result<(PathBuf, String), String> {
    let mut src = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (staged, mut dst) = verify::staging_file(config).map_err(|e| e.to_string())?;
    let copied = std::io::copy(&mut src, &mut dst).and_then(|_| dst.sync_all());
    drop(dst);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&staged);
        return Err(format!(
            "cannot copy {} into {}: {e}",
            file.display(),
            staged.display()
        ));
    }
    verify::stage_and_verify(config, run_dir, &staged, signature, key)
        .map_err(|e| format!("{} refused: {e}", file.display()))
}

fn rollback_request(run_dir: &Path) -> Result<Request, String> {
    let s = update::status(run_dir).unwrap_or_default();
    match (s.previous_exe, s.previous_version) {
        (Some(exe), Some(version)) if exe.is_file() => Ok(Request {
            exe,
            version,
            rollback: true,
        }),
        (Some(exe), Some(version)) => Err(format!(
            "the previous version {version} is gone ({} no longer exists)",
            exe.display()
        )),
        _ => Err(format!(
            "there is no previous version to roll back to (no update has replaced one; {})",
            update::status_file(run_dir).display()
        )),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Prints the root angel's reports on this request until its outcome; returns the
/// exit status (see USAGE).
fn follow(run_dir: &Path, request: &Request, sent_ms: u64) -> u8 {
    let deadline = Instant::now() + WAIT;
    let mut last: Option<Status> = None;
    loop {
        // Only reports made after the request count (the file holds the last outcome
        // until the root angel takes this one).
        let now =
            update::status(run_dir).filter(|s| s.started_ms.max(s.finished_ms) + 1000 >= sent_ms);
        if let Some(s) = now.filter(|s| last.as_ref() != Some(s)) {
            println!("{}", describe(&s));
            let code = match s.state.as_str() {
                "updated" if s.version == request.version => Some(0),
                "updated" => Some(1),
                "rolled-back" => Some(3),
                "failed" => Some(1),
                _ => None,
            };
            if let Some(c) = code {
                return c;
            }
            last = Some(s);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "brume update: no outcome within {} s; GET /api/v1/system or {} tells it later",
                WAIT.as_secs(),
                update::status_file(run_dir).display()
            );
            return 4;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn describe(s: &Status) -> String {
    let target = s.target_version.as_deref().unwrap_or("?");
    match s.state.as_str() {
        "updating" => format!("updating: {} → {target}", s.version),
        "updated" => match s.handover_ms {
            Some(ms) => format!("updated: brume {} runs (hand-over {ms} ms)", s.version),
            None => format!("updated: brume {} runs", s.version),
        },
        "rolled-back" => format!(
            "rolled back to brume {}: {}",
            s.version,
            s.reason
                .as_deref()
                .unwrap_or("the new binary failed its health check")
        ),
        "failed" => format!(
            "failed: {}",
            s.reason.as_deref().unwrap_or("the request was refused")
        ),
        other => format!("{other}: brume {}", s.version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&args(&["new", "--sig", "new.sig", "--config", "/d/b.json"])).unwrap();
        assert_eq!(o.file.as_deref(), Some(Path::new("new")));
        assert_eq!(o.sig.as_deref(), Some(Path::new("new.sig")));
        assert_eq!(o.config, Path::new("/d/b.json"));
        assert!(!o.rollback);
        let o = parse(&args(&["--rollback", "--config", "/d/b.json"])).unwrap();
        assert!(o.rollback && o.file.is_none());
        for bad in [
            &[][..],
            &["--rollback", "new"][..],
            &["new", "--sig"][..],
            &["new", "--force"][..],
            &["a", "b"][..],
            &["--rollback", "--sig", "x"][..],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outcomes_are_described() {
        let s = Status {
            state: "rolled-back".into(),
            version: "1.0".into(),
            target_version: Some("1.0".into()),
            reason: Some("the new controller exited (status 101)".into()),
            ..Status::default()
        };
        assert_eq!(
            describe(&s),
            "rolled back to brume 1.0: the new controller exited (status 101)"
        );
    }
}
