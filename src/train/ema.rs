//! Exponential moving average of the weights (DESIGN §4); sampling and evaluation use it.

use burn::module::Module;

use super::params::{flat_params, map_params};
use crate::model::Dit;

/// The decay used at `step`: ramps up as `(1+t)/(10+t)` so short runs are not dominated by
/// their random initial weights, and never exceeds `max_decay`.
pub fn decay_at(step: u64, max_decay: f64) -> f64 {
    let warm = (1.0 + step as f64) / (10.0 + step as f64);
    warm.min(max_decay)
}

/// Blends `online` into `average` in place: `avg ← d·avg + (1−d)·online`.
pub fn update(average: Dit, online: &Dit, decay: f64) -> Dit {
    let mut current = flat_params(online);
    map_params(average, &mut |path, _, value| match current.remove(path) {
        Some(online) => value * decay + online * (1.0 - decay),
        None => value,
    })
}

/// A gradient-free copy of the online model on the base device, to start the average from.
pub fn snapshot(online: &Dit) -> Dit {
    online.valid()
}
