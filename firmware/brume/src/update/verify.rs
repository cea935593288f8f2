//! Checks a new binary before anything changes: it is an ELF for this machine, it
//! runs and says it is Brume, and (when the configuration names a public key) its
//! detached ed25519 signature verifies. Only then is it renamed to
//! `updates/brume-<version>`; on any failure it is removed and nothing else changes.
//!
//! The checks run in this order on purpose: the signature is checked before the file
//! is ever executed, so with a key configured an unsigned binary never runs here.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `FILE --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// What `FILE --version` may print that is kept (and quoted in an error).
const OUTPUT_CAP: usize = 4096;

/// Staging files left by an upload that never finished (a controller killed mid-way)
/// are removed once they are this old (uploads have a 10-minute deadline).
const STALE_UPLOAD: Duration = Duration::from_secs(15 * 60);

/// Why a staged binary was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The file is not a binary this appliance can switch to (the client's fault).
    Refused(String),
    /// Staging itself failed (disk, permissions): not the file's fault.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused(m) | Error::Io(m) => f.write_str(m),
        }
    }
}

/// The updates directory for the configuration at `config`, created (0700) if missing.
pub fn ensure_updates_dir(config: &Path) -> std::io::Result<PathBuf> {
    let dir = super::updates_dir(config);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.display()),
            ))
        }
    }
    Ok(dir)
}

/// A new, empty staging file in the updates directory (0600, a name no one else
/// uses), for an upload or a copy to be written into. Leftovers of uploads that never
/// finished are removed on the way.
pub fn staging_file(config: &Path) -> std::io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = ensure_updates_dir(config)?;
    remove_stale_uploads(&dir);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".upload-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok((path, file))
}

fn remove_stale_uploads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(".upload-")
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_UPLOAD);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Checks the staged binary `staged` (a file in `updates_dir(config)`) and, when it
/// passes, renames it to `updates/brume-<version>` (0755). Returns that path and the
/// version the binary printed. On any failure `staged` is removed.
///
/// `signature` is the detached ed25519 signature over the whole file; it is required
/// when `public_key` is given and ignored otherwise. `run_dir` is the appliance's run
/// directory: a different build under the name of the binary running now or of the
/// one a rollback goes back to (its `update.json`) is refused, since replacing either
/// file would take away the way back.
pub fn stage_and_verify(
    config: &Path,
    run_dir: &Path,
    staged: &Path,
    signature: Option<&[u8; 64]>,
    public_key: Option<&[u8; 32]>,
) -> Result<(PathBuf, String), Error> {
    let result = verify_and_rename(config, run_dir, staged, signature, public_key);
    if result.is_err() {
        let _ = std::fs::remove_file(staged);
    }
    result
}

fn verify_and_rename(
    config: &Path,
    run_dir: &Path,
    staged: &Path,
    signature: Option<&[u8; 64]>,
    public_key: Option<&[u8; 32]>,
) -> Result<(PathBuf, String), Error> {
    let dir = super::updates_dir(config);
    if staged.parent() != Some(dir.as_path()) {
        return Err(Error::Io(format!(
            "{} is not in the updates directory {}",
            staged.display(),
            dir.display()
        )));
    }
    let own = read_head(Path::new("/proc/self/exe"))
        .map_err(|e| Error::Io(format!("cannot read this program's own header: {e}")))?;
    let head = read_head(staged).map_err(|e| Error::Io(format!("{}: {e}", staged.display())))?;
    check_elf(&head, &own).map_err(Error::Refused)?;
    if let Some(key) = public_key {
        let Some(sig) = signature else {
            return Err(Error::Refused(
                "the update is not signed, and this appliance takes only signed updates \
                 (update.public_key in the configuration)"
                    .into(),
            ));
        };
        check_signature(staged, sig, key)?;
    } else if signature.is_some() {
        tracing::info!("the update is signed, but no update.public_key is configured to check it");
    }
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::Io(format!("{}: {e}", staged.display())))?;
    let version = run_version(staged).map_err(Error::Refused)?;
    let target = dir.join(format!("brume-{version}"));
    if let Some(what) = needed_elsewhere(&target, staged, run_dir) {
        return Err(Error::Refused(format!(
            "{} is {what}, and the upload is another build of brume {version}: give the new \
             build another version or a build stamp",
            target.display()
        )));
    }
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::Io(format!("{}: {e}", staged.display())))?;
    // The file's bytes reach the disk before its name does: a power cut leaves the
    // old binary of that name or the whole new one.
    File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Io(format!("{}: {e}", staged.display())))?;
    std::fs::rename(staged, &target)
        .map_err(|e| Error::Io(format!("{}: {e}", target.display())))?;
    let _ = File::open(&dir).and_then(|d| d.sync_all());
    Ok((target, version))
}

