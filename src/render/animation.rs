//! A recorded denoising trajectory as an animated GIF: one frame per sampler step showing the
//! sample's tokens as they stand at that step, shaded by how sure the model is and marked where
//! they just changed, then the final text held for a moment. It is what the Sample view shows,
//! in a file a person can share.

use std::collections::HashMap;

use plotters::prelude::*;

use super::font::{FAMILY, FontError, register_embedded_font};
use crate::flow::trajectory::{Frame, Trajectory};

/// What to draw and how big.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnimationOptions {
    /// Which sample of the trajectory.
    pub sample: usize,
    /// Frame width in pixels; the height follows from the text.
    pub width: u32,
    /// At most this many step frames (evenly spread, the last always kept) plus the final one.
    pub max_frames: usize,
    /// How long each step frame shows, in milliseconds.
    pub frame_ms: u32,
    /// How long the final text stays before the loop starts again.
    pub hold_ms: u32,
}

impl Default for AnimationOptions {
    /// 640 px wide and at most 32 step frames: a 128-token sample stays a few hundred KB.
    fn default() -> Self {
        Self {
            sample: 0,
            width: 640,
            max_frames: 32,
            frame_ms: 160,
            hold_ms: 2500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnimationError {
    #[error(
        "the trajectory has {available} samples; there is no sample {asked}\n  hint: samples are numbered from 0"
    )]
    NoSuchSample { asked: usize, available: usize },
    #[error(
        "the trajectory recorded no steps\n  hint: sample with --top-k 1 or more so steps are recorded"
    )]
    NoFrames,
    #[error(
        "an animation of {width} px width and {frames} frames is out of range: width \
         {MIN_WIDTH}–{MAX_WIDTH} px, 1–{MAX_FRAMES} frames"
    )]
    Size { width: u32, frames: usize },
    #[error(transparent)]
    Font(#[from] FontError),
    #[error("drawing the animation failed: {0}")]
    Draw(String),
    #[error("encoding the animation as GIF failed: {0}")]
    Encode(#[from] gif::EncodingError),
}

const MIN_WIDTH: u32 = 240;
const MAX_WIDTH: u32 = 2048;
const MAX_FRAMES: usize = 512;
/// Text beyond this many lines is cut (with "…"), so a long sample cannot make a huge GIF.
const MAX_LINES: usize = 24;
const FONT_PX: f64 = 16.0;
const LINE_PX: i32 = 24;
const MARGIN: i32 = 12;
const HEADER_PX: i32 = 34;
const FOOTER_PX: i32 = 26;

const CONFIDENT: RGBColor = RGBColor(140, 185, 250);
const FIXED: RGBColor = RGBColor(215, 215, 215);
const FLIPPED: RGBColor = RGBColor(205, 60, 20);
const MUTED: RGBColor = RGBColor(110, 110, 110);

/// One token as drawn: its text (newlines removed; `line_break` says one follows).
struct Cell {
    text: String,
    line_break: bool,
}

/// What one frame shows.
struct Shown<'a> {
    title: String,
    tokens: &'a [u32],
    /// Probability of each token (`None`: the final text, drawn without shading).
    confidence: Option<&'a [f32]>,
    flipped: Option<&'a [bool]>,
}

