//! Checkpoints: exact round trips and clear errors for damaged directories.

use std::fs;
use std::path::Path;

use burn::tensor::{Tensor, Tolerance};
use flm::device::cpu_device;
use flm::rng::{standard_normal, stream_rng};
use flm::train::checkpoint::RunDir;
use flm::train::{CheckpointError, load_model};

use crate::common::*;

fn trained_run(name: &str) -> std::path::PathBuf {
    let out = temp_dir(name);
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(3);
    run_request(&request);
    out
}

fn logits_of(dir: &Path) -> burn::tensor::TensorData {
    let device = cpu_device();
    let loaded = load_model(dir, &device).expect("checkpoint loads");
    let vocab = loaded.config.model.vocab_size;
    let seq_len = loaded.config.model.seq_len;
    let noise = standard_normal(&mut stream_rng(9, 9), 2 * seq_len * vocab);
    let x = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(noise, [2, seq_len, vocab]),
        &device,
    );
    let tau = Tensor::<1>::from_floats([0.25, 0.75], &device);
    loaded.model.forward(x, tau, None).into_data()
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let out = trained_run("roundtrip");
    let first = logits_of(&out);
    // Copy only the files an exported model needs, flat, and load again.
    let flat = temp_dir("flat");
    let run = RunDir::new(&out);
    for file in ["config.json", "tokenizer.json"] {
        fs::copy(out.join(file), flat.join(file)).unwrap();
    }
    fs::copy(
        run.weights_dir().unwrap().join("model.safetensors"),
        flat.join("model.safetensors"),
    )
    .unwrap();
    let second = logits_of(&flat);
    first.assert_approx_eq::<f32>(&second, Tolerance::absolute(0.0));
    // And the weights are not trivially uniform: training moved the output layer.
    let values = first.try_into_vec::<f32>().unwrap();
    assert!(values.iter().any(|v| v.abs() > 1e-3));
}

/// Rewrites one field of a run's config.json, as a user editing it by hand would.
fn edit_config(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    fs::write(&path, config.to_string()).unwrap();
}

fn expect_error(dir: &Path) -> CheckpointError {
    match load_model(dir, &cpu_device()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_directory_or_config_is_not_a_checkpoint() {
    let empty = temp_dir("empty-ckpt");
    let error = expect_error(&empty);
    assert!(
        matches!(error, CheckpointError::NotACheckpoint(_)),
        "{error}"
    );
    assert!(error.to_string().contains("config.json"));
    let error = expect_error(&empty.join("nope"));
    assert!(
        matches!(error, CheckpointError::NotACheckpoint(_)),
        "{error}"
    );
}

#[test]
fn corrupt_config_is_reported_with_its_path() {
    let out = trained_run("bad-config");
    fs::write(out.join("config.json"), "{ not json").unwrap();
    let error = expect_error(&out);
    assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("config.json"));
}

#[test]
fn future_schema_version_is_refused() {
    let out = trained_run("schema");
    edit_config(&out, |config| {
        config["schema_version"] = serde_json::json!(99)
    });
    let error = expect_error(&out);
    assert!(
        matches!(error, CheckpointError::Schema { found: 99, .. }),
        "{error}"
    );
}

#[test]
fn truncated_weights_are_reported_as_corrupt() {
    let out = trained_run("truncated");
    let weights = RunDir::new(&out)
        .weights_dir()
        .unwrap()
        .join("model.safetensors");
    let bytes = fs::read(&weights).unwrap();
    fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let error = expect_error(&out);
    assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
}

#[test]
fn weights_of_another_shape_are_a_mismatch() {
    let out = trained_run("shape");
    edit_config(&out, |config| {
        config["model"]["d_model"] = serde_json::json!(128)
    });
    let error = expect_error(&out);
    assert!(matches!(error, CheckpointError::Mismatch { .. }), "{error}");
}

#[test]
fn tokenizer_of_another_vocabulary_is_a_mismatch() {
    let out = trained_run("tokenizer");
    edit_config(&out, |config| {
        config["model"]["vocab_size"] = serde_json::json!(64)
    });
    let error = expect_error(&out);
    assert!(matches!(error, CheckpointError::Mismatch { .. }), "{error}");
    assert!(error.to_string().contains("tokenizer"), "{error}");
}

#[test]
fn interrupted_swap_falls_back_to_the_previous_checkpoint() {
    let out = trained_run("swap");
    let before = logits_of(&out);
    // Simulate a crash between the two renames of a checkpoint swap.
    fs::rename(out.join("checkpoint"), out.join("checkpoint.old")).unwrap();
    fs::create_dir_all(out.join("checkpoint.new")).unwrap();
    fs::write(
        out.join("checkpoint.new").join("model.safetensors"),
        b"half written",
    )
    .unwrap();
    let after = logits_of(&out);
    before.assert_approx_eq::<f32>(&after, Tolerance::absolute(0.0));
}

#[test]
fn an_exported_model_samples_but_cannot_be_resumed() {
    let out = trained_run("export-resume");
    let flat = temp_dir("export-flat");
    for file in ["config.json", "tokenizer.json"] {
        fs::copy(out.join(file), flat.join(file)).unwrap();
    }
    let weights = RunDir::new(&out)
        .weights_dir()
        .unwrap()
        .join("model.safetensors");
    fs::copy(weights, flat.join("model.safetensors")).unwrap();
    load_model(&flat, &cpu_device()).expect("an exported model loads for sampling");
    let mut resume = micro_request(&flat, "builtin:repeat");
    resume.resume = true;
    let error = match flm::train::setup::prepare_run(&resume) {
        Ok(_) => panic!("resuming an export must fail"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("not resumed"), "{error}");
}
