//! Each fused operation as one node of Burn's autodiff graph, with its own backward pass (the
//! backward kernels live with the forward ones, in `flex`).

use burn::backend::Autodiff;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};

use super::FusedOps;

// ---------------------------------------------------------------------------------------------
// Autodiff: each fused op is one node of the graph, with its own backward pass.
// ---------------------------------------------------------------------------------------------

/// Marker types naming each op's backward step.
#[derive(Debug)]
struct GeluStep;
#[derive(Debug)]
struct SoftCapStep;
#[derive(Debug)]
struct AttentionStep;
#[derive(Debug)]
struct LayerNormStep;
#[derive(Debug)]
struct RotaryStep;
#[derive(Debug)]
struct CrossEntropyStep;
#[derive(Debug)]
struct MatmulStep;

impl<B: FusedOps> Backward<B, 1> for GeluStep {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_gelu_tanh_backward(x, grad)
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for SoftCapStep {
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (y, cap) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_soft_cap_backward(y, grad, cap)
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for AttentionStep {
    type State = (FloatTensor<B>, FloatTensor<B>, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (scores, weights, scale, cap) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_attention_weights_backward(scores, weights, grad, scale, cap)
        });
    }
}

impl<B: FusedOps> Backward<B, 2> for LayerNormStep {
    type State = (FloatTensor<B>, FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, eps) = ops.state;
        let x_for_weight = x.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::fused_layer_norm_backward(x, weight, grad, eps),
            |grad| B::fused_layer_norm_weight_backward(x_for_weight, grad, eps),
        );
    }
}

impl<B: FusedOps> Backward<B, 1> for RotaryStep {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        // The rotation's transpose is the rotation by the opposite angle.
        let (cos, sin) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_rotary(grad, cos, B::float_neg(sin))
        });
    }
}

impl<B: FusedOps> Backward<B, 1> for CrossEntropyStep {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_row_cross_entropy_backward(logits, targets, grad)
        });
    }
}

impl<B: FusedOps> Backward<B, 2> for MatmulStep {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        // d lhs = grad · rhsᵀ, d rhs = lhsᵀ · grad; the transposes are views.
        let (lhs, rhs) = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::fused_matmul(grad, transposed::<B>(rhs)),
            |grad| B::fused_matmul(transposed::<B>(lhs), grad),
        );
    }
}

/// The last two axes swapped.
fn transposed<B: FusedOps>(tensor: FloatTensor<B>) -> FloatTensor<B> {
    let rank = tensor.shape().num_dims();
    B::float_swap_dims(tensor, rank - 2, rank - 1)
}

/// The backward passes are never themselves differentiated (no second derivatives).
fn no_second_derivative(op: &str) -> ! {
    panic!("flm's fused `{op}` has no second derivative")
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a, b) = (lhs.primitive().clone(), rhs.primitive().clone());
        match MatmulStep
            .prepare::<C>([lhs.node(), rhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let product = B::fused_matmul(a.clone(), b.clone());
                prep.finish((a, b), product)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_matmul(a, b)),
        }
    }

    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let input = x.primitive().clone();
        match GeluStep.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(input.clone(), B::fused_gelu_tanh(input)),
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu_tanh(input)),
        }
    }

    fn fused_gelu_tanh_backward(_: FloatTensor<Self>, _: FloatTensor<Self>) -> FloatTensor<Self> {
        no_second_derivative("gelu_tanh")
    }

    fn fused_soft_cap(x: FloatTensor<Self>, cap: f32) -> FloatTensor<Self> {
        let input = x.primitive().clone();
        match SoftCapStep
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_soft_cap(input, cap);
                prep.finish((y.clone(), cap), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_soft_cap(input, cap)),
        }
    }

    fn fused_soft_cap_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("soft_cap")
    }

    fn fused_attention_weights(
        scores: FloatTensor<Self>,
        scale: f32,
        cap: f32,
        causal: bool,
    ) -> FloatTensor<Self> {
        let input = scores.primitive().clone();
        match AttentionStep
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let weights = B::fused_attention_weights(input.clone(), scale, cap, causal);
                prep.finish((input, weights.clone(), scale, cap), weights)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_attention_weights(input, scale, cap, causal))
            }
        }
    }

    fn fused_attention_weights_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("attention_weights")
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let (input, scale) = (x.primitive().clone(), weight.primitive().clone());
        match LayerNormStep
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_layer_norm(input.clone(), scale.clone(), eps);
                prep.finish((input, scale, eps), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(input, scale, eps)),
        }
    }

    fn fused_layer_norm_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("layer_norm")
    }

    fn fused_layer_norm_weight_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: f32,
    ) -> FloatTensor<Self> {
        no_second_derivative("layer_norm")
    }

    fn fused_rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // The tables are constants: only the input carries a gradient.
        let input = x.primitive().clone();
        let (cos, sin) = (cos.primitive().clone(), sin.primitive().clone());
        match RotaryStep
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rotary(input, cos.clone(), sin.clone());
                prep.finish((cos, sin), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rotary(input, cos, sin)),
        }
    }

    fn fused_row_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let input = logits.primitive().clone();
        match CrossEntropyStep
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let losses = B::fused_row_cross_entropy(input.clone(), targets.clone());
                prep.finish((input, targets), losses)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_row_cross_entropy(input, targets)),
        }
    }

    fn fused_row_cross_entropy_backward(
        _: FloatTensor<Self>,
        _: IntTensor<Self>,
        _: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        no_second_derivative("row_cross_entropy")
    }
}
