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

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

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
}

// ---------------------------------------------------------------------------------------------
// Flex: the kernels.
// ---------------------------------------------------------------------------------------------

/// Rows handed to one thread at a time: enough work to amortise scheduling.
const MIN_CHUNK_ELEMENTS: usize = 16 * 1024;

fn values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) if tensor.layout().start_offset() == 0 => std::borrow::Cow::Borrowed(slice),
        _ => std::borrow::Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

fn shape_of(tensor: &FlexTensor) -> Vec<usize> {
    tensor.layout().shape().iter().copied().collect()
}

fn output(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Applies `f(input_row, output_row)` to every row of length `row` in parallel.
fn map_rows(input: &[f32], row: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; input.len()];
    let rows_per_chunk = (MIN_CHUNK_ELEMENTS / row.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * row)
        .zip(input.par_chunks(rows_per_chunk * row))
        .for_each(|(out, input)| {
            for (o, i) in out.chunks_mut(row).zip(input.chunks(row)) {
                f(i, o);
            }
        });
    out
}

/// Elementwise `f` over one or two equally shaped inputs, in parallel chunks.
fn map_elements(input: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    map_rows(input, MIN_CHUNK_ELEMENTS, |i, o| {
        for (o, &x) in o.iter_mut().zip(i) {
            *o = f(x);
        }
    })
}

fn zip_elements(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "equal shapes");
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(MIN_CHUNK_ELEMENTS)
        .zip(a.par_chunks(MIN_CHUNK_ELEMENTS))
        .zip(b.par_chunks(MIN_CHUNK_ELEMENTS))
        .for_each(|((o, a), b)| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

/// `eˣ` in f32 to about 2 ulp, branch-free so loops over it vectorise: `2^k·p(r)` with
/// `r = x − k·ln 2` in [−ln2/2, ln2/2] and a degree-6 Taylor polynomial.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by adding and subtracting 1.5·2²³ (no libm call, so it vectorises).
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2_E + ROUNDER) - ROUNDER;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `tanh x` from [`fast_exp`]: `(1 − e)/(1 + e)` with `e = exp(−2|x|)`, sign restored. The
/// absolute error stays below 1e-7; near 0 the relative error grows, which no caller minds.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    let e = fast_exp(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

#[inline(always)]
fn gelu_parts(x: f32) -> (f32, f32) {
    let inner = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    (inner, fast_tanh(inner))
}

