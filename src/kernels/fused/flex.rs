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
///
/// `f` is `Copy` and copied into each chunk's loop: with its captures in locals rather than
/// behind a shared reference, the compiler vectorises the loop (the soft cap's did not).
fn map_elements(input: &[f32], f: impl Fn(f32) -> f32 + Sync + Send + Copy) -> Vec<f32> {
    map_rows(input, MIN_CHUNK_ELEMENTS, move |i, o| {
        let f = f;
        for (o, &x) in o.iter_mut().zip(i) {
            *o = f(x);
        }
    })
}

fn zip_elements(
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync + Send + Copy,
) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "equal shapes");
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(MIN_CHUNK_ELEMENTS)
        .zip(a.par_chunks(MIN_CHUNK_ELEMENTS))
        .zip(b.par_chunks(MIN_CHUNK_ELEMENTS))
        .for_each(move |((o, a), b)| {
            let f = f;
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

/// Lanes of the reductions below: partial results in eight independent accumulators, so the
/// compiler may vectorise them (a single running sum fixes the order of additions and stays
/// scalar).
const LANES: usize = 8;

/// `Σ f(x)` over a row, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut partial = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p += f(x);
        }
    }
    partial.iter().sum::<f32>() + rest
}

/// `Σ a·b` over two rows, in [`LANES`] partial sums.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = (a_chunks.remainder().iter())
        .zip(b_chunks.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((p, &a), &b) in partial.iter_mut().zip(a).zip(b) {
            *p += a * b;
        }
    }
    partial.iter().sum::<f32>() + rest
}

/// `Σ f(a, b, c)` over three equally long rows, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len();
    let (b, c) = (&b[..n], &c[..n]);
    let whole = n - n % LANES;
    let mut partial = [0f32; LANES];
    for start in (0..whole).step_by(LANES) {
        let end = start + LANES;
        let (a, b, c) = (&a[start..end], &b[start..end], &c[start..end]);
        for i in 0..LANES {
            partial[i] += f(a[i], b[i], c[i]);
        }
    }
    let rest: f32 = (whole..n).map(|i| f(a[i], b[i], c[i])).sum();
    partial.iter().sum::<f32>() + rest
}

/// The largest value of a row (−∞ for an empty one), in [`LANES`] partial maxima.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut partial = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p = if x > *p { x } else { *p };
        }
    }
    partial.iter().copied().fold(rest, f32::max)
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
    let shifted = x * LOG2_E + ROUNDER;
    let k = shifted - ROUNDER;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `shifted` lies in [2²³, 2²⁴), where one ulp is 1, so its bits minus ROUNDER's are k as
    // an integer. Integer maths on the bits vectorises; `k as i32` (a saturating cast) did not.
    let k_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
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
    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        super::matmul::matmul(lhs, rhs)
    }

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
                    let (w_visible, s_visible) = (&mut w[..visible], &s[..visible]);
                    for (w, &s) in w_visible.iter_mut().zip(s_visible) {
                        *w = cap * fast_tanh(s * inverse);
                    }
                    let max = lane_max(w_visible);
                    w_visible.iter_mut().for_each(|w| *w = fast_exp(*w - max));
                    let norm = 1.0 / lane_sum(w_visible, |w| w);
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
                    let dot = lane_dot(w, g);
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
                    let sum_g = lane_dot(g, &weight);
                    let sum_gx = lane_sum3(g, &weight, x, |g, w, x| g * w * (x - mean)) * inv_std;
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
                let max = lane_max(row);
                let sum = lane_sum(row, |l| fast_exp(l - max));
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
                let max = lane_max(row);
                for (o, &l) in o.iter_mut().zip(row) {
                    *o = fast_exp(l - max);
                }
                let scale = g / lane_sum(o, |o| o);
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
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
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
