//! `flm export --layout official`: a run's EMA weights in the layout of the paper's PyTorch
//! code, so its `DIT` loads them with `load_state_dict`:
//!
//! ```text
//! out/
//!   model.safetensors  the official state-dict names (no `backbone.` prefix), float32,
//!                      Linear weights as (out, in), and the `rotary_emb.inv_freq` buffer
//!   config.yaml        the `model` / `algo` entries `DIT(config, vocab_size)` reads
//!   tokenizer.json     the run's tokenizer, as is
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::official::{self, OfficialDims};
use super::transpose;
use crate::device::cpu_device;
use crate::model::ModelConfig;
use crate::train::checkpoint::{CheckpointError, write_atomic};
use crate::train::load_model;
use crate::train::params::flat_params;

/// Why a run cannot be exported in the official layout.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "{path} cannot be written in the official layout: {reason}\n  hint: export it in flm's own layout (leave out --layout)"
    )]
    Unsupported { path: PathBuf, reason: String },
}

/// What [`export_official`] wrote.
#[derive(Debug, Clone)]
pub struct OfficialExport {
    pub files: Vec<PathBuf>,
    /// Ways the official code will not compute exactly what flm does.
    pub notes: Vec<String>,
}

/// Writes the run at `run_dir` into `dest` (created if missing) in the official layout,
/// refusing to replace files already there.
pub fn export_official(run_dir: &Path, dest: &Path) -> Result<OfficialExport, ExportError> {
    export_official_to(run_dir, dest, false)
}

/// The files an official-layout export writes.
pub const OFFICIAL_FILES: [&str; 3] = ["model.safetensors", "config.yaml", "tokenizer.json"];

/// [`export_official`]; with `force`, files of the same names in `dest` are replaced (a folder
/// holding a training run is refused either way).
pub fn export_official_to(
    run_dir: &Path,
    dest: &Path,
    force: bool,
) -> Result<OfficialExport, ExportError> {
    let loaded = load_model(run_dir, &cpu_device())?;
    let model = &loaded.config.model;
    let unsupported = |reason: String| ExportError::Unsupported {
        path: run_dir.to_path_buf(),
        reason,
    };
    if model.causal {
        return Err(unsupported(
            "it is an autoregressive reference model, not a denoiser".into(),
        ));
    }
    if model.time_features != official::TIME_FEATURES {
        return Err(unsupported(format!(
            "it has {} time features; the official time embedder has {}",
            model.time_features,
            official::TIME_FEATURES
        )));
    }
    if model.attn_softcap != official::ATTENTION_SOFTCAP {
        return Err(unsupported(format!(
            "its attention logits are capped at {}; the official DiT caps them at {}",
            model.attn_softcap,
            official::ATTENTION_SOFTCAP
        )));
    }
    if same_dir(run_dir, dest) {
        return Err(CheckpointError::Mismatch {
            path: dest.to_path_buf(),
            reason: "the export folder is the run itself; choose another folder".into(),
        }
        .into());
    }
    crate::train::check_export_dest(dest, &OFFICIAL_FILES, force)?;
    let dims = OfficialDims {
        vocab_size: model.vocab_size,
        hidden_size: model.d_model,
        n_blocks: model.n_blocks,
        n_heads: model.n_heads,
        cond_dim: model.cond_dim,
        double_temb: model.two_times,
    };
    let notes = differences(model);

    let mut params = flat_params(&loaded.model);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for spec in dims.parameters() {
        let values = params
            .remove(&spec.flm)
            .expect("the run loaded, so it has every parameter")
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("float weights");
        let values = if spec.transpose {
            // flm holds (in, out) = (shape[1], shape[0]).
            transpose(&values, spec.shape[1], spec.shape[0])
        } else {
            values
        };
        tensors.push((spec.official, spec.shape, values));
    }
    drop(params);
    let tokenizer_path = loaded.run.tokenizer_path();
    let seq_len = model.seq_len;
    drop(loaded);
    let rotary = dims.rotary_buffer();
    tensors.push((
        official::ROTARY_BUFFER.to_string(),
        vec![rotary.len()],
        rotary,
    ));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(values.as_slice()),
            )
            .expect("the shape matches the values");
            (name.clone(), view)
        })
        .collect();
    // What `safetensors.torch.save_file` writes, so tools that look for it are content.
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata)).expect("serializing to memory");
    drop(tensors);

    fs::create_dir_all(dest).map_err(|source| CheckpointError::Io {
        path: dest.to_path_buf(),
        error: source,
    })?;
    let weights = dest.join("model.safetensors");
    write_atomic(&weights, &bytes)?;
    drop(bytes);
    let config = dest.join("config.yaml");
    write_atomic(&config, config_yaml(&dims, seq_len).as_bytes())?;
    let tokenizer = dest.join("tokenizer.json");
    let tokenizer_bytes = fs::read(&tokenizer_path).map_err(|source| CheckpointError::Io {
        path: tokenizer_path.clone(),
        error: source,
    })?;
    write_atomic(&tokenizer, &tokenizer_bytes)?;
    Ok(OfficialExport {
        files: vec![weights, config, tokenizer],
        notes,
    })
}

