//! The figure `flm eval --out` writes beside its report: line charts ("quality vs steps",
//! "quality vs wall time") side by side in one PNG.
//!
//! Drawn with the `plotters` crate rather than a rasteriser of our own, so axes, ticks, text
//! and legends are a maintained library's job. Only its bitmap backend is used; the pixels are
//! encoded with the `png` crate the project already has. Text goes through `ab_glyph` with
//! DejaVu Sans embedded in the binary (`assets/fonts/`), so the figure renders the same on a
//! machine with no system fonts at all (plotters' `ttf` feature would look them up at run time).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::font::{FAMILY, FontError, register_embedded_font};

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

/// Why no figure could be made.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("no charts to draw")]
    NoCharts,
    #[error(
        "figure panels of {width}×{height} px are out of range: each panel needs \
         {MIN_WIDTH}–{MAX_SIDE} × {MIN_HEIGHT}–{MAX_SIDE} px, and all of them at most \
         {MAX_TOTAL_WIDTH} px in width"
    )]
    Size { width: u32, height: u32 },
    #[error("the {axis} values of chart \"{title}\" span too wide a range to plot")]
    Range { axis: &'static str, title: String },
    #[error(transparent)]
    Font(#[from] FontError),
    #[error("drawing the figure failed: {0}")]
    Draw(String),
    #[error("encoding the figure as PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
}

/// Smallest panel that still leaves room for a plot between the labels.
const MIN_WIDTH: u32 = 160;
const MIN_HEIGHT: u32 = 120;
/// Caps so absurd sizes cannot exhaust memory.
const MAX_SIDE: u32 = 4096;
const MAX_TOTAL_WIDTH: u32 = 16384;

const GRID: RGBColor = RGBColor(225, 225, 225);
const LEGEND_BORDER: RGBColor = RGBColor(150, 150, 150);
/// Series lines are this many pixels wide, with dots of this radius at the data points.
const LINE_WIDTH: u32 = 2;
const MARKER_RADIUS: u32 = 3;

/// Renders the charts side by side (each panel `panel_width`×`height` pixels) as an RGB PNG.
///
/// Non-finite points, and non-positive x on a log axis, are left out; a chart left with no
/// points is drawn as empty axes saying "no data".
pub fn render_png(charts: &[Chart], panel_width: u32, height: u32) -> Result<Vec<u8>, FigureError> {
    if charts.is_empty() {
        return Err(FigureError::NoCharts);
    }
    let total = u64::from(panel_width) * charts.len() as u64;
    if !(MIN_WIDTH..=MAX_SIDE).contains(&panel_width)
        || !(MIN_HEIGHT..=MAX_SIDE).contains(&height)
        || total > u64::from(MAX_TOTAL_WIDTH)
    {
        return Err(FigureError::Size {
            width: panel_width,
            height,
        });
    }
    register_embedded_font()?;
    let width = total as u32;
    let mut rgb = vec![255; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        for (area, chart) in root.split_evenly((1, charts.len())).iter().zip(charts) {
            draw_chart(area, chart)?;
        }
        root.present().map_err(draw_error)?;
    }
    encode_png(&rgb, width, height)
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> FigureError {
    FigureError::Draw(e.to_string())
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, FigureError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
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

/// A series as drawn: its style and the points left after [`usable_points`].
struct Line<'a> {
    series: &'a Series,
    points: Vec<(f64, f64)>,
}

fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), FigureError> {
    let lines: Vec<Line> = chart
        .series
        .iter()
        .map(|series| Line {
            series,
            points: usable_points(series, chart.x_log),
        })
        .collect();
    let all = || lines.iter().flat_map(|l| l.points.iter().copied());
    let y = padded_range(all().map(|p| p.1));
    if !(y.end - y.start).is_finite() {
        return Err(FigureError::Range {
            axis: "y",
            title: chart.title.clone(),
        });
    }
    if chart.x_log {
        // Our own ticks: powers of two suit step counts better than plotters' 1–9 per decade.
        let (lo, hi, ticks) = log_ticks(all().map(|p| p.0));
        // 3 % headroom either side (in log space) so end markers are not cut by the frame.
        let pad = Some((hi / lo).powf(0.03)).filter(|p| p.is_finite() && *p > 1.0);
        let pad = pad.unwrap_or(1.0);
        let x = (lo / pad..hi * pad).log_scale().with_key_points(ticks);
        draw_panel(area, chart, &lines, x, y, &|v: &f64| format_general(*v))
    } else {
        let x = padded_range(all().map(|p| p.0));
        if !(x.end - x.start).is_finite() {
            return Err(FigureError::Range {
                axis: "x",
                title: chart.title.clone(),
            });
        }
        draw_panel(area, chart, &lines, x, y, &|v: &f64| format_general(*v))
    }
}

fn draw_panel<DB, X>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    lines: &[Line],
    x: X,
    y: Range<f64>,
    x_format: &dyn Fn(&f64) -> String,
) -> Result<(), FigureError>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let (w, h) = area.dim_in_pixel();
    // Text grows with the panel so it stays readable on large figures.
    let scale = (f64::from(w.min(h)) / 400.0).clamp(0.75, 4.0);
    let px = |v: f64| (v * scale).round() as u32;
    let font = |size: f64| (FAMILY, size * scale).into_font().color(&BLACK);

    let mut builder = ChartBuilder::on(area);
    builder
        .margin(px(10.0))
        .caption(&chart.title, font(18.0))
        .x_label_area_size(px(42.0))
        .y_label_area_size(px(62.0));
    let mut ctx = builder.build_cartesian_2d(x, y).map_err(draw_error)?;
    ctx.configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK)
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .x_label_formatter(x_format)
        .y_labels(6)
        .draw()
        .map_err(draw_error)?;

    for line in lines {
        let [r, g, b] = line.series.color;
        let style = RGBColor(r, g, b).stroke_width(LINE_WIDTH);
        ctx.draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(draw_error)?;
        // Filled dots on top (LineSeries' own point markers are hollow rings).
        let dots = line
            .points
            .iter()
            .map(|&p| Circle::new(p, MARKER_RADIUS, style.filled()));
        let drawn = ctx.draw_series(dots).map_err(draw_error)?;
        if !line.series.label.is_empty() {
            drawn.label(&line.series.label).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (18, 0)], style)
                    + Circle::new((9, 0), MARKER_RADIUS, style.filled())
            });
        }
    }

    if lines.iter().all(|l| l.points.is_empty()) {
        let (xs, ys) = ctx.plotting_area().get_pixel_range();
        let (x0, y0) = area.get_base_pixel();
        let centre = ((xs.start + xs.end) / 2 - x0, (ys.start + ys.end) / 2 - y0);
        let style = font(14.0).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        area.draw_text("no data", &style, centre)
            .map_err(draw_error)?;
    }

    if lines.iter().any(|l| !l.series.label.is_empty()) {
        let position = legend_corner(&ctx, lines);
        ctx.configure_series_labels()
            .position(position)
            .margin(px(8.0))
            .label_font(font(13.0))
            .background_style(WHITE)
            .border_style(LEGEND_BORDER)
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

/// The inner corner of the plot whose quarter holds the fewest data points, for the legend.
fn legend_corner<DB, X>(
    ctx: &ChartContext<DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    lines: &[Line],
) -> SeriesLabelPosition
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
{
    let (xs, ys) = ctx.plotting_area().get_pixel_range();
    let pixels: Vec<(i32, i32)> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| ctx.backend_coord(p)))
        .collect();
    pick_corner(&pixels, xs, ys)
}

