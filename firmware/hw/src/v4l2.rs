//! V4L2 through a thin ioctl layer: device enumeration (formats, sizes, frame rates)
//! and mmap streaming capture. Only the handful of structures Brume needs are defined
//! here, `repr(C)` and laid out as in `<linux/videodev2.h>` (pointer-sized unions keep
//! them right on 32- and 64-bit ARM alike); the ioctl numbers encode each structure's
//! size, so a layout mistake is refused by the kernel, never misread.

use crate::{
    Error, FormatInfo, PixelFormat, Result, SizeInfo, VideoConfig, VideoDeviceInfo, VideoFrame,
    VideoSource,
};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

pub(crate) const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub(crate) const MEMORY_MMAP: u32 = 1;
const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub(crate) const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub(crate) const CAP_VIDEO_M2M: u32 = 0x0000_8000;
pub(crate) const CAP_STREAMING: u32 = 0x0400_0000;
pub(crate) const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
const FRMSIZE_TYPE_DISCRETE: u32 = 1;
const FRMIVAL_TYPE_DISCRETE: u32 = 1;
pub(crate) const FIELD_NONE: u32 = 1;
const BUFFERS: u32 = 4;

#[repr(C)]
#[derive(Default)]
pub(crate) struct Capability {
    pub(crate) driver: [u8; 16],
    pub(crate) card: [u8; 32],
    pub(crate) bus_info: [u8; 32],
    pub(crate) version: u32,
    pub(crate) capabilities: u32,
    pub(crate) device_caps: u32,
    pub(crate) reserved: [u32; 3],
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct FmtDesc {
    pub(crate) index: u32,
    pub(crate) type_: u32,
    pub(crate) flags: u32,
    pub(crate) description: [u8; 32],
    pub(crate) pixelformat: u32,
    pub(crate) mbus_code: u32,
    pub(crate) reserved: [u32; 3],
}

#[repr(C)]
#[derive(Default)]
struct FrmSizeEnum {
    index: u32,
    pixel_format: u32,
    type_: u32,
    /// discrete: width, height; stepwise: min_w, max_w, step_w, min_h, max_h, step_h.
    u: [u32; 6],
    reserved: [u32; 2],
}

#[repr(C)]
#[derive(Default)]
struct FrmIvalEnum {
    index: u32,
    pixel_format: u32,
    width: u32,
    height: u32,
    type_: u32,
    /// discrete: numerator, denominator (seconds per frame).
    u: [u32; 6],
    reserved: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct PixFormat {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixelformat: u32,
    pub(crate) field: u32,
    pub(crate) bytesperline: u32,
    pub(crate) sizeimage: u32,
    pub(crate) colorspace: u32,
    pub(crate) priv_: u32,
    pub(crate) flags: u32,
    pub(crate) ycbcr_enc: u32,
    pub(crate) quantization: u32,
    pub(crate) xfer_func: u32,
}

#[repr(C)]
pub(crate) union FmtUnion {
    pub(crate) pix: PixFormat,
    pub(crate) raw: [u8; 200],
    // struct v4l2_window in the kernel's union holds pointers: pointer alignment.
    pub(crate) _align: *mut libc::c_void,
}

#[repr(C)]
pub(crate) struct Format {
    pub(crate) type_: u32,
    pub(crate) fmt: FmtUnion,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CaptureParm {
    pub(crate) capability: u32,
    pub(crate) capturemode: u32,
    pub(crate) numerator: u32,
    pub(crate) denominator: u32,
    pub(crate) extendedmode: u32,
    pub(crate) readbuffers: u32,
    pub(crate) reserved: [u32; 4],
}

#[repr(C)]
pub(crate) union ParmUnion {
    pub(crate) capture: CaptureParm,
    pub(crate) raw: [u8; 200],
}

#[repr(C)]
pub(crate) struct StreamParm {
    pub(crate) type_: u32,
    pub(crate) parm: ParmUnion,
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct RequestBuffers {
    pub(crate) count: u32,
    pub(crate) type_: u32,
    pub(crate) memory: u32,
    pub(crate) capabilities: u32,
    pub(crate) flags: u8,
    pub(crate) reserved: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Timecode {
    type_: u32,
    flags: u32,
    frames: u8,
    seconds: u8,
    minutes: u8,
    hours: u8,
    userbits: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union BufM {
    pub(crate) offset: u32,
    pub(crate) userptr: libc::c_ulong,
    pub(crate) planes: *mut libc::c_void,
    pub(crate) fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Buffer {
    pub(crate) index: u32,
    pub(crate) type_: u32,
    pub(crate) bytesused: u32,
    pub(crate) flags: u32,
    pub(crate) field: u32,
    pub(crate) timestamp: libc::timeval,
    pub(crate) timecode: Timecode,
    pub(crate) sequence: u32,
    pub(crate) memory: u32,
    pub(crate) m: BufM,
    pub(crate) length: u32,
    pub(crate) reserved2: u32,
    pub(crate) request_fd: i32,
}

impl Buffer {
    pub(crate) fn new(index: u32) -> Buffer {
        Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            timecode: Timecode::default(),
            sequence: 0,
            memory: MEMORY_MMAP,
            m: BufM { userptr: 0 },
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }
}

pub(crate) const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr
}
pub(crate) const R: u32 = 2;
pub(crate) const W: u32 = 1;
pub(crate) const RW: u32 = 3;
pub(crate) const VIDIOC_QUERYCAP: u32 = ioc(R, 0, std::mem::size_of::<Capability>());
pub(crate) const VIDIOC_ENUM_FMT: u32 = ioc(RW, 2, std::mem::size_of::<FmtDesc>());
pub(crate) const VIDIOC_S_FMT: u32 = ioc(RW, 5, std::mem::size_of::<Format>());
pub(crate) const VIDIOC_REQBUFS: u32 = ioc(RW, 8, std::mem::size_of::<RequestBuffers>());
pub(crate) const VIDIOC_QUERYBUF: u32 = ioc(RW, 9, std::mem::size_of::<Buffer>());
pub(crate) const VIDIOC_QBUF: u32 = ioc(RW, 15, std::mem::size_of::<Buffer>());
pub(crate) const VIDIOC_DQBUF: u32 = ioc(RW, 17, std::mem::size_of::<Buffer>());
pub(crate) const VIDIOC_STREAMON: u32 = ioc(W, 18, std::mem::size_of::<i32>());
pub(crate) const VIDIOC_STREAMOFF: u32 = ioc(W, 19, std::mem::size_of::<i32>());
pub(crate) const VIDIOC_S_PARM: u32 = ioc(RW, 22, std::mem::size_of::<StreamParm>());
const VIDIOC_ENUM_FRAMESIZES: u32 = ioc(RW, 74, std::mem::size_of::<FrmSizeEnum>());
const VIDIOC_ENUM_FRAMEINTERVALS: u32 = ioc(RW, 75, std::mem::size_of::<FrmIvalEnum>());

/// Issues one ioctl, retrying on EINTR.
pub(crate) fn xioctl<T>(file: &File, req: u32, arg: &mut T) -> std::io::Result<()> {
    loop {
        // SAFETY: `arg` is a live, exclusively borrowed `repr(C)` value whose size is
        // encoded in `req`; the kernel reads and writes only within it.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), req as _, arg as *mut T) };
        if r != -1 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A NUL-terminated string field the driver filled (card, driver, format names).
pub fn text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

/// A fourcc as text ("YUYV"), trimmed.
pub fn fourcc_text(f: u32) -> String {
    String::from_utf8_lossy(&f.to_le_bytes()).trim().to_string()
}

pub(crate) fn os(device: &str, op: &'static str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ENXIO) => Error::Gone {
            device: device.to_string(),
            reason: e.to_string(),
        },
        _ => Error::Os {
            device: device.to_string(),
            op,
            source: e,
        },
    }
}

pub(crate) fn open(path: &str) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| os(path, "open", e))
}

use std::os::unix::fs::OpenOptionsExt;

/// Every V4L2 device node with what it offers.
pub fn list_devices() -> Vec<VideoDeviceInfo> {
    video_nodes()
        .iter()
        .filter_map(|n| describe(n).ok())
        .collect()
}

/// The /dev/videoN nodes, in number order.
pub(crate) fn video_nodes() -> Vec<String> {
    let mut nodes: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("video") && n[5..].chars().all(|c| c.is_ascii_digit()))
                .map(|n| format!("/dev/{n}"))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by_key(|n| n[10..].parse::<u32>().unwrap_or(u32::MAX));
    nodes
}

/// Stable names that point at `node` (udev's /dev/v4l/by-id and by-path links).
fn stable_paths(node: &str) -> Vec<String> {
    let target = std::fs::canonicalize(node).ok();
    let mut out = Vec::new();
    for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
        if let Ok(d) = std::fs::read_dir(dir) {
            for e in d.flatten() {
                if std::fs::canonicalize(e.path()).ok() == target && target.is_some() {
                    out.push(e.path().display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// Capabilities and formats of one device node.
pub fn describe(path: &str) -> Result<VideoDeviceInfo> {
    let f = open(path)?;
    let mut cap = Capability::default();
    xioctl(&f, VIDIOC_QUERYCAP, &mut cap).map_err(|e| os(path, "VIDIOC_QUERYCAP", e))?;
    let caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    };
    let capture = caps & CAP_VIDEO_CAPTURE != 0 && caps & CAP_STREAMING != 0;
    let m2m = caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE) != 0;
    let formats = if capture {
        enum_formats(&f)
    } else {
        Vec::new()
    };
    Ok(VideoDeviceInfo {
        path: path.to_string(),
        stable_paths: stable_paths(path),
        name: text(&cap.card),
        driver: text(&cap.driver),
        bus: text(&cap.bus_info),
        capture,
        m2m,
        formats,
    })
}

fn enum_formats(f: &File) -> Vec<FormatInfo> {
    let mut out = Vec::new();
    for index in 0..64 {
        let mut d = FmtDesc {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            ..Default::default()
        };
        if xioctl(f, VIDIOC_ENUM_FMT, &mut d).is_err() {
            break;
        }
        out.push(FormatInfo {
            fourcc: fourcc_text(d.pixelformat),
            format: PixelFormat::from_fourcc(d.pixelformat),
            description: text(&d.description),
            sizes: enum_sizes(f, d.pixelformat),
        });
    }
    out
}

fn enum_sizes(f: &File, fourcc: u32) -> Vec<SizeInfo> {
    let mut sizes = Vec::new();
    for index in 0..128 {
        let mut s = FrmSizeEnum {
            index,
            pixel_format: fourcc,
            ..Default::default()
        };
        if xioctl(f, VIDIOC_ENUM_FRAMESIZES, &mut s).is_err() {
            break;
        }
        if s.type_ == FRMSIZE_TYPE_DISCRETE {
            sizes.push((s.u[0], s.u[1]));
        } else {
            // Stepwise/continuous: offer the common sizes inside the range.
            let (min_w, max_w, min_h, max_h) = (s.u[0], s.u[1], s.u[3], s.u[4]);
            for (w, h) in [
                (320, 240),
                (640, 360),
                (640, 480),
                (1280, 720),
                (1920, 1080),
            ] {
                if (min_w..=max_w).contains(&w) && (min_h..=max_h).contains(&h) {
                    sizes.push((w, h));
                }
            }
            break;
        }
    }
    sizes
        .into_iter()
        .map(|(width, height)| SizeInfo {
            width,
            height,
            fps: enum_fps(f, fourcc, width, height),
        })
        .collect()
}

fn enum_fps(f: &File, fourcc: u32, width: u32, height: u32) -> Vec<f64> {
    let mut out = Vec::new();
    for index in 0..32 {
        let mut i = FrmIvalEnum {
            index,
            pixel_format: fourcc,
            width,
            height,
            ..Default::default()
        };
        if xioctl(f, VIDIOC_ENUM_FRAMEINTERVALS, &mut i).is_err() {
            break;
        }
        if i.type_ == FRMIVAL_TYPE_DISCRETE {
            if i.u[0] > 0 {
                out.push((i.u[1] as f64 / i.u[0] as f64 * 100.0).round() / 100.0);
            }
        } else {
            // Stepwise: min interval = max rate.
            if i.u[0] > 0 {
                out.push((i.u[1] as f64 / i.u[0] as f64 * 100.0).round() / 100.0);
            }
            break;
        }
    }
    out.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Picks the format to capture: the configured one, else H.264, MJPEG, then raw.
pub fn choose_format(info: &VideoDeviceInfo, wanted: Option<PixelFormat>) -> Option<PixelFormat> {
    let offered: Vec<PixelFormat> = info.formats.iter().filter_map(|f| f.format).collect();
    match wanted {
        Some(w) => offered.contains(&w).then_some(w),
        None => [
            PixelFormat::H264,
            PixelFormat::Mjpeg,
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            PixelFormat::Yu12,
        ]
        .into_iter()
        .find(|f| offered.contains(f)),
    }
}

/// A streaming V4L2 capture (mmap buffers).
pub struct Capture {
    file: File,
    path: String,
    maps: Vec<memmap2::Mmap>,
    format: (PixelFormat, u32, u32, u32),
    streaming: bool,
}

impl Capture {
    /// Opens `path` (a stable name is resolved each time, so a replugged camera is
    /// found again), negotiates the format and starts streaming.
    pub fn open(path: &str, cfg: VideoConfig) -> Result<Capture> {
        let info = describe(path)?;
        if !info.capture {
            return Err(Error::Unsupported {
                device: path.into(),
                reason: "not a V4L2 capture device with streaming I/O".into(),
            });
        }
        let format = choose_format(&info, cfg.format).ok_or_else(|| Error::Unsupported {
            device: path.into(),
            reason: format!(
                "offers none of the formats Brume can use{} (it offers {})",
                cfg.format
                    .map(|f| format!(" (asked for {f:?})"))
                    .unwrap_or_default(),
                info.formats
                    .iter()
                    .map(|f| f.fourcc.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        let file = open(path)?;
        let mut fmt = Format {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            fmt: FmtUnion { raw: [0; 200] },
        };
        fmt.fmt.pix = PixFormat {
            width: cfg.width,
            height: cfg.height,
            pixelformat: format.fourcc(),
            field: FIELD_NONE,
            ..Default::default()
        };
        xioctl(&file, VIDIOC_S_FMT, &mut fmt).map_err(|e| os(path, "VIDIOC_S_FMT", e))?;
        // SAFETY: S_FMT on a capture type fills the `pix` member.
        let pix = unsafe { fmt.fmt.pix };
        if PixelFormat::from_fourcc(pix.pixelformat) != Some(format) {
            return Err(Error::Unsupported {
                device: path.into(),
                reason: format!("refused format {format:?}"),
            });
        }
        let mut parm = StreamParm {
            type_: BUF_TYPE_VIDEO_CAPTURE,
            parm: ParmUnion { raw: [0; 200] },
        };
        parm.parm.capture = CaptureParm {
            numerator: 1,
            denominator: cfg.fps.max(1),
            ..Default::default()
        };
        // Not every driver lets the rate be set; the device's own rate is then used.
        let fps = match xioctl(&file, VIDIOC_S_PARM, &mut parm) {
            // SAFETY: S_PARM on a capture type fills the `capture` member.
            Ok(()) => {
                let c = unsafe { parm.parm.capture };
                c.denominator
                    .checked_div(c.numerator)
                    .map_or(cfg.fps, |f| f.max(1))
            }
            Err(_) => cfg.fps,
        };
        let mut req = RequestBuffers {
            count: BUFFERS,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            memory: MEMORY_MMAP,
            ..Default::default()
        };
        xioctl(&file, VIDIOC_REQBUFS, &mut req).map_err(|e| os(path, "VIDIOC_REQBUFS", e))?;
        if req.count == 0 {
            return Err(Error::Unsupported {
                device: path.into(),
                reason: "no mmap buffers".into(),
            });
        }
        let mut maps = Vec::new();
        for index in 0..req.count {
            let mut b = Buffer::new(index);
            xioctl(&file, VIDIOC_QUERYBUF, &mut b).map_err(|e| os(path, "VIDIOC_QUERYBUF", e))?;
            // SAFETY: for MMAP buffers QUERYBUF fills `m.offset`.
            let offset = unsafe { b.m.offset } as u64;
            // SAFETY: mapping a driver buffer read-only; the driver keeps it alive while
            // the descriptor is open, and we only read it between DQBUF and QBUF.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(offset)
                    .len(b.length as usize)
                    .map(&file)
            }
            .map_err(|e| os(path, "mmap", e))?;
            maps.push(map);
            xioctl(&file, VIDIOC_QBUF, &mut b).map_err(|e| os(path, "VIDIOC_QBUF", e))?;
        }
        let mut t = BUF_TYPE_VIDEO_CAPTURE as i32;
        xioctl(&file, VIDIOC_STREAMON, &mut t).map_err(|e| os(path, "VIDIOC_STREAMON", e))?;
        Ok(Capture {
            file,
            path: path.to_string(),
            maps,
            format: (format, pix.width, pix.height, fps),
            streaming: true,
        })
    }
}

impl VideoSource for Capture {
    fn format(&self) -> (PixelFormat, u32, u32, u32) {
        self.format
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<VideoFrame>> {
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if n == 0 {
            return Ok(None);
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(None);
            }
            return Err(os(&self.path, "poll", e));
        }
        if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 && p.revents & libc::POLLIN == 0 {
            return Err(Error::Gone {
                device: self.path.clone(),
                reason: "the device reported an error (unplugged?)".into(),
            });
        }
        let mut b = Buffer::new(0);
        match xioctl(&self.file, VIDIOC_DQBUF, &mut b) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
            Err(e) => return Err(os(&self.path, "VIDIOC_DQBUF", e)),
        }
        let map = self
            .maps
            .get(b.index as usize)
            .ok_or_else(|| Error::Unsupported {
                device: self.path.clone(),
                reason: format!("driver returned unknown buffer {}", b.index),
            })?;
        let frame = VideoFrame {
            data: payload(map, 0, b.bytesused as usize).to_vec(),
            time_us: b.timestamp.tv_sec as i64 * 1_000_000 + b.timestamp.tv_usec as i64,
            sequence: b.sequence,
        };
        xioctl(&self.file, VIDIOC_QBUF, &mut b).map_err(|e| os(&self.path, "VIDIOC_QBUF", e))?;
        Ok(Some(frame))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.streaming {
            let mut t = BUF_TYPE_VIDEO_CAPTURE as i32;
            let _ = xioctl(&self.file, VIDIOC_STREAMOFF, &mut t);
        }
    }
}

/// The bytes of a dequeued buffer the driver says it filled: `start..end` of `map`
/// (`data_offset..bytesused` of a plane), clamped to the mapping, so a driver's bad
/// figures give a short frame, never a read past the buffer.
pub fn payload(map: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(map.len());
    &map[start.min(end)..end]
}

/// Resolves a configured device name (a stable link or a node) to its current node.
pub fn resolve(path: &str) -> Result<String> {
    std::fs::canonicalize(Path::new(path))
        .map(|p| p.display().to_string())
        .map_err(|e| Error::Gone {
            device: path.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_sizes_match_the_kernel_abi() {
        // Sizes from <linux/videodev2.h> on the build target.
        assert_eq!(std::mem::size_of::<Capability>(), 104);
        assert_eq!(std::mem::size_of::<FmtDesc>(), 64);
        assert_eq!(std::mem::size_of::<FrmSizeEnum>(), 44);
        assert_eq!(std::mem::size_of::<FrmIvalEnum>(), 52);
        assert_eq!(std::mem::size_of::<StreamParm>(), 204);
        assert_eq!(std::mem::size_of::<RequestBuffers>(), 20);
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(std::mem::size_of::<Format>(), 208);
            assert_eq!(std::mem::size_of::<Buffer>(), 88);
            assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
            assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
            assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        }
    }

    #[test]
    fn format_choice_prefers_compressed_and_honours_the_config() {
        let fmt = |f: PixelFormat| FormatInfo {
            fourcc: fourcc_text(f.fourcc()),
            format: Some(f),
            description: String::new(),
            sizes: vec![],
        };
        let info = VideoDeviceInfo {
            path: "/dev/video0".into(),
            stable_paths: vec![],
            name: "cam".into(),
            driver: "uvcvideo".into(),
            bus: String::new(),
            capture: true,
            m2m: false,
            formats: vec![fmt(PixelFormat::Yuyv), fmt(PixelFormat::Mjpeg)],
        };
        assert_eq!(choose_format(&info, None), Some(PixelFormat::Mjpeg));
        assert_eq!(
            choose_format(&info, Some(PixelFormat::Yuyv)),
            Some(PixelFormat::Yuyv)
        );
        assert_eq!(choose_format(&info, Some(PixelFormat::H264)), None);
        assert_eq!(
            PixelFormat::from_fourcc(PixelFormat::Mjpeg.fourcc()),
            Some(PixelFormat::Mjpeg)
        );
    }

    #[test]
    fn a_missing_device_is_gone_not_a_panic() {
        assert!(matches!(
            describe("/dev/video-none-such"),
            Err(Error::Gone { .. })
        ));
        assert!(list_devices()
            .iter()
            .all(|d| d.path.starts_with("/dev/video")));
    }
}
