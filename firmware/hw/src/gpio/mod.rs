//! GPIO: buttons and LEDs.
//!
//! One small trait, [`Gpio`], with three backends chosen by [`Backend`]:
//! * [`Backend::Sim`]: in-process pins. Inputs are "pressed" with [`Gpio::simulate`]
//!   (the HTTP API does this on a laptop), outputs just remember their level. This is
//!   what the tests use.
//! * [`Backend::Cdev`]: the Linux GPIO character device (uAPI v2) on any board, the
//!   Raspberry Pi 5 included. Debouncing is the kernel's and edge timestamps are the
//!   kernel's.
//! * [`Backend::Rppal`]: the Raspberry Pi's GPIO through the `rppal` crate. On any other
//!   machine [`open`] fails with "rppal: not a Raspberry Pi (UnknownModel)".
//!
//! [`open`] claims the configured lines and delivers debounced [`Edge`]s of the inputs
//! to a callback, from a thread owned by the returned value. Everything is expressed in
//! logical levels: `true` is "active" (a pressed button, a lit LED), and `active_low`
//! says that active is the electrical low level.

mod cdev;
mod rppal;
mod sim;
#[cfg(test)]
mod tests;

use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// Which implementation drives the pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// In-process pins for laptops and tests: inputs change only through
    /// [`Gpio::simulate`].
    Sim,
    /// The Linux GPIO character device (`/dev/gpiochipN`, uAPI v2): any board.
    Cdev,
    /// The Raspberry Pi's GPIO via `rppal` (BCM GPIO numbers): Raspberry Pi only.
    Rppal,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sim => "sim",
            Backend::Cdev => "cdev",
            Backend::Rppal => "rppal",
        })
    }
}

/// The built-in bias resistor of an input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pull {
    /// No bias: the line needs an external resistor (the built-in ones are disabled).
    None,
    /// Pull-up: an open button reads high (typically wired `active_low`).
    Up,
    /// Pull-down: an open button reads low.
    Down,
}

/// An input line to claim (a button).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// The line offset on the chip (cdev) or the BCM GPIO number (rppal).
    pub line: u32,
    /// The bias to apply.
    pub pull: Pull,
    /// Active (pressed) is the low electrical level.
    pub active_low: bool,
    /// Debounce period in milliseconds; 0 reports every change.
    pub debounce_ms: u32,
}

/// An output line to claim (an LED, a relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The line offset on the chip (cdev) or the BCM GPIO number (rppal).
    pub line: u32,
    /// The logical level driven as soon as the line is claimed.
    pub initial: bool,
    /// Active (lit) is the low electrical level.
    pub active_low: bool,
}

/// A debounced edge on an input, in logical terms (active_low already applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The input line.
    pub line: u32,
    /// The level the line went to: true = active (pressed).
    pub active: bool,
    /// When the line changed, CLOCK_MONOTONIC nanoseconds (the kernel's event
    /// timestamp where there is one).
    pub monotonic_ns: u64,
}

/// A GPIO chip of this machine (Linux GPIO character device).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChipInfo {
    /// The device node, e.g. "/dev/gpiochip0".
    pub path: String,
    /// The kernel's name, e.g. "gpiochip0".
    pub name: String,
    /// The driver's label, e.g. "pinctrl-bcm2711" or "gpio-sim.0-node0": stable across
    /// reboots, unlike the number in the name.
    pub label: String,
    /// How many lines the chip has (valid offsets are 0 to lines - 1).
    pub lines: u32,
}

