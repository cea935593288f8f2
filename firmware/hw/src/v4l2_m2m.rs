//! V4L2 memory-to-memory (M2M) video encoders on the same thin ioctl layer as
//! [`crate::v4l2`]: the Raspberry Pi 3/4/Zero 2 W's H.264 encoder (bcm2835-codec,
//! /dev/video11, multi-planar API) or any other stateful M2M encoder, such as the
//! kernel's `vicodec` (FWHT, single- or multi-planar) that the real-driver tier uses.
//!
//! Raw pictures (I420 planes) go into the OUTPUT queue, coded frames come out of the
//! CAPTURE queue; both queues use mmap buffers. [`Encoder::encode`] queues one picture
//! and waits for what the encoder makes of it, so a caller sees one coded frame per
//! picture (an encoder that holds pictures back yields `None` until it catches up).

use crate::v4l2::{
    fourcc_text, ioc, open, os, text, xioctl, Buffer, Capability, CaptureParm, FmtDesc, FmtUnion,
    Format, ParmUnion, PixFormat, RequestBuffers, StreamParm, CAP_DEVICE_CAPS, CAP_STREAMING,
    CAP_VIDEO_M2M, CAP_VIDEO_M2M_MPLANE, FIELD_NONE, MEMORY_MMAP, RW, VIDIOC_DQBUF,
    VIDIOC_ENUM_FMT, VIDIOC_QBUF, VIDIOC_QUERYBUF, VIDIOC_QUERYCAP, VIDIOC_REQBUFS,
    VIDIOC_STREAMOFF, VIDIOC_STREAMON, VIDIOC_S_FMT, VIDIOC_S_PARM,
};
use crate::{Error, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
const BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
const BUF_TYPE_VIDEO_OUTPUT_MPLANE: u32 = 10;
const BUF_FLAG_KEYFRAME: u32 = 0x0000_0008;
const FMT_FLAG_COMPRESSED: u32 = 0x0001;

const CID_CODEC_BASE: u32 = 0x0099_0900;
const CID_GOP_SIZE: u32 = CID_CODEC_BASE + 203;
const CID_BITRATE: u32 = CID_CODEC_BASE + 207;
const CID_REPEAT_SEQ_HEADER: u32 = CID_CODEC_BASE + 226;
const CID_FORCE_KEY_FRAME: u32 = CID_CODEC_BASE + 229;
const CID_H264_I_PERIOD: u32 = CID_CODEC_BASE + 358;

/// Raw pictures in flight (OUTPUT queue) and coded frames (CAPTURE queue).
const OUTPUT_BUFFERS: u32 = 2;
const CAPTURE_BUFFERS: u32 = 4;
/// How long [`Encoder::encode`] waits for the coded frame of a picture.
const ENCODE_WAIT: Duration = Duration::from_secs(2);

/// `struct v4l2_plane_pix_format`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PlanePixFormat {
    sizeimage: u32,
    bytesperline: u32,
    reserved: [u16; 6],
}

/// `struct v4l2_pix_format_mplane` (packed in the kernel; every field falls on its
/// natural alignment, so `repr(C)` gives the same layout).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PixFormatMplane {
    width: u32,
    height: u32,
    pixelformat: u32,
    field: u32,
    colorspace: u32,
    plane_fmt: [PlanePixFormat; 8],
    num_planes: u8,
    flags: u8,
    ycbcr_enc: u8,
    quantization: u8,
    xfer_func: u8,
    reserved: [u8; 7],
}

#[repr(C)]
#[derive(Clone, Copy)]
union PlaneM {
    mem_offset: u32,
    userptr: libc::c_ulong,
    fd: i32,
}

/// `struct v4l2_plane`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Plane {
    bytesused: u32,
    length: u32,
    m: PlaneM,
    data_offset: u32,
    reserved: [u32; 11],
}

impl Default for Plane {
    fn default() -> Plane {
        Plane {
            bytesused: 0,
            length: 0,
            m: PlaneM { userptr: 0 },
            data_offset: 0,
            reserved: [0; 11],
        }
    }
}

