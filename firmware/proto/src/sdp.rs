//! SDP (RFC 8866) session descriptions of a stream's tracks for RTSP DESCRIBE: H.264
//! (RFC 6184: `sprop-parameter-sets` and `profile-level-id` from the avcC,
//! `packetization-mode=1`) and AAC (RFC 3640 `mpeg4-generic`, AAC-hbr, `config=` the
//! AudioSpecificConfig). Tracks of other codecs are left out.

use brume_format::{h264, Codec, Track};
use std::fmt::Write;

/// The RTP payload type of the track at `index` in the description (dynamic: 96+).
pub fn payload_type(index: usize) -> u8 {
    96 + (index.min(31) as u8)
}

/// The RTP clock rate of a track: 90 kHz for video, the sample rate for audio.
pub fn clock_rate(track: &Track) -> u32 {
    if track.codec.is_video() {
        90_000
    } else {
        track.sample_rate.max(1)
    }
}

/// The tracks an RTSP client can be given (H.264 and AAC with usable init data).
pub fn playable(tracks: &[Track]) -> Vec<Track> {
    tracks
        .iter()
        .filter(|t| match t.codec {
            Codec::H264 => h264::parse_avcc(&t.init).is_ok_and(|c| !c.sps.is_empty()),
            Codec::Aac => !t.init.is_empty() && t.sample_rate > 0,
            _ => false,
        })
        .cloned()
        .collect()
}

/// The control attribute of a track (relative to the session's base URL).
pub fn control(track: &Track) -> String {
    format!("track{}", track.id)
}

/// The description of `tracks` (give it [`playable`] tracks; each gets the payload
/// type of its index). `session_id` and `origin_ip` fill the `o=` line; `name` the
/// `s=` line.
pub fn describe(tracks: &[Track], name: &str, session_id: u64, origin_ip: &str) -> String {
    let ip_kind = if origin_ip.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} 1 IN {ip_kind} {origin_ip}\r\ns={name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=tool:brume\r\na=range:npt=now-\r\na=control:*\r\n"
    );
    for (i, t) in tracks.iter().enumerate() {
        let pt = payload_type(i);
        match t.codec {
            Codec::H264 => {
                let Ok(cfg) = h264::parse_avcc(&t.init) else {
                    continue;
                };
                let sps = &cfg.sps[0];
                let pli = if sps.len() >= 4 {
                    format!("{:02X}{:02X}{:02X}", sps[1], sps[2], sps[3])
                } else {
                    format!("{:02X}00{:02X}", cfg.profile_idc, cfg.level_idc)
                };
                let sets: Vec<String> = cfg.sps.iter().chain(&cfg.pps).map(|p| base64(p)).collect();
                let _ = write!(
                    s,
                    "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={}\r\n",
                    sets.join(",")
                );
                if t.width > 0 && t.height > 0 {
                    let _ = write!(s, "a=framesize:{pt} {}-{}\r\n", t.width, t.height);
                }
            }
            Codec::Aac => {
                let channels = t.channels.max(1);
                let config: String = t.init.iter().map(|b| format!("{b:02X}")).collect();
                let _ = write!(
                    s,
                    "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} MPEG4-GENERIC/{}/{channels}\r\na=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}\r\n",
                    t.sample_rate
                );
            }
            _ => continue,
        }
        let _ = write!(s, "a=control:{}\r\n", control(t));
    }
    s
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn h264_and_aac_fields() {
        let sps = vec![0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
        let pps = vec![0x68, 0xce, 0x3c, 0x80];
        let mut avcc = vec![1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, sps.len() as u8];
        avcc.extend_from_slice(&sps);
        avcc.extend_from_slice(&[1, 0, pps.len() as u8]);
        avcc.extend_from_slice(&pps);
        let tracks = vec![
            Track::video(1, Codec::H264, avcc, 1280, 720),
            Track::audio(2, Codec::Aac, vec![0x11, 0x90], 48000, 2),
            Track::video(3, Codec::Jpeg, vec![], 640, 480),
        ];
        let usable = playable(&tracks);
        assert_eq!(usable.len(), 2, "JPEG left out");
        let sdp = describe(&usable, "demo", 42, "10.0.0.1");
        assert!(
            sdp.starts_with("v=0\r\no=- 42 1 IN IP4 10.0.0.1\r\ns=demo\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"));
        assert!(sdp.contains(&format!(
            "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets={},{}\r\n",
            base64(&sps),
            base64(&pps)
        )));
        assert!(sdp.contains("a=control:track1\r\n"));
        assert!(sdp.contains("m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"));
        assert!(sdp.contains(
            "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n"
        ));
        assert!(sdp.contains("a=control:track2\r\n"));
        assert!(sdp.lines().all(|l| !l.is_empty()));
        assert_eq!(clock_rate(&usable[0]), 90000);
        assert_eq!(clock_rate(&usable[1]), 48000);
        // A broken avcC is not playable.
        assert!(playable(&[Track::video(1, Codec::H264, vec![1], 1, 1)]).is_empty());
    }
}
