//! Widgets that draw one recorded denoising step: the text coloured by confidence, the
//! per-position simplex bars, the positions × steps heatmap. They only read a [`Frame`];
//! everything they show was recorded by the sampler, so scrubbing never computes.

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Vec2};

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
/// probability, highlighted where the argmax just changed; hover shows the candidates.
pub fn token_text(ui: &mut egui::Ui, frame: &Frame, top_k: usize, vocab: &[String]) {
    let flip_fill = Color32::from_rgba_unmultiplied(0xf5, 0xa6, 0x23, 70);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = Vec2::new(0.0, 2.0);
        for (position, &id) in frame.argmax.iter().enumerate() {
            let text = vocab.get(id as usize).map_or("?", String::as_str);
            let mut rich = egui::RichText::new(display_token(text))
                .monospace()
                .size(15.0)
                .color(style::confidence_color(ui, frame.max_prob[position]));
            if frame.flipped[position] {
                rich = rich.background_color(flip_fill);
            }
            ui.add(egui::Label::new(rich).sense(Sense::hover()))
                .on_hover_ui(|ui| candidates(ui, frame, position, top_k, vocab));
        }
    });
}

/// One stacked bar per position: its top-k probabilities from the bottom up (most likely
/// first), the rest of the simplex mass in grey on top. The point on the simplex, per token.
pub fn simplex_bars(ui: &mut egui::Ui, frame: &Frame, top_k: usize, vocab: &[String], height: f32) {
    let positions = frame.argmax.len().max(1);
    let width = ui.available_width();
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, height), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let column = rect.width() / positions as f32;
    let gap = if column > 4.0 { 1.0 } else { 0.0 };
    let rest = ui.visuals().weak_text_color().gamma_multiply(0.35);
    for position in 0..frame.argmax.len() {
        let left = rect.left() + position as f32 * column;
        let mut bottom = rect.bottom();
        let mut used = 0.0;
        for rank in 0..top_k {
            let p = frame.top_probs[position * top_k + rank].clamp(0.0, 1.0);
            let h = p * rect.height();
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(left, bottom - h),
                    Pos2::new(left + column - gap, bottom),
                ),
                0.0,
                style::RANK_COLORS[rank % style::RANK_COLORS.len()],
            );
            bottom -= h;
            used += p;
        }
        let remaining = (1.0 - used).max(0.0) * rect.height();
        painter.rect_filled(
            Rect::from_min_max(
                Pos2::new(left, bottom - remaining),
                Pos2::new(left + column - gap, bottom),
            ),
            0.0,
            rest,
        );
    }
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

/// Draws the heatmap with the current step marked; clicking or dragging picks a step.
pub fn heatmap(
    ui: &mut egui::Ui,
    texture: &egui::TextureHandle,
    steps: usize,
    current: usize,
    size: Vec2,
) -> Option<usize> {
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    let painter = ui.painter_at(rect);
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
    response.on_hover_text("positions (rows) × steps (columns); click or drag to pick a step");
    picked
}