/// What `target` is for, when it exists, differs from `staged` and must not be
/// replaced: the binary running now or the one a rollback goes back to. (The same
/// bytes again replace nothing.)
fn needed_elsewhere(target: &Path, staged: &Path, run_dir: &Path) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let t = std::fs::metadata(target).ok()?;
    let status = super::status(run_dir);
    let candidates = [
        (
            Some(PathBuf::from("/proc/self/exe")),
            "the binary running now",
        ),
        (
            status.as_ref().map(|s| s.exe.clone()),
            "the binary running now",
        ),
        (
            status.as_ref().and_then(|s| s.previous_exe.clone()),
            "the binary a rollback goes back to",
        ),
    ];
    let what = candidates.into_iter().find_map(|(p, what)| {
        let m = std::fs::metadata(p?).ok()?;
        (m.dev() == t.dev() && m.ino() == t.ino()).then_some(what)
    })?;
    (!same_bytes(target, staged)).then_some(what)
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (Ok(fa), Ok(fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    match (fa.metadata(), fb.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    let (mut ra, mut rb) = (std::io::BufReader::new(fa), std::io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = match ra.read(&mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return true;
        }
        if rb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The first bytes of an ELF file that say what it runs on: `e_ident`, `e_type` and
/// `e_machine`.
const HEAD: usize = 20;

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD);
    File::open(path)?.take(HEAD as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// What an ELF header says about the machine a file runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ElfId {
    /// 1: 32-bit, 2: 64-bit.
    class: u8,
    /// 1: little-endian, 2: big-endian.
    data: u8,
    /// `e_type`: 2 an executable, 3 a position-independent one (or a library).
    kind: u16,
    machine: u16,
}

fn parse_elf(head: &[u8]) -> Result<ElfId, String> {
    if head.len() < HEAD || &head[..4] != b"\x7fELF" {
        return Err("not an executable (no ELF header)".into());
    }
    let (class, data) = (head[4], head[5]);
    if !matches!(class, 1 | 2) || !matches!(data, 1 | 2) {
        return Err("not an executable (a damaged ELF header)".into());
    }
    let half = |i: usize| {
        let b = [head[i], head[i + 1]];
        if data == 1 {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    Ok(ElfId {
        class,
        data,
        kind: half(16),
        machine: half(18),
    })
}

fn machine_name(class: u8, machine: u16) -> String {
    let wide = class == 2;
    match machine {
        3 => "x86".into(),
        62 => "x86-64".into(),
        40 => "arm".into(),
        183 => "aarch64".into(),
        243 if wide => "riscv64".into(),
        243 => "riscv32".into(),
        8 => "mips".into(),
        20 => "powerpc".into(),
        21 => "powerpc64".into(),
        22 => "s390".into(),
        2 => "sparc".into(),
        43 => "sparc64".into(),
        258 => "loongarch".into(),
        m => format!("machine {m}"),
    }
}

/// What `id` runs on, with the word size and byte order spelled out when they are
/// what tells it from `other`.
fn describe(id: ElfId, other: ElfId) -> String {
    let mut s = String::new();
    if id.data != other.data {
        s.push_str(if id.data == 1 {
            "little-endian "
        } else {
            "big-endian "
        });
    }
    if id.class != other.class && id.machine == other.machine {
        s.push_str(if id.class == 1 { "32-bit " } else { "64-bit " });
    }
    s.push_str(&machine_name(id.class, id.machine));
    s
}

/// The candidate's header (`head`) against this program's (`own`).
fn check_elf(head: &[u8], own: &[u8]) -> Result<(), String> {
    let theirs = parse_elf(head)?;
    let ours = parse_elf(own).map_err(|e| format!("this program's own header: {e}"))?;
    if (theirs.class, theirs.data, theirs.machine) != (ours.class, ours.data, ours.machine) {
        return Err(format!(
            "the file is an ELF for {}, this appliance runs {}",
            describe(theirs, ours),
            describe(ours, theirs)
        ));
    }
    match theirs.kind {
        2 | 3 => Ok(()),
        1 => Err("not an executable (an ELF object file)".into()),
        4 => Err("not an executable (an ELF core dump)".into()),
        k => Err(format!("not an executable (ELF type {k})")),
    }
}

/// A signature as given: the 64 raw bytes, or their base64 (padding and surrounding
/// white space allowed), as `openssl pkeyutl -sign -rawin` writes it or `base64` turns it.
pub fn parse_signature(bytes: &[u8]) -> Result<[u8; 64], String> {
    use base64ct::{Base64, Encoding};
    if let Ok(raw) = <[u8; 64]>::try_from(bytes) {
        return Ok(raw);
    }
    let text = std::str::from_utf8(bytes)
        .map(str::trim)
        .map_err(|_| "the signature is neither 64 bytes nor base64".to_string())?;
    let mut out = [0u8; 64];
    match Base64::decode(text, &mut out) {
        Ok(d) if d.len() == 64 => Ok(out),
        Ok(d) => Err(format!(
            "the signature has {} bytes; an ed25519 signature has 64",
            d.len()
        )),
        Err(_) => Err("the signature is neither 64 bytes nor base64".into()),
    }
}

/// The detached signature over the whole file, read through a mapping (a binary of a
/// few tens of MiB is never copied into memory).
fn check_signature(path: &Path, sig: &[u8; 64], key: &[u8; 32]) -> Result<(), Error> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| Error::Io("update.public_key is not an ed25519 public key".into()))?;
    let file = File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    // SAFETY: the file is this process's own staging file in a 0700 directory that
    // only Brume writes; nothing truncates or rewrites it while it is mapped, and the
    // mapping is only read.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(&map, &sig).map_err(|_| {
        Error::Refused(
            "the signature does not match the configured key (update.public_key): the \
             file is not the one that was signed, or another key signed it"
                .into(),
        )
    })
}

/// The version a staged binary reports, None if it does not run or is not Brume (a
/// fresh start deciding which binary to run, see `boot.rs`).
pub fn reported_version(path: &Path) -> Option<String> {
    run_version(path).ok()
}

/// Runs `path --version` and returns the version it printed (`brume <version>`).
/// The program gets an empty environment, no stdin, stdout and stderr on one pipe and
/// no other descriptor; it (and anything it started) is killed after 5 s.
fn run_version(path: &Path) -> Result<String, String> {
    let (output, status) = run_captured(path, &["--version"], VERSION_TIMEOUT)?;
    let text = String::from_utf8_lossy(&output);
    let quoted = || {
        let t = text.trim();
        let mut q: String = t.chars().take(200).collect();
        if q.len() < t.len() {
            q.push('…');
        }
        format!("{q:?}")
    };
    let status = match status {
        Ran::Exited(0) => None,
        Ran::Exited(code) => Some(format!("exit status {code}")),
        Ran::Signalled(sig) => Some(format!("killed by signal {sig}")),
        Ran::TimedOut => Some(format!(
            "no exit within {} s; killed",
            VERSION_TIMEOUT.as_secs()
        )),
    };
    let version = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .strip_prefix("brume ")
        .filter(|v| valid_version(v));
    match (status, version) {
        (None, Some(v)) => Ok(v.to_string()),
        (Some(st), _) => Err(format!(
            "the file does not run as Brume: `--version` ended with {st} and printed {}",
            quoted()
        )),
        (None, None) => Err(format!(
            "the file is not a Brume binary: `--version` printed {}, not \"brume <version>\"",
            quoted()
        )),
    }
}

/// A version names a file (`brume-<version>`): 1 to 100 printable ASCII characters
/// (the package version and a build stamp), no slash, not starting with a dot.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
        && !v.starts_with('.')
}

