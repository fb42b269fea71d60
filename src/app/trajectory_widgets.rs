//! Widgets that draw one recorded denoising step: the text coloured by confidence, the
//! per-position simplex bars, the positions × steps heatmap. They only read a [`Frame`];
//! everything they show was recorded by the sampler, so scrubbing never computes.

use eframe::egui::text::{LayoutJob, TextFormat};
use eframe::egui::{self, Color32, Galley, Pos2, Rect, Sense, Stroke, Vec2};

use super::style;
use crate::flow::{Frame, Trajectory};

/// How a token looks in text: newlines and tabs made visible (with glyphs every bundled font
/// has), so every position shows something.
pub fn display_token(text: &str) -> String {
    if text.is_empty() {
        return "''".into();
    }
    text.replace('\n', "¶").replace('\t', "\\t")
}

/// The candidates of one position at this step, for tooltips.
pub fn candidates(
    ui: &mut egui::Ui,
    frame: &Frame,
    position: usize,
    top_k: usize,
    vocab: &[String],
) {
    ui.strong(format!(
        "position {position} · entropy {:.2} nats{}",
        frame.entropy[position],
        if frame.flipped[position] {
            " · changed at this step"
        } else {
            ""
        }
    ));
    egui::Grid::new("candidates").num_columns(3).show(ui, |ui| {
        for rank in 0..top_k {
            let id = frame.top_ids[position * top_k + rank] as usize;
            let p = frame.top_probs[position * top_k + rank];
            let text = vocab.get(id).map_or("?", String::as_str);
            ui.monospace(format!("{:?}", display_token(text)));
            let (rect, _) = ui.allocate_exact_size(Vec2::new(80.0, 10.0), Sense::hover());
            ui.painter().rect_filled(
                Rect::from_min_size(rect.min, Vec2::new(80.0 * p.clamp(0.0, 1.0), 10.0)),
                1.0,
                style::RANK_COLORS[rank % style::RANK_COLORS.len()],
            );
            ui.monospace(format!("{p:.3}"));
            ui.end_row();
        }
    });
}

/// The sample's text at this step: every position's most likely token, faded by its
/// probability, highlighted where the argmax just changed; hover shows the candidates, and a
/// click returns the position (for the simplex view).
/// Positions the person fixed (`fixed[i] = Some(token)`, empty when none) show their token at
/// full strength on a teal box at every step: the state there is that token's forward process,
/// whatever the network would have made of it (the tooltip still shows the network's view).
/// `decoded`, given at the last step, is the sample's final tokens: with drawn tokens they
/// differ from the most likely ones, and the strip must end on the text the sample became.
///
/// One galley for the whole text rather than a label per token: scrubbing redraws it every
/// frame, and a hundred widgets a block cost more than the layout.
pub fn token_text(
    ui: &mut egui::Ui,
    frame: &Frame,
    top_k: usize,
    vocab: &[String],
    fixed: &[Option<u32>],
    decoded: Option<&[u32]>,
) -> Option<usize> {
    let flip_fill = Color32::from_rgba_unmultiplied(0xf5, 0xa6, 0x23, 70);
    let font = egui::FontId::monospace(15.0);
    let line_height = ui.fonts_mut(|fonts| fonts.row_height(&font)) + 2.0;
    let mut job = LayoutJob::default();
    job.wrap.max_width = ui.available_width();
    // The character offset where each position's token starts.
    let mut starts = Vec::with_capacity(frame.argmax.len());
    let mut chars = 0;
    for (position, &id) in frame.argmax.iter().enumerate() {
        let pinned = fixed.get(position).copied().flatten();
        let final_token = decoded.and_then(|tokens| tokens.get(position).copied());
        let id = pinned.or(final_token).unwrap_or(id);
        let token = display_token(vocab.get(id as usize).map_or("?", String::as_str));
        starts.push(chars);
        chars += token.chars().count();
        let (color, background) = match pinned {
            Some(_) => (ui.visuals().strong_text_color(), style::fixed_fill()),
            None if frame.flipped[position] => (
                style::confidence_color(ui, frame.max_prob[position]),
                flip_fill,
            ),
            None => (
                style::confidence_color(ui, frame.max_prob[position]),
                Color32::TRANSPARENT,
            ),
        };
        let format = TextFormat {
            font_id: font.clone(),
            line_height: Some(line_height),
            color,
            background,
            ..Default::default()
        };
        job.append(&token, 0.0, format);
    }
    let galley = ui.painter().layout_job(job);
    let (rect, response) = ui.allocate_exact_size(galley.size(), Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, galley.text()));
    ui.painter()
        .galley(rect.min, galley.clone(), ui.visuals().text_color());
    let hovered = response
        .hover_pos()
        .and_then(|pointer| char_under(&galley, pointer - rect.min))
        .map(|index| starts.partition_point(|&start| start <= index) - 1);
    let clicked = hovered.filter(|_| response.clicked());
    if let Some(position) = hovered {
        response.on_hover_ui_at_pointer(|ui| candidates(ui, frame, position, top_k, vocab));
    }
    clicked
}

