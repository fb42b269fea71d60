//! Importing the paper's PyTorch checkpoints, `flm forward` and `flm export --layout official`,
//! checked against the outputs of the official code in `tests/fixtures/official-dit/` (its
//! README says how they were made).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Tensor, TensorData};
use flm::data::TokenizerKind;
use flm::device::cpu_device;
use flm::import::official::{OfficialDims, ROTARY_BUFFER};
use flm::import::{ImportError, ImportOptions, export_official, import_official};
use flm::model::ModelConfig;
use flm::train::{ImportFormat, ModelKind, WeightSet, load_model};

use crate::common::temp_dir;

/// Largest difference to the official logits accepted: float32 round-off of two orders of
/// summation, far below what a wrong layer (or the other weight set) gives.
const GOLDEN_TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/official-dit")
        .join(name)
}

fn tokenizer(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(name)
}

/// The float tensors of a safetensors file: name → (shape, values).
fn read_safetensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == safetensors::Dtype::F32)
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

fn golden() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    read_safetensors(&fixture("golden.safetensors"))
}

fn options(weights: WeightSet) -> ImportOptions {
    ImportOptions {
        tokenizer: Some(tokenizer("wordpiece.json")),
        weights,
        heads: None,
        seq_len: Some(12),
    }
}

/// Imports a fixture checkpoint into a fresh run directory.
fn import(ckpt: &str, weights: WeightSet) -> PathBuf {
    let run = temp_dir("import").join("run");
    import_official(&fixture(ckpt), &run, &options(weights)).expect("the fixture imports");
    run
}

/// The run's raw (uncapped) logits on the golden inputs.
fn logits_on_golden(run: &Path) -> Vec<f32> {
    let device = cpu_device();
    let loaded = load_model(run, &device).expect("the imported run loads");
    let golden = golden();
    let (x_shape, x) = golden["x"].clone();
    let x = Tensor::<3>::from_data(TensorData::new(x, x_shape), &device);
    let time = |name: &str| Tensor::<1>::from_floats(golden[name].1.as_slice(), &device);
    let tau_t = loaded.model.is_flow_map().then(|| time("tau_t"));
    loaded
        .model
        .forward_uncapped(x, time("tau"), tau_t)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn official_flm_checkpoint_gives_the_official_logits() {
    let run = import("flm.ckpt", WeightSet::Ema);
    let diff = max_abs_diff(&logits_on_golden(&run), &golden()["logits_flm"].1);
    eprintln!("FLM, EMA weights: max |flm − official| = {diff:e}");
    assert!(diff <= GOLDEN_TOLERANCE, "max abs difference {diff}");
}

#[test]
fn official_flow_map_checkpoint_gives_the_official_logits() {
    let run = import("fmlm.ckpt", WeightSet::Ema);
    let diff = max_abs_diff(&logits_on_golden(&run), &golden()["logits_fmlm"].1);
    eprintln!("FMLM, EMA weights: max |flm − official| = {diff:e}");
    assert!(diff <= GOLDEN_TOLERANCE, "max abs difference {diff}");
}

#[test]
fn the_online_weights_do_not_give_the_official_logits() {
    // The golden outputs come from the EMA weights: matching them above proves the EMA list
    // was used, and in the right order.
    for (ckpt, logits) in [("flm.ckpt", "logits_flm"), ("fmlm.ckpt", "logits_fmlm")] {
        let run = import(ckpt, WeightSet::Online);
        let diff = max_abs_diff(&logits_on_golden(&run), &golden()[logits].1);
        eprintln!("{ckpt}, online weights: max |flm − official| = {diff:e}");
        assert!(diff > 100.0 * GOLDEN_TOLERANCE, "{ckpt}: {diff}");
    }
}

#[test]
fn imported_runs_record_what_they_are() {
    let run = import("fmlm.ckpt", WeightSet::Ema);
    let loaded = load_model(&run, &cpu_device()).unwrap();
    let config = &loaded.config;
    assert_eq!(config.kind, ModelKind::FlowMap);
    let model = &config.model;
    let sizes = (
        model.vocab_size,
        model.d_model,
        model.n_blocks,
        model.n_heads,
        model.cond_dim,
        model.seq_len,
    );
    assert_eq!(sizes, (40, 32, 2, 4, 16, 12));
    assert!(model.two_times);
    assert_eq!(model.logit_softcap, Some(30.0));
    assert_eq!(model.attn_softcap, 50.0);
    assert_eq!(model.layer_norm_eps, ModelConfig::TORCH_LAYER_NORM_EPS);
    assert_eq!(config.data.tokenizer, TokenizerKind::Pretrained);
    let imported = config.imported_from.as_ref().unwrap();
    assert_eq!(imported.format, ImportFormat::LightningCheckpoint);
    assert_eq!(imported.weights, Some(WeightSet::Ema));
    assert!(imported.source.ends_with("fmlm.ckpt"));
    assert_eq!(loaded.tokenizer.kind(), TokenizerKind::Pretrained);
    // Only the chosen weights are kept.
    let mut files: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ".flm-lock",
            "config.json",
            "model.safetensors",
            "tokenizer.json"
        ],
        "the weights chosen, and the run lock the import held"
    );

    let flm = load_model(&import("flm.ckpt", WeightSet::Ema), &cpu_device()).unwrap();
    assert_eq!(flm.config.kind, ModelKind::Flm);
    assert!(!flm.model.is_flow_map());
}

