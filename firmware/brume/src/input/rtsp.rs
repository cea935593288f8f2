//! RTSP pull: a stream whose source is another RTSP server, typically an IP camera,
//! read with `retina` (the client Moonfire NVR uses) on a one-thread tokio runtime.
//!
//! * **Tracks.** The first H.264 video stream (else the first H.265 one, carried with
//!   its `hvcC`, which the HLS, MP4, TS and RTSP outputs do not serve: the status says
//!   so), and the first AAC or G.711 audio stream. G.711 (PCMA, PCMU) is decoded (a
//!   lookup per sample) and encoded to AAC with the FDK encoder, so every output plays
//!   it. Other streams (MJPEG, ONVIF metadata, other audio) are left out, named in the
//!   status. Frames arrive as Brume stores them (4-byte NAL lengths, parameter sets out
//!   of band, raw AAC); a change of parameter sets updates the track list.
//! * **Time.** Each frame's RTP time since the play started (`RTP-Info`'s `rtptime` when
//!   the server gives it for every stream, else each stream's first packet) becomes its
//!   time in µs; the buffer's writer maps that onto the stream's timeline. RTP has no
//!   decode times: frames are taken in arrival order with dts = pts, as cameras send no
//!   B-frames.
//! * **Transport.** `tcp` (interleaved on the RTSP connection, the default), `udp`, or
//!   `auto`: TCP, then UDP for a server that refuses TCP. Over UDP a lost packet costs the
//!   video up to its next keyframe, never a broken picture.
//! * **A camera that is gone** (unreachable, refusing, silent for 10 s, ending the
//!   session) ends the input with a `device-missing` status naming the reason, as an
//!   unplugged USB camera does; its angel retries every 0.5 to 5 s for as long as it
//!   takes. The buffer is left for the next attempt to adopt, so viewers see one
//!   discontinuity and a new epoch, then the stream again.
//! * The URL's password is passed to retina as credentials (Digest or Basic, as the
//!   server asks) and never logged: logs and statuses show the URL with `…` for it.

use super::sink::Sink;
use crate::config::StreamProcess;
use crate::env::Env;
use brume_codec::AacEncoder;
use brume_format::{Codec, Frame, Track};
use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, InitialTimestampPolicy, PlayOptions, Session, SessionOptions,
    SetupOptions, TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const VIDEO: u32 = 1;
const AUDIO: u32 = 2;
/// DESCRIBE, SETUP and PLAY must be done within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A source that sends nothing for this long is gone.
const SILENCE: Duration = Duration::from_secs(10);
/// G.711 audio re-anchors to the RTP clock when the sample count drifts more.
const DRIFT_US: i64 = 20_000;

pub struct Params {
    pub url: String,
    pub transport: String,
    pub processes: Vec<StreamProcess>,
}

pub fn run(env: &Env, stream: &str, p: Params) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let shown = crate::config::hide_url_password(&p.url);
    let _span = tracing::info_span!("rtsp", url = %shown).entered();
    let result = rt.block_on(pull(env, stream, &p));
    if let Err(e) = &result {
        // Unreachable, refusing or silent: the camera is missing until it answers again.
        super::report(env, stream, "device-missing", &format!("{shown}: {e}"));
    }
    result
}

/// The URL without its user and password, and those as credentials.
fn split_credentials(text: &str) -> Result<(url::Url, Option<Credentials>), String> {
    let mut u = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = if u.username().is_empty() && u.password().is_none() {
        None
    } else {
        Some(Credentials {
            username: decode(u.username()),
            password: decode(u.password().unwrap_or("")),
        })
    };
    u.set_username("")
        .map_err(|()| "cannot take the user from the URL")?;
    u.set_password(None)
        .map_err(|()| "cannot take the password from the URL")?;
    Ok((u, creds))
}

/// The audio stream and what becomes of it.
enum AudioKind {
    Aac,
    /// G.711, A-law when true, decoded and encoded to AAC.
    G711(bool),
}

/// What was set up and played.
struct Playing {
    demuxed: Demuxed,
    video: Option<(usize, Codec)>,
    audio: Option<(usize, AudioKind)>,
    /// For the status: what is carried differently or not at all.
    notes: Vec<String>,
    transport: &'static str,
}