/// Renders sample `options.sample` of `trajectory` as a looping GIF. `token_text` gives each
/// token id's text (the model's tokenizer).
pub fn render_gif(
    trajectory: &Trajectory,
    token_text: &dyn Fn(u32) -> String,
    options: &AnimationOptions,
) -> Result<Vec<u8>, AnimationError> {
    let sample = trajectory
        .samples
        .get(options.sample)
        .ok_or(AnimationError::NoSuchSample {
            asked: options.sample,
            available: trajectory.samples.len(),
        })?;
    if sample.frames.is_empty() {
        return Err(AnimationError::NoFrames);
    }
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&options.width)
        || !(1..=MAX_FRAMES).contains(&options.max_frames)
    {
        return Err(AnimationError::Size {
            width: options.width,
            frames: options.max_frames,
        });
    }
    register_embedded_font()?;

    let picked = spread(sample.frames.len(), options.max_frames);
    let mut shown: Vec<Shown> = picked
        .iter()
        .map(|&step| step_frame(trajectory, &sample.frames[step], step))
        .collect();
    shown.push(Shown {
        title: format!("{} — final text", sampler_title(trajectory)),
        tokens: &sample.tokens,
        confidence: None,
        flipped: None,
    });

    let mut cells = CellCache::new(token_text);
    let width = options.width;
    let lines = shown
        .iter()
        .map(|s| layout(s.tokens, &mut cells, width).len())
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_LINES);
    let height = (HEADER_PX + lines as i32 * LINE_PX + FOOTER_PX + MARGIN) as u32;

    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, width as u16, height as u16, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        let mut previous: Option<Vec<u8>> = None;
        for (index, frame) in shown.iter().enumerate() {
            let rgb = draw_frame(frame, trajectory, &mut cells, (width, height))?;
            // Only the rectangle that changed since the previous frame is stored (the rest
            // is kept on screen): late steps change a few tokens, so most frames shrink.
            let region = previous
                .as_deref()
                .map_or(Some(Region::whole(width, height)), |before| {
                    changed_region(before, &rgb, width, height)
                })
                .unwrap_or(Region {
                    left: 0,
                    top: 0,
                    width: 1,
                    height: 1,
                });
            let patch = region.crop(&rgb, width);
            let mut gif_frame =
                gif::Frame::from_rgb_speed(region.width as u16, region.height as u16, &patch, 10);
            gif_frame.left = region.left as u16;
            gif_frame.top = region.top as u16;
            gif_frame.dispose = gif::DisposalMethod::Keep;
            previous = Some(rgb);
            let last = index + 1 == shown.len();
            let ms = if last {
                options.hold_ms
            } else {
                options.frame_ms
            };
            gif_frame.delay = (ms / 10).clamp(1, u16::MAX as u32) as u16;
            encoder.write_frame(&gif_frame)?;
        }
    }
    Ok(out)
}

/// A rectangle of a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
}

impl Region {
    fn whole(width: u32, height: u32) -> Self {
        Self {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    /// The region's pixels of an RGB image `image_width` wide.
    fn crop(&self, rgb: &[u8], image_width: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.width * self.height * 3) as usize);
        for y in self.top..self.top + self.height {
            let start = ((y * image_width + self.left) * 3) as usize;
            out.extend_from_slice(&rgb[start..start + (self.width * 3) as usize]);
        }
        out
    }
}

/// The smallest rectangle holding every pixel that differs between two RGB images of the
/// same size; `None` when they are equal.
fn changed_region(before: &[u8], after: &[u8], width: u32, height: u32) -> Option<Region> {
    let (mut left, mut right, mut top, mut bottom) = (u32::MAX, 0, u32::MAX, 0);
    for y in 0..height {
        let row = (y * width * 3) as usize..((y + 1) * width * 3) as usize;
        let (a, b) = (&before[row.clone()], &after[row]);
        if a == b {
            continue;
        }
        let first = (0..width).find(|&x| a[x as usize * 3..][..3] != b[x as usize * 3..][..3]);
        let last = (0..width)
            .rev()
            .find(|&x| a[x as usize * 3..][..3] != b[x as usize * 3..][..3]);
        if let (Some(first), Some(last)) = (first, last) {
            left = left.min(first);
            right = right.max(last);
            top = top.min(y);
            bottom = y;
        }
    }
    (top != u32::MAX).then(|| Region {
        left,
        top,
        width: right - left + 1,
        height: bottom - top + 1,
    })
}

