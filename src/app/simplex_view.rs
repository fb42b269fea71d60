//! One position's path on the probability simplex: a triangle whose corners are the three
//! tokens that position most likely ends as, and a point per step at the denoiser's
//! probabilities of those three (renormalized), joined in order. An FLM's Euler steps draw a
//! curve; an FMLM's few jumps draw straight segments. What the three corners leave out is shown
//! beside it as "other tokens", so the projection never hides mass.

use eframe::egui::{self, Align2, Color32, FontId, Pos2, Sense, Shape, Stroke, Vec2};

use super::trajectory_widgets::display_token;
use crate::flow::Trajectory;

/// Paths of at most this many steps get a dot at every step.
const MAX_DOTTED_STEPS: usize = 16;

/// One model's path for the chosen position.
pub struct SimplexPath {
    pub label: String,
    pub color: Color32,
    /// Per step: probabilities of the three corners, then of everything else.
    pub points: Vec<[f32; 4]>,
    /// The step the slider shows.
    pub current: usize,
}

/// The three tokens `position` of `sample` most likely holds at the last step.
pub fn corners(trajectory: &Trajectory, sample: usize, position: usize) -> Option<[u32; 3]> {
    let frame = trajectory.samples.get(sample)?.frames.last()?;
    let k = trajectory.top_k;
    if k < 3 {
        return None;
    }
    let ids = frame.top_ids.get(position * k..position * k + 3)?;
    Some([ids[0], ids[1], ids[2]])
}

/// The corners' probabilities at every step (0 where a corner is outside that step's
/// recorded top-k), and the mass left for all other tokens.
pub fn path(
    trajectory: &Trajectory,
    sample: usize,
    position: usize,
    corners: [u32; 3],
) -> Vec<[f32; 4]> {
    let k = trajectory.top_k;
    let Some(recorded) = trajectory.samples.get(sample) else {
        return Vec::new();
    };
    recorded
        .frames
        .iter()
        .filter_map(|frame| {
            let ids = frame.top_ids.get(position * k..(position + 1) * k)?;
            let probs = frame.top_probs.get(position * k..(position + 1) * k)?;
            let p = corners.map(|corner| {
                ids.iter()
                    .position(|&id| id == corner)
                    .map_or(0.0, |rank| probs[rank].max(0.0))
            });
            let rest = (1.0 - p.iter().sum::<f32>()).max(0.0);
            Some([p[0], p[1], p[2], rest])
        })
        .collect()
}

/// Where probabilities `p` (of corners `a`, `b`, `c`) sit in the triangle: their barycentric
/// point after renormalizing; the centre when all three are ~0.
pub fn project(p: [f32; 4], [a, b, c]: [Pos2; 3]) -> Pos2 {
    let sum = p[0] + p[1] + p[2];
    if sum <= 1e-6 {
        return Pos2::new((a.x + b.x + c.x) / 3.0, (a.y + b.y + c.y) / 3.0);
    }
    let w = [p[0] / sum, p[1] / sum, p[2] / sum];
    Pos2::new(
        w[0] * a.x + w[1] * b.x + w[2] * c.x,
        w[0] * a.y + w[1] * b.y + w[2] * c.y,
    )
}