/// `struct v4l2_control`.
#[repr(C)]
#[derive(Default)]
struct Control {
    id: u32,
    value: i32,
}

const VIDIOC_S_CTRL: u32 = ioc(RW, 28, std::mem::size_of::<Control>());

/// The coded format an encoder produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// H.264, Annex B byte stream.
    H264,
    /// The kernel's FWHT test codec (vicodec): what the real-driver tier encodes.
    Fwht,
}

impl Codec {
    pub fn fourcc(self) -> u32 {
        u32::from_le_bytes(match self {
            Codec::H264 => *b"H264",
            Codec::Fwht => *b"FWHT",
        })
    }

    /// Whether a coded frame is a keyframe, from the bitstream itself (for encoders
    /// that do not set `V4L2_BUF_FLAG_KEYFRAME`).
    pub fn is_key(self, data: &[u8]) -> bool {
        match self {
            // An IDR slice (NAL type 5) after a start code.
            Codec::H264 => data
                .windows(4)
                .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5),
            // struct fwht_cframe_hdr: flags (big-endian) at byte 20, I-frame = bit 10.
            Codec::Fwht => data
                .get(20..24)
                .map(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & (1 << 10) != 0)
                .unwrap_or(false),
        }
    }
}

/// What the encoder should do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderConfig {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Frames from one keyframe to the next.
    pub gop: u32,
}

/// One coded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedFrame {
    /// As the encoder wrote it (H.264: Annex B, parameter sets before each keyframe).
    pub data: Vec<u8>,
    pub key: bool,
}

/// One mmap buffer of a queue.
struct Slot {
    map: memmap2::MmapMut,
}

/// The raw layout the OUTPUT queue takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RawLayout {
    /// Y, then U, then V (YU12 / I420).
    Yu12,
    /// Y, then interleaved CbCr.
    Nv12,
}

/// A streaming M2M encoder.
pub struct Encoder {
    file: File,
    path: String,
    name: String,
    mplane: bool,
    codec: Codec,
    layout: RawLayout,
    width: u32,
    height: u32,
    /// The OUTPUT queue's geometry as the driver set it (it may pad rows and lines).
    stride: usize,
    lines: usize,
    outputs: Vec<Slot>,
    free_outputs: Vec<u32>,
    captures: Vec<Slot>,
    can_force_key: bool,
    streaming: bool,
}

fn unsupported(path: &str, reason: impl Into<String>) -> Error {
    Error::Unsupported {
        device: path.to_string(),
        reason: reason.into(),
    }
}

fn device_caps(cap: &Capability) -> u32 {
    if cap.capabilities & CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    }
}

/// The FourCCs a queue of an open device offers.
fn queue_formats(f: &File, type_: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for index in 0..64 {
        let mut d = FmtDesc {
            index,
            type_,
            ..Default::default()
        };
        if xioctl(f, VIDIOC_ENUM_FMT, &mut d).is_err() {
            break;
        }
        out.push(d.pixelformat);
    }
    out
}

/// What an M2M device offers: (multi-planar, OUTPUT FourCCs, CAPTURE FourCCs, name).
fn probe(f: &File, path: &str) -> Result<(bool, Vec<u32>, Vec<u32>, String)> {
    let mut cap = Capability::default();
    xioctl(f, VIDIOC_QUERYCAP, &mut cap).map_err(|e| os(path, "VIDIOC_QUERYCAP", e))?;
    let caps = device_caps(&cap);
    let mplane = if caps & CAP_VIDEO_M2M != 0 {
        false
    } else if caps & CAP_VIDEO_M2M_MPLANE != 0 {
        true
    } else {
        return Err(unsupported(path, "not a V4L2 memory-to-memory device"));
    };
    if caps & CAP_STREAMING == 0 {
        return Err(unsupported(path, "no streaming I/O"));
    }
    let (out_t, cap_t) = types(mplane);
    Ok((
        mplane,
        queue_formats(f, out_t),
        queue_formats(f, cap_t),
        text(&cap.card),
    ))
}

