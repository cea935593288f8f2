//! HLS (RFC 8216) media playlists for fMP4 and MPEG-TS segments.

use std::fmt::Write;

/// One media segment of a playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number.
    pub sequence: u64,
    /// Duration in microseconds.
    pub duration_us: i64,
    /// URI of the segment, relative to the playlist or absolute. Written verbatim.
    pub uri: String,
    /// True if the segment follows a discontinuity (timestamps or encoding changed).
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first frame (unix ms): `EXT-X-PROGRAM-DATE-TIME`.
    pub date_ms: Option<i64>,
}

/// A live or ended media playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Playlist<'a> {
    pub segments: &'a [Segment],
    /// `EXT-X-MAP` URI of the init segment (fMP4 segments); None for MPEG-TS
    /// segments, which carry their own PAT/PMT and parameter sets.
    pub init_uri: Option<&'a str>,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities before the first segment listed.
    pub discontinuity_sequence: u64,
    /// Adds `EXT-X-ENDLIST`.
    pub ended: bool,
}

/// Milliseconds of a duration, rounded; negative durations count as 0.
fn millis(us: i64) -> i64 {
    us.max(0).saturating_add(500) / 1000
}

/// A media playlist for `segments` in order: version 7 for fMP4 (with
/// `#EXT-X-MAP:URI="init_uri"`), version 3 for MPEG-TS (no init segment). `#EXTINF` durations are written in milliseconds;
/// `#EXT-X-TARGETDURATION` is the longest of them rounded up (at least 1),
/// `#EXT-X-MEDIA-SEQUENCE` the first segment's sequence (0 when empty);
/// `#EXT-X-DISCONTINUITY-SEQUENCE` is written when not 0, and each segment's date as
/// `#EXT-X-PROGRAM-DATE-TIME`.
pub fn media_playlist(p: &Playlist) -> String {
    let (segments, init_uri) = (p.segments, p.init_uri);
    let max_ms = segments
        .iter()
        .map(|s| millis(s.duration_us))
        .max()
        .unwrap_or(0);
    let target = ((max_ms + 999) / 1000).max(1);
    let first = segments.first().map_or(0, |s| s.sequence);
    let mut out = String::with_capacity(200 + segments.len() * 48);
    // Writing to a String cannot fail.
    let version = if init_uri.is_some() { 7 } else { 3 };
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    if let Some(uri) = init_uri {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{uri}\"");
    }
    if p.discontinuity_sequence != 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            p.discontinuity_sequence
        );
    }
    for s in segments {
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(ms) = s.date_ms {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                crate::clock::rfc3339_ms(ms)
            );
        }
        let ms = millis(s.duration_us);
        let _ = write!(out, "#EXTINF:{}.{:03},\n{}\n", ms / 1000, ms % 1000, s.uri);
    }
    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(sequence: u64, duration_us: i64, discontinuity: bool) -> Segment {
        Segment {
            sequence,
            duration_us,
            uri: format!("seg{sequence}.m4s"),
            discontinuity,
            date_ms: None,
        }
    }

    #[test]
    fn live_playlist() {
        let text = media_playlist(&Playlist {
            segments: &[
                seg(41, 2_000_000, false),
                seg(42, 2_002_000, false),
                seg(43, 1_999_999, true),
            ],
            init_uri: Some("init.mp4"),
            discontinuity_sequence: 0,
            ended: false,
        });
        assert_eq!(
            text,
            "#EXTM3U\n\
             #EXT-X-VERSION:7\n\
             #EXT-X-TARGETDURATION:3\n\
             #EXT-X-MEDIA-SEQUENCE:41\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXTINF:2.000,\n\
             seg41.m4s\n\
             #EXTINF:2.002,\n\
             seg42.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXTINF:2.000,\n\
             seg43.m4s\n"
        );
    }

    #[test]
    fn ended_playlist() {
        let text = media_playlist(&Playlist {
            segments: &[seg(0, 4_000_400, false), seg(1, 433_333, false)],
            init_uri: Some("i.mp4"),
            discontinuity_sequence: 0,
            ended: true,
        });
        assert_eq!(
            text,
            "#EXTM3U\n\
             #EXT-X-VERSION:7\n\
             #EXT-X-TARGETDURATION:4\n\
             #EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"i.mp4\"\n\
             #EXTINF:4.000,\n\
             seg0.m4s\n\
             #EXTINF:0.433,\n\
             seg1.m4s\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn empty_and_odd_durations() {
        let pl = |segments, init_uri| Playlist {
            segments,
            init_uri,
            discontinuity_sequence: 0,
            ended: false,
        };
        let text = media_playlist(&pl(&[], Some("init.mp4")));
        assert!(text.contains("#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(!text.contains("#EXTINF"));
        let text = media_playlist(&pl(
            &[seg(5, -3, false), seg(6, i64::MAX, false)],
            Some("a"),
        ));
        assert!(text.contains("#EXTINF:0.000,\nseg5.m4s\n"));
    }

    #[test]
    fn dates_and_discontinuity_sequence() {
        let mut a = seg(7, 1_000_000, false);
        a.date_ms = Some(1_796_679_017_511);
        let text = media_playlist(&Playlist {
            segments: &[a],
            init_uri: Some("init-3.mp4"),
            discontinuity_sequence: 2,
            ended: false,
        });
        assert!(text.contains(
            "#EXT-X-MAP:URI=\"init-3.mp4\"\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-12-07T21:30:17.511Z\n#EXTINF:1.000,\nseg7.m4s\n"
        ));
    }

    #[test]
    fn mpeg_ts_segments_need_no_init_segment() {
        let mut a = seg(7, 1_000_000, false);
        a.uri = "7.ts".into();
        let text = media_playlist(&Playlist {
            segments: &[a],
            init_uri: None,
            discontinuity_sequence: 0,
            ended: false,
        });
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"), "{text}");
        assert!(!text.contains("EXT-X-MAP"), "{text}");
        assert!(text.contains("#EXTINF:1.000,\n7.ts\n"), "{text}");
    }
}