/// Draws the triangle with its corner tokens and every path, and the current step's "other
/// tokens" mass per path.
pub fn simplex_view(ui: &mut egui::Ui, corner_texts: [&str; 3], paths: &[SimplexPath]) {
    let side = 230.0_f32;
    let height = side * 0.866;
    let (rect, response) =
        ui.allocate_exact_size(Vec2::new(side + 80.0, height + 44.0), Sense::hover());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            "simplex path of the chosen position",
        )
    });
    let painter = ui.painter_at(rect);
    let top = Pos2::new(rect.center().x, rect.top() + 20.0);
    let vertices = [
        top,
        Pos2::new(top.x - side / 2.0, top.y + height),
        Pos2::new(top.x + side / 2.0, top.y + height),
    ];
    let edge = Stroke::new(1.0, ui.visuals().weak_text_color());
    painter.add(Shape::closed_line(vertices.to_vec(), edge));
    let font = FontId::monospace(13.0);
    let text_color = ui.visuals().strong_text_color();
    let anchors = [Align2::CENTER_BOTTOM, Align2::RIGHT_TOP, Align2::LEFT_TOP];
    let offsets = [
        Vec2::new(0.0, -3.0),
        Vec2::new(-4.0, 3.0),
        Vec2::new(4.0, 3.0),
    ];
    for ((vertex, text), (anchor, offset)) in vertices
        .iter()
        .zip(corner_texts)
        .zip(anchors.iter().zip(offsets))
    {
        painter.text(
            *vertex + offset,
            *anchor,
            format!("{:?}", display_token(text)),
            font.clone(),
            text_color,
        );
    }
    for path in paths {
        let points: Vec<Pos2> = path.points.iter().map(|&p| project(p, vertices)).collect();
        let stroke = Stroke::new(1.5, path.color);
        // A dot per step marks a flow map's few jumps; many Euler steps already read as a
        // curve, and their dots would cost frame time for nothing.
        if points.len() <= MAX_DOTTED_STEPS {
            for point in &points {
                painter.circle_filled(*point, 2.0, path.color);
            }
        }
        painter.add(Shape::line(points.clone(), stroke));
        if let Some(point) = points.get(path.current) {
            painter.circle(*point, 5.5, path.color, Stroke::new(1.5, text_color));
        }
    }
    ui.vertical(|ui| {
        for path in paths {
            let rest = path.points.get(path.current).map_or(0.0, |p| p[3]);
            ui.colored_label(
                path.color,
                format!("{}: other tokens {:.0}%", path.label, rest * 100.0),
            );
        }
        ui.weak(
            "Corners: the 3 tokens this position most likely ends as. The line: the model's \
             probabilities of those 3 at each step, renormalized (a dot per step up to 16 \
             steps); the ring is the current step.",
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::trajectory::{Frame, SampleTrajectory};

    fn trajectory() -> Trajectory {
        // One position, top-4: the last step is sure of token 7; the first spreads its mass.
        let frame = |ids: [u32; 4], probs: [f32; 4]| Frame {
            argmax: vec![ids[0]],
            max_prob: vec![probs[0]],
            entropy: vec![1.0],
            flipped: vec![false],
            top_ids: ids.to_vec(),
            top_probs: probs.to_vec(),
        };
        Trajectory {
            sampler: "euler".into(),
            steps: 2,
            seed: 0,
            eta: 0.0,
            seq_len: 1,
            vocab_size: 10,
            top_k: 4,
            fixed: Vec::new(),
            taus: vec![0.0, 0.5],
            gammas: vec![0.0, 0.5],
            samples: vec![SampleTrajectory {
                frames: vec![
                    frame([3, 7, 5, 1], [0.3, 0.2, 0.1, 0.1]),
                    frame([7, 3, 1, 5], [0.9, 0.05, 0.03, 0.01]),
                ],
                tokens: vec![7],
            }],
        }
    }

    #[test]
    fn corners_are_the_last_step_s_top_three_and_the_rest_is_kept() {
        let t = trajectory();
        let corners = corners(&t, 0, 0).unwrap();
        assert_eq!(corners, [7, 3, 1]);
        let points = path(&t, 0, 0, corners);
        // Step 0: token 1 is ranked 4th (0.1); the mass outside the three is 1 − 0.6.
        assert_eq!(points[0][..3], [0.2, 0.3, 0.1]);
        assert!((points[0][3] - 0.4).abs() < 1e-6);
        assert!((points[1][0] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn a_sure_token_sits_on_its_corner_and_nothing_at_the_centre() {
        let v = [
            Pos2::new(0.0, 0.0),
            Pos2::new(-1.0, 2.0),
            Pos2::new(1.0, 2.0),
        ];
        assert_eq!(project([1.0, 0.0, 0.0, 0.0], v), v[0]);
        assert_eq!(project([0.0, 0.0, 0.5, 0.5], v), v[2]);
        let centre = project([0.0, 0.0, 0.0, 1.0], v);
        assert!((centre.y - 4.0 / 3.0).abs() < 1e-6 && centre.x.abs() < 1e-6);
    }

    #[test]
    fn fewer_than_three_candidates_have_no_triangle() {
        let mut t = trajectory();
        t.top_k = 2;
        assert!(corners(&t, 0, 0).is_none());
        assert!(corners(&trajectory(), 3, 0).is_none());
    }
}
