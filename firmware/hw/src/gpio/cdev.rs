//! The Linux GPIO character device, uAPI v2 (`/dev/gpiochipN`), through `gpiocdev`.
//!
//! All lines are claimed in one request. Inputs get both-edge detection with
//! CLOCK_MONOTONIC event timestamps and, when asked, the kernel's debounce period. The
//! event thread sleeps in poll(2) on the request and on one end of a socket pair; the
//! handle holds the other end, so dropping the handle wakes the thread at once.

use super::{join, line_device, no_simulate, not_claimed, not_output};
use super::{ChipInfo, Edge, Gpio, InputSpec, OutputSpec, Pull};
use crate::{Error, Result};
use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, EventClock, Value, Values};
use gpiocdev::{Chip, Request};
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The consumer name the kernel shows for Brume's lines (gpioinfo, /sys/kernel/debug).
const CONSUMER: &str = "brume";

/// Events read from the kernel at once.
const EVENT_BATCH: usize = 16;

/// The errno inside a gpiocdev error, if it carries one.
fn errno(e: &gpiocdev::Error) -> Option<i32> {
    match e {
        gpiocdev::Error::Os(n) => Some(n.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(n)) => Some(n.0),
        _ => None,
    }
}

/// Turns a gpiocdev error into Brume's: ENODEV (the chip was removed) is `Gone`, other
/// OS errors are `Os`, the rest `Unsupported`.
fn map_err(device: String, op: &'static str, e: gpiocdev::Error) -> Error {
    match errno(&e) {
        Some(libc::ENODEV) => Error::Gone {
            device,
            reason: "the GPIO chip was removed".into(),
        },
        Some(n) => Error::Os {
            device,
            op,
            source: io::Error::from_raw_os_error(n),
        },
        None => Error::Unsupported {
            device,
            reason: format!("{op}: {e}"),
        },
    }
}

/// The GPIO chips of this machine; empty when there is none (or /dev is unreadable).
pub(super) fn list_chips() -> Vec<ChipInfo> {
    let Ok(paths) = gpiocdev::chip::chips() else {
        return Vec::new();
    };
    paths
        .into_iter()
        .filter_map(|p| {
            let info = Chip::from_path(&p).ok()?.info().ok()?;
            Some(ChipInfo {
                path: p.display().to_string(),
                name: info.name,
                label: info.label,
                lines: info.num_lines,
            })
        })
        .collect()
}

/// "this machine has: gpiochip0 (pinctrl-bcm2711, 58 lines)": for errors about a chip
/// that was not found.
fn available() -> String {
    let chips = list_chips();
    if chips.is_empty() {
        return "this machine has no GPIO chips".into();
    }
    let names: Vec<String> = chips
        .iter()
        .map(|c| format!("{} ({}, {} lines)", c.name, c.label, c.lines))
        .collect();
    format!("this machine has: {}", names.join(", "))
}

/// Finds the chip by path, name or label.
fn open_chip(spec: &str) -> Result<Chip> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(Error::Unsupported {
            device: "cdev".into(),
            reason: format!("no GPIO chip given; {}", available()),
        });
    }
    let not_found = || Error::Gone {
        device: spec.into(),
        reason: format!(
            "no GPIO chip with this path, name or label; {}",
            available()
        ),
    };
    let path: PathBuf = if spec.contains('/') {
        spec.into()
    } else if Path::new("/dev").join(spec).exists() {
        Path::new("/dev").join(spec)
    } else {
        let matches: Vec<ChipInfo> = list_chips()
            .into_iter()
            .filter(|c| c.label == spec)
            .collect();
        match matches.as_slice() {
            [] => return Err(not_found()),
            [one] => one.path.clone().into(),
            many => {
                let paths: Vec<&str> = many.iter().map(|c| c.path.as_str()).collect();
                return Err(Error::Unsupported {
                    device: spec.into(),
                    reason: format!(
                        "several GPIO chips have this label ({}): name one by path",
                        paths.join(", ")
                    ),
                });
            }
        }
    };
    Chip::from_path(&path).map_err(|e| match errno(&e) {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => not_found(),
        _ => map_err(path.display().to_string(), "open", e),
    })
}

