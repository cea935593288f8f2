//! Admin authentication: an argon2id password hash in the configuration, session
//! tokens (cookie or bearer), and a per-address login rate limit.
//!
//! Sessions survive a restart of the controller: the table is kept in a file next to
//! the configuration (`brume.sessions.json`, mode 0600, written atomically on every
//! login and logout) that holds each token's digest and expiry, never the token.
//! Expiry is wall-clock time (7 days after the login); a logout removes the entry.
//!
//! argon2id parameters: 7 MiB, 5 passes, 1 lane (one of OWASP's recommended
//! equivalent settings): memory-hard, yet small enough for a 512 MiB board and for the
//! controller's memory budget.

use crate::config::Config;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PASSWORD_ENV: &str = "BRUME_ADMIN_PASSWORD";
/// Failed logins allowed per address per window.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Open sessions kept; a new login beyond this ends the one closest to expiry.
const MAX_SESSIONS: usize = 64;

fn argon2() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// Shortest admin password accepted on first run.
pub const MIN_PASSWORD_LEN: usize = 8;

/// First run: sets the admin password from `password` (`BRUME_ADMIN_PASSWORD`, which
/// the root angel takes out of the environment) if there is none yet. Returns whether
/// an admin password exists afterwards; without one, the first visit to the web UI
/// sets it (`POST /api/v1/setup`).
pub fn ensure_admin(config: &mut Config, password: Option<String>) -> Result<bool, String> {
    if config.admin.password_hash.is_some() {
        return Ok(true);
    }
    match password {
        Some(p) if !p.is_empty() => {
            config.admin.password_hash = Some(hash_password(&p)?);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Checks a new admin password; the message is for the person choosing it.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password needs at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > 1024 {
        return Err("the password is longer than 1024 bytes".into());
    }
    Ok(())
}

/// The one-time setup code of a first run: `brume serve` makes one when no admin
/// password exists, prints it (console, journal) and keeps it in this file of the run
/// directory (0600); the first-run page asks for it, so only someone who can read the
/// board's console or journal (or that file) chooses the admin password. It is removed
/// once the password is set.
pub fn setup_code_file(run_dir: &Path) -> PathBuf {
    run_dir.join("setup-code")
}

/// Makes a new setup code, writes it (0600) and returns it: 12 characters of a
/// 32-letter alphabet without look-alikes (60 bits), shown as `XXXX-XXXX-XXXX`.
pub fn new_setup_code(run_dir: &Path) -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let code = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    let path = setup_code_file(run_dir);
    crate::config::write_private(&path, format!("{code}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(code)
}

/// A code as typed: upper case, without spaces and dashes.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub enum SetupCodeError {
    /// No code was given.
    Missing,
    Wrong,
    /// No code file: this run has none (the controller was not started by serve).
    NoCode,
    Limited(u64),
}

pub fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    Wrong,
    /// No admin password exists yet (first run): set one first.
    NoPassword,
    /// Too many failures from this address; retry after this many seconds.
    Limited(u64),
}

pub struct Auth {
    hash: Mutex<Option<String>>,
    sessions: Mutex<Sessions>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

/// The open sessions: token digest → expiry (seconds since the epoch), and the file
/// they are kept in (None: memory only).
struct Sessions {
    file: Option<PathBuf>,
    open: HashMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct SessionFile {
    sessions: Vec<SessionEntry>,
}

#[derive(Serialize, Deserialize)]
struct SessionEntry {
    /// Hex digest of the token (see `digest`).
    digest: String,
    /// Seconds since the epoch.
    expires: u64,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token's digest, what the session table keeps. Tokens are 32 random characters
/// (~186 bits), so one cheap pass of a one-way function suffices: argon2id at its
/// smallest cost (8 KiB, 1 pass), the hash this binary already has.
fn digest(token: &str) -> String {
    let params = Params::new(8, 1, 1, Some(32)).expect("constant argon2 parameters are valid");
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(token.as_bytes(), b"brume-session-token", &mut out)
        .expect("a 32-byte digest of a short token");
    out.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Reads the table (expired entries dropped); a missing or unreadable file is an
    /// empty table.
    fn load(file: Option<PathBuf>) -> Sessions {
        let mut open = HashMap::new();
        if let Some(path) = &file {
            match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<SessionFile>(&bytes) {
                    Ok(f) => {
                        let now = now_s();
                        open.extend(
                            f.sessions
                                .into_iter()
                                .filter(|e| e.expires > now)
                                .map(|e| (e.digest, e.expires)),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable session table: starting without sessions")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the session table: starting without sessions")
                }
            }
        }
        Sessions { file, open }
    }

    fn save(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let mut sessions: Vec<SessionEntry> = self
            .open
            .iter()
            .map(|(d, e)| SessionEntry {
                digest: d.clone(),
                expires: *e,
            })
            .collect();
        sessions.sort_by(|a, b| a.expires.cmp(&b.expires).then(a.digest.cmp(&b.digest)));
        let json = serde_json::to_vec(&SessionFile { sessions }).expect("sessions serialise");
        if let Err(e) = crate::config::write_private(path, &json) {
            tracing::error!(path = %path.display(), error = %e, "cannot save the session table");
        }
    }

    fn prune(&mut self, now: u64) {
        self.open.retain(|_, expires| *expires > now);
    }
}

impl Auth {
    /// `sessions_file`: where sessions are kept across restarts (None: memory only).
    pub fn new(hash: Option<String>, sessions_file: Option<PathBuf>) -> Auth {
        Auth {
            hash: Mutex::new(hash),
            sessions: Mutex::new(Sessions::load(sessions_file)),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait when `from` failed too often (logins and setup codes count
    /// alike), None when it may try.
    fn limited(&self, from: IpAddr) -> Option<u64> {
        let mut f = self.failures.lock().expect("failures lock");
        let list = f.entry(from).or_default();
        list.retain(|t| t.elapsed() < FAILURE_WINDOW);
        (list.len() >= MAX_FAILURES)
            .then(|| FAILURE_WINDOW.saturating_sub(list[0].elapsed()).as_secs() + 1)
    }

    fn failed(&self, from: IpAddr) {
        self.failures
            .lock()
            .expect("failures lock")
            .entry(from)
            .or_default()
            .push(Instant::now());
    }

    /// Checks a first-run setup code against the code file (rate limited like logins).
    pub fn check_setup_code(
        &self,
        from: IpAddr,
        file: &Path,
        given: Option<&str>,
    ) -> Result<(), SetupCodeError> {
        if let Some(wait) = self.limited(from) {
            return Err(SetupCodeError::Limited(wait));
        }
        let Ok(text) = std::fs::read_to_string(file) else {
            return Err(SetupCodeError::NoCode);
        };
        let want = normalise_code(&text);
        let Some(given) = given.map(normalise_code).filter(|g| !g.is_empty()) else {
            return Err(SetupCodeError::Missing);
        };
        // Compared in constant time over the expected length.
        let same = want.len() == given.len()
            && !want.is_empty()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            self.failed(from);
            return Err(SetupCodeError::Wrong);
        }
        Ok(())
    }

    /// Checks the rate limit, then the password (slow: call from a blocking thread).
    pub fn login(&self, from: IpAddr, password: &str) -> Result<String, LoginError> {
        if let Some(wait) = self.limited(from) {
            return Err(LoginError::Limited(wait));
        }
        let Some(hash) = self.hash.lock().expect("hash lock").clone() else {
            return Err(LoginError::NoPassword);
        };
        let ok = verify_password(&hash, password);
        if !ok {
            self.failed(from);
            return Err(LoginError::Wrong);
        }
        Ok(self.new_session())
    }

    pub fn has_password(&self) -> bool {
        self.hash.lock().expect("hash lock").is_some()
    }

    /// Installs the first admin password's hash (after the configuration holding it
    /// was saved) and opens a session. Refused when a password exists.
    pub fn set_first_password(&self, hash: String) -> Option<String> {
        {
            let mut h = self.hash.lock().expect("hash lock");
            if h.is_some() {
                return None;
            }
            *h = Some(hash);
        }
        Some(self.new_session())
    }

    fn new_session(&self) -> String {
        let token = random_text(32);
        let now = now_s();
        let mut s = self.sessions.lock().expect("sessions lock");
        s.prune(now);
        while s.open.len() >= MAX_SESSIONS {
            let Some(oldest) = s
                .open
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            s.open.remove(&oldest);
        }
        s.open
            .insert(digest(&token), now + SESSION_LIFETIME.as_secs());
        s.save();
        token
    }

    pub fn check(&self, token: &str) -> bool {
        let d = digest(token);
        self.sessions
            .lock()
            .expect("sessions lock")
            .open
            .get(&d)
            .is_some_and(|expires| *expires > now_s())
    }

    pub fn logout(&self, token: &str) {
        let d = digest(token);
        let mut s = self.sessions.lock().expect("sessions lock");
        if s.open.remove(&d).is_some() {
            s.prune(now_s());
            s.save();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn login_is_rate_limited_per_address() {
        let auth = Auth::new(Some(hash_password("pw").unwrap()), None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.login(a, "nope"), Err(LoginError::Wrong));
        }
        assert!(matches!(auth.login(a, "pw"), Err(LoginError::Limited(_))));
        let token = auth.login(b, "pw").unwrap();
        assert!(auth.check(&token));
        auth.logout(&token);
        assert!(!auth.check(&token));
    }

    #[test]
    fn first_password_is_set_once() {
        let auth = Auth::new(None, None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!auth.has_password());
        assert_eq!(auth.login(a, "anything"), Err(LoginError::NoPassword));
        let token = auth
            .set_first_password(hash_password("first-password").unwrap())
            .expect("no password yet");
        assert!(auth.check(&token));
        assert!(auth.has_password());
        assert!(auth
            .set_first_password(hash_password("second-password").unwrap())
            .is_none());
        assert!(auth.login(a, "first-password").is_ok());
        assert_eq!(auth.login(a, "second-password"), Err(LoginError::Wrong));
    }

    #[test]
    fn setup_codes_are_checked_and_rate_limited() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("brume-setup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let code = new_setup_code(&dir).unwrap();
        assert_eq!(code.len(), 14, "{code}");
        let file = setup_code_file(&dir);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let auth = Auth::new(None, None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            auth.check_setup_code(a, &file, None),
            Err(SetupCodeError::Missing)
        );
        assert_eq!(auth.check_setup_code(a, &file, Some(&code)), Ok(()));
        let typed = code.replace('-', " ").to_lowercase();
        assert_eq!(auth.check_setup_code(a, &file, Some(&typed)), Ok(()));
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.check_setup_code(a, &file, Some("AAAA-AAAA-AAAA")),
                Err(SetupCodeError::Wrong)
            );
        }
        assert!(matches!(
            auth.check_setup_code(a, &file, Some(&code)),
            Err(SetupCodeError::Limited(_))
        ));
        assert_eq!(auth.check_setup_code(b, &file, Some(&code)), Ok(()));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            auth.check_setup_code(b, &file, Some(&code)),
            Err(SetupCodeError::NoCode)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn new_passwords_need_eight_characters() {
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        assert!(check_new_password(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn ensure_admin_leaves_the_password_to_the_first_visit() {
        let mut c = Config::default();
        assert!(!ensure_admin(&mut c, None).unwrap());
        assert!(!ensure_admin(&mut c, Some(String::new())).unwrap());
        assert_eq!(c.admin.password_hash, None);
        assert!(ensure_admin(&mut c, Some("from-the-env".into())).unwrap());
        let h = c.admin.password_hash.clone().expect("a hash");
        assert!(verify_password(&h, "from-the-env"));
        // An existing password is kept.
        assert!(ensure_admin(&mut c, Some("another".into())).unwrap());
        assert_eq!(c.admin.password_hash, Some(h));
    }

    #[test]
    fn sessions_survive_a_restart_until_logout_or_expiry() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("brume-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("brume.sessions.json");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let hash = hash_password("pw-pw-pw").unwrap();

        let first = Auth::new(Some(hash.clone()), Some(file.clone()));
        let kept = first.login(a, "pw-pw-pw").unwrap();
        let ended = first.login(a, "pw-pw-pw").unwrap();
        first.logout(&ended);
        let on_disk = std::fs::read_to_string(&file).unwrap();
        assert!(
            !on_disk.contains(&kept),
            "the table holds digests, not tokens"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(first);

        // A new controller: the open session works, the ended one does not.
        let second = Auth::new(Some(hash.clone()), Some(file.clone()));
        assert!(second.check(&kept));
        assert!(!second.check(&ended));
        assert!(!second.check("not-a-token"));

        // An entry past its expiry is not a session.
        let expired = SessionFile {
            sessions: vec![SessionEntry {
                digest: digest(&kept),
                expires: now_s() - 1,
            }],
        };
        std::fs::write(&file, serde_json::to_vec(&expired).unwrap()).unwrap();
        let third = Auth::new(Some(hash), Some(file.clone()));
        assert!(!third.check(&kept));
        let _ = std::fs::remove_dir_all(dir);
    }
}
