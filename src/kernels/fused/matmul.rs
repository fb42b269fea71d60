//! Matrix products on the Flex CPU backend, written straight into the output.
//!
//! Flex's own matmul allocates a zeroed byte buffer for every output and then copies it into
//! an aligned one (`FlexTensor::empty`), so each product of a training step paid a memset and
//! a memcpy of its output. Here `gemm` writes into fresh, uninitialised memory once. Inputs
//! are read through their strides, so the transposes of the backward pass cost nothing.

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// Products smaller than this (m·n·k) run on one thread: splitting costs more than it saves.
const PARALLEL_WORK: usize = 96 * 96 * 96;

/// One operand: its buffer, the element offset of each matrix in the batch, and the strides
/// of its rows and columns.
struct Operand<'a> {
    data: &'a [f32],
    offsets: Vec<usize>,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    fn new(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        let rank = shape.num_dims();
        // Offsets of the batch's matrices, in row-major order of the leading axes.
        let mut offsets = vec![layout.start_offset()];
        for axis in 0..rank - 2 {
            let stride = strides[axis];
            offsets = offsets
                .iter()
                .flat_map(|&base| {
                    (0..shape[axis]).map(move |i| (base as isize + i as isize * stride) as usize)
                })
                .collect();
        }
        Self {
            data: tensor.storage::<f32>(),
            offsets,
            row_stride: strides[rank - 2],
            col_stride: strides[rank - 1],
        }
    }

    fn matrix(&self, index: usize) -> *const f32 {
        self.data[self.offsets[index]..].as_ptr()
    }
}

/// The output buffer's address, shared by the threads that each write their own matrices.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: every thread writes a disjoint range of the buffer, which outlives the threads.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// The buffer's address (a method, so closures capture the whole `Send` wrapper).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `lhs · rhs` over the last two axes of two f32 tensors of equal rank and equal leading
/// (batch) axes: `[.., m, k] · [.., k, n] → [.., m, n]`, contiguous.
pub fn matmul(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
    // Flipped views (negative strides) are rare; they are copied rather than walked.
    let forward_only = |t: FlexTensor| {
        if t.layout().strides().iter().any(|&s| s < 0) {
            t.to_contiguous()
        } else {
            t
        }
    };
    let (lhs, rhs) = (forward_only(lhs), forward_only(rhs));
    let lhs_shape = lhs.layout().shape();
    let rhs_shape = rhs.layout().shape();
    let rank = lhs_shape.num_dims();
    assert!(
        rank >= 2 && rhs_shape.num_dims() == rank,
        "matmul: equal ranks ≥ 2"
    );
    assert!(
        (0..rank - 2).all(|axis| lhs_shape[axis] == rhs_shape[axis]),
        "matmul: equal batch axes"
    );
    let (m, k, n) = (
        lhs_shape[rank - 2],
        lhs_shape[rank - 1],
        rhs_shape[rank - 1],
    );
    assert_eq!(rhs_shape[rank - 2], k, "matmul: inner dimensions");
    let batch: usize = (0..rank - 2).map(|axis| lhs_shape[axis]).product();
    let mut out_shape: Vec<usize> = (0..rank - 2).map(|axis| lhs_shape[axis]).collect();
    out_shape.extend([m, n]);

    let total = batch * m * n;
    if k == 0 || total == 0 {
        return FlexTensor::from_data(TensorData::new(vec![0f32; total], out_shape));
    }
    let (a, b) = (Operand::new(&lhs), Operand::new(&rhs));
    let mut values = Vec::<f32>::with_capacity(total);
    let output = Output(values.as_mut_ptr());
    let product = |index: usize, parallelism: gemm::Parallelism| {
        let out = output.ptr();
        // SAFETY: the operands' offsets and strides come from their layouts, so every
        // element gemm reads lies in their buffers; matrix `index` of the output is the
        // range [index·m·n, (index+1)·m·n) of a buffer with capacity batch·m·n, which
        // gemm writes whole (read_dst = false) and no other thread touches.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.add(index * m * n),
                1,
                n as isize,
                false,
                a.matrix(index),
                a.col_stride,
                a.row_stride,
                b.matrix(index),
                b.col_stride,
                b.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    let work = m * n * k;
    let threads = rayon::current_num_threads();
    if batch >= 2 * threads && batch * work >= PARALLEL_WORK {
        (0..batch)
            .into_par_iter()
            .for_each(|index| product(index, gemm::Parallelism::None));
    } else {
        let parallelism = if work >= PARALLEL_WORK {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        (0..batch).for_each(|index| product(index, parallelism));
    }
    // SAFETY: gemm has written all `total` elements above.
    unsafe { values.set_len(total) };
    FlexTensor::from_data(TensorData::new(values, out_shape))
}
