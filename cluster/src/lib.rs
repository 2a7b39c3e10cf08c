//! aiops on a Kafka bus (`aiops serve --bus kafka`): the cluster logic between the ingest,
//! detection and incident crates and the broker.
//!
//! * [`worker`] — a detector worker: a member of the consumer group on the samples topic that
//!   owns the series of its partitions (decode → archive → detect → anomaly events); its
//!   [`worker::partitions`] hold each owned partition's share of the state, checkpointed to
//!   the checkpoints topic, committed only after its outputs are confirmed, restored by the
//!   next owner.
//! * [`load_feed`] — scaling targets' member samples from every worker, merged back in time
//!   order, so every node serves the whole load.
//! * [`incident_feed`] — anomaly events and commands into the one incident book; the book
//!   mirrored to every node.
//!
//! It owns nothing on disk beyond what the archive and the broker keep, and it never parses
//! the command line or reads configuration files: the binary hands it the parsed sections.

mod error;
pub mod incident_feed;
pub mod load_feed;
pub mod worker;

pub use error::ClusterError;
pub use incident_feed::{
    COMMAND_KEY_PREFIX, HEARTBEAT_KEY_PREFIX, run_incident_feed, run_incident_mirror,
};
pub use load_feed::run_scaling_feed;
pub use worker::Worker;
pub use worker::partitions::PartitionCheckpoint;