#[derive(Debug, PartialEq, Eq)]
enum Ran {
    Exited(i32),
    Signalled(i32),
    TimedOut,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs `path args…` as described at `run_version`; returns what it printed (at most
/// `OUTPUT_CAP` bytes) and how it ended.
fn run_captured(path: &Path, args: &[&str], timeout: Duration) -> Result<(Vec<u8>, Ran), String> {
    let (read, write) = pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let write2 = write
        .try_clone()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    // The highest descriptor to mark close-on-exec where close_range is missing.
    let max_fd = {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
        if ok {
            rl.rlim_cur.min(65_536) as i32
        } else {
            1024
        }
    };
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls (syscall, fcntl).
    // Every descriptor above stdio becomes close-on-exec (not closed: the standard
    // library's own exec-error pipe must stay open until the exec).
    unsafe {
        cmd.pre_exec(move || {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let r = libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            );
            if r != 0 {
                for fd in 3..max_fd {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        });
    }
    let mut child = spawn_retrying(&mut cmd).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the file does not run on this appliance ({e}: a program interpreter or \
                 library it needs is missing)"
            )
        } else {
            format!("the file does not run on this appliance: {e}")
        }
    })?;
    // The write ends live in `cmd`: drop it so the pipe ends when the program does.
    drop(cmd);
    let pid = child.id() as i32;
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    let mut exited = false;
    let mut timed_out = false;
    let kill_group = || {
        // SAFETY: kill takes no pointers. The group is the child's own (process_group
        // above), and the child is not reaped yet, so the id is not reused.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    };
    while !(eof && exited) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = !exited;
            kill_group();
            break;
        }
        if !eof {
            let mut pfd = libc::pollfd {
                fd: read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(50) as i32;
            // SAFETY: poll reads and writes the one pollfd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                // SAFETY: read writes at most buf.len() bytes into the buffer we own.
                let got =
                    unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    eof = got == 0
                        || !matches!(
                            std::io::Error::last_os_error().raw_os_error(),
                            Some(libc::EINTR | libc::EAGAIN)
                        );
                } else {
                    let got = got as usize;
                    let room = OUTPUT_CAP.saturating_sub(output.len());
                    output.extend_from_slice(&buf[..got.min(room)]);
                }
            }
        } else {
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        if !exited && has_exited(pid) {
            exited = true;
            // Whatever it started goes with it (and releases the pipe).
            kill_group();
        }
    }
    if !exited {
        kill_group();
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the file's --version: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    let ran = if timed_out {
        Ran::TimedOut
    } else if let Some(code) = status.code() {
        Ran::Exited(code)
    } else {
        Ran::Signalled(status.signal().unwrap_or(0))
    };
    Ok((output, ran))
}

