//! The WGSL kernels against their burn-ops reference paths, on the wgpu device (lavapipe in CI).

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use flm::device::{DeviceChoice, select};
use flm::flow::distill::DistillSettings;
use flm::flow::{SamplerKind, SamplerSettings, Schedule, sample_conditioned, sample_with};
use flm::kernels::KernelPath;
use flm::kernels::noisy_input::noisy_input;
use flm::kernels::sampler_step::{StepCoefficients, fused_sampler_step, reference_sampler_step};
use flm::rng::{standard_normal, stream_rng};
use flm::train::{NewModelKind, load_model};

use crate::common::*;

fn gpu() -> burn::tensor::Device {
    select(DeviceChoice::Gpu)
        .expect("a wgpu adapter is required (install mesa-vulkan-drivers libvulkan1)")
        .device
}

fn read(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// The kinds of logits rows the kernel must get exactly right.
#[derive(Debug, Clone, Copy)]
enum Logits {
    /// Large magnitudes (±80), all distinct.
    Spread,
    /// Large magnitudes rounded to multiples of 8: many exact ties, also at the top.
    Ties,
    /// Every logit equal (an untrained model's zero output layer): all of them tie.
    AllEqual,
    /// The 16 largest logits at ids 0, 64, 128, …: all in one thread's share of the row,
    /// which overflows the kernel's per-thread candidates and takes its exact fallback.
    StridedTop,
}

fn stress_logits(rows: usize, vocab: usize, seed: u64, kind: Logits) -> Vec<f32> {
    let mut values: Vec<f32> = standard_normal(&mut stream_rng(seed, 0), rows * vocab)
        .into_iter()
        .map(|v| {
            let v = (v * 30.0).clamp(-80.0, 80.0);
            match kind {
                Logits::Ties => (v / 8.0).round() * 8.0,
                Logits::AllEqual => 0.5,
                Logits::Spread | Logits::StridedTop => v,
            }
        })
        .collect();
    if let Logits::StridedTop = kind {
        for row in values.chunks_mut(vocab) {
            for (rank, id) in (0..vocab).step_by(64).take(16).enumerate() {
                row[id] = 100.0 - rank as f32;
            }
        }
    }
    values
}

/// Entropy of softmax(logits), summed in f64.
fn exact_entropy(logits: &[f32]) -> f32 {
    let max = logits.iter().fold(f64::MIN, |m, &l| m.max(f64::from(l)));
    let weights: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let weighted: f64 = logits
        .iter()
        .zip(&weights)
        .map(|(&l, w)| w * (f64::from(l) - max))
        .sum();
    (total.ln() - weighted / total) as f32
}

fn close(a: f32, b: f32, relative: f32) -> bool {
    (a - b).abs() <= relative * a.abs().max(b.abs()).max(1e-6) + 1e-7
}

/// The kernel on the wgpu device against the reference ops on the CPU backend. (The same ops
/// on lavapipe are not a trustworthy reference: at V = 50257 burn's wgpu softmax put all the
/// mass on token 0 of a row whose maximum is tied 199 times.)
#[test]
fn fused_sampler_step_matches_the_reference_on_edge_shapes() {
    let device = gpu();
    let cpu = flm::device::cpu_device();
    // B·L is never a multiple of the 64-thread workgroup; V spans 1 to GPT-2's vocabulary.
    for (vocab, batch, len) in [
        (1, 3, 7),
        (3, 3, 7),
        (255, 2, 11),
        (1024, 3, 7),
        (8193, 1, 9),
        (50257, 1, 3),
    ] {
        for kind in [
            Logits::Spread,
            Logits::Ties,
            Logits::AllEqual,
            Logits::StridedTop,
        ] {
            let rows = batch * len;
            let logits = stress_logits(rows, vocab, vocab as u64, kind);
            let z = standard_normal(&mut stream_rng(vocab as u64, 1), rows * vocab);
            let tensor = |values: &Vec<f32>, on: &burn::tensor::Device| {
                Tensor::<3>::from_data(TensorData::new(values.clone(), [batch, len, vocab]), on)
            };
            let coefficients = StepCoefficients {
                keep: 0.75,
                moved: 0.25,
                noise: 0.0,
                seed: 0,
                counter: 0,
            };
            let k = 16;
            let fused = fused_sampler_step(
                tensor(&logits, &device),
                tensor(&z, &device),
                coefficients,
                k,
            );
            let reference =
                reference_sampler_step(tensor(&logits, &cpu), tensor(&z, &cpu), coefficients, k);
            let case = format!("V={vocab} B·L={rows} {kind:?}");

            let (zf, zr) = (
                read(fused.z_next.reshape([rows, vocab])),
                read(reference.z_next.reshape([rows, vocab])),
            );
            for (a, b) in zf.iter().zip(&zr) {
                assert!(close(*a, *b, 1e-5), "{case}: z {a} vs {b}");
            }
            let k = k.min(vocab);
            let width = 2 + 2 * k;
            let (sf, sr) = (read(fused.stats), read(reference.stats));
            assert_eq!(sf.len(), rows * width, "{case}");
            let probs = read(softmax(tensor(&logits, &cpu).reshape([rows, vocab]), 1));
            for row in 0..rows {
                let (f, r) = (&sf[row * width..][..width], &sr[row * width..][..width]);
                // Entropy against an f64 sum: at V = 50257 with all logits equal, the f32
                // reference ops drift by 5e-5 relative from ln V.
                let row_logits = &logits[row * vocab..][..vocab];
                let entropy = exact_entropy(row_logits);
                assert!(
                    close(f[0], entropy, 1e-5) || (f[0] - entropy).abs() < 1e-6,
                    "{case}: entropy {} vs {entropy} (reference ops {})",
                    f[0],
                    r[0]
                );
                assert!(
                    close(f[1], r[1], 1e-5),
                    "{case}: max prob {} vs {}",
                    f[1],
                    r[1]
                );
                // The ids are exactly the k best by (logit desc, id asc), and their
                // probabilities agree with the reference in order.
                let mut expected: Vec<usize> = (0..vocab).collect();
                expected.sort_by(|&a, &b| row_logits[b].total_cmp(&row_logits[a]).then(a.cmp(&b)));
                let ids: Vec<usize> = f[2..2 + k].iter().map(|&id| id as usize).collect();
                assert_eq!(ids, expected[..k], "{case}: row {row} top-k ids");
                for i in 0..k {
                    let p = f[2 + k + i];
                    assert!(
                        close(p, r[2 + k + i], 1e-5),
                        "{case}: top prob {i}: {p} vs {}",
                        r[2 + k + i]
                    );
                    assert!(
                        close(probs[row * vocab + ids[i]], p, 1e-5),
                        "{case}: id {} has p {}",
                        ids[i],
                        probs[row * vocab + ids[i]]
                    );
                }
            }
        }
    }
}

#[test]
fn fused_noise_matches_the_host_stream() {
    let device = gpu();
    let (rows, vocab) = (5, 300);
    let logits = stress_logits(rows, vocab, 9, Logits::Spread);
    let z = vec![0.0f32; rows * vocab];
    let tensor = |values: &Vec<f32>| {
        Tensor::<3>::from_data(TensorData::new(values.clone(), [1, rows, vocab]), &device)
    };
    let coefficients = StepCoefficients {
        keep: 1.0,
        moved: 0.0,
        noise: 1.0,
        seed: 77,
        counter: 5,
    };
    let fused = read(
        fused_sampler_step(tensor(&logits), tensor(&z), coefficients, 1)
            .z_next
            .reshape([rows, vocab]),
    );
    let host = flm::rng::counter_normals(77, 5, rows * vocab);
    for (a, b) in fused.iter().zip(&host) {
        // GPU log/cos may differ from the host's in the last bits.
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn samplers_with_and_without_kernels_agree() {
    let device = gpu();
    let out = temp_dir("kernel-samplers");
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(30);
    run_request(&request);
    let student = temp_dir("kernel-samplers-fm");
    let mut fm = micro_request(&student, "builtin:repeat");
    fm.kind = NewModelKind::SelfDistilledFlowMap(DistillSettings::paper(0.5));
    fm.steps = Some(10);
    run_request(&fm);
    for (dir, kind) in [
        (&out, SamplerKind::Euler),
        (&student, SamplerKind::FlowMap { eta: 0.0 }),
        (&student, SamplerKind::FlowMap { eta: 0.6 }),
    ] {
        let loaded = load_model(dir, &device).unwrap();
        let schedule = Schedule::new(loaded.config.model.vocab_size).unwrap();
        let settings = SamplerSettings {
            steps: 6,
            seed: 4,
            stream: 0,
            batch: 3,
            seq_len: 32,
            top_k: 4,
            decoding: Default::default(),
        };
        let run = |path| sample_with(&loaded.model, kind, &schedule, &settings, path, &device);
        let (fused, reference) = (run(KernelPath::Auto), run(KernelPath::Reference));
        assert_eq!(fused.tokens, reference.tokens, "{kind:?}");
        // With positions fixed (a prompt), the clamp follows either path's step alike.
        let fixed = [Some(14), None, Some(20)];
        let conditioned = |path| {
            let on_step = &mut |_| std::ops::ControlFlow::Continue(());
            sample_conditioned(
                &loaded.model,
                kind,
                &schedule,
                &settings,
                // Guidance too: its gradient is the same whichever path makes the step.
                flm::flow::Clamped {
                    tokens: &fixed,
                    per_row: &[],
                    guidance: 4.0,
                },
                path,
                &device,
                on_step,
            )
            .unwrap()
            .tokens
        };
        let prompted = conditioned(KernelPath::Auto);
        assert_eq!(prompted, conditioned(KernelPath::Reference), "{kind:?}");
        assert!(
            prompted.iter().all(|t| t[0] == 14 && t[2] == 20),
            "{kind:?}"
        );
        let (a, b) = (fused.trajectory.unwrap(), reference.trajectory.unwrap());
        for (sa, sb) in a.samples.iter().zip(&b.samples) {
            for (fa, fb) in sa.frames.iter().zip(&sb.frames) {
                assert_eq!(fa.argmax, fb.argmax, "{kind:?}");
                for (pa, pb) in fa.top_probs.iter().zip(&fb.top_probs) {
                    assert!((pa - pb).abs() < 1e-4, "{kind:?}: {pa} vs {pb}");
                }
            }
        }
    }
}

#[test]
fn fused_noisy_input_matches_the_host_path_and_is_standard_normal() {
    let device = gpu();
    let cpu = flm::device::cpu_device();
    for vocab in [1, 3, 255, 1024, 8193] {
        let (batch, len) = (4, 5); // 20 rows: not a multiple of the workgroup
        let tokens: Vec<u32> = (0..batch * len).map(|i| (i * 7 % vocab) as u32).collect();
        let gammas = [0.0, 0.3, 1.0, 0.7];
        let make = |path, on: &burn::tensor::Device| {
            noisy_input(&tokens, &gammas, len, vocab, 99, path, on).reshape([batch * len, vocab])
        };
        let fused = read(make(KernelPath::Auto, &device));
        let host = read(make(KernelPath::Reference, &cpu));
        for (i, (a, b)) in fused.iter().zip(&host).enumerate() {
            assert!((a - b).abs() < 1e-4, "V={vocab} element {i}: {a} vs {b}");
        }
        // γ = 1 rows are exactly one-hot.
        for row in 2 * len..3 * len {
            let values = &fused[row * vocab..(row + 1) * vocab];
            for (j, &v) in values.iter().enumerate() {
                let want = if j == tokens[row] as usize { 1.0 } else { 0.0 };
                assert_eq!(v, want, "V={vocab} row {row}");
            }
        }
    }
    // Pure noise (γ = 0) from the shader: reproducible, N(0, 1), neighbours uncorrelated.
    let tokens = vec![0u32; 64];
    let noise = |seed| {
        read(
            noisy_input(&tokens, &[0.0], 64, 4096, seed, KernelPath::Auto, &device)
                .reshape([64, 4096]),
        )
    };
    let (a, b, c) = (noise(5), noise(5), noise(6));
    assert_eq!(a, b, "same seed, same noise");
    assert_ne!(a[..64], c[..64], "another seed, other noise");
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let lag1 = a.windows(2).map(|w| w[0] as f64 * w[1] as f64).sum::<f64>() / n;
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.01 && lag1.abs() < 0.01,
        "{mean} {var} {lag1}"
    );
}
