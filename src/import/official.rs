//! The paper's PyTorch DiT (`models/dit.py` of github.com/david3684/flm) as tensors: the names
//! of its state dict, the order of its `named_parameters()` (which orders the EMA list of a
//! Lightning checkpoint), its sizes as its tensors' shapes tell them, and where each tensor
//! lives in flm's [`crate::model::Dit`].
//!
//! Module by module, the two networks compute the same thing:
//!
//! | official | flm |
//! |---|---|
//! | `vocab_embed.embedding` (V×d), `x·E` for a (B, L, V) input | `embedding` |
//! | `sigma_map.mlp.{0,2}`: 256 features `cos ‖ sin`, frequencies `10000^(−k/128)`, SiLU | `time_s.{hidden,out}` |
//! | `sigma_map_prime.mlp.{0,2}`, added to `sigma_map` before the SiLU (FMLM) | `time_t.{hidden,out}` |
//! | `blocks.N.norm1`, `norm2`: `F.layer_norm` (ε 1e-5, no bias) times a weight | `norm_attn`, `norm_mlp` (ε from the config) |
//! | `blocks.N.attn_qkv` (no bias), split `(three h d)`, rotate-half rotary, scores capped at 50 | `attn.qkv` |
//! | `blocks.N.attn_out` (no bias) | `attn.out` |
//! | `blocks.N.mlp.0`, GELU (tanh form), `mlp.2` | `mlp_in`, `mlp_out` |
//! | `blocks.N.adaLN_modulation`: shift, scale, gate (attention) then shift, scale, gate (MLP) | `ada_ln` |
//! | `output_layer.{norm_final, adaLN_modulation (shift, scale), linear}` | `final_layer.{norm, ada_ln, to_logits}` |
//! | `rotary_emb.inv_freq` (a buffer: `10000^(−2i/head_dim)`) | computed in `rotary_tables` |
//!
//! PyTorch's `Linear` stores its weight as (out, in), Burn's as (in, out): those tensors are
//! transposed on the way in and out.

use std::collections::{BTreeMap, BTreeSet};

/// Width of the sinusoidal time features: the official `TimestepEmbedder` fixes it.
pub const TIME_FEATURES: usize = 256;
/// Soft cap on attention logits in the official `DDiTBlock`.
pub const ATTENTION_SOFTCAP: f32 = 50.0;
/// Soft cap `30·tanh(l/30)` the paper's v2 algorithm puts on the network's logits before the
/// softmax.
pub const LOGIT_SOFTCAP: f32 = 30.0;
/// The one buffer in the state dict: rotary inverse frequencies, one per pair of a head's
/// dimensions, from which the number of heads follows.
pub const ROTARY_BUFFER: &str = "rotary_emb.inv_freq";
/// Base of the rotary frequencies (`Rotary(dim, base=10_000)`), which flm's rotary tables use.
const ROTARY_BASE: f64 = 10_000.0;
/// Prefix of the optional learnable loss weighting the distillation configs enable: trained
/// alongside the network (so it is in the EMA list) but not part of its forward pass.
const LOSS_WEIGHTING: &str = "learnable_loss_weighting.";

/// The sizes of an official DiT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfficialDims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_blocks: usize,
    pub n_heads: usize,
    pub cond_dim: usize,
    /// Whether the network has the second time embedder `sigma_map_prime` (an FMLM,
    /// `algo.double_temb`).
    pub double_temb: bool,
}

/// One parameter of the official DiT and its place in flm's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The state-dict name, without `backbone.`.
    pub official: String,
    /// The parameter path in flm's `Dit` (the name in flm's safetensors files).
    pub flm: String,
    /// Shape in the official layout.
    pub shape: Vec<usize>,
    /// A `Linear` weight: (out, in) there, (in, out) in flm.
    pub transpose: bool,
}

impl ParamSpec {
    /// Shape in flm's layout.
    pub fn flm_shape(&self) -> Vec<usize> {
        if self.transpose {
            vec![self.shape[1], self.shape[0]]
        } else {
            self.shape.clone()
        }
    }
}

