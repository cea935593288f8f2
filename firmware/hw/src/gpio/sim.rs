//! In-process pins: inputs change only through [`Gpio::simulate`], outputs remember the
//! level driven. Edges go through the shared [`Debouncer`] on the event thread, exactly
//! as the rppal backend's do.

use super::{join, line_device, monotonic_ns, not_claimed, not_output};
use super::{Debouncer, Edge, Gpio, InputSpec, OutputSpec};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

const CHIP: &str = "sim";

#[derive(Debug)]
struct Line {
    output: bool,
    /// Only shows in the electrical level, which the tests read through `physical`.
    #[cfg_attr(not(test), allow(dead_code))]
    active_low: bool,
    /// Logical level.
    level: bool,
}

/// A change of an input, stamped when [`Gpio::simulate`] was called.
struct Change {
    line: u32,
    active: bool,
    t_ns: u64,
}

/// The sim backend.
pub(super) struct SimGpio {
    lines: HashMap<u32, Line>,
    /// Dropping it ends the event thread.
    tx: Option<mpsc::Sender<Change>>,
    thread: Option<JoinHandle<()>>,
}

impl SimGpio {
    /// Claims the lines: inputs at their inactive level, outputs at `initial`.
    pub(super) fn open(
        inputs: &[InputSpec],
        outputs: &[OutputSpec],
        on_edge: Box<dyn FnMut(Edge) + Send>,
    ) -> Result<SimGpio> {
        super::check_unique(CHIP, inputs, outputs)?;
        let mut lines = HashMap::new();
        let mut debouncer = Debouncer::new();
        for i in inputs {
            lines.insert(
                i.line,
                Line {
                    output: false,
                    active_low: i.active_low,
                    level: false,
                },
            );
            debouncer.add_line(i.line, false, i.debounce_ms);
        }
        for o in outputs {
            lines.insert(
                o.line,
                Line {
                    output: true,
                    active_low: o.active_low,
                    level: o.initial,
                },
            );
        }
        let (tx, rx) = mpsc::channel();
        let thread = if inputs.is_empty() {
            None
        } else {
            let t = std::thread::Builder::new()
                .name("gpio-sim".into())
                .spawn(move || run(rx, debouncer, on_edge))
                .map_err(|e| Error::Os {
                    device: CHIP.into(),
                    op: "spawn event thread",
                    source: e,
                })?;
            Some(t)
        };
        Ok(SimGpio {
            lines,
            tx: Some(tx),
            thread,
        })
    }

    fn line(&self, line: u32) -> Result<&Line> {
        self.lines.get(&line).ok_or_else(|| not_claimed(CHIP, line))
    }

    /// The electrical level of a claimed line (true = high): what a voltmeter on the
    /// pin would show, i.e. the logical level with active_low applied.
    #[cfg(test)]
    pub(super) fn physical(&self, line: u32) -> Result<bool> {
        let l = self.line(line)?;
        Ok(l.level != l.active_low)
    }
}

impl Gpio for SimGpio {
    fn get(&mut self, line: u32) -> Result<bool> {
        Ok(self.line(line)?.level)
    }

    fn set(&mut self, line: u32, active: bool) -> Result<()> {
        let l = self
            .lines
            .get_mut(&line)
            .ok_or_else(|| not_claimed(CHIP, line))?;
        if !l.output {
            return Err(not_output(CHIP, line));
        }
        l.level = active;
        Ok(())
    }

    fn simulate(&mut self, line: u32, active: bool) -> Result<()> {
        let l = self
            .lines
            .get_mut(&line)
            .ok_or_else(|| not_claimed(CHIP, line))?;
        if l.output {
            return Err(Error::Unsupported {
                device: line_device(CHIP, line),
                reason: "is an output; only inputs can be pressed".into(),
            });
        }
        l.level = active;
        let change = Change {
            line,
            active,
            t_ns: monotonic_ns(),
        };
        // The thread only ends when `tx` is dropped, so sending cannot fail while
        // `self` lives; a callback that panicked ended it, and then edges just stop.
        if let Some(tx) = &self.tx {
            let _ = tx.send(change);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        CHIP.into()
    }
}

impl Drop for SimGpio {
    fn drop(&mut self) {
        // The thread wakes up at once when the channel closes.
        drop(self.tx.take());
        join(self.thread.take());
    }
}

/// The event thread: feeds changes to the debouncer, sleeping until the next change or
/// the end of a debounce window, whichever comes first.
fn run(
    rx: mpsc::Receiver<Change>,
    mut debouncer: Debouncer,
    mut on_edge: Box<dyn FnMut(Edge) + Send>,
) {
    loop {
        let next = match debouncer.next_deadline() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(Duration::from_nanos(d.saturating_sub(monotonic_ns()))),
        };
        let edges = match next {
            Ok(c) => debouncer.input(c.line, c.active, c.t_ns),
            Err(RecvTimeoutError::Timeout) => debouncer.expire(monotonic_ns()),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for e in edges {
            on_edge(e);
        }
    }
}
