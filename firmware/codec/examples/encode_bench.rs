//! Prints milliseconds per frame for test-pattern rendering and H.264 encoding.
//!
//! Run with `cargo run --release -p brume-codec --example encode_bench`.

use std::time::{Duration, Instant};

use brume_codec::{AacEncoder, H264Encoder, TestPattern, Tone, I420};

const FRAMES: u64 = 300;

fn main() -> Result<(), brume_codec::Error> {
    for (w, h, bitrate) in [(640, 480, 1_000_000), (1280, 720, 2_500_000)] {
        let mut pattern = TestPattern::new(w, h);
        let mut enc = H264Encoder::new(w, h, 30, bitrate, 60)?;
        let mut pic = I420::new(w, h);
        let (mut render, mut encode) = (Duration::ZERO, Duration::ZERO);
        let mut bytes = 0;
        for i in 0..FRAMES {
            let lines = [
                format!("2026-11-24 13:45:{:02}.{:03}", i / 30 % 60, i % 30 * 33),
                format!("frame {i:06}"),
            ];
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let t0 = Instant::now();
            pattern.render(i, &refs, &mut pic);
            let t1 = Instant::now();
            if let Some(au) = enc.encode(&pic, false)? {
                bytes += au.data.len();
            }
            encode += t1.elapsed();
            render += t1 - t0;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / FRAMES as f64;
        println!(
            "{w}x{h}: render {:.3} ms/frame, encode {:.2} ms/frame, total {:.2} ms/frame; \
             {:.0} kb/s at 30 fps (target {})",
            ms(render),
            ms(encode),
            ms(render + encode),
            bytes as f64 * 8.0 * 30.0 / FRAMES as f64 / 1000.0,
            bitrate / 1000,
        );
    }

    let mut aac = AacEncoder::new(48_000, 2, 128_000)?;
    let mut tone = Tone::new(1000.0, 48_000, 2, 0.5);
    let mut pcm = vec![0i16; 2 * 960];
    let t0 = Instant::now();
    let mut aus = 0;
    for _ in 0..500 {
        tone.fill(&mut pcm);
        aus += aac.encode(&pcm)?.len();
    }
    println!(
        "AAC 48 kHz stereo 128 kb/s: {:.3} ms per 1024-sample AU ({aus} AUs)",
        t0.elapsed().as_secs_f64() * 1000.0 / aus as f64
    );
    Ok(())
}
