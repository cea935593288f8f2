//! RTP (RFC 3550) packetization of Brume frames and RTCP sender reports: H.264 as
//! single NAL unit packets and FU-A fragments (RFC 6184, packetization-mode=1), AAC as
//! `mpeg4-generic` AAC-hbr (RFC 3640: 13-bit sizes, 3-bit indexes). Timestamps come
//! from each frame's microsecond time, never from a frame count; the caller passes
//! every time in (no clock here).

use brume_format::h264;

/// The largest RTP packet (header included) the packetizers produce: below a 1500-byte
/// Ethernet MTU with room for IP, UDP and tunnel headers.
pub const DEFAULT_MTU: usize = 1400;
/// RTP fixed header size (no CSRCs, no extension).
pub const HEADER: usize = 12;
/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One RTP stream (one track to one client): payload type, SSRC, sequence numbers,
/// the timestamp origin and the counters a sender report carries.
#[derive(Clone, Debug)]
pub struct RtpStream {
    pt: u8,
    ssrc: u32,
    seq: u16,
    clock: u32,
    ts_base: u32,
    packets: u32,
    octets: u32,
    mtu: usize,
}

impl RtpStream {
    /// A stream with payload type `pt`, `ssrc`, first sequence number `seq`, RTP clock
    /// rate `clock` (90000 for video, the sample rate for audio) and timestamp origin
    /// `ts_base` (the RTP timestamp of media time 0; random per RFC 3550).
    pub fn new(pt: u8, ssrc: u32, seq: u16, clock: u32, ts_base: u32) -> RtpStream {
        RtpStream {
            pt: pt & 0x7f,
            ssrc,
            seq,
            clock: clock.max(1),
            ts_base,
            packets: 0,
            octets: 0,
            mtu: DEFAULT_MTU,
        }
    }

    /// Sets the largest packet size (at least 64 bytes).
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu.max(64);
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number of the next packet.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The RTP clock rate.
    pub fn clock(&self) -> u32 {
        self.clock
    }

    /// The RTP timestamp of media time `us` (microseconds): exact, from the absolute
    /// time, wrapping modulo 2^32.
    pub fn timestamp(&self, us: i64) -> u32 {
        let ticks = (i128::from(us) * i128::from(self.clock)).div_euclid(1_000_000);
        self.ts_base.wrapping_add(ticks as u32)
    }

    fn packet(&mut self, ts: u32, marker: bool, parts: &[&[u8]]) -> Vec<u8> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut p = Vec::with_capacity(HEADER + len);
        p.push(0x80);
        p.push(self.pt | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        for part in parts {
            p.extend_from_slice(part);
        }
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(len as u32);
        p
    }

    /// The packets of one H.264 access unit (`data`: 4-byte length-prefixed NAL
    /// units) presented at `pts_us`. `param_sets` (SPS and PPS NAL units) are sent
    /// first when given (before keyframes, so a client can start there even if it
    /// ignored the SDP). NAL units that fit a packet go whole; bigger ones as FU-A
    /// fragments. The marker bit is set on the access unit's last packet.
    pub fn h264(
        &mut self,
        data: &[u8],
        pts_us: i64,
        param_sets: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, brume_format::Error> {
        let ts = self.timestamp(pts_us);
        let mut nals: Vec<&[u8]> = param_sets.iter().map(Vec::as_slice).collect();
        nals.extend(h264::avcc_nals(data)?.into_iter().filter(|n| !n.is_empty()));
        let max = self.mtu - HEADER;
        let mut out = Vec::new();
        let count = nals.len();
        for (i, nal) in nals.into_iter().enumerate() {
            let last_nal = i + 1 == count;
            if nal.len() <= max {
                out.push(self.packet(ts, last_nal, &[nal]));
                continue;
            }
            // FU-A: indicator (F, NRI, type 28), header (S, E, type), fragment.
            let indicator = (nal[0] & 0xe0) | 28;
            let kind = nal[0] & 0x1f;
            let body = &nal[1..];
            let chunk = max - 2;
            let n = body.len().div_ceil(chunk);
            for (j, frag) in body.chunks(chunk).enumerate() {
                let start = if j == 0 { 0x80 } else { 0 };
                let end = if j + 1 == n { 0x40 } else { 0 };
                let hdr = [indicator, start | end | kind];
                out.push(self.packet(ts, last_nal && j + 1 == n, &[&hdr, frag]));
            }
        }
        Ok(out)
    }

    /// The packets of one AAC access unit decoded at `dts_us`: one AU per packet
    /// (AU-headers-length 16, a 13-bit size and a 3-bit index 0), marker set; an AU
    /// bigger than a packet is fragmented, each fragment with the whole AU's size and
    /// the marker on the last one (RFC 3640 §3.2.3). AUs longer than 8191 bytes
    /// cannot be described and give no packets.
    pub fn aac(&mut self, au: &[u8], dts_us: i64) -> Vec<Vec<u8>> {
        if au.len() > 0x1fff {
            return Vec::new();
        }
        let ts = self.timestamp(dts_us);
        let size = (au.len() as u16) << 3;
        let hdr = [0, 16, (size >> 8) as u8, size as u8];
        let max = self.mtu - HEADER - hdr.len();
        if au.is_empty() {
            return vec![self.packet(ts, true, &[&hdr])];
        }
        let n = au.len().div_ceil(max);
        au.chunks(max)
            .enumerate()
            .map(|(j, part)| self.packet(ts, j + 1 == n, &[&hdr, part]))
            .collect()
    }

    /// An RTCP compound packet: a sender report saying that at wall-clock time
    /// `wall_us` (Unix microseconds, written as NTP time) the media time is `media_us`
    /// (written as this stream's RTP timestamp), with the packet and octet counts so
    /// far, then an SDES with `cname`.
    pub fn sender_report(&self, wall_us: i64, media_us: i64, cname: &str) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        p.extend_from_slice(&[0x80, 200, 0, 6]);
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&ntp(wall_us).to_be_bytes());
        p.extend_from_slice(&self.timestamp(media_us).to_be_bytes());
        p.extend_from_slice(&self.packets.to_be_bytes());
        p.extend_from_slice(&self.octets.to_be_bytes());
        // SDES: one chunk, CNAME item, end, padded to 32 bits.
        let name = &cname.as_bytes()[..cname.len().min(255)];
        let chunk_len = 4 + 2 + name.len() + 1;
        let padded = chunk_len.div_ceil(4) * 4;
        let words = (4 + padded) / 4 - 1;
        p.extend_from_slice(&[0x81, 202]);
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.push(1);
        p.push(name.len() as u8);
        p.extend_from_slice(name);
        p.resize(p.len() + padded - chunk_len + 1, 0);
        p
    }
}