/// `count` indices spread evenly over `0..len`, always ending at `len - 1`.
fn spread(len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    let mut picked: Vec<usize> = (0..count)
        .map(|i| ((i as f64 + 1.0) * len as f64 / count as f64).ceil() as usize - 1)
        .collect();
    picked.dedup();
    picked
}

fn sampler_title(trajectory: &Trajectory) -> String {
    match trajectory.sampler.as_str() {
        "flow-map" => format!("FMLM, {} flow-map jump(s)", trajectory.steps),
        "euler" => format!("FLM, {} Euler steps", trajectory.steps),
        other => format!("{other}, {} steps", trajectory.steps),
    }
}

fn step_frame<'a>(trajectory: &Trajectory, frame: &'a Frame, step: usize) -> Shown<'a> {
    let gamma = trajectory.gammas.get(step).copied().unwrap_or(f64::NAN);
    Shown {
        title: format!(
            "{} — step {} of {}, γ = {gamma:.2}",
            sampler_title(trajectory),
            step + 1,
            trajectory.steps
        ),
        tokens: &frame.argmax,
        confidence: Some(&frame.max_prob),
        flipped: Some(&frame.flipped),
    }
}

/// Token texts and widths, computed once per token id.
struct CellCache<'a> {
    token_text: &'a dyn Fn(u32) -> String,
    cells: HashMap<u32, (Cell, i32)>,
}

impl<'a> CellCache<'a> {
    fn new(token_text: &'a dyn Fn(u32) -> String) -> Self {
        Self {
            token_text,
            cells: HashMap::new(),
        }
    }

    fn get(&mut self, id: u32) -> &(Cell, i32) {
        let token_text = self.token_text;
        self.cells.entry(id).or_insert_with(|| {
            let raw = token_text(id);
            let line_break = raw.contains('\n');
            // Tabs and other controls as spaces; a newline is drawn as ¶ and breaks the line.
            let mut text: String = raw
                .chars()
                .filter(|&c| c != '\n' && c != '\r')
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if line_break {
                text.push('¶');
            }
            let width = text_width(&text);
            (Cell { text, line_break }, width)
        })
    }
}

fn text_width(text: &str) -> i32 {
    if text.is_empty() {
        return 0;
    }
    let style = (FAMILY, FONT_PX).into_font();
    // Spaces carry no ink; measure them as part of a bracketed string.
    let bracketed = format!("|{text}|");
    let full = style.box_size(&bracketed).map_or(0, |(w, _)| w as i32);
    let bars = style.box_size("||").map_or(0, |(w, _)| w as i32);
    (full - bars).max(1)
}

