//! Minimal line charts rendered straight to PNG bytes, so evaluation reports can show
//! "quality vs steps" and "quality vs wall time" without a plotting dependency.
//!
//! Everything is drawn with hard pixel edges (no anti-aliasing) on a white canvas, and text
//! uses a tiny built-in 5×8 bitmap font, so the output is deterministic and easy to test.

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

/// One panel: axes, ticks, labels, legend.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub series: Vec<Series>,
}

/// Renders the charts side by side (each panel `panel_width`×`height` pixels) as an RGB PNG.
///
/// Sizes are clamped to `1..=MAX_SIDE` per panel and `MAX_TOTAL_WIDTH` overall so absurd
/// arguments cannot exhaust memory; an empty chart list gives one blank white panel.
pub fn render_png(charts: &[Chart], panel_width: u32, height: u32) -> Vec<u8> {
    let panel_width = panel_width.clamp(1, MAX_SIDE);
    let height = height.clamp(1, MAX_SIDE);
    let panels = charts
        .len()
        .clamp(1, (MAX_TOTAL_WIDTH / panel_width) as usize);
    let mut canvas = Canvas::new(panels as u32 * panel_width, height);
    for (i, chart) in charts.iter().take(panels).enumerate() {
        let x0 = i as i64 * i64::from(panel_width);
        let panel = Rect::new(x0, 0, x0 + i64::from(panel_width), i64::from(height));
        draw_chart(&mut canvas, chart, panel);
    }
    canvas.encode_png()
}

const MAX_SIDE: u32 = 4096;
const MAX_TOTAL_WIDTH: u32 = 16384;

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const LEGEND_BORDER: [u8; 3] = [150, 150, 150];

/// Side length of the square marker drawn at each data point, before scaling.
const MARKER: i64 = 5;
/// Series lines are this many pixels thick (square brush).
const LINE_WIDTH: i64 = 2;

/// Half-open pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl Rect {
    fn new(x0: i64, y0: i64, x1: i64, y1: i64) -> Self {
        Self { x0, y0, x1, y1 }
    }

    fn intersect(self, other: Rect) -> Rect {
        Rect::new(
            self.x0.max(other.x0),
            self.y0.max(other.y0),
            self.x1.min(other.x1),
            self.y1.min(other.y1),
        )
    }

    fn contains(self, x: i64, y: i64) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

