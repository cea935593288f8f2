//! The configuration: one JSON file, validated as a whole, written atomically.
//!
//! Only the controller writes it (temp file, fsync, rename, fsync of the directory), so
//! a crash or power cut mid-write leaves the old or the new file, never a broken one.
//! Every other role only reads it.

mod access;
mod automation;
mod limits;

pub use access::{
    hide_url_password, keep_url_password, url_password_hidden, ReadAccess, HIDDEN, REALM,
};
pub use automation::*;
pub use limits::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
    /// Where and how streams are recorded.
    #[serde(default, skip_serializing_if = "Recording::is_default")]
    pub recording: Recording,
    /// Handlers run when events fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// GPIO pins (buttons, LEDs) and the outputs' state bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpio: Option<Gpio>,
    /// The RTSP server's address (`"0.0.0.0:8554"`, `"off"`), read when `brume serve`
    /// starts, unless its `--rtsp` option or `BRUME_RTSP_LISTEN` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp: Option<String>,
    /// Streams sent to other servers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pushes: BTreeMap<String, Push>,
    /// Connection caps and deadlines against clients that hold resources.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// Host names and origins the API accepts besides the board's own.
    #[serde(default, skip_serializing_if = "Http::is_default")]
    pub http: Http,
    /// Live updates of the binary: the key that signs them.
    #[serde(default, skip_serializing_if = "Update::is_default")]
    pub update: Update,
}

/// Live updates (`POST /api/v1/system/update`, `brume update`). With a public key, an
/// update is taken only with a detached ed25519 signature by the matching private key
/// over the whole binary. The key is set in the file: the API keeps it as it is, as it
/// keeps the admin password, so a stolen session cannot swap the key and then the
/// binary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// The PEM that `openssl pkey -in key.pem -pubout` prints, or the base64 of the 32
    /// raw bytes of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl Update {
    fn is_default(&self) -> bool {
        *self == Update::default()
    }

    /// The configured key's 32 bytes (None: updates need no signature).
    pub fn key(&self) -> Result<Option<[u8; 32]>, FieldError> {
        match &self.public_key {
            None => Ok(None),
            Some(text) => parse_public_key(text)
                .map(Some)
                .map_err(|m| field_err("update.public_key", m)),
        }
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE
/// { OID 1.3.101.112 }, BIT STRING (33 bytes, no unused bits) }, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An ed25519 public key from its PEM (`-----BEGIN PUBLIC KEY-----`, as `openssl pkey
/// -pubout` prints it), the base64 of that DER, or the base64 of the 32 raw bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    use base64ct::{Base64, Encoding};
    const WANTED: &str = "an ed25519 public key: the PEM that `openssl pkey -in key.pem \
                          -pubout` prints, or the base64 of its 32 bytes";
    let text = text.trim();
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "this is a private key, which must stay off the appliance; give {WANTED}"
        ));
    }
    let body: String = if text.starts_with("-----BEGIN") {
        if !text.starts_with("-----BEGIN PUBLIC KEY-----") {
            return Err(format!("not a PUBLIC KEY PEM block; give {WANTED}"));
        }
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect()
    } else {
        text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
    };
    let mut buf = [0u8; 64];
    let der = Base64::decode(&body, &mut buf).map_err(|_| format!("not base64; give {WANTED}"))?;
    let key: [u8; 32] = match der.len() {
        32 => der.try_into().expect("32 bytes"),
        44 if der[..12] == ED25519_SPKI_PREFIX => der[12..].try_into().expect("32 bytes"),
        44 => {
            return Err(format!(
                "a public key of another kind than ed25519; give {WANTED}"
            ))
        }
        n => return Err(format!("{n} bytes is no ed25519 public key; give {WANTED}")),
    };
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| format!("the bytes are not a valid ed25519 public key; give {WANTED}"))?;
    Ok(key)
}

/// What the API accepts as its own name and as a page's origin, besides IP literals,
/// `localhost` and the machine's host name (`<hostname>`, `<hostname>.local`): a name
/// a DNS server or a reverse proxy gives the board (`"cam.example.lan"`), and the
/// origins of pages allowed to change settings (`"https://proxy.example.lan"`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