/// (OUTPUT, CAPTURE) buffer types.
fn types(mplane: bool) -> (u32, u32) {
    if mplane {
        (BUF_TYPE_VIDEO_OUTPUT_MPLANE, BUF_TYPE_VIDEO_CAPTURE_MPLANE)
    } else {
        (BUF_TYPE_VIDEO_OUTPUT, BUF_TYPE_VIDEO_CAPTURE)
    }
}

fn raw_layouts(offered: &[u32]) -> Option<RawLayout> {
    let yu12 = u32::from_le_bytes(*b"YU12");
    let nv12 = u32::from_le_bytes(*b"NV12");
    if offered.contains(&yu12) {
        Some(RawLayout::Yu12)
    } else if offered.contains(&nv12) {
        Some(RawLayout::Nv12)
    } else {
        None
    }
}

/// Whether the device node is an M2M encoder from raw pictures to `codec`.
pub fn is_encoder(path: &str, codec: Codec) -> bool {
    let Ok(f) = open(path) else {
        return false;
    };
    matches!(probe(&f, path), Ok((_, out, cap, _))
        if cap.contains(&codec.fourcc()) && raw_layouts(&out).is_some())
}

/// The coded formats (FourCCs, e.g. "H264") an M2M device makes from raw pictures:
/// empty for decoders, scalers and anything that is not an M2M encoder.
pub fn encoder_formats(path: &str) -> Vec<String> {
    let Ok(f) = open(path) else {
        return Vec::new();
    };
    let Ok((mplane, out, _, _)) = probe(&f, path) else {
        return Vec::new();
    };
    if raw_layouts(&out).is_none() {
        return Vec::new();
    }
    let mut coded = Vec::new();
    for index in 0..64 {
        let mut d = FmtDesc {
            index,
            type_: types(mplane).1,
            ..Default::default()
        };
        if xioctl(&f, VIDIOC_ENUM_FMT, &mut d).is_err() {
            break;
        }
        if d.flags & FMT_FLAG_COMPRESSED != 0 {
            coded.push(fourcc_text(d.pixelformat));
        }
    }
    coded
}

/// The first /dev/videoN that encodes raw pictures to `codec`.
pub fn find_encoder(codec: Codec) -> Option<String> {
    crate::v4l2::video_nodes()
        .into_iter()
        .find(|p| is_encoder(p, codec))
}

/// The first hardware H.264 encoder (the Pi's bcm2835-codec at /dev/video11).
pub fn find_h264_encoder() -> Option<String> {
    find_encoder(Codec::H264)
}

/// Sets a control; false when the driver does not have it or refuses the value.
fn set_control(f: &File, id: u32, value: i32) -> bool {
    let mut c = Control { id, value };
    xioctl(f, VIDIOC_S_CTRL, &mut c).is_ok()
}

/// S_FMT on one queue; returns (width, height, bytesperline, sizeimage, fourcc).
fn set_format(
    f: &File,
    path: &str,
    type_: u32,
    mplane: bool,
    fourcc: u32,
    width: u32,
    height: u32,
) -> Result<(u32, u32, u32, u32, u32)> {
    let mut fmt = Format {
        type_,
        fmt: FmtUnion { raw: [0; 200] },
    };
    if mplane {
        let mp = PixFormatMplane {
            width,
            height,
            pixelformat: fourcc,
            field: FIELD_NONE,
            num_planes: 1,
            ..Default::default()
        };
        // SAFETY: the union's 200 bytes hold the 192-byte multi-planar format.
        unsafe {
            std::ptr::copy_nonoverlapping(
                &mp as *const PixFormatMplane as *const u8,
                fmt.fmt.raw.as_mut_ptr(),
                std::mem::size_of::<PixFormatMplane>(),
            )
        };
    } else {
        fmt.fmt.pix = PixFormat {
            width,
            height,
            pixelformat: fourcc,
            field: FIELD_NONE,
            ..Default::default()
        };
    }
    xioctl(f, VIDIOC_S_FMT, &mut fmt).map_err(|e| os(path, "VIDIOC_S_FMT", e))?;
    if mplane {
        let mut mp = PixFormatMplane::default();
        // SAFETY: S_FMT on a multi-planar type fills the `pix_mp` member.
        unsafe {
            std::ptr::copy_nonoverlapping(
                fmt.fmt.raw.as_ptr(),
                &mut mp as *mut PixFormatMplane as *mut u8,
                std::mem::size_of::<PixFormatMplane>(),
            )
        };
        if mp.num_planes != 1 {
            return Err(unsupported(
                path,
                format!(
                    "{} in {} planes: Brume handles one-plane formats only",
                    fourcc_text(mp.pixelformat),
                    mp.num_planes
                ),
            ));
        }
        Ok((
            mp.width,
            mp.height,
            mp.plane_fmt[0].bytesperline,
            mp.plane_fmt[0].sizeimage,
            mp.pixelformat,
        ))
    } else {
        // SAFETY: S_FMT on a single-planar type fills the `pix` member.
        let pix = unsafe { fmt.fmt.pix };
        Ok((
            pix.width,
            pix.height,
            pix.bytesperline,
            pix.sizeimage,
            pix.pixelformat,
        ))
    }
}