impl FusedOps for Flex {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let out = map_elements(&values(&x), |x| {
            let (_, t) = gelu_parts(x);
            0.5 * x * (1.0 + t)
        });
        output(out, shape)
    }

    fn fused_gelu_tanh_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let out = zip_elements(&values(&x), &values(&grad), |x, g| {
            let (_, t) = gelu_parts(x);
            let d_inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
            g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
        });
        output(out, shape)
    }

    fn fused_soft_cap(x: FloatTensor<Self>, cap: f32) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let inverse = 1.0 / cap;
        output(
            map_elements(&values(&x), |x| cap * fast_tanh(x * inverse)),
            shape,
        )
    }

    fn fused_soft_cap_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        cap: f32,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&y);
        let inverse = 1.0 / cap;
        let out = zip_elements(&values(&y), &values(&grad), |y, g| {
            let t = y * inverse;
            g * (1.0 - t * t)
        });
        output(out, shape)
    }

    fn fused_attention_weights(
        scores: FloatTensor<Self>,
        scale: f32,
        cap: f32,
        causal: bool,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&scores);
        let len = shape[shape.len() - 1];
        let queries = shape[shape.len() - 2];
        let inverse = scale / cap;
        let scores = values(&scores);
        let mut out = vec![0f32; scores.len()];
        let rows_per_chunk = (MIN_CHUNK_ELEMENTS / len.max(1)).max(1);
        out.par_chunks_mut(rows_per_chunk * len)
            .zip(scores.par_chunks(rows_per_chunk * len))
            .enumerate()
            .for_each(|(chunk, (out, scores))| {
                for (index, (w, s)) in out.chunks_mut(len).zip(scores.chunks(len)).enumerate() {
                    let query = (chunk * rows_per_chunk + index) % queries;
                    let visible = if causal { query + 1 } else { len };
                    let mut max = f32::NEG_INFINITY;
                    for (w, &s) in w[..visible].iter_mut().zip(&s[..visible]) {
                        *w = cap * fast_tanh(s * inverse);
                        max = max.max(*w);
                    }
                    let mut sum = 0.0;
                    for w in &mut w[..visible] {
                        *w = fast_exp(*w - max);
                        sum += *w;
                    }
                    let norm = 1.0 / sum;
                    w[..visible].iter_mut().for_each(|w| *w *= norm);
                    w[visible..].iter_mut().for_each(|w| *w = 0.0);
                }
            });
        output(out, shape)
    }

    fn fused_attention_weights_backward(
        scores: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&scores);
        let len = shape[shape.len() - 1];
        let (scores, weights, grad) = (values(&scores), values(&weights), values(&grad));
        let inverse = scale / cap;
        let mut out = vec![0f32; scores.len()];
        let rows_per_chunk = (MIN_CHUNK_ELEMENTS / len.max(1)).max(1);
        let span = rows_per_chunk * len;
        out.par_chunks_mut(span)
            .zip(scores.par_chunks(span))
            .zip(weights.par_chunks(span).zip(grad.par_chunks(span)))
            .for_each(|((out, scores), (weights, grad))| {
                for (((o, s), w), g) in out
                    .chunks_mut(len)
                    .zip(scores.chunks(len))
                    .zip(weights.chunks(len))
                    .zip(grad.chunks(len))
                {
                    // Softmax backward, then the cap's derivative and the scale. Masked keys
                    // have w = 0 and so get no gradient.
                    let dot: f32 = w.iter().zip(g).map(|(w, g)| w * g).sum();
                    for (((o, &s), &w), &g) in o.iter_mut().zip(s).zip(w).zip(g) {
                        let t = fast_tanh(s * inverse);
                        *o = w * (g - dot) * (1.0 - t * t) * scale;
                    }
                }
            });
        output(out, shape)
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let d = shape[shape.len() - 1];
        let weight = values(&weight).into_owned();
        let out = map_rows(&values(&x), d, |x, y| {
            let (mean, inv_std) = moments(x, eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(&weight) {
                *y = (x - mean) * inv_std * w;
            }
        });
        output(out, shape)
    }

    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let d = shape[shape.len() - 1];
        let weight = values(&weight).into_owned();
        let (x, grad) = (values(&x), values(&grad));
        let mut out = vec![0f32; x.len()];
        let rows_per_chunk = (MIN_CHUNK_ELEMENTS / d.max(1)).max(1);
        let span = rows_per_chunk * d;
        out.par_chunks_mut(span)
            .zip(x.par_chunks(span).zip(grad.par_chunks(span)))
            .for_each(|(out, (x, grad))| {
                for ((o, x), g) in out.chunks_mut(d).zip(x.chunks(d)).zip(grad.chunks(d)) {
                    // dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ with ĝ = g·w.
                    let (mean, inv_std) = moments(x, eps);
                    let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
                    for ((&x, &g), &w) in x.iter().zip(g).zip(&weight) {
                        let (gw, xhat) = (g * w, (x - mean) * inv_std);
                        sum_g += gw;
                        sum_gx += gw * xhat;
                    }
                    let (mean_g, mean_gx) = (sum_g / d as f32, sum_gx / d as f32);
                    for (((o, &x), &g), &w) in o.iter_mut().zip(x).zip(g).zip(&weight) {
                        let xhat = (x - mean) * inv_std;
                        *o = (g * w - mean_g - xhat * mean_gx) * inv_std;
                    }
                }
            });
        output(out, shape)
    }

    fn fused_layer_norm_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let d = shape[shape.len() - 1];
        let (x, grad) = (values(&x), values(&grad));
        let rows_per_chunk = (MIN_CHUNK_ELEMENTS / d.max(1)).max(1);
        let span = rows_per_chunk * d;
        let sums = x
            .par_chunks(span)
            .zip(grad.par_chunks(span))
            .map(|(x, grad)| {
                let mut partial = vec![0f32; d];
                for (x, g) in x.chunks(d).zip(grad.chunks(d)) {
                    let (mean, inv_std) = moments(x, eps);
                    for ((p, &x), &g) in partial.iter_mut().zip(x).zip(g) {
                        *p += g * (x - mean) * inv_std;
                    }
                }
                partial
            })
            .reduce(
                || vec![0f32; d],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        output(sums, vec![d])
    }

    fn fused_rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&x);
        let (len, head_dim) = (shape[2], shape[3]);
        let half = head_dim / 2;
        let (cos, sin) = (values(&cos).into_owned(), values(&sin).into_owned());
        let x = values(&x);
        // Rows are (b, h, position); the tables depend on the position only.
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(len * head_dim)
            .zip(x.par_chunks(len * head_dim))
            .for_each(|(out, x)| {
                for (position, (o, x)) in
                    out.chunks_mut(head_dim).zip(x.chunks(head_dim)).enumerate()
                {
                    let (c, s) = (
                        &cos[position * half..(position + 1) * half],
                        &sin[position * half..(position + 1) * half],
                    );
                    let (x1, x2) = x.split_at(half);
                    let (o1, o2) = o.split_at_mut(half);
                    for i in 0..half {
                        o1[i] = x1[i] * c[i] - x2[i] * s[i];
                        o2[i] = x2[i] * c[i] + x1[i] * s[i];
                    }
                }
            });
        output(out, shape)
    }

    fn fused_row_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&logits);
        let vocab = shape[1];
        let logits = values(&logits);
        let targets = target_ids(targets);
        let losses: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(targets.par_iter())
            .map(|(row, &target)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = row.iter().map(|&l| fast_exp(l - max)).sum();
                max + sum.ln() - row[target]
            })
            .collect();
        output(losses, vec![shape[0]])
    }

    fn fused_row_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = shape_of(&logits);
        let vocab = shape[1];
        let (logits, grad) = (values(&logits), values(&grad));
        let targets = target_ids(targets);
        let mut out = vec![0f32; logits.len()];
        out.par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(targets.par_iter().zip(grad.par_iter()))
            .for_each(|((o, row), (&target, &g))| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (o, &l) in o.iter_mut().zip(row) {
                    *o = fast_exp(l - max);
                    sum += *o;
                }
                let scale = g / sum;
                o.iter_mut().for_each(|o| *o *= scale);
                o[target] -= g;
            });
        output(out, shape)
    }
}

