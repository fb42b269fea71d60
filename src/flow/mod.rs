//! The flow-matching maths: time schedule, interpolant, losses and samplers (DESIGN §2–§5).

pub mod interpolant;
pub mod loss;
pub mod noise;
pub mod sampler;
pub mod schedule;
pub mod trajectory;

pub use sampler::{SampleOutput, SamplerSettings, euler_sample};
pub use schedule::{Schedule, ScheduleError};
pub use trajectory::{Frame, SampleTrajectory, Trajectory};
