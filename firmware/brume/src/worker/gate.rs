//! Asking the controller whether a viewer may watch (the blocking `viewer.requested`
//! trigger), and reporting the connection's life (`connection.opened`/`closed`).

use crate::config::{Config, Decision};
use crate::env::Env;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Why a viewer is not served.
pub enum Refusal {
    /// No such stream: answered 404 without asking anyone.
    Missing,
    /// A handler (or the default) denied it, for this reason.
    Denied(String),
}

/// What the configuration says about gating viewers, read once per connection.
pub struct Policy {
    /// The streams viewers can ask for (the configured ones and processes' outputs);
    /// a request for another is not worth a handler run.
    config: Config,
    /// The longest the handlers can take, plus a margin.
    budget: Duration,
    /// The answer when the controller cannot be asked (it restarts): deny if any
    /// viewer trigger defaults to deny.
    unreachable: Decision,
}

/// The gating policy, or None when no `viewer.requested` trigger is configured.
pub fn policy(env: &Env) -> Option<Policy> {
    let config = Config::load(&env.config).ok()?;
    let gated: Vec<_> = config.triggers.iter().filter(|t| t.is_blocking()).collect();
    if gated.is_empty() {
        return None;
    }
    let deny = gated.iter().any(|t| match &t.handler {
        crate::config::Handler::Webhook { default, .. }
        | crate::config::Handler::Exec { default, .. } => *default == Decision::Deny,
        _ => false,
    });
    Some(Policy {
        budget: crate::controller::events::blocking_budget(&config.triggers),
        unreachable: if deny {
            Decision::Deny
        } else {
            Decision::Allow
        },
        config,
    })
}

/// Asks the controller (for a stream that exists). Ok(()) to serve.
pub fn ask(
    env: &Env,
    policy: &Policy,
    stream: &str,
    ip: &str,
    path: &str,
    user_agent: &str,
    protocol: &str,
) -> Result<(), Refusal> {
    if !policy.config.serves(stream) {
        return Err(Refusal::Missing);
    }
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    let req = serde_json::json!({
        "stream": stream, "ip": ip, "path": p, "query": query,
        "user_agent": user_agent, "protocol": protocol,
    });
    let answer = (|| -> std::io::Result<String> {
        let mut sock = UnixStream::connect(crate::controller::gate::socket_path(env))?;
        sock.set_read_timeout(Some(policy.budget))?;
        sock.set_write_timeout(Some(Duration::from_secs(2)))?;
        sock.write_all(format!("{req}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(sock).read_line(&mut line)?;
        Ok(line)
    })();
    match answer {
        Ok(line) if line.trim_end() == "allow" => Ok(()),
        Ok(line) if line.trim_end() == "missing" => Err(Refusal::Missing),
        Ok(line) if line.starts_with("deny") => Err(Refusal::Denied(line[4..].trim().to_string())),
        other => {
            tracing::warn!(stream, result = ?other, "viewer gate unreachable; applying the default");
            match policy.unreachable {
                Decision::Allow => Ok(()),
                Decision::Deny => Err(Refusal::Denied("the access check is unavailable".into())),
            }
        }
    }
}
