//! Admin authentication: an argon2id password hash in the configuration, session
//! tokens (cookie or bearer) held in memory, and a per-address login rate limit.
//!
//! argon2id parameters: 7 MiB, 5 passes, 1 lane (one of OWASP's recommended
//! equivalent settings): memory-hard, yet small enough for a 512 MiB board and for the
//! controller's memory budget.

use crate::config::Config;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PASSWORD_ENV: &str = "BRUME_ADMIN_PASSWORD";
/// Failed logins allowed per address per window.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// First run: sets the admin password from `BRUME_ADMIN_PASSWORD` if it is set.
/// Returns whether an admin password exists afterwards; without one, the first visit
/// to the web UI sets it (`POST /api/v1/setup`).
pub fn ensure_admin(config: &mut Config) -> Result<bool, String> {
    if config.admin.password_hash.is_some() {
        return Ok(true);
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => {
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

fn random_text(n: usize) -> String {
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
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Auth {
    pub fn new(hash: Option<String>) -> Auth {
        Auth {
            hash: Mutex::new(hash),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the rate limit, then the password (slow: call from a blocking thread).
    pub fn login(&self, from: IpAddr, password: &str) -> Result<String, LoginError> {
        {
            let mut f = self.failures.lock().expect("failures lock");
            let list = f.entry(from).or_default();
            list.retain(|t| t.elapsed() < FAILURE_WINDOW);
            if list.len() >= MAX_FAILURES {
                let wait = FAILURE_WINDOW.saturating_sub(list[0].elapsed()).as_secs() + 1;
                return Err(LoginError::Limited(wait));
            }
        }
        let Some(hash) = self.hash.lock().expect("hash lock").clone() else {
            return Err(LoginError::NoPassword);
        };
        let ok = verify_password(&hash, password);
        if !ok {
            self.failures
                .lock()
                .expect("failures lock")
                .entry(from)
                .or_default()
                .push(Instant::now());
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
        let mut s = self.sessions.lock().expect("sessions lock");
        s.retain(|_, t| t.elapsed() < SESSION_LIFETIME);
        s.insert(token.clone(), Instant::now());
        token
    }

    pub fn check(&self, token: &str) -> bool {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(token)
            .is_some_and(|t| t.elapsed() < SESSION_LIFETIME)
    }

    pub fn logout(&self, token: &str) {
        self.sessions.lock().expect("sessions lock").remove(token);
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
        let auth = Auth::new(Some(hash_password("pw").unwrap()));
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
        let auth = Auth::new(None);
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
    fn new_passwords_need_eight_characters() {
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        assert!(check_new_password(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn ensure_admin_leaves_the_password_to_the_first_visit() {
        let mut c = Config::default();
        let had = c.admin.password_hash.clone();
        // Whether the variable is set depends on the caller's environment; either way
        // nothing is generated behind the user's back.
        let set = ensure_admin(&mut c).unwrap();
        assert_eq!(set, c.admin.password_hash.is_some());
        if std::env::var(PASSWORD_ENV).map_or(true, |p| p.is_empty()) {
            assert_eq!(c.admin.password_hash, had);
            assert!(!set);
        }
    }
}