async fn pull(env: &Env, stream: &str, p: &Params) -> Result<(), String> {
    let (url, creds) = split_credentials(&p.url)?;
    let transports: &[&'static str] = match p.transport.as_str() {
        "udp" => &["udp"],
        "auto" => &["tcp", "udp"],
        _ => &["tcp"],
    };
    let mut last = String::new();
    let mut playing = None;
    for t in transports {
        match tokio::time::timeout(CONNECT_TIMEOUT, start(&url, creds.clone(), t)).await {
            Ok(Ok(pl)) => {
                playing = Some(pl);
                break;
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
        tracing::info!(transport = t, error = %last, "RTSP source not playing");
    }
    let Some(mut pl) = playing else {
        return Err(last);
    };
    tracing::info!(
        transport = pl.transport,
        video = ?pl.video.as_ref().map(|v| v.1),
        audio = pl.audio.is_some(),
        "RTSP source playing"
    );
    let mut state = State {
        expected: usize::from(pl.video.is_some()) + usize::from(pl.audio.is_some()),
        tracks: BTreeMap::new(),
        sink: None,
        g711: None,
        need_key: true,
        dropped: 0,
        notes: pl.notes.join("; "),
    };
    if let Some((i, kind)) = &pl.audio {
        state.audio_track(&pl.demuxed, *i, kind)?;
    }
    if let Some((i, codec)) = pl.video {
        state.video_track(&pl.demuxed, i, codec);
    }
    let mut last_item = Instant::now();
    let result = loop {
        if super::STOP.load(Ordering::SeqCst) {
            break Ok(());
        }
        let item = match tokio::time::timeout(Duration::from_millis(500), pl.demuxed.next()).await {
            Err(_) if last_item.elapsed() >= SILENCE => {
                break Err(format!("no media for {} s", SILENCE.as_secs()))
            }
            Err(_) => continue,
            Ok(None) => break Err("the server ended the session".into()),
            Ok(Some(Err(e))) => break Err(e.to_string()),
            Ok(Some(Ok(item))) => item,
        };
        last_item = Instant::now();
        if let Err(e) = state.item(env, stream, p, &pl, item) {
            break Err(e);
        }
    };
    if let Some(s) = state.sink {
        match &result {
            Ok(()) => s.finish(),
            // The next attempt adopts the buffer: a new epoch on the same timeline.
            Err(e) => s.abandon(e),
        }
    }
    result
}

/// DESCRIBE, the SETUP of the streams Brume carries, PLAY.
async fn start(
    url: &url::Url,
    creds: Option<Credentials>,
    transport: &'static str,
) -> Result<Playing, String> {
    let mut session = Session::describe(
        url.clone(),
        SessionOptions::default()
            .creds(creds)
            .user_agent(format!("Brume/{}", env!("CARGO_PKG_VERSION"))),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let streams = session.streams();
    let video_of = |name: &str| {
        streams
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name() == name)
    };
    let video = match (video_of("h264"), video_of("h265")) {
        (Some(i), _) => Some((i, Codec::H264)),
        (None, Some(i)) => {
            notes.push(
                "H.265 video is carried, but the HLS, MP4, TS and RTSP outputs serve H.264 only"
                    .to_string(),
            );
            Some((i, Codec::H265))
        }
        (None, None) => None,
    };
    let audio =
        streams
            .iter()
            .enumerate()
            .find_map(|(i, s)| match (s.media(), s.encoding_name()) {
                ("audio", "mpeg4-generic") => Some((i, AudioKind::Aac)),
                ("audio", "pcma") => Some((i, AudioKind::G711(true))),
                ("audio", "pcmu") => Some((i, AudioKind::G711(false))),
                _ => None,
            });
    if let Some((_, AudioKind::G711(alaw))) = &audio {
        let law = if *alaw { "PCMA" } else { "PCMU" };
        notes.push(format!("G.711 audio ({law}) is encoded to AAC"));
    }
    for (i, s) in streams.iter().enumerate() {
        let taken =
            video.as_ref().is_some_and(|v| v.0 == i) || audio.as_ref().is_some_and(|a| a.0 == i);
        if !taken && matches!(s.media(), "video" | "audio") {
            notes.push(format!(
                "{} {} is not carried",
                s.media(),
                s.encoding_name()
            ));
        }
    }
    if video.is_none() && audio.is_none() {
        return Err(format!(
            "no H.264, H.265, AAC or G.711 stream to carry ({})",
            notes.join("; ")
        ));
    }
    let options = || {
        let t = match transport {
            "udp" => Transport::Udp(UdpTransportOptions::default()),
            _ => Transport::Tcp(TcpTransportOptions::default()),
        };
        SetupOptions::default()
            .transport(t)
            .frame_format(FrameFormat::MP4)
    };
    for i in video.iter().map(|v| v.0).chain(audio.iter().map(|a| a.0)) {
        session
            .setup(i, options())
            .await
            .map_err(|e| e.to_string())?;
    }
    let demuxed = session
        .play(
            PlayOptions::default()
                .initial_timestamp(InitialTimestampPolicy::Permissive)
                .enforce_timestamps_with_max_jump_secs(NonZeroU32::new(10).expect("10 is not 0")),
        )
        .await
        .map_err(|e| e.to_string())?
        .demuxed()
        .map_err(|e| e.to_string())?;
    Ok(Playing {
        demuxed,
        video,
        audio,
        notes,
        transport,
    })
}

/// G.711 to AAC: samples counted from an anchor on the RTP clock.
struct G711 {
    alaw: bool,
    enc: AacEncoder,
    rate: i64,
    /// Stream µs of sample 0.
    anchor: Option<i64>,
    samples: i64,
    aus: i64,
}

impl G711 {
    fn frames(&mut self, t_us: i64, payload: &[u8]) -> Result<Vec<Frame>, String> {
        let at = |anchor: i64, samples: i64, rate: i64| anchor + samples * 1_000_000 / rate;
        match self.anchor {
            Some(a) if (t_us - at(a, self.samples, self.rate)).abs() <= DRIFT_US => {}
            _ => self.anchor = Some(t_us - self.samples * 1_000_000 / self.rate),
        }
        self.samples += payload.len() as i64;
        let pcm = brume_codec::g711::decode(payload, self.alaw);
        let anchor = self.anchor.expect("set above");
        let delay = i64::from(self.enc.delay_samples());
        let aus = self.enc.encode(&pcm).map_err(|e| e.to_string())?;
        Ok(aus
            .into_iter()
            .map(|au| {
                // The decoder's output for AU n starts at input sample n*1024 - delay.
                let first = self.aus * 1024 - delay;
                self.aus += 1;
                Frame {
                    track: AUDIO,
                    dts: at(anchor, first, self.rate),
                    cts: 0,
                    key: true,
                    data: au,
                }
            })
            .collect())
    }
}

struct State {
    /// Tracks to know before the buffer opens.
    expected: usize,
    tracks: BTreeMap<u32, Track>,
    sink: Option<Sink>,
    g711: Option<G711>,
    /// Video waits for a keyframe (at the start, after a loss).
    need_key: bool,
    dropped: u64,
    notes: String,
}

/// A retina timestamp as µs since the play started.
fn micros(ts: retina::Timestamp) -> i64 {
    let us = i128::from(ts.elapsed()) * 1_000_000 / i128::from(ts.clock_rate().get());
    us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl State {
    fn video_track(&mut self, demuxed: &Demuxed, i: usize, codec: Codec) -> bool {
        let Some(ParametersRef::Video(v)) = demuxed.streams()[i].parameters() else {
            return false; // not in the SDP: known at the first frame
        };
        let (w, h) = v.pixel_dimensions();
        let t = Track::video(VIDEO, codec, v.extra_data().to_vec(), w, h);
        let changed = self.tracks.get(&VIDEO) != Some(&t);
        self.tracks.insert(VIDEO, t);
        changed
    }

    fn audio_track(&mut self, demuxed: &Demuxed, i: usize, kind: &AudioKind) -> Result<(), String> {
        let Some(ParametersRef::Audio(a)) = demuxed.streams()[i].parameters() else {
            return Err("the audio stream has no parameters".into());
        };
        let (rate, channels) = (a.clock_rate(), u32::from(a.channels().get()));
        let t = match kind {
            AudioKind::Aac => {
                Track::audio(AUDIO, Codec::Aac, a.extra_data().to_vec(), rate, channels)
            }
            AudioKind::G711(alaw) => {
                let enc = AacEncoder::new(rate, channels.min(2), 32_000 * channels.min(2))
                    .map_err(|e| format!("G.711 at {rate} Hz: {e}"))?;
                let t = Track::audio(AUDIO, Codec::Aac, enc.asc().to_vec(), rate, channels.min(2));
                self.g711 = Some(G711 {
                    alaw: *alaw,
                    enc,
                    rate: i64::from(rate),
                    anchor: None,
                    samples: 0,
                    aus: 0,
                });
                t
            }
        };
        self.tracks.insert(AUDIO, t);
        Ok(())
    }

    /// Opens the buffer once every track is known; publishes a changed track list.
    fn publish(&mut self, env: &Env, stream: &str, p: &Params) -> Result<(), String> {
        if self.tracks.len() < self.expected {
            return Ok(());
        }
        let tracks: Vec<Track> = self.tracks.values().cloned().collect();
        let sink = match &mut self.sink {
            Some(s) => s,
            None => {
                let s = Sink::open(env, stream, "rtsp", &p.processes).map_err(|e| e.to_string())?;
                tracing::info!(epoch = s.epoch(), tracks = tracks.len(), "RTSP stream live");
                super::report(env, stream, "running", &self.notes);
                self.sink.insert(s)
            }
        };
        sink.set_tracks(&tracks).map_err(|e| e.to_string())
    }

    fn write(&mut self, f: &Frame) {
        if f.dts < 0 {
            return; // before the play's start (audio encoder priming)
        }
        if let Some(s) = &mut self.sink {
            if let Err(e) = s.write(f) {
                tracing::warn!(error = %e, "frame dropped");
            }
        }
    }

    fn item(
        &mut self,
        env: &Env,
        stream: &str,
        p: &Params,
        pl: &Playing,
        item: CodecItem,
    ) -> Result<(), String> {
        match item {
            CodecItem::VideoFrame(f) => {
                let Some((i, codec)) = pl.video else {
                    return Ok(());
                };
                if f.stream_id() != i {
                    return Ok(());
                }
                // New parameter sets (a new resolution) change the track list.
                let changed = (f.has_new_parameters() || !self.tracks.contains_key(&VIDEO))
                    && self.video_track(&pl.demuxed, i, codec);
                if changed || self.sink.is_none() {
                    self.publish(env, stream, p)?;
                }
                let key = f.is_random_access_point();
                if f.loss() > 0 {
                    self.need_key = true;
                }
                if self.need_key && !key {
                    self.dropped += 1;
                    if let Some(s) = &self.sink {
                        s.add_dropped(1);
                    }
                    return Ok(());
                }
                self.need_key = false;
                let frame = Frame {
                    track: VIDEO,
                    dts: micros(f.timestamp()),
                    cts: 0,
                    key,
                    data: f.into_data(),
                };
                self.write(&frame);
            }
            CodecItem::AudioFrame(f) => {
                if pl.audio.as_ref().is_none_or(|a| a.0 != f.stream_id()) {
                    return Ok(());
                }
                if self.sink.is_none() {
                    self.publish(env, stream, p)?;
                }
                let t = micros(f.timestamp());
                match &mut self.g711 {
                    Some(g) => {
                        for frame in g.frames(t, f.data())? {
                            self.write(&frame);
                        }
                    }
                    None => self.write(&Frame {
                        track: AUDIO,
                        dts: t,
                        cts: 0,
                        key: true,
                        data: f.data().to_vec(),
                    }),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (u, c) = split_credentials("rtsp://admin:p%40ss+w@cam.lan:554/a?b=1").unwrap();
        assert_eq!(u.as_str(), "rtsp://cam.lan:554/a?b=1");
        let c = c.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss+w")
        );
        assert!(split_credentials("rtsp://cam/1").unwrap().1.is_none());
    }

    #[test]
    fn g711_becomes_aac_on_the_rtp_clock() {
        let mut g = G711 {
            alaw: false,
            enc: AacEncoder::new(8000, 1, 32_000).unwrap(),
            rate: 8000,
            anchor: None,
            samples: 0,
            aus: 0,
        };
        let delay = i64::from(g.enc.delay_samples());
        let mut out = Vec::new();
        // 20 ms packets (160 samples) for 2 s, the RTP clock in step.
        for n in 0..100i64 {
            out.extend(g.frames(n * 20_000, &[0xff; 160]).unwrap());
        }
        assert!(out.len() >= 13, "{} AUs from 16000 samples", out.len());
        for (n, f) in out.iter().enumerate() {
            assert_eq!(f.dts, (n as i64 * 1024 - delay) * 1_000_000 / 8000);
        }
        // A gap of a second (lost packets): the next AUs follow the RTP clock again.
        let before = g.aus;
        let late = g.frames(3_000_000, &[0xff; 8000]).unwrap();
        assert!(g.aus > before);
        assert!(
            late.last().unwrap().dts > 2_900_000,
            "{:?}",
            late.last().unwrap().dts
        );
    }
}
