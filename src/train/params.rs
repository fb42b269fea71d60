//! Walking a model's parameters by their path (`blocks.0.attn.qkv.weight`), the names that
//! also key the safetensors files. Optimizer and EMA state are stored per path.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// Tracks the dotted path of the parameter being visited.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn join(&self, leaf_hint: &ParamId) -> String {
        if self.0.is_empty() {
            format!("{leaf_hint}")
        } else {
            self.0.join(".")
        }
    }
}

/// Every float parameter flattened to 1-D (autodiff stripped), keyed by path.
pub fn flat_params<M: Module>(module: &M) -> HashMap<String, Tensor<1>> {
    struct Collect {
        path: PathStack,
        out: HashMap<String, Tensor<1>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val().inner();
            let count = value.shape().num_elements();
            self.out
                .insert(self.path.join(&param.id), value.reshape([count]));
        }
    }
    let mut collect = Collect {
        path: PathStack::default(),
        out: HashMap::new(),
    };
    module.visit(&mut collect);
    collect.out
}

/// Rewrites every float parameter with `update(path, id, value)`, keeping ids and the
/// require-grad flag so the result is still the same trainable model.
pub fn map_params<M: Module>(
    module: M,
    update: &mut dyn FnMut(&str, ParamId, Tensor<1>) -> Tensor<1>,
) -> M {
    struct Apply<'a> {
        path: PathStack,
        update: &'a mut dyn FnMut(&str, ParamId, Tensor<1>) -> Tensor<1>,
    }
    impl ModuleMapper for Apply<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let was_autodiff = tensor.is_autodiff();
            let require_grad = tensor.is_require_grad();
            let shape = tensor.shape();
            let flat = tensor.inner().reshape([shape.num_elements()]);
            let path = self.path.join(&id);
            let mut updated: Tensor<D> = (self.update)(&path, id, flat).reshape(shape);
            // `from_inner` always enables autodiff: only re-wrap what had it (not the EMA copy).
            if was_autodiff {
                updated = Tensor::from_inner(updated);
                if require_grad {
                    updated = updated.require_grad();
                }
            }
            Param::from_mapped_value(id, updated, mapper)
        }
    }
    let mut apply = Apply {
        path: PathStack::default(),
        update,
    };
    module.map(&mut apply)
}
