//! The desktop app driven headlessly with egui_kittest: the real app state, real training
//! and sampling on the CPU, rendering on lavapipe. Snapshot images of the main views live in
//! `tests/snapshots/` (update deliberately with `UPDATE_SNAPSHOTS=1`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use flm::app::dialogs::ScriptedDialogs;
use flm::app::{AppSettings, FlmApp, View};
use flm::model::ModelPreset;
use flm::train::{EXPORTED_FILES, load_model};

use crate::common::{cpu, sonnets, temp_dir};

fn harness(runs_root: &Path) -> Harness<'static, FlmApp> {
    let settings = AppSettings {
        runs_root: runs_root.to_path_buf(),
        device: cpu(),
        dialogs: ScriptedDialogs::new([]),
        frame_log: None,
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .wgpu()
        .build_eframe(move |cc| FlmApp::new(&cc.egui_ctx, settings))
}

/// Steps frames until `done` holds; jobs run on their own threads meanwhile.
fn wait_for(harness: &mut Harness<'_, FlmApp>, what: &str, done: impl Fn(&FlmApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Settle the layout (grids take a sizing pass).
    for _ in 0..3 {
        harness.step();
    }
}

/// Hides text that changes from run to run (timings, temp paths) before a snapshot: from the
/// label to the right edge, since a different width moves whatever follows on its row.
fn mask_labels(harness: &mut Harness<'_, FlmApp>, fragments: &[&str]) {
    let right = harness.ctx.content_rect().right();
    let rects: Vec<egui::Rect> = fragments
        .iter()
        .flat_map(|f| {
            harness
                .query_all_by_label_contains(f)
                .map(|node| {
                    let rect = node.rect();
                    // Taller than the text: buttons further along the row are.
                    egui::Rect::from_min_max(rect.min, egui::pos2(right, rect.max.y))
                        .expand2(egui::vec2(0.0, 5.0))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for rect in rects {
        harness.mask(rect);
    }
}

fn snapshot(harness: &mut Harness<'_, FlmApp>, name: &str) {
    // Curves and bars come from a model trained here; allow a sliver of anti-aliasing noise.
    harness.snapshot_options(name, &SnapshotOptions::new().max_failed_pixels(40));
}

fn click_tab(harness: &mut Harness<'_, FlmApp>, view: View) {
    harness.get_by_label(view.title()).click();
    harness.run_ok();
    assert_eq!(harness.state().view, view);
}

fn image_of(harness: &mut Harness<'_, FlmApp>) -> Vec<u8> {
    harness.render().expect("renders").into_raw()
}

/// Trains a micro model for 40 steps through the Train view's Start button, as a user would;
/// returns its run folder.
fn train_by_the_start_button(harness: &mut Harness<'_, FlmApp>) -> PathBuf {
    wait_for(harness, "the data preview", |app| {
        app.data.preview.is_some()
    });
    click_tab(harness, View::Train);
    {
        let form = &mut harness.state_mut().train.form;
        form.preset = ModelPreset::Micro;
        form.batch_size = 8;
        form.duration = flm::app::TrainDuration::Steps(40);
    }
    harness.run_ok();
    harness.get_by_label("▶ Start training").click();
    wait_for(harness, "training", |app| {
        app.train.flm.as_ref().is_some_and(|s| !s.running())
    });
    let session = harness.state().train.flm.as_ref().unwrap();
    assert!(
        matches!(session.outcome, Some(Ok(_))),
        "{:?}",
        harness.state().errors
    );
    session.run_dir.clone().unwrap()
}

/// A trained model, generated once in the Sample view with 16 recorded steps.
fn generated(harness: &mut Harness<'_, FlmApp>) {
    let run_dir = train_by_the_start_button(harness);
    click_tab(harness, View::Sample);
    assert_eq!(
        harness.state().sample.model.as_deref(),
        Some(run_dir.as_path()),
        "the model trained in this session is picked"
    );
    harness.state_mut().sample.steps = 16;
    harness.get_by_label("✨ Generate").click();
    wait_for(harness, "sampling", |app| app.sample.result.is_some());
}

/// Selects a run in the Checkpoints view by its name.
fn select_run(harness: &mut Harness<'_, FlmApp>, run_dir: &Path) {
    click_tab(harness, View::Checkpoints);
    wait_for(harness, "the runs listing", |app| {
        app.runs.list.iter().any(|r| r.dir == run_dir)
    });
    let name = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    harness.get_by_label(&name).click();
    harness.run_ok();
}

#[test]
fn the_data_view_analyses_the_builtin_task_on_start() {
    let root = temp_dir("gui-data");
    let mut harness = harness(&root.join("runs"));
    wait_for(&mut harness, "the data preview", |app| {
        app.data.preview.is_some()
    });
    harness.get_by_label("bytes / token");
    snapshot(&mut harness, "data_view");
}

#[test]
fn the_start_button_trains_with_live_falling_curves() {
    let root = temp_dir("gui-train");
    let mut harness = harness(&root.join("runs"));
    let run_dir = train_by_the_start_button(&mut harness);
    let session = harness.state().train.flm.as_ref().unwrap();
    let (first, last) = (session.losses[0], *session.losses.last().unwrap());
    assert_eq!(last[0], 40.0, "the curve reaches the last step");
    assert!(last[1] < first[1], "the loss fell: {first:?} → {last:?}");
    assert!(run_dir.starts_with(root.join("runs")));
    // The finished FLM becomes the distillation's teacher.
    assert_eq!(
        harness.state().train.distill_form.teacher.as_deref(),
        Some(run_dir.as_path())
    );
    mask_labels(
        &mut harness,
        &["tokens/s", "elapsed", "run folder", "M parameters"],
    );
    snapshot(&mut harness, "train_view");
}

#[test]
fn a_recorded_trajectory_scrubs_by_slider_button_and_arrow_key() {
    let root = temp_dir("gui-scrub");
    let mut harness = harness(&root.join("runs"));
    generated(&mut harness);
    let playback = harness.state().sample.playback.clone().unwrap();
    assert_eq!((playback.steps(), playback.step), (16, 15));
    snapshot(&mut harness, "sample_view");

    // Back to the first step redraws the text and bars from the recording.
    let at_end = image_of(&mut harness);
    harness.get_by_label("⏮").click();
    harness.run_ok();
    assert_eq!(harness.state().sample.playback.as_ref().unwrap().step, 0);
    let at_start = image_of(&mut harness);
    assert_ne!(at_end, at_start, "the view did not change with the step");
    harness.key_press(egui::Key::ArrowRight);
    harness.run_ok();
    assert_eq!(harness.state().sample.playback.as_ref().unwrap().step, 1);
}

#[test]
fn a_chosen_position_draws_its_path_on_the_simplex() {
    let root = temp_dir("gui-simplex");
    let mut harness = harness(&root.join("runs"));
    generated(&mut harness);
    assert!(
        harness
            .query_by_label("Position 3 on the simplex")
            .is_none()
    );
    harness.state_mut().sample.simplex_position = Some(3);
    harness.run_ok();
    harness.get_by_label("Position 3 on the simplex");
    let before = image_of(&mut harness);
    harness.get_by_label("⏮").click();
    harness.run_ok();
    assert_ne!(
        before,
        image_of(&mut harness),
        "the current-step ring moves with the slider"
    );
    snapshot(&mut harness, "sample_view_simplex");
}

#[test]
fn the_shown_denoising_saves_as_an_animated_gif() {
    let root = temp_dir("gui-animation");
    let mut harness = harness(&root.join("runs"));
    generated(&mut harness);
    let dest = root.join("denoising.gif");
    harness
        .state_mut()
        .set_dialogs(ScriptedDialogs::new([dest.clone()]));
    harness.get_by_label("🎞 Export animation…").click();
    wait_for(&mut harness, "the animation", |app| {
        app.notices.iter().any(|n| n.contains("animation written"))
    });
    // 16 recorded steps, then the final text.
    let bytes = std::fs::read(&dest).unwrap();
    let mut decoder = gif::DecodeOptions::new().read_info(&bytes[..]).unwrap();
    let mut frames = 0;
    while decoder.read_next_frame().unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 17);
}

#[test]
fn a_typed_prompt_fixes_the_first_tokens_of_every_sample() {
    let root = temp_dir("gui-prompt");
    let mut harness = harness(&root.join("runs"));
    train_by_the_start_button(&mut harness);
    click_tab(&mut harness, View::Sample);
    harness.state_mut().sample.steps = 16;
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "Prompt")
        .focus();
    harness.run_ok();
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "Prompt")
        .type_text("kk");
    harness.run_ok();
    assert_eq!(harness.state().sample.prompt, "kk");
    harness.get_by_label("✨ Generate").click();
    wait_for(&mut harness, "sampling", |app| app.sample.result.is_some());
    let result = harness.state().sample.result.as_ref().unwrap();
    let k = result.main.vocab.iter().position(|t| t == "k").unwrap() as u32;
    let fixed = &result.main.trajectory.fixed;
    assert_eq!(fixed.len(), 32);
    assert_eq!(fixed[..3], [Some(k), Some(k), None]);
    assert!(fixed[2..].iter().all(Option::is_none));
    for (text, sample) in result
        .main
        .texts
        .iter()
        .zip(&result.main.trajectory.samples)
    {
        assert!(text.starts_with("kk"), "{text}");
        assert_eq!(sample.tokens[..2], [k, k]);
    }
    // The text strip shows the fixed tokens at every step, the first included.
    use egui_kittest::kittest::NodeT;
    harness.get_by_label("⏮").click();
    harness.run_ok();
    let texts: Vec<String> = harness
        .query_all_by_role(egui::accesskit::Role::Label)
        .filter_map(|node| node.accesskit_node().value())
        .filter(|text| text.starts_with("kk"))
        .collect();
    assert!(
        texts.len() >= 2,
        "the strip at step 1 and the final text start with the prompt: {texts:?}"
    );
    // One step cannot see the prompt: the view says so before generating.
    harness.state_mut().sample.steps = 1;
    harness.run_ok();
    harness.get_by_label_contains("with 1 step the only network call");
    harness.state_mut().sample.steps = 16;
    harness.state_mut().sample.playback.as_mut().unwrap().step = 15;
    harness.run_ok();
    snapshot(&mut harness, "sample_view_prompt");
}

#[test]
fn a_cancelled_generation_keeps_the_recording_shown() {
    let root = temp_dir("gui-cancel");
    let mut harness = harness(&root.join("runs"));
    generated(&mut harness);
    harness.state_mut().sample.steps = 1024;
    harness.get_by_label("✨ Generate").click();
    harness.step();
    assert!(harness.state().sample.busy());
    harness.get_by_label("Cancel").click();
    wait_for(&mut harness, "the cancellation", |app| !app.sample.busy());
    let shown = harness.state().sample.playback.as_ref().unwrap().steps();
    assert_eq!(shown, 16, "the cancelled run replaced the recording");
    assert!(
        harness.state().errors.is_empty(),
        "{:?}",
        harness.state().errors
    );
}

#[test]
fn a_selected_run_exports_through_the_folder_dialog() {
    let root = temp_dir("gui-export");
    let mut harness = harness(&root.join("runs"));
    let run_dir = train_by_the_start_button(&mut harness);
    select_run(&mut harness, &run_dir);
    wait_for(&mut harness, "the run's curves", |app| !app.busy());
    let dest = root.join("exported");
    harness
        .state_mut()
        .set_dialogs(ScriptedDialogs::new([dest.clone()]));
    harness.get_by_label("📦 Export…").click();
    wait_for(&mut harness, "the export", |app| {
        app.notices.iter().any(|n| n.contains("exported"))
    });
    for file in EXPORTED_FILES {
        assert!(dest.join(file).is_file(), "{file} missing");
    }
    load_model(&dest, &cpu().device).expect("the export loads back");
    mask_labels(
        &mut harness,
        &["exported", "gui-export", "Runs", "trained for"],
    );
    snapshot(&mut harness, "checkpoints_view");
}

#[test]
fn deleting_a_run_asks_first_and_refreshes_the_list() {
    let root = temp_dir("gui-delete");
    let mut harness = harness(&root.join("runs"));
    let run_dir = train_by_the_start_button(&mut harness);
    select_run(&mut harness, &run_dir);
    harness.get_by_label("🗑 Delete…").click();
    harness.run_ok();
    harness.get_by_label("Delete this run?");
    harness.get_by_label("Cancel").click();
    harness.run_ok();
    assert!(run_dir.is_dir(), "Cancel kept the run");

    harness.get_by_label("🗑 Delete…").click();
    harness.run_ok();
    harness.get_by_label("Delete").click();
    wait_for(&mut harness, "the deletion", |app| {
        app.notices.iter().any(|n| n.contains("deleted"))
    });
    wait_for(&mut harness, "the new listing", |app| !app.busy());
    assert!(!run_dir.exists());
    assert!(harness.state().runs.list.iter().all(|r| r.dir != run_dir));
    assert_eq!(harness.state().checkpoints.selected, None);
}

#[test]
fn a_binary_file_is_refused_and_the_app_keeps_working() {
    let root = temp_dir("gui-binary");
    let mut harness = harness(&root.join("runs"));
    wait_for(&mut harness, "the data preview", |app| {
        app.data.preview.is_some()
    });
    let bad = root.join("photo.txt");
    std::fs::write(&bad, [0u8, 159, 146, 150, 0, 0, 1, 2, 0, 0]).unwrap();
    harness
        .state_mut()
        .set_dialogs(ScriptedDialogs::new([bad.clone()]));
    harness.get_by_label("📂 Choose text file…").click();
    wait_for(&mut harness, "the bad file's analysis", |app| {
        app.data.error.is_some()
    });
    harness.get_by_label("This data cannot be used");
    assert!(
        harness.state().errors.iter().any(|e| e.contains("binary")),
        "{:?}",
        harness.state().errors
    );
    click_tab(&mut harness, View::Train);
    harness.get_by_label("▶ Start training");
}

/// Replaces the Source field's text, as typing or pasting a path would, and presses Enter.
fn type_source(harness: &mut Harness<'_, FlmApp>, text: &str) {
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "Source:")
        .focus();
    harness.run_ok();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "Source:")
        .type_text(text);
    harness.key_press(egui::Key::Enter);
    harness.run_ok();
}

