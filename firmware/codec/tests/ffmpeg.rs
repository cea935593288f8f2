//! Encodes with the crate's encoders and checks the output with ffprobe/ffmpeg.
//! These tools are required: a missing tool fails the test (it does not skip).

use std::path::{Path, PathBuf};
use std::process::Command;

use brume_codec::{AacEncoder, H264Encoder, TestPattern, Tone, I420};

const FFPROBE: &str = "/usr/bin/ffprobe";
const FFMPEG: &str = "/usr/bin/ffmpeg";

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brume-codec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the temp dir");
    dir
}

/// Runs a tool and returns (stdout, stderr); panics with a clear message if it is missing
/// or fails.
fn run(tool: &str, args: &[&str]) -> (Vec<u8>, String) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is required by this test but is not installed (apt-get install ffmpeg)"
    );
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
    (out.stdout, stderr)
}

fn ffprobe_json(args: &[&str], file: &Path) -> serde_json::Value {
    let mut all = vec!["-v", "error", "-of", "json"];
    all.extend_from_slice(args);
    all.push(file.to_str().unwrap());
    let (stdout, _) = run(FFPROBE, &all);
    serde_json::from_slice(&stdout).expect("ffprobe JSON")
}

/// The SPS and PPS NAL units of an avcC record.
fn parameter_sets(avcc: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(avcc[0], 1, "avcC version");
    assert_eq!(avcc[4] & 3, 3, "4-byte NAL lengths");
    let mut sets = Vec::new();
    let mut pos = 5;
    for count_mask in [0x1f, 0xff] {
        let count = avcc[pos] & count_mask;
        pos += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([avcc[pos], avcc[pos + 1]]));
            sets.push(avcc[pos + 2..pos + 2 + len].to_vec());
            pos += 2 + len;
        }
    }
    sets
}

/// Converts an AVCC access unit to Annex-B, checking the lengths cover it exactly.
fn avcc_to_annex_b(au: &[u8], out: &mut Vec<u8>) -> Vec<u8> {
    let mut types = Vec::new();
    let mut pos = 0;
    while pos < au.len() {
        let len = u32::from_be_bytes(au[pos..pos + 4].try_into().unwrap()) as usize;
        let nal = &au[pos + 4..pos + 4 + len];
        types.push(nal[0] & 0x1f);
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        pos += 4 + len;
    }
    assert_eq!(pos, au.len());
    types
}

