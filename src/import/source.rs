//! Reading the tensors of an official model from the two file layouts `flm import` accepts:
//! a PyTorch Lightning `.ckpt` written by the paper's trainer (through the `pytorch-reader`
//! crate, which parses `torch.save`'s zip and pickle without Python), and an official-layout
//! `model.safetensors` (what `flm export --layout official` writes).
//!
//! Opening reads names and shapes only; a tensor's values are read when the model is built,
//! one tensor at a time, and only those of the chosen weight set.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pytorch_reader::{DType, PytorchError, PytorchReader};

use super::ImportError;
use super::official::{self, OfficialDims};
use crate::train::{ImportFormat, WeightSet};

/// Where `config.yaml` (official layout) keeps the sequence length: `model.length`.
const LENGTH_KEY: &str = "length";

/// One tensor of the chosen weight set, not read yet.
pub(crate) enum Lazy {
    Torch(pytorch_reader::Tensor),
    Safetensors {
        file: Arc<Vec<u8>>,
        dtype: safetensors::Dtype,
        range: std::ops::Range<usize>,
    },
}

/// The tensors of an official model's chosen weight set, by state-dict name (without
/// `backbone.`), with what the file says besides.
pub(crate) struct OfficialSource {
    pub path: PathBuf,
    pub format: ImportFormat,
    pub dims: OfficialDims,
    pub tensors: BTreeMap<String, (Vec<usize>, Lazy)>,
    /// The weight set taken; `None` for a file holding just one.
    pub weights: Option<WeightSet>,
    /// The optimizer step a Lightning checkpoint was saved at.
    pub step: Option<u64>,
    /// The sequence length an official-layout folder's `config.yaml` gives.
    pub seq_len: Option<usize>,
    /// The `tokenizer.json` next to an official-layout `model.safetensors`.
    pub tokenizer: Option<PathBuf>,
}

