//! The synthetic camera picture of Brume's test source.

use crate::font::{glyph, GLYPH_H, GLYPH_W};
use crate::picture::{chroma_dims, I420, UV_NEUTRAL, Y_BLACK};

/// Largest width or height a [`TestPattern`] renders; larger requests are clamped.
pub const MAX_DIM: u32 = 8192;

/// Luma of peak white in limited range.
const Y_WHITE: u8 = 235;
/// Luma of the text band behind burned-in text.
const Y_BAND: u8 = 20;

/// A colour as limited-range BT.601 (Y, Cb, Cr).
type Yuv = (u8, u8, u8);

/// 75 % colour bars: white, yellow, cyan, green, magenta, red, blue.
const BARS: [Yuv; 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];
const BLACK: Yuv = (Y_BLACK, UV_NEUTRAL, UV_NEUTRAL);
/// The "castellations" strip under the bars: blue, black, magenta, black, cyan, black, white.
const CASTLE: [Yuv; 7] = [BARS[6], BLACK, BARS[4], BLACK, BARS[2], BLACK, BARS[0]];
/// The bottom strip: -I, 100 % white, +Q, black, PLUGE (below/at/above black), black.
const BOTTOM: [Yuv; 8] = [
    (29, 160, 112),
    (Y_WHITE, 128, 128),
    (35, 158, 150),
    BLACK,
    (8, 128, 128),
    BLACK,
    (24, 128, 128),
    BLACK,
];

/// A synthetic camera picture: SMPTE-like colour bars, a box that moves with the frame
/// number (so motion is visible and exercises the encoder) and text lines burned in,
/// white on a dark band at the bottom, with an embedded 5x7 font scaled to the picture.
///
/// The static background is drawn once in [`TestPattern::new`]; [`TestPattern::render`]
/// copies it and draws only the box and the text, so a 1280x720 frame takes well under
/// a millisecond on a desktop core. No floating point is used per pixel.
#[derive(Clone, Debug)]
pub struct TestPattern {
    background: I420,
}

/// Where the burned-in text goes.
struct TextLayout {
    /// Size of one font pixel, in picture pixels.
    scale: usize,
    /// First row of the dark band (even).
    band_top: usize,
    /// Space above the first line inside the band.
    pad: usize,
}

impl TestPattern {
    /// A pattern of `width` x `height` pixels (each clamped to [`MAX_DIM`]).
    pub fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width.min(MAX_DIM), height.min(MAX_DIM));
        let mut bg = I420::new(width, height);
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = chroma_dims(width, height);
        for y in 0..h {
            let row = &mut bg.y[y * w..(y + 1) * w];
            for (x, px) in row.iter_mut().enumerate() {
                *px = colour_at(x, y, w, h).0;
            }
        }
        for cy in 0..ch {
            for cx in 0..cw {
                let (_, u, v) = colour_at(cx * 2, cy * 2, w, h);
                bg.u[cy * cw + cx] = u;
                bg.v[cy * cw + cx] = v;
            }
        }
        TestPattern { background: bg }
    }

    /// Width of the rendered pictures.
    pub fn width(&self) -> u32 {
        self.background.width
    }

    /// Height of the rendered pictures.
    pub fn height(&self) -> u32 {
        self.background.height
    }

    /// Renders frame `frame_no` into `out` (resized to the pattern's size if needed),
    /// with `lines` burned in, one text line each, centred, on a dark band at the bottom.
    /// Lower-case letters are drawn as capitals; characters the font lacks as '?'.
    pub fn render(&mut self, frame_no: u64, lines: &[&str], out: &mut I420) {
        let bg = &self.background;
        out.ensure_size(bg.width, bg.height);
        out.y.copy_from_slice(&bg.y);
        out.u.copy_from_slice(&bg.u);
        out.v.copy_from_slice(&bg.v);

        let (w, h) = (bg.width as usize, bg.height as usize);
        let layout = text_layout(w, h, lines);
        let area_h = layout.as_ref().map_or(h, |l| l.band_top);
        draw_box(out, frame_no, area_h);
        if let Some(layout) = layout {
            draw_text(out, lines, &layout);
        }
    }

    /// Draws the flash marker into `out`: a square in the top-left corner (a quarter of
    /// the smaller dimension), peak white when `on`, black when off. Call it after
    /// [`TestPattern::render`] to mark frames for audio/video sync measurements.
    pub fn render_flash(&self, out: &mut I420, on: bool) {
        if !out.is_consistent() {
            return;
        }
        let side = (out.width.min(out.height) as usize / 4) & !1;
        let luma = if on { Y_WHITE } else { Y_BLACK };
        fill_rect(out, 0, 0, side, side, (luma, UV_NEUTRAL, UV_NEUTRAL));
    }
}

