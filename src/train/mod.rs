//! Training: the loop, its optimizer and EMA, checkpoints and progress events (DESIGN §4, §10).

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod events;
pub mod optimizer;
mod params;
pub mod setup;
pub mod trainer;

pub use checkpoint::{CheckpointError, LoadedModel, RunDir, TrainingState, load_model};
pub use config::{DataConfig, ModelKind, RunConfig, TrainConfig};
pub use events::{RunControl, StopReason, TrainEvent};
pub use setup::{TrainRequest, prepare_run};
pub use trainer::{TrainError, TrainJob, TrainSummary, train};