#[test]
fn h264_stream_decodes_with_ffmpeg() {
    let (w, h) = (320, 240);
    let mut pattern = TestPattern::new(w, h);
    let mut enc = H264Encoder::new(w, h, 30, 400_000, 30).unwrap();
    let mut pic = I420::new(w, h);
    let mut annex_b = Vec::new();
    let mut keys = Vec::new();
    let mut bytes = 0;
    for i in 0..60u64 {
        let lines = [
            format!("2026-11-24 13:45:{:02}.{:03}", i / 30, i % 30 * 33),
            format!("frame {i:06}"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        pattern.render(i, &refs, &mut pic);
        let au = enc.encode(&pic, false).unwrap().expect("no skipped frames");
        bytes += au.data.len();
        if au.key {
            for ps in parameter_sets(enc.avcc().expect("avcC after a keyframe")) {
                annex_b.extend_from_slice(&[0, 0, 0, 1]);
                annex_b.extend_from_slice(&ps);
            }
        }
        let types = avcc_to_annex_b(&au.data, &mut annex_b);
        assert!(
            !types.contains(&7) && !types.contains(&8),
            "parameter sets in frame {i}"
        );
        assert_eq!(types.contains(&5), au.key, "frame {i}: {types:?}");
        keys.push(au.key);
    }
    let expected: Vec<bool> = (0..60).map(|i| i % 30 == 0).collect();
    assert_eq!(keys, expected);
    // 2 s at 400 kb/s is 100 kB; allow generous slack for the keyframes.
    assert!(bytes < 250_000, "{bytes} bytes for 2 s at 400 kb/s");

    let dir = temp_dir("h264");
    let file = dir.join("pattern.h264");
    std::fs::write(&file, &annex_b).unwrap();

    let probe = ffprobe_json(&["-show_streams"], &file);
    let s = &probe["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{probe}");
    assert_eq!(s["width"], 320, "{probe}");
    assert_eq!(s["height"], 240, "{probe}");

    let frames = ffprobe_json(
        &["-show_entries", "frame=key_frame,pict_type", "-show_frames"],
        &file,
    );
    let frames = frames["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 60);
    let decoded_keys: Vec<bool> = frames.iter().map(|f| f["key_frame"] == 1).collect();
    assert_eq!(decoded_keys, expected);

    let (_, stderr) = run(
        FFMPEG,
        &[
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An ADTS header for one raw AAC access unit, from the AudioSpecificConfig.
fn adts_header(asc: &[u8], au_len: usize) -> [u8; 7] {
    let object_type = asc[0] >> 3;
    let freq_index = ((asc[0] & 7) << 1) | (asc[1] >> 7);
    let channels = (asc[1] >> 3) & 0xf;
    let len = au_len + 7;
    [
        0xff,
        0xf1,
        ((object_type - 1) << 6) | (freq_index << 2) | (channels >> 2),
        ((channels & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        (((len & 7) << 5) as u8) | 0x1f,
        0xfc,
    ]
}

#[test]
fn aac_tone_decodes_with_ffmpeg() {
    let rate = 48_000;
    let mut enc = AacEncoder::new(rate, 1, 128_000).unwrap();
    assert_eq!(enc.frame_samples(), 1024);
    assert_eq!(enc.asc(), [0x11, 0x88], "AAC-LC, 48 kHz, mono");
    let mut tone = Tone::new(1000.0, rate, 1, 0.5);
    let mut aus = Vec::new();
    // 1 s in uneven chunks, to exercise the internal buffering.
    let mut left = rate as usize;
    for chunk in [1usize, 999, 4096, 333].iter().cycle() {
        let n = (*chunk).min(left);
        let mut pcm = vec![0i16; n];
        tone.fill(&mut pcm);
        aus.extend(enc.encode(&pcm).unwrap());
        left -= n;
        if left == 0 {
            break;
        }
    }
    assert_eq!(
        aus.len(),
        rate as usize / 1024,
        "one AU per complete 1024 samples"
    );
    let mut adts = Vec::new();
    for au in &aus {
        assert!(!au.is_empty() && au.len() < 1536);
        assert_ne!(&au[..2], &[0xff, 0xf1], "raw AUs carry no ADTS header");
        adts.extend_from_slice(&adts_header(enc.asc(), au.len()));
        adts.extend_from_slice(au);
    }
    let dir = temp_dir("aac");
    let file = dir.join("tone.aac");
    std::fs::write(&file, &adts).unwrap();

    let probe = ffprobe_json(&["-show_streams"], &file);
    let s = &probe["streams"][0];
    assert_eq!(s["codec_name"], "aac", "{probe}");
    assert_eq!(s["sample_rate"], "48000", "{probe}");
    assert_eq!(s["channels"], 1, "{probe}");

    let (pcm, stderr) = run(
        FFMPEG,
        &[
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-f",
            "s16le",
            "-",
        ],
    );
    assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        samples.len() > rate as usize / 2,
        "{} samples decoded",
        samples.len()
    );
    // Skip the encoder's priming delay and the end.
    let body = &samples[4096..samples.len() - 1024];
    let crossings = body.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let freq = crossings as f64 / 2.0 / (body.len() as f64 / f64::from(rate));
    assert!(
        (990.0..1010.0).contains(&freq),
        "dominant frequency {freq:.1} Hz"
    );
    let peak = body.iter().map(|v| v.unsigned_abs()).max().unwrap();
    assert!((12_000..20_000).contains(&peak), "peak {peak}");
    let _ = std::fs::remove_dir_all(&dir);
}
