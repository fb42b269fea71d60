//! Hand-written WGSL compute kernels for the hot paths (sources in `shaders/`), each with a
//! reference path of ordinary burn ops. The kernels run on wgpu devices; every other backend
//! (and any test that asks) takes the reference path.

pub mod bench;
pub mod sampler_step;

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
        self == KernelPath::Auto && runs_on_gpu(device)
    }
}

/// Whether `device` is a cubecl (wgpu) device without autodiff, where the kernels run.
pub fn runs_on_gpu(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_))
}
