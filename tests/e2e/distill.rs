//! Flow-map distillation: the student starts as its teacher, learns, checkpoints and resumes.

use std::path::{Path, PathBuf};

use flm::device::cpu_device;
use flm::flow::distill::DistillSettings;
use flm::flow::{SamplerSettings, Schedule, euler_sample, flow_map_sample};
use flm::train::checkpoint::{RunDir, load_state};
use flm::train::setup::prepare_distill;
use flm::train::{
    DistillRequest, ModelKind, NewModelKind, Objective, TrainConfig, TrainError, load_model,
};

use crate::common::*;

/// A micro FLM trained long enough on `builtin:repeat` that its outputs are far from uniform.
fn teacher(name: &str) -> PathBuf {
    let out = temp_dir(name);
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(40);
    run_request(&request);
    out
}

fn distill_request(teacher: &Path, out: &Path, steps: u64) -> DistillRequest {
    DistillRequest {
        teacher: teacher.to_path_buf(),
        out: out.to_path_buf(),
        train: TrainConfig {
            learning_rate: 2e-3,
            ..micro_request(out, "builtin:repeat").train
        },
        settings: DistillSettings::paper(0.5),
        steps: Some(steps),
        minutes: None,
        resume: false,
    }
}

#[test]
fn untrained_student_samples_exactly_like_its_teacher() {
    let teacher_dir = teacher("fm-teacher-equal");
    let out = temp_dir("fm-student-equal");
    let device = cpu_device();
    let prepared = prepare_distill(&distill_request(&teacher_dir, &out, 1)).unwrap();
    assert_eq!(prepared.config.kind, ModelKind::FlowMap);
    let config = prepared.config.clone();
    let job = prepared.into_job(cpu()).unwrap();
    let student = job
        .objective
        .initial_model(&config, config.train.seed, &device);
    assert!(student.is_flow_map());

    let teacher = load_model(&teacher_dir, &device).unwrap().model;
    let schedule = Schedule::new(config.model.vocab_size).unwrap();
    for steps in [1, 4, 16] {
        let settings = SamplerSettings {
            steps,
            seed: 3,
            stream: 0,
            batch: 4,
            seq_len: 32,
            top_k: 5,
            decoding: Default::default(),
        };
        let euler = euler_sample(&teacher, &schedule, &settings, &device);
        let jumps = flow_map_sample(&student, &schedule, &settings, 0.0, &device);
        assert_eq!(euler.tokens, jumps.tokens, "{steps} steps");
        let (a, b) = (euler.trajectory.unwrap(), jumps.trajectory.unwrap());
        assert_eq!(
            (a.sampler.as_str(), b.sampler.as_str()),
            ("euler", "flow-map")
        );
        let mut largest = 0f32;
        for (sa, sb) in a.samples.iter().zip(&b.samples) {
            for (fa, fb) in sa.frames.iter().zip(&sb.frames) {
                for (pa, pb) in fa.top_probs.iter().zip(&fb.top_probs) {
                    largest = largest.max((pa - pb).abs());
                }
            }
        }
        assert!(
            largest < 1e-4,
            "{steps} steps: probabilities differ by {largest}"
        );
        // The teacher is trained: its last-step outputs are confident, not uniform.
        let last = a.samples[0].frames.last().unwrap();
        assert!(
            last.max_prob.iter().any(|&p| p > 0.5),
            "{:?}",
            last.max_prob
        );
    }
}

