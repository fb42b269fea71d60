//! Training behaviour: the loss falls, resume is exact, NaNs stop the run safely.

use flm::train::checkpoint::{RunDir, load_state};
use flm::train::setup::prepare_run;
use flm::train::{StopReason, TrainError, TrainEvent};

use crate::common::*;

fn mean(values: &[(u64, f64)]) -> f64 {
    values.iter().map(|(_, l)| l).sum::<f64>() / values.len() as f64
}

#[test]
fn loss_goes_down_on_tiny_sonnets() {
    let out = temp_dir("loss-down");
    let mut request = micro_request(&out, sonnets().to_str().unwrap());
    request.steps = Some(80);
    let (summary, events) = run_request(&request);
    assert_eq!(summary.final_step, 80);
    assert_eq!(summary.reason, StopReason::StepsDone);
    let losses = step_losses(&events);
    assert_eq!(losses.len(), 80);
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 10..]));
    assert!(
        last < first - 0.5,
        "loss did not fall enough: first {first:.3}, last {last:.3}"
    );
    // The validation loss at the end is finite and below the uniform-guess cost ln V.
    let vocab = prepare_vocab(&out);
    let valid = summary.last_valid_loss.expect("final validation");
    assert!(
        valid < (vocab as f64).ln(),
        "valid {valid} vs ln V {}",
        (vocab as f64).ln()
    );
}

#[test]
fn text_previews_say_how_they_read_and_the_log_keeps_it() {
    let out = temp_dir("readability");
    let mut request = micro_request(&out, sonnets().to_str().unwrap());
    request.steps = Some(4);
    request.train.sample_every = 2;
    let (_, events) = run_request(&request);
    let notes: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            TrainEvent::Samples {
                step,
                texts,
                readability,
                ..
            } => Some((
                *step,
                texts,
                readability.clone().expect("a text run measures"),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(notes.iter().map(|n| n.0).collect::<Vec<_>>(), [2, 4]);
    let lexicon = flm::data::Lexicon::from_text(&std::fs::read_to_string(sonnets()).unwrap());
    for (_, texts, note) in &notes {
        assert_eq!(note.measured.real_words, lexicon.real_word_share(texts));
        assert!(note.measured.data_entropy > 1.0, "{note:?}");
        assert!(!note.advice.is_empty());
    }
    let logged: Vec<_> = flm::train::metrics_log::read(&RunDir::new(&out).metrics_path())
        .into_iter()
        .filter_map(|line| Some((line.step, *line.parts.get("sample_entropy")?)))
        .collect();
    let measured: Vec<_> = notes.iter().map(|n| (n.0, n.2.measured.entropy)).collect();
    assert_eq!(logged, measured);
}

fn prepare_vocab(run: &std::path::Path) -> usize {
    flm::train::checkpoint::load_config(&RunDir::new(run))
        .unwrap()
        .model
        .vocab_size
}

#[test]
fn resume_continues_the_same_loss_curve() {
    let straight = temp_dir("straight");
    let mut request = micro_request(&straight, "builtin:sorted");
    request.steps = Some(12);
    let (_, events) = run_request(&request);
    let uninterrupted = step_losses(&events);

    let split = temp_dir("split");
    let mut first_half = micro_request(&split, "builtin:sorted");
    first_half.steps = Some(6);
    let (summary, _) = run_request(&first_half);
    assert_eq!(summary.final_step, 6);
    assert_eq!(load_state(&RunDir::new(&split)).unwrap().step, 6);

    let mut second_half = micro_request(&split, "builtin:sorted");
    second_half.steps = Some(12);
    second_half.resume = true;
    let (_, events) = run_request(&second_half);
    let resumed = step_losses(&events);
    assert_eq!(resumed.first().map(|s| s.0), Some(7));
    for ((step_a, a), (step_b, b)) in uninterrupted[6..].iter().zip(&resumed) {
        assert_eq!(step_a, step_b);
        assert!((a - b).abs() < 1e-5, "step {step_a}: {a} vs {b}");
    }
    assert_eq!(resumed.len(), 6);
}

#[test]
fn starting_over_an_existing_run_is_refused() {
    let out = temp_dir("no-overwrite");
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(2);
    run_request(&request);
    let error = prepare_run(&request)
        .err()
        .expect("second fresh start must fail");
    assert!(error.to_string().contains("--resume"), "{error}");
    let mut missing = micro_request(&temp_dir("empty"), "builtin:repeat");
    missing.resume = true;
    let error = prepare_run(&missing)
        .err()
        .expect("resume of nothing must fail");
    assert!(error.to_string().contains("no run to resume"), "{error}");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let out = temp_dir("nan");
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(4);
    run_request(&request);
    let run = RunDir::new(&out);
    let before = std::fs::read(run.weights_dir().unwrap().join("model.safetensors")).unwrap();

    // Resume with an absurd learning rate: the weights overflow and the loss turns non-finite.
    let mut resume = micro_request(&out, "builtin:repeat");
    resume.resume = true;
    resume.steps = Some(50);
    let mut prepared = prepare_run(&resume).unwrap();
    prepared.config.train.learning_rate = 1e38;
    prepared.config.train.warmup_steps = 0;
    let (result, events) = run_prepared(prepared);
    match result {
        Err(TrainError::NonFinite {
            last_checkpoint, ..
        }) => assert_eq!(last_checkpoint, Some(4)),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TrainEvent::Checkpoint { .. }))
    );
    assert_eq!(load_state(&run).unwrap().step, 4);
    let after = std::fs::read(run.weights_dir().unwrap().join("model.safetensors")).unwrap();
    assert_eq!(before, after, "the last good checkpoint was modified");
}

#[test]
fn leftovers_of_a_failed_start_do_not_poison_a_new_run() {
    let out = temp_dir("leftovers");
    // What a start that died after tokenizing (e.g. text too short) could leave behind.
    std::fs::write(out.join("tokenizer.json"), "{ half a tokenizer").unwrap();
    std::fs::write(out.join("tokens-train.bin"), b"junk").unwrap();
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(1);
    run_request(&request);
    flm::train::load_model(&out, &flm::device::cpu_device()).expect("the new run loads");
    assert!(!out.join("tokens-train.bin").exists());
}