/// Mean and `1/√(var + ε)` of one row.
#[inline]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

fn target_ids(targets: FlexTensor) -> Vec<usize> {
    targets
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer targets")
        .into_iter()
        .map(|t| t as usize)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Autodiff: each fused op is one node of the graph, with its own backward pass.
// ---------------------------------------------------------------------------------------------

/// Marker types naming each op's backward step.
#[derive(Debug)]
struct GeluStep;
#[derive(Debug)]
struct SoftCapStep;
#[derive(Debug)]
struct AttentionStep;
#[derive(Debug)]
struct LayerNormStep;
#[derive(Debug)]
struct RotaryStep;
#[derive(Debug)]
struct CrossEntropyStep;

impl<B: FusedOps> Backward<B, 1> for GeluStep {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_gelu_tanh_backward(x, grad)
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for SoftCapStep {
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, cap) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_soft_cap_backward(y, grad, cap)
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for AttentionStep {
    type State = (FloatTensor<B>, FloatTensor<B>, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (scores, weights, scale, cap) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_attention_weights_backward(scores, weights, grad, scale, cap)
        });
    }
}

impl<B: FusedOps> Backward<B, 2> for LayerNormStep {
    type State = (FloatTensor<B>, FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, eps) = ops.state;
        let x_for_weight = x.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::fused_layer_norm_backward(x, weight, grad, eps),
            |grad| B::fused_layer_norm_weight_backward(x_for_weight, grad, eps),
        );
    }
}

impl<B: FusedOps> Backward<B, 1> for RotaryStep {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        // The rotation's transpose is the rotation by the opposite angle.
        let (cos, sin) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_rotary(grad, cos, B::float_neg(sin))
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for CrossEntropyStep {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_row_cross_entropy_backward(logits, targets, grad)
        });
    }
}

