//! The DiT denoiser of DESIGN §3: `x ∈ R^{B×L×V}` (any point of the simplex's neighbourhood,
//! not only one-hots) and one or two times in, logits over the vocabulary out.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};

use super::config::ModelConfig;
use super::layers::{
    LayerNorm, SelfAttention, TimeEmbedder, WeightInit, gelu_tanh, modulate, rotary_tables,
    soft_cap, xavier_linear, zero_linear,
};

/// One pre-norm transformer block with adaLN-Zero conditioning.
#[derive(Module, Debug)]
pub struct DitBlock {
    pub norm_attn: LayerNorm,
    pub attn: SelfAttention,
    pub norm_mlp: LayerNorm,
    pub mlp_in: Linear,
    pub mlp_out: Linear,
    /// `Linear(c→6d)`, zero-init: shift/scale/gate for attention and MLP.
    pub ada_ln: Linear,
}

impl DitBlock {
    fn new(config: &ModelConfig, init: &mut WeightInit, device: &Device) -> Self {
        let d = config.d_model;
        Self {
            norm_attn: LayerNorm::new(d, device),
            attn: SelfAttention::new(
                d,
                config.n_heads,
                config.attn_softcap,
                config.causal,
                init,
                device,
            ),
            norm_mlp: LayerNorm::new(d, device),
            mlp_in: xavier_linear(d, 4 * d, true, init, device),
            mlp_out: xavier_linear(4 * d, d, true, init, device),
            ada_ln: zero_linear(config.cond_dim, 6 * d, true, device),
        }
    }

    /// h: (B, L, d), cond: (B, c).
    fn forward(&self, h: Tensor<3>, cond: Tensor<2>, rotary: &(Tensor<2>, Tensor<2>)) -> Tensor<3> {
        let mut mods = self.ada_ln.forward(cond).chunk(6, 1).into_iter();
        let mut next = || mods.next().expect("ada_ln yields six chunks");
        let (shift_attn, scale_attn, gate_attn) = (next(), next(), next());
        let (shift_mlp, scale_mlp, gate_mlp) = (next(), next(), next());

        let attn_in = modulate(self.norm_attn.forward(h.clone()), shift_attn, scale_attn);
        let h = h + gate_attn.unsqueeze_dim::<3>(1) * self.attn.forward(attn_in, rotary);

        let mlp_in = modulate(self.norm_mlp.forward(h.clone()), shift_mlp, scale_mlp);
        let mlp = self.mlp_out.forward(gelu_tanh(self.mlp_in.forward(mlp_in)));
        h + gate_mlp.unsqueeze_dim::<3>(1) * mlp
    }
}

/// Final norm, adaLN shift/scale and the projection to vocabulary logits (all zero-init).
#[derive(Module, Debug)]
pub struct FinalLayer {
    pub norm: LayerNorm,
    pub ada_ln: Linear,
    pub to_logits: Linear,
}

/// The denoiser network.
#[derive(Module, Debug)]
pub struct Dit {
    /// `E ∈ R^{V×d}`: the input is multiplied by it, since noisy inputs are not one-hots.
    pub embedding: Param<Tensor<2>>,
    pub time_s: TimeEmbedder,
    /// Second time embedder, present only in flow-map models (DESIGN §6).
    pub time_t: Option<TimeEmbedder>,
    pub blocks: Vec<DitBlock>,
    pub final_layer: FinalLayer,
    pub logit_softcap: f32,
    pub head_dim: usize,
}

impl Dit {
    /// A fresh model whose weights depend only on `seed`; its output is exactly uniform over
    /// the vocabulary (zero-init output layer).
    pub fn new(config: &ModelConfig, seed: u64, device: &Device) -> Self {
        let (v, d) = (config.vocab_size, config.d_model);
        let mut init = WeightInit::new(seed);
        // Std 1/√V keeps `x·E` at unit scale for pure-noise inputs, where x has V unit-variance
        // entries; one-hot inputs then start near the usual 0.02-scale embeddings.
        let embedding = init.normal([v, d], 1.0 / (v as f64).sqrt(), device);
        let time_s = TimeEmbedder::new(config.time_features, config.cond_dim, &mut init, device);
        let blocks = (0..config.n_blocks)
            .map(|_| DitBlock::new(config, &mut init, device))
            .collect();
        let time_t = config.two_times.then(|| {
            TimeEmbedder::silent(config.time_features, config.cond_dim, &mut init, device)
        });
        Self {
            embedding: Param::from_tensor(embedding),
            time_s,
            time_t,
            blocks,
            final_layer: FinalLayer {
                norm: LayerNorm::new(d, device),
                ada_ln: zero_linear(config.cond_dim, 2 * d, true, device),
                to_logits: zero_linear(d, v, true, device),
            },
            logit_softcap: config.logit_softcap.unwrap_or(0.0),
            head_dim: config.head_dim(),
        }
    }

