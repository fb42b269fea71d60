//! The DiT denoiser of DESIGN §3: `x ∈ R^{B×L×V}` (any point of the simplex's neighbourhood,
//! not only one-hots) and one or two times in, logits over the vocabulary out.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::layers::{
    LayerNorm, SelfAttention, TimeEmbedder, WeightInit, gelu_tanh, linear, modulate, rotary_tables,
    soft_cap, xavier_linear, zero_linear,
};
use crate::kernels::fused::matmul;

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
            norm_attn: LayerNorm::new(d, config.layer_norm_eps, device),
            attn: SelfAttention::new(
                d,
                config.n_heads,
                config.attn_softcap,
                config.causal,
                init,
                device,
            ),
            norm_mlp: LayerNorm::new(d, config.layer_norm_eps, device),
            mlp_in: xavier_linear(d, 4 * d, true, init, device),
            mlp_out: xavier_linear(4 * d, d, true, init, device),
            ada_ln: zero_linear(config.cond_dim, 6 * d, true, device),
        }
    }

    /// h: (B, L, d), cond: (B, c).
    fn forward(&self, h: Tensor<3>, cond: Tensor<2>, rotary: &(Tensor<2>, Tensor<2>)) -> Tensor<3> {
        let mut mods = linear(&self.ada_ln, cond).chunk(6, 1).into_iter();
        let mut next = || mods.next().expect("ada_ln yields six chunks");
        let (shift_attn, scale_attn, gate_attn) = (next(), next(), next());
        let (shift_mlp, scale_mlp, gate_mlp) = (next(), next(), next());

        let attn_in = modulate(self.norm_attn.forward(h.clone()), shift_attn, scale_attn);
        let h = h + gate_attn.unsqueeze_dim::<3>(1) * self.attn.forward(attn_in, rotary);

        let mlp_in = modulate(self.norm_mlp.forward(h.clone()), shift_mlp, scale_mlp);
        let mlp = linear(&self.mlp_out, gelu_tanh(linear(&self.mlp_in, mlp_in)));
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

/// Where [`Dit::from_weights`] gets each parameter: `(path, shape in flm's layout)` to its
/// row-major values, or an error that stops the build.
pub type WeightFn<'a, E> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, E> + 'a;

/// Weights handed to [`Dit::from_weights`], turned into its layers one at a time.
struct GivenWeights<'a, E> {
    weight: &'a mut WeightFn<'a, E>,
    device: &'a Device,
}

