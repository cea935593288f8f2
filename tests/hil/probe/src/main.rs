//! Guest-side helper of the real-driver test tier.
//!
//! `hil-probe tone PCM HZ SECONDS [RATE CHANNELS]` plays a sine wave into an ALSA
//! playback PCM (`/dev/snd/pcmC0D0p`, the loopback's playback side) with the kernel's
//! PCM ioctls directly, so the guest needs neither libasound nor its configuration.
//! The hardware parameters (S16_LE, interleaved, 1024-frame periods, 8192-frame buffer)
//! match what Brume's capture asks for on the loopback's capture side, as snd-aloop
//! requires both sides to agree.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::io::AsRawFd;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Interval {
    min: u32,
    max: u32,
    flags: u32,
}

/// `struct snd_pcm_hw_params` (608 bytes on 64-bit targets).
#[repr(C)]
struct HwParams {
    flags: u32,
    masks: [[u32; 8]; 3],
    mres: [[u32; 8]; 5],
    intervals: [Interval; 12],
    ires: [Interval; 9],
    rmask: u32,
    cmask: u32,
    info: u32,
    msbits: u32,
    rate_num: u32,
    rate_den: u32,
    fifo_size: u64,
    reserved: [u8; 64],
}
const _: () = assert!(std::mem::size_of::<HwParams>() == 608);

/// `struct snd_xferi`.
#[repr(C)]
struct Xferi {
    result: i64,
    buf: *const i16,
    frames: u64,
}

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'A' as u64) << 8) | nr
}
const WRITE: u64 = 1;
const READ: u64 = 2;
const HW_PARAMS: u64 = ioc(READ | WRITE, 0x11, std::mem::size_of::<HwParams>());
const PREPARE: u64 = ioc(0, 0x40, 0);
const DRAIN: u64 = ioc(0, 0x44, 0);
const WRITEI: u64 = ioc(WRITE, 0x50, std::mem::size_of::<Xferi>());

// Indexes into masks and intervals (SNDRV_PCM_HW_PARAM_*).
const ACCESS: usize = 0;
const FORMAT: usize = 1;
const SUBFORMAT: usize = 2;
const CHANNELS: usize = 10 - 8;
const RATE: usize = 11 - 8;
const PERIOD_SIZE: usize = 13 - 8;
const BUFFER_SIZE: usize = 17 - 8;
const PERIOD: u32 = 1024;

fn os(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn tone(path: &str, hz: f64, seconds: f64, rate: u32, channels: u32) -> Result<String, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    let fd = f.as_raw_fd();
    // SAFETY: HwParams is plain old data; all-zero is a valid starting value.
    let mut p: HwParams = unsafe { std::mem::zeroed() };
    for m in p.masks.iter_mut() {
        *m = [!0; 8];
    }
    for i in p.intervals.iter_mut() {
        *i = Interval {
            min: 0,
            max: !0,
            flags: 0,
        };
    }
    p.masks[ACCESS] = [0; 8];
    p.masks[ACCESS][0] = 1 << 3; // RW_INTERLEAVED
    p.masks[FORMAT] = [0; 8];
    p.masks[FORMAT][0] = 1 << 2; // S16_LE
    p.masks[SUBFORMAT] = [0; 8];
    p.masks[SUBFORMAT][0] = 1; // STD
    let exact = |v: u32| Interval {
        min: v,
        max: v,
        flags: 0,
    };
    p.intervals[CHANNELS] = exact(channels);
    p.intervals[RATE] = exact(rate);
    p.intervals[PERIOD_SIZE] = exact(PERIOD);
    p.intervals[BUFFER_SIZE] = exact(PERIOD * 8);
    p.rmask = !0;
    // SAFETY: the kernel reads and writes exactly one snd_pcm_hw_params.
    if unsafe { ioctl(fd, HW_PARAMS, &mut p as *mut HwParams) } < 0 {
        return Err(os("SNDRV_PCM_IOCTL_HW_PARAMS"));
    }
    // SAFETY: no argument.
    if unsafe { ioctl(fd, PREPARE) } < 0 {
        return Err(os("SNDRV_PCM_IOCTL_PREPARE"));
    }
    let total = (seconds * rate as f64) as u64;
    let ch = channels as usize;
    let mut buf = vec![0i16; PERIOD as usize * ch];
    let (mut n, mut underruns) = (0u64, 0u32);
    let step = 2.0 * std::f64::consts::PI * hz / rate as f64;
    while n < total {
        for i in 0..PERIOD as usize {
            let s = ((n + i as u64) as f64 * step).sin() * 16000.0;
            for c in 0..ch {
                buf[i * ch + c] = s as i16;
            }
        }
        let mut x = Xferi {
            result: 0,
            buf: buf.as_ptr(),
            frames: PERIOD as u64,
        };
        // SAFETY: `buf` holds `frames` interleaved frames and outlives the call.
        if unsafe { ioctl(fd, WRITEI, &mut x as *mut Xferi) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(32) {
                // EPIPE: underrun (the guest was slower than the card); start again.
                underruns += 1;
                // SAFETY: no argument.
                unsafe { ioctl(fd, PREPARE) };
                continue;
            }
            return Err(format!("SNDRV_PCM_IOCTL_WRITEI_FRAMES: {e}"));
        }
        n += x.result.max(0) as u64;
    }
    // SAFETY: no argument.
    unsafe { ioctl(fd, DRAIN) };
    Ok(format!(
        "played {n} frames of {hz} Hz at {rate} Hz x{channels} into {path} ({underruns} underruns)"
    ))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let r = match a.get(1).map(String::as_str) {
        Some("tone") => {
            let num = |i: usize, d: &str| {
                arg(i, d)
                    .parse::<f64>()
                    .map_err(|e| format!("argument {i}: {e}"))
            };
            (|| {
                tone(
                    &arg(2, "/dev/snd/pcmC0D0p"),
                    num(3, "1000")?,
                    num(4, "10")?,
                    num(5, "48000")? as u32,
                    num(6, "2")? as u32,
                )
            })()
        }
        _ => Err("usage: hil-probe tone PCM HZ SECONDS [RATE CHANNELS]".into()),
    };
    match r {
        Ok(m) => println!("hil-probe: {m}"),
        Err(e) => {
            eprintln!("hil-probe: {e}");
            std::process::exit(1);
        }
    }
}