/// Unix microseconds as a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point).
pub fn ntp(unix_us: i64) -> u64 {
    let us = unix_us.max(0) as u64;
    let secs = us / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = ((us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// True when `packet` is an RTCP packet (payload types 200-204 in the second byte),
/// as seen on a port or channel that carries both.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (200..=204).contains(&packet[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (marker, seq, ts, payload) of a packet.
    fn split(p: &[u8]) -> (bool, u16, u32, &[u8]) {
        assert_eq!(p[0], 0x80);
        (
            p[1] & 0x80 != 0,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            &p[HEADER..],
        )
    }

    /// Reassembles NAL units from single-NAL and FU-A packets (RFC 6184).
    fn depacketize_h264(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in packets {
            let (_, _, _, pl) = split(p);
            match pl[0] & 0x1f {
                28 => {
                    let (s, e) = (pl[1] & 0x80 != 0, pl[1] & 0x40 != 0);
                    if s {
                        assert!(fu.is_none(), "start inside a fragmented unit");
                        fu = Some(vec![(pl[0] & 0xe0) | (pl[1] & 0x1f)]);
                    }
                    fu.as_mut()
                        .expect("fragment without start")
                        .extend_from_slice(&pl[2..]);
                    if e {
                        nals.push(fu.take().unwrap());
                    }
                }
                1..=23 => nals.push(pl.to_vec()),
                t => panic!("unexpected NAL type {t}"),
            }
        }
        assert!(fu.is_none(), "unterminated fragment");
        nals
    }

    fn avcc(nals: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    fn nal(kind: u8, len: usize) -> Vec<u8> {
        let mut n = vec![0x60 | kind];
        n.extend((0..len - 1).map(|i| (i * 7 + len) as u8));
        n
    }

    #[test]
    fn h264_round_trips_across_fragment_boundaries() {
        let max = DEFAULT_MTU - HEADER;
        // Around the single-packet limit and the FU-A payload size (max - 2).
        for len in [
            1,
            2,
            max - 3,
            max - 2,
            max - 1,
            max,
            max + 1,
            2 * (max - 2) + 1,
            2 * (max - 2) + 2,
            50_000,
        ] {
            let sps = vec![0x67, 0x42, 0xc0, 0x1f, 1];
            let pps = vec![0x68, 0xce, 2];
            let frame = vec![nal(6, 9), nal(5, len)];
            let mut s = RtpStream::new(96, 7, 65534, 90000, 1000);
            let packets = s
                .h264(&avcc(&frame), 1_000_000, &[sps.clone(), pps.clone()])
                .unwrap();
            assert!(packets.iter().all(|p| p.len() <= DEFAULT_MTU), "len {len}");
            let nals = depacketize_h264(&packets);
            assert_eq!(
                nals,
                vec![sps, pps, frame[0].clone(), frame[1].clone()],
                "len {len}"
            );
            // Sequence numbers run on (wrapping), one timestamp, marker on the last.
            for (i, p) in packets.iter().enumerate() {
                let (m, seq, ts, _) = split(p);
                assert_eq!(seq, 65534u16.wrapping_add(i as u16));
                assert_eq!(ts, 1000 + 90000);
                assert_eq!(m, i + 1 == packets.len());
            }
            let fu_count = packets.iter().filter(|p| p[HEADER] & 0x1f == 28).count();
            let expect = if len <= max {
                0
            } else {
                (len - 1).div_ceil(max - 2)
            };
            assert_eq!(fu_count, expect, "len {len}");
            if expect > 0 {
                let fus: Vec<_> = packets.iter().filter(|p| p[HEADER] & 0x1f == 28).collect();
                assert_eq!(fus[0][HEADER + 1] & 0xc0, 0x80);
                assert_eq!(fus[fus.len() - 1][HEADER + 1] & 0xc0, 0x40);
                assert_eq!(fus[0][HEADER] & 0xe0, 0x60, "NRI kept");
            }
        }
    }

    #[test]
    fn h264_bad_frame_is_an_error() {
        let mut s = RtpStream::new(96, 7, 0, 90000, 0);
        assert!(s.h264(&[0, 0, 0, 9, 1], 0, &[]).is_err());
    }

    #[test]
    fn timestamps_follow_media_time() {
        let s = RtpStream::new(97, 1, 0, 48000, u32::MAX - 10);
        assert_eq!(s.timestamp(0), u32::MAX - 10);
        assert_eq!(s.timestamp(21_333), 1023u32.wrapping_add(u32::MAX - 10));
        // Absolute: a day in, no drift.
        let v = RtpStream::new(96, 1, 0, 90000, 0);
        assert_eq!(v.timestamp(86_400_000_000), (86_400u64 * 90000) as u32);
        assert_eq!(v.timestamp(-1), u32::MAX, "before the origin: floor");
    }

    #[test]
    fn aac_au_headers_and_fragments() {
        let mut s = RtpStream::new(97, 2, 10, 44100, 0);
        let au: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let p = s.aac(&au, 1_000_000);
        assert_eq!(p.len(), 1);
        let (m, seq, ts, pl) = split(&p[0]);
        assert!(m);
        assert_eq!((seq, ts), (10, 44100));
        assert_eq!(&pl[..2], &[0, 16], "AU-headers-length: 16 bits");
        let size = u16::from_be_bytes([pl[2], pl[3]]);
        assert_eq!((size >> 3, size & 7), (300, 0));
        assert_eq!(&pl[4..], &au[..]);

        let big: Vec<u8> = (0..3000).map(|i| (i * 3) as u8).collect();
        let p = s.aac(&big, 0);
        assert!(p.len() == 3 && p.iter().all(|p| p.len() <= DEFAULT_MTU));
        let mut joined = Vec::new();
        for (i, pk) in p.iter().enumerate() {
            let (m, _, _, pl) = split(pk);
            assert_eq!(m, i == 2);
            assert_eq!(u16::from_be_bytes([pl[2], pl[3]]) >> 3, 3000);
            joined.extend_from_slice(&pl[4..]);
        }
        assert_eq!(joined, big);
        assert!(s.aac(&vec![0; 9000], 0).is_empty());
    }

    #[test]
    fn sender_report_maps_wall_clock_to_rtp_time() {
        let mut s = RtpStream::new(96, 0xdeadbeef, 0, 90000, 5);
        s.h264(&avcc(&[nal(1, 100)]), 0, &[]).unwrap();
        let r = s.sender_report(1_700_000_000_500_000, 2_000_000, "brume");
        assert!(is_rtcp(&r));
        assert_eq!(&r[..4], &[0x80, 200, 0, 6]);
        assert_eq!(&r[4..8], &0xdeadbeefu32.to_be_bytes());
        let ntp_secs = u32::from_be_bytes([r[8], r[9], r[10], r[11]]);
        let frac = u32::from_be_bytes([r[12], r[13], r[14], r[15]]);
        assert_eq!(u64::from(ntp_secs), 1_700_000_000 + NTP_UNIX_OFFSET);
        assert_eq!(frac, 1 << 31, "half a second");
        assert_eq!(
            u32::from_be_bytes([r[16], r[17], r[18], r[19]]),
            5 + 180_000
        );
        assert_eq!(
            u32::from_be_bytes([r[20], r[21], r[22], r[23]]),
            1,
            "packets"
        );
        assert_eq!(
            u32::from_be_bytes([r[24], r[25], r[26], r[27]]),
            100,
            "octets"
        );
        // SDES: its length field matches, the whole is 32-bit aligned.
        let sdes = &r[28..];
        assert_eq!(sdes[1], 202);
        let words = usize::from(u16::from_be_bytes([sdes[2], sdes[3]]));
        assert_eq!(sdes.len(), (words + 1) * 4);
        assert_eq!(&sdes[8..10], &[1, 5]);
        assert_eq!(&sdes[10..15], b"brume");
        assert!(!is_rtcp(&s.aac(&[1], 0)[0]));
    }
}
