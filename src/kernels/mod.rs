//! Hand-written WGSL compute kernels for the hot paths (sources in `shaders/`), each with a
//! reference path of ordinary burn ops. The kernels run on wgpu devices; every other backend
//! (and any test that asks) takes the reference path.

pub mod bench;
pub mod fused;
pub mod noisy_input;
pub mod sampler_step;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

/// Which implementation of a fused operation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelPath {
    /// The WGSL kernel on wgpu devices, the reference path elsewhere.
    #[default]
    Auto,
    /// Always the burn-ops reference path (tests and benchmarks compare against it).
    Reference,
}

impl KernelPath {
    /// Whether the WGSL kernel runs for tensors on `device`.
    pub fn uses_kernel(self, device: &Device) -> bool {
        self == KernelPath::Auto && runs_on_gpu(device) && enabled()
    }
}

/// Whether flm's own kernels (WGSL on wgpu, `fused` on the CPU) run at all. On unless
/// `FLM_KERNELS=off` is set; benchmarks switch it to time both paths in one process.
pub fn enabled() -> bool {
    ENABLED
        .get_or_init(|| AtomicBool::new(!std::env::var("FLM_KERNELS").is_ok_and(|v| v == "off")))
        .load(Ordering::Relaxed)
}

/// Turns flm's kernels on or off for the whole process (benchmarks only: results are the
/// same either way, only speed differs).
pub fn set_enabled(on: bool) {
    ENABLED
        .get_or_init(|| AtomicBool::new(on))
        .store(on, Ordering::Relaxed);
}

static ENABLED: std::sync::OnceLock<AtomicBool> = std::sync::OnceLock::new();

/// The counter-based normal generator every kernel pastes in (`counter_rng` template slot).
pub(crate) const COUNTER_RNG: &str = include_str!("../../shaders/counter_rng.wgsl");

/// One workgroup per row, with a second grid dimension past the 65,535 limit of the first.
pub(crate) fn row_grid(rows: usize) -> burn::cubecl::CubeCount {
    let x = (rows as u32).clamp(1, 65_535);
    let y = (rows as u32).div_ceil(x).max(1);
    burn::cubecl::CubeCount::Static(x, y, 1)
}

/// Whether `device` is a cubecl (wgpu) device without autodiff, where the kernels run.
pub fn runs_on_gpu(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_))
}