/// Where each token goes: lines of (index, x) pairs, wrapped to `width`.
fn layout(tokens: &[u32], cells: &mut CellCache, width: u32) -> Vec<Vec<(usize, i32)>> {
    let right = width as i32 - MARGIN;
    let mut lines = vec![Vec::new()];
    let mut x = MARGIN;
    for (index, &id) in tokens.iter().enumerate() {
        let (cell, w) = cells.get(id);
        let (w, line_break) = (*w, cell.line_break);
        if x + w > right && x > MARGIN {
            lines.push(Vec::new());
            x = MARGIN;
        }
        lines
            .last_mut()
            .expect("one line at least")
            .push((index, x));
        x += w;
        if line_break {
            lines.push(Vec::new());
            x = MARGIN;
        }
    }
    if lines.len() > 1 && lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

fn draw_frame(
    shown: &Shown,
    trajectory: &Trajectory,
    cells: &mut CellCache,
    (width, height): (u32, u32),
) -> Result<Vec<u8>, AnimationError> {
    let draw = |e: DrawingAreaErrorKind<_>| AnimationError::Draw(e.to_string());
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    let lines = layout(shown.tokens, cells, width);
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let font = |color: RGBColor| (FAMILY, FONT_PX).into_font().color(&color);
        root.draw(&Text::new(shown.title.clone(), (MARGIN, 10), font(BLACK)))
            .map_err(draw)?;
        for (row, line) in lines.iter().take(MAX_LINES).enumerate() {
            let y = HEADER_PX + row as i32 * LINE_PX;
            for &(index, x) in line {
                let (cell, w) = cells.get(shown.tokens[index]);
                let fixed = trajectory.fixed.get(index).is_some_and(Option::is_some);
                let shade = match (fixed, shown.confidence) {
                    (true, _) => Some(FIXED),
                    (false, Some(probs)) => Some(mix(WHITE, CONFIDENT, shade_level(probs[index]))),
                    (false, None) => None,
                };
                if let Some(shade) = shade {
                    root.draw(&Rectangle::new(
                        [(x, y), (x + w, y + LINE_PX - 2)],
                        shade.filled(),
                    ))
                    .map_err(draw)?;
                }
                let flipped = shown.flipped.is_some_and(|f| f[index]);
                let color = if flipped { FLIPPED } else { BLACK };
                if !cell.text.trim().is_empty() {
                    root.draw(&Text::new(cell.text.clone(), (x, y + 3), font(color)))
                        .map_err(draw)?;
                }
            }
        }
        if lines.len() > MAX_LINES {
            let y = HEADER_PX + MAX_LINES as i32 * LINE_PX - 6;
            root.draw(&Text::new("…", (width as i32 - 3 * MARGIN, y), font(MUTED)))
                .map_err(draw)?;
        }
        let legend = if shown.confidence.is_some() {
            "shade: the model's probability of the token · red: changed at this step · grey: fixed"
        } else {
            "the sample after the last step"
        };
        let footer = (FAMILY, 12.0).into_font().color(&MUTED);
        root.draw(&Text::new(
            legend,
            (MARGIN, height as i32 - FOOTER_PX + 4),
            footer,
        ))
        .map_err(draw)?;
        root.present().map_err(draw)?;
    }
    Ok(rgb)
}

/// Probability rounded to one of `SHADES` levels: the eye cannot tell finer steps apart, and
/// few distinct colours keep the GIF's palette exact and its frames small.
fn shade_level(p: f32) -> f32 {
    const SHADES: f32 = 5.0;
    if p.is_finite() {
        (p.clamp(0.0, 1.0) * SHADES).round() / SHADES
    } else {
        0.0
    }
}

