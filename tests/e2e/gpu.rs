//! The wgpu path (lavapipe on GPU-less machines): same numbers as the CPU backend.

use burn::tensor::{Tensor, TensorData, Tolerance};
use flm::device::{DeviceChoice, cpu_device, select};
use flm::flow::{SamplerSettings, Schedule, euler_sample};
use flm::rng::{standard_normal, stream_rng};
use flm::train::load_model;
use flm::train::setup::prepare_run;

use crate::common::*;

#[test]
fn wgpu_backend_matches_cpu_for_training_and_sampling() {
    let gpu = select(DeviceChoice::Gpu).expect(
        "a wgpu adapter is required for this test (install mesa-vulkan-drivers libvulkan1)",
    );
    // A few training steps on the GPU path: finite, and the same curve as on the CPU.
    let gpu_run = temp_dir("gpu-train");
    let mut request = micro_request(&gpu_run, "builtin:repeat");
    request.steps = Some(3);
    let prepared = prepare_run(&request).unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let job = prepared.into_job(gpu.clone()).unwrap();
    flm::train::train(job, &Default::default(), &sender).expect("trains on wgpu");
    drop(sender);
    let gpu_losses = step_losses(&receiver.into_iter().collect::<Vec<_>>());

    let cpu_run = temp_dir("cpu-train");
    let mut cpu_request = micro_request(&cpu_run, "builtin:repeat");
    cpu_request.steps = Some(3);
    let (_, events) = run_request(&cpu_request);
    let cpu_losses = step_losses(&events);
    assert_eq!(gpu_losses.len(), cpu_losses.len());
    for ((_, g), (_, c)) in gpu_losses.iter().zip(&cpu_losses) {
        assert!(
            (g - c).abs() < 1e-3 * c.abs().max(1.0),
            "loss wgpu {g} vs cpu {c}"
        );
    }

    // The same checkpoint gives the same logits and samples on both backends.
    let on_gpu = load_model(&cpu_run, &gpu.device).unwrap();
    let on_cpu = load_model(&cpu_run, &cpu_device()).unwrap();
    let (vocab, seq_len) = (on_cpu.config.model.vocab_size, on_cpu.config.model.seq_len);
    let noise = standard_normal(&mut stream_rng(3, 3), 2 * seq_len * vocab);
    let logits = |model: &flm::model::Dit, device: &burn::tensor::Device| {
        let x = Tensor::<3>::from_data(TensorData::new(noise.clone(), [2, seq_len, vocab]), device);
        model
            .forward(x, Tensor::from_floats([0.1, 0.6], device), None)
            .into_data()
    };
    logits(&on_gpu.model, &gpu.device).assert_approx_eq::<f32>(
        &logits(&on_cpu.model, &cpu_device()),
        Tolerance::absolute(1e-4),
    );

    let schedule = Schedule::new(vocab).unwrap();
    let settings = SamplerSettings {
        steps: 4,
        seed: 1,
        stream: 0,
        batch: 2,
        seq_len,
        top_k: 3,
        decoding: Default::default(),
    };
    let a = euler_sample(&on_gpu.model, &schedule, &settings, &gpu.device);
    let b = euler_sample(&on_cpu.model, &schedule, &settings, &cpu_device());
    let (ta, tb) = (a.trajectory.unwrap(), b.trajectory.unwrap());
    for (sa, sb) in ta.samples.iter().zip(&tb.samples) {
        for (fa, fb) in sa.frames.iter().zip(&sb.frames) {
            for (pa, pb) in fa.max_prob.iter().zip(&fb.max_prob) {
                assert!((pa - pb).abs() < 1e-4, "max prob {pa} vs {pb}");
            }
        }
    }
}
