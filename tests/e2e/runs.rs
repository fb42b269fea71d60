//! A runs folder as the Checkpoints view sees it: listing, export, deletion.

use std::fs;

use flm::device::cpu_device;
use flm::train::{EXPORTED_FILES, ModelKind, delete_run, export_model, list_runs, load_model};

use crate::common::*;

#[test]
fn list_export_and_delete_runs() {
    let root = temp_dir("runs-root");
    assert!(list_runs(&root.join("missing")).unwrap().is_empty());
    let trained = root.join("b-trained");
    let mut request = micro_request(&trained, "builtin:repeat");
    request.steps = Some(3);
    run_request(&request);
    // A run that died before its first checkpoint, and an unrelated folder.
    let fresh = root.join("a-fresh");
    fs::create_dir_all(&fresh).unwrap();
    fs::copy(trained.join("config.json"), fresh.join("config.json")).unwrap();
    fs::create_dir_all(root.join("holiday-photos")).unwrap();

    let runs = list_runs(&root).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a-fresh", "b-trained"]);
    assert!(!runs[0].has_weights() && runs[0].state.is_none());
    assert!(runs[1].has_weights());
    assert_eq!(runs[1].state.as_ref().unwrap().step, 3);
    assert_eq!(runs[1].config.as_ref().unwrap().kind, ModelKind::Flm);

    // Export: the three files, loadable, the same weights.
    let dest = temp_dir("export-dest").join("nested/model");
    let written = export_model(&trained, &dest).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, EXPORTED_FILES);
    assert_eq!(
        fs::read(dest.join("model.safetensors")).unwrap(),
        fs::read(trained.join("checkpoint/model.safetensors")).unwrap()
    );
    let loaded = load_model(&dest, &cpu_device()).expect("export loads back");
    assert_eq!(loaded.config.model.seq_len, 32);
    // Nothing to export before the first checkpoint; never onto the run itself.
    assert!(export_model(&fresh, &temp_dir("export-none")).is_err());
    assert!(export_model(&trained, &trained).is_err());

    // Delete refuses non-runs and leaves them alone.
    assert!(delete_run(&root.join("holiday-photos")).is_err());
    assert!(root.join("holiday-photos").is_dir());
    delete_run(&fresh).unwrap();
    let names: Vec<String> = list_runs(&root)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["b-trained"]);
}