impl<E> GivenWeights<'_, E> {
    fn matrix(&mut self, path: &str, rows: usize, cols: usize) -> Result<Tensor<2>, E> {
        let values = (self.weight)(path, &[rows, cols])?;
        assert_eq!(values.len(), rows * cols, "values of `{path}`");
        Ok(Tensor::from_data(
            TensorData::new(values, [rows, cols]),
            self.device,
        ))
    }

    fn vector(&mut self, path: &str, len: usize) -> Result<Param<Tensor<1>>, E> {
        let values = (self.weight)(path, &[len])?;
        assert_eq!(values.len(), len, "values of `{path}`");
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [len]),
            self.device,
        )))
    }

    fn linear(&mut self, path: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear, E> {
        let weight = Param::from_tensor(self.matrix(&format!("{path}.weight"), d_in, d_out)?);
        let bias = if bias {
            Some(self.vector(&format!("{path}.bias"), d_out)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    fn norm(&mut self, path: &str, d: usize, eps: f64) -> Result<LayerNorm, E> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{path}.weight"), d)?,
            eps,
        })
    }

    fn time_embedder(
        &mut self,
        path: &str,
        features: usize,
        cond: usize,
    ) -> Result<TimeEmbedder, E> {
        Ok(TimeEmbedder {
            hidden: self.linear(&format!("{path}.hidden"), features, cond, true)?,
            out: self.linear(&format!("{path}.out"), cond, cond, true)?,
            features,
        })
    }
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
                norm: LayerNorm::new(d, config.layer_norm_eps, device),
                ada_ln: zero_linear(config.cond_dim, 2 * d, true, device),
                to_logits: zero_linear(d, v, true, device),
            },
            logit_softcap: config.logit_softcap.unwrap_or(0.0),
            head_dim: config.head_dim(),
        }
    }

    /// A model of `config`'s shape holding given weights, without drawing initial ones first
    /// (so a large imported model is only ever held once). `weight(path, shape)` returns the
    /// row-major values of the parameter at `path` (its name in flm's safetensors files, such
    /// as `blocks.0.attn.qkv.weight`), whose shape in flm's layout is `shape`; an error it
    /// returns stops the build. Values of the wrong length are a bug in `weight` and panic.
    pub fn from_weights<E>(
        config: &ModelConfig,
        device: &Device,
        weight: &mut WeightFn<'_, E>,
    ) -> Result<Self, E> {
        let (v, d, c, f) = (
            config.vocab_size,
            config.d_model,
            config.cond_dim,
            config.time_features,
        );
        let eps = config.layer_norm_eps;
        let mut w = GivenWeights { weight, device };
        let embedding = Param::from_tensor(w.matrix("embedding", v, d)?);
        let time_s = w.time_embedder("time_s", f, c)?;
        let time_t = if config.two_times {
            Some(w.time_embedder("time_t", f, c)?)
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(config.n_blocks);
        for index in 0..config.n_blocks {
            let path = |leaf: &str| format!("blocks.{index}.{leaf}");
            blocks.push(DitBlock {
                norm_attn: w.norm(&path("norm_attn"), d, eps)?,
                attn: SelfAttention {
                    qkv: w.linear(&path("attn.qkv"), d, 3 * d, false)?,
                    out: w.linear(&path("attn.out"), d, d, false)?,
                    n_heads: config.n_heads,
                    softcap: config.attn_softcap,
                    causal: config.causal,
                },
                norm_mlp: w.norm(&path("norm_mlp"), d, eps)?,
                mlp_in: w.linear(&path("mlp_in"), d, 4 * d, true)?,
                mlp_out: w.linear(&path("mlp_out"), 4 * d, d, true)?,
                ada_ln: w.linear(&path("ada_ln"), c, 6 * d, true)?,
            });
        }
        let final_layer = FinalLayer {
            norm: w.norm("final_layer.norm", d, eps)?,
            ada_ln: w.linear("final_layer.ada_ln", c, 2 * d, true)?,
            to_logits: w.linear("final_layer.to_logits", d, v, true)?,
        };
        Ok(Self {
            embedding,
            time_s,
            time_t,
            blocks,
            final_layer,
            logit_softcap: config.logit_softcap.unwrap_or(0.0),
            head_dim: config.head_dim(),
        })
    }

    /// Every parameter [`Dit::from_weights`] asks for, `(path, shape in flm's layout)`, in
    /// the same order, computed from the config alone: a weights file can be checked against
    /// it before anything is allocated.
    pub fn weight_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let (v, d, c, f) = (
            config.vocab_size,
            config.d_model,
            config.cond_dim,
            config.time_features,
        );
        let mut shapes = vec![("embedding".to_string(), vec![v, d])];
        let linear = |shapes: &mut Vec<_>, path: &str, d_in: usize, d_out: usize, bias| {
            shapes.push((format!("{path}.weight"), vec![d_in, d_out]));
            if bias {
                shapes.push((format!("{path}.bias"), vec![d_out]));
            }
        };
        let times: &[&str] = if config.two_times {
            &["time_s", "time_t"]
        } else {
            &["time_s"]
        };
        for time in times {
            linear(&mut shapes, &format!("{time}.hidden"), f, c, true);
            linear(&mut shapes, &format!("{time}.out"), c, c, true);
        }
        for index in 0..config.n_blocks {
            let path = |leaf: &str| format!("blocks.{index}.{leaf}");
            shapes.push((path("norm_attn.weight"), vec![d]));
            linear(&mut shapes, &path("attn.qkv"), d, 3 * d, false);
            linear(&mut shapes, &path("attn.out"), d, d, false);
            shapes.push((path("norm_mlp.weight"), vec![d]));
            linear(&mut shapes, &path("mlp_in"), d, 4 * d, true);
            linear(&mut shapes, &path("mlp_out"), 4 * d, d, true);
            linear(&mut shapes, &path("ada_ln"), c, 6 * d, true);
        }
        shapes.push(("final_layer.norm.weight".into(), vec![d]));
        linear(&mut shapes, "final_layer.ada_ln", c, 2 * d, true);
        linear(&mut shapes, "final_layer.to_logits", d, v, true);
        shapes
    }

    /// Logits (B, L, V) for inputs `x` (B, L, V) at times `tau_s` (B,) and, for flow maps,
    /// `tau_t` (B,). A plain FLM ignores `tau_t`. The model's logit cap, if any, is applied:
    /// these are the logits the softmax sees.
    pub fn forward(&self, x: Tensor<3>, tau_s: Tensor<1>, tau_t: Option<Tensor<1>>) -> Tensor<3> {
        self.cap_logits(self.forward_uncapped(x, tau_s, tau_t))
    }

    /// [`Dit::forward`] before the logit cap: the network's raw output layer, the numbers the
    /// paper's PyTorch `DIT.forward` returns (its training code caps them afterwards). Equal
    /// to `forward` for models without a cap.
    pub fn forward_uncapped(
        &self,
        x: Tensor<3>,
        tau_s: Tensor<1>,
        tau_t: Option<Tensor<1>>,
    ) -> Tensor<3> {
        let [batch, len, vocab] = x.dims();
        let embedded = matmul(x.reshape([batch * len, vocab]), self.embedding.val()).reshape([
            batch,
            len,
            self.embedding.dims()[1],
        ]);
        self.forward_embedded(embedded, tau_s, tau_t)
    }

    /// The soft cap `c·tanh(l/c)` on output logits, or the logits unchanged without one.
    pub fn cap_logits(&self, logits: Tensor<3>) -> Tensor<3> {
        match self.logit_softcap() {
            Some(cap) => soft_cap(logits, cap),
            None => logits,
        }
    }

    /// The cap on output logits (`ModelConfig::logit_softcap`).
    pub fn logit_softcap(&self) -> Option<f32> {
        (self.logit_softcap > 0.0).then_some(self.logit_softcap)
    }

    /// Fast path for clean token ids: a row lookup is the same as multiplying a one-hot by E.
    /// The autoregressive reference model uses it with a constant time.
    pub fn forward_tokens(&self, ids: Tensor<2, Int>, tau_s: Tensor<1>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let d = self.embedding.dims()[1];
        let rows = self.embedding.val().select(0, ids.reshape([batch * len]));
        self.cap_logits(self.forward_embedded(rows.reshape([batch, len, d]), tau_s, None))
    }

    /// The network after the input embedding, up to the raw (uncapped) logits.
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
        let final_mods = linear(&self.final_layer.ada_ln, cond).chunk(2, 1);
        let [shift, scale]: [Tensor<2>; 2] = final_mods.try_into().expect("two chunks");
        let normed = modulate(self.final_layer.norm.forward(h), shift, scale);
        linear(&self.final_layer.to_logits, normed)
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
    /// A small network with perturbed weights, standing in for a trained teacher.
    pub fn teacher(vocab: usize, seq_len: usize) -> Dit {
        let device = crate::device::cpu_device();
        perturbed(Dit::new(&small_config(vocab, seq_len), 3, &device), 8)
    }

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

    #[test]
    fn weight_shapes_list_exactly_what_a_saved_model_holds() {
        for two_times in [false, true] {
            let config = ModelConfig {
                two_times,
                ..micro_config(11, 8)
            };
            let bytes = crate::train::checkpoint::model_bytes(&Dit::new(&config, 0, &cpu_device()));
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut saved: Vec<(String, Vec<usize>)> = file
                .tensors()
                .into_iter()
                .map(|(name, view)| (name, view.shape().to_vec()))
                .collect();
            let mut expected = Dit::weight_shapes(&config);
            saved.sort();
            expected.sort();
            assert_eq!(saved, expected);
        }
    }

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
    fn from_weights_rebuilds_a_model_exactly() {
        let device = cpu_device();
        for two_times in [false, true] {
            let config = ModelConfig {
                two_times,
                ..micro_config(17, 6)
            };
            let model = tests_support::perturbed(Dit::new(&config, 4, &device), 5);
            let params = crate::train::params::flat_params(&model);
            let mut asked = Vec::new();
            let rebuilt = Dit::from_weights(&config, &device, &mut |path, shape| {
                asked.push(path.to_string());
                let values = params.get(path).ok_or_else(|| path.to_string())?;
                assert_eq!(values.dims()[0], shape.iter().product::<usize>(), "{path}");
                Ok::<_, String>(values.clone().into_data().try_into_vec::<f32>().unwrap())
            })
            .unwrap();
            asked.sort();
            let mut expected: Vec<String> = params.keys().cloned().collect();
            expected.sort();
            assert_eq!(asked, expected);
            let x = random_input([2, 6, 17], &device);
            let taus = || Tensor::<1>::from_floats([0.1, 0.6], &device);
            let second = || two_times.then(|| Tensor::<1>::from_floats([0.3, 0.9], &device));
            let a = model.forward(x.clone(), taus(), second()).into_data();
            let b = rebuilt.forward(x, taus(), second()).into_data();
            a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(0.0));
        }
    }

    #[test]
    fn from_weights_stops_at_the_first_error() {
        let device = cpu_device();
        let config = micro_config(9, 4);
        let result = Dit::from_weights(&config, &device, &mut |path, shape| {
            if path == "blocks.1.ada_ln.bias" {
                Err(format!("no {path}"))
            } else {
                Ok(vec![0.0; shape.iter().product()])
            }
        });
        assert_eq!(result.unwrap_err(), "no blocks.1.ada_ln.bias");
    }

    #[test]
    fn forward_is_the_capped_uncapped_output() {
        let device = cpu_device();
        let config = ModelConfig {
            logit_softcap: Some(0.5),
            ..micro_config(11, 5)
        };
        let model = tests_support::perturbed(Dit::new(&config, 1, &device), 3);
        let x = random_input([1, 5, 11], &device);
        let tau = || Tensor::<1>::from_floats([0.4], &device);
        let raw = model.forward_uncapped(x.clone(), tau(), None);
        let capped = model.forward(x, tau(), None);
        assert_eq!(model.logit_softcap(), Some(0.5));
        soft_cap(raw.clone(), 0.5)
            .into_data()
            .assert_approx_eq::<f32>(&capped.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        let raw = raw.into_data().try_into_vec::<f32>().unwrap();
        assert!(
            raw.iter().any(|l| l.abs() > 0.5),
            "the cap must matter here"
        );
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