/// `a` blended toward `b` by `t` in [0, 1].
fn mix(a: RGBColor, b: RGBColor, t: f32) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |x: u8, y: u8| (f32::from(x) + (f32::from(y) - f32::from(x)) * t).round() as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::trajectory::SampleTrajectory;

    /// A trajectory of 3 steps over 4 positions: "ab\nc" appearing letter by letter.
    fn trajectory(steps: usize) -> Trajectory {
        let frame = |argmax: [u32; 4], flipped: [bool; 4]| Frame {
            argmax: argmax.to_vec(),
            max_prob: vec![0.5; 4],
            entropy: vec![1.0; 4],
            flipped: flipped.to_vec(),
            top_ids: argmax.to_vec(),
            top_probs: vec![0.5; 4],
        };
        let frames = (0..steps)
            .map(|s| {
                if s == 0 {
                    frame([0, 0, 0, 0], [false; 4])
                } else {
                    frame([0, 1, 2, 3], [false, true, s == 1, false])
                }
            })
            .collect();
        Trajectory {
            sampler: "euler".into(),
            steps,
            seed: 0,
            eta: 0.0,
            seq_len: 4,
            vocab_size: 4,
            top_k: 1,
            fixed: vec![Some(0), None, None, None],
            taus: (0..steps).map(|s| s as f64 / steps as f64).collect(),
            gammas: (0..steps).map(|s| s as f64 / steps as f64).collect(),
            samples: vec![SampleTrajectory {
                frames,
                tokens: vec![0, 1, 2, 3],
            }],
        }
    }

    fn text(id: u32) -> String {
        ["a", "b", "\n", "c"][id as usize].to_string()
    }

    fn decode(bytes: &[u8]) -> Vec<(u16, u16, u16)> {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::RGBA);
        let mut decoder = options.read_info(bytes).unwrap();
        let mut frames = Vec::new();
        while let Some(frame) = decoder.read_next_frame().unwrap() {
            frames.push((frame.width, frame.height, frame.delay));
        }
        frames
    }

    #[test]
    fn one_frame_per_step_then_the_final_text_held() {
        let options = AnimationOptions::default();
        let gif = render_gif(&trajectory(3), &text, &options).unwrap();
        let frames = decode(&gif);
        assert_eq!(frames.len(), 4);
        // The first frame is whole; later ones hold what changed.
        assert!(frames[0].0 == 640 && frames[0].1 > 60, "{frames:?}");
        assert!(frames.iter().all(|f| f.0 <= 640), "{frames:?}");
        assert_eq!(frames[0].2, 16);
        assert_eq!(frames[3].2, 250);
    }

    #[test]
    fn long_trajectories_are_thinned_to_the_frame_budget() {
        let options = AnimationOptions {
            max_frames: 5,
            width: 320,
            ..AnimationOptions::default()
        };
        let frames = decode(&render_gif(&trajectory(40), &text, &options).unwrap());
        assert_eq!(frames.len(), 6);
        assert_eq!(spread(40, 5), [7, 15, 23, 31, 39]);
        assert_eq!(spread(3, 5), [0, 1, 2]);
    }

    #[test]
    fn newlines_break_lines_and_long_text_wraps() {
        register_embedded_font().unwrap(); // widths are measured in the font
        let cells_text = |id: u32| {
            if id == 2 {
                "\n".into()
            } else {
                "word ".repeat(3)
            }
        };
        let mut cells = CellCache::new(&cells_text);
        let lines = layout(&[0, 1, 2, 3], &mut cells, 640);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1][0], (3, MARGIN));
        let narrow = layout(&[0, 1, 0, 1, 0, 1], &mut cells, 240);
        assert!(narrow.len() >= 3, "{narrow:?}");
    }

    #[test]
    fn only_the_changed_rectangle_is_stored() {
        let (w, h) = (4, 3);
        let before = vec![255u8; (w * h * 3) as usize];
        assert_eq!(changed_region(&before, &before, w, h), None);
        let mut after = before.clone();
        for (x, y) in [(1, 0), (2, 2)] {
            after[((y * w + x) * 3) as usize] = 0;
        }
        let region = changed_region(&before, &after, w, h).unwrap();
        assert_eq!(
            region,
            Region {
                left: 1,
                top: 0,
                width: 2,
                height: 3
            }
        );
        let patch = region.crop(&after, w);
        assert_eq!(patch.len(), 2 * 3 * 3);
        assert_eq!(patch[0], 0); // (1, 0) is the patch's first pixel
    }

    #[test]
    fn shades_come_in_a_few_levels() {
        assert_eq!(shade_level(0.52), 0.6);
        assert_eq!(shade_level(0.0), 0.0);
        assert_eq!(shade_level(1.7), 1.0);
        assert_eq!(shade_level(f32::NAN), 0.0);
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let t = trajectory(3);
        let ask = |options: AnimationOptions| render_gif(&t, &text, &options).unwrap_err();
        let missing = ask(AnimationOptions {
            sample: 3,
            ..AnimationOptions::default()
        });
        assert!(missing.to_string().contains("no sample 3"), "{missing}");
        let tiny = ask(AnimationOptions {
            width: 10,
            ..AnimationOptions::default()
        });
        assert!(matches!(tiny, AnimationError::Size { .. }), "{tiny}");
        let mut empty = trajectory(3);
        empty.samples[0].frames.clear();
        let none = render_gif(&empty, &text, &AnimationOptions::default()).unwrap_err();
        assert!(matches!(none, AnimationError::NoFrames));
    }
}
