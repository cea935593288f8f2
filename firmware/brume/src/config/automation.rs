//! The automation part of the configuration: triggers and their handlers, GPIO pins and
//! state bindings, pushes to other servers, stream processes and storage limits.

use super::{field_err, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Every event Brume fires. `process.<name>` events come from stream processes.
pub const EVENTS: &[&str] = &[
    "system.start",
    "system.stop",
    "stream.added",
    "stream.changed",
    "stream.removed",
    "stream.started",
    "stream.ready",
    "stream.ended",
    "input.crashed",
    "connection.opened",
    "connection.closed",
    "viewer.requested",
    "recording.started",
    "recording.ended",
    "push.started",
    "push.ended",
    "process.exited",
    "gpio.edge",
    "disk.low",
];

/// The one event whose handlers decide something: may this viewer watch?
pub const BLOCKING_EVENT: &str = "viewer.requested";

/// True for an event name a trigger may name.
pub fn known_event(name: &str) -> bool {
    EVENTS.contains(&name)
        || name
            .strip_prefix("process.")
            .is_some_and(|n| n != "exited" && valid_token(n))
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// One event name, or several (`"event": ["stream.ready", "stream.ended"]`): one
/// handler, one queue, so a receiver gets all of them in the order they fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventNames {
    One(String),
    Many(Vec<String>),
}

impl EventNames {
    pub fn names(&self) -> &[String] {
        match self {
            EventNames::One(n) => std::slice::from_ref(n),
            EventNames::Many(v) => v,
        }
    }
}

/// A trigger: when `event` fires (for one of `streams`, and with a payload matching
/// `match`), run `handler`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub event: EventNames,
    /// Only for these streams (empty: any stream, and events without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// Payload fields that must be equal, e.g. `{"pin": "button", "active": true}`.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, Value>,
    pub handler: Handler,
}

impl Trigger {
    pub fn fires_on(&self, event: &str) -> bool {
        self.event.names().iter().any(|n| n == event)
    }

    /// A `viewer.requested` trigger (validation keeps it apart from other events).
    pub fn is_blocking(&self) -> bool {
        self.fires_on(BLOCKING_EVENT)
    }
}

/// What a blocking handler's answer is when it fails or times out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    #[default]
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Handler {
    /// POST the event as JSON. Blocking events read the answer from the reply
    /// ("allow"/"deny", true/false, or `{"allow": bool}`; 403 denies).
    Webhook {
        url: String,
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
        /// Further attempts for non-blocking events, with back-off (1 s, 2 s, 4 s...).
        #[serde(default = "default_retries")]
        retries: u32,
        /// The answer of a blocking event when the handler fails or times out.
        #[serde(default)]
        default: Decision,
    },
    /// Run a program: the event as JSON on stdin, BRUME_EVENT/BRUME_STREAM/
    /// BRUME_EVENT_ID in its environment; blocking events read "allow"/"deny" from
    /// its stdout (exit status 0 with no answer allows).
    Exec {
        command: Vec<String>,
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
        #[serde(default)]
        default: Decision,
    },
    /// Drive a GPIO output.
    Gpio {
        pin: String,
        action: GpioAction,
        /// Pulse length, or blink half-period.
        #[serde(default = "default_pulse")]
        ms: u32,
        /// Blinks (0: until another action or binding changes the pin).
        #[serde(default = "default_blinks")]
        count: u32,
    },
    /// One of Brume's own actions.
    Action {
        action: BuiltIn,
        /// The stream acted on; default: the event's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
        /// The push (start_push, stop_push).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        push: Option<String>,
    },
}