#[test]
fn a_typed_path_is_analysed_or_refused() {
    let root = temp_dir("gui-typed");
    let mut harness = harness(&root);
    wait_for(&mut harness, "the first preview", |app| {
        app.data.preview.is_some()
    });

    let missing = root.join("no-such-book.txt");
    type_source(&mut harness, missing.to_str().unwrap());
    assert_eq!(harness.state().data.source, missing.display().to_string());
    wait_for(&mut harness, "the refusal", |app| app.data.error.is_some());
    harness.get_by_label("This data cannot be used");
    let error = harness.state().data.error.clone().unwrap();
    assert!(error.contains("no-such-book.txt"), "{error}");

    let book = sonnets();
    type_source(&mut harness, book.to_str().unwrap());
    wait_for(&mut harness, "the book's preview", |app| {
        app.data.preview.is_some()
    });
    let preview = harness.state().data.preview.as_ref().unwrap();
    assert!(preview.stats.tokens > 0);
    assert!(harness.state().data.error.is_none());
}

#[test]
fn a_failing_job_reports_in_the_window() {
    let root = temp_dir("gui-fail");
    let mut harness = harness(&root);
    click_tab(&mut harness, View::Sample);
    // A checkpoint folder that is not one: the sampling thread fails, the app shows why.
    let not_a_run: PathBuf = root.join("nothing-here");
    std::fs::create_dir_all(&not_a_run).unwrap();
    harness.state_mut().sample.model = Some(not_a_run);
    harness.run_ok();
    harness.get_by_label("✨ Generate").click();
    wait_for(&mut harness, "the failure", |app| !app.errors.is_empty());
    assert!(!harness.state().sample.busy());
    let errors = harness.state().errors.clone();
    assert!(
        errors.iter().any(|e| e.contains("not a checkpoint")),
        "{errors:?}"
    );
    harness.get_by_label_contains("not a checkpoint");
}

