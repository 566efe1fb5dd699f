//! Which partition a station belongs to, and which instances should own a partition.
//!
//! Where it sits: the base of running several instances over one fleet (docs: the cluster
//! design). A station's partition is `fnv1a64(id) mod P`: it depends on the id and on `P`
//! only, never on how many instances run, so a station stays in its partition across joins,
//! deaths and restarts. Who should own a partition is a rendezvous (highest-random-weight)
//! ranking of the live instances: every instance computes the same ranking from the same
//! member list, and a join or a death moves only the partitions whose first choice changed
//! (about 1/N of them), never the others. [`decide`] is what an instance does about one
//! partition at one read of etcd, given that ranking and the partition's queue. All are pure.

use super::view::PartitionRow;

/// FNV-1a, 64 bits: small, fast, and the same on every machine and version (unlike std's
/// `DefaultHasher`, whose algorithm is not guaranteed).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The partition of station `id` among `partitions` (> 0).
pub fn partition_of(id: &str, partitions: u32) -> u32 {
    (fnv1a64(id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// An instance's weight for `partition`: the rendezvous score, highest first.
fn weight(instance: &str, partition: u32) -> u64 {
    let mut key = Vec::with_capacity(instance.len() + 5);
    key.extend_from_slice(instance.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    // A finaliser spreads FNV's weak low bits over the whole word before comparing.
    let mut h = fnv1a64(&key);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The `members` in the order they should own `partition`: the first is the owner, the second
/// its standby, and so on. Ties (equal weights) are broken by name, so the order is total.
pub fn ranking<'a>(members: &[&'a str], partition: u32) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = members.iter().map(|m| (weight(m, partition), *m)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, m)| m).collect()
}

/// For each of `partitions` partitions, its first choice among `members` (`None` without
/// members).
pub fn owners<'a>(members: &[&'a str], partitions: u32) -> Vec<Option<&'a str>> {
    (0..partitions)
        .map(|p| ranking(members, p).first().copied())
        .collect()
}

/// What an instance does about one partition at one read of etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It led with `epoch`, and the queue no longer shows its key first with that epoch (its
    /// key was deleted, or the lease expired and came back): stop commanding at once.
    Lost { epoch: u64 },
    /// It leads, is not the partition's first choice, and the first choice is queued behind
    /// it: step aside (a planned handover, without waiting for a lease).
    HandOver,
    /// It leads and keeps leading.
    Keep,
    /// Its key heads the queue and it is one of the two it belongs to: lead.
    Lead,
    /// It should be queued (first or second choice) and is not: stand for the partition.
    Stand,
    /// It is queued but no longer among the two choices (a member joined): leave the queue.
    Withdraw,
    /// Queued as it should be, behind another: wait (and remember since when).
    Wait,
}

