//! GPIO in the controller: the configured pins on their backend, input edges turned
//! into `gpio.edge` events, outputs driven by trigger actions (set, clear, toggle,
//! pulse, blink) and by state bindings ("on while stream X records").

use super::Shared;
use crate::config::{
    BindingMode, BindingState, Direction, Gpio as GpioConfig, GpioAction, GpioBackend, Pull,
};
use brume_hw::gpio as hw;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often bindings are evaluated (and a missing chip retried).
const TICK: Duration = Duration::from_millis(100);
/// Half-period of a blinking binding.
const BLINK: Duration = Duration::from_millis(500);
const RETRY: Duration = Duration::from_secs(5);

struct Open {
    config: GpioConfig,
    dev: Option<Box<dyn hw::Gpio>>,
    error: Option<String>,
    tried: Instant,
    /// A running pulse or blink per pin (a newer action cancels it).
    effects: HashMap<String, tokio::task::JoinHandle<()>>,
    /// What each binding last asked its pin for.
    bound: HashMap<String, bool>,
}

#[derive(Default)]
pub struct GpioState {
    open: Mutex<Option<Open>>,
}

fn backend(b: GpioBackend) -> hw::Backend {
    match b {
        GpioBackend::Sim => hw::Backend::Sim,
        GpioBackend::Cdev => hw::Backend::Cdev,
        GpioBackend::Rppal => hw::Backend::Rppal,
    }
}

fn open_device(state: &Shared, c: &GpioConfig) -> Result<Box<dyn hw::Gpio>, String> {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut names = HashMap::new();
    for (name, p) in &c.pins {
        names.insert(p.line, name.clone());
        match p.direction {
            Direction::Input => inputs.push(hw::InputSpec {
                line: p.line,
                pull: match p.pull {
                    Pull::None => hw::Pull::None,
                    Pull::Up => hw::Pull::Up,
                    Pull::Down => hw::Pull::Down,
                },
                active_low: p.active_low,
                debounce_ms: p.debounce_ms,
            }),
            Direction::Output => outputs.push(hw::OutputSpec {
                line: p.line,
                initial: p.initial,
                active_low: p.active_low,
            }),
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<hw::Edge>();
    let dev = hw::open(
        backend(c.backend),
        &c.chip,
        &inputs,
        &outputs,
        Box::new(move |e| {
            let _ = tx.send(e);
        }),
    )
    .map_err(|e| e.to_string())?;
    let st = state.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let Some(pin) = names.get(&e.line) else {
                continue;
            };
            tracing::info!(pin = %pin, line = e.line, active = e.active, "gpio edge");
            super::events::emit(
                &st,
                "gpio.edge",
                None,
                json!({
                    "pin": pin,
                    "line": e.line,
                    "active": e.active,
                    "edge": if e.active { "active" } else { "inactive" },
                    "monotonic_ns": e.monotonic_ns,
                }),
            );
        }
    });
    Ok(dev)
}

/// Opens the configured pins (at start and after a configuration change).
pub fn apply(state: &Shared) {
    let want = state.config.lock().expect("config lock").gpio.clone();
    let mut open = state.gpio.open.lock().expect("gpio lock");
    if open.as_ref().map(|o| &o.config) == want.as_ref() {
        return;
    }
    if let Some(mut o) = open.take() {
        for (_, e) in o.effects.drain() {
            e.abort();
        }
        drop(o.dev.take()); // releases the lines
    }
    let Some(config) = want else { return };
    let (dev, error) = match open_device(state, &config) {
        Ok(d) => {
            tracing::info!(device = %d.describe(), pins = config.pins.len(), "gpio ready");
            (Some(d), None)
        }
        Err(e) => {
            tracing::error!(error = %e, "gpio unavailable");
            (None, Some(e))
        }
    };
    *open = Some(Open {
        config,
        dev,
        error,
        tried: Instant::now(),
        effects: HashMap::new(),
        bound: HashMap::new(),
    });
}

