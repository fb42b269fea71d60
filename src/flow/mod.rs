//! The flow-matching maths: time schedule, interpolant, losses, samplers and flow-map
//! distillation (DESIGN §2–§7).

pub mod decoding;
pub mod distill;
pub mod endpoints;
pub mod flow_map;
pub mod interpolant;
pub mod loss;
pub mod sampler;
pub mod schedule;
pub mod trajectory;

pub use decoding::Decoding;
pub use sampler::{
    Clamped, SampleOutput, SamplerKind, SamplerSettings, euler_sample, flow_map_sample, sample,
    sample_conditioned, sample_observed, sample_with,
};
pub use schedule::{Schedule, ScheduleError};
pub use trajectory::{Frame, SampleTrajectory, Trajectory};