impl OfficialSource {
    /// Opens `path`: a Lightning checkpoint, an official-layout `model.safetensors`, or a
    /// folder holding one. The layout is recognised from the file's first bytes.
    pub fn open(
        path: &Path,
        weights: WeightSet,
        heads: Option<usize>,
    ) -> Result<Self, ImportError> {
        let file = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.to_path_buf()
        };
        let header = read_header(&file)?;
        if looks_like_safetensors(&header) {
            open_safetensors(&file, weights, heads)
        } else {
            // The reader recognises every container `torch.save` writes, and says so when
            // the file is none of them.
            open_lightning(&file, weights, heads)
        }
    }

    /// Reads the values of the tensor `name` as f32, row-major.
    pub fn read(&self, name: &str) -> Result<Vec<f32>, ImportError> {
        let (_, lazy) = self
            .tensors
            .get(name)
            .ok_or_else(|| ImportError::NotOfficialDit {
                path: self.path.clone(),
                missing: vec![name.to_string()],
                unexpected: Vec::new(),
            })?;
        match lazy {
            Lazy::Torch(tensor) => {
                let bytes = tensor.read().map_err(|e| ImportError::Damaged {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
                torch_to_f32(name, tensor.dtype(), &bytes)
            }
            Lazy::Safetensors { file, dtype, range } => {
                let bytes = &file[range.clone()];
                let dtype = match dtype {
                    safetensors::Dtype::F32 => DType::F32,
                    safetensors::Dtype::F16 => DType::F16,
                    safetensors::Dtype::BF16 => DType::BF16,
                    safetensors::Dtype::F64 => DType::F64,
                    other => {
                        return Err(ImportError::UnsupportedDtype {
                            name: name.to_string(),
                            dtype: format!("{other:?}"),
                        });
                    }
                };
                torch_to_f32(name, dtype, bytes)
            }
        }
    }
}

fn read_header(path: &Path) -> Result<Vec<u8>, ImportError> {
    let mut header = Vec::new();
    fs::File::open(path)
        .and_then(|file| file.take(16).read_to_end(&mut header))
        .map_err(|source| ImportError::io(path, source))?;
    Ok(header)
}

/// A safetensors file opens with the header length (little-endian u64) and the JSON's `{`.
fn looks_like_safetensors(header: &[u8]) -> bool {
    header.len() >= 9 && header[8] == b'{'
}

/// State-dict names as the official loader sees them: without `backbone.`, and without
/// torch.compile's `_orig_mod.` segment (`backbone._orig_mod.blocks.0...`).
fn official_name(key: &str) -> String {
    key.split('.')
        .filter(|segment| *segment != "_orig_mod")
        .collect::<Vec<_>>()
        .join(".")
}

fn open_lightning(
    path: &Path,
    weights: WeightSet,
    heads: Option<usize>,
) -> Result<OfficialSource, ImportError> {
    let reader = PytorchReader::new(path).map_err(|error| reader_error(path, error))?;
    let mut state = BTreeMap::new();
    let mut ema = BTreeMap::new();
    for (key, tensor) in reader.into_tensors() {
        if let Some(rest) = key.strip_prefix("state_dict.backbone.") {
            state.insert(official_name(rest), tensor);
        } else if let Some(index) = key
            .strip_prefix("ema.shadow_params.")
            .and_then(|index| index.parse::<usize>().ok())
        {
            ema.insert(index, tensor);
        }
    }
    if state.is_empty() {
        return Err(ImportError::NotOfficialDit {
            path: path.to_path_buf(),
            missing: official::core_names(),
            unexpected: Vec::new(),
        });
    }
    let shapes: BTreeMap<String, Vec<usize>> = state
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.shape().to_vec()))
        .collect();
    let (dims, loss_weighting) = official::infer_dims(&shapes, heads)
        .map_err(|problem| ImportError::layout(path, problem))?;
    check_rotary(path, &dims, state.get(official::ROTARY_BUFFER))?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Lazy)> = BTreeMap::new();
    match weights {
        WeightSet::Online => {
            for (name, tensor) in state {
                tensors.insert(name, (tensor.shape().to_vec(), Lazy::Torch(tensor)));
            }
        }
        WeightSet::Ema => {
            if ema.is_empty() {
                return Err(ImportError::NoEma {
                    path: path.to_path_buf(),
                });
            }
            let order = official::named_parameters_order(&dims, &loss_weighting);
            let contiguous = ema.keys().copied().eq(0..ema.len());
            if ema.len() != order.len() || !contiguous {
                return Err(ImportError::EmaCount {
                    path: path.to_path_buf(),
                    found: ema.len(),
                    expected: order.len(),
                });
            }
            for ((index, tensor), name) in ema.into_iter().zip(order) {
                let expected = &shapes[&name];
                if tensor.shape() != expected.as_slice() {
                    return Err(ImportError::EmaShape {
                        path: path.to_path_buf(),
                        index,
                        name,
                        expected: expected.clone(),
                        found: tensor.shape().to_vec(),
                    });
                }
                tensors.insert(name, (expected.clone(), Lazy::Torch(tensor)));
            }
            // The buffer is not a parameter: it is only in the state dict.
            if let Some(buffer) = state.remove(official::ROTARY_BUFFER) {
                let shape = buffer.shape().to_vec();
                tensors.insert(official::ROTARY_BUFFER.into(), (shape, Lazy::Torch(buffer)));
            }
        }
    }
    let step = match PytorchReader::read_pickle_data(path, Some("global_step")) {
        Ok(pytorch_reader::PickleValue::Int(step)) => u64::try_from(step).ok(),
        _ => None,
    };
    Ok(OfficialSource {
        path: path.to_path_buf(),
        format: ImportFormat::LightningCheckpoint,
        dims,
        tensors,
        weights: Some(weights),
        step,
        seq_len: None,
        tokenizer: None,
    })
}