/// The backward passes are never themselves differentiated (no second derivatives).
fn no_second_derivative(op: &str) -> ! {
    panic!("flm's fused `{op}` has no second derivative")
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let input = x.primitive().clone();
        match GeluStep.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(input.clone(), B::fused_gelu_tanh(input)),
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu_tanh(input)),
        }
    }

    fn fused_gelu_tanh_backward(_: FloatTensor<Self>, _: FloatTensor<Self>) -> FloatTensor<Self> {
        no_second_derivative("gelu_tanh")
    }

    fn fused_soft_cap(x: FloatTensor<Self>, cap: f32) -> FloatTensor<Self> {
        let input = x.primitive().clone();
        match SoftCapStep
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_soft_cap(input, cap);
                prep.finish((y.clone(), cap), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_soft_cap(input, cap)),
        }
    }

    fn fused_soft_cap_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("soft_cap")
    }

    fn fused_attention_weights(
        scores: FloatTensor<Self>,
        scale: f32,
        cap: f32,
        causal: bool,
    ) -> FloatTensor<Self> {
        let input = scores.primitive().clone();
        match AttentionStep
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let weights = B::fused_attention_weights(input.clone(), scale, cap, causal);
                prep.finish((input, weights.clone(), scale, cap), weights)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_attention_weights(input, scale, cap, causal))
            }
        }
    }

    fn fused_attention_weights_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("attention_weights")
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let (input, scale) = (x.primitive().clone(), weight.primitive().clone());
        match LayerNormStep
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_layer_norm(input.clone(), scale.clone(), eps);
                prep.finish((input, scale, eps), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(input, scale, eps)),
        }
    }

    fn fused_layer_norm_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("layer_norm")
    }

    fn fused_layer_norm_weight_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("layer_norm")
    }

    fn fused_rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // The tables are constants: only the input carries a gradient.
        let input = x.primitive().clone();
        let (cos, sin) = (cos.primitive().clone(), sin.primitive().clone());
        match RotaryStep
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rotary(input, cos.clone(), sin.clone());
                prep.finish((cos, sin), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rotary(input, cos, sin)),
        }
    }

    fn fused_row_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let input = logits.primitive().clone();
        match CrossEntropyStep
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let losses = B::fused_row_cross_entropy(input.clone(), targets.clone());
                prep.finish((input, targets), losses)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_row_cross_entropy(input, targets)),
        }
    }

    fn fused_row_cross_entropy_backward(
        _: FloatTensor<Self>,
        _: IntTensor<Self>,
        _: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        no_second_derivative("row_cross_entropy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{standard_normal, stream_rng};
    use burn::tensor::Tolerance;

    fn random<const D: usize>(
        shape: [usize; D],
        seed: u64,
        scale: f32,
        device: &Device,
    ) -> Tensor<D> {
        let values: Vec<f32> = standard_normal(&mut stream_rng(seed, 7), shape.iter().product())
            .into_iter()
            .map(|v| v * scale)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn flex() -> Device {
        Device::flex()
    }

    /// The fused op and its reference give the same values and the same input gradient under
    /// a random linear loss, on the Flex device with autodiff.
    fn same_values_and_gradients<const D: usize, const E: usize>(
        input: Tensor<D>,
        fused: impl Fn(Tensor<D>) -> Tensor<E>,
        reference: impl Fn(Tensor<D>) -> Tensor<E>,
        tolerance: f32,
    ) {
        assert!(runs_fused(&input.device()));
        let device = flex().autodiff();
        let run = |f: &dyn Fn(Tensor<D>) -> Tensor<E>| {
            let x = Tensor::<D>::from_data(input.to_data(), &device).require_grad();
            let y = f(x.clone());
            let weights = random(y.dims(), 99, 1.0, &device);
            let grads = (y.clone() * weights).sum().backward();
            (
                y.inner().into_data(),
                x.grad(&grads).expect("a gradient").into_data(),
            )
        };
        let (y_fused, g_fused) = run(&fused);
        let (y_ref, g_ref) = run(&reference);
        y_fused.assert_approx_eq::<f32>(&y_ref, Tolerance::absolute(tolerance));
        g_fused.assert_approx_eq::<f32>(&g_ref, Tolerance::absolute(tolerance));
    }

    #[test]
    fn fast_exp_and_tanh_match_the_standard_library() {
        let mut worst_exp = 0.0f32;
        let mut worst_tanh = 0.0f32;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004; // [-80, 80]
            let exact = x.exp();
            worst_exp = worst_exp.max(((fast_exp(x) - exact) / exact).abs());
            let x = i as f32 * 0.0005; // [-10, 10]
            worst_tanh = worst_tanh.max((fast_tanh(x) - x.tanh()).abs());
        }
        assert!(worst_exp < 5e-7, "relative error of exp {worst_exp}");
        assert!(worst_tanh < 2e-7, "absolute error of tanh {worst_tanh}");
        assert_eq!(fast_tanh(0.0), 0.0);
        assert_eq!(fast_tanh(50.0), 1.0);
        assert_eq!(fast_tanh(-50.0), -1.0);
    }

    #[test]
    fn fused_gelu_matches_the_reference() {
        let x = random([3, 7, 33], 1, 3.0, &flex());
        same_values_and_gradients(x, gelu_tanh, reference::gelu_tanh, 1e-5);
    }

    #[test]
    fn fused_soft_cap_matches_the_reference() {
        let x = random([4, 50], 2, 40.0, &flex());
        same_values_and_gradients(
            x,
            |x| soft_cap(x, 30.0),
            |x| reference::soft_cap(x, 30.0),
            2e-5,
        );
    }

    #[test]
    fn fused_attention_weights_match_the_reference_with_and_without_the_causal_mask() {
        for causal in [false, true] {
            let scores = random([2, 3, 9, 9], 3, 20.0, &flex());
            same_values_and_gradients(
                scores,
                |s| attention_weights(s, 0.25, 5.0, causal),
                |s| reference::attention_weights(s, 0.25, 5.0, causal),
                1e-5,
            );
        }
    }

    #[test]
    fn fused_layer_norm_matches_the_reference_for_input_and_scale() {
        let device = flex().autodiff();
        let x0 = random([2, 5, 24], 4, 2.0, &flex());
        let w0 = random([24], 5, 1.0, &flex()) + 1.0;
        let run = |fused: bool| {
            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let w = Tensor::<1>::from_data(w0.to_data(), &device).require_grad();
            let y = if fused {
                layer_norm(x.clone(), w.clone(), 1e-5)
            } else {
                reference::layer_norm(x.clone(), w.clone(), 1e-5)
            };
            let weights = random(y.dims(), 6, 1.0, &device);
            let grads = (y.clone() * weights).sum().backward();
            (
                y.inner().into_data(),
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
            )
        };
        let (fused, reference) = (run(true), run(false));
        let tolerance = Tolerance::absolute(1e-4);
        fused.0.assert_approx_eq::<f32>(&reference.0, tolerance);
        fused.1.assert_approx_eq::<f32>(&reference.1, tolerance);
        fused.2.assert_approx_eq::<f32>(&reference.2, tolerance);
    }

    #[test]
    fn fused_rotary_matches_the_reference() {
        let device = flex();
        let (cos, sin) = crate::model::rotary_tables_for_tests(6, 8, &device);
        let x = random([2, 3, 6, 8], 7, 1.0, &device);
        let (c, s) = (cos.clone(), sin.clone());
        same_values_and_gradients(
            x,
            move |x| {
                let device = x.device();
                rotary(
                    x,
                    &Tensor::from_data(c.to_data(), &device),
                    &Tensor::from_data(s.to_data(), &device),
                )
            },
            move |x| {
                let device = x.device();
                reference::rotary(
                    x,
                    &Tensor::from_data(cos.to_data(), &device),
                    &Tensor::from_data(sin.to_data(), &device),
                )
            },
            1e-5,
        );
    }

    #[test]
    fn fused_cross_entropy_matches_the_reference() {
        let device = flex().autodiff();
        let logits0 = random([3, 4, 17], 8, 4.0, &flex());
        let ids: Vec<i64> = (0..12).map(|i| (i * 5 % 17) as i64).collect();
        let run = |fused: bool| {
            let logits = Tensor::<3>::from_data(logits0.to_data(), &device).require_grad();
            let targets =
                Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [3, 4]), &device);
            let loss = if fused {
                cross_entropy(logits.clone(), targets)
            } else {
                reference::cross_entropy(logits.clone(), targets)
            };
            let grads = loss.clone().backward();
            (
                loss.inner().into_data(),
                logits.grad(&grads).unwrap().into_data(),
            )
        };
        let (fused, reference) = (run(true), run(false));
        fused
            .0
            .assert_approx_eq::<f32>(&reference.0, Tolerance::absolute(1e-5));
        fused
            .1
            .assert_approx_eq::<f32>(&reference.1, Tolerance::absolute(1e-6));
    }

    #[test]
    fn other_devices_take_the_reference_path() {
        #[allow(deprecated)]
        let ndarray = Device::ndarray();
        assert!(!runs_fused(&ndarray));
        assert!(runs_fused(&flex()));
        assert!(runs_fused(&flex().autodiff()));
    }
}
