//! Samplers: determinism and the recorded trajectory.

use flm::device::cpu_device;
use flm::flow::{SamplerSettings, Schedule, euler_sample};
use flm::model::{Dit, ModelConfig, ModelPreset};
use flm::train::{LoadedModel, load_model};

use crate::common::*;

fn settings(steps: usize, seed: u64, top_k: usize) -> SamplerSettings {
    SamplerSettings {
        steps,
        seed,
        stream: 0,
        batch: 3,
        seq_len: 32,
        top_k,
        decoding: Default::default(),
    }
}

/// A micro model trained `steps` steps on builtin:repeat, loaded on the CPU, with its schedule.
fn trained_repeat_model(name: &str, steps: u64) -> (LoadedModel, Schedule) {
    let out = temp_dir(name);
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(steps);
    run_request(&request);
    let loaded = load_model(&out, &cpu_device()).unwrap();
    let schedule = Schedule::new(loaded.config.model.vocab_size).unwrap();
    (loaded, schedule)
}

#[test]
fn euler_sampler_is_deterministic_for_a_seed() {
    let (loaded, schedule) = trained_repeat_model("determinism", 10);
    let device = cpu_device();
    let a = euler_sample(&loaded.model, &schedule, &settings(6, 5, 4), &device);
    let b = euler_sample(&loaded.model, &schedule, &settings(6, 5, 4), &device);
    let c = euler_sample(&loaded.model, &schedule, &settings(6, 6, 4), &device);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.trajectory, b.trajectory);
    assert_ne!(a.tokens, c.tokens, "another seed should give other samples");
}

#[test]
fn trajectory_records_every_step_and_position() {
    let device = cpu_device();
    let vocab = 29;
    let config = ModelConfig::from_preset(ModelPreset::Micro, vocab, 32);
    let model = Dit::new(&config, 0, &device);
    let schedule = Schedule::new(vocab).unwrap();
    let output = euler_sample(&model, &schedule, &settings(5, 1, 4), &device);
    let trajectory = output.trajectory.expect("top_k > 0 records");
    assert_eq!(trajectory.steps, 5);
    assert_eq!(trajectory.taus, vec![0.0, 0.2, 0.4, 0.6, 0.8]);
    assert!(trajectory.gammas.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(trajectory.samples.len(), 3);
    for (sample, tokens) in trajectory.samples.iter().zip(&output.tokens) {
        assert_eq!(&sample.tokens, tokens);
        assert_eq!(sample.frames.len(), 5);
        for frame in &sample.frames {
            assert_eq!(frame.argmax.len(), 32);
            assert_eq!(frame.top_ids.len(), 32 * 4);
            // A fresh model is uniform: entropy ln V and probability 1/V everywhere.
            for (&h, &p) in frame.entropy.iter().zip(&frame.max_prob) {
                assert!((h - (vocab as f32).ln()).abs() < 1e-4, "entropy {h}");
                assert!((p - 1.0 / vocab as f32).abs() < 1e-5, "max prob {p}");
            }
            let sums: Vec<f32> = frame.top_probs.chunks(4).map(|c| c.iter().sum()).collect();
            assert!(sums.iter().all(|&s| (s - 4.0 / vocab as f32).abs() < 1e-5));
        }
        assert!(sample.frames[0].flipped.iter().all(|&f| !f));
    }
}

#[test]
fn an_observed_run_reports_every_step_and_can_be_cancelled() {
    use std::ops::ControlFlow;

    use flm::flow::{SamplerKind, sample_observed};
    use flm::kernels::KernelPath;

    let (loaded, schedule) = trained_repeat_model("observed", 5);
    let device = cpu_device();
    let run = |stop_after: usize, seen: &mut Vec<usize>| {
        sample_observed(
            &loaded.model,
            SamplerKind::Euler,
            &schedule,
            &settings(6, 5, 4),
            KernelPath::Auto,
            &device,
            &mut |step| {
                seen.push(step);
                if step == stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
    };
    let mut seen = Vec::new();
    let full = run(usize::MAX, &mut seen).expect("not cancelled");
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    let plain = euler_sample(&loaded.model, &schedule, &settings(6, 5, 4), &device);
    assert_eq!(
        full.tokens, plain.tokens,
        "watching does not change the samples"
    );
    let mut seen = Vec::new();
    assert!(run(2, &mut seen).is_none(), "cancelled after step 2");
    assert_eq!(seen, [1, 2]);
}
