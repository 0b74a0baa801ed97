//! What runs for one action or modifier of a step (run.md §8), called from the lane.

pub mod outputs;
