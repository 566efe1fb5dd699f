//! Several instances sharing one fleet through etcd (docs/cluster.md).
//!
//! Where it sits: beside the stages, depending only on the leaves. [`partition`] says which
//! partition a station is in and which instances should own a partition (pure);
//! [`etcd`] is the few etcd calls made, over etcd's JSON gateway;
//! [`membership`] is an instance's etcd lease and member key, and the fence that stops it
//! commanding before its lease can expire; [`ownership`] is the partitions' queues (one
//! leader each, its fencing epoch); [`state`] keeps operator settings in etcd, written only
//! by a station's owner; [`task`] is the cluster stage that stands for, leads and hands over
//! partitions, and publishes [`view::ClusterView`]. The engine's side of a lead (a
//! partition's MQTT session, the lead handed to the dispatcher) is `app::cluster`, behind
//! [`task::Partitions`]. Without a `[cluster]` table none of this runs.

pub mod etcd;
pub mod membership;
pub mod ownership;
pub mod partition;
pub mod state;
pub mod task;
pub mod view;