/// Of the four corner quarters of the pixel rectangle `xs × ys`, the one with the fewest
/// `pixels` (upper right wins ties, then upper left, lower right, lower left).
fn pick_corner(pixels: &[(i32, i32)], xs: Range<i32>, ys: Range<i32>) -> SeriesLabelPosition {
    let (mid_x, mid_y) = ((xs.start + xs.end) / 2, (ys.start + ys.end) / 2);
    let count = |right: bool, upper: bool| {
        pixels
            .iter()
            .filter(|&&(x, y)| (x >= mid_x) == right && (y < mid_y) == upper)
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, count(true, true)),
        (SeriesLabelPosition::UpperLeft, count(false, true)),
        (SeriesLabelPosition::LowerRight, count(true, false)),
        (SeriesLabelPosition::LowerLeft, count(false, false)),
    ]
    .into_iter()
    .min_by_key(|&(_, n)| n)
    .map_or(SeriesLabelPosition::UpperRight, |(p, _)| p)
}

/// The range of `values`, widened when it is empty or a single value.
fn padded_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        0.0..1.0
    } else if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo - pad..hi + pad
    } else {
        // A little headroom so markers at the extremes are not cut by the axes.
        let pad = (hi - lo) * 0.05;
        lo - pad..hi + pad
    }
}