/// Claimed GPIO lines. Dropping it releases the lines and stops edge delivery.
pub trait Gpio: Send {
    /// Logical level (true = active) of a claimed input or output line.
    ///
    /// For an output this is the level last driven. For an input it is the level of the
    /// line now (sim, rppal: undebounced; cdev: the kernel's debounced level when a
    /// debounce period is set).
    fn get(&mut self, line: u32) -> Result<bool>;
    /// Drives a claimed output to its logical level (active_low applied).
    fn set(&mut self, line: u32, active: bool) -> Result<()>;
    /// Sim only: sets a claimed input's logical level as a wired button would, producing
    /// an Edge through the same debounce path. Real backends: Error::Unsupported.
    fn simulate(&mut self, line: u32, active: bool) -> Result<()>;
    /// e.g. "sim", "/dev/gpiochip1 (gpio-sim.0-node0)", "rppal (Raspberry Pi 4 B)".
    fn describe(&self) -> String;
}

/// Claims the lines and starts delivering edges of the inputs to `on_edge` from a thread
/// owned by the returned value (dropping it releases the lines and stops the thread
/// promptly, without waiting more than ~100 ms). `chip` selects the cdev chip: a path
/// ("/dev/gpiochip1"), a name ("gpiochip1") or a chip label ("gpio-sim.0-node0",
/// "pinctrl-bcm2711"); ignored by sim and rppal.
///
/// A line listed twice (also as both input and output), a line past the end of the chip,
/// a missing chip or a line another program holds are errors naming the chip and line.
pub fn open(
    backend: Backend,
    chip: &str,
    inputs: &[InputSpec],
    outputs: &[OutputSpec],
    on_edge: Box<dyn FnMut(Edge) + Send>,
) -> Result<Box<dyn Gpio>> {
    Ok(match backend {
        Backend::Sim => Box::new(sim::SimGpio::open(inputs, outputs, on_edge)?),
        Backend::Cdev => Box::new(cdev::CdevGpio::open(chip, inputs, outputs, on_edge)?),
        Backend::Rppal => Box::new(rppal::RppalGpio::open(inputs, outputs, on_edge)?),
    })
}

/// The GPIO chips of this machine (cdev), for `brume devices` and the API: path, name,
/// label, number of lines. Empty when there is none.
pub fn list_chips() -> Vec<ChipInfo> {
    cdev::list_chips()
}

/// "gpiochip1 line 4": how errors name a line.
fn line_device(chip: &str, line: u32) -> String {
    format!("{chip} line {line}")
}

/// The error for a line that was not claimed.
fn not_claimed(chip: &str, line: u32) -> Error {
    Error::Unsupported {
        device: line_device(chip, line),
        reason: "not a claimed line".into(),
    }
}

/// The error for `set` on an input.
fn not_output(chip: &str, line: u32) -> Error {
    Error::Unsupported {
        device: line_device(chip, line),
        reason: "is an input; only outputs can be set".into(),
    }
}

/// The error for `simulate` on a real backend.
fn no_simulate(chip: &str, line: u32) -> Error {
    Error::Unsupported {
        device: line_device(chip, line),
        reason: "simulated presses need the sim backend".into(),
    }
}

