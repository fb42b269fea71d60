//! Colours and theme: one place, so every view agrees on what "confident" or "error" looks like.

use std::time::Duration;

use eframe::egui::{self, Color32, Sense, Stroke, Vec2};

pub const ERROR_TEXT: Color32 = Color32::from_rgb(0xff, 0x6b, 0x6b);

/// Curve colours: training loss, validation loss.
pub const TRAIN_CURVE: Color32 = Color32::from_rgb(0x4e, 0x9a, 0xf1);
pub const VALID_CURVE: Color32 = Color32::from_rgb(0xf5, 0xa6, 0x23);

/// Stacked-bar colours by rank: the most likely candidate first.
pub const RANK_COLORS: [Color32; 8] = [
    Color32::from_rgb(0x4e, 0x9a, 0xf1),
    Color32::from_rgb(0xf5, 0xa6, 0x23),
    Color32::from_rgb(0x50, 0xc8, 0x78),
    Color32::from_rgb(0xe0, 0x5d, 0x8c),
    Color32::from_rgb(0x9b, 0x7b, 0xe6),
    Color32::from_rgb(0x3c, 0xc8, 0xc8),
    Color32::from_rgb(0xc8, 0xb4, 0x46),
    Color32::from_rgb(0xa0, 0x78, 0x5a),
];

/// Tokens the person fixed (prompt or template): a teal box behind them in the text, a teal
/// tick beside their rows in the heatmap.
pub const FIXED: Color32 = Color32::from_rgb(0x2f, 0xb8, 0xa8);

/// The fill behind a fixed token in the text.
pub fn fixed_fill() -> Color32 {
    Color32::from_rgba_unmultiplied(0x2f, 0xb8, 0xa8, 80)
}

pub fn apply(ctx: &egui::Context, dark: bool) {
    ctx.set_theme(if dark {
        egui::Theme::Dark
    } else {
        egui::Theme::Light
    });
}

pub fn error_fill(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(0x4a, 0x1c, 0x1c)
    } else {
        Color32::from_rgb(0xfd, 0xe2, 0xe2)
    }
}

/// A token's text colour: faint when the model is unsure, full strength when certain.
pub fn confidence_color(ui: &egui::Ui, probability: f32) -> Color32 {
    let strong = ui.visuals().strong_text_color();
    let alpha = 0.25 + 0.75 * probability.clamp(0.0, 1.0);
    strong.gamma_multiply(alpha)
}

/// Heatmap colour of a value in [0, 1] (0 = certain/dark, 1 = uncertain/bright), a
/// blue-to-yellow ramp that reads in both themes.
pub fn heat(value: f32) -> Color32 {
    let v = value.clamp(0.0, 1.0);
    let lerp = |a: f32, b: f32| (a + (b - a) * v) as u8;
    Color32::from_rgb(lerp(20.0, 250.0), lerp(30.0, 220.0), lerp(90.0, 60.0))
}

/// A small rotating arc for "working…". Unlike egui's spinner it asks for a redraw only ten
/// times a second: on a software renderer every frame costs CPU the running job needs.
pub fn busy(ui: &mut egui::Ui) {
    let size = ui.spacing().interact_size.y;
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(size), Sense::hover());
    let time = ui.input(|i| i.time) as f32;
    let radius = size * 0.35;
    let start = time * 4.0;
    let points: Vec<egui::Pos2> = (0..=12)
        .map(|i| {
            let angle = start + i as f32 / 12.0 * std::f32::consts::PI * 1.5;
            rect.center() + radius * Vec2::angled(angle)
        })
        .collect();
    ui.painter().add(egui::Shape::line(
        points,
        Stroke::new(2.0, ui.visuals().strong_text_color()),
    ));
    ui.ctx().request_repaint_after(Duration::from_millis(100));
}
