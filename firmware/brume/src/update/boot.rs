//! Which binary a fresh start of `brume serve` runs. A live update puts the new binary
//! in the updates directory (on the appliance, the data partition: the root file system
//! is read-only) and, once it proved healthy, points `updates/current` at it. The next
//! boot starts the packaged binary, which hands over to `current` when that is newer,
//! unless it failed to stay up three starts in a row.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts of `current` that did not stay up for `STAYED_UP` before it is skipped.
const MAX_ATTEMPTS: u32 = 3;
/// A root angel that ran this long resets the count of failed starts.
pub const STAYED_UP: Duration = Duration::from_secs(60);

fn current_link(updates: &Path) -> PathBuf {
    updates.join("current")
}

fn attempts_file(updates: &Path) -> PathBuf {
    updates.join("boot-attempts")
}

/// After a healthy swap to `exe`: the binary later starts run. A binary outside the
/// updates directory (the packaged one) needs no pointer.
pub fn set_current(updates: &Path, exe: &Path) {
    let link = current_link(updates);
    if !exe.starts_with(updates) {
        let _ = std::fs::remove_file(&link);
        return;
    }
    let tmp = updates.join("current.new");
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(exe, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, &link);
    }
    let _ = std::fs::remove_file(attempts_file(updates));
}

/// The root angel stayed up: its binary is good to start again.
pub fn stayed_up(updates: &Path) {
    let _ = std::fs::remove_file(attempts_file(updates));
}

/// The binary a fresh start should run instead of `own` (this one), if any: the
/// staged `current`, when it runs, reports a version newer than `own_version`, and
/// has not failed `MAX_ATTEMPTS` starts in a row. Counts this start as an attempt.
pub fn choose(updates: &Path, own: &Path, own_version: &str) -> Option<PathBuf> {
    let target = std::fs::canonicalize(current_link(updates)).ok()?;
    if std::fs::canonicalize(own).ok().as_deref() == Some(target.as_path()) {
        return None;
    }
    let attempts: u32 = std::fs::read_to_string(attempts_file(updates))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if attempts >= MAX_ATTEMPTS {
        tracing::error!(
            binary = %target.display(),
            attempts,
            "the updated binary did not stay up; starting the packaged one"
        );
        return None;
    }
    let version = super::verify::reported_version(&target)?;
    if !newer(&version, own_version) {
        // The packaged binary caught up (a whole-image update): it runs.
        let _ = std::fs::remove_file(current_link(updates));
        return None;
    }
    let _ = std::fs::write(attempts_file(updates), format!("{}\n", attempts + 1));
    Some(target)
}

/// Whether version `a` is newer than `b`: the numeric `x.y.z` parts compared, and for
/// equal numbers a build stamp (`+…`) counts as newer than none, or differs.
fn newer(a: &str, b: &str) -> bool {
    let split = |v: &str| -> (Vec<u64>, String) {
        let (num, stamp) = v.split_once('+').unwrap_or((v, ""));
        (
            num.split('.').map(|p| p.parse().unwrap_or(0)).collect(),
            stamp.to_string(),
        )
    };
    let (an, astamp) = split(a);
    let (bn, bstamp) = split(b);
    match an.cmp(&bn) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => astamp != bstamp && !astamp.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number_then_stamp() {
        assert!(newer("0.2.0", "0.1.9"));
        assert!(newer("0.10.0", "0.9.0"));
        assert!(!newer("0.1.0", "0.2.0"));
        assert!(newer("0.1.0+fix1", "0.1.0"));
        assert!(!newer("0.1.0", "0.1.0"));
        assert!(!newer("0.1.0", "0.1.0+fix1"));
    }

    #[test]
    fn the_packaged_binary_drops_a_pointer_to_itself() {
        let dir = std::env::temp_dir().join(format!("brume-boot-{}", std::process::id()));
        let updates = dir.join("updates");
        std::fs::create_dir_all(&updates).unwrap();
        let packaged = dir.join("brume");
        std::fs::write(&packaged, b"").unwrap();
        set_current(&updates, &packaged);
        assert!(std::fs::symlink_metadata(current_link(&updates)).is_err());
        let staged = updates.join("brume-0.2.0");
        std::fs::write(&staged, b"").unwrap();
        set_current(&updates, &staged);
        assert_eq!(std::fs::read_link(current_link(&updates)).unwrap(), staged);
        // Pointing at itself: nothing to switch to.
        assert_eq!(choose(&updates, &staged, "0.2.0"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
