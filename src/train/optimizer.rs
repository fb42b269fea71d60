//! AdamW with a global gradient-norm clip (DESIGN §4). Written here rather than taken from
//! burn-optim because exact resume needs the moments saved by parameter path, and the clip must
//! be over the norm of all gradients together, not per tensor.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::params::map_params;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables it).
    pub grad_clip: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
        }
    }
}

struct Moments {
    first: Tensor<1>,
    second: Tensor<1>,
}

/// AdamW state: the step count and the two moments of every parameter, by path.
pub struct AdamW {
    settings: AdamWSettings,
    moments: HashMap<String, Moments>,
    steps_taken: u64,
}

impl AdamW {
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            moments: HashMap::new(),
            steps_taken: 0,
        }
    }

    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
    }

    /// One update; returns the model and the gradient norm before clipping.
    pub fn step<M: Module>(&mut self, model: M, grads: GradientsParams, lr: f64) -> (M, f64) {
        let mut grads = flat_grads(&model, &grads);
        let grad_norm = global_norm(grads.values());
        let clip = self.settings.grad_clip;
        let scale = if clip > 0.0 && grad_norm > clip {
            clip / (grad_norm + 1e-6)
        } else {
            1.0
        };
        self.steps_taken += 1;
        let t = self.steps_taken as i32;
        let AdamWSettings {
            beta1,
            beta2,
            epsilon,
            weight_decay,
            ..
        } = self.settings;
        let first_correction = 1.0 - beta1.powi(t);
        let second_correction = 1.0 - beta2.powi(t);
        let moments = &mut self.moments;
        let mut update = |path: &str, id, value: Tensor<1>| {
            let Some(grad) = grads.remove(&id) else {
                return value;
            };
            let grad = grad * scale;
            let (first, second) = match moments.remove(path) {
                Some(m) => (
                    m.first * beta1 + grad.clone() * (1.0 - beta1),
                    m.second * beta2 + grad.square() * (1.0 - beta2),
                ),
                None => (grad.clone() * (1.0 - beta1), grad.square() * (1.0 - beta2)),
            };
            let step = (first.clone() / first_correction)
                / ((second.clone() / second_correction).sqrt() + epsilon);
            moments.insert(path.to_string(), Moments { first, second });
            let decayed = if weight_decay > 0.0 {
                value.clone() * (1.0 - lr * weight_decay)
            } else {
                value
            };
            decayed - step * lr
        };
        (map_params(model, &mut update), grad_norm)
    }

    /// Checks restored moments against the model's parameters (path → number of values), so a
    /// foreign or stale optimizer file is reported instead of failing mid-step.
    pub fn check_matches(&self, params: &HashMap<String, usize>) -> Result<(), String> {
        for (path, moments) in &self.moments {
            let expected = params
                .get(path)
                .ok_or_else(|| format!("optimizer state for unknown parameter `{path}`"))?;
            let found = moments.first.shape().num_elements();
            if found != *expected {
                return Err(format!(
                    "optimizer state for `{path}` has {found} values, the parameter has {expected}"
                ));
            }
        }
        Ok(())
    }

    /// Moments as named f32 arrays, plus the step count, for the checkpoint.
    pub fn export(&self) -> (u64, Vec<(String, Vec<f32>)>) {
        let mut tensors = Vec::with_capacity(self.moments.len() * 2);
        for (path, m) in &self.moments {
            tensors.push((format!("{path}.first"), to_vec(&m.first)));
            tensors.push((format!("{path}.second"), to_vec(&m.second)));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        (self.steps_taken, tensors)
    }

    /// Rebuilds the state saved by [`AdamW::export`].
    pub fn import(
        settings: AdamWSettings,
        steps_taken: u64,
        tensors: Vec<(String, Vec<f32>)>,
        device: &Device,
    ) -> Result<Self, String> {
        let mut firsts = HashMap::new();
        let mut seconds = HashMap::new();
        for (name, values) in tensors {
            let len = values.len();
            let tensor = Tensor::<1>::from_data(TensorData::new(values, [len]), device);
            if let Some(path) = name.strip_suffix(".first") {
                firsts.insert(path.to_string(), tensor);
            } else if let Some(path) = name.strip_suffix(".second") {
                seconds.insert(path.to_string(), tensor);
            } else {
                return Err(format!("unexpected optimizer tensor `{name}`"));
            }
        }
        let mut moments = HashMap::new();
        for (path, first) in firsts {
            let second = seconds
                .remove(&path)
                .ok_or_else(|| format!("optimizer state lacks the second moment of `{path}`"))?;
            moments.insert(path, Moments { first, second });
        }
        if let Some(path) = seconds.keys().next() {
            return Err(format!(
                "optimizer state lacks the first moment of `{path}`"
            ));
        }
        Ok(Self {
            settings,
            moments,
            steps_taken,
        })
    }
}

/// Every gradient flattened to 1-D, keyed by parameter id (ranks differ per parameter).
fn flat_grads<M: Module>(model: &M, grads: &GradientsParams) -> HashMap<ParamId, Tensor<1>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: HashMap<ParamId, Tensor<1>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let count = grad.shape().num_elements();
                self.out.insert(param.id, grad.inner().reshape([count]));
            }
        }
    }
    let mut collect = Collect {
        grads,
        out: HashMap::new(),
    };
    model.visit(&mut collect);
    collect.out
}

/// √(Σ‖g‖²) over all gradients: one device read per step.
fn global_norm<'a>(grads: impl Iterator<Item = &'a Tensor<1>>) -> f64 {
    grads
        .map(|g| g.clone().square().sum())
        .reduce(|a, b| a + b)
        .map(|total| (total.into_scalar::<f32>() as f64).sqrt())
        .unwrap_or(0.0)
}

fn to_vec(tensor: &Tensor<1>) -> Vec<f32> {
    tensor
        .to_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("float tensor")
}