#[test]
fn import_runs_on_a_worker_thread() {
    // What the app does: the import is plain data in, plain data out.
    let out = temp_dir("import-thread").join("run");
    let worker = std::thread::spawn(move || {
        import_official(&fixture("flm.ckpt"), &out, &options(WeightSet::Ema))
    });
    let summary = worker.join().unwrap().unwrap();
    assert_eq!(summary.kind, ModelKind::Flm);
    assert_eq!(summary.num_params, summary.config.model.num_params());
}

fn flm_command(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flm"))
        .args(args)
        .output()
        .expect("flm runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn flm_import_and_forward_on_the_command_line() {
    let dir = temp_dir("import-cli");
    let run = dir.join("fmlm");
    let output = flm_command(&[
        "import",
        "--from",
        path(&fixture("fmlm.ckpt")),
        "--out",
        path(&run),
        "--tokenizer",
        path(&tokenizer("wordpiece.json")),
        "--seq-len",
        "12",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("flow map (FMLM)"), "{stdout}");

    let out = dir.join("out.safetensors");
    let output = flm_command(&[
        "forward",
        "--ckpt",
        path(&run),
        "--input",
        path(&fixture("golden.safetensors")),
        "--out",
        path(&out),
        "--device",
        "cpu",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = read_safetensors(&out);
    let golden = golden();
    let (shape, logits) = &written["logits"];
    assert_eq!(shape, &[2, 12, 40]);
    let diff = max_abs_diff(logits, &golden["logits_fmlm"].1);
    assert!(diff <= GOLDEN_TOLERANCE, "forward: {diff}");
    // probs = softmax(30·tanh(l/30)) of the official logits.
    let expected: Vec<f32> = golden["logits_fmlm"]
        .1
        .chunks(40)
        .flat_map(|row| {
            let capped: Vec<f32> = row.iter().map(|l| 30.0 * (l / 30.0).tanh()).collect();
            let max = capped.iter().copied().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = capped.iter().map(|c| (c - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.into_iter().map(move |e| e / sum)
        })
        .collect();
    let diff = max_abs_diff(&written["probs"].1, &expected);
    assert!(diff <= 1e-5, "probs: {diff}");

    // An FLM takes one time: the golden file's `tau_t` is left unused, and said so.
    let flm = dir.join("flm");
    let output = flm_command(&[
        "import",
        "--from",
        path(&fixture("flm.ckpt")),
        "--out",
        path(&flm),
        "--tokenizer",
        path(&tokenizer("wordpiece.json")),
        "--seq-len",
        "12",
    ]);
    assert!(output.status.success());
    let output = flm_command(&[
        "forward",
        "--ckpt",
        path(&flm),
        "--input",
        path(&fixture("golden.safetensors")),
        "--out",
        path(&out),
        "--device",
        "cpu",
    ]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("`tau_t` was not used"));
    let diff = max_abs_diff(&read_safetensors(&out)["logits"].1, &golden["logits_flm"].1);
    assert!(diff <= GOLDEN_TOLERANCE, "forward FLM: {diff}");
}

#[test]
fn imported_models_sample_with_flm_sample() {
    let run = import("fmlm.ckpt", WeightSet::Ema);
    let output = flm_command(&[
        "sample",
        "--ckpt",
        path(&run),
        "--steps",
        "2",
        "--n",
        "2",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let samples: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(samples.len(), 2);
    for sample in samples {
        assert_eq!(sample["tokens"].as_array().unwrap().len(), 12);
        assert!(sample["text"].is_string());
    }
}

/// The state dict's names and shapes in a Lightning checkpoint, without `backbone.` and
/// torch.compile's infix, read with the same crate flm uses, but independently of flm.
fn fixture_state_dict(ckpt: &str) -> BTreeMap<String, Vec<usize>> {
    let reader = pytorch_reader::PytorchReader::with_top_level_key(fixture(ckpt), "state_dict")
        .expect("the fixture opens");
    reader
        .tensors()
        .iter()
        .map(|(name, tensor)| {
            let name = name
                .strip_prefix("backbone.")
                .unwrap()
                .replace("_orig_mod.", "");
            (name, tensor.shape().to_vec())
        })
        .collect()
}

#[test]
fn official_export_has_the_official_names_and_imports_back_identically() {
    for ckpt in ["flm.ckpt", "fmlm.ckpt"] {
        let run = import(ckpt, WeightSet::Ema);
        let export = temp_dir("export-official");
        let output = flm_command(&[
            "export",
            "--ckpt",
            path(&run),
            "--out",
            path(&export),
            "--layout",
            "official",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Exactly the state dict `DIT.load_state_dict` expects (strict): every name, each
        // with its PyTorch shape, Linear weights as (out, in).
        let exported: BTreeMap<String, Vec<usize>> =
            read_safetensors(&export.join("model.safetensors"))
                .into_iter()
                .map(|(name, (shape, _))| (name, shape))
                .collect();
        assert_eq!(exported, fixture_state_dict(ckpt), "{ckpt}");
        let yaml = std::fs::read_to_string(export.join("config.yaml")).unwrap();
        for line in [
            "  hidden_size: 32",
            "  n_heads: 4",
            "  n_blocks: 2",
            "  cond_dim: 16",
            "vocab_size: 40",
            "  length: 12",
        ] {
            assert!(yaml.lines().any(|l| l == line), "no `{line}` in\n{yaml}");
        }
        assert!(export.join("tokenizer.json").is_file());

        // And back: the folder imports (tokenizer and length from its files) to the same model.
        let again = temp_dir("reimport").join("run");
        let summary = import_official(&export, &again, &ImportOptions::default()).unwrap();
        assert_eq!(summary.seq_len_from, "config.yaml");
        let imported = summary.config.imported_from.as_ref().unwrap();
        assert_eq!(imported.format, ImportFormat::OfficialSafetensors);
        assert_eq!(imported.weights, None);
        let first = logits_on_golden(&run);
        let second = logits_on_golden(&again);
        assert_eq!(first, second, "{ckpt}: re-imported logits differ");
        let mut a = load_model(&run, &cpu_device()).unwrap().config;
        let mut b = summary.config.clone();
        a.imported_from = None;
        b.imported_from = None;
        a.data.source.clear();
        b.data.source.clear();
        assert_eq!(a, b);
    }
}

mod refusals;
mod torch_file;
