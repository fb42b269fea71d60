//! Which compute backend runs the model. A real GPU goes through wgpu; a CPU-only adapter
//! (Mesa's lavapipe) is ~50× slower than Burn's CPU backend for matmuls, so `auto` uses the CPU
//! backend there and says why.

use std::fmt;

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuSetup, wgpu};

/// What the user asked for with `--device` (the CLI lists these values in `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A real GPU if present, else the CPU backend.
    #[default]
    Auto,
    /// The wgpu device, whatever adapter it is.
    #[value(alias = "wgpu")]
    Gpu,
    /// Burn's CPU backend.
    Cpu,
}

/// The backend family a [`ComputeDevice`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Wgpu,
}

/// A chosen device with a sentence saying what it is and why it was picked.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    pub backend: Backend,
    pub description: String,
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Burn's CPU backends; `flm bench` compares them (`FLM_CPU_BACKEND=flex|ndarray`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuBackend {
    Flex,
    NdArray,
}

impl CpuBackend {
    /// The backend `cpu_device` uses: `FLM_CPU_BACKEND` when set, else the faster one.
    pub fn current() -> Self {
        match std::env::var("FLM_CPU_BACKEND").as_deref() {
            Ok("ndarray") => CpuBackend::NdArray,
            Ok("flex") => CpuBackend::Flex,
            _ => CpuBackend::Flex,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuBackend::Flex => "flex",
            CpuBackend::NdArray => "ndarray",
        }
    }

    #[allow(deprecated)] // `Device::ndarray` is deprecated in favour of `flex`; kept to compare.
    pub fn device(self) -> Device {
        match self {
            CpuBackend::Flex => Device::flex(),
            CpuBackend::NdArray => Device::ndarray(),
        }
    }
}

/// Burn's CPU device (see [`CpuBackend::current`]). The one place that picks it.
pub fn cpu_device() -> Device {
    CpuBackend::current().device()
}

/// Facts about the best wgpu adapter on this machine.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub is_cpu: bool,
    pub backend: String,
}

/// Lists adapters without creating a device, so probing never grabs a GPU.
pub fn best_adapter() -> Option<AdapterSummary> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster_block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| a.get_info())
        // Burn computes through Vulkan, Metal or DX12; on an OpenGL adapter it lacks float
        // atomics and autotuning can deadlock (seen on Mesa's llvmpipe), so GL never counts.
        .filter(|info| info.backend != wgpu::Backend::Gl)
        .map(|info| AdapterSummary {
            is_cpu: info.device_type == wgpu::DeviceType::Cpu,
            name: info.name,
            backend: format!("{:?}", info.backend),
        })
        .min_by_key(|a| a.is_cpu)
}

/// Runs a future that is ready (or nearly) to completion on this thread.
fn pollster_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}

/// Picks the device for `choice`.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, String> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu(String::from(
            "CPU backend (requested with --device cpu)",
        ))),
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Auto => match best_adapter() {
            Some(adapter) if !adapter.is_cpu => gpu(),
            Some(adapter) => Ok(cpu(format!(
                "CPU backend: the only GPU adapter is a software one ({}), which is far slower; \
                 pass --device gpu to use it anyway",
                adapter.name
            ))),
            None => Ok(cpu(String::from("CPU backend: no GPU adapter found"))),
        },
    }
}

fn cpu(description: String) -> ComputeDevice {
    ComputeDevice {
        device: cpu_device(),
        backend: Backend::Cpu,
        description,
    }
}

fn gpu() -> Result<ComputeDevice, String> {
    let adapter = best_adapter().ok_or_else(|| {
        String::from(
            "no GPU adapter found for --device gpu (OpenGL-only adapters cannot run Burn's \
             compute)\n  hint: install Vulkan drivers (on Debian/Ubuntu: mesa-vulkan-drivers \
             libvulkan1) or use --device cpu",
        )
    })?;
    let device = wgpu_runtime()
        .map(|(device, _)| device.clone())
        .map_err(|e| format!("could not start wgpu on {}: {e}", adapter.name))?;
    let software = if adapter.is_cpu {
        ", software rasteriser"
    } else {
        ""
    };
    Ok(ComputeDevice {
        device,
        backend: Backend::Wgpu,
        description: format!("wgpu on {} ({}{software})", adapter.name, adapter.backend),
    })
}

/// Burn's wgpu runtime and the handles it runs on. It can be registered once per process, so
/// later requests share it, and the desktop app renders on the same device (one GPU context,
/// no copies between two).
fn wgpu_runtime() -> Result<&'static (Device, WgpuSetup), String> {
    static WGPU: std::sync::OnceLock<Result<(Device, WgpuSetup), String>> =
        std::sync::OnceLock::new();
    WGPU.get_or_init(|| {
        Device::wgpu_options()
            .init_with_setup()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The wgpu instance, adapter, device and queue compute runs on, when `device` is the wgpu
/// backend; a renderer given these draws on the same GPU.
pub fn shared_wgpu_setup(device: &ComputeDevice) -> Option<WgpuSetup> {
    match device.backend {
        Backend::Wgpu => wgpu_runtime().ok().map(|(_, setup)| setup.clone()),
        Backend::Cpu => None,
    }
}