/// A buffer descriptor for `index` of queue `type_` (one plane in `plane` when
/// multi-planar: the descriptor points at it, so it must outlive the ioctl).
fn buffer(index: u32, type_: u32, mplane: bool, plane: &mut Plane) -> Buffer {
    let mut b = Buffer::new(index);
    b.type_ = type_;
    b.memory = MEMORY_MMAP;
    if mplane {
        b.m.planes = plane as *mut Plane as *mut libc::c_void;
        b.length = 1;
    }
    b
}

impl Encoder {
    /// Opens `path`, sets both queues' formats, the frame rate and the encoder's
    /// controls (those the driver has), allocates the buffers and starts streaming.
    pub fn open(path: &str, cfg: EncoderConfig) -> Result<Encoder> {
        let file = open(path)?;
        let (mplane, out_formats, cap_formats, name) = probe(&file, path)?;
        if !cap_formats.contains(&cfg.codec.fourcc()) {
            return Err(unsupported(
                path,
                format!(
                    "{name} does not encode {} (it produces {})",
                    fourcc_text(cfg.codec.fourcc()),
                    list(&cap_formats)
                ),
            ));
        }
        let layout = raw_layouts(&out_formats).ok_or_else(|| {
            unsupported(
                path,
                format!(
                    "{name} takes neither YU12 nor NV12 (it takes {})",
                    list(&out_formats)
                ),
            )
        })?;
        let (out_t, cap_t) = types(mplane);
        let raw = u32::from_le_bytes(match layout {
            RawLayout::Yu12 => *b"YU12",
            RawLayout::Nv12 => *b"NV12",
        });
        let (w, h, stride, _, got) =
            set_format(&file, path, out_t, mplane, raw, cfg.width, cfg.height)?;
        if got != raw || w < cfg.width || h < cfg.height {
            return Err(unsupported(
                path,
                format!(
                    "refused {} at {}x{} (offered {} at {w}x{h})",
                    fourcc_text(raw),
                    cfg.width,
                    cfg.height,
                    fourcc_text(got)
                ),
            ));
        }
        let stride = stride.max(cfg.width) as usize;
        let (_, _, _, _, coded) = set_format(
            &file,
            path,
            cap_t,
            mplane,
            cfg.codec.fourcc(),
            cfg.width,
            cfg.height,
        )?;
        if coded != cfg.codec.fourcc() {
            return Err(unsupported(
                path,
                format!("refused {}", fourcc_text(cfg.codec.fourcc())),
            ));
        }
        // The frame rate belongs to the OUTPUT queue (v4l2_outputparm has the same
        // layout as v4l2_captureparm). Not every encoder has one.
        let mut parm = StreamParm {
            type_: out_t,
            parm: ParmUnion { raw: [0; 200] },
        };
        parm.parm.capture = CaptureParm {
            numerator: 1,
            denominator: cfg.fps.max(1),
            ..Default::default()
        };
        let _ = xioctl(&file, VIDIOC_S_PARM, &mut parm);
        let gop = cfg.gop.clamp(1, i32::MAX as u32) as i32;
        set_control(
            &file,
            CID_BITRATE,
            cfg.bitrate_bps.min(i32::MAX as u32) as i32,
        );
        if !set_control(&file, CID_H264_I_PERIOD, gop) {
            // vicodec's GOP size stops at 16.
            set_control(&file, CID_GOP_SIZE, gop.min(16));
        }
        set_control(&file, CID_REPEAT_SEQ_HEADER, 1);
        let mut enc = Encoder {
            file,
            path: path.to_string(),
            name,
            mplane,
            codec: cfg.codec,
            layout,
            width: cfg.width,
            height: cfg.height,
            stride,
            lines: h as usize,
            outputs: Vec::new(),
            free_outputs: Vec::new(),
            captures: Vec::new(),
            // Tried on the first forced keyframe.
            can_force_key: true,
            streaming: false,
        };
        enc.outputs = enc.allocate(out_t, OUTPUT_BUFFERS)?;
        enc.free_outputs = (0..enc.outputs.len() as u32).rev().collect();
        enc.captures = enc.allocate(cap_t, CAPTURE_BUFFERS)?;
        for index in 0..enc.captures.len() as u32 {
            enc.queue(cap_t, index, 0)?;
        }
        for t in [out_t, cap_t] {
            let mut t = t as i32;
            xioctl(&enc.file, VIDIOC_STREAMON, &mut t)
                .map_err(|e| os(&enc.path, "VIDIOC_STREAMON", e))?;
            enc.streaming = true;
        }
        Ok(enc)
    }

