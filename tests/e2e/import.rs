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
        ["config.json", "model.safetensors", "tokenizer.json"]
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

/// Writes PyTorch `torch.save` zip files: enough of pickle protocol 2 and of the zip format
/// (stored entries) to make Lightning-like checkpoints with chosen contents, for the error
/// cases the fixtures cannot show.
mod torch_file {
    use std::collections::BTreeMap;
    use std::path::Path;

    pub enum Value {
        Tensor(Vec<usize>, Vec<f32>),
        Dict(Vec<(String, Value)>),
        List(Vec<Value>),
        Int(i64),
    }

    #[derive(Default)]
    struct Pickle {
        out: Vec<u8>,
        storages: Vec<Vec<u8>>,
    }

    impl Pickle {
        fn string(&mut self, s: &str) {
            self.out.push(b'X');
            self.out.extend((s.len() as u32).to_le_bytes());
            self.out.extend(s.as_bytes());
        }
        fn int(&mut self, v: i64) {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        }
        fn global(&mut self, module: &str, name: &str) {
            self.out.push(b'c');
            self.out.extend(format!("{module}\n{name}\n").as_bytes());
        }
        fn value(&mut self, value: &Value) {
            match value {
                Value::Int(v) => self.int(*v),
                Value::Dict(items) => {
                    self.out.extend(b"}(");
                    for (key, value) in items {
                        self.string(key);
                        self.value(value);
                    }
                    self.out.push(b'u');
                }
                Value::List(items) => {
                    self.out.extend(b"](");
                    for item in items {
                        self.value(item);
                    }
                    self.out.push(b'e');
                }
                Value::Tensor(shape, values) => {
                    let key = self.storages.len();
                    self.storages
                        .push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
                    self.global("torch._utils", "_rebuild_tensor_v2");
                    self.out.push(b'(');
                    // Persistent id: ('storage', FloatStorage, key, location, numel).
                    self.out.push(b'(');
                    self.string("storage");
                    self.global("torch", "FloatStorage");
                    self.string(&key.to_string());
                    self.string("cpu");
                    self.int(values.len() as i64);
                    self.out.extend(b"tQ");
                    self.int(0);
                    self.out.push(b'(');
                    for &d in shape {
                        self.int(d as i64);
                    }
                    self.out.push(b't');
                    self.out.push(b'(');
                    let mut stride = 1;
                    let mut strides = Vec::new();
                    for &d in shape.iter().rev() {
                        strides.push(stride);
                        stride *= d;
                    }
                    for s in strides.into_iter().rev() {
                        self.int(s as i64);
                    }
                    self.out.push(b't');
                    self.out.push(0x89); // requires_grad = False
                    self.global("collections", "OrderedDict");
                    self.out.extend(b")R");
                    self.out.extend(b"tR");
                }
            }
        }
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A zip archive of stored (uncompressed) entries.
    fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u32;
            let crc = crc32(data);
            let fields = |out: &mut Vec<u8>| {
                out.extend(20u16.to_le_bytes()); // version needed
                out.extend(0u16.to_le_bytes()); // flags
                out.extend(0u16.to_le_bytes()); // stored
                out.extend(0u16.to_le_bytes()); // time
                out.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
                out.extend(crc.to_le_bytes());
                out.extend((data.len() as u32).to_le_bytes());
                out.extend((data.len() as u32).to_le_bytes());
                out.extend((name.len() as u16).to_le_bytes());
                out.extend(0u16.to_le_bytes()); // extra
            };
            out.extend(0x0403_4b50u32.to_le_bytes());
            fields(&mut out);
            out.extend(name.as_bytes());
            out.extend(data);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend(20u16.to_le_bytes()); // version made by
            fields(&mut central);
            central.extend(0u16.to_le_bytes()); // comment
            central.extend(0u16.to_le_bytes()); // disk
            central.extend(0u16.to_le_bytes()); // internal attributes
            central.extend(0u32.to_le_bytes()); // external attributes
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let central_offset = out.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(central_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    /// Saves `root` as `torch.save` would (pickle protocol 2 in a zip).
    pub fn save(path: &Path, root: &Value) {
        let mut pickle = Pickle::default();
        pickle.out.extend([0x80, 2]);
        pickle.value(root);
        pickle.out.push(b'.');
        let mut entries = vec![("archive/data.pkl".to_string(), pickle.out)];
        for (key, bytes) in pickle.storages.into_iter().enumerate() {
            entries.push((format!("archive/data/{key}"), bytes));
        }
        entries.push(("archive/version".into(), b"3\n".to_vec()));
        std::fs::write(path, zip(&entries)).unwrap();
    }

    /// A Lightning-like checkpoint of official-named tensors: `state_dict` with
    /// `backbone.<name>`, and `ema.shadow_params` holding `ema` (names in order) if given.
    pub fn lightning(
        path: &Path,
        tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
        ema: Option<&[String]>,
    ) {
        let tensor = |name: &str| {
            let (shape, values) = &tensors[name];
            Value::Tensor(shape.clone(), values.clone())
        };
        let state = tensors
            .keys()
            .map(|name| (format!("backbone.{name}"), tensor(name)))
            .collect();
        let mut root = vec![
            ("epoch".to_string(), Value::Int(3)),
            ("global_step".to_string(), Value::Int(1234)),
            ("state_dict".to_string(), Value::Dict(state)),
        ];
        if let Some(order) = ema {
            let shadow = Value::List(order.iter().map(|name| tensor(name)).collect());
            root.push((
                "ema".to_string(),
                Value::Dict(vec![("shadow_params".to_string(), shadow)]),
            ));
        }
        save(path, &Value::Dict(root));
    }
}

/// The official tensors of the FMLM fixture's EMA weights, by way of an official export.
fn official_tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let run = import("fmlm.ckpt", WeightSet::Ema);
    let export = temp_dir("official-tensors");
    export_official(&run, &export).unwrap();
    read_safetensors(&export.join("model.safetensors"))
}

fn dims_of_fixture() -> OfficialDims {
    OfficialDims {
        vocab_size: 40,
        hidden_size: 32,
        n_blocks: 2,
        n_heads: 4,
        cond_dim: 16,
        double_temb: true,
    }
}

fn import_error(from: &Path, options: &ImportOptions) -> (ImportError, String) {
    let out = temp_dir("import-error").join("run");
    let error = import_official(from, &out, options).expect_err("the import must fail");
    assert!(
        !out.join("config.json").exists(),
        "a failed import left a run"
    );
    let message = error.to_string();
    (error, message)
}

#[test]
fn a_hand_written_lightning_checkpoint_imports_like_the_fixture() {
    // Guards the test writer below: what it writes imports to the fixture's model.
    let tensors = official_tensors();
    let order: Vec<String> = dims_of_fixture()
        .parameters()
        .into_iter()
        .map(|spec| spec.official)
        .collect();
    let ckpt = temp_dir("lightning").join("model.ckpt");
    torch_file::lightning(&ckpt, &tensors, Some(&order));
    let run = temp_dir("lightning-run").join("run");
    let summary = import_official(&ckpt, &run, &options(WeightSet::Ema)).unwrap();
    assert_eq!(summary.config.imported_from.unwrap().step, Some(1234));
    let diff = max_abs_diff(&logits_on_golden(&run), &golden()["logits_fmlm"].1);
    assert!(diff <= GOLDEN_TOLERANCE, "{diff}");
}

#[test]
fn the_learnable_loss_weighting_of_distilled_checkpoints_is_stepped_over() {
    // The paper's distillation config trains a loss-weighting network beside the DiT
    // (`backbone.learnable_loss_weighting`); its parameters sit in the EMA list between the
    // time embedders and the blocks, where `DIT.__init__` registers it.
    let mut tensors = official_tensors();
    let weighting = [
        ("s_embed.mlp.0.weight", vec![16, 256]),
        ("s_embed.mlp.0.bias", vec![16]),
        ("s_embed.mlp.2.weight", vec![16, 16]),
        ("s_embed.mlp.2.bias", vec![16]),
        ("mlp.0.weight", vec![128, 16]),
        ("mlp.0.bias", vec![128]),
        ("mlp.2.weight", vec![1, 128]),
        ("mlp.2.bias", vec![1]),
    ]
    .map(|(name, shape)| (format!("learnable_loss_weighting.{name}"), shape));
    for (name, shape) in &weighting {
        let count = shape.iter().product();
        tensors.insert(name.clone(), (shape.clone(), vec![0.25; count]));
    }
    let network: Vec<String> = dims_of_fixture()
        .parameters()
        .into_iter()
        .map(|spec| spec.official)
        .collect();
    // vocab_embed, sigma_map (4), sigma_map_prime (4), then the weighting, then the blocks.
    let order: Vec<String> = network[..9]
        .iter()
        .cloned()
        .chain(weighting.iter().map(|(name, _)| name.clone()))
        .chain(network[9..].iter().cloned())
        .collect();
    let ckpt = temp_dir("weighting").join("fmlm.ckpt");
    torch_file::lightning(&ckpt, &tensors, Some(&order));
    let run = temp_dir("weighting-run").join("run");
    import_official(&ckpt, &run, &options(WeightSet::Ema)).unwrap();
    let diff = max_abs_diff(&logits_on_golden(&run), &golden()["logits_fmlm"].1);
    assert!(diff <= GOLDEN_TOLERANCE, "{diff}");
}

#[test]
fn files_that_are_not_checkpoints_are_refused_clearly() {
    let dir = temp_dir("not-ckpt");
    let text = dir.join("notes.ckpt");
    std::fs::write(&text, "these are my notes, not a model\n").unwrap();
    let (error, message) = import_error(&text, &options(WeightSet::Ema));
    assert!(
        matches!(error, ImportError::NotACheckpoint { .. }),
        "{message}"
    );
    assert!(message.contains("is not a PyTorch checkpoint"), "{message}");
    assert!(message.contains("hint:"), "{message}");

    let (error, message) = import_error(&dir.join("absent.ckpt"), &options(WeightSet::Ema));
    assert!(matches!(error, ImportError::NotFound { .. }), "{message}");
}

#[test]
fn a_truncated_checkpoint_is_reported_as_damaged() {
    let bytes = std::fs::read(fixture("flm.ckpt")).unwrap();
    let dir = temp_dir("truncated");
    for keep in [bytes.len() / 2, bytes.len() - 100] {
        let cut = dir.join(format!("cut-{keep}.ckpt"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let (error, message) = import_error(&cut, &options(WeightSet::Ema));
        assert!(matches!(error, ImportError::Damaged { .. }), "{message}");
        assert!(message.contains("truncated or damaged"), "{message}");
        assert!(message.contains("hint: download it again"), "{message}");
    }
}

#[test]
fn a_checkpoint_of_another_network_lists_the_missing_tensors() {
    let dir = temp_dir("other-net");
    let ckpt = dir.join("resnet.ckpt");
    let mut tensors = BTreeMap::new();
    tensors.insert("conv1.weight".to_string(), (vec![2, 2], vec![0.5; 4]));
    torch_file::lightning(&ckpt, &tensors, None);
    let (error, message) = import_error(&ckpt, &options(WeightSet::Ema));
    assert!(
        matches!(error, ImportError::NotOfficialDit { .. }),
        "{message}"
    );
    assert!(
        message.contains("does not hold the paper's DiT"),
        "{message}"
    );
    assert!(
        message.contains("missing vocab_embed.embedding"),
        "{message}"
    );

    // A DiT with one tensor gone and one too many: both are named.
    let mut tensors = official_tensors();
    tensors.remove("blocks.1.mlp.2.bias");
    tensors.insert("blocks.1.extra.weight".into(), (vec![2], vec![0.0; 2]));
    let ckpt = dir.join("edited.ckpt");
    torch_file::lightning(&ckpt, &tensors, None);
    let (_, message) = import_error(&ckpt, &options(WeightSet::Online));
    assert!(
        message.contains("missing blocks.1.mlp.2.bias;"),
        "{message}"
    );
    assert!(
        message.contains("; unexpected blocks.1.extra.weight\n"),
        "{message}"
    );

    // flm's own safetensors are not the official layout either.
    let run = import("flm.ckpt", WeightSet::Ema);
    let (error, message) = import_error(&run.join("model.safetensors"), &ImportOptions::default());
    assert!(
        matches!(error, ImportError::NotOfficialDit { .. }),
        "{message}"
    );
}

#[test]
fn an_ema_list_that_does_not_fit_the_parameters_is_refused() {
    let tensors = official_tensors();
    let mut order: Vec<String> = dims_of_fixture()
        .parameters()
        .into_iter()
        .map(|spec| spec.official)
        .collect();
    let dir = temp_dir("ema-count");
    let short = dir.join("short.ckpt");
    order.pop();
    torch_file::lightning(&short, &tensors, Some(&order));
    let (error, message) = import_error(&short, &options(WeightSet::Ema));
    assert!(
        matches!(
            error,
            ImportError::EmaCount {
                found: 33,
                expected: 34,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("the EMA list has 33 tensors but the model has 34 parameters"),
        "{message}"
    );
    assert!(message.contains("hint: import the trained weights with --weights online"));
    // The online weights of the same file still import.
    import_official(&short, &dir.join("online"), &options(WeightSet::Online)).unwrap();

    let swapped = dir.join("swapped.ckpt");
    let mut order: Vec<String> = dims_of_fixture()
        .parameters()
        .into_iter()
        .map(|spec| spec.official)
        .collect();
    order.swap(0, 1);
    torch_file::lightning(&swapped, &tensors, Some(&order));
    let (error, message) = import_error(&swapped, &options(WeightSet::Ema));
    assert!(
        matches!(error, ImportError::EmaShape { index: 0, .. }),
        "{message}"
    );

    let no_ema = dir.join("no-ema.ckpt");
    torch_file::lightning(&no_ema, &tensors, None);
    let (error, message) = import_error(&no_ema, &options(WeightSet::Ema));
    assert!(matches!(error, ImportError::NoEma { .. }), "{message}");
    assert!(message.contains("--weights online"), "{message}");
}

#[test]
fn a_tokenizer_of_another_size_is_refused() {
    let mut options = options(WeightSet::Ema);
    options.tokenizer = Some(tokenizer("byte_level_bpe.json"));
    let (error, message) = import_error(&fixture("flm.ckpt"), &options);
    assert!(
        matches!(
            error,
            ImportError::TokenizerSize {
                tokenizer: 46,
                model: 40,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("has 46 tokens but the model's embedding has 40 rows"),
        "{message}"
    );

    options.tokenizer = None;
    let (error, message) = import_error(&fixture("flm.ckpt"), &options);
    assert!(
        matches!(error, ImportError::NoTokenizer { vocab: 40, .. }),
        "{message}"
    );
    assert!(message.contains("hint: pass --tokenizer"), "{message}");
}

#[test]
fn other_import_options_are_checked() {
    // No length in a Lightning checkpoint and an unknown vocabulary: --seq-len is needed.
    let mut no_length = options(WeightSet::Ema);
    no_length.seq_len = None;
    let (error, message) = import_error(&fixture("flm.ckpt"), &no_length);
    assert!(
        matches!(error, ImportError::SeqLen { vocab: 40 }),
        "{message}"
    );
    assert!(message.contains("--seq-len"), "{message}");

    // --heads must agree with the rotary buffer.
    let mut heads = options(WeightSet::Ema);
    heads.heads = Some(2);
    let (error, message) = import_error(&fixture("flm.ckpt"), &heads);
    assert!(matches!(error, ImportError::Heads { .. }), "{message}");
    assert!(message.contains("implies 4 heads"), "{message}");

    // Without the rotary buffer the heads must be given, and then the model is the same.
    let mut tensors = official_tensors();
    tensors.remove(ROTARY_BUFFER);
    let order: Vec<String> = dims_of_fixture()
        .parameters()
        .into_iter()
        .map(|spec| spec.official)
        .collect();
    let no_buffer = temp_dir("no-buffer").join("model.ckpt");
    torch_file::lightning(&no_buffer, &tensors, Some(&order));
    let (error, message) = import_error(&no_buffer, &options(WeightSet::Ema));
    assert!(matches!(error, ImportError::Heads { .. }), "{message}");
    assert!(message.contains("hint: pass --heads N"), "{message}");
    let mut heads = options(WeightSet::Ema);
    heads.heads = Some(4);
    let run = temp_dir("no-buffer-run").join("run");
    import_official(&no_buffer, &run, &heads).unwrap();
    let diff = max_abs_diff(&logits_on_golden(&run), &golden()["logits_fmlm"].1);
    assert!(diff <= GOLDEN_TOLERANCE, "{diff}");

    // An official-layout file holds one weight set.
    let run = import("flm.ckpt", WeightSet::Ema);
    let export = temp_dir("one-set");
    export_official(&run, &export).unwrap();
    let (error, message) = import_error(&export, &options(WeightSet::Online));
    assert!(
        matches!(error, ImportError::OneWeightSet { .. }),
        "{message}"
    );

    // An existing run is never overwritten.
    let error = import_official(&fixture("flm.ckpt"), &run, &options(WeightSet::Ema)).unwrap_err();
    assert!(matches!(error, ImportError::OutputExists(_)), "{error}");
}

#[test]
fn a_tokenizer_one_short_gets_the_pad_token_the_paper_adds() {
    // GPT-2's tokenizer has no padding token; the paper's data loader appends `[PAD]`, so its
    // OpenWebText models have one more row than the tokenizer file. The byte-level fixture
    // plays GPT-2 here, with a model of 47 tokens.
    let dims = OfficialDims {
        vocab_size: 47,
        hidden_size: 16,
        n_blocks: 1,
        n_heads: 2,
        cond_dim: 8,
        double_temb: false,
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = dims
        .parameters()
        .into_iter()
        .map(|spec| {
            let count = spec.shape.iter().product::<usize>();
            let values = (0..count).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
            (spec.official, spec.shape, values)
        })
        .collect();
    let rotary = dims.rotary_buffer();
    tensors.push((ROTARY_BUFFER.to_string(), vec![rotary.len()], rotary));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(values.as_slice()),
            )
            .unwrap();
            (name.clone(), view)
        })
        .collect();
    let dir = temp_dir("pad");
    let file = dir.join("model.safetensors");
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();
    let run = dir.join("run");
    let summary = import_official(
        &file,
        &run,
        &ImportOptions {
            tokenizer: Some(tokenizer("byte_level_bpe.json")),
            seq_len: Some(8),
            ..ImportOptions::default()
        },
    )
    .unwrap();
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("added [PAD] as token 46")),
        "{:?}",
        summary.notes
    );
    let loaded = load_model(&run, &cpu_device()).unwrap();
    assert_eq!(loaded.tokenizer.vocab_size(), 47);
    assert_eq!(loaded.tokenizer.token_to_id("[PAD]"), Some(46));
}

/// A vocabulary of `size` WordPiece tokens in bert-base-uncased's layout.
fn wordpiece_json(size: usize) -> String {
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let vocab: serde_json::Map<String, serde_json::Value> = (0..size)
        .map(|id| {
            let token = specials
                .get(id)
                .map_or_else(|| format!("w{id}"), |s| s.to_string());
            (token, serde_json::json!(id))
        })
        .collect();
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

/// A model at the size of the paper's LM1B release (d 768, 12 blocks, 12 heads, V 30522,
/// L 128; about 170M parameters), random weights in flm's own run layout: it loads and runs one
/// forward pass on the CPU backend. Slow and memory-hungry, so run by hand:
/// `/usr/bin/time -v cargo test --release --test e2e import::released_size -- --ignored`.
#[test]
#[ignore]
fn released_size_model_loads_and_runs_on_the_cpu() {
    use burn::store::ModuleSnapshot;
    use flm::import::model_config;
    let dims = OfficialDims {
        vocab_size: 30522,
        hidden_size: 768,
        n_blocks: 12,
        n_heads: 12,
        cond_dim: 128,
        double_temb: false,
    };
    let dir = temp_dir("released-size");
    let started = std::time::Instant::now();
    {
        let config = model_config(&dims, 128);
        let model = flm::model::Dit::new(&config, 0, &cpu_device());
        let mut store = burn::store::SafetensorsStore::from_file(dir.join("model.safetensors"));
        model.save_into(&mut store).unwrap();
        std::fs::write(dir.join("tokenizer.json"), wordpiece_json(30522)).unwrap();
        let run_config = flm::train::RunConfig {
            schema_version: flm::train::config::SCHEMA_VERSION,
            kind: ModelKind::Flm,
            data: flm::train::DataConfig {
                source: "synthetic".into(),
                valid: None,
                tokenizer: TokenizerKind::Pretrained,
                vocab_size: 30522,
                seq_len: 128,
            },
            model: config,
            train: flm::train::TrainConfig::default(),
            distill: None,
            created_with: "test".into(),
            imported_from: None,
        };
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string(&run_config).unwrap(),
        )
        .unwrap();
    }
    eprintln!("wrote the run in {:.1} s", started.elapsed().as_secs_f64());
    let started = std::time::Instant::now();
    let loaded = load_model(&dir, &cpu_device()).unwrap();
    eprintln!(
        "loaded {} parameters in {:.1} s",
        loaded.config.model.num_params(),
        started.elapsed().as_secs_f64()
    );
    let device = cpu_device();
    let x = Tensor::<3>::random(
        [1, 128, 30522],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let started = std::time::Instant::now();
    let logits = loaded
        .model
        .forward(x, Tensor::from_floats([0.5], &device), None);
    let values = logits.into_data().try_into_vec::<f32>().unwrap();
    eprintln!(
        "one forward pass (1 × 128 × 30522) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(values.len(), 128 * 30522);
    assert!(values.iter().all(|v| v.is_finite()));
    // Half a gigabyte: not left behind in the temp folder.
    drop(loaded);
    std::fs::remove_dir_all(&dir).unwrap();
}