/// Axis bounds and ticks for a log axis over the positive finite `values`: powers of two for
/// up to three decades starting at ≥ 1 (step counts), 1-2-5 steps for sub-unit ranges of up to
/// three decades (wall times), powers of ten otherwise.
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

/// Whole powers of `base` covering `[base^log_lo, base^log_hi]`, at most about eight of them.
fn powers_ticks(base: f64, log_lo: f64, log_hi: f64) -> (f64, f64, Vec<f64>) {
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

/// The 1-2-5 sequence from the largest value ≤ `lo` to the smallest ≥ `hi` (empty if none).
fn one_two_five_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (k_lo, k_hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let candidates: Vec<f64> = (k_lo.max(-300)..=k_hi.min(300))
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .collect();
    let first = candidates.iter().rposition(|&c| c <= lo * (1.0 + 1e-9));
    let last = candidates.iter().position(|&c| c >= hi * (1.0 - 1e-9));
    match (first, last) {
        (Some(first), Some(last)) if first <= last => candidates[first..=last].to_vec(),
        _ => Vec::new(),
    }
}

/// Up to four decimals without trailing zeros; scientific outside `[1e-3, 1e6)`.
fn format_general(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => s,
        };
    }
    trim_zeros(&format!("{v:.4}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

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
            [("Euler (τ=0.5)", RED, 0.0), ("midpoint", BLUE, -0.12)]
                .map(|(label, color, offset)| Series {
                    label: label.to_string(),
                    color,
                    points: xs
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| (x, quality(i, offset)))
                        .collect(),
                })
                .into()
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
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
        let decoder = png::Decoder::new(Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("valid PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        let pixels = buf.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        (info.width, info.height, pixels)
    }

    /// Pixels of the panel `panel` (of `panels`, each `width / panels` wide) that satisfy `f`.
    fn count_in_panel(
        (width, pixels): (u32, &[[u8; 3]]),
        panel: u32,
        panels: u32,
        f: impl Fn([u8; 3]) -> bool,
    ) -> usize {
        let panel_width = width / panels;
        pixels
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as u32 % width) / panel_width == panel)
            .filter(|(_, p)| f(**p))
            .count()
    }

    fn dark(p: [u8; 3]) -> bool {
        p.iter().all(|&c| c < 100)
    }

    #[test]
    fn png_has_one_panel_per_chart_on_white() {
        let (width, height, pixels) = decode(&render_png(&example_charts(), 480, 360).unwrap());
        assert_eq!((width, height), (2 * 480, 360));
        assert_eq!(pixels.len(), 960 * 360);
        assert_eq!(pixels[0], [255; 3], "background is white");
        let white = pixels.iter().filter(|p| **p == [255; 3]).count();
        assert!(white > pixels.len() / 2 && white < pixels.len(), "{white}");
    }

    #[test]
    fn each_panel_shows_both_series_colours_and_text() {
        let charts = example_charts();
        let (width, _, pixels) = decode(&render_png(&charts, 480, 360).unwrap());
        for panel in 0..2 {
            for color in [RED, BLUE] {
                let n = count_in_panel((width, &pixels), panel, 2, |p| p == color);
                assert!(n > 300, "panel {panel}: only {n} pixels of {color:?}");
            }
            // Axes, ticks and text in black.
            let n = count_in_panel((width, &pixels), panel, 2, dark);
            assert!(n > 1500, "panel {panel}: only {n} dark pixels");
        }
    }

    #[test]
    fn text_is_drawn_with_the_embedded_font() {
        let bare = |mut chart: Chart| {
            chart.title.clear();
            chart.x_label.clear();
            chart.y_label.clear();
            for s in &mut chart.series {
                s.label.clear();
            }
            chart
        };
        let labelled = example_charts().remove(0);
        let unlabelled = bare(example_charts().remove(0));
        let dark_pixels = |chart: Chart| {
            let (width, _, pixels) = decode(&render_png(&[chart], 480, 360).unwrap());
            count_in_panel((width, &pixels), 0, 1, dark)
        };
        let (with, without) = (dark_pixels(labelled), dark_pixels(unlabelled));
        // Title, two axis names and two legend entries: several hundred pixels of glyphs.
        assert!(with > without + 400, "{with} vs {without} dark pixels");
    }

    #[test]
    fn legend_goes_to_the_emptiest_corner() {
        let (xs, ys) = (0..100, 0..100);
        // Data rising from lower left to upper right leaves the upper left free.
        let rising = [(5, 95), (30, 70), (60, 40), (95, 5), (80, 10)];
        assert_eq!(
            pick_corner(&rising, xs.clone(), ys.clone()),
            SeriesLabelPosition::UpperLeft
        );
        let falling = [(5, 5), (30, 30), (70, 70), (90, 95), (20, 10)];
        assert_eq!(
            pick_corner(&falling, xs.clone(), ys.clone()),
            SeriesLabelPosition::UpperRight
        );
        let top = [(5, 5), (95, 5)];
        assert_eq!(pick_corner(&top, xs, ys), SeriesLabelPosition::LowerRight);
    }

    #[test]
    fn bad_input_gives_errors_or_empty_axes_not_panics() {
        assert!(matches!(
            render_png(&[], 300, 200),
            Err(FigureError::NoCharts)
        ));
        for (w, h) in [(0, 200), (300, 0), (100, 200), (5000, 200)] {
            let err = render_png(&example_charts(), w, h).unwrap_err();
            assert!(matches!(err, FigureError::Size { .. }), "{w}×{h}: {err}");
            assert!(err.to_string().contains("px"), "{err}");
        }
        let six: Vec<Chart> = (0..3).flat_map(|_| example_charts()).collect();
        assert!(matches!(
            render_png(&six, 4096, 200),
            Err(FigureError::Size { .. })
        ));

        // Nothing usable: NaN, infinite, and negative x on a log axis. Empty axes, no colour.
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
        let (w, h, pixels) = decode(&render_png(&[nan_chart], 300, 200).unwrap());
        assert_eq!((w, h), (300, 200));
        let red = pixels.iter().filter(|p| **p == RED).count();
        assert!(
            red < 100,
            "{red} red pixels: only the legend swatch may be red"
        );

        let empty = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_log: false,
            series: Vec::new(),
        };
        decode(&render_png(&[empty], 200, 150).unwrap());

        // Values too far apart for any axis: a clear error.
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
        let err = render_png(&[extreme], 300, 200).unwrap_err();
        assert!(err.to_string().contains("too wide"), "{err}");

        // Extreme but finite spans on a log axis, and single points.
        let tiny_values = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_log: true,
            series: vec![
                Series {
                    label: String::new(),
                    color: RED,
                    points: vec![(5e-324, 1e-300), (1e308, 1e-300)],
                },
                Series {
                    label: "one".to_string(),
                    color: BLUE,
                    points: vec![(3.0, 3.0)],
                },
            ],
        };
        decode(&render_png(&[tiny_values], 200, 150).unwrap());
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

        // One step count still gets a range around it.
        let (lo, hi, _) = log_ticks([4.0].into_iter());
        assert!(lo < 4.0 && hi > 4.0, "{lo}..{hi}");
        assert_eq!(format_general(2.5e7), "2.5e7");
    }

    /// Writes a sample figure for eyeballing:
    /// `cargo test --release --lib eval::figure -- --ignored`.
    #[test]
    #[ignore]
    fn write_example_png() {
        let path = std::env::temp_dir().join("flm-eval-figure.png");
        std::fs::write(&path, render_png(&example_charts(), 560, 400).unwrap())
            .expect("write example");
        let mut empty = example_charts();
        for s in &mut empty[1].series {
            s.points.iter_mut().for_each(|p| p.1 = f64::NAN);
        }
        let path = std::env::temp_dir().join("flm-eval-figure-no-data.png");
        std::fs::write(&path, render_png(&empty, 280, 200).unwrap()).expect("write example");
    }
}