    /// Logits (B, L, V) for inputs `x` (B, L, V) at times `tau_s` (B,) and, for flow maps,
    /// `tau_t` (B,). A plain FLM ignores `tau_t`.
    pub fn forward(&self, x: Tensor<3>, tau_s: Tensor<1>, tau_t: Option<Tensor<1>>) -> Tensor<3> {
        let [batch, len, vocab] = x.dims();
        let embedded = x
            .reshape([batch * len, vocab])
            .matmul(self.embedding.val())
            .reshape([batch, len, self.embedding.dims()[1]]);
        self.forward_embedded(embedded, tau_s, tau_t)
    }

    /// Fast path for clean token ids: a row lookup is the same as multiplying a one-hot by E.
    /// The autoregressive reference model uses it with a constant time.
    pub fn forward_tokens(&self, ids: Tensor<2, Int>, tau_s: Tensor<1>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let d = self.embedding.dims()[1];
        let rows = self.embedding.val().select(0, ids.reshape([batch * len]));
        self.forward_embedded(rows.reshape([batch, len, d]), tau_s, None)
    }

    fn forward_embedded(
        &self,
        mut h: Tensor<3>,
        tau_s: Tensor<1>,
        tau_t: Option<Tensor<1>>,
    ) -> Tensor<3> {
        let [_, len, _] = h.dims();
        let mut time = self.time_s.forward(tau_s);
        if let (Some(embedder), Some(tau_t)) = (&self.time_t, tau_t) {
            time = time + embedder.forward(tau_t);
        }
        let cond = silu(time); // (B, c)
        let rotary = rotary_tables(len, self.head_dim, &h.device());
        for block in &self.blocks {
            h = block.forward(h, cond.clone(), &rotary);
        }
        let final_mods = self.final_layer.ada_ln.forward(cond).chunk(2, 1);
        let [shift, scale]: [Tensor<2>; 2] = final_mods.try_into().expect("two chunks");
        let normed = modulate(self.final_layer.norm.forward(h), shift, scale);
        let logits = self.final_layer.to_logits.forward(normed);
        if self.logit_softcap > 0.0 {
            soft_cap(logits, self.logit_softcap)
        } else {
            logits
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// Whether this is a flow-map model (it has a second time embedder).
    pub fn is_flow_map(&self) -> bool {
        self.time_t.is_some()
    }

    /// Turns a trained FLM into the initial flow-map student (DESIGN §6): same weights plus a
    /// second time embedder whose output starts at zero, so `δ̂_{s,t} = D_s` until trained.
    /// The new embedder's hidden layer is drawn from `seed`.
    pub fn with_second_time(mut self, seed: u64) -> Self {
        let device = self.embedding.val().device();
        let features = self.time_s.features;
        let cond_dim = self.time_s.out.weight.dims()[1];
        let mut init = WeightInit::new(seed);
        self.time_t = Some(TimeEmbedder::silent(features, cond_dim, &mut init, &device));
        self
    }

    /// Like [`Dit::with_second_time`], but the new embedder's hidden layer is a copy of the
    /// first embedder's (trained) one, so the second time starts from features the network
    /// already reads; its output layer is zero as always (DESIGN §6a).
    pub fn with_second_time_like_first(mut self) -> Self {
        let device = self.embedding.val().device();
        let features = self.time_s.features;
        let cond_dim = self.time_s.out.weight.dims()[1];
        let mut init = WeightInit::new(0);
        let mut embedder = TimeEmbedder::silent(features, cond_dim, &mut init, &device);
        embedder.hidden = self.time_s.hidden.clone();
        self.time_t = Some(embedder);
        self
    }
}

/// Helpers for tests elsewhere in the crate: a small configuration, and a model whose output
/// is not uniform.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    /// A two-block, width-32 bidirectional FLM for `vocab` tokens and `seq_len` positions.
    pub fn small_config(vocab: usize, seq_len: usize) -> ModelConfig {
        ModelConfig {
            d_model: 32,
            n_blocks: 2,
            n_heads: 2,
            cond_dim: 16,
            time_features: 16,
            ..ModelConfig::from_preset(crate::model::ModelPreset::Micro, vocab, seq_len)
        }
    }

    /// Replaces the zero-initialised layers by random ones drawn from `seed`.
    pub fn perturbed(mut model: Dit, seed: u64) -> Dit {
        let device = model.embedding.val().device();
        device.seed(seed);
        let randomize = |l: Linear| {
            let w = l.weight.val();
            let noise = Tensor::random(w.dims(), Distribution::Normal(0.0, 0.3), &w.device());
            Linear {
                weight: Param::from_tensor(noise),
                bias: l.bias,
            }
        };
        let placeholder = || zero_linear(1, 1, false, &device);
        model.final_layer.to_logits = randomize(std::mem::replace(
            &mut model.final_layer.to_logits,
            placeholder(),
        ));
        model.final_layer.ada_ln = randomize(std::mem::replace(
            &mut model.final_layer.ada_ln,
            placeholder(),
        ));
        for block in model.blocks.iter_mut() {
            block.ada_ln = randomize(std::mem::replace(&mut block.ada_ln, placeholder()));
        }
        if let Some(embedder) = model.time_t.as_mut() {
            embedder.out = randomize(std::mem::replace(&mut embedder.out, placeholder()));
        }
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;
    use crate::model::ModelPreset;
    use burn::tensor::{Distribution, TensorData};

    fn micro_config(vocab: usize, seq_len: usize) -> ModelConfig {
        ModelConfig {
            d_model: 32,
            n_blocks: 2,
            n_heads: 2,
            cond_dim: 16,
            ..ModelConfig::from_preset(ModelPreset::Tiny, vocab, seq_len)
        }
    }

    fn random_input(shape: [usize; 3], device: &Device) -> Tensor<3> {
        device.seed(11);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn forward_maps_batch_by_len_by_vocab_to_logits_of_the_same_shape() {
        let device = cpu_device();
        let model = Dit::new(&micro_config(37, 9), 0, &device);
        let logits = model.forward(
            random_input([3, 9, 37], &device),
            Tensor::from_floats([0.0, 0.5, 1.0], &device),
            None,
        );
        assert_eq!(logits.dims(), [3, 9, 37]);
    }

    #[test]
    fn fresh_model_predicts_the_uniform_distribution() {
        let device = cpu_device();
        let model = Dit::new(&micro_config(50, 6), 0, &device);
        let logits = model.forward(
            random_input([2, 6, 50], &device),
            Tensor::from_floats([0.2, 0.9], &device),
            None,
        );
        let probs = burn::tensor::activation::softmax(logits, 2);
        let values = probs.into_data().try_into_vec::<f32>().unwrap();
        assert!(values.iter().all(|&p| (p - 1.0 / 50.0).abs() < 1e-6));
    }

    #[test]
    fn trained_weights_make_the_output_depend_on_input_and_time() {
        // After perturbing the zero-initialised layers the network must react to both inputs;
        // this guards against a forward pass that ignores x or τ.
        let device = cpu_device();
        let config = micro_config(11, 5);
        let model = tests_support::perturbed(Dit::new(&config, 1, &device), 3);
        let x = random_input([1, 5, 11], &device);
        let at = |x: Tensor<3>, tau: f32| {
            model
                .forward(x, Tensor::from_floats([tau], &device), None)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let base = at(x.clone(), 0.3);
        let other_time = at(x.clone(), 0.8);
        let other_input = at(x.clone() * 2.0, 0.3);
        let differs = |a: &[f32], b: &[f32]| a.iter().zip(b).any(|(p, q)| (p - q).abs() > 1e-4);
        assert!(differs(&base, &other_time), "output ignores τ");
        assert!(differs(&base, &other_input), "output ignores x");
    }

    #[test]
    fn token_lookup_equals_onehot_matmul() {
        let device = cpu_device();
        let config = micro_config(13, 4);
        let mut model = Dit::new(&config, 1, &device);
        // Non-zero output layer so the comparison is not trivially uniform.
        device.seed(5);
        let w = Tensor::random([32, 13], Distribution::Normal(0.0, 0.5), &device);
        model.final_layer.to_logits.weight = Param::from_tensor(w);
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 12, 0], [1, 4]), &device);
        let onehot = ids.clone().one_hot::<3>(13).float();
        let tau = || Tensor::from_floats([0.7], &device);
        let a = model.forward(onehot, tau(), None).into_data();
        let b = model.forward_tokens(ids, tau()).into_data();
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn a_second_time_copied_from_the_first_leaves_the_output_unchanged() {
        let device = cpu_device();
        let config = micro_config(11, 5);
        let flm = tests_support::perturbed(Dit::new(&config, 1, &device), 3);
        let x = random_input([2, 5, 11], &device);
        let tau = || Tensor::from_floats([0.2, 0.7], &device);
        let before = flm.forward(x.clone(), tau(), None).into_data();
        let student = flm.with_second_time_like_first();
        let second = student.time_t.as_ref().unwrap();
        second
            .hidden
            .weight
            .val()
            .into_data()
            .assert_approx_eq::<f32>(
                &student.time_s.hidden.weight.val().into_data(),
                burn::tensor::Tolerance::absolute(0.0),
            );
        let after = student.forward(x, tau(), Some(Tensor::from_floats([0.9, 1.0], &device)));
        after
            .into_data()
            .assert_approx_eq::<f32>(&before, burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn parameter_count_matches_the_formula() {
        use burn::module::Module;
        let device = cpu_device();
        for two_times in [false, true] {
            let config = ModelConfig {
                two_times,
                ..micro_config(23, 8)
            };
            let model = Dit::new(&config, 2, &device);
            assert_eq!(model.num_params(), config.num_params());
        }
        let config = ModelConfig::from_preset(ModelPreset::Tiny, 1024, 128);
        let model = Dit::new(&config, 3, &device.clone().autodiff()).valid();
        assert_eq!(model.num_params(), config.num_params());
    }
}