/// The background colour at luma position (x, y) of a `w` x `h` picture.
fn colour_at(x: usize, y: usize, w: usize, h: usize) -> Yuv {
    let (x, y, w, h) = (x as u64, y as u64, w.max(1) as u64, h.max(1) as u64);
    let bar = (x * 7 / w).min(6) as usize;
    if y < h * 2 / 3 {
        BARS[bar]
    } else if y < h * 3 / 4 {
        CASTLE[bar]
    } else {
        BOTTOM[(x * BOTTOM.len() as u64 / w).min(BOTTOM.len() as u64 - 1) as usize]
    }
}

/// Position along a back-and-forth path over `0..=range` at step `t`.
fn triangle(t: u64, range: u64) -> u64 {
    if range == 0 {
        return 0;
    }
    let p = t % (2 * range);
    if p <= range {
        p
    } else {
        2 * range - p
    }
}

/// Draws the moving box within rows `0..area_h`.
fn draw_box(out: &mut I420, frame_no: u64, area_h: usize) {
    let w = out.width as usize;
    let side = ((w.min(area_h) / 6).max(2) & !1).min(w.min(area_h) & !1);
    if side == 0 {
        return;
    }
    let (range_x, range_y) = ((w - side) as u64, (area_h - side) as u64);
    // Steps per frame proportional to the picture, so motion looks alike at any size.
    let (step_x, step_y) = ((w as u64 / 160).max(1), (area_h as u64 / 120).max(1));
    let px = pos(frame_no, step_x, range_x);
    let py = pos(frame_no, step_y, range_y);
    let white = (Y_WHITE, UV_NEUTRAL, UV_NEUTRAL);
    fill_rect(out, px, py, px + side, py + side, white);
    let inner = (side / 3) & !1;
    let off = ((side - inner) / 2) & !1;
    fill_rect(
        out,
        px + off,
        py + off,
        px + off + inner,
        py + off + inner,
        BLACK,
    );
}

/// Even position on a triangle path of `range` at `frame_no * step`.
fn pos(frame_no: u64, step: u64, range: u64) -> usize {
    if range == 0 {
        return 0;
    }
    let period = 2 * range;
    let t = (frame_no % period) * step % period;
    (triangle(t, range) & !1) as usize
}

/// Fills the rectangle `[x0, x1) x [y0, y1)` (clipped; x0 and y0 should be even so the
/// chroma matches) with `colour`.
fn fill_rect(out: &mut I420, x0: usize, y0: usize, x1: usize, y1: usize, colour: Yuv) {
    let (w, h) = (out.width as usize, out.height as usize);
    let (x1, y1) = (x1.min(w), y1.min(h));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    for row in out.y.chunks_exact_mut(w).take(y1).skip(y0) {
        row[x0..x1].fill(colour.0);
    }
    let cw = w.div_ceil(2);
    let (cx0, cx1, cy0, cy1) = (x0 / 2, x1.div_ceil(2), y0 / 2, y1.div_ceil(2));
    for (plane, val) in [(&mut out.u, colour.1), (&mut out.v, colour.2)] {
        for row in plane.chunks_exact_mut(cw).take(cy1).skip(cy0) {
            row[cx0..cx1].fill(val);
        }
    }
}

/// Chooses the font scale and the band position for `lines` in a `w` x `h` picture.
fn text_layout(w: usize, h: usize, lines: &[&str]) -> Option<TextLayout> {
    if lines.is_empty() || w == 0 || h == 0 {
        return None;
    }
    let n = lines.len();
    let max_chars = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let margin = w / 32;
    // One character cell is (GLYPH_W + 1) font pixels wide; one line GLYPH_H + 2 tall.
    let by_width = (w - 2 * margin) / ((GLYPH_W + 1) * max_chars);
    // The band takes at most a third of the picture.
    let by_height = (h / 3) / ((GLYPH_H + 2) * n + 2);
    let scale = by_width.min(by_height).clamp(1, 32);
    let pad = 2 * scale;
    let band_h = (2 * pad + n * GLYPH_H * scale + (n - 1) * 2 * scale).min(h);
    let band_top = (h - band_h) & !1;
    Some(TextLayout {
        scale,
        band_top,
        pad,
    })
}

/// Draws the dark band and the text lines on it.
fn draw_text(out: &mut I420, lines: &[&str], layout: &TextLayout) {
    let (w, h) = (out.width as usize, out.height as usize);
    fill_rect(
        out,
        0,
        layout.band_top,
        w,
        h,
        (Y_BAND, UV_NEUTRAL, UV_NEUTRAL),
    );
    let s = layout.scale;
    let cell = (GLYPH_W + 1) * s;
    for (i, line) in lines.iter().enumerate() {
        let y0 = layout.band_top + layout.pad + i * (GLYPH_H + 2) * s;
        if y0 >= h {
            break;
        }
        let chars = line.chars().count();
        let text_w = (chars * cell).saturating_sub(s);
        let x0 = w.saturating_sub(text_w) / 2;
        for (j, c) in line.chars().enumerate() {
            let gx = x0 + j * cell;
            if gx >= w {
                break;
            }
            draw_glyph(out, c, gx, y0, s);
        }
    }
}