/// Where the official forward pass and algorithm differ from flm's for this model.
fn differences(model: &ModelConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if model.layer_norm_eps != ModelConfig::TORCH_LAYER_NORM_EPS {
        notes.push(format!(
            "flm's LayerNorm uses ε = {:e}, PyTorch's F.layer_norm {:e}: the official code's \
             outputs will differ slightly",
            model.layer_norm_eps,
            ModelConfig::TORCH_LAYER_NORM_EPS
        ));
    }
    if model.logit_softcap != Some(official::LOGIT_SOFTCAP) {
        let flm = model
            .logit_softcap
            .map_or_else(|| "no cap".to_string(), |cap| format!("a cap of {cap}"));
        notes.push(format!(
            "the model was trained with {flm} on its logits; the official algorithm applies \
             30·tanh(l/30) before the softmax"
        ));
    }
    notes
}

/// The configuration `DIT(config, vocab_size)` reads, laid out like the official Hydra
/// config (`OmegaConf.load` gives an object it accepts as is).
fn config_yaml(dims: &OfficialDims, seq_len: usize) -> String {
    let algo = if dims.double_temb {
        "flm_distill_double"
    } else {
        "flm"
    };
    format!(
        "# Written by flm {version} (`flm export --layout official`) for the DiT of\n\
         # github.com/david3684/flm: DIT(config, config.vocab_size).\n\
         vocab_size: {vocab}\n\
         model:\n  \
           hidden_size: {hidden}\n  \
           n_heads: {heads}\n  \
           n_blocks: {blocks}\n  \
           cond_dim: {cond}\n  \
           length: {seq_len}\n  \
           dropout: 0.0\n  \
           scale_by_sigma: false\n\
         algo:\n  \
           name: {algo}\n  \
           causal_attention: false\n  \
           double_temb: {double}\n  \
           learnable_loss_weighting: false\n",
        version = env!("CARGO_PKG_VERSION"),
        vocab = dims.vocab_size,
        hidden = dims.hidden_size,
        heads = dims.n_heads,
        blocks = dims.n_blocks,
        cond = dims.cond_dim,
        double = dims.double_temb,
    )
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_has_the_keys_the_official_dit_reads() {
        let dims = OfficialDims {
            vocab_size: 30522,
            hidden_size: 768,
            n_blocks: 12,
            n_heads: 12,
            cond_dim: 128,
            double_temb: true,
        };
        let yaml = config_yaml(&dims, 128);
        for line in [
            "vocab_size: 30522",
            "  hidden_size: 768",
            "  n_heads: 12",
            "  n_blocks: 12",
            "  cond_dim: 128",
            "  length: 128",
            "  name: flm_distill_double",
            "  double_temb: true",
            "  causal_attention: false",
        ] {
            assert!(yaml.lines().any(|l| l == line), "no `{line}` in\n{yaml}");
        }
    }

    #[test]
    fn flm_trained_models_are_told_how_the_official_code_differs() {
        let flm = ModelConfig::from_preset(crate::model::ModelPreset::Micro, 64, 16);
        assert_eq!(differences(&flm).len(), 2);
        let imported = super::super::model_config(
            &OfficialDims {
                vocab_size: 64,
                hidden_size: 64,
                n_blocks: 2,
                n_heads: 4,
                cond_dim: 128,
                double_temb: false,
            },
            16,
        );
        assert!(differences(&imported).is_empty());
    }
}