/// The pin's line and the open device.
fn line_of<'a>(o: &'a mut Open, pin: &str) -> Result<(u32, &'a mut Box<dyn hw::Gpio>), String> {
    let line = o
        .config
        .pins
        .get(pin)
        .map(|p| p.line)
        .ok_or_else(|| format!("no pin named {pin:?}"))?;
    let dev = o
        .dev
        .as_mut()
        .ok_or_else(|| o.error.clone().unwrap_or_else(|| "gpio is not open".into()))?;
    Ok((line, dev))
}

fn write(o: &mut Open, pin: &str, active: bool) -> Result<(), String> {
    let (line, dev) = line_of(o, pin)?;
    dev.set(line, active).map_err(|e| e.to_string())
}

fn read(o: &mut Open, pin: &str) -> Result<bool, String> {
    let (line, dev) = line_of(o, pin)?;
    dev.get(line).map_err(|e| e.to_string())
}

fn with_open<T>(
    state: &Shared,
    f: impl FnOnce(&mut Open) -> Result<T, String>,
) -> Result<T, String> {
    let mut open = state.gpio.open.lock().expect("gpio lock");
    let o = open.as_mut().ok_or("no gpio in the configuration")?;
    f(o)
}

fn output_pin(o: &Open, pin: &str) -> Result<(), String> {
    match o.config.pins.get(pin) {
        Some(p) if p.direction == Direction::Output => Ok(()),
        Some(_) => Err(format!("pin {pin:?} is an input")),
        None => Err(format!("no pin named {pin:?}")),
    }
}

/// A trigger's GPIO action. Returns what was done.
pub fn act(
    state: &Shared,
    pin: &str,
    action: GpioAction,
    ms: u32,
    count: u32,
) -> Result<String, String> {
    let pin = pin.to_string();
    with_open(state, |o| {
        output_pin(o, &pin)?;
        if let Some(e) = o.effects.remove(&pin) {
            e.abort();
        }
        let period = Duration::from_millis(ms.into());
        match action {
            GpioAction::Set => write(o, &pin, true).map(|_| format!("{pin} set")),
            GpioAction::Clear => write(o, &pin, false).map(|_| format!("{pin} cleared")),
            GpioAction::Toggle => {
                let now = read(o, &pin)?;
                write(o, &pin, !now).map(|_| {
                    format!(
                        "{pin} toggled to {}",
                        if now { "inactive" } else { "active" }
                    )
                })
            }
            GpioAction::Pulse => {
                write(o, &pin, true)?;
                let (st, p) = (state.clone(), pin.clone());
                o.effects.insert(
                    pin.clone(),
                    tokio::spawn(async move {
                        tokio::time::sleep(period).await;
                        let _ = with_open(&st, |o| write(o, &p, false));
                    }),
                );
                Ok(format!("{pin} pulsed for {ms} ms"))
            }
            GpioAction::Blink => {
                let (st, p) = (state.clone(), pin.clone());
                o.effects.insert(
                    pin.clone(),
                    tokio::spawn(async move {
                        let mut n = 0;
                        while count == 0 || n < count {
                            if with_open(&st, |o| write(o, &p, true)).is_err() {
                                return;
                            }
                            tokio::time::sleep(period).await;
                            let _ = with_open(&st, |o| write(o, &p, false));
                            tokio::time::sleep(period).await;
                            n += 1;
                        }
                    }),
                );
                Ok(format!("{pin} blinking"))
            }
        }
    })
}

/// The API's view: backend, device, error and every pin's level.
pub fn status(state: &Shared) -> Value {
    let mut open = state.gpio.open.lock().expect("gpio lock");
    let Some(o) = open.as_mut() else {
        return json!({ "configured": false, "pins": [] });
    };
    let names: Vec<String> = o.config.pins.keys().cloned().collect();
    let mut pins = Vec::new();
    for name in names {
        let p = o.config.pins[&name].clone();
        let level = read(o, &name).ok();
        let bound = o.config.bindings.iter().any(|b| b.pin == name);
        pins.push(json!({
            "name": name,
            "line": p.line,
            "direction": p.direction,
            "active_low": p.active_low,
            "pull": p.pull,
            "active": level,
            "bound": bound,
        }));
    }
    json!({
        "configured": true,
        "backend": o.config.backend,
        "chip": o.config.chip,
        "device": o.dev.as_ref().map(|d| d.describe()),
        "error": o.error,
        "pins": pins,
    })
}