fn open_safetensors(
    path: &Path,
    weights: WeightSet,
    heads: Option<usize>,
) -> Result<OfficialSource, ImportError> {
    if weights == WeightSet::Online {
        return Err(ImportError::OneWeightSet {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(|source| ImportError::io(path, source))?;
    let (header_len, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| ImportError::Damaged {
            path: path.to_path_buf(),
            reason: format!("unreadable safetensors file ({e})"),
        })?;
    let data_start = 8 + header_len;
    let mut tensors = BTreeMap::new();
    for (key, info) in metadata.tensors() {
        let name = official_name(key.strip_prefix("backbone.").unwrap_or(&key));
        let (begin, end) = info.data_offsets;
        let range = data_start + begin..data_start + end;
        if range.end > bytes.len() {
            return Err(ImportError::Damaged {
                path: path.to_path_buf(),
                reason: format!("tensor `{key}` runs past the end of the file"),
            });
        }
        tensors.insert(name, (info.shape.clone(), info.dtype, range));
    }
    let shapes = tensors
        .iter()
        .map(|(name, (shape, _, _))| (name.clone(), shape.clone()))
        .collect();
    let (dims, _) = official::infer_dims(&shapes, heads)
        .map_err(|problem| ImportError::layout(path, problem))?;
    let file = Arc::new(bytes);
    let tensors: BTreeMap<String, (Vec<usize>, Lazy)> = tensors
        .into_iter()
        .map(|(name, (shape, dtype, range))| {
            let lazy = Lazy::Safetensors {
                file: Arc::clone(&file),
                dtype,
                range,
            };
            (name, (shape, lazy))
        })
        .collect();
    let folder = path.parent().unwrap_or(Path::new("."));
    let tokenizer = Some(folder.join("tokenizer.json")).filter(|p| p.is_file());
    let source = OfficialSource {
        path: path.to_path_buf(),
        format: ImportFormat::OfficialSafetensors,
        dims,
        tensors,
        weights: None,
        step: None,
        seq_len: read_length(&folder.join("config.yaml")),
        tokenizer,
    };
    if source.tensors.contains_key(official::ROTARY_BUFFER) {
        let values = source.read(official::ROTARY_BUFFER)?;
        official::check_rotary_values(&source.dims, &values)
            .map_err(|reason| ImportError::layout(path, official::LayoutProblem::Heads(reason)))?;
    }
    Ok(source)
}

/// `model.length` from an official-layout `config.yaml`. Only the `length: N` line is
/// looked at (the rest of the sizes come from the tensors' shapes), so a line scan does
/// instead of a YAML parser; a file without one gives `None`.
fn read_length(path: &Path) -> Option<usize> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == LENGTH_KEY)
            .then(|| value.split('#').next()?.trim().parse().ok())
            .flatten()
    })
}

fn check_rotary(
    path: &Path,
    dims: &OfficialDims,
    buffer: Option<&pytorch_reader::Tensor>,
) -> Result<(), ImportError> {
    let Some(buffer) = buffer else {
        return Ok(());
    };
    let bytes = buffer.read().map_err(|e| ImportError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let values = torch_to_f32(official::ROTARY_BUFFER, buffer.dtype(), &bytes)?;
    official::check_rotary_values(dims, &values)
        .map_err(|reason| ImportError::layout(path, official::LayoutProblem::Heads(reason)))
}

/// Native-endian bytes of `dtype` (what both readers hand out) to f32.
fn torch_to_f32(name: &str, dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, ImportError> {
    let values = match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(ImportError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(values)
}

/// Sorts the reader's errors into "not a checkpoint" and "damaged".
fn reader_error(path: &Path, error: PytorchError) -> ImportError {
    match error {
        PytorchError::Io(source) => ImportError::io(path, source),
        PytorchError::Zip(e) => ImportError::Damaged {
            path: path.to_path_buf(),
            reason: format!("the zip archive is incomplete or corrupt ({e})"),
        },
        PytorchError::InvalidFormat(reason) => ImportError::NotACheckpoint {
            path: path.to_path_buf(),
            // The message repeats what ours says first.
            reason: reason
                .trim_start_matches("not a PyTorch checkpoint: ")
                .to_string(),
        },
        other => ImportError::NotACheckpoint {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_infixes_and_prefixes_are_dropped() {
        assert_eq!(
            official_name("_orig_mod.blocks.0.norm1.weight"),
            "blocks.0.norm1.weight"
        );
        assert_eq!(
            official_name("vocab_embed.embedding"),
            "vocab_embed.embedding"
        );
    }

    #[test]
    fn length_is_read_from_config_yaml() {
        let dir = std::env::temp_dir().join(format!("flm-import-yaml-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        fs::write(
            &path,
            "vocab_size: 40\nmodel:\n  hidden_size: 32\n  length: 12  # L\n",
        )
        .unwrap();
        assert_eq!(read_length(&path), Some(12));
        fs::write(&path, "model:\n  hidden_size: 32\n").unwrap();
        assert_eq!(read_length(&path), None);
        assert_eq!(read_length(&dir.join("absent.yaml")), None);
    }
}