    /// The device node.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the device uses the multi-planar API (bcm2835-codec does).
    pub fn multiplanar(&self) -> bool {
        self.mplane
    }

    /// The driver's name for the device ("bcm2835-codec-encode", "vicodec", ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// REQBUFS + QUERYBUF + mmap for one queue.
    fn allocate(&self, type_: u32, count: u32) -> Result<Vec<Slot>> {
        let path = &self.path;
        let mut req = RequestBuffers {
            count,
            type_,
            memory: MEMORY_MMAP,
            ..Default::default()
        };
        xioctl(&self.file, VIDIOC_REQBUFS, &mut req).map_err(|e| os(path, "VIDIOC_REQBUFS", e))?;
        if req.count == 0 {
            return Err(unsupported(path, "no mmap buffers"));
        }
        let mut slots = Vec::new();
        for index in 0..req.count {
            let mut plane = Plane::default();
            let mut b = buffer(index, type_, self.mplane, &mut plane);
            xioctl(&self.file, VIDIOC_QUERYBUF, &mut b)
                .map_err(|e| os(path, "VIDIOC_QUERYBUF", e))?;
            let (offset, len) = if self.mplane {
                // SAFETY: for MMAP buffers QUERYBUF fills the plane's `m.mem_offset`.
                (unsafe { plane.m.mem_offset }, plane.length)
            } else {
                // SAFETY: for MMAP buffers QUERYBUF fills `m.offset`.
                (unsafe { b.m.offset }, b.length)
            };
            // SAFETY: mapping a driver buffer; the driver keeps it alive while the
            // descriptor is open, and we touch it only while we own it (before QBUF
            // or after DQBUF).
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(offset as u64)
                    .len(len as usize)
                    .map_mut(&self.file)
            }
            .map_err(|e| os(path, "mmap", e))?;
            slots.push(Slot { map });
        }
        Ok(slots)
    }

    fn queue(&self, type_: u32, index: u32, bytesused: u32) -> Result<()> {
        let length = match self.outputs.get(index as usize) {
            Some(slot) if is_output(type_) => slot.map.len() as u32,
            _ => 0,
        };
        let mut plane = Plane {
            bytesused,
            length,
            ..Default::default()
        };
        let mut b = buffer(index, type_, self.mplane, &mut plane);
        b.bytesused = bytesused;
        b.field = FIELD_NONE;
        xioctl(&self.file, VIDIOC_QBUF, &mut b).map_err(|e| os(&self.path, "VIDIOC_QBUF", e))
    }

    /// DQBUF on one queue: (index, where the data starts, where it ends, flags), or
    /// None when nothing is ready.
    fn dequeue(&self, type_: u32) -> Result<Option<(u32, usize, usize, u32)>> {
        let mut plane = Plane::default();
        let mut b = buffer(0, type_, self.mplane, &mut plane);
        match xioctl(&self.file, VIDIOC_DQBUF, &mut b) {
            Ok(()) if self.mplane => Ok(Some((
                b.index,
                plane.data_offset as usize,
                plane.bytesused as usize,
                b.flags,
            ))),
            Ok(()) => Ok(Some((b.index, 0, b.bytesused as usize, b.flags))),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(os(&self.path, "VIDIOC_DQBUF", e)),
        }
    }

    /// Waits up to `timeout` for `events` (POLLIN: a coded frame; POLLOUT: a raw
    /// buffer back). False on timeout.
    fn wait(&self, events: libc::c_short, timeout: Duration) -> Result<bool> {
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(os(&self.path, "poll", e));
        }
        if n > 0 && p.revents & events == 0 && p.revents & libc::POLLERR != 0 {
            return Err(Error::Gone {
                device: self.path.clone(),
                reason: "the encoder reported an error".into(),
            });
        }
        Ok(n > 0 && p.revents & events != 0)
    }

    /// Takes back every raw buffer the encoder is done with.
    fn reclaim_outputs(&mut self) -> Result<()> {
        let (out_t, _) = types(self.mplane);
        while let Some((index, ..)) = self.dequeue(out_t)? {
            if !self.free_outputs.contains(&index) {
                self.free_outputs.push(index);
            }
        }
        Ok(())
    }

    /// Encodes one picture (I420 planes: Y at `width` x `height`, U and V at half
    /// that, rounded up). `force_key` asks for a keyframe where the driver can.
    /// Returns the coded frame, or None when the encoder has not produced it yet.
    pub fn encode(&mut self, planes: [&[u8]; 3], force_key: bool) -> Result<Option<EncodedFrame>> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if planes[0].len() < w * h || planes[1].len() < cw * ch || planes[2].len() < cw * ch {
            return Err(unsupported(
                &self.path,
                format!("picture smaller than the encoder's {w}x{h}"),
            ));
        }
        let (out_t, cap_t) = types(self.mplane);
        // A free raw buffer.
        self.reclaim_outputs()?;
        let deadline = Instant::now() + ENCODE_WAIT;
        while self.free_outputs.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unsupported(
                    &self.path,
                    "the encoder kept every raw buffer (stalled)",
                ));
            }
            self.wait(libc::POLLOUT, left)?;
            self.reclaim_outputs()?;
        }
        let index = self.free_outputs.pop().expect("checked above");
        let used = self.fill(index as usize, planes)?;
        if force_key && self.can_force_key {
            self.can_force_key = set_control(&self.file, CID_FORCE_KEY_FRAME, 1);
        }
        if let Err(e) = self.queue(out_t, index, used as u32) {
            self.free_outputs.push(index);
            return Err(e);
        }
        // The coded frame: wait for the first buffer, then take what else is ready
        // (an encoder may write its parameter sets into a buffer of their own).
        let mut data = Vec::new();
        let mut key = false;
        let deadline = Instant::now() + ENCODE_WAIT;
        loop {
            match self.dequeue(cap_t)? {
                Some((i, start, end, flags)) => {
                    let slot = self
                        .captures
                        .get(i as usize)
                        .ok_or_else(|| unsupported(&self.path, format!("unknown buffer {i}")))?;
                    data.extend_from_slice(crate::v4l2::payload(&slot.map, start, end));
                    key |= flags & BUF_FLAG_KEYFRAME != 0;
                    self.queue(cap_t, i, 0)?;
                }
                None if !data.is_empty() => break,
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.wait(libc::POLLIN, left)?;
                }
            }
        }
        self.reclaim_outputs()?;
        if data.is_empty() {
            return Ok(None);
        }
        key |= self.codec.is_key(&data);
        Ok(Some(EncodedFrame { data, key }))
    }

    /// Copies the picture into raw buffer `index` in the driver's layout; returns the
    /// bytes used.
    fn fill(&mut self, index: usize, planes: [&[u8]; 3]) -> Result<usize> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (stride, lines) = (self.stride, self.lines.max(h));
        let cstride = stride / 2;
        let clines = lines.div_ceil(2);
        let need = stride * lines + 2 * cstride * clines;
        let layout = self.layout;
        let map = &mut self.outputs[index].map;
        if map.len() < need {
            return Err(unsupported(
                &self.path,
                format!("raw buffer of {} bytes, {need} needed", map.len()),
            ));
        }
        for y in 0..h {
            map[y * stride..y * stride + w].copy_from_slice(&planes[0][y * w..y * w + w]);
        }
        let base = stride * lines;
        match layout {
            RawLayout::Yu12 => {
                for (p, plane) in planes[1..].iter().enumerate() {
                    let start = base + p * cstride * clines;
                    for y in 0..ch {
                        let row = start + y * cstride;
                        map[row..row + cw].copy_from_slice(&plane[y * cw..y * cw + cw]);
                    }
                }
            }
            RawLayout::Nv12 => {
                for y in 0..ch {
                    let row = base + y * stride;
                    for x in 0..cw {
                        map[row + 2 * x] = planes[1][y * cw + x];
                        map[row + 2 * x + 1] = planes[2][y * cw + x];
                    }
                }
            }
        }
        Ok(need)
    }
}

