//! The Raspberry Pi's GPIO through `rppal` (BCM GPIO numbers; Pi 5 included). Levels are
//! read and driven through the GPIO registers; edges come from rppal's interrupt
//! polling and go through the shared [`Debouncer`]. On other machines, opening fails
//! with "rppal: not a Raspberry Pi (UnknownModel)".

use super::{join, line_device, monotonic_ns, no_simulate, not_claimed, not_output};
use super::{Debouncer, Edge, Gpio, InputSpec, OutputSpec, Pull};
use crate::{Error, Result};
use ::rppal::gpio::{self as rp, InputPin, Level, OutputPin, Trigger};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

const CHIP: &str = "rppal";

/// The longest the event thread waits before checking whether to stop.
const POLL: Duration = Duration::from_millis(50);

/// Turns an rppal error about `line` (None: the GPIO as a whole) into Brume's.
fn map_err(line: Option<u32>, e: rp::Error) -> Error {
    let device = match line {
        Some(l) => line_device(CHIP, l),
        None => CHIP.to_string(),
    };
    match e {
        rp::Error::UnknownModel => Error::Unsupported {
            device: CHIP.into(),
            reason: "not a Raspberry Pi (UnknownModel)".into(),
        },
        rp::Error::PinUsed(_) => Error::Unsupported {
            device,
            reason: "already in use".into(),
        },
        rp::Error::PinNotAvailable(_) => Error::Unsupported {
            device,
            reason: "no such GPIO on this Raspberry Pi".into(),
        },
        rp::Error::PermissionDenied(path) => Error::Os {
            device,
            op: "open",
            source: io::Error::new(io::ErrorKind::PermissionDenied, path),
        },
        rp::Error::Io(source) => Error::Os {
            device,
            op: "gpio",
            source,
        },
        rp::Error::ThreadPanic => Error::Unsupported {
            device,
            reason: "rppal's interrupt thread panicked".into(),
        },
    }
}

struct Input {
    line: u32,
    pin: InputPin,
    active_low: bool,
}

impl Input {
    /// Logical level now.
    fn level(&self) -> bool {
        (self.pin.read() == Level::High) != self.active_low
    }
}

struct Output {
    pin: OutputPin,
    active_low: bool,
    /// Logical level last driven.
    level: bool,
}

/// The rppal backend.
pub(super) struct RppalGpio {
    model: String,
    /// Shared with the event thread, which polls their interrupts.
    inputs: Arc<Vec<Input>>,
    outputs: HashMap<u32, Output>,
    stop: Arc<AtomicBool>,
    /// Set by the event thread if polling for interrupts failed.
    failed: Arc<OnceLock<String>>,
    thread: Option<JoinHandle<()>>,
}

/// rppal numbers pins with a u8.
fn pin_number(line: u32) -> Result<u8> {
    u8::try_from(line).map_err(|_| Error::Unsupported {
        device: line_device(CHIP, line),
        reason: "no such GPIO on this Raspberry Pi".into(),
    })
}

impl RppalGpio {
    /// Claims the pins: inputs with their bias and an interrupt on both edges, outputs
    /// driven to their initial level.
    pub(super) fn open(
        inputs: &[InputSpec],
        outputs: &[OutputSpec],
        on_edge: Box<dyn FnMut(Edge) + Send>,
    ) -> Result<RppalGpio> {
        let gpio = rp::Gpio::new().map_err(|e| map_err(None, e))?;
        let model = ::rppal::system::DeviceInfo::new()
            .map(|d| d.model().to_string())
            .unwrap_or_else(|_| "unknown model".into());
        super::check_unique(CHIP, inputs, outputs)?;

        let mut claimed_inputs = Vec::new();
        let mut claimed_outputs = HashMap::new();
        let mut debouncer = Debouncer::new();
        if let Err(e) = claim(
            &gpio,
            inputs,
            outputs,
            &mut claimed_inputs,
            &mut claimed_outputs,
            &mut debouncer,
        ) {
            clear_interrupts(&mut claimed_inputs);
            return Err(e);
        }

        let mut handle = RppalGpio {
            model,
            inputs: Arc::new(claimed_inputs),
            outputs: claimed_outputs,
            stop: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(OnceLock::new()),
            thread: None,
        };
        if !handle.inputs.is_empty() {
            let inputs = handle.inputs.clone();
            let stop = handle.stop.clone();
            let failed = handle.failed.clone();
            let thread = std::thread::Builder::new()
                .name("gpio-rppal".into())
                .spawn(move || run(gpio, inputs, debouncer, stop, failed, on_edge))
                .map_err(|e| Error::Os {
                    device: CHIP.into(),
                    op: "spawn event thread",
                    source: e,
                })?;
            handle.thread = Some(thread);
        }
        Ok(handle)
    }