/// The character whose glyph lies under `pos` (relative to the galley), if any.
fn char_under(galley: &Galley, pos: Vec2) -> Option<usize> {
    let mut first = 0;
    for placed in &galley.rows {
        let row_rect = placed.rect();
        if (row_rect.min.y..row_rect.max.y).contains(&pos.y) {
            let x = pos.x - placed.pos.x;
            return placed
                .row
                .glyphs
                .iter()
                .position(|glyph| (glyph.pos.x..glyph.pos.x + glyph.advance_width).contains(&x))
                .map(|i| first + i);
        }
        first += placed.char_count_including_newline().0;
    }
    None
}

/// One stacked bar per position: its top-k probabilities from the bottom up (most likely
/// first), the rest of the simplex mass in grey on top. The point on the simplex, per token.
///
/// The segments are one mesh of plain quads: they are axis-aligned and need no anti-aliased
/// edges, and at 128 positions × 9 segments the triangle count shows on a software rasteriser.
pub fn simplex_bars(ui: &mut egui::Ui, frame: &Frame, top_k: usize, vocab: &[String], height: f32) {
    let positions = frame.argmax.len().max(1);
    let width = ui.available_width();
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let painter = ui.painter_at(rect);
    let column = rect.width() / positions as f32;
    let gap = if column > 4.0 { 1.0 } else { 0.0 };
    let rest = ui.visuals().weak_text_color().gamma_multiply(0.35);
    let mut mesh = egui::Mesh::default();
    let mut segment = |left: f32, bottom: f32, h: f32, color: Color32| {
        // Below half a pixel a segment would not show.
        if h >= 0.5 {
            let min = Pos2::new(left, bottom - h);
            let max = Pos2::new(left + column - gap, bottom);
            mesh.add_colored_rect(Rect::from_min_max(min, max), color);
        }
    };
    for position in 0..frame.argmax.len() {
        let left = rect.left() + position as f32 * column;
        let mut bottom = rect.bottom();
        let mut used = 0.0;
        for rank in 0..top_k {
            let p = frame.top_probs[position * top_k + rank].clamp(0.0, 1.0);
            let h = p * rect.height();
            segment(
                left,
                bottom,
                h,
                style::RANK_COLORS[rank % style::RANK_COLORS.len()],
            );
            bottom -= h;
            used += p;
        }
        segment(left, bottom, (1.0 - used).max(0.0) * rect.height(), rest);
    }
    painter.add(mesh);
    if let Some(pointer) = response.hover_pos() {
        let position = (((pointer.x - rect.left()) / column) as usize).min(positions - 1);
        let x = rect.left() + (position as f32 + 0.5) * column;
        painter.line_segment(
            [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
            Stroke::new(1.0, ui.visuals().strong_text_color()),
        );
        response.on_hover_ui_at_pointer(|ui| candidates(ui, frame, position, top_k, vocab));
    }
}

/// Which per-position measure the heatmap shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeatMetric {
    /// Entropy of the denoiser's distribution, relative to the uniform one's.
    Entropy,
    /// 1 − the top probability.
    Doubt,
}

impl HeatMetric {
    pub fn label(self) -> &'static str {
        match self {
            HeatMetric::Entropy => "entropy",
            HeatMetric::Doubt => "1 − max probability",
        }
    }
}