fn is_output(type_: u32) -> bool {
    type_ == BUF_TYPE_VIDEO_OUTPUT || type_ == BUF_TYPE_VIDEO_OUTPUT_MPLANE
}

fn list(fourccs: &[u32]) -> String {
    if fourccs.is_empty() {
        return "nothing".into();
    }
    fourccs
        .iter()
        .map(|f| fourcc_text(*f))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.streaming {
            let (out_t, cap_t) = types(self.mplane);
            for t in [out_t, cap_t] {
                let mut t = t as i32;
                let _ = xioctl(&self.file, VIDIOC_STREAMOFF, &mut t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_sizes_match_the_kernel_abi() {
        // Sizes from <linux/videodev2.h> on the build target.
        assert_eq!(std::mem::size_of::<PlanePixFormat>(), 20);
        assert_eq!(std::mem::size_of::<PixFormatMplane>(), 192);
        assert_eq!(std::mem::size_of::<Control>(), 8);
        assert_eq!(VIDIOC_S_CTRL, 0xc008_561c);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Plane>(), 64);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(std::mem::size_of::<Plane>(), 60);
        assert!(std::mem::size_of::<PixFormatMplane>() <= 200);
    }

    #[test]
    fn keyframes_are_found_in_the_bitstream() {
        let idr = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88];
        let p = [0, 0, 0, 1, 0x41, 0x9a];
        assert!(Codec::H264.is_key(&idr));
        assert!(!Codec::H264.is_key(&p));
        let mut fwht = vec![0u8; 44];
        fwht[20..24].copy_from_slice(&(1u32 << 10).to_be_bytes());
        assert!(Codec::Fwht.is_key(&fwht));
        assert!(!Codec::Fwht.is_key(&[0u8; 44]));
        assert!(!Codec::Fwht.is_key(&[0u8; 8]));
    }

    #[test]
    fn a_missing_or_wrong_device_is_an_error_not_a_panic() {
        let cfg = EncoderConfig {
            codec: Codec::H264,
            width: 640,
            height: 360,
            fps: 30,
            bitrate_bps: 2_000_000,
            gop: 30,
        };
        assert!(matches!(
            Encoder::open("/dev/video-none-such", cfg),
            Err(Error::Gone { .. })
        ));
        assert!(Encoder::open("/dev/null", cfg).is_err());
        assert!(!is_encoder("/dev/null", Codec::H264));
        // This machine has no H.264 M2M encoder; on one that does, it is found.
        if let Some(p) = find_h264_encoder() {
            assert!(p.starts_with("/dev/video"));
        }
    }
}