/// The cdev backend.
pub(super) struct CdevGpio {
    /// "gpiochip1": how errors name the chip.
    name: String,
    description: String,
    /// None when no line was asked for.
    request: Option<Arc<Request>>,
    inputs: Vec<u32>,
    /// Outputs and the logical level last driven on each.
    outputs: HashMap<u32, bool>,
    /// Set by the event thread when the chip went away (or events could not be read).
    gone: Arc<OnceLock<String>>,
    /// Dropping it ends the event thread.
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl CdevGpio {
    /// Opens the chip, checks the lines against it and claims them in one request.
    pub(super) fn open(
        chip: &str,
        inputs: &[InputSpec],
        outputs: &[OutputSpec],
        on_edge: Box<dyn FnMut(Edge) + Send>,
    ) -> Result<CdevGpio> {
        let chip = open_chip(chip)?;
        let name = chip.name();
        let info = chip
            .info()
            .map_err(|e| map_err(name.clone(), "read chip info", e))?;
        super::check_unique(&name, inputs, outputs)?;
        let lines = inputs
            .iter()
            .map(|i| i.line)
            .chain(outputs.iter().map(|o| o.line));
        for line in lines {
            if line >= info.num_lines {
                return Err(Error::Unsupported {
                    device: line_device(&name, line),
                    reason: format!(
                        "no such line: {} ({}) has lines 0 to {}",
                        name,
                        info.label,
                        info.num_lines.saturating_sub(1)
                    ),
                });
            }
        }
        let mut handle = CdevGpio {
            description: format!("{} ({})", chip.path().display(), info.label),
            name,
            request: None,
            inputs: inputs.iter().map(|i| i.line).collect(),
            outputs: outputs.iter().map(|o| (o.line, o.initial)).collect(),
            gone: Arc::new(OnceLock::new()),
            stop: None,
            thread: None,
        };
        if inputs.is_empty() && outputs.is_empty() {
            return Ok(handle);
        }

        let mut b = Request::builder();
        b.on_chip(chip.path()).with_consumer(CONSUMER);
        for i in inputs {
            b.with_line(i.line)
                .as_input()
                .with_bias(match i.pull {
                    Pull::None => Bias::Disabled,
                    Pull::Up => Bias::PullUp,
                    Pull::Down => Bias::PullDown,
                })
                .with_edge_detection(EdgeDetection::BothEdges)
                .with_event_clock(EventClock::Monotonic);
            if i.active_low {
                b.as_active_low();
            }
            if i.debounce_ms > 0 {
                b.with_debounce_period(Duration::from_millis(u64::from(i.debounce_ms)));
            }
        }
        for o in outputs {
            b.with_line(o.line).as_output(Value::from(o.initial));
            if o.active_low {
                b.as_active_low();
            }
        }
        let request = match b.request() {
            Ok(r) => Arc::new(r),
            Err(e) => return Err(request_error(&chip, &handle.name, inputs, outputs, e)),
        };

        if !inputs.is_empty() {
            // The levels the inputs start at: an event that does not change them is
            // not an edge.
            let mut values = Values::from_offsets(&handle.inputs);
            request
                .values(&mut values)
                .map_err(|e| map_err(handle.name.clone(), "read input levels", e))?;
            let levels: HashMap<u32, bool> = handle
                .inputs
                .iter()
                .map(|&l| (l, values.get(l) == Some(Value::Active)))
                .collect();
            let (stop, wake) = UnixStream::pair().map_err(|e| Error::Os {
                device: handle.name.clone(),
                op: "socketpair",
                source: e,
            })?;
            let req = request.clone();
            let gone = handle.gone.clone();
            let thread = std::thread::Builder::new()
                .name("gpio-cdev".into())
                .spawn(move || run(req, wake, levels, gone, on_edge))
                .map_err(|e| Error::Os {
                    device: handle.name.clone(),
                    op: "spawn event thread",
                    source: e,
                })?;
            handle.stop = Some(stop);
            handle.thread = Some(thread);
        }
        handle.request = Some(request);
        Ok(handle)
    }

    /// `Gone` once the event thread saw the chip go away.
    fn check_gone(&self) -> Result<()> {
        match self.gone.get() {
            Some(reason) => Err(Error::Gone {
                device: self.name.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn request(&self, line: u32) -> Result<&Request> {
        self.request
            .as_deref()
            .ok_or_else(|| not_claimed(&self.name, line))
    }
}

/// Explains a refused request: names the lines another program holds (EBUSY).
fn request_error(
    chip: &Chip,
    name: &str,
    inputs: &[InputSpec],
    outputs: &[OutputSpec],
    e: gpiocdev::Error,
) -> Error {
    if errno(&e) == Some(libc::EBUSY) {
        let lines = inputs
            .iter()
            .map(|i| i.line)
            .chain(outputs.iter().map(|o| o.line));
        for line in lines {
            if let Ok(li) = chip.line_info(line) {
                if li.used {
                    let by = if li.consumer.is_empty() {
                        "another program".to_string()
                    } else {
                        format!("{:?}", li.consumer)
                    };
                    return Error::Unsupported {
                        device: line_device(name, line),
                        reason: format!("already in use by {by}"),
                    };
                }
            }
        }
    }
    map_err(name.into(), "request lines", e)
}

impl Gpio for CdevGpio {
    fn get(&mut self, line: u32) -> Result<bool> {
        self.check_gone()?;
        if let Some(&level) = self.outputs.get(&line) {
            // The level driven: reading an output back is not supported by every chip.
            return Ok(level);
        }
        if !self.inputs.contains(&line) {
            return Err(not_claimed(&self.name, line));
        }
        self.request(line)?
            .value(line)
            .map(|v| v == Value::Active)
            .map_err(|e| map_err(line_device(&self.name, line), "read line", e))
    }

    fn set(&mut self, line: u32, active: bool) -> Result<()> {
        self.check_gone()?;
        if !self.outputs.contains_key(&line) {
            return Err(if self.inputs.contains(&line) {
                not_output(&self.name, line)
            } else {
                not_claimed(&self.name, line)
            });
        }
        self.request(line)?
            .set_value(line, Value::from(active))
            .map_err(|e| map_err(line_device(&self.name, line), "set line", e))?;
        self.outputs.insert(line, active);
        Ok(())
    }

    fn simulate(&mut self, line: u32, _active: bool) -> Result<()> {
        Err(no_simulate(&self.name, line))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for CdevGpio {
    fn drop(&mut self) {
        // Closing our end of the socket pair wakes the thread's poll at once; the lines
        // are released when the request's last reference goes, after the join.
        drop(self.stop.take());
        join(self.thread.take());
    }
}

/// The event thread: waits for edge events or the stop signal, reports each change of
/// logical level, and ends quietly when the chip goes away.
fn run(
    req: Arc<Request>,
    wake: UnixStream,
    mut levels: HashMap<u32, bool>,
    gone: Arc<OnceLock<String>>,
    mut on_edge: Box<dyn FnMut(Edge) + Send>,
) {
    let event_words = req.edge_event_u64_size();
    let mut buf = vec![0u64; event_words * EVENT_BATCH];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: req.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd, both descriptors are open
        // (owned by `req` and `wake`, which outlive the call).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let _ = gone.set(format!("waiting for edge events: {err}"));
            return;
        }
        if fds[1].revents != 0 {
            // The handle was dropped (end of file on the socket).
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        // Readable, or POLLHUP/POLLERR when the chip was removed: read tells which.
        let words = match req.read_edge_events_into_slice(&mut buf) {
            Ok(w) => w,
            Err(e) => match errno(&e) {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                Some(libc::ENODEV) => {
                    let _ = gone.set("the GPIO chip was removed".into());
                    return;
                }
                _ => {
                    let _ = gone.set(format!("reading edge events: {e}"));
                    return;
                }
            },
        };
        for raw in buf[..words].chunks_exact(event_words) {
            let Ok(ev) = req.edge_event_from_slice(raw) else {
                continue;
            };
            // With active_low requested, the kernel reports edges in logical terms:
            // "rising" is "became active".
            let active = ev.kind == EdgeKind::Rising;
            let last = levels.entry(ev.offset).or_insert(!active);
            if *last == active {
                continue;
            }
            *last = active;
            on_edge(Edge {
                line: ev.offset,
                active,
                monotonic_ns: ev.timestamp_ns,
            });
        }
    }
}
