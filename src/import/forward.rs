//! `flm forward`: one pass of a run's network on inputs read from a safetensors file, with its
//! outputs written to another, so flm can be checked against the paper's PyTorch code (or any
//! other implementation) number by number.
//!
//! Input: `x` (B, L, V) float32, any points (noisy one-hots, soft distributions), `tau` (B)
//! the network's time and, for flow maps, `tau_t` (B) the second time (an FLM ignores it, as
//! its network has no second time embedder; other tensors are ignored too). Output: `logits`
//! (B, L, V), the network's raw output, before the model's logit cap (what PyTorch's
//! `DIT.forward` returns), and `probs` (B, L, V), the softmax of the capped logits: the
//! denoiser's distribution that flm's samplers use.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use thiserror::Error;

use crate::train::checkpoint::{CheckpointError, write_atomic};
use crate::train::load_model;

/// Everything that can go wrong in [`forward_file`].
#[derive(Debug, Error)]
pub enum ForwardError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {reason}\n  hint: the input holds `x` (B, L, V) and `tau` (B) as float32, and `tau_t` (B) for a flow map, with V the model's vocabulary ({vocab})"
    )]
    Input {
        path: PathBuf,
        reason: String,
        vocab: usize,
    },
}

/// What [`forward_file`] computed.
#[derive(Debug, Clone)]
pub struct ForwardSummary {
    pub batch: usize,
    pub seq_len: usize,
    pub vocab: usize,
    /// Whether the model took the second time `tau_t`.
    pub flow_map: bool,
    /// Whether the input's `tau_t` was left unused (the model is an FLM).
    pub ignored_tau_t: bool,
    /// The cap applied before `probs`' softmax, if the model has one.
    pub logit_softcap: Option<f32>,
    /// Seconds spent in the network.
    pub secs: f64,
}

/// Runs the model of the run directory `ckpt` on `input`'s tensors (on `device`) and writes
/// `logits` and `probs` to `output`.
pub fn forward_file(
    ckpt: &Path,
    input: &Path,
    output: &Path,
    device: &Device,
) -> Result<ForwardSummary, ForwardError> {
    let loaded = load_model(ckpt, device)?;
    let model = &loaded.model;
    let vocab = model.vocab_size();
    let bad = |reason: String| ForwardError::Input {
        path: input.to_path_buf(),
        reason,
        vocab,
    };
    let bytes = fs::read(input).map_err(|source| ForwardError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let (x_shape, x) = read_f32(&tensors, "x").map_err(&bad)?;
    let &[batch, seq_len, width] = x_shape.as_slice() else {
        return Err(bad(format!("`x` has shape {x_shape:?}, not (B, L, V)")));
    };
    if width != vocab {
        return Err(bad(format!(
            "`x` has {width} values per position but the model's vocabulary has {vocab}"
        )));
    }
    let time = |name: &str| -> Result<Option<Vec<f32>>, ForwardError> {
        if tensors.tensor(name).is_err() {
            return Ok(None);
        }
        let (shape, values) = read_f32(&tensors, name).map_err(&bad)?;
        if shape != [batch] {
            return Err(bad(format!(
                "`{name}` has shape {shape:?}, not ({batch},): one time per example"
            )));
        }
        Ok(Some(values))
    };
    let tau = time("tau")?.ok_or_else(|| bad("`tau` is missing".into()))?;
    let tau_t = time("tau_t")?;
    let flow_map = model.is_flow_map();
    if flow_map && tau_t.is_none() {
        return Err(bad("the model is a flow map: `tau_t` is missing".into()));
    }
    let ignored_tau_t = !flow_map && tau_t.is_some();
    let tau_t = tau_t.filter(|_| flow_map);

    let started = Instant::now();
    let x = Tensor::<3>::from_data(TensorData::new(x, [batch, seq_len, vocab]), device);
    let times = |values: Vec<f32>| Tensor::<1>::from_data(TensorData::new(values, [batch]), device);
    let logits = model.forward_uncapped(x, times(tau), tau_t.map(times));
    let probs = softmax(model.cap_logits(logits.clone()), 2);
    let logits: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32");
    let probs: Vec<f32> = probs
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32");
    let secs = started.elapsed().as_secs_f64();

    let shape = vec![batch, seq_len, vocab];
    let views = [("logits", &logits), ("probs", &probs)].map(|(name, values)| {
        let view = safetensors::tensor::TensorView::new(
            Dtype::F32,
            shape.clone(),
            bytemuck::cast_slice(values.as_slice()),
        )
        .expect("the shape matches the values");
        (name.to_string(), view)
    });
    let cap = model.logit_softcap();
    let metadata: HashMap<String, String> = [(
        "logit_softcap".to_string(),
        cap.map_or_else(|| "none".to_string(), |c| c.to_string()),
    )]
    .into_iter()
    .collect();
    let bytes = safetensors::serialize(views, Some(metadata)).expect("serializing to memory");
    write_atomic(output, &bytes)?;
    Ok(ForwardSummary {
        batch,
        seq_len,
        vocab,
        flow_map,
        ignored_tau_t,
        logit_softcap: cap,
        secs,
    })
}

/// A float tensor of the input as f32 values and its shape.
fn read_f32(tensors: &SafeTensors<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let view = tensors
        .tensor(name)
        .map_err(|_| format!("`{name}` is missing"))?;
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => return Err(format!("`{name}` is {other:?}, not float32")),
    };
    Ok((view.shape().to_vec(), values))
}