/// The partition rule, as a pure function: `me` on `lease`, the partition's members `ranked`
/// (first choice first), its queue `row` as etcd shows it, and the epoch this instance leads
/// it with (`None`: not leading).
pub fn decide(me: &str, lease: i64, ranked: &[&str], row: &PartitionRow, led: Option<u64>) -> Step {
    let rank = ranked.iter().position(|n| *n == me);
    let want = rank.is_some_and(|r| r < 2);
    let heads = row.leases.first() == Some(&lease);
    let queued = row.leases.contains(&lease);
    if let Some(epoch) = led {
        if !heads || row.epoch != Some(epoch) {
            return Step::Lost { epoch };
        }
        let first = ranked.first().copied();
        if rank != Some(0) && first.is_some_and(|f| row.standby.iter().any(|s| s == f)) {
            return Step::HandOver;
        }
        return Step::Keep;
    }
    match (heads, want, queued) {
        (true, true, _) => Step::Lead,
        (_, true, false) => Step::Stand,
        (_, false, true) => Step::Withdraw,
        (_, true, true) => Step::Wait,
        (_, false, false) => Step::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnv1a64_matches_its_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stations_spread_evenly_over_the_partitions() {
        let mut count = vec![0u32; 64];
        for i in 0..6_400 {
            count[partition_of(&format!("st-{i:05}"), 64) as usize] += 1;
        }
        // 100 per partition on average; a fair hash stays well inside ±40 %.
        assert!(count.iter().all(|&c| (60..=140).contains(&c)), "{count:?}");
    }

    #[test]
    fn ownership_is_balanced_over_the_members() {
        let members = ["hg-a", "hg-b", "hg-c"];
        let owned = owners(&members, 512);
        for m in members {
            let n = owned.iter().filter(|o| **o == Some(m)).count();
            assert!((120..=220).contains(&n), "{m} owns {n} of 512");
        }
        assert_eq!(owners(&[], 4), vec![None; 4]);
    }

    proptest! {
        /// A new member takes partitions only for itself, and only about its share: every
        /// partition whose owner changed is now owned by the new member.
        #[test]
        fn a_join_moves_only_what_the_new_member_takes(n in 1usize..8, seed in 0u32..1000) {
            let names: Vec<String> = (0..=n).map(|i| format!("hg-{seed}-{i}")).collect();
            let before: Vec<&str> = names[..n].iter().map(String::as_str).collect();
            let after: Vec<&str> = names.iter().map(String::as_str).collect();
            let (a, b) = (owners(&before, 256), owners(&after, 256));
            let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            for (x, y) in a.iter().zip(&b) {
                if x != y {
                    prop_assert_eq!(*y, Some(names[n].as_str()));
                }
            }
            // The newcomer's share is 256/(n+1); allow for chance.
            prop_assert!(moved <= 256 * 2 / (n + 1) + 16, "{} moved", moved);
        }

        /// When a member leaves, only its partitions move, each to its standby.
        #[test]
        fn a_death_moves_only_the_dead_members_partitions(n in 2usize..8, dead in 0usize..8) {
            let names: Vec<String> = (0..n).map(|i| format!("hg-{i}")).collect();
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            let dead = all[dead % n];
            let alive: Vec<&str> = all.iter().copied().filter(|m| *m != dead).collect();
            for p in 0..128 {
                let r = ranking(&all, p);
                let owner = ranking(&alive, p)[0];
                if r[0] == dead {
                    prop_assert_eq!(owner, r[1], "the standby takes over");
                } else {
                    prop_assert_eq!(owner, r[0], "the others keep theirs");
                }
            }
        }

        /// Every instance computes the same ranking whatever the order of its member list.
        #[test]
        fn the_ranking_ignores_the_order_of_the_member_list(mut v in proptest::collection::vec("[a-z]{1,8}", 1..10), p in 0u32..1000) {
            v.sort();
            v.dedup();
            let names: Vec<&str> = v.iter().map(String::as_str).collect();
            let mut reversed = names.clone();
            reversed.reverse();
            prop_assert_eq!(ranking(&names, p), ranking(&reversed, p));
        }
    }
}

#[cfg(test)]
mod decide_tests {
    use super::*;

    /// Partition 0's queue: `(name, lease)` in creation order, the first leading at `epoch`.
    fn row(queue: &[(&str, i64)], epoch: u64) -> PartitionRow {
        PartitionRow {
            partition: 0,
            leader: queue.first().map(|(n, _)| (*n).to_owned()),
            epoch: queue.first().map(|_| epoch),
            standby: queue.iter().skip(1).map(|(n, _)| (*n).to_owned()).collect(),
            leases: queue.iter().map(|(_, l)| *l).collect(),
        }
    }

    const RANKED: [&str; 3] = ["a", "b", "c"];

    #[test]
    fn the_first_two_choices_queue_and_the_head_leads() {
        let empty = row(&[], 0);
        assert_eq!(decide("a", 1, &RANKED, &empty, None), Step::Stand);
        assert_eq!(decide("b", 2, &RANKED, &empty, None), Step::Stand);
        // The third choice stays out of the queue.
        assert_eq!(decide("c", 3, &RANKED, &empty, None), Step::Keep);
        let q = row(&[("b", 2), ("a", 1)], 40);
        assert_eq!(decide("b", 2, &RANKED, &q, None), Step::Lead);
        assert_eq!(decide("a", 1, &RANKED, &q, None), Step::Wait);
        // Queued though no longer a choice (a member joined ahead): leave.
        assert_eq!(
            decide("c", 3, &RANKED, &row(&[("c", 3)], 9), None),
            Step::Withdraw
        );
    }

    #[test]
    fn a_leader_hands_over_to_the_first_choice_once_it_is_queued() {
        // b leads; a, the first choice, is not queued yet: b keeps leading.
        assert_eq!(
            decide("b", 2, &RANKED, &row(&[("b", 2)], 40), Some(40)),
            Step::Keep
        );
        // a is queued behind b: b steps aside.
        let q = row(&[("b", 2), ("a", 1)], 40);
        assert_eq!(decide("b", 2, &RANKED, &q, Some(40)), Step::HandOver);
        // The first choice itself never hands over.
        let q = row(&[("a", 1), ("b", 2)], 41);
        assert_eq!(decide("a", 1, &RANKED, &q, Some(41)), Step::Keep);
    }

    #[test]
    fn a_lead_is_dropped_the_moment_the_queue_disagrees() {
        // Its key is gone (deleted, or its lease expired): another heads the queue.
        let q = row(&[("a", 1)], 50);
        assert_eq!(
            decide("b", 2, &RANKED, &q, Some(40)),
            Step::Lost { epoch: 40 }
        );
        // Its lease heads the queue again, but with a newer key: a new epoch, not the old one.
        let q = row(&[("b", 2)], 55);
        assert_eq!(
            decide("b", 2, &RANKED, &q, Some(40)),
            Step::Lost { epoch: 40 }
        );
        // An empty queue (etcd lost everything) is no lead either.
        assert_eq!(
            decide("b", 2, &RANKED, &row(&[], 0), Some(40)),
            Step::Lost { epoch: 40 }
        );
    }
}
