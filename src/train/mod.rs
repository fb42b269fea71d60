//! Training: the loop, its objectives (FLM denoising, flow-map distillation), optimizer and
//! EMA, checkpoints and progress events (DESIGN §4, §6, §10).

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod events;
pub mod lock;
pub mod metrics_log;
pub mod objective;
pub mod optimizer;
pub(crate) mod params;
pub mod probe;
pub mod readability;
#[cfg(test)]
mod robustness;
pub mod runs;
pub mod setup;
pub mod throughput;
pub mod trainer;

pub use checkpoint::{CheckpointError, LoadedModel, RunDir, TrainingState, load_model};
pub use config::{
    DataConfig, DistillConfig, ImportFormat, ImportedFrom, ModelKind, RunConfig, TeacherInfo,
    TrainConfig, WeightSet,
};
pub use events::{ReadabilityNote, RunControl, StopReason, TrainEvent};
pub use lock::RunLock;
pub use objective::Objective;
pub use runs::{
    EXPORTED_FILES, RunListing, check_export_dest, data_stem, delete_run, export_model,
    export_model_to, fresh_run_dir, list_runs,
};
pub use setup::{DistillRequest, NewModelKind, TrainRequest, prepare_distill, prepare_run};
pub use trainer::{TrainError, TrainJob, TrainSummary, train};