/// The heatmap image of one sample: x = step, y = position, bright = uncertain.
pub fn heat_image(trajectory: &Trajectory, sample: usize, metric: HeatMetric) -> egui::ColorImage {
    let frames = &trajectory.samples[sample].frames;
    let (steps, positions) = (frames.len(), trajectory.seq_len);
    let max_entropy = (trajectory.vocab_size.max(2) as f32).ln();
    let mut pixels = vec![Color32::BLACK; steps * positions];
    for (step, frame) in frames.iter().enumerate() {
        for position in 0..positions {
            let value = match metric {
                HeatMetric::Entropy => frame.entropy[position] / max_entropy,
                HeatMetric::Doubt => 1.0 - frame.max_prob[position],
            };
            pixels[position * steps + step] = style::heat(value);
        }
    }
    egui::ColorImage::new([steps, positions], pixels)
}

/// Width of the strip left of the heatmap that marks the fixed positions' rows.
const FIXED_STRIP: f32 = 5.0;

/// Draws the heatmap with the current step marked; clicking or dragging picks a step. The
/// rows of fixed positions (`fixed`, empty when none) are marked by a teal tick on the left.
pub fn heatmap(
    ui: &mut egui::Ui,
    texture: &egui::TextureHandle,
    steps: usize,
    current: usize,
    size: Vec2,
    fixed: &[Option<u32>],
) -> Option<usize> {
    let (outer, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    let painter = ui.painter_at(outer);
    let strip = if fixed.iter().any(Option::is_some) {
        FIXED_STRIP + 1.0
    } else {
        0.0
    };
    let rect = Rect::from_min_max(Pos2::new(outer.left() + strip, outer.top()), outer.max);
    let row = rect.height() / fixed.len().max(1) as f32;
    for (position, _) in fixed.iter().enumerate().filter(|(_, f)| f.is_some()) {
        let top = rect.top() + position as f32 * row;
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(outer.left(), top),
                Vec2::new(FIXED_STRIP, row.max(1.0)),
            ),
            0.0,
            style::FIXED,
        );
    }
    painter.image(
        texture.id(),
        rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    let column = rect.width() / steps.max(1) as f32;
    let x = rect.left() + (current as f32 + 0.5) * column;
    painter.line_segment(
        [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
        Stroke::new(2.0, Color32::WHITE),
    );
    let picked = response
        .interact_pointer_pos()
        .filter(|_| response.clicked() || response.dragged())
        .map(|pointer| {
            (((pointer.x - rect.left()) / column).max(0.0) as usize).min(steps.saturating_sub(1))
        });
    response.on_hover_text(if strip > 0.0 {
        "positions (rows) × steps (columns), fixed positions ticked on the left; click or drag to pick a step"
    } else {
        "positions (rows) × steps (columns); click or drag to pick a step"
    });
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays `text` out in monospace, wrapped at `width` points.
    fn galley(text: &str, width: f32) -> std::sync::Arc<Galley> {
        let ctx = egui::Context::default();
        let mut laid_out = None;
        let mut output = ctx.run_ui(egui::RawInput::default(), |ui| {
            let job = LayoutJob::simple(
                text.into(),
                egui::FontId::monospace(15.0),
                Color32::WHITE,
                width,
            );
            laid_out = Some(ui.painter().layout_job(job));
        });
        // No renderer here to take the font atlas.
        output.textures_delta.clear();
        laid_out.expect("the frame ran")
    }

    #[test]
    fn char_under_finds_every_glyph_across_wrapped_rows() {
        // Wrapped at spaces, as prose is.
        let text = "abc def ghi jkl mno pqr stu vwx yz";
        let galley = galley(text, 80.0);
        assert!(galley.rows.len() > 2, "the text should wrap");
        let mut seen = Vec::new();
        for placed in &galley.rows {
            for glyph in &placed.row.glyphs {
                let center =
                    placed.pos + glyph.pos.to_vec2() + Vec2::new(glyph.advance_width / 2.0, 0.0);
                let y = placed.rect().center().y;
                let index = char_under(&galley, Vec2::new(center.x, y)).expect("a glyph");
                assert_eq!(text.chars().nth(index), Some(glyph.chr));
                seen.push(index);
            }
        }
        assert_eq!(seen, (0..text.len()).collect::<Vec<_>>());
    }

    #[test]
    fn char_under_is_none_off_the_text() {
        let galley = galley("abc", 500.0);
        assert_eq!(char_under(&galley, Vec2::new(-5.0, 5.0)), None);
        assert_eq!(char_under(&galley, Vec2::new(400.0, 5.0)), None);
        assert_eq!(
            char_under(&galley, Vec2::new(5.0, galley.size().y + 10.0)),
            None
        );
    }
}
