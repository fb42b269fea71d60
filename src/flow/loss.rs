//! Losses (DESIGN §4): the denoiser is trained to predict the clean token by cross-entropy.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy over all B·L tokens: logits (B, L, V), targets (B, L) (one fused pass
/// on the CPU, `kernels::fused`).
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    crate::kernels::fused::cross_entropy(logits, targets)
}

/// Mean soft-label cross-entropy `−Σ_v target_v·log softmax(logits)_v`, for distillation
/// targets that are distributions rather than tokens.
pub fn soft_cross_entropy(logits: Tensor<3>, targets: Tensor<3>) -> Tensor<1> {
    let log_probs = log_softmax(logits, 2);
    let [batch, len, _] = targets.dims();
    (targets * log_probs).sum().neg() / (batch * len) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn uniform_logits_cost_log_vocab() {
        let device = crate::device::cpu_device();
        let logits = Tensor::<3>::zeros([2, 3, 7], &device);
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 1, 2, 3, 4, 6], [2, 3]),
            &device,
        );
        let loss: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        assert!((loss - 7f32.ln()).abs() < 1e-5, "{loss}");
        let onehots = targets.one_hot::<3>(7).float();
        let soft: f32 = soft_cross_entropy(logits, onehots).into_scalar();
        assert!((soft - 7f32.ln()).abs() < 1e-5, "{soft}");
    }

    #[test]
    fn confident_correct_logits_cost_little() {
        let device = crate::device::cpu_device();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 2]), &device);
        let logits = targets.clone().one_hot::<3>(4).float() * 20.0;
        let loss: f32 = cross_entropy(logits, targets).into_scalar();
        assert!(loss < 1e-6, "{loss}");
    }
}