#[test]
fn the_papers_checkpoint_imports_from_the_checkpoints_view_and_samples() {
    let root = temp_dir("gui-import");
    let mut harness = harness(&root.join("runs"));
    click_tab(&mut harness, View::Checkpoints);
    harness.get_by_label("⬇ Import…").click();
    harness.run_ok();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    {
        let form = &mut harness.state_mut().checkpoints.import;
        form.from = fixtures
            .join("official-dit/fmlm.ckpt")
            .display()
            .to_string();
        form.tokenizer = fixtures
            .join("tokenizers/wordpiece.json")
            .display()
            .to_string();
        // A small random network, not a released model: its length is given.
        form.seq_len = 12;
    }
    harness.run_ok();
    harness.get_by_label("⬇ Import").click();
    wait_for(&mut harness, "the import", |app| {
        !app.busy() && (!app.notices.is_empty() || !app.errors.is_empty())
    });
    assert!(
        harness.state().errors.is_empty(),
        "{:?}",
        harness.state().errors
    );
    let run = harness
        .state()
        .checkpoints
        .selected
        .clone()
        .expect("the new run is selected");
    assert!(run.starts_with(root.join("runs")), "{}", run.display());
    assert!(harness.state().runs.list.iter().any(|r| r.dir == run));

    // It samples like any other run.
    harness.get_by_label("✨ Sample it").click();
    harness.run_ok();
    assert_eq!(harness.state().view, View::Sample);
    harness.state_mut().sample.steps = 2;
    harness.get_by_label("✨ Generate").click();
    wait_for(&mut harness, "sampling", |app| app.sample.result.is_some());
    assert!(
        harness.state().errors.is_empty(),
        "{:?}",
        harness.state().errors
    );
}

#[test]
fn drawing_tokens_is_offered_and_a_seed_repeats_the_draw() {
    let root = temp_dir("gui-draw");
    let mut harness = harness(&root.join("runs"));
    generated(&mut harness);
    assert_eq!(
        harness.state().sample.decoding,
        flm::flow::Decoding::Argmax,
        "a built-in task's model samples by argmax until the person chooses"
    );
    harness.get_by_label("draw tokens").click();
    harness.run_ok();
    assert!(matches!(
        harness.state().sample.decoding,
        flm::flow::Decoding::Draw { .. }
    ));
    let texts = |harness: &mut Harness<'_, FlmApp>| {
        harness.get_by_label("✨ Generate").click();
        harness.step();
        wait_for(harness, "sampling", |app| !app.sample.busy());
        let result = harness.state().sample.result.as_ref().unwrap();
        result.main.texts.clone()
    };
    let first = texts(&mut harness);
    let second = texts(&mut harness);
    assert_eq!(first, second, "the same seed draws the same tokens");
    assert!(
        harness.state().errors.is_empty(),
        "{:?}",
        harness.state().errors
    );
}