impl OfficialDims {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_heads
    }

    /// The network's parameters in the order of `named_parameters()`, with their flm paths.
    pub fn parameters(&self) -> Vec<ParamSpec> {
        let (v, d, c, f) = (
            self.vocab_size,
            self.hidden_size,
            self.cond_dim,
            TIME_FEATURES,
        );
        let mut specs = vec![ParamSpec {
            official: "vocab_embed.embedding".into(),
            flm: "embedding".into(),
            shape: vec![v, d],
            transpose: false,
        }];
        let embedders = [("sigma_map", "time_s")]
            .into_iter()
            .chain(self.double_temb.then_some(("sigma_map_prime", "time_t")));
        for (official, flm) in embedders {
            push_linear(
                &mut specs,
                &format!("{official}.mlp.0"),
                &format!("{flm}.hidden"),
                f,
                c,
                true,
            );
            push_linear(
                &mut specs,
                &format!("{official}.mlp.2"),
                &format!("{flm}.out"),
                c,
                c,
                true,
            );
        }
        for block in 0..self.n_blocks {
            let name = format!("blocks.{block}");
            let norm = |official: &str, flm: &str| ParamSpec {
                official: format!("{name}.{official}.weight"),
                flm: format!("{name}.{flm}.weight"),
                shape: vec![d],
                transpose: false,
            };
            specs.push(norm("norm1", "norm_attn"));
            push_linear(
                &mut specs,
                &format!("{name}.attn_qkv"),
                &format!("{name}.attn.qkv"),
                d,
                3 * d,
                false,
            );
            push_linear(
                &mut specs,
                &format!("{name}.attn_out"),
                &format!("{name}.attn.out"),
                d,
                d,
                false,
            );
            specs.push(norm("norm2", "norm_mlp"));
            push_linear(
                &mut specs,
                &format!("{name}.mlp.0"),
                &format!("{name}.mlp_in"),
                d,
                4 * d,
                true,
            );
            push_linear(
                &mut specs,
                &format!("{name}.mlp.2"),
                &format!("{name}.mlp_out"),
                4 * d,
                d,
                true,
            );
            push_linear(
                &mut specs,
                &format!("{name}.adaLN_modulation"),
                &format!("{name}.ada_ln"),
                c,
                6 * d,
                true,
            );
        }
        specs.push(ParamSpec {
            official: "output_layer.norm_final.weight".into(),
            flm: "final_layer.norm.weight".into(),
            shape: vec![d],
            transpose: false,
        });
        push_linear(
            &mut specs,
            "output_layer.linear",
            "final_layer.to_logits",
            d,
            v,
            true,
        );
        push_linear(
            &mut specs,
            "output_layer.adaLN_modulation",
            "final_layer.ada_ln",
            c,
            2 * d,
            true,
        );
        specs
    }

    /// The rotary buffer the official model holds for these sizes.
    pub fn rotary_buffer(&self) -> Vec<f32> {
        let head_dim = self.head_dim();
        (0..head_dim / 2)
            .map(|i| (1.0 / ROTARY_BASE.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect()
    }
}

/// Appends a `Linear(d_in → d_out)`: weight then bias, as `named_parameters()` lists them.
fn push_linear(
    specs: &mut Vec<ParamSpec>,
    official: &str,
    flm: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
) {
    specs.push(ParamSpec {
        official: format!("{official}.weight"),
        flm: format!("{flm}.weight"),
        shape: vec![d_out, d_in],
        transpose: true,
    });
    if bias {
        specs.push(ParamSpec {
            official: format!("{official}.bias"),
            flm: format!("{flm}.bias"),
            shape: vec![d_out],
            transpose: false,
        });
    }
}

/// Why a set of tensors is not an official DiT flm can run.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutProblem {
    /// Tensors the network needs are absent (names without `backbone.`), or tensors flm does
    /// not know are present.
    Names {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    /// A tensor has the wrong shape for the sizes the others imply.
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The number of heads cannot be worked out, or disagrees with the rotary buffer.
    Heads(String),
}

/// Names of the tensors every official DiT has, to list as missing from a file that has none.
pub fn core_names() -> Vec<String> {
    [
        "vocab_embed.embedding",
        "sigma_map.mlp.0.weight",
        "blocks.0.attn_qkv.weight",
        "output_layer.linear.weight",
        ROTARY_BUFFER,
    ]
    .map(String::from)
    .to_vec()
}

/// Reads the sizes from the shapes of a state dict (names without `backbone.`), checks every
/// tensor is where and what the official network has, and returns the sizes with the names of
/// any learnable-loss-weighting parameters (in `named_parameters()` order).
///
/// `heads` overrides the number of heads; without it the rotary buffer gives it
/// (`n_heads = hidden / (2·len(inv_freq))`), and with both they must agree.
pub fn infer_dims(
    shapes: &BTreeMap<String, Vec<usize>>,
    heads: Option<usize>,
) -> Result<(OfficialDims, Vec<String>), LayoutProblem> {
    let shape_of = |name: &str| shapes.get(name).cloned();
    // The rotary buffer only tells the number of heads: without it `heads_of` asks for --heads.
    let missing_core: Vec<String> = core_names()
        .into_iter()
        .filter(|name| name != ROTARY_BUFFER && !shapes.contains_key(name))
        .collect();
    if !missing_core.is_empty() {
        return Err(LayoutProblem::Names {
            missing: missing_core,
            unexpected: Vec::new(),
        });
    }
    let embedding = shape_of("vocab_embed.embedding").expect("checked above");
    let time_in = shape_of("sigma_map.mlp.0.weight").expect("checked above");
    let two_d = |name: &str, shape: &[usize]| match shape {
        [a, b] => Ok((*a, *b)),
        other => Err(LayoutProblem::Shape {
            name: name.to_string(),
            expected: vec![0, 0],
            found: other.to_vec(),
        }),
    };
    let (vocab_size, hidden_size) = two_d("vocab_embed.embedding", &embedding)?;
    let (cond_dim, _) = two_d("sigma_map.mlp.0.weight", &time_in)?;
    let n_blocks = shapes
        .keys()
        .filter_map(|name| name.strip_prefix("blocks."))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |last| last + 1);
    let n_heads = heads_of(shapes.get(ROTARY_BUFFER), hidden_size, heads)?;
    let dims = OfficialDims {
        vocab_size,
        hidden_size,
        n_blocks,
        n_heads,
        cond_dim,
        double_temb: shapes
            .keys()
            .any(|name| name.starts_with("sigma_map_prime.")),
    };
    let specs = dims.parameters();
    let loss_weighting = loss_weighting_order(shapes);
    let known: BTreeSet<&str> = specs
        .iter()
        .map(|spec| spec.official.as_str())
        .chain([ROTARY_BUFFER])
        .chain(loss_weighting.iter().map(String::as_str))
        .collect();
    let missing: Vec<String> = specs
        .iter()
        .filter(|spec| !shapes.contains_key(&spec.official))
        .map(|spec| spec.official.clone())
        .collect();
    let unexpected: Vec<String> = shapes
        .keys()
        .filter(|name| !known.contains(name.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(LayoutProblem::Names {
            missing,
            unexpected,
        });
    }
    for spec in &specs {
        let found = &shapes[&spec.official];
        if *found != spec.shape {
            return Err(LayoutProblem::Shape {
                name: spec.official.clone(),
                expected: spec.shape.clone(),
                found: found.clone(),
            });
        }
    }
    Ok((dims, loss_weighting))
}

/// Heads from the rotary buffer and/or the user's `--heads`.
fn heads_of(
    buffer: Option<&Vec<usize>>,
    hidden: usize,
    requested: Option<usize>,
) -> Result<usize, LayoutProblem> {
    let from_buffer = match buffer {
        None => None,
        Some(shape) => {
            let pairs = match shape.as_slice() {
                [pairs] if *pairs > 0 => *pairs,
                other => {
                    return Err(LayoutProblem::Heads(format!(
                        "`{ROTARY_BUFFER}` has shape {other:?}, not one length"
                    )));
                }
            };
            if !hidden.is_multiple_of(2 * pairs) {
                return Err(LayoutProblem::Heads(format!(
                    "`{ROTARY_BUFFER}` has {pairs} frequencies, which do not divide the width \
                     {hidden} into heads"
                )));
            }
            Some(hidden / (2 * pairs))
        }
    };
    match (from_buffer, requested) {
        (Some(found), Some(asked)) if found != asked => Err(LayoutProblem::Heads(format!(
            "--heads {asked} disagrees with the checkpoint's rotary buffer, which implies \
             {found} heads"
        ))),
        (_, Some(0)) => Err(LayoutProblem::Heads("--heads must be at least 1".into())),
        (_, Some(asked))
            if !hidden.is_multiple_of(asked) || !(hidden / asked).is_multiple_of(2) =>
        {
            Err(LayoutProblem::Heads(format!(
                "--heads {asked} does not split the width {hidden} into heads of an even size"
            )))
        }
        (Some(found), _) => Ok(found),
        (None, Some(asked)) => Ok(asked),
        (None, None) => Err(LayoutProblem::Heads(format!(
            "the file has no `{ROTARY_BUFFER}` to tell the number of heads"
        ))),
    }
}

/// Checks the rotary buffer's values are the base-10000 frequencies flm computes: another
/// base would be a different model.
pub fn check_rotary_values(dims: &OfficialDims, values: &[f32]) -> Result<(), String> {
    let expected = dims.rotary_buffer();
    let off = expected
        .iter()
        .zip(values)
        .any(|(e, v)| (e - v).abs() > 1e-6 * e.abs().max(1e-3));
    if off || values.len() != expected.len() {
        return Err(format!(
            "`{ROTARY_BUFFER}` does not hold the base-10000 rotary frequencies flm computes"
        ));
    }
    Ok(())
}

/// The learnable loss weighting's parameter names present in `shapes`, in
/// `named_parameters()` order: its time embedders `s_embed` and `t_embed`, then its `mlp`.
fn loss_weighting_order(shapes: &BTreeMap<String, Vec<usize>>) -> Vec<String> {
    let mut order = Vec::new();
    for module in [
        "s_embed.mlp.0",
        "s_embed.mlp.2",
        "t_embed.mlp.0",
        "t_embed.mlp.2",
    ]
    .into_iter()
    .chain(["mlp.0", "mlp.2"])
    {
        for leaf in ["weight", "bias"] {
            let name = format!("{LOSS_WEIGHTING}{module}.{leaf}");
            if shapes.contains_key(&name) {
                order.push(name);
            }
        }
    }
    order
}

/// Every trainable parameter of the official model in `named_parameters()` order, the order of
/// a Lightning checkpoint's `ema.shadow_params`: the network's, with the loss weighting's
/// between the time embedders and the blocks (where the official `DIT.__init__` registers it).
pub fn named_parameters_order(dims: &OfficialDims, loss_weighting: &[String]) -> Vec<String> {
    let specs = dims.parameters();
    let embedders = 1 + 4 * (1 + dims.double_temb as usize);
    specs[..embedders]
        .iter()
        .map(|spec| spec.official.clone())
        .chain(loss_weighting.iter().cloned())
        .chain(specs[embedders..].iter().map(|spec| spec.official.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(double_temb: bool) -> OfficialDims {
        OfficialDims {
            vocab_size: 40,
            hidden_size: 32,
            n_blocks: 2,
            n_heads: 4,
            cond_dim: 16,
            double_temb,
        }
    }

    fn shapes_of(dims: &OfficialDims) -> BTreeMap<String, Vec<usize>> {
        dims.parameters()
            .into_iter()
            .map(|spec| (spec.official, spec.shape))
            .chain([(ROTARY_BUFFER.to_string(), vec![dims.head_dim() / 2])])
            .collect()
    }

    #[test]
    fn parameter_list_matches_the_official_count_and_order() {
        // 1 embedding + 4 per time embedder + 10 per block + 5 in the output layer.
        assert_eq!(dims(false).parameters().len(), 30);
        assert_eq!(dims(true).parameters().len(), 34);
        let names: Vec<String> = dims(true)
            .parameters()
            .into_iter()
            .map(|s| s.official)
            .collect();
        assert_eq!(names[0], "vocab_embed.embedding");
        assert_eq!(names[5], "sigma_map_prime.mlp.0.weight");
        assert_eq!(
            &names[9..19],
            &[
                "blocks.0.norm1.weight",
                "blocks.0.attn_qkv.weight",
                "blocks.0.attn_out.weight",
                "blocks.0.norm2.weight",
                "blocks.0.mlp.0.weight",
                "blocks.0.mlp.0.bias",
                "blocks.0.mlp.2.weight",
                "blocks.0.mlp.2.bias",
                "blocks.0.adaLN_modulation.weight",
                "blocks.0.adaLN_modulation.bias",
            ]
        );
        assert_eq!(names[33], "output_layer.adaLN_modulation.bias");
    }

    #[test]
    fn sizes_come_back_from_the_shapes() {
        for double_temb in [false, true] {
            let expected = dims(double_temb);
            let (found, extra) = infer_dims(&shapes_of(&expected), None).unwrap();
            assert_eq!(found, expected);
            assert!(extra.is_empty());
        }
    }

    #[test]
    fn heads_come_from_the_rotary_buffer_or_the_override() {
        let mut shapes = shapes_of(&dims(false));
        assert_eq!(infer_dims(&shapes, Some(4)).unwrap().0.n_heads, 4);
        assert!(matches!(
            infer_dims(&shapes, Some(2)),
            Err(LayoutProblem::Heads(reason)) if reason.contains("implies 4 heads")
        ));
        shapes.remove(ROTARY_BUFFER);
        assert!(matches!(
            infer_dims(&shapes, None),
            Err(LayoutProblem::Heads(reason)) if reason.contains("no `rotary_emb.inv_freq`")
        ));
        assert_eq!(infer_dims(&shapes, Some(8)).unwrap().0.n_heads, 8);
        assert!(matches!(
            infer_dims(&shapes, Some(3)),
            Err(LayoutProblem::Heads(_))
        ));
    }

    #[test]
    fn missing_unexpected_and_misshapen_tensors_are_named() {
        let mut shapes = shapes_of(&dims(false));
        shapes.remove("blocks.1.mlp.2.bias");
        shapes.insert("blocks.1.mystery".into(), vec![3]);
        match infer_dims(&shapes, None) {
            Err(LayoutProblem::Names {
                missing,
                unexpected,
            }) => {
                assert_eq!(missing, ["blocks.1.mlp.2.bias"]);
                assert_eq!(unexpected, ["blocks.1.mystery"]);
            }
            other => panic!("{other:?}"),
        }
        let mut shapes = shapes_of(&dims(false));
        shapes.insert("blocks.0.attn_out.weight".into(), vec![32, 31]);
        assert!(matches!(
            infer_dims(&shapes, None),
            Err(LayoutProblem::Shape { name, .. }) if name == "blocks.0.attn_out.weight"
        ));
    }

    #[test]
    fn the_loss_weighting_sits_between_the_time_embedders_and_the_blocks() {
        let dims = dims(true);
        let mut shapes = shapes_of(&dims);
        for name in ["mlp.2.bias", "s_embed.mlp.0.weight", "mlp.0.weight"] {
            shapes.insert(format!("{LOSS_WEIGHTING}{name}"), vec![1]);
        }
        let (found, extra) = infer_dims(&shapes, None).unwrap();
        assert_eq!(found, dims);
        let order = named_parameters_order(&dims, &extra);
        assert_eq!(order.len(), 37);
        assert_eq!(order[8], "sigma_map_prime.mlp.2.bias");
        assert_eq!(
            &order[9..12],
            &[
                "learnable_loss_weighting.s_embed.mlp.0.weight",
                "learnable_loss_weighting.mlp.0.weight",
                "learnable_loss_weighting.mlp.2.bias",
            ]
        );
        assert_eq!(order[12], "blocks.0.norm1.weight");
    }

    #[test]
    fn rotary_buffer_holds_base_ten_thousand_frequencies() {
        let dims = dims(false);
        let values = dims.rotary_buffer();
        assert_eq!(values.len(), 4);
        assert_eq!(values[0], 1.0);
        assert!((values[1] - 0.1).abs() < 1e-7); // 10000^(-2/8)
        check_rotary_values(&dims, &values).unwrap();
        let other: Vec<f32> = values.iter().map(|v| v * 0.9).collect();
        assert!(check_rotary_values(&dims, &other).is_err());
    }
}