impl Http {
    fn is_default(&self) -> bool {
        *self == Http::default()
    }

    fn validate(&self) -> Result<(), FieldError> {
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(field_err(
                    format!("http.allowed_hosts.{i}"),
                    "a host name without scheme or port, such as cam.example.lan",
                ));
            }
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && r.len() <= 300
                    && r.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
            if !ok {
                return Err(field_err(
                    format!("http.allowed_origins.{i}"),
                    "an origin: http:// or https://, a host and an optional port, no path",
                ));
            }
        }
        Ok(())
    }
}

/// Recording to local storage (fragmented MP4 files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// The directory of the recordings; relative paths are relative to the config
    /// file's directory. None: `recordings` next to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// A new file every this many seconds.
    #[serde(default = "default_segment")]
    pub segment_s: u32,
    /// A `disk.low` event fires when less than this is free (MiB; 0: only when full).
    #[serde(default = "default_disk_low")]
    pub disk_low_mb: u64,
    /// Deleting old recordings to keep space free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            dir: None,
            segment_s: default_segment(),
            disk_low_mb: default_disk_low(),
            retention: None,
        }
    }
}

impl Recording {
    fn is_default(&self) -> bool {
        *self == Recording::default()
    }

    /// The recordings directory for the configuration file at `config`.
    pub fn dir_for(&self, config: &Path) -> std::path::PathBuf {
        let base = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match &self.dir {
            Some(d) => base.join(d),
            None => base.join("recordings"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// argon2id PHC string; None until the first run sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub source: Source,
    /// Run the input continuously; otherwise it starts on the first viewer.
    #[serde(default)]
    pub always_on: bool,
    /// On-demand streams stop after this many seconds without viewers.
    #[serde(default = "default_idle")]
    pub idle_timeout_s: u32,
    /// Record the stream whenever the appliance runs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub record: bool,
    /// Programs attached to the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<StreamProcess>,
    /// Credentials a viewer needs (RTSP Digest or Basic, HTTP Basic); None: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadAccess>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// The synthetic camera: a moving picture with the time burned in, and a tone.
    Testsrc {
        #[serde(default = "default_width")]
        width: u32,
        #[serde(default = "default_height")]
        height: u32,
        #[serde(default = "default_fps")]
        fps: u32,
        #[serde(default = "default_bitrate")]
        bitrate_kbps: u32,
        #[serde(default = "yes")]
        audio: bool,
        #[serde(default = "default_tone")]
        tone_hz: u32,
        /// A JPEG track at this rate (0: none) for snapshots, MJPEG and thumbnails.
        #[serde(default = "default_jpeg_fps")]
        jpeg_fps: u32,
    },
    /// RTMP publishing to rtmp://HOST:1935/live/<stream>?key=<key>.
    Rtmp {
        /// Missing only in API calls, which make one (or keep the stream's).
        #[serde(default)]
        key: String,
    },
    /// An RTSP server's stream pulled (an IP camera): `rtsp://[user:password@]host[:port]/path`.
    Rtsp {
        url: String,
        /// "tcp" (interleaved on the RTSP connection), "udp", or "auto" (TCP, then UDP
        /// for servers that refuse it).
        #[serde(default = "auto")]
        transport: String,
    },
    /// A V4L2 camera and/or an ALSA microphone, as one stream with common timing.
    Camera {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<CameraVideo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<CameraAudio>,
        /// H.264 bitrate when Brume encodes (raw or MJPEG cameras).
        #[serde(default = "default_bitrate")]
        bitrate_kbps: u32,
        /// JPEG track rate for raw cameras (0: none). MJPEG cameras pass theirs through.
        #[serde(default)]
        jpeg_fps: u32,
    },
}

/// The camera half of a camera stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraVideo {
    /// A stable name (/dev/v4l/by-id/..., /dev/v4l/by-path/...) survives replugging;
    /// /dev/videoN works too. "fake:camera" is a synthetic camera with a flash every second.
    pub device: String,
    /// "auto" (H.264, then MJPEG, then raw), "h264", "mjpeg", "yuyv", "nv12", "yu12".
    #[serde(default = "auto")]
    pub format: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// H.264 encoder for raw and MJPEG cameras: "auto" (the board's V4L2 M2M encoder
    /// if it has one, else software), "software" or "hardware" (the board's or fail).
    #[serde(default = "auto")]
    pub encoder: String,
}

/// The microphone half of a camera stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraAudio {
    /// An ALSA name such as "hw:CARD=Loopback,DEV=1"; "fake:microphone" beeps with the
    /// fake camera's flashes.
    pub device: String,
    #[serde(default = "default_rate")]
    pub rate: u32,
    #[serde(default = "one")]
    pub channels: u32,
}

fn auto() -> String {
    "auto".into()
}
fn default_rate() -> u32 {
    48_000
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_segment() -> u32 {
    600
}
fn default_disk_low() -> u64 {
    256
}
fn default_idle() -> u32 {
    30
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}
fn default_bitrate() -> u32 {
    2000
}
fn default_tone() -> u32 {
    440
}
fn default_jpeg_fps() -> u32 {
    2
}

/// A validation failure, naming the field as a JSON path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: not valid JSON for a Brume config: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("config {path}: {source}")]
    Invalid { path: String, source: FieldError },
}

impl Default for Config {
    /// The embedded default: one always-on synthetic camera, `demo`.
    fn default() -> Self {
        let mut streams = BTreeMap::new();
        streams.insert(
            "demo".to_string(),
            StreamConfig {
                source: Source::Testsrc {
                    width: default_width(),
                    height: default_height(),
                    fps: default_fps(),
                    bitrate_kbps: default_bitrate(),
                    audio: true,
                    tone_hz: default_tone(),
                    jpeg_fps: default_jpeg_fps(),
                },
                always_on: true,
                idle_timeout_s: default_idle(),
                record: false,
                processes: Vec::new(),
                read: None,
            },
        );
        Config {
            version: 1,
            admin: Admin::default(),
            streams,
            recording: Recording::default(),
            triggers: Vec::new(),
            gpio: None,
            rtsp: None,
            pushes: BTreeMap::new(),
            limits: Limits::default(),
            http: Http::default(),
            update: Update::default(),
        }
    }
}

impl Config {
    /// True when viewers can ask for `stream`: a configured stream or a stream
    /// process's output.
    pub fn serves(&self, stream: &str) -> bool {
        self.streams.contains_key(stream)
            || self
                .streams
                .values()
                .flat_map(|s| &s.processes)
                .any(|p| p.output.as_deref() == Some(stream))
    }