    fn check_failed(&self) -> Result<()> {
        match self.failed.get() {
            Some(reason) => Err(Error::Gone {
                device: CHIP.into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Gpio for RppalGpio {
    fn get(&mut self, line: u32) -> Result<bool> {
        self.check_failed()?;
        if let Some(o) = self.outputs.get(&line) {
            return Ok(o.level);
        }
        self.inputs
            .iter()
            .find(|i| i.line == line)
            .map(Input::level)
            .ok_or_else(|| not_claimed(CHIP, line))
    }

    fn set(&mut self, line: u32, active: bool) -> Result<()> {
        self.check_failed()?;
        let Some(o) = self.outputs.get_mut(&line) else {
            return Err(if self.inputs.iter().any(|i| i.line == line) {
                not_output(CHIP, line)
            } else {
                not_claimed(CHIP, line)
            });
        };
        if active != o.active_low {
            o.pin.set_high();
        } else {
            o.pin.set_low();
        }
        o.level = active;
        Ok(())
    }

    fn simulate(&mut self, line: u32, _active: bool) -> Result<()> {
        Err(no_simulate(CHIP, line))
    }

    fn describe(&self) -> String {
        format!("rppal ({})", self.model)
    }
}

impl Drop for RppalGpio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        join(self.thread.take());
        // rppal keeps a pin's interrupt registered after the pin is dropped: clear it
        // so that the line is released now. The thread has ended, so the Arc is ours.
        if let Some(inputs) = Arc::get_mut(&mut self.inputs) {
            clear_interrupts(inputs);
        }
    }
}

/// Claims the pins: inputs with their bias and an interrupt on both edges (and their
/// starting level in the debouncer), outputs driven to their initial level. On error,
/// what was claimed so far is in `claimed_inputs` and `claimed_outputs`.
fn claim(
    gpio: &rp::Gpio,
    inputs: &[InputSpec],
    outputs: &[OutputSpec],
    claimed_inputs: &mut Vec<Input>,
    claimed_outputs: &mut HashMap<u32, Output>,
    debouncer: &mut Debouncer,
) -> Result<()> {
    for i in inputs {
        let pin = gpio
            .get(pin_number(i.line)?)
            .map_err(|e| map_err(Some(i.line), e))?;
        let pin = match i.pull {
            Pull::None => pin.into_input(),
            Pull::Up => pin.into_input_pullup(),
            Pull::Down => pin.into_input_pulldown(),
        };
        let mut input = Input {
            line: i.line,
            pin,
            active_low: i.active_low,
        };
        input
            .pin
            .set_interrupt(Trigger::Both, None)
            .map_err(|e| map_err(Some(i.line), e))?;
        debouncer.add_line(i.line, input.level(), i.debounce_ms);
        claimed_inputs.push(input);
    }
    for o in outputs {
        let pin = gpio
            .get(pin_number(o.line)?)
            .map_err(|e| map_err(Some(o.line), e))?;
        let pin = if o.initial != o.active_low {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        claimed_outputs.insert(
            o.line,
            Output {
                pin,
                active_low: o.active_low,
                level: o.initial,
            },
        );
    }
    Ok(())
}

/// Releases the inputs' interrupt requests, which rppal keeps after a pin is dropped.
fn clear_interrupts(inputs: &mut [Input]) {
    for i in inputs {
        let _ = i.pin.clear_interrupt();
    }
}

/// The event thread: polls the inputs' interrupts for at most [`POLL`] at a time (or
/// until the next debounce deadline) and feeds them to the debouncer.
fn run(
    gpio: rp::Gpio,
    inputs: Arc<Vec<Input>>,
    mut debouncer: Debouncer,
    stop: Arc<AtomicBool>,
    failed: Arc<OnceLock<String>>,
    mut on_edge: Box<dyn FnMut(Edge) + Send>,
) {
    let pins: Vec<&InputPin> = inputs.iter().map(|i| &i.pin).collect();
    while !stop.load(Ordering::Acquire) {
        let mut timeout = POLL;
        if let Some(d) = debouncer.next_deadline() {
            // Whole milliseconds, rounded up: rppal waits in milliseconds.
            let ms = d.saturating_sub(monotonic_ns()).div_ceil(1_000_000);
            timeout = timeout.min(Duration::from_millis(ms));
        }
        let edges = match gpio.poll_interrupts(&pins, false, Some(timeout)) {
            Ok(Some((pin, event))) => {
                let Some(input) = inputs.iter().find(|i| i.pin.pin() == pin.pin()) else {
                    continue;
                };
                let high = event.trigger == Trigger::RisingEdge;
                // The kernel's event timestamp: CLOCK_MONOTONIC.
                let t_ns = u64::try_from(event.timestamp.as_nanos()).unwrap_or(u64::MAX);
                debouncer.input(input.line, high != input.active_low, t_ns)
            }
            Ok(None) => debouncer.expire(monotonic_ns()),
            Err(e) => {
                let _ = failed.set(format!("waiting for interrupts: {e}"));
                return;
            }
        };
        for e in edges {
            on_edge(e);
        }
    }
}
