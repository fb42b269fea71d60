//! The fused operations on Burn's Flex CPU backend: one pass over memory per op, rows split
//! across rayon's threads.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{FusedOps, GELU_CUBIC, SQRT_2_OVER_PI};

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