/// True once the child `pid` has ended, without reaping it (its id stays reserved,
/// so signalling its group stays safe).
fn has_exited(pid: i32) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo we own; WNOWAIT leaves the child
    // to be reaped by Child::wait.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

/// Spawns, retrying briefly on ETXTBSY: a descriptor of the freshly written file may
/// still be open for writing in a child that another thread is forking right now.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    fn own_head() -> Vec<u8> {
        read_head(Path::new("/proc/self/exe")).unwrap()
    }

    fn set_machine(head: &mut [u8], machine: u16) {
        let b = if head[5] == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        head[18..20].copy_from_slice(&b);
    }

    fn own_machine() -> String {
        let id = parse_elf(&own_head()).unwrap();
        machine_name(id.class, id.machine)
    }

    #[test]
    fn this_program_passes_its_own_check() {
        let own = own_head();
        check_elf(&own, &own).unwrap();
    }

    #[test]
    fn another_machine_is_named() {
        let own = own_head();
        let mut other = own.clone();
        let (foreign, name) = if parse_elf(&own).unwrap().machine == 183 {
            (62, "x86-64")
        } else {
            (183, "aarch64")
        };
        set_machine(&mut other, foreign);
        let e = check_elf(&other, &own).unwrap_err();
        assert_eq!(
            e,
            format!(
                "the file is an ELF for {name}, this appliance runs {}",
                own_machine()
            )
        );
        set_machine(&mut other, 9999);
        assert!(check_elf(&other, &own)
            .unwrap_err()
            .contains("an ELF for machine 9999"));
    }

    #[test]
    fn word_size_and_byte_order_are_named_when_they_differ() {
        let own = own_head();
        let mut other = own.clone();
        other[4] = if own[4] == 1 { 2 } else { 1 };
        let e = check_elf(&other, &own).unwrap_err();
        assert!(e.contains("-bit "), "{e}");
        let mut other = own.clone();
        let machine = parse_elf(&own).unwrap().machine;
        other[5] = if own[5] == 1 { 2 } else { 1 };
        set_machine(&mut other, machine);
        let e = check_elf(&other, &own).unwrap_err();
        assert!(e.contains("-endian "), "{e}");
        assert!(e.contains(&own_machine()), "{e}");
    }

    #[test]
    fn not_an_elf_or_not_an_executable() {
        let own = own_head();
        for bad in [&b""[..], b"#!/bin/sh\necho brume 9\n", b"\x7fELF"] {
            assert_eq!(
                check_elf(bad, &own).unwrap_err(),
                "not an executable (no ELF header)"
            );
        }
        let mut broken = own.clone();
        broken[4] = 7;
        assert!(check_elf(&broken, &own).unwrap_err().contains("damaged"));
        let mut object = own.clone();
        let one = if own[5] == 1 { [1, 0] } else { [0, 1] };
        object[16..18].copy_from_slice(&one);
        assert_eq!(
            check_elf(&object, &own).unwrap_err(),
            "not an executable (an ELF object file)"
        );
    }

    #[test]
    fn versions_name_files() {
        for ok in ["0.1.0", "0.2.0+2024-05-01T10:00", "1.0.0-rc.1+abc_def"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["", "../x", "0.1/evil", ".hidden", "a b", "tab\there"] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn signatures_raw_or_base64() {
        let raw = [7u8; 64];
        assert_eq!(parse_signature(&raw).unwrap(), raw);
        use base64ct::{Base64, Encoding};
        let text = format!("{}\n", Base64::encode_string(&raw));
        assert_eq!(parse_signature(text.as_bytes()).unwrap(), raw);
        assert!(parse_signature(b"AAAA")
            .unwrap_err()
            .contains("has 3 bytes"));
        assert!(parse_signature(b"not base64!").is_err());
    }

    /// A scratch configuration directory with an updates dir.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("brume-verify-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn config(&self) -> PathBuf {
            self.0.join("brume.json")
        }
        fn run_dir(&self) -> PathBuf {
            self.0.join("run")
        }
        fn stage(&self, bytes: &[u8]) -> PathBuf {
            use std::io::Write;
            let (path, mut f) = staging_file(&self.config()).unwrap();
            f.write_all(bytes).unwrap();
            path
        }
        fn files(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.0.join("updates"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_updates_dir_is_private() {
        let s = Scratch::new("dir");
        let dir = ensure_updates_dir(&s.config()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ensure_updates_dir(&s.config()).unwrap();
    }

    #[test]
    fn the_signature_is_checked_before_the_file_runs() {
        let s = Scratch::new("sig");
        let signing = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
        let key = signing.verifying_key().to_bytes();
        // An ELF header of this machine followed by junk: it would fail to run, so a
        // signature error proves the signature came first.
        let mut bytes = own_head();
        bytes.extend_from_slice(&[0u8; 4000]);
        let good = signing.sign(&bytes).to_bytes();

        let staged = s.stage(&bytes);
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, None, Some(&key)).unwrap_err();
        assert!(e.to_string().contains("the update is not signed"), "{e}");
        assert!(!staged.exists(), "a refused file is removed");

        let staged = s.stage(&bytes);
        let mut bad = good;
        bad[3] ^= 1;
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, Some(&bad), Some(&key))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("the signature does not match the configured key"),
            "{e}"
        );
        assert!(!staged.exists());

        let other = ed25519_dalek::SigningKey::from_bytes(&[43u8; 32]);
        let staged = s.stage(&bytes);
        let by_other = other.sign(&bytes).to_bytes();
        let e = stage_and_verify(
            &s.config(),
            &s.run_dir(),
            &staged,
            Some(&by_other),
            Some(&key),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");

        // The right signature passes the signature check and reaches the run check.
        let staged = s.stage(&bytes);
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, Some(&good), Some(&key))
            .unwrap_err();
        assert!(e.to_string().contains("run"), "{e}");
        assert!(s.files().is_empty(), "{:?}", s.files());
    }

    #[test]
    fn a_program_that_is_not_brume_is_refused_quoting_it() {
        let s = Scratch::new("run");
        // /bin/echo prints its argument: "--version" in GNU's builtin-less echo, or
        // its own version; either way not "brume <version>".
        let echo = std::fs::read("/bin/echo").unwrap();
        let staged = s.stage(&echo);
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, None, None).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(m) if m.contains("not a Brume binary") && m.contains("printed \"")),
            "{e}"
        );
        let f = std::fs::read("/bin/false").unwrap();
        let staged = s.stage(&f);
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, None, None).unwrap_err();
        assert!(e.to_string().contains("exit status 1"), "{e}");
        assert!(s.files().is_empty(), "{:?}", s.files());
    }

    #[test]
    fn this_binary_is_staged_under_its_version() {
        // The test binary is not brume: a copy of the built brume binary when there
        // is one next to it (cargo builds it for the e2e tests), else skip.
        let exe = std::env::current_exe().unwrap();
        let Some(brume) = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("brume"))
            .filter(|p| p.is_file())
        else {
            eprintln!("no brume binary next to the test binary: skipped");
            return;
        };
        let s = Scratch::new("ok");
        let staged = s.stage(&std::fs::read(&brume).unwrap());
        let (path, version) =
            stage_and_verify(&s.config(), &s.run_dir(), &staged, None, None).unwrap();
        assert_eq!(version, super::super::version());
        assert_eq!(path, s.0.join("updates").join(format!("brume-{version}")));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(s.files(), vec![format!("brume-{version}")]);

        // The same bytes again replace the file with itself.
        let staged = s.stage(&std::fs::read(&brume).unwrap());
        stage_and_verify(&s.config(), &s.run_dir(), &staged, None, None).unwrap();
        // Another build of that version may not replace the binary a rollback goes
        // back to (nor the one running).
        std::fs::create_dir_all(s.run_dir()).unwrap();
        super::super::write_status(
            &s.run_dir(),
            &super::super::Status {
                state: "updated".into(),
                previous_exe: Some(path.clone()),
                ..Default::default()
            },
        );
        let mut other = std::fs::read(&brume).unwrap();
        other.extend_from_slice(b"another build");
        let staged = s.stage(&other);
        let e = stage_and_verify(&s.config(), &s.run_dir(), &staged, None, None).unwrap_err();
        assert!(
            e.to_string().contains("the binary a rollback goes back to"),
            "{e}"
        );
        assert!(!staged.exists());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&brume).unwrap()
        );
    }

    #[test]
    fn a_hanging_program_is_killed_at_the_deadline() {
        let t = Instant::now();
        let (_, ran) = run_captured(
            Path::new("/bin/sh"),
            &["-c", "echo started; sleep 30 & sleep 30"],
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(ran, Ran::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // A program that exits at once but leaves a child holding the pipe does not
        // hold the check either: its group is killed when it exits.
        let t = Instant::now();
        let (out, ran) = run_captured(
            Path::new("/bin/sh"),
            &["-c", "sleep 30 & echo brume 1.0"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ran, Ran::Exited(0));
        assert_eq!(out, b"brume 1.0\n");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn the_program_gets_no_environment_and_no_descriptors() {
        // A descriptor this process holds without close-on-exec (as a library might
        // leave one): the program must not get it.
        let probe = File::open("/dev/null").unwrap();
        // SAFETY: dup2 onto a high number nothing else in the tests uses; cleared
        // close-on-exec on purpose.
        unsafe { libc::dup2(probe.as_raw_fd(), 211) };
        std::env::set_var("BRUME_VERIFY_PROBE", "leak");
        let (out, ran) = run_captured(
            Path::new("/bin/sh"),
            &[
                "-c",
                "for f in 3 4 5 6 7 8 9 211; do [ -e /proc/$$/fd/$f ] && echo fd $f; done; \
                 echo stdin $(readlink /proc/$$/fd/0); env",
            ],
            Duration::from_secs(5),
        )
        .unwrap();
        // SAFETY: closes the descriptor dup2 made above.
        unsafe { libc::close(211) };
        let text = String::from_utf8_lossy(&out);
        assert_eq!(ran, Ran::Exited(0), "{text}");
        assert!(!text.contains("fd "), "{text}");
        assert!(text.contains("stdin /dev/null"), "{text}");
        assert!(!text.contains("BRUME_VERIFY_PROBE"), "{text}");
        assert!(!text.contains("HOME="), "{text}");
    }

    #[test]
    fn what_the_program_prints_is_capped() {
        let (out, ran) = run_captured(
            Path::new("/bin/sh"),
            &["-c", "yes brume | head -c 1000000"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ran, Ran::Exited(0));
        assert_eq!(out.len(), OUTPUT_CAP);
    }
}
