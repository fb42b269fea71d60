//! Fused CPU kernels for the DiT's element- and row-wise work (issue: training on the CPU was
//! a quarter of eager PyTorch's speed; a profile put ~30% of the time in scalar `tanh` and
//! most of the rest in chains of single-threaded elementwise ops, each allocating a tensor).
//!
//! Each operation here replaces a chain of Burn ops by one pass over memory, split across
//! threads by rows, forward and backward: GELU (tanh form), the soft cap, the attention
//! weights (scale, soft cap, optional causal mask and softmax in one), LayerNorm, rotary
//! positions and the cross-entropy of logits against tokens. They run on Burn's Flex CPU
//! backend (with and without autodiff); every other device takes the reference path, the
//! same maths written with ordinary tensor ops, which the tests compare against.
//!
//! Layout: this file has the public operations, their reference paths and the backend trait;
//! `flex` the CPU kernels, `autodiff` each op's node in Burn's graph, `tests` the comparisons.

mod autodiff;
mod flex;
mod matmul;
#[cfg(test)]
mod tests;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

pub use flex::{fast_exp, fast_tanh};

/// `√(2/π)`, the GELU tanh form's inner scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// Whether tensors on `device` take the fused kernels (Flex, with or without autodiff, unless
/// `kernels::set_enabled(false)` or `FLM_KERNELS=off`).
pub fn runs_fused(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    ) && super::enabled()
}

// ---------------------------------------------------------------------------------------------
// Public operations: the fused kernel on Flex, the reference elsewhere.
// ---------------------------------------------------------------------------------------------

/// GELU with the tanh approximation, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if runs_fused(&x.device()) {
        Tensor::from_dispatch(Dispatch::fused_gelu_tanh(x.into_dispatch()))
    } else {
        reference::gelu_tanh(x)
    }
}

/// `cap·tanh(x/cap)`: bounds values smoothly (DESIGN §3).
pub fn soft_cap<const D: usize>(x: Tensor<D>, cap: f32) -> Tensor<D> {
    if runs_fused(&x.device()) {
        Tensor::from_dispatch(Dispatch::fused_soft_cap(x.into_dispatch(), cap))
    } else {
        reference::soft_cap(x, cap)
    }
}

/// Attention weights from raw scores (B, H, L, L): `softmax(cap·tanh(scale·s/cap))` over the
/// last axis, with keys after the query masked out when `causal`.
pub fn attention_weights(scores: Tensor<4>, scale: f32, cap: f32, causal: bool) -> Tensor<4> {
    if runs_fused(&scores.device()) {
        Tensor::from_dispatch(Dispatch::fused_attention_weights(
            scores.into_dispatch(),
            scale,
            cap,
            causal,
        ))
    } else {
        reference::attention_weights(scores, scale, cap, causal)
    }
}

/// LayerNorm over the last axis with a learned scale `weight` (d,) and no bias.
pub fn layer_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    if runs_fused(&x.device()) {
        Tensor::from_dispatch(Dispatch::fused_layer_norm(
            x.into_dispatch(),
            weight.into_dispatch(),
            eps as f32,
        ))
    } else {
        reference::layer_norm(x, weight, eps)
    }
}

/// Rotate-half rotary positions on (B, H, L, hd) with tables `(cos, sin)`, each (L, hd/2).
pub fn rotary(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    if runs_fused(&x.device()) {
        Tensor::from_dispatch(Dispatch::fused_rotary(
            x.into_dispatch(),
            cos.clone().into_dispatch(),
            sin.clone().into_dispatch(),
        ))
    } else {
        reference::rotary(x, cos, sin)
    }
}

/// `lhs · rhs` over the last two axes. Tensors with equal leading (batch) axes take the
/// direct CPU product on Flex (`matmul.rs`); anything else, Burn's matmul.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let same_batch = lhs.dims()[..D - 2] == rhs.dims()[..D - 2];
    if same_batch && runs_fused(&lhs.device()) {
        Tensor::from_dispatch(Dispatch::fused_matmul(
            lhs.into_dispatch(),
            rhs.into_dispatch(),
        ))
    } else {
        lhs.matmul(rhs)
    }
}