/// Refuses a line listed twice, whatever its directions.
fn check_unique(chip: &str, inputs: &[InputSpec], outputs: &[OutputSpec]) -> Result<()> {
    let mut seen: HashMap<u32, &'static str> = HashMap::new();
    let lines = inputs
        .iter()
        .map(|i| (i.line, "input"))
        .chain(outputs.iter().map(|o| (o.line, "output")));
    for (line, dir) in lines {
        if let Some(first) = seen.insert(line, dir) {
            let reason = if first == dir {
                format!("claimed twice (listed twice as an {dir})")
            } else {
                "claimed twice (as an input and as an output)".to_string()
            };
            return Err(Error::Unsupported {
                device: line_device(chip, line),
                reason,
            });
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC now, nanoseconds: the clock of GPIO edge timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Joins an event thread, unless called from that very thread (a callback dropping the
/// last handle), where joining would wait for itself.
fn join(thread: Option<std::thread::JoinHandle<()>>) {
    if let Some(t) = thread {
        if t.thread().id() != std::thread::current().id() {
            // The thread catches nothing: a panicking callback ends it, and that
            // panic has already been reported by the panic hook.
            let _ = t.join();
        }
    }
}

/// The software debouncer of the sim and rppal backends (cdev uses the kernel's).
///
/// Per line it remembers the last reported logical level, the line's current level and
/// when the last edge was accepted. A change is reported at once if it differs from the
/// last reported level and the line's debounce window since the last accepted edge has
/// passed. A change inside the window is held back; if, once the window has passed, the
/// line sits at a level other than the last reported one, that level is reported then,
/// stamped with the time the line went there. So a bouncing contact gives one edge per
/// window at most, the final level is never lost, and a change that does not alter the
/// reported level is never reported.
///
/// Times are CLOCK_MONOTONIC nanoseconds, given by the caller: the struct does no I/O.
#[derive(Debug, Default)]
pub(crate) struct Debouncer {
    lines: HashMap<u32, DebounceLine>,
}

#[derive(Debug)]
struct DebounceLine {
    window_ns: u64,
    /// The level last reported.
    reported: bool,
    /// The level of the line now, and since when.
    raw: bool,
    raw_ns: u64,
    /// When the last reported edge happened (None: nothing reported yet).
    accepted_ns: Option<u64>,
}

impl DebounceLine {
    /// When a held-back level may be reported (None: nothing is held back).
    fn deadline(&self) -> Option<u64> {
        if self.raw == self.reported {
            return None;
        }
        // A held-back level implies an accepted edge: without one, the change would
        // have been reported at once.
        Some(self.accepted_ns.unwrap_or(0).saturating_add(self.window_ns))
    }
}

impl Debouncer {
    /// An empty debouncer.
    pub(crate) fn new() -> Debouncer {
        Debouncer::default()
    }

    /// Adds an input line, at logical level `level`, with a window of `debounce_ms`.
    pub(crate) fn add_line(&mut self, line: u32, level: bool, debounce_ms: u32) {
        self.lines.insert(
            line,
            DebounceLine {
                window_ns: u64::from(debounce_ms) * 1_000_000,
                reported: level,
                raw: level,
                raw_ns: 0,
                accepted_ns: None,
            },
        );
    }

    /// The line went to logical level `level` at `t_ns`. Returns the edges to report, in
    /// order: held-back levels whose window ended by `t_ns` (on any line), then this
    /// change if it is reported at once. Unknown lines are ignored.
    pub(crate) fn input(&mut self, line: u32, level: bool, t_ns: u64) -> Vec<Edge> {
        let mut out = self.expire(t_ns);
        let Some(l) = self.lines.get_mut(&line) else {
            return out;
        };
        if level == l.raw {
            return out;
        }
        l.raw = level;
        l.raw_ns = t_ns;
        if level == l.reported {
            // Back to the reported level inside the window: nothing to report, and
            // nothing held back any more.
            return out;
        }
        let open = match l.accepted_ns {
            None => true,
            Some(a) => t_ns.saturating_sub(a) >= l.window_ns,
        };
        if open {
            l.reported = level;
            l.accepted_ns = Some(t_ns);
            out.push(Edge {
                line,
                active: level,
                monotonic_ns: t_ns,
            });
        }
        out
    }

    /// Reports the held-back levels whose window has ended by `now_ns`, oldest first.
    pub(crate) fn expire(&mut self, now_ns: u64) -> Vec<Edge> {
        let mut out = Vec::new();
        for (&line, l) in self.lines.iter_mut() {
            if l.deadline().is_some_and(|d| d <= now_ns) {
                l.reported = l.raw;
                l.accepted_ns = Some(l.raw_ns);
                out.push(Edge {
                    line,
                    active: l.raw,
                    monotonic_ns: l.raw_ns,
                });
            }
        }
        out.sort_by_key(|e| (e.monotonic_ns, e.line));
        out
    }

    /// The earliest time [`Debouncer::expire`] will have something to report.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.lines.values().filter_map(DebounceLine::deadline).min()
    }
}
