//! Building blocks of the DiT, each checkable against DESIGN §3.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::kernels::fused::{attention_weights, matmul};

/// Draws initial weights on the host from a seeded stream, so a model's initialisation
/// depends only on its seed (not on a backend's global RNG shared with other threads).
pub struct WeightInit {
    rng: ChaCha8Rng,
}

impl WeightInit {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: crate::rng::stream_rng(seed, u64::MAX),
        }
    }

    /// A (rows, cols) matrix with entries from N(0, std²).
    pub fn normal(&mut self, shape: [usize; 2], std: f64, device: &Device) -> Tensor<2> {
        let normal = Normal::new(0.0, std).expect("std is finite and positive");
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| normal.sample(&mut self.rng) as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A (rows, cols) matrix with entries from U(−a, a).
    pub fn uniform(&mut self, shape: [usize; 2], bound: f64, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| self.rng.random_range(-bound..bound) as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// `Linear` whose weights and bias start at zero: adaLN-Zero and the output layer use it so a
/// fresh model is the identity per block and predicts the uniform distribution.
pub fn zero_linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// `Linear` with the Xavier-uniform weights and zero bias DiT uses for its hidden layers.
pub fn xavier_linear(
    d_in: usize,
    d_out: usize,
    bias: bool,
    init: &mut WeightInit,
    device: &Device,
) -> Linear {
    let bound = (6.0 / (d_in + d_out) as f64).sqrt();
    with_weight(init.uniform([d_in, d_out], bound, device), bias, device)
}

/// A `Linear` around given (d_in, d_out) weights, with a zero bias when `bias`.
fn with_weight(weight: Tensor<2>, bias: bool, device: &Device) -> Linear {
    let [_, d_out] = weight.dims();
    Linear {
        weight: Param::from_tensor(weight),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

/// `x·(1+scale)+shift`, with `shift`/`scale` of shape (B, d) broadcast over positions.
pub fn modulate(x: Tensor<3>, shift: Tensor<2>, scale: Tensor<2>) -> Tensor<3> {
    x * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim::<3>(1)
}

pub use crate::kernels::fused::{gelu_tanh, soft_cap};

/// A `Linear` layer applied over the last axis of `x`: `x·W + b`, with the product through
/// [`fused::matmul`](crate::kernels::fused::matmul) (direct on the CPU backend) and Burn's own
/// `Linear::forward` wherever that product does not apply.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if !crate::kernels::fused::runs_fused(&x.device()) {
        return layer.forward(x);
    }
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product();
    let weight = layer.weight.val();
    dims[D - 1] = weight.dims()[1];
    let mut y = crate::kernels::fused::matmul(x.reshape([rows, d_in]), weight);
    if let Some(bias) = &layer.bias {
        y = y + bias.val().unsqueeze_dim::<2>(0);
    }
    y.reshape(dims)
}

/// LayerNorm with a learned scale and no bias, over the last axis.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    /// ε under the square root (`ModelConfig::layer_norm_eps`); not a weight, not saved.
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(d: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d], device)),
            eps,
        }
    }

    /// Zero mean, unit (biased) variance over the last axis, `(x − mean)/√(var + eps)`,
    /// times the scale (one fused pass on the CPU, `kernels::fused`).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        crate::kernels::fused::layer_norm(x, self.weight.val(), self.eps)
    }
}

/// Sinusoidal features of τ followed by a 2-layer MLP (DESIGN §3).
#[derive(Module, Debug)]
pub struct TimeEmbedder {
    pub hidden: Linear,
    pub out: Linear,
    pub features: usize,
}

impl TimeEmbedder {
    pub fn new(features: usize, cond_dim: usize, init: &mut WeightInit, device: &Device) -> Self {
        Self {
            hidden: with_weight(
                init.normal([features, cond_dim], 0.02, device),
                true,
                device,
            ),
            out: with_weight(
                init.normal([cond_dim, cond_dim], 0.02, device),
                true,
                device,
            ),
            features,
        }
    }