/// Mean cross-entropy of `logits` (B, L, V) against `targets` (B, L).
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    if runs_fused(&logits.device()) {
        let [batch, len, vocab] = logits.dims();
        let rows = logits.reshape([batch * len, vocab]);
        let targets = targets.reshape([batch * len]);
        let per_row: Tensor<1> = Tensor::from_dispatch(Dispatch::fused_row_cross_entropy(
            rows.into_dispatch(),
            targets.into_dispatch(),
        ));
        per_row.mean()
    } else {
        reference::cross_entropy(logits, targets)
    }
}

/// The same maths in ordinary tensor ops: what the kernels must reproduce, and what every
/// non-Flex device runs.
pub mod reference {
    use super::*;

    pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        // x³ as a product (not powf) so it stays exact for negative x.
        let cubed = x.clone() * x.clone() * x.clone();
        let inner = (x.clone() + cubed * GELU_CUBIC as f64) * SQRT_2_OVER_PI as f64;
        x * (inner.tanh() + 1.0) * 0.5
    }

    pub fn soft_cap<const D: usize>(x: Tensor<D>, cap: f32) -> Tensor<D> {
        (x / cap).tanh() * cap
    }

    pub fn attention_weights(scores: Tensor<4>, scale: f32, cap: f32, causal: bool) -> Tensor<4> {
        let mut capped = soft_cap(scores * scale, cap);
        if causal {
            let [_, _, len, _] = capped.dims();
            let mask: Vec<f32> = (0..len * len)
                .map(|k| if k % len > k / len { -1e9 } else { 0.0 })
                .collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [len, len]), &capped.device());
            capped = capped + mask.unsqueeze_dims::<4>(&[0, 1]);
        }
        softmax(capped, 3)
    }

    pub fn layer_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(2);
        centered / (var + eps).sqrt() * weight.unsqueeze_dims::<3>(&[0, 1])
    }

    pub fn rotary(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
        let [_, _, _, head_dim] = x.dims();
        let half = head_dim / 2;
        let cos = cos.clone().unsqueeze_dims::<4>(&[0, 1]);
        let sin = sin.clone().unsqueeze_dims::<4>(&[0, 1]);
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(
            vec![
                x1.clone() * cos.clone() - x2.clone() * sin.clone(),
                x2 * cos + x1 * sin,
            ],
            3,
        )
    }

    pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
        let log_probs = log_softmax(logits, 2);
        let picked = log_probs.gather(2, targets.unsqueeze_dim::<3>(2)); // (B, L, 1)
        picked.mean().neg()
    }
}

// ---------------------------------------------------------------------------------------------
// The backend extension: Flex computes, Autodiff records the backward pass.
// ---------------------------------------------------------------------------------------------

#[backend_extension(Autodiff, Flex)]
pub trait FusedOps: Backend {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
    fn fused_gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>)
    -> FloatTensor<Self>;
    fn fused_soft_cap(x: FloatTensor<Self>, cap: f32) -> FloatTensor<Self>;
    /// From the op's output `y`: `grad·(1 − (y/cap)²)`.
    fn fused_soft_cap_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        cap: f32,
    ) -> FloatTensor<Self>;
    fn fused_attention_weights(
        scores: FloatTensor<Self>,
        scale: f32,
        cap: f32,
        causal: bool,
    ) -> FloatTensor<Self>;
    /// From the scores and the weights `w`: the gradient of the scores.
    fn fused_attention_weights_backward(
        scores: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self>;
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
    /// The input's gradient.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
    /// The scale's gradient: `Σ_rows grad·x̂`.
    fn fused_layer_norm_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
    fn fused_rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Per-row `−log softmax(logits)[target]` of (N, V) logits: (N,).
    fn fused_row_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `(softmax(logits) − onehot(target))·grad_row`, (N, V).
    fn fused_row_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `lhs · rhs` over the last two axes, for equal ranks and equal leading axes.
    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}
