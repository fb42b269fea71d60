//! The fused operations against their reference paths: values and gradients.

use super::*;
use crate::rng::{standard_normal, stream_rng};
use burn::tensor::Tolerance;

fn random<const D: usize>(shape: [usize; D], seed: u64, scale: f32, device: &Device) -> Tensor<D> {
    let values: Vec<f32> = standard_normal(&mut stream_rng(seed, 7), shape.iter().product())
        .into_iter()
        .map(|v| v * scale)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn flex() -> Device {
    Device::flex()
}

/// The fused op and its reference give the same values and the same input gradient under
/// a random linear loss, on the Flex device with autodiff.
fn same_values_and_gradients<const D: usize, const E: usize>(
    input: Tensor<D>,
    fused: impl Fn(Tensor<D>) -> Tensor<E>,
    reference: impl Fn(Tensor<D>) -> Tensor<E>,
    tolerance: f32,
) {
    assert!(runs_fused(&input.device()));
    let device = flex().autodiff();
    let run = |f: &dyn Fn(Tensor<D>) -> Tensor<E>| {
        let x = Tensor::<D>::from_data(input.to_data(), &device).require_grad();
        let y = f(x.clone());
        let weights = random(y.dims(), 99, 1.0, &device);
        let grads = (y.clone() * weights).sum().backward();
        (
            y.inner().into_data(),
            x.grad(&grads).expect("a gradient").into_data(),
        )
    };
    let (y_fused, g_fused) = run(&fused);
    let (y_ref, g_ref) = run(&reference);
    y_fused.assert_approx_eq::<f32>(&y_ref, Tolerance::absolute(tolerance));
    g_fused.assert_approx_eq::<f32>(&g_ref, Tolerance::absolute(tolerance));
}

#[test]
fn fast_exp_and_tanh_match_the_standard_library() {
    let mut worst_exp = 0.0f32;
    let mut worst_tanh = 0.0f32;
    for i in -20_000..=20_000 {
        let x = i as f32 * 0.004; // [-80, 80]
        let exact = x.exp();
        worst_exp = worst_exp.max(((fast_exp(x) - exact) / exact).abs());
        let x = i as f32 * 0.0005; // [-10, 10]
        worst_tanh = worst_tanh.max((fast_tanh(x) - x.tanh()).abs());
    }
    assert!(worst_exp < 5e-7, "relative error of exp {worst_exp}");
    assert!(worst_tanh < 2e-7, "absolute error of tanh {worst_tanh}");
    assert_eq!(fast_tanh(0.0), 0.0);
    assert_eq!(fast_tanh(50.0), 1.0);
    assert_eq!(fast_tanh(-50.0), -1.0);
}

#[test]
fn fused_gelu_matches_the_reference() {
    let x = random([3, 7, 33], 1, 3.0, &flex());
    same_values_and_gradients(x, gelu_tanh, reference::gelu_tanh, 1e-5);
}

#[test]
fn fused_soft_cap_matches_the_reference() {
    let x = random([4, 50], 2, 40.0, &flex());
    same_values_and_gradients(
        x,
        |x| soft_cap(x, 30.0),
        |x| reference::soft_cap(x, 30.0),
        2e-5,
    );
}

#[test]
fn fused_attention_weights_match_the_reference_with_and_without_the_causal_mask() {
    for causal in [false, true] {
        let scores = random([2, 3, 9, 9], 3, 20.0, &flex());
        same_values_and_gradients(
            scores,
            |s| attention_weights(s, 0.25, 5.0, causal),
            |s| reference::attention_weights(s, 0.25, 5.0, causal),
            1e-5,
        );
    }
}

#[test]
fn fused_layer_norm_matches_the_reference_for_input_and_scale() {
    let device = flex().autodiff();
    let x0 = random([2, 5, 24], 4, 2.0, &flex());
    let w0 = random([24], 5, 1.0, &flex()) + 1.0;
    let run = |fused: bool| {
        let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
        let w = Tensor::<1>::from_data(w0.to_data(), &device).require_grad();
        let y = if fused {
            layer_norm(x.clone(), w.clone(), 1e-5)
        } else {
            reference::layer_norm(x.clone(), w.clone(), 1e-5)
        };
        let weights = random(y.dims(), 6, 1.0, &device);
        let grads = (y.clone() * weights).sum().backward();
        (
            y.inner().into_data(),
            x.grad(&grads).unwrap().into_data(),
            w.grad(&grads).unwrap().into_data(),
        )
    };
    let (fused, reference) = (run(true), run(false));
    let tolerance = Tolerance::absolute(1e-4);
    fused.0.assert_approx_eq::<f32>(&reference.0, tolerance);
    fused.1.assert_approx_eq::<f32>(&reference.1, tolerance);
    fused.2.assert_approx_eq::<f32>(&reference.2, tolerance);
}

/// `matmul` against Burn's on three shapes: a 2-D product big enough to split across
/// threads, a batch of transposed views (the backward pass's case) and a batch of many small
/// products; values and both inputs' gradients.
#[test]
fn fused_matmul_matches_burn_for_plain_transposed_and_batched_operands() {
    let device = flex().autodiff();
    let check = |lhs0: Tensor<4>, rhs0: Tensor<4>, transpose_rhs: bool| {
        let run = |fused: bool| {
            let lhs = Tensor::<4>::from_data(lhs0.to_data(), &device).require_grad();
            let rhs = Tensor::<4>::from_data(rhs0.to_data(), &device).require_grad();
            let right = if transpose_rhs {
                rhs.clone().swap_dims(2, 3)
            } else {
                rhs.clone()
            };
            let y = if fused {
                matmul(lhs.clone(), right)
            } else {
                lhs.clone().matmul(right)
            };
            let weights = random(y.dims(), 12, 1.0, &device);
            let grads = (y.clone() * weights).sum().backward();
            (
                y.inner().into_data(),
                lhs.grad(&grads).unwrap().into_data(),
                rhs.grad(&grads).unwrap().into_data(),
            )
        };
        let (fused, reference) = (run(true), run(false));
        let tolerance = Tolerance::absolute(1e-3);
        fused.0.assert_approx_eq::<f32>(&reference.0, tolerance);
        fused.1.assert_approx_eq::<f32>(&reference.1, tolerance);
        fused.2.assert_approx_eq::<f32>(&reference.2, tolerance);
    };
    let lhs = random([1, 1, 100, 120], 8, 1.0, &flex());
    check(lhs, random([1, 1, 120, 90], 9, 1.0, &flex()), false);
    let lhs = random([2, 4, 64, 48], 10, 1.0, &flex());
    check(lhs, random([2, 4, 64, 48], 11, 1.0, &flex()), true);
    let lhs = random([3, 5, 7, 6], 13, 1.0, &flex());
    check(lhs, random([3, 5, 6, 9], 14, 1.0, &flex()), false);
}

#[test]
fn fused_rotary_matches_the_reference() {
    let device = flex();
    let (cos, sin) = crate::model::rotary_tables_for_tests(6, 8, &device);
    let x = random([2, 3, 6, 8], 7, 1.0, &device);
    let (c, s) = (cos.clone(), sin.clone());
    same_values_and_gradients(
        x,
        move |x| {
            let device = x.device();
            rotary(
                x,
                &Tensor::from_data(c.to_data(), &device),
                &Tensor::from_data(s.to_data(), &device),
            )
        },
        move |x| {
            let device = x.device();
            reference::rotary(
                x,
                &Tensor::from_data(cos.to_data(), &device),
                &Tensor::from_data(sin.to_data(), &device),
            )
        },
        1e-5,
    );
}

#[test]
fn fused_cross_entropy_matches_the_reference() {
    let device = flex().autodiff();
    let logits0 = random([3, 4, 17], 8, 4.0, &flex());
    let ids: Vec<i64> = (0..12).map(|i| (i * 5 % 17) as i64).collect();
    let run = |fused: bool| {
        let logits = Tensor::<3>::from_data(logits0.to_data(), &device).require_grad();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [3, 4]), &device);
        let loss = if fused {
            cross_entropy(logits.clone(), targets)
        } else {
            reference::cross_entropy(logits.clone(), targets)
        };
        let grads = loss.clone().backward();
        (
            loss.inner().into_data(),
            logits.grad(&grads).unwrap().into_data(),
        )
    };
    let (fused, reference) = (run(true), run(false));
    fused
        .0
        .assert_approx_eq::<f32>(&reference.0, Tolerance::absolute(1e-5));
    fused
        .1
        .assert_approx_eq::<f32>(&reference.1, Tolerance::absolute(1e-6));
}

#[test]
fn other_devices_take_the_reference_path() {
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    assert!(!runs_fused(&ndarray));
    assert!(runs_fused(&flex()));
    assert!(runs_fused(&flex().autodiff()));
}
