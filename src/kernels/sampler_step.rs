//! The fused sampler step (`shaders/sampler_step.wgsl`): softmax of the logits, the update of
//! `z` and the per-row statistics the app draws, in one pass per row on the GPU. The reference
//! path, made of ordinary burn ops, runs everywhere else and defines the expected numbers.

use burn::backend::wgpu::{
    CubeBackend, CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
    kernel_source,
};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::{CubeDim, prelude::KernelId, server::KernelArguments};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{DType, Shape, Tensor};
use derive_new::new;

use super::{COUNTER_RNG, KernelPath, row_grid};
use crate::rng::counter_normals;

/// Largest `k` the kernel keeps per row.
pub const MAX_TOP_K: usize = 16;

/// `z_next = keep·z + moved·softmax(logits) + noise·ξ`, with ξ standard normal from the
/// counter-based stream `(seed, counter)` (`rng.rs`), only when `noise ≠ 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    pub keep: f32,
    pub moved: f32,
    pub noise: f32,
    pub seed: u64,
    pub counter: u64,
}

/// Per-row statistics, `(rows, 2 + 2k)`: entropy, max probability, k ids (exact integers in
/// f32), k probabilities, best first (ties: smaller id first).
pub struct StepOutput {
    pub z_next: Tensor<3>,
    pub stats: Tensor<2>,
}

/// One sampler step: the fused kernel where `path` allows it (wgpu devices), the reference
/// path elsewhere.
pub fn sampler_step(
    logits: Tensor<3>,
    z: Tensor<3>,
    coefficients: StepCoefficients,
    k: usize,
    path: KernelPath,
) -> StepOutput {
    if path.uses_kernel(&z.device()) {
        fused_sampler_step(logits, z, coefficients, k)
    } else {
        reference_sampler_step(logits, z, coefficients, k)
    }
}

/// Largest buffer one kernel launch binds: wgpu's default storage-binding limit (128 MiB).
const MAX_BINDING_BYTES: usize = 128 << 20;

/// The kernel itself (wgpu devices only). Tensors larger than one binding (B·L·V·4 bytes over
/// 128 MiB, e.g. V = 50257 at B·L = 2048) are processed in row chunks.
pub fn fused_sampler_step(
    logits: Tensor<3>,
    z: Tensor<3>,
    coefficients: StepCoefficients,
    k: usize,
) -> StepOutput {
    let [batch, len, vocab] = z.dims();
    let k = k.min(MAX_TOP_K).min(vocab);
    let rows = batch * len;
    let (logits, z) = (logits.reshape([rows, vocab]), z.reshape([rows, vocab]));
    let chunk = (MAX_BINDING_BYTES / (4 * vocab)).clamp(1, rows);
    let (mut z_parts, mut stat_parts) = (Vec::new(), Vec::new());
    for start in (0..rows).step_by(chunk) {
        let count = chunk.min(rows - start);
        let (logits, z) = if count == rows {
            (logits.clone(), z.clone())
        } else {
            (
                logits.clone().narrow(0, start, count),
                z.clone().narrow(0, start, count),
            )
        };
        let (z_next, stats) = Dispatch::sampler_step(
            logits.into_dispatch(),
            z.into_dispatch(),
            pack_params(count, vocab, k, coefficients),
        );
        z_parts.push(Tensor::<2>::from_dispatch(z_next));
        stat_parts.push(Tensor::<2>::from_dispatch(stats));
    }
    let join = |parts: Vec<Tensor<2>>| {
        if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            Tensor::cat(parts, 0)
        }
    };
    StepOutput {
        z_next: join(z_parts).reshape([batch, len, vocab]),
        stats: join(stat_parts),
    }
}

/// The same step in burn ops: what the kernel must reproduce.
pub fn reference_sampler_step(
    logits: Tensor<3>,
    z: Tensor<3>,
    coefficients: StepCoefficients,
    k: usize,
) -> StepOutput {
    let [batch, len, vocab] = z.dims();
    let k = k.min(MAX_TOP_K).min(vocab);
    let rows = batch * len;
    let device = z.device();
    let logits = logits.reshape([rows, vocab]);
    let probs = softmax(logits.clone(), 1);
    let mut next =
        z.reshape([rows, vocab]) * coefficients.keep + probs.clone() * coefficients.moved;
    if coefficients.noise != 0.0 {
        let xi = counter_normals(coefficients.seed, coefficients.counter, rows * vocab);
        let xi = Tensor::<2>::from_data(burn::tensor::TensorData::new(xi, [rows, vocab]), &device);
        next = next + xi * coefficients.noise;
    }
    // Statistics only matter to a recorded trajectory (k > 0); without one they are zeros,
    // which saves the CPU three more passes over the (B·L, V) distributions.
    let stats = if k > 0 {
        let entropy = (probs.clone() * log_softmax(logits, 1)).sum_dim(1).neg(); // (rows, 1)
        let max_prob = probs.clone().max_dim(1);
        let (top_probs, top_ids) = probs.topk_with_indices(k, 1);
        Tensor::cat(vec![entropy, max_prob, top_ids.float(), top_probs], 1)
    } else {
        Tensor::zeros([rows, 2], &device)
    };
    StepOutput {
        z_next: next.reshape([batch, len, vocab]),
        stats,
    }
}

