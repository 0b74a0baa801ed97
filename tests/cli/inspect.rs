//! Tests of `prodigy events`, `dlq` and `checkpoints` (written in a moment).