#[test]
fn distillation_lowers_the_off_diagonal_loss_and_resumes_exactly() {
    let teacher_dir = teacher("fm-teacher-learn");
    let device = cpu_device();

    // One straight run of 24 steps…
    let straight = temp_dir("fm-straight");
    let prepared = prepare_distill(&distill_request(&teacher_dir, &straight, 24)).unwrap();
    let config = prepared.config.clone();
    let valid = prepared.data.valid_batches(7, 8, 4);
    let job = prepared.into_job(cpu()).unwrap();
    let schedule = Schedule::new(config.model.vocab_size).unwrap();
    let objective = Objective::for_run(&config, &RunDir::new(&straight), &device).unwrap();
    let off_diagonal = |model: &flm::model::Dit| {
        let (_, parts) = objective.validation_loss(model, &valid, 32, 7, &schedule, &device);
        parts
            .iter()
            .find(|(name, _)| *name == "off_diagonal_loss")
            .map(|(_, v)| *v)
            .unwrap()
    };
    let before = off_diagonal(&objective.initial_model(&config, config.train.seed, &device));
    let (result, events) = run_job(job);
    result.unwrap();
    let uninterrupted = step_losses(&events);
    let trained = load_model(&straight, &device).unwrap();
    assert!(trained.model.is_flow_map());
    let after = off_diagonal(&trained.model);
    assert!(
        after < before,
        "off-diagonal loss did not go down: {before} → {after}"
    );

    // …equals 12 steps, a checkpoint, and 12 more after --resume.
    let split = temp_dir("fm-split");
    let (result, _) =
        run_prepared(prepare_distill(&distill_request(&teacher_dir, &split, 12)).unwrap());
    assert_eq!(result.unwrap().final_step, 12);
    assert_eq!(load_state(&RunDir::new(&split)).unwrap().step, 12);
    let mut resume = distill_request(Path::new("/nonexistent/teacher"), &split, 24);
    resume.resume = true;
    let (result, events) = run_prepared(prepare_distill(&resume).unwrap());
    result.unwrap();
    let resumed = step_losses(&events);
    assert_eq!(resumed.first().map(|s| s.0), Some(13));
    for ((step_a, a), (step_b, b)) in uninterrupted[12..].iter().zip(&resumed) {
        assert_eq!(step_a, step_b);
        assert!((a - b).abs() < 1e-5, "step {step_a}: {a} vs {b}");
    }
}

#[test]
fn self_distillation_trains_a_flow_map_without_a_teacher() {
    let out = temp_dir("fm-self");
    let mut request = micro_request(&out, "builtin:repeat");
    request.kind = NewModelKind::SelfDistilledFlowMap(DistillSettings::paper(0.5));
    request.steps = Some(6);
    let (summary, events) = run_request(&request);
    assert_eq!(summary.final_step, 6);
    assert!(step_losses(&events).iter().all(|(_, l)| l.is_finite()));
    let loaded = load_model(&out, &cpu_device()).unwrap();
    assert_eq!(loaded.config.kind, ModelKind::FlowMap);
    assert!(loaded.config.distill.unwrap().teacher.is_none());
    assert!(loaded.model.is_flow_map());
    assert!(!RunDir::new(&out).teacher_path().exists());
}

#[test]
fn distillation_refuses_bad_teachers_with_clear_errors() {
    let out = temp_dir("fm-bad");
    let missing = distill_request(Path::new("/nonexistent/run"), &out.join("a"), 1);
    let error = prepare_distill(&missing).err().expect("missing teacher");
    assert!(error.to_string().contains("not a checkpoint"), "{error}");

    // A flow map cannot be a teacher.
    let flow_map = temp_dir("fm-bad-teacher");
    let mut request = micro_request(&flow_map, "builtin:repeat");
    request.kind = NewModelKind::SelfDistilledFlowMap(DistillSettings::paper(0.5));
    request.steps = Some(1);
    run_request(&request);
    let error = prepare_distill(&distill_request(&flow_map, &out.join("b"), 1))
        .err()
        .expect("flow-map teacher");
    assert!(error.to_string().contains("already a flow-map"), "{error}");

    // `distill --resume` on an FLM run points to `train --resume`.
    let flm_run = temp_dir("fm-bad-resume");
    let mut request = micro_request(&flm_run, "builtin:repeat");
    request.steps = Some(1);
    run_request(&request);
    let mut resume = distill_request(Path::new(""), &flm_run, 2);
    resume.resume = true;
    match prepare_distill(&resume) {
        Err(TrainError::Setup(message)) => assert!(message.contains("train --resume"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("resuming an FLM run as a distillation must fail"),
    }
}