/// RGB pixel buffer; every write is clipped to `clip` (and the buffer), so drawing code never
/// needs bounds checks of its own.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    clip: Rect,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width as usize * height as usize * 3],
            clip: Rect::new(0, 0, i64::from(width), i64::from(height)),
        }
    }

    fn bounds(&self) -> Rect {
        Rect::new(0, 0, i64::from(self.width), i64::from(self.height))
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        self.bounds()
            .contains(x, y)
            .then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    fn pixel(&self, x: i64, y: i64) -> Option<[u8; 3]> {
        let i = self.index(x, y)?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    fn set_pixel(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if !self.clip.contains(x, y) {
            return;
        }
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    fn rect(&mut self, r: Rect, color: [u8; 3]) {
        let r = r.intersect(self.clip).intersect(self.bounds());
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                self.set_pixel(x, y, color);
            }
        }
    }

    fn outline(&mut self, r: Rect, color: [u8; 3]) {
        self.rect(Rect::new(r.x0, r.y0, r.x1, r.y0 + 1), color);
        self.rect(Rect::new(r.x0, r.y1 - 1, r.x1, r.y1), color);
        self.rect(Rect::new(r.x0, r.y0, r.x0 + 1, r.y1), color);
        self.rect(Rect::new(r.x1 - 1, r.y0, r.x1, r.y1), color);
    }

    /// Bresenham line stamped with a `width`-pixel square brush. Endpoints are clamped near the
    /// canvas first so that the loop length is always bounded by the canvas size.
    fn line(&mut self, from: (i64, i64), to: (i64, i64), width: i64, color: [u8; 3]) {
        let clamp = |(x, y): (i64, i64)| {
            (
                x.clamp(-width, i64::from(self.width) + width),
                y.clamp(-width, i64::from(self.height) + width),
            )
        };
        let ((mut x, mut y), (x1, y1)) = (clamp(from), clamp(to));
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = ((x1 - x).signum(), (y1 - y).signum());
        let mut err = dx + dy;
        loop {
            self.rect(Rect::new(x, y, x + width, y + width), color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale`×`scale`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            let left = x + i as i64 * GLYPH_ADVANCE * scale;
            if left >= self.clip.x1 {
                break;
            }
            self.glyph(ch, scale, color, |u, v| (left + u, y + v));
        }
    }

    /// Draws `text` rotated a quarter turn counter-clockwise (reading bottom to top), with the
    /// start of the text at `(x, y)`: `y` is the bottom end, `x` the side the letter tops face.
    fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            let bottom = y - i as i64 * GLYPH_ADVANCE * scale;
            if bottom < self.clip.y0 {
                break;
            }
            self.glyph(ch, scale, color, |u, v| (x + v, bottom - u - scale));
        }
    }

    /// Stamps one glyph; `place` maps a font-pixel offset (along, down) to the canvas position
    /// of that font pixel's top-left corner.
    fn glyph(
        &mut self,
        ch: char,
        scale: i64,
        color: [u8; 3],
        place: impl Fn(i64, i64) -> (i64, i64),
    ) {
        for (row, bits) in glyph_rows(ch).iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if (bits >> (GLYPH_WIDTH - 1 - col)) & 1 == 1 {
                    let (px, py) = place(col * scale, row as i64 * scale);
                    self.rect(Rect::new(px, py, px + scale, py + scale), color);
                }
            }
        }
    }

    /// Encodes the buffer as an 8-bit RGB PNG; an (unexpected) encoder error yields no bytes
    /// rather than a panic.
    fn encode_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let written = encoder.write_header().and_then(|mut writer| {
            writer.write_image_data(&self.pixels)?;
            writer.finish()
        });
        if written.is_err() {
            out.clear();
        }
        out
    }
}

/// Pixel width of `text` at `scale` (no trailing gap after the last glyph).
fn text_width(text: &str, scale: i64) -> i64 {
    match text.chars().count() as i64 {
        0 => 0,
        n => (n * GLYPH_ADVANCE - 1) * scale,
    }
}

/// A data axis: the value range it spans and where its ticks go.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

impl Axis {
    /// Linear axis over `values`, widened to whole "nice" ticks.
    fn linear(values: impl Iterator<Item = f64>) -> Self {
        let (lo, hi) = padded_range(values);
        let ticks = nice_ticks(lo, hi);
        let labels = linear_labels(&ticks);
        let (first, last) = (ticks.first().copied(), ticks.last().copied());
        Self {
            lo: first.map_or(lo, |t| t.min(lo)),
            hi: last.map_or(hi, |t| t.max(hi)),
            log: false,
            ticks,
            labels,
        }
    }

    /// Log axis over the positive `values`, spanning whole powers of 2 (or of 10 for wide
    /// ranges).
    fn log(values: impl Iterator<Item = f64>) -> Self {
        let (lo, hi, ticks) = log_ticks(values);
        let labels = ticks.iter().map(|&t| format_general(t)).collect();
        Self {
            lo,
            hi,
            log: true,
            ticks,
            labels,
        }
    }

    /// Position of `v` along the axis, 0 at `lo` and 1 at `hi`.
    fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() { f } else { 0.0 }
    }
}

/// Min and max of `values`, widened when empty or a single value so the axis has extent.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    }
}

/// Evenly spaced ticks at multiples of 1, 2, 2.5 or 5 × 10^k with the first ≤ `lo` and the
/// last ≥ `hi`, aiming for 4–6 ticks with as little wasted range as possible. Falls back to
/// `[lo, hi]` when the range is degenerate or too wide to subdivide in `f64`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo, hi];
    }
    let magnitude = span.log10().floor() as i32;
    let mut best: Option<(f64, f64, f64, f64)> = None; // (score, step, first, count)
    for k in magnitude - 2..=magnitude + 1 {
        for mantissa in [1.0, 2.0, 2.5, 5.0] {
            let step = mantissa * 10f64.powi(k);
            if !(step.is_finite() && step > 0.0) {
                continue;
            }
            // Tolerate float noise such as 0.3 / 0.1 = 2.9999999999999996.
            let first = (lo / step + 1e-9).floor();
            let last = (hi / step - 1e-9).ceil();
            let count = last - first + 1.0;
            if !(count.is_finite() && (2.0..=50.0).contains(&count)) {
                continue;
            }
            let outside = (4.0 - count).max(count - 6.0).max(0.0);
            let waste = (count - 1.0) * step / span;
            let score = outside * 10.0 + waste;
            if best.is_none_or(|b| score < b.0) {
                best = Some((score, step, first, count));
            }
        }
    }
    let Some((_, step, first, count)) = best else {
        return vec![lo, hi];
    };
    (0..count as usize)
        .map(|i| {
            let t = (first + i as f64) * step;
            // Snap float noise (and -0) around zero to a clean 0.
            if t.abs() < step * 1e-9 { 0.0 } else { t }
        })
        .collect()
}

/// Labels for evenly spaced linear ticks: as many decimals as the step needs, or scientific
/// notation for very large or very small values.
fn linear_labels(ticks: &[f64]) -> Vec<String> {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => 1.0,
    };
    let largest = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    if largest >= 1e6 || (step > 0.0 && step < 1e-4) {
        return ticks.iter().map(|&t| format_scientific(t)).collect();
    }
    let decimals = (0..=6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6) as usize;
    ticks.iter().map(|&t| format!("{t:.decimals$}")).collect()
}

/// Compact label for an arbitrary value (used on log axes): integers as-is, small fractions
/// with up to 4 decimals, and scientific notation outside `[1e-3, 1e6)`.
fn format_general(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format_scientific(v);
    }
    trim_zeros(format!("{v:.4}"))
}

fn format_scientific(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa.to_string())),
        None => s,
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Range and ticks of a log axis, as `(lo, hi, ticks)`. Positive step counts get powers of 2
/// (1, 2, 4, …); ranges reaching below 1 over at least a decade (seconds) get 1-2-5 × 10^k,
/// which reads better than fractional powers of 2; more than three decades get powers of 10.
/// At most 8 ticks.
fn log_ticks(values: impl Iterator<Item = f64>) -> (f64, f64, Vec<f64>) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (1.0, 8.0, vec![1.0, 2.0, 4.0, 8.0]);
    }
    let decades = hi.log10() - lo.log10();
    if decades <= 3.0 && (lo >= 1.0 || decades < 1.0) {
        return powers_ticks(2.0, f64::log2(lo), f64::log2(hi));
    }
    if decades <= 3.0 {
        let ticks = one_two_five_ticks(lo, hi);
        if let (Some(&first), Some(&last)) = (ticks.first(), ticks.last())
            && ticks.len() <= 8
        {
            return (first.min(lo), last.max(hi), ticks);
        }
    }
    powers_ticks(10.0, lo.log10(), hi.log10())
}

/// Ticks at whole powers of `base` spanning the exponents `log_lo..=log_hi` (rounded outward),
/// thinned to at most 8. `log2`/`log10` are exact on exact powers, unlike `log(base)`.
fn powers_ticks(base: f64, log_lo: f64, log_hi: f64) -> (f64, f64, Vec<f64>) {
    // Keep base^exponent a normal, finite f64.
    let limit = if base == 2.0 { 1020 } else { 307 };
    let mut first = (log_lo.floor() as i32).clamp(-limit, limit);
    let mut last = (log_hi.ceil() as i32).clamp(-limit, limit);
    if first == last {
        first -= 1;
        last += 1;
    }
    let stride = ((last - first + 6) / 7).max(1) as usize;
    let ticks = (first..=last)
        .step_by(stride)
        .map(|e| base.powi(e))
        .collect();
    (base.powi(first), base.powi(last), ticks)
}

/// The values 1, 2, 5 × 10^k from the largest one ≤ `lo` to the smallest one ≥ `hi`.
fn one_two_five_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (k_lo, k_hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let candidates: Vec<f64> = (k_lo.max(-300)..=k_hi.min(300))
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .collect();
    // Relative slack so that float noise (5 × 0.01 = 0.05000000000000001) does not skip a tick.
    let first = candidates.iter().rposition(|&c| c <= lo * (1.0 + 1e-9));
    let last = candidates.iter().position(|&c| c >= hi * (1.0 - 1e-9));
    match (first, last) {
        (Some(first), Some(last)) if first <= last => candidates[first..=last].to_vec(),
        _ => Vec::new(),
    }
}

/// Where one chart's pieces landed; tests use it to find the plot area and legend.
#[derive(Debug)]
#[cfg_attr(not(test), expect(dead_code, reason = "only tests read the layout"))]
struct PanelLayout {
    plot: Rect,
    legend: Option<Rect>,
}

/// Draws one chart into `panel` (other panels are protected by clipping).
fn draw_chart(canvas: &mut Canvas, chart: &Chart, panel: Rect) -> PanelLayout {
    canvas.clip = panel.intersect(canvas.bounds());
    let s = text_scale(panel);
    let series: Vec<(&Series, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .map(|series| (series, usable_points(series, chart.x_log)))
        .collect();
    let all = || series.iter().flat_map(|(_, points)| points.iter().copied());
    let x_axis = if chart.x_log {
        Axis::log(all().map(|p| p.0))
    } else {
        Axis::linear(all().map(|p| p.0))
    };
    let y_axis = Axis::linear(all().map(|p| p.1));

    let plot = plot_rect(panel, &x_axis, &y_axis, s);
    // Data stays a few pixels clear of the axes so markers at the extremes are not cut.
    let inset = 5 * s;
    let to_pixel = |(x, y): (f64, f64)| -> (i64, i64) {
        let left = (plot.x0 + inset) as f64;
        let right = (plot.x1 - 1 - inset) as f64;
        let bottom = (plot.y1 - 1 - inset) as f64;
        let top = (plot.y0 + inset) as f64;
        let px = (left + x_axis.fraction(x) * (right - left)).round() as i64;
        let py = (bottom - y_axis.fraction(y) * (bottom - top)).round() as i64;
        (
            px.clamp(plot.x0, plot.x1 - 1),
            py.clamp(plot.y0, plot.y1 - 1),
        )
    };

    // Grid first, so everything else draws over it.
    for &t in &x_axis.ticks {
        let (px, _) = to_pixel((t, y_axis.lo));
        canvas.rect(Rect::new(px, plot.y0, px + 1, plot.y1), GRID);
    }
    for &t in &y_axis.ticks {
        let (_, py) = to_pixel((x_axis.lo, t));
        canvas.rect(Rect::new(plot.x0, py, plot.x1, py + 1), GRID);
    }

    for (series, points) in &series {
        let pixels: Vec<(i64, i64)> = points.iter().map(|&p| to_pixel(p)).collect();
        for pair in pixels.windows(2) {
            canvas.line(pair[0], pair[1], LINE_WIDTH, series.color);
        }
        let half = (MARKER + 2 * (s - 1)) / 2;
        for &(px, py) in &pixels {
            canvas.rect(
                Rect::new(px - half, py - half, px + half + 1, py + half + 1),
                series.color,
            );
        }
    }

    // Axes: left and bottom edges of the plot area, with outward tick marks and labels.
    canvas.rect(Rect::new(plot.x0, plot.y0, plot.x0 + 1, plot.y1), BLACK);
    canvas.rect(Rect::new(plot.x0, plot.y1 - 1, plot.x1, plot.y1), BLACK);
    let tick_len = 4 * s;
    let mut free_from = i64::MIN; // leftmost x a new x label may use without overlapping
    for (&t, label) in x_axis.ticks.iter().zip(&x_axis.labels) {
        let (px, _) = to_pixel((t, y_axis.lo));
        canvas.rect(Rect::new(px, plot.y1, px + 1, plot.y1 + tick_len), BLACK);
        let left = px - text_width(label, s) / 2;
        if left >= free_from {
            canvas.text(left, plot.y1 + tick_len + 3 * s, label, s, BLACK);
            free_from = left + text_width(label, s) + 4 * s;
        }
    }
    let mut free_above = i64::MAX; // lowest y a new y label may reach without overlapping
    for (&t, label) in y_axis.ticks.iter().zip(&y_axis.labels) {
        let (_, py) = to_pixel((x_axis.lo, t));
        canvas.rect(Rect::new(plot.x0 - tick_len, py, plot.x0, py + 1), BLACK);
        let top = py - GLYPH_CAP_HEIGHT * s / 2;
        if top + GLYPH_HEIGHT * s <= free_above {
            let left = plot.x0 - tick_len - 2 * s - text_width(label, s);
            canvas.text(left, top, label, s, BLACK);
            free_above = top - s;
        }
    }

    // Title centred over the panel, x label centred under the plot, y label vertical on the left.
    let centre_x = (panel.x0 + panel.x1) / 2;
    canvas.text(
        centre_x - text_width(&chart.title, s) / 2,
        panel.y0 + 6 * s,
        &chart.title,
        s,
        BLACK,
    );
    canvas.text(
        (plot.x0 + plot.x1) / 2 - text_width(&chart.x_label, s) / 2,
        plot.y1 + tick_len + 3 * s + LINE_HEIGHT * s + 2 * s,
        &chart.x_label,
        s,
        BLACK,
    );
    canvas.text_vertical(
        panel.x0 + 4 * s,
        (plot.y0 + plot.y1) / 2 + text_width(&chart.y_label, s) / 2,
        &chart.y_label,
        s,
        BLACK,
    );

    let legend = draw_legend(canvas, &chart.series, plot, s);
    canvas.clip = canvas.bounds();
    PanelLayout { plot, legend }
}

/// Finite points of `series` sorted by x (positive x only on a log axis).
fn usable_points(series: &Series, x_log: bool) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!x_log || *x > 0.0))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Font scale for a panel: 1 for small panels, growing with size so text stays readable.
fn text_scale(panel: Rect) -> i64 {
    ((panel.x1 - panel.x0).min(panel.y1 - panel.y0) / 240).clamp(1, 4)
}

/// Plot area inside `panel`, leaving room for the title, tick labels and axis labels.
fn plot_rect(panel: Rect, x_axis: &Axis, y_axis: &Axis, s: i64) -> Rect {
    let widest_y_label = y_axis
        .labels
        .iter()
        .map(|l| text_width(l, s))
        .max()
        .unwrap_or(0);
    let last_x_label = x_axis.labels.last().map_or(0, |l| text_width(l, s));
    let top = 6 * s + LINE_HEIGHT * s + 6 * s;
    // Vertical y label, gap, tick labels, gap, tick marks.
    let left = 4 * s + GLYPH_HEIGHT * s + 4 * s + widest_y_label + 2 * s + 4 * s;
    // Tick marks, tick labels, x label.
    let bottom = 4 * s + 3 * s + LINE_HEIGHT * s + 2 * s + LINE_HEIGHT * s + 4 * s;
    let right = (8 * s).max(last_x_label / 2 + 4 * s);
    let x0 = panel.x0 + left;
    let y0 = panel.y0 + top;
    Rect::new(
        x0,
        y0,
        (panel.x1 - right).max(x0 + 1),
        (panel.y1 - bottom).max(y0 + 1),
    )
}

/// Draws the legend in whichever inner corner of `plot` covers the fewest drawn data pixels.
fn draw_legend(canvas: &mut Canvas, series: &[Series], plot: Rect, s: i64) -> Option<Rect> {
    if series.is_empty() {
        return None;
    }
    let pad = 4 * s;
    let swatch = 14 * s;
    let widest = series
        .iter()
        .map(|x| text_width(&x.label, s))
        .max()
        .unwrap_or(0);
    let width = pad + swatch + pad + widest + pad;
    let height = pad + series.len() as i64 * LINE_HEIGHT * s - 2 * s + pad;
    let margin = 6 * s;
    let corners = [
        (plot.x1 - margin - width, plot.y0 + margin),
        (plot.x0 + margin, plot.y0 + margin),
        (plot.x1 - margin - width, plot.y1 - margin - height),
        (plot.x0 + margin, plot.y1 - margin - height),
    ];
    let boxes = corners.map(|(x, y)| Rect::new(x, y, x + width, y + height));
    let covered = |r: Rect| {
        let r = r.intersect(canvas.bounds());
        (r.y0..r.y1)
            .flat_map(|y| (r.x0..r.x1).map(move |x| (x, y)))
            .filter(|&(x, y)| canvas.pixel(x, y).is_some_and(|c| c != WHITE && c != GRID))
            .count()
    };
    let legend = boxes.into_iter().min_by_key(|&r| covered(r))?;

    canvas.rect(legend, WHITE);
    canvas.outline(legend, LEGEND_BORDER);
    for (i, series) in series.iter().enumerate() {
        let top = legend.y0 + pad + i as i64 * LINE_HEIGHT * s;
        let mid = top + GLYPH_CAP_HEIGHT * s / 2;
        let x = legend.x0 + pad;
        canvas.line(
            (x, mid - LINE_WIDTH / 2),
            (x + swatch - LINE_WIDTH, mid - LINE_WIDTH / 2),
            LINE_WIDTH,
            series.color,
        );
        let half = (MARKER + 2 * (s - 1)) / 2;
        let cx = x + swatch / 2;
        canvas.rect(
            Rect::new(cx - half, mid - half, cx + half + 1, mid + half + 1),
            series.color,
        );
        canvas.text(x + swatch + pad, top, &series.label, s, BLACK);
    }
    Some(legend)
}

/// Glyph cell: 5 columns by 8 rows (rows 0–6 hold capitals and digits, row 7 descenders).
const GLYPH_WIDTH: i64 = 5;
const GLYPH_HEIGHT: i64 = 8;
const GLYPH_CAP_HEIGHT: i64 = 7;
/// Horizontal distance between glyph origins (one blank column between glyphs).
const GLYPH_ADVANCE: i64 = 6;
/// Vertical distance between text lines.
const LINE_HEIGHT: i64 = 10;

/// Rows of `ch`'s glyph; anything outside printable ASCII is drawn as '?'.
fn glyph_rows(ch: char) -> &'static [u8; 8] {
    let code = if (' '..='~').contains(&ch) {
        ch as usize
    } else {
        '?' as usize
    };
    &FONT[code - ' ' as usize]
}

/// 5×8 bitmap font for printable ASCII (' '..='~'): one byte per row, top to bottom, bit 4 is
/// the leftmost column.
#[rustfmt::skip]
const FONT: [[u8; 8]; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ' '
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100, 0b00000], // !
    [0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // "
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0b00000], // #
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0b00000], // $
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000], // %
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0b00000], // &
    [0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000], // (
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000], // )
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000, 0b00000], // *
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000], // +
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00110, 0b00100, 0b01000], // ,
    [0b00000, 0b00000, 0b00000, 0b01110, 0b00000, 0b00000, 0b00000, 0b00000], // -
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000], // .
    [0b00001, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b10000, 0b00000], // /
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000], // 0
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // 1
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // 2
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0b00000], // 3
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000], // 4
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000], // 5
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000], // 6
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000], // 7
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000], // 8
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000], // 9
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000], // :
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000, 0b00000], // ;
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00000], // <
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000], // =
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0b00000], // >
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000], // ?
    [0b01110, 0b10001, 0b10111, 0b10101, 0b10111, 0b10000, 0b01110, 0b00000], // @
    [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // A
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000], // B
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // C
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000], // D
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000], // E
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // F
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0b00000], // G
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000], // H
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // I
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000], // J
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000], // K
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000], // L
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0b00000], // M
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000], // N
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // O
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000], // P
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000], // Q
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000], // R
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000], // S
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // T
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // U
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // V
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0b00000], // W
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000], // X
    [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // Y
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000], // Z
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0b00000], // [
    [0b10000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00001, 0b00000], // \
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0b00000], // ]
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ^
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111], // _
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // `
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000], // a
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000], // b
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000], // c
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000], // d
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000], // e
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000], // f
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // g
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // h
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // i
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // j
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b00000], // k
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000], // l
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0b00000], // m
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000], // n
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000], // o
    [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // p
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // q
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000], // r
    [0b00000, 0b00000, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000], // s
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000], // t
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000], // u
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000], // v
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000], // w
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000], // x
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // y
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000], // z
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0b00000], // {
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000], // |
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0b00000], // }
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000, 0b00000], // ~
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const RED: [u8; 3] = [220, 40, 30];
    const BLUE: [u8; 3] = [30, 80, 220];

    fn example_charts() -> Vec<Chart> {
        let steps = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
        let seconds = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4];
        let quality = |i: usize, offset: f64| 0.9 - 0.6 * (-(i as f64) / 2.5).exp() + offset;
        let series = |xs: &[f64; 8]| {
            vec![
                Series {
                    label: "Euler (τ=0.5)".to_string(),
                    color: RED,
                    points: xs
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| (x, quality(i, 0.0)))
                        .collect(),
                },
                Series {
                    label: "midpoint".to_string(),
                    color: BLUE,
                    points: xs
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| (x, quality(i, -0.12)))
                        .collect(),
                },
            ]
        };
        vec![
            Chart {
                title: "Quality vs steps".to_string(),
                x_label: "sampler steps".to_string(),
                y_label: "unigram overlap".to_string(),
                x_log: true,
                series: series(&steps),
            },
            Chart {
                title: "Quality vs wall time".to_string(),
                x_label: "seconds (log)".to_string(),
                y_label: "unigram overlap".to_string(),
                x_log: true,
                series: series(&seconds),
            },
        ]
    }

    /// Decodes an RGB PNG into (width, height, pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("valid PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn png_has_one_panel_per_chart() {
        let (width, height, pixels) = decode(&render_png(&example_charts(), 480, 360));
        assert_eq!((width, height), (2 * 480, 360));
        assert_eq!(pixels.len(), 960 * 360 * 3);
        assert_eq!(&pixels[..3], &WHITE, "background is white");
    }

    #[test]
    fn series_colours_appear_inside_plot_area() {
        let charts = example_charts();
        let (width, _, pixels) = decode(&render_png(&charts, 480, 360));
        for (i, chart) in charts.iter().enumerate() {
            // Re-run the layout on a scratch canvas to learn where the plot and legend are.
            let mut scratch = Canvas::new(width, 360);
            let x0 = i as i64 * 480;
            let layout = draw_chart(&mut scratch, chart, Rect::new(x0, 0, x0 + 480, 360));
            let legend = layout.legend.expect("chart has series");
            for color in [RED, BLUE] {
                let count = (layout.plot.y0..layout.plot.y1)
                    .flat_map(|y| (layout.plot.x0..layout.plot.x1).map(move |x| (x, y)))
                    .filter(|&(x, y)| !legend.contains(x, y))
                    .filter(|&(x, y)| {
                        let at = (y as usize * width as usize + x as usize) * 3;
                        pixels[at..at + 3] == color
                    })
                    .count();
                assert!(count > 100, "chart {i}: only {count} pixels of {color:?}");
            }
        }
    }

    #[test]
    fn marker_is_drawn_at_mapped_point() {
        let chart = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_log: false,
            series: vec![Series {
                label: String::new(),
                color: RED,
                points: vec![(0.0, 0.0), (10.0, 5.0)],
            }],
        };
        let mut canvas = Canvas::new(400, 300);
        let layout = draw_chart(&mut canvas, &chart, Rect::new(0, 0, 400, 300));
        // The first point is the data minimum, so its marker sits just inside the lower-left
        // corner of the plot area.
        let (x, y) = (layout.plot.x0 + 5, layout.plot.y1 - 6);
        assert_eq!(canvas.pixel(x, y), Some(RED));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let nan_chart = Chart {
            title: "all NaN η".to_string(),
            x_label: "x".to_string(),
            y_label: "y".to_string(),
            x_log: true,
            series: vec![Series {
                label: "nan".to_string(),
                color: RED,
                points: vec![(f64::NAN, 1.0), (2.0, f64::INFINITY), (-1.0, 3.0)],
            }],
        };
        let (w, h, _) = decode(&render_png(&[nan_chart], 300, 200));
        assert_eq!((w, h), (300, 200));

        let (w, h, _) = decode(&render_png(&[], 300, 200));
        assert_eq!((w, h), (300, 200));

        let extreme = Chart {
            title: "x".repeat(500),
            x_label: String::new(),
            y_label: String::new(),
            x_log: false,
            series: vec![
                Series {
                    label: String::new(),
                    color: BLUE,
                    points: vec![(-f64::MAX, f64::MAX), (f64::MAX, -f64::MAX)],
                },
                Series {
                    label: "one".to_string(),
                    color: RED,
                    points: vec![(3.0, 3.0)],
                },
            ],
        };
        let tiny = Chart {
            x_log: true,
            ..extreme
        };
        decode(&render_png(&[tiny], 0, 0));
        let tiny_values = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_log: true,
            series: vec![Series {
                label: String::new(),
                color: RED,
                points: vec![(5e-324, 1e-300), (1e308, 1e-300)],
            }],
        };
        decode(&render_png(&[tiny_values], 40, 30));
    }

    #[test]
    fn nice_ticks_cover_data_range() {
        for (lo, hi) in [
            (0.0, 1.0),
            (0.31, 0.87),
            (-3.2, 17.5),
            (1e-6, 3e-6),
            (12_000.0, 250_000.0),
            (-5.0, -4.99),
        ] {
            let ticks = nice_ticks(lo, hi);
            assert!((4..=6).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            let step = ticks[1] - ticks[0];
            assert!(
                ticks[0] <= lo + step * 1e-6 && *ticks.last().unwrap() >= hi - step * 1e-6,
                "{lo}..{hi}: {ticks:?}"
            );
            assert!(
                ticks
                    .windows(2)
                    .all(|w| ((w[1] - w[0]) - step).abs() < step * 1e-6)
            );
        }
        assert_eq!(
            nice_ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(
            linear_labels(&nice_ticks(0.0, 1.0)),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
        assert_eq!(linear_labels(&[0.0, 2.5, 5.0]), ["0.0", "2.5", "5.0"]);
        assert_eq!(linear_labels(&[0.0, 2e6, 4e6]), ["0", "2e6", "4e6"]);
    }

    #[test]
    fn log_ticks_are_powers_of_two_for_step_counts() {
        let (lo, hi, ticks) = log_ticks([1.0, 3.0, 128.0].into_iter());
        assert_eq!((lo, hi), (1.0, 128.0));
        assert_eq!(ticks, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);

        // More than three decades switches to powers of ten.
        let (lo, hi, ticks) = log_ticks([0.01, 50.0].into_iter());
        assert_eq!((lo, hi), (0.01, 100.0));
        assert_eq!(ticks, [0.01, 0.1, 1.0, 10.0, 100.0]);
        let labels: Vec<String> = ticks.iter().map(|&t| format_general(t)).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100"]);

        // Sub-second wall times over a couple of decades use 1-2-5 steps.
        let (lo, hi, ticks) = log_ticks([0.05, 6.4].into_iter());
        assert_eq!((lo, ticks.len()), (0.05, 8));
        assert_eq!(hi, 10.0);
        let labels: Vec<String> = ticks.iter().map(|&t| format_general(t)).collect();
        assert_eq!(labels, ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"]);
    }

    #[test]
    fn non_ascii_renders_as_question_mark() {
        assert_eq!(glyph_rows('τ'), glyph_rows('?'));
        assert_ne!(glyph_rows('a'), glyph_rows('A'));
        assert_eq!(text_width("τ=1", 1), 17);
    }

    /// Writes a sample image for eyeballing: `cargo test --lib eval::plot -- --ignored`.
    #[test]
    #[ignore]
    fn write_example_png() {
        let path = std::env::temp_dir().join("plot_example.png");
        std::fs::write(&path, render_png(&example_charts(), 480, 360)).expect("write example");
    }
}