/// `[rows, cols, k, keep, moved, noise, seed lo/hi, counter lo/hi]` as the shader reads them.
fn pack_params(rows: usize, cols: usize, k: usize, c: StepCoefficients) -> [u32; 10] {
    [
        rows as u32,
        cols as u32,
        k as u32,
        c.keep.to_bits(),
        c.moved.to_bits(),
        c.noise.to_bits(),
        c.seed as u32,
        (c.seed >> 32) as u32,
        c.counter as u32,
        (c.counter >> 32) as u32,
    ]
}

kernel_source!(SamplerStepSource, "../../shaders/sampler_step.wgsl");

#[derive(new, Debug)]
struct SamplerStepKernel {
    cube_dim: CubeDim,
    /// Noise is compiled in or out: on software Vulkan a branch costs as much as its body
    /// whether taken or not, and the generator is most of a step's arithmetic.
    with_noise: bool,
}

/// Threads per row. Measured on lavapipe (`flm bench kernels`), 32 beat 64 by 10–30% at every
/// vocabulary size and 128 was slowest: fewer SIMD groups per row to switch between at each
/// barrier. It must be at least `MAX_TOP_K` (the top-k threshold is a rank among the threads).
const SAMPLER_WORKGROUP: u32 = 32;

/// Top-k candidates each thread of the kernel keeps (in registers `v0..v5`, then in workgroup
/// memory).
const CANDIDATES_PER_THREAD: usize = 6;

impl KernelSource for SamplerStepKernel {
    fn source(&self) -> SourceTemplate {
        SamplerStepSource::new()
            .source()
            .register("workgroup_size_x", self.cube_dim.x.to_string())
            .register(
                "candidates",
                (self.cube_dim.x as usize * CANDIDATES_PER_THREAD).to_string(),
            )
            .register("with_noise", self.with_noise.to_string())
            .register("counter_rng", COUNTER_RNG)
    }

    // The id keys the compile cache: it must cover everything that changes the source.
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.cube_dim, self.with_noise))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Output metadata for fusion: `z_next` like `z`, stats `(rows, 2 + 2k)`.
fn step_outputs(
    z: &burn::backend::fusion::custom::TensorSpec,
    params: &[u32; 10],
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    let stats = Shape::new([params[0] as usize, 2 + 2 * params[2] as usize]);
    (
        z.clone(),
        burn::backend::fusion::custom::TensorSpec::new(stats, z.dtype),
    )
}

#[backend_extension(Cube, Fusion)]
pub trait SamplerStepBackend: Backend {
    #[fusion(meta = |_logits, z, params| step_outputs(z, params))]
    fn sampler_step(
        logits: FloatTensor<Self>,
        z: FloatTensor<Self>,
        params: [u32; 10],
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl SamplerStepBackend for CubeBackend {
    fn sampler_step(
        logits: CubeTensor,
        z: CubeTensor,
        params: [u32; 10],
    ) -> (CubeTensor, CubeTensor) {
        logits.assert_is_on_same_device(&z);
        let (logits, z) = (into_contiguous(logits), into_contiguous(z));
        let shape = z.meta.shape().clone();
        let rows = params[0] as usize;
        let width = 2 + 2 * params[2] as usize;
        let client = z.client.clone();
        let z_next = CubeTensor::new_contiguous(
            client.clone(),
            z.device.clone(),
            shape.clone(),
            client.empty(shape.num_elements() * DType::F32.size()),
            DType::F32,
        );
        let stats = CubeTensor::new_contiguous(
            client.clone(),
            z.device.clone(),
            Shape::new([rows, width]),
            client.empty((rows * width).max(1) * DType::F32.size()),
            DType::F32,
        );
        let with_noise = f32::from_bits(params[5]) != 0.0;
        let params = client.create_from_slice(bytemuck::cast_slice(&params));
        let cube_dim = CubeDim::new_1d(SAMPLER_WORKGROUP);
        client.launch(
            Box::new(SourceKernel::new(
                SamplerStepKernel::new(cube_dim, with_noise),
                cube_dim,
            )),
            row_grid(rows),
            KernelArguments::new().with_buffers(vec![
                logits.handle.binding(),
                z.handle.binding(),
                z_next.handle.clone().binding(),
                stats.handle.clone().binding(),
                params.binding(),
            ]),
        );
        (z_next, stats)
    }
}