/// Draws one glyph, luma only (the band's chroma is neutral, so the text is white).
fn draw_glyph(out: &mut I420, c: char, x0: usize, y0: usize, s: usize) {
    let (w, h) = (out.width as usize, out.height as usize);
    for (r, bits) in glyph(c).iter().enumerate() {
        if *bits == 0 {
            continue;
        }
        let py0 = y0 + r * s;
        if py0 >= h {
            return;
        }
        let py1 = (py0 + s).min(h);
        for k in 0..GLYPH_W {
            if bits & (1 << (GLYPH_W - 1 - k)) == 0 {
                continue;
            }
            let px0 = x0 + k * s;
            if px0 >= w {
                break;
            }
            let px1 = (px0 + s).min(w);
            for row in out.y.chunks_exact_mut(w).take(py1).skip(py0) {
                row[px0..px1].fill(Y_WHITE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band_rows(p: &TestPattern, lines: &[&str]) -> usize {
        text_layout(p.width() as usize, p.height() as usize, lines)
            .map(|l| l.band_top)
            .unwrap()
    }

    #[test]
    fn text_differs_between_frame_numbers() {
        let mut p = TestPattern::new(320, 180);
        let (mut a, mut b) = (I420::new(1, 1), I420::new(1, 1));
        let time = "2026-11-24 13:45:01.123";
        p.render(7, &[time, "frame 000123"], &mut a);
        p.render(7, &[time, "frame 000124"], &mut b);
        let top = band_rows(&p, &[time, "frame 000123"]) * 320;
        assert_eq!(
            a.y[..top],
            b.y[..top],
            "same frame number: same picture above the band"
        );
        let differing = a.y[top..]
            .iter()
            .zip(&b.y[top..])
            .filter(|(x, y)| x != y)
            .count();
        assert!(differing > 20, "only {differing} text pixels differ");
        // Deterministic.
        let mut c = I420::new(320, 180);
        p.render(7, &[time, "frame 000123"], &mut c);
        assert_eq!(a, c);
    }

    #[test]
    fn text_is_white_on_dark_and_large() {
        for (w, h, min_scale) in [(320, 180, 2), (1280, 720, 6)] {
            let mut p = TestPattern::new(w, h);
            let mut pic = I420::new(w, h);
            let lines = ["2026-11-24 13:45:01.123", "frame 000123"];
            p.render(0, &lines, &mut pic);
            let l = text_layout(w as usize, h as usize, &lines).unwrap();
            assert!(l.scale >= min_scale, "{w}x{h}: scale {}", l.scale);
            let band = &pic.y[l.band_top * w as usize..];
            let white = band.iter().filter(|&&v| v == Y_WHITE).count();
            let dark = band.iter().filter(|&&v| v == Y_BAND).count();
            assert!(
                white > 100 * l.scale * l.scale,
                "{w}x{h}: {white} white pixels"
            );
            assert!(dark > white, "{w}x{h}");
        }
    }

    #[test]
    fn box_moves() {
        let mut p = TestPattern::new(640, 480);
        let (mut a, mut b) = (I420::new(640, 480), I420::new(640, 480));
        p.render(0, &[], &mut a);
        p.render(1, &[], &mut b);
        assert!(a.y != b.y, "the box moves every frame");
        p.render(40, &[], &mut b);
        assert!(a.u != b.u, "the box changes chroma too");
        // Far along the path the box is still inside the picture.
        p.render(u64::MAX, &["x"], &mut b);
        assert!(b.is_consistent());
    }

    #[test]
    fn odd_and_tiny_sizes_do_not_panic() {
        let long = "the quick brown fox jumps over the lazy dog 0123456789 #/:-.";
        for (w, h) in [
            (176, 144),
            (16, 16),
            (1, 1),
            (0, 0),
            (0, 10),
            (10, 0),
            (3, 5),
            (17, 9),
            (2, 1000),
            (1000, 2),
            (1921, 1081),
        ] {
            let mut p = TestPattern::new(w, h);
            let mut out = I420::new(7, 3);
            for frame in [0, 1, 2, 999, u64::MAX] {
                p.render(frame, &[], &mut out);
                p.render(frame, &["a"], &mut out);
                p.render(
                    frame,
                    &[long, long, long, long, long, long, "\u{1F600}", ""],
                    &mut out,
                );
                p.render_flash(&mut out, frame % 2 == 0);
                assert!(out.is_consistent());
                assert_eq!((out.width, out.height), (w, h));
            }
            // A flash into a picture of another size is clipped, not a panic.
            let mut other = I420::new(5, 5);
            p.render_flash(&mut other, true);
            other.y.clear();
            p.render_flash(&mut other, true);
        }
    }

    #[test]
    fn flash_marks_the_corner() {
        let p = TestPattern::new(320, 240);
        let mut pic = I420::new(320, 240);
        p.render_flash(&mut pic, true);
        assert_eq!(pic.y[0], Y_WHITE);
        assert_eq!(pic.y[59 * 320 + 59], Y_WHITE);
        assert_eq!(pic.y[60 * 320 + 60], Y_BLACK);
        p.render_flash(&mut pic, false);
        assert_eq!(pic.y[0], Y_BLACK);
    }
}