    /// The read credentials a viewer of `stream` needs: the stream's own, or for a
    /// stream process's output, those of the stream it is made from.
    pub fn read_access(&self, stream: &str) -> Option<&ReadAccess> {
        if let Some(s) = self.streams.get(stream) {
            return s.read.as_ref();
        }
        self.streams
            .values()
            .find(|s| {
                s.processes
                    .iter()
                    .any(|p| p.output.as_deref() == Some(stream))
            })
            .and_then(|s| s.read.as_ref())
    }

    /// Replaces the plain read passwords by their hashes.
    pub fn hash_read_passwords(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(r) = &mut s.read {
                r.hash_password();
            }
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.version != 1 {
            return Err(field_err("version", "only version 1 is known"));
        }
        if let Some(a) = &self.rtsp {
            if a != "off" && a.parse::<std::net::SocketAddr>().is_err() {
                return Err(field_err("rtsp", "ADDR:PORT, such as 0.0.0.0:8554, or off"));
            }
        }
        if !(10..=86_400).contains(&self.recording.segment_s) {
            return Err(field_err(
                "recording.segment_s",
                "must be 10..=86400 seconds",
            ));
        }
        self.http.validate()?;
        self.update.key()?;
        self.limits.validate()?;
        if let Some(d) = &self.recording.dir {
            if d.is_empty() || d.len() > 1024 || d.contains('\0') {
                return Err(field_err(
                    "recording.dir",
                    "a directory path (absolute, or relative to the config file)",
                ));
            }
        }
        for (name, s) in &self.streams {
            validate_stream_name(name).map_err(|m| field_err(format!("streams.{name}"), m))?;
            s.validate()
                .map_err(|e| field_err(format!("streams.{name}.{}", e.field), e.message))?;
            validate_processes(&s.processes, name, &self.streams)
                .map_err(|e| field_err(format!("streams.{name}.{}", e.field), e.message))?;
        }
        if let Some(r) = &self.recording.retention {
            if r.max_age_days > 36_500 {
                return Err(field_err(
                    "recording.retention.max_age_days",
                    "0 (keep) up to 36500 days",
                ));
            }
        }
        if let Some(g) = &self.gpio {
            validate_gpio(g, &self.streams)?;
        }
        validate_pushes(&self.pushes, &self.streams)?;
        validate_triggers(&self.triggers, self.gpio.as_ref(), &self.pushes)?;
        Ok(())
    }