/// The API's pin control: outputs are driven; inputs of the `sim` backend take the
/// level a wired button would give them (and fire edges like one).
pub fn set(state: &Shared, pin: &str, active: bool) -> Result<(), String> {
    with_open(state, |o| {
        let p = o
            .config
            .pins
            .get(pin)
            .cloned()
            .ok_or_else(|| format!("no pin named {pin:?}"))?;
        if let Some(e) = o.effects.remove(pin) {
            e.abort();
        }
        let dev = o
            .dev
            .as_mut()
            .ok_or_else(|| o.error.clone().unwrap_or_else(|| "gpio is not open".into()))?;
        match p.direction {
            Direction::Output => dev.set(p.line, active),
            Direction::Input => dev.simulate(p.line, active),
        }
        .map_err(|e| e.to_string())
    })
}

/// Presses a `sim` input like a button: active, then inactive `ms` later.
pub async fn press(state: &Shared, pin: &str, ms: u32) -> Result<(), String> {
    let is_input = with_open(state, |o| {
        Ok(o.config
            .pins
            .get(pin)
            .is_some_and(|p| p.direction == Direction::Input))
    })?;
    if !is_input {
        return Err(format!("no input pin named {pin:?}"));
    }
    set(state, pin, true)?;
    tokio::time::sleep(Duration::from_millis(ms.into())).await;
    set(state, pin, false)
}

fn binding_holds(state: &Shared, when: BindingState, stream: &str) -> bool {
    match when {
        BindingState::Recording => super::recording::is_active(state, stream),
        BindingState::Live => brume_shm::Reader::observe(&state.env.ns, stream)
            .map(|r| {
                let s = r.status();
                s.writer_alive && !s.ended
            })
            .unwrap_or(false),
        BindingState::Failed => state
            .inputs
            .lock()
            .expect("inputs lock")
            .get(stream)
            .is_some_and(|i| matches!(i.state, "failed" | "restarting" | "device-missing")),
        BindingState::Pushing => super::push::streaming(state, stream),
    }
}

/// Drives bound outputs and retries a chip that was missing; runs for the
/// controller's lifetime.
pub async fn bindings(state: Shared) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let (bindings, retry) = {
            let open = state.gpio.open.lock().expect("gpio lock");
            match open.as_ref() {
                Some(o) => (
                    o.config.bindings.clone(),
                    o.dev.is_none() && o.tried.elapsed() >= RETRY,
                ),
                None => continue,
            }
        };
        if retry {
            let config = state
                .gpio
                .open
                .lock()
                .expect("gpio lock")
                .as_ref()
                .map(|o| o.config.clone());
            if let Some(c) = config {
                let r = open_device(&state, &c);
                let mut open = state.gpio.open.lock().expect("gpio lock");
                if let Some(o) = open.as_mut().filter(|o| o.config == c) {
                    o.tried = Instant::now();
                    match r {
                        Ok(d) => {
                            tracing::info!(device = %d.describe(), "gpio ready");
                            o.dev = Some(d);
                            o.error = None;
                            o.bound.clear();
                        }
                        Err(e) => o.error = Some(e),
                    }
                }
            }
        }
        // Several bindings on one pin: on if any holds.
        let mut want: HashMap<String, bool> = HashMap::new();
        let phase = (started.elapsed().as_millis() / BLINK.as_millis()).is_multiple_of(2);
        for b in &bindings {
            let holds = binding_holds(&state, b.when, &b.stream);
            let level = holds && (b.mode == BindingMode::On || phase);
            *want.entry(b.pin.clone()).or_default() |= level;
        }
        let mut open = state.gpio.open.lock().expect("gpio lock");
        let Some(o) = open.as_mut() else { continue };
        for (pin, level) in want {
            if o.bound.get(&pin) == Some(&level) {
                continue;
            }
            match write(o, &pin, level) {
                Ok(()) => {
                    o.bound.insert(pin, level);
                }
                Err(e) => {
                    tracing::debug!(pin = %pin, error = %e, "bound output not driven");
                }
            }
        }
    }
}
