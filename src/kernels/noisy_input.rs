//! The fused noisy input of training (`shaders/noisy_input.wgsl`): `x_γ = (1−γ)·ε + γ·onehot(x)`
//! written in one pass, with ε drawn in the shader. The reference path draws the same numbers
//! on the host (`rng::counter_normals`) and uploads them; the CPU backend uses it.

use burn::backend::wgpu::{
    CubeBackend, CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
    kernel_source,
};
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::cubecl::{CubeDim, prelude::KernelId, server::KernelArguments};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use derive_new::new;

use super::{COUNTER_RNG, KernelPath, row_grid};
use crate::rng::counter_normals;

/// `x_γ` (B, L, V) for B·L `tokens` and one flow time per sequence, with noise from the
/// counter-based stream `(seed, 0)`: the kernel on wgpu, the host elsewhere (same numbers).
pub fn noisy_input(
    tokens: &[u32],
    gammas: &[f64],
    seq_len: usize,
    vocab: usize,
    seed: u64,
    path: KernelPath,
    device: &Device,
) -> Tensor<3> {
    let batch = gammas.len();
    assert_eq!(tokens.len(), batch * seq_len, "tokens must be B·L");
    let rows = batch * seq_len;
    if path.uses_kernel(device) {
        let ids: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        let row_gammas: Vec<f32> = (0..rows).map(|r| gammas[r / seq_len] as f32).collect();
        let params = [
            rows as u32,
            vocab as u32,
            seed as u32,
            (seed >> 32) as u32,
            0,
            0,
        ];
        let output = Dispatch::noisy_input(
            Tensor::<1>::from_data(TensorData::new(ids, [rows]), device).into_dispatch(),
            Tensor::<1>::from_data(TensorData::new(row_gammas, [rows]), device).into_dispatch(),
            params,
        );
        Tensor::<2>::from_dispatch(output).reshape([batch, seq_len, vocab])
    } else {
        use rayon::prelude::*;
        let mut values = counter_normals(seed, 0, rows * vocab);
        values
            .par_chunks_exact_mut(vocab)
            .zip(tokens)
            .enumerate()
            .for_each(|(row, (chunk, &token))| {
                let gamma = gammas[row / seq_len] as f32;
                chunk.iter_mut().for_each(|v| *v *= 1.0 - gamma);
                chunk[token as usize] += gamma;
            });
        Tensor::from_data(TensorData::new(values, [batch, seq_len, vocab]), device)
    }
}

/// Threads per workgroup (one workgroup per row of the noisy input).
const NOISY_INPUT_WORKGROUP: u32 = 64;

kernel_source!(NoisyInputSource, "../../shaders/noisy_input.wgsl");

#[derive(new, Debug)]
struct NoisyInputKernel {
    cube_dim: CubeDim,
}

impl KernelSource for NoisyInputKernel {
    fn source(&self) -> SourceTemplate {
        NoisyInputSource::new()
            .source()
            .register("workgroup_size_x", self.cube_dim.x.to_string())
            .register("counter_rng", COUNTER_RNG)
    }

    // The id keys the compile cache: it must cover everything that changes the source.
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.cube_dim)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Output metadata for fusion: `(rows, cols)` from the parameters.
fn input_output(
    tokens: &burn::backend::fusion::custom::TensorSpec,
    params: &[u32; 6],
) -> burn::backend::fusion::custom::TensorSpec {
    let shape = Shape::new([params[0] as usize, params[1] as usize]);
    burn::backend::fusion::custom::TensorSpec::new(shape, tokens.dtype)
}

#[backend_extension(Cube, Fusion)]
pub trait NoisyInputBackend: Backend {
    #[fusion(meta = |tokens, _gammas, params| input_output(tokens, params))]
    fn noisy_input(
        tokens: FloatTensor<Self>,
        gammas: FloatTensor<Self>,
        params: [u32; 6],
    ) -> FloatTensor<Self>;
}

impl NoisyInputBackend for CubeBackend {
    fn noisy_input(tokens: CubeTensor, gammas: CubeTensor, params: [u32; 6]) -> CubeTensor {
        let (tokens, gammas) = (into_contiguous(tokens), into_contiguous(gammas));
        let (rows, cols) = (params[0] as usize, params[1] as usize);
        let client = tokens.client.clone();
        let output = CubeTensor::new_contiguous(
            client.clone(),
            tokens.device.clone(),
            Shape::new([rows, cols]),
            client.empty((rows * cols).max(1) * DType::F32.size()),
            DType::F32,
        );
        let params = client.create_from_slice(bytemuck::cast_slice(&params));
        let cube_dim = CubeDim::new_1d(NOISY_INPUT_WORKGROUP);
        client.launch(
            Box::new(SourceKernel::new(NoisyInputKernel::new(cube_dim), cube_dim)),
            row_grid(rows),
            KernelArguments::new().with_buffers(vec![
                tokens.handle.binding(),
                gammas.handle.binding(),
                output.handle.clone().binding(),
                params.binding(),
            ]),
        );
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolant_is_noise_at_zero_and_data_at_one() {
        let device = crate::device::cpu_device();
        let tokens = [0u32, 1, 2, 3, 2, 1];
        let x = noisy_input(
            &tokens,
            &[0.0, 1.0],
            3,
            4,
            8,
            KernelPath::Reference,
            &device,
        );
        let values = x.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(values[..12], counter_normals(8, 0, 12)[..]);
        for (pos, &token) in tokens[3..].iter().enumerate() {
            for v in 0..4 {
                let expected = if v == token as usize { 1.0 } else { 0.0 };
                assert_eq!(values[12 + pos * 4 + v], expected);
            }
        }
    }
}