impl Handler {
    pub fn kind(&self) -> &'static str {
        match self {
            Handler::Webhook { .. } => "webhook",
            Handler::Exec { .. } => "exec",
            Handler::Gpio { .. } => "gpio",
            Handler::Action { .. } => "action",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioAction {
    Set,
    Clear,
    Toggle,
    Pulse,
    Blink,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltIn {
    StartRecording,
    StopRecording,
    ToggleRecording,
    StartPush,
    StopPush,
    RestartStream,
}

fn default_timeout() -> u32 {
    5000
}
fn default_retries() -> u32 {
    3
}
fn default_pulse() -> u32 {
    500
}
fn default_blinks() -> u32 {
    3
}

/// GPIO pins by name, on one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpio {
    pub backend: GpioBackend,
    /// The GPIO chip for `cdev`: a path, a name (gpiochip0) or a label.
    #[serde(default = "default_chip")]
    pub chip: String,
    #[serde(default)]
    pub pins: BTreeMap<String, Pin>,
    /// Outputs that follow Brume's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
}

fn default_chip() -> String {
    "gpiochip0".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioBackend {
    /// In-process pins the API can press and read (laptops, tests).
    Sim,
    /// The Linux GPIO character device (any board).
    Cdev,
    /// Raspberry Pi GPIO through rppal.
    Rppal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Input,
    Output,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    #[default]
    None,
    Up,
    Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The line offset on the chip (the BCM GPIO number on a Raspberry Pi).
    pub line: u32,
    pub direction: Direction,
    /// Inputs: bias.
    #[serde(default)]
    pub pull: Pull,
    /// Active when the line is low (a button to ground with a pull-up; an LED wired
    /// to 3.3 V).
    #[serde(default)]
    pub active_low: bool,
    /// Inputs: edges closer than this are one edge.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u32,
    /// Outputs: the level at start.
    #[serde(default)]
    pub initial: bool,
}

fn default_debounce() -> u32 {
    20
}

/// An output that follows a state: on (or blinking) while it holds, off otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub pin: String,
    pub when: BindingState,
    pub stream: String,
    #[serde(default)]
    pub mode: BindingMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// The stream is being recorded.
    Recording,
    /// The stream's buffer has a live writer.
    Live,
    /// The stream's input failed, crashes or misses its device.
    Failed,
    /// A push of the stream is connected.
    Pushing,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingMode {
    #[default]
    On,
    Blink,
}

/// A push: the stream sent to another server (RTMP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub stream: String,
    /// rtmp://host[:port]/app/streamkey
    pub url: String,
    /// Pushed whenever the appliance runs (otherwise started by API or trigger).
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub always_on: bool,
}

/// A program attached to a stream: fed the stream's tracks as MPEG-TS on stdin, its
/// MPEG-TS stdout becomes new tracks (of the stream, or of `output`), JSON lines on
/// fd 3 fire `process.<event>` triggers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamProcess {
    pub name: String,
    /// argv; `{stream}` is replaced by the stream's name.
    pub command: Vec<String>,
    /// Which of the stream's tracks the program gets.
    #[serde(default)]
    pub tracks: TrackSelect,
    /// A stream name for the result; none: the result's tracks join this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The program produces no media (an analyser): its stdout is ignored.
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub no_output: bool,
    #[serde(default)]
    pub restart: RestartPolicy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackSelect {
    #[default]
    All,
    Video,
    Audio,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// Free-space limits of the recordings directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Delete the oldest recordings while less than this much space is free.
    #[serde(default)]
    pub min_free_mb: u64,
    /// Delete recordings older than this (0: keep).
    #[serde(default)]
    pub max_age_days: u32,
}

pub fn validate_triggers(
    triggers: &[Trigger],
    gpio: Option<&Gpio>,
    pushes: &BTreeMap<String, Push>,
) -> Result<(), FieldError> {
    for (i, t) in triggers.iter().enumerate() {
        let f = |rest: &str| format!("triggers.{i}.{rest}");
        let names = t.event.names();
        if names.is_empty() {
            return Err(field_err(f("event"), "an event name or a list of them"));
        }
        for n in names {
            if !known_event(n) {
                return Err(field_err(
                    f("event"),
                    format!(
                        "unknown event {n:?} (known: {}, process.<name>)",
                        EVENTS.join(", ")
                    ),
                ));
            }
        }
        if t.is_blocking() && names.len() > 1 {
            return Err(field_err(
                f("event"),
                "viewer.requested decides; it cannot share a trigger with other events",
            ));
        }
        for s in &t.streams {
            super::validate_stream_name(s).map_err(|m| field_err(f("streams"), m))?;
        }
        let blocking = t.is_blocking();
        match &t.handler {
            Handler::Webhook {
                url,
                timeout_ms,
                retries,
                ..
            } => {
                if let Err(m) = crate::webhook::HttpUrl::parse(url) {
                    return Err(field_err(f("handler.url"), m));
                }
                if !(100..=120_000).contains(timeout_ms) {
                    return Err(field_err(f("handler.timeout_ms"), "100..=120000 ms"));
                }
                if *retries > 10 {
                    return Err(field_err(f("handler.retries"), "0..=10"));
                }
            }
            Handler::Exec {
                command,
                timeout_ms,
                ..
            } => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(field_err(
                        f("handler.command"),
                        "a program and its arguments",
                    ));
                }
                if !(100..=120_000).contains(timeout_ms) {
                    return Err(field_err(f("handler.timeout_ms"), "100..=120000 ms"));
                }
            }
            Handler::Gpio { pin, ms, .. } => {
                if blocking {
                    return Err(field_err(f("handler"), "viewer.requested needs a webhook or exec handler (it must answer allow or deny)"));
                }
                let out = gpio
                    .and_then(|g| g.pins.get(pin))
                    .is_some_and(|p| p.direction == Direction::Output);
                if !out {
                    return Err(field_err(
                        f("handler.pin"),
                        format!("no output pin named {pin:?} in gpio.pins"),
                    ));
                }
                if !(10..=600_000).contains(ms) {
                    return Err(field_err(f("handler.ms"), "10..=600000 ms"));
                }
            }
            Handler::Action {
                action,
                stream,
                push,
            } => {
                if blocking {
                    return Err(field_err(f("handler"), "viewer.requested needs a webhook or exec handler (it must answer allow or deny)"));
                }
                if let Some(s) = stream {
                    super::validate_stream_name(s)
                        .map_err(|m| field_err(f("handler.stream"), m))?;
                }
                if matches!(action, BuiltIn::StartPush | BuiltIn::StopPush) {
                    match push {
                        Some(p) if pushes.contains_key(p) => {}
                        _ => {
                            return Err(field_err(
                                f("handler.push"),
                                "the name of a configured push",
                            ))
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn validate_gpio(
    g: &Gpio,
    streams: &BTreeMap<String, super::StreamConfig>,
) -> Result<(), FieldError> {
    if g.chip.is_empty() || g.chip.len() > 256 {
        return Err(field_err("gpio.chip", "a chip path, name or label"));
    }
    let mut lines = std::collections::BTreeSet::new();
    for (name, p) in &g.pins {
        if !valid_token(name) {
            return Err(field_err(
                format!("gpio.pins.{name}"),
                "pin names are 1-64 of A-Z a-z 0-9 - _ .",
            ));
        }
        if p.line > 1023 {
            return Err(field_err(format!("gpio.pins.{name}.line"), "0..=1023"));
        }
        if !lines.insert(p.line) {
            return Err(field_err(
                format!("gpio.pins.{name}.line"),
                format!("line {} is used by another pin", p.line),
            ));
        }
        if p.debounce_ms > 1000 {
            return Err(field_err(
                format!("gpio.pins.{name}.debounce_ms"),
                "0..=1000 ms",
            ));
        }
    }
    for (i, b) in g.bindings.iter().enumerate() {
        let out = g
            .pins
            .get(&b.pin)
            .is_some_and(|p| p.direction == Direction::Output);
        if !out {
            return Err(field_err(
                format!("gpio.bindings.{i}.pin"),
                format!("no output pin named {:?}", b.pin),
            ));
        }
        if !streams.contains_key(&b.stream) {
            return Err(field_err(
                format!("gpio.bindings.{i}.stream"),
                format!("no stream named {:?}", b.stream),
            ));
        }
    }
    Ok(())
}

pub fn validate_pushes(
    pushes: &BTreeMap<String, Push>,
    streams: &BTreeMap<String, super::StreamConfig>,
) -> Result<(), FieldError> {
    for (name, p) in pushes {
        if !valid_token(name) {
            return Err(field_err(
                format!("pushes.{name}"),
                "push names are 1-64 of A-Z a-z 0-9 - _ .",
            ));
        }
        if !streams.contains_key(&p.stream) {
            return Err(field_err(
                format!("pushes.{name}.stream"),
                format!("no stream named {:?}", p.stream),
            ));
        }
        if let Err(e) = brume_proto::PushClient::new(&p.url) {
            return Err(field_err(format!("pushes.{name}.url"), e.to_string()));
        }
    }
    Ok(())
}

pub fn validate_processes(
    list: &[StreamProcess],
    stream: &str,
    streams: &BTreeMap<String, super::StreamConfig>,
) -> Result<(), FieldError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in list.iter().enumerate() {
        let f = |rest: &str| format!("processes.{i}.{rest}");
        if !valid_token(&p.name) || !names.insert(p.name.as_str()) {
            return Err(field_err(
                f("name"),
                "a unique name of 1-64 A-Z a-z 0-9 - _ .",
            ));
        }
        if p.command.is_empty() || p.command[0].is_empty() {
            return Err(field_err(f("command"), "a program and its arguments"));
        }
        if let Some(o) = &p.output {
            super::validate_stream_name(o).map_err(|m| field_err(f("output"), m))?;
            if o == stream || streams.contains_key(o) {
                return Err(field_err(
                    f("output"),
                    format!("{o:?} is a configured stream; the output needs a name of its own"),
                ));
            }
            if p.no_output {
                return Err(field_err(
                    f("output"),
                    "a process with no_output has no output stream",
                ));
            }
        }
    }
    Ok(())
}