    /// Reads and validates the file, or creates it with the default if it is missing.
    pub fn load_or_create(path: &Path) -> Result<Config, Error> {
        match std::fs::read(path) {
            Ok(bytes) => Config::parse(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Config::default();
                c.save(path)?;
                Ok(c)
            }
            Err(e) => Err(Error::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Config::parse(path, &bytes)
    }

    /// Parses and validates the file's bytes (`path` only names it in errors). Plain
    /// read passwords are hashed (the next save keeps only the hash).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, Error> {
        let mut c: Config = serde_json::from_slice(bytes).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            source: e,
        })?;
        c.hash_read_passwords();
        c.validate().map_err(|e| Error::Invalid {
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(c)
    }

    /// Writes atomically (see [`write_private`]): the file holds the admin password's
    /// hash and the publish keys, so only its owner may read it.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(self).expect("config always serialises");
        json.push(b'\n');
        write_private(path, &json).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}

/// Writes `bytes` to `path` atomically and readable by its owner only (0600): temp
/// file in the same directory (created 0600), fsync, rename, fsync of the directory.
/// A crash or power cut leaves the old or the new file, never a broken one.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        // A leftover of a crashed write may have other permissions: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl StreamConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.idle_timeout_s == 0 || self.idle_timeout_s > 86_400 {
            return Err(field_err("idle_timeout_s", "must be 1..=86400 seconds"));
        }
        if let Some(r) = &self.read {
            r.validate()?;
        }
        match &self.source {
            Source::Testsrc {
                width,
                height,
                fps,
                bitrate_kbps,
                tone_hz,
                jpeg_fps,
                ..
            } => {
                if !(16..=3840).contains(width) || width % 2 != 0 {
                    return Err(field_err(
                        "source.width",
                        "must be an even number of pixels, 16..=3840",
                    ));
                }
                if !(16..=2160).contains(height) || height % 2 != 0 {
                    return Err(field_err(
                        "source.height",
                        "must be an even number of pixels, 16..=2160",
                    ));
                }
                if !(1..=60).contains(fps) {
                    return Err(field_err("source.fps", "must be 1..=60 frames per second"));
                }
                if !(50..=50_000).contains(bitrate_kbps) {
                    return Err(field_err(
                        "source.bitrate_kbps",
                        "must be 50..=50000 kbit/s",
                    ));
                }
                if jpeg_fps > fps {
                    return Err(field_err(
                        "source.jpeg_fps",
                        "must be 0 (no JPEG track) up to the frame rate",
                    ));
                }
                if !(20..=20_000).contains(tone_hz) {
                    return Err(field_err("source.tone_hz", "must be 20..=20000 Hz"));
                }
            }
            Source::Camera {
                video,
                audio,
                bitrate_kbps,
                jpeg_fps,
            } => {
                if video.is_none() && audio.is_none() {
                    return Err(field_err(
                        "source",
                        "a camera stream needs video, audio or both",
                    ));
                }
                if !(50..=50_000).contains(bitrate_kbps) {
                    return Err(field_err(
                        "source.bitrate_kbps",
                        "must be 50..=50000 kbit/s",
                    ));
                }
                if let Some(v) = video {
                    if !(v.device.starts_with("/dev/") || v.device == "fake:camera") {
                        return Err(field_err(
                            "source.video.device",
                            "a /dev/... path (prefer /dev/v4l/by-id/...) or fake:camera",
                        ));
                    }
                    if !["auto", "h264", "mjpeg", "yuyv", "nv12", "yu12"]
                        .contains(&v.format.as_str())
                    {
                        return Err(field_err(
                            "source.video.format",
                            "auto, h264, mjpeg, yuyv, nv12 or yu12",
                        ));
                    }
                    if !(16..=3840).contains(&v.width) || v.width % 2 != 0 {
                        return Err(field_err(
                            "source.video.width",
                            "must be an even number of pixels, 16..=3840",
                        ));
                    }
                    if !(16..=2160).contains(&v.height) || v.height % 2 != 0 {
                        return Err(field_err(
                            "source.video.height",
                            "must be an even number of pixels, 16..=2160",
                        ));
                    }
                    if !(1..=120).contains(&v.fps) {
                        return Err(field_err(
                            "source.video.fps",
                            "must be 1..=120 frames per second",
                        ));
                    }
                    if !["auto", "software", "hardware"].contains(&v.encoder.as_str()) {
                        return Err(field_err(
                            "source.video.encoder",
                            "auto, software or hardware",
                        ));
                    }
                    if *jpeg_fps > v.fps {
                        return Err(field_err(
                            "source.jpeg_fps",
                            "must be 0 (none) up to the frame rate",
                        ));
                    }
                }
                if let Some(a) = audio {
                    if a.device.is_empty() || a.device.len() > 128 {
                        return Err(field_err(
                            "source.audio.device",
                            "an ALSA device name such as hw:CARD=Loopback,DEV=1",
                        ));
                    }
                    if ![8000, 16000, 22050, 24000, 32000, 44100, 48000].contains(&a.rate) {
                        return Err(field_err(
                            "source.audio.rate",
                            "one of 8000, 16000, 22050, 24000, 32000, 44100, 48000",
                        ));
                    }
                    if !(1..=2).contains(&a.channels) {
                        return Err(field_err("source.audio.channels", "1 or 2"));
                    }
                }
            }
            Source::Rtsp { url, transport } => {
                validate_rtsp_url(url).map_err(|m| field_err("source.url", m))?;
                if !["tcp", "udp", "auto"].contains(&transport.as_str()) {
                    return Err(field_err("source.transport", "tcp, udp or auto"));
                }
            }
            Source::Rtmp { key } => {
                if key.len() < 4
                    || key.len() > 128
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
                {
                    return Err(field_err(
                        "source.key",
                        "must be 4-128 characters of A-Z a-z 0-9 - _ . ~",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An RTSP source URL: `rtsp://`, a host, at most 2,000 characters, the user and password
/// (if any) percent-encoded as URLs need them.
fn validate_rtsp_url(text: &str) -> Result<(), String> {
    const WANTED: &str = "an RTSP URL: rtsp://[user:password@]host[:port]/path";
    if text.len() > 2000 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WANTED.into());
    }
    if url_password_hidden(text) {
        return Err(
            "the password is hidden (answers and exports never show it) and there \
                    is no password of this user at this address to keep; give the password"
                .into(),
        );
    }
    let u = url::Url::parse(text).map_err(|e| format!("{e}; give {WANTED}"))?;
    if u.scheme() != "rtsp" {
        return Err(format!("the scheme is {:?}; give {WANTED}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("no host; give {WANTED}"));
    }
    Ok(())
}

pub fn validate_stream_name(name: &str) -> Result<(), String> {
    brume_shm::validate_stream_name(name).map_err(|e| e.to_string())?;
    // Names that would shadow API or UI paths.
    if matches!(name, "api" | "hls" | "ui" | "assets" | "index") {
        return Err(format!("{name:?} is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let c = Config::default();
        c.validate().unwrap();
        let dir = std::env::temp_dir().join(format!("brume-cfg-{}", std::process::id()));
        let path = dir.join("c.json");
        c.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), c);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds secrets: owner only");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::default();
        if let Source::Testsrc { width, .. } = &mut c.streams.get_mut("demo").unwrap().source {
            *width = 13;
        }
        assert_eq!(c.validate().unwrap_err().field, "streams.demo.source.width");
        let bad: Result<Config, _> =
            serde_json::from_str(r#"{"streams":{"x":{"source":{"type":"nope"}}}}"#);
        assert!(bad.is_err());
        let mut c = Config::default();
        let s = c.streams.remove("demo").unwrap();
        c.streams.insert("../etc".into(), s);
        assert_eq!(c.validate().unwrap_err().field, "streams.../etc");
        let mut c = Config::default();
        c.recording.segment_s = 1;
        assert_eq!(c.validate().unwrap_err().field, "recording.segment_s");
        let c: Config =
            serde_json::from_str(r#"{"recording":{"dir":"/data/rec"},"streams":{}}"#).unwrap();
        assert_eq!(c.recording.segment_s, 600);
        assert_eq!(
            c.recording.dir_for(Path::new("/etc/brume.json")),
            Path::new("/data/rec")
        );
        assert_eq!(
            Recording::default().dir_for(Path::new("/etc/brume/brume.json")),
            Path::new("/etc/brume/recordings")
        );
    }

    #[test]
    fn camera_encoder_is_auto_software_or_hardware() {
        let cam = |encoder: &str| -> Config {
            serde_json::from_str(&format!(
                r#"{{"streams":{{"c":{{"source":{{"type":"camera","video":{{"device":"/dev/video0","encoder":"{encoder}"}}}}}}}}}}"#
            ))
            .unwrap()
        };
        for ok in ["auto", "software", "hardware"] {
            cam(ok).validate().unwrap();
        }
        assert_eq!(
            cam("gpu").validate().unwrap_err().field,
            "streams.c.source.video.encoder"
        );
    }

    #[test]
    fn update_keys_pem_or_base64() {
        // `openssl genpkey -algorithm ed25519 | openssl pkey -pubout` for a fixed key.
        let raw = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        use base64ct::{Base64, Encoding};
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            Base64::encode_string(&der)
        );
        assert_eq!(parse_public_key(&pem).unwrap(), raw);
        assert_eq!(parse_public_key(&Base64::encode_string(&raw)).unwrap(), raw);
        assert_eq!(parse_public_key(&Base64::encode_string(&der)).unwrap(), raw);
        let load = |key: &str| -> Result<Config, FieldError> {
            let c: Config = serde_json::from_value(serde_json::json!({
                "streams": {}, "update": { "public_key": key }
            }))
            .unwrap();
            c.validate().map(|()| c)
        };
        assert_eq!(load(&pem).unwrap().update.key().unwrap(), Some(raw));
        for bad in [
            "",
            "not base64!",
            "AAAA",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            let e = load(bad).unwrap_err();
            assert_eq!(e.field, "update.public_key", "{bad}");
            assert!(e.message.contains("ed25519 public key"), "{bad}: {e}");
        }
        let mut rsa = der.clone();
        rsa[8] = 0x71;
        assert!(parse_public_key(&Base64::encode_string(&rsa))
            .unwrap_err()
            .contains("another kind"));
        // No key: no update section in the file.
        let text = serde_json::to_string(&Config::default()).unwrap();
        assert!(!text.contains("update"), "{text}");
    }

    #[test]
    fn read_passwords_are_hashed_when_read() {
        let dir = std::env::temp_dir().join(format!("brume-cfg3-{}", std::process::id()));
        let path = dir.join("brume.json");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &path,
            r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"abcd"},
                "read":{"user":"nvr","password":"pw"}}}}"#,
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        let read = c.streams["cam"].read.as_ref().unwrap();
        assert_eq!(read.password, None);
        assert_eq!(
            read.secret().unwrap().ha1,
            brume_proto::auth::ha1("nvr", REALM, "pw")
        );
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("\"pw\"") && text.contains("ha1"), "{text}");
        assert_eq!(
            Config::load(&path).unwrap().streams["cam"].read.as_ref(),
            Some(read)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_file_gets_the_demo_stream() {
        let dir = std::env::temp_dir().join(format!("brume-cfg2-{}", std::process::id()));
        let path = dir.join("sub/brume.json");
        let c = Config::load_or_create(&path).unwrap();
        assert!(c.streams["demo"].always_on);
        assert!(path.exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