    /// An embedder whose output starts at exactly zero (zero-init last layer): added to a
    /// trained model as the second time of a flow map, it leaves the model's output unchanged
    /// until training moves it (DESIGN §6).
    pub fn silent(
        features: usize,
        cond_dim: usize,
        init: &mut WeightInit,
        device: &Device,
    ) -> Self {
        Self {
            hidden: with_weight(
                init.normal([features, cond_dim], 0.02, device),
                true,
                device,
            ),
            out: zero_linear(cond_dim, cond_dim, true, device),
            features,
        }
    }

    /// `cos(τ·f_k) ‖ sin(τ·f_k)`, `f_k = 10000^{−k/(F/2)}`; τ: (B,) → (B, F).
    pub fn sinusoidal_features(tau: Tensor<1>, features: usize) -> Tensor<2> {
        let half = features / 2;
        let device = tau.device();
        let freqs: Vec<f32> = (0..half)
            .map(|k| (10000f64).powf(-(k as f64) / half as f64) as f32)
            .collect();
        let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &device);
        let angles = tau.unsqueeze_dim::<2>(1) * freqs.unsqueeze_dim::<2>(0); // (B, F/2)
        Tensor::cat(vec![angles.clone().cos(), angles.sin()], 1)
    }

    pub fn forward(&self, tau: Tensor<1>) -> Tensor<2> {
        let features = Self::sinusoidal_features(tau, self.features);
        linear(&self.out, silu(linear(&self.hidden, features)))
    }
}

/// Rotary position embedding tables for `seq_len` positions and heads of width `head_dim`:
/// `(cos, sin)`, each (L, head_dim/2).
pub fn rotary_tables(seq_len: usize, head_dim: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(seq_len * half);
    let mut sin = Vec::with_capacity(seq_len * half);
    for pos in 0..seq_len {
        for i in 0..half {
            let inv_freq = 10000f64.powf(-(2.0 * i as f64) / head_dim as f64);
            let angle = pos as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [seq_len, half]), device),
        Tensor::from_data(TensorData::new(sin, [seq_len, half]), device),
    )
}

/// Rotate-half RoPE on (B, H, L, hd): `[x1·cos − x2·sin, x2·cos + x1·sin]`.
pub use crate::kernels::fused::rotary as apply_rotary;

/// Multi-head self-attention with rotary positions and soft-capped logits: bidirectional for
/// denoisers, causal for the autoregressive reference model.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub qkv: Linear,
    pub out: Linear,
    pub n_heads: usize,
    pub softcap: f32,
    pub causal: bool,
}

impl SelfAttention {
    pub fn new(
        d_model: usize,
        n_heads: usize,
        softcap: f32,
        causal: bool,
        init: &mut WeightInit,
        device: &Device,
    ) -> Self {
        Self {
            qkv: xavier_linear(d_model, 3 * d_model, false, init, device),
            out: xavier_linear(d_model, d_model, false, init, device),
            n_heads,
            softcap,
            causal,
        }
    }

    /// x: (B, L, d) → (B, L, d).
    pub fn forward(&self, x: Tensor<3>, rotary: &(Tensor<2>, Tensor<2>)) -> Tensor<3> {
        let [batch, len, d_model] = x.dims();
        let head_dim = d_model / self.n_heads;
        // (B, L, 3d) viewed as (B, L, 3H, hd): reshaping before narrowing keeps every head a
        // view of the projection (the other order copies each of q, k and v).
        let qkv = linear(&self.qkv, x).reshape([batch, len, 3 * self.n_heads, head_dim]);
        let head = |part: usize| {
            qkv.clone()
                .narrow(2, part * self.n_heads, self.n_heads)
                .swap_dims(1, 2) // (B, H, L, hd)
        };
        let (query, key, value) = (head(0), head(1), head(2));
        let query = apply_rotary(query, &rotary.0, &rotary.1);
        let key = apply_rotary(key, &rotary.0, &rotary.1);

        // softmax(cap·tanh(q·k/(√hd·cap))), keys after the query masked when causal.
        let scores = matmul(query, key.swap_dims(2, 3)); // (B, H, L, L)
        let scale = 1.0 / (head_dim as f32).sqrt();
        let weights = attention_weights(scores, scale, self.softcap, self.causal);
        let mixed = matmul(weights, value); // (B, H, L, hd)
        let merged = mixed.swap_dims(1, 2).reshape([batch, len, d_model]);
        linear(&self.out, merged)
    }
}
