//! Configuration of an election node (the election-related part of `zoo.cfg`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::core::CoreConfig;
use crate::error::ElectionError;
use crate::quorum::{Majority, QuorumVerifier};
use crate::vote::Sid;

/// The only election algorithm there is since ZooKeeper 3.6: FastLeaderElection.
pub const FAST_LEADER_ELECTION: u32 = 3;

/// Refuses any `electionAlg` other than 3 with a clear message.
///
/// ```
/// assert!(zk_election::config::check_election_alg(3).is_ok());
/// let e = zk_election::config::check_election_alg(0).unwrap_err();
/// assert!(e.to_string().contains("only electionAlg=3"));
/// ```
pub fn check_election_alg(election_alg: u32) -> Result<(), ElectionError> {
    if election_alg == FAST_LEADER_ELECTION {
        Ok(())
    } else {
        Err(ElectionError::UnsupportedElectionAlg(election_alg))
    }
}

/// One member of the ensemble (`server.N=host:quorumPort:electionPort[:observer]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The election address, `host:port`.
    pub election_addr: String,
    /// True for observers (non-voting).
    pub observer: bool,
}

/// Everything an election node needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's sid (`myid`).
    pub myid: Sid,
    /// `electionAlg`; must be 3.
    pub election_alg: u32,
    /// All members, this node included.
    pub members: BTreeMap<Sid, Member>,
    /// Finalize wait (ZooKeeper: 200 ms).
    pub finalize_wait: Duration,
    /// The finalize wait once every voter is accounted for (see
    /// [`CoreConfig::accounted_wait_ms`]; default 20 ms; at least `finalize_wait` is
    /// ZooKeeper's behaviour).
    pub accounted_wait: Duration,
    /// First notification timeout (ZooKeeper: 200 ms).
    pub min_notification_interval: Duration,
    /// Cap of the doubling notification timeout (ZooKeeper: 60 s).
    pub max_notification_interval: Duration,
    /// TCP connect timeout to a peer (ZooKeeper's `cnxTO`: 5 s).
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    /// Cap of the reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// HTTP/2 keepalive ping interval on election streams.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive timeout: the stream is dropped if a ping is not answered.
    pub keepalive_timeout: Duration,
    /// How long an inbound stream may take to send its `Hello`.
    pub hello_timeout: Duration,
    /// A custom quorum verifier; `None` means a majority of the non-observer members.
    pub quorum: Option<Arc<dyn QuorumVerifier>>,
}

impl NodeConfig {
    /// ZooKeeper's defaults for the given members.
    pub fn new(myid: Sid, members: BTreeMap<Sid, Member>) -> Self {
        NodeConfig {
            myid,
            election_alg: FAST_LEADER_ELECTION,
            members,
            finalize_wait: Duration::from_millis(crate::core::DEFAULT_FINALIZE_WAIT_MS),
            accounted_wait: Duration::from_millis(crate::core::DEFAULT_ACCOUNTED_WAIT_MS),
            min_notification_interval: Duration::from_millis(crate::core::DEFAULT_FINALIZE_WAIT_MS),
            max_notification_interval: Duration::from_millis(
                crate::core::DEFAULT_MAX_NOTIFICATION_INTERVAL_MS,
            ),
            connect_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_millis(1_000),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(3),
            hello_timeout: Duration::from_secs(5),
            quorum: None,
        }
    }

    /// Checks the configuration and builds the quorum verifier.
    pub fn validate(&self) -> Result<Arc<dyn QuorumVerifier>, ElectionError> {
        check_election_alg(self.election_alg)?;
        if !self.members.contains_key(&self.myid) {
            return Err(ElectionError::Config(format!(
                "myid {} is not among the configured servers",
                self.myid
            )));
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return Err(ElectionError::Config(
                "reconnect backoff must satisfy 0 < min <= max".into(),
            ));
        }
        let quorum: Arc<dyn QuorumVerifier> = match &self.quorum {
            Some(q) => {
                let configured: BTreeSet<Sid> = self.members.keys().copied().collect();
                let known: BTreeSet<Sid> = q.voters().union(q.observers()).copied().collect();
                if configured != known {
                    return Err(ElectionError::Config(format!(
                        "quorum verifier members {known:?} differ from the servers {configured:?}"
                    )));
                }
                q.clone()
            }
            None => Arc::new(Majority::new(
                self.members
                    .iter()
                    .filter(|(_, m)| !m.observer)
                    .map(|(s, _)| *s),
                self.members
                    .iter()
                    .filter(|(_, m)| m.observer)
                    .map(|(s, _)| *s),
            )?),
        };
        // Building the core checks the timing knobs.
        crate::core::Election::new(self.core_config(), quorum.clone())?;
        Ok(quorum)
    }

    /// The timing part for the sans-IO core.
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            myid: self.myid,
            finalize_wait_ms: duration_ms(self.finalize_wait),
            min_notification_interval_ms: duration_ms(self.min_notification_interval),
            max_notification_interval_ms: duration_ms(self.max_notification_interval),
            accounted_wait_ms: duration_ms(self.accounted_wait),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u64) -> BTreeMap<Sid, Member> {
        (1..=n)
            .map(|s| {
                (
                    s,
                    Member {
                        election_addr: format!("127.0.0.1:{}", 3887 + s),
                        observer: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn other_election_algorithms_are_refused() {
        let mut c = NodeConfig::new(1, members(3));
        assert!(c.validate().is_ok());
        c.election_alg = 1;
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("electionAlg=1 is not supported"), "{e}");
    }

    #[test]
    fn myid_must_be_configured() {
        assert!(NodeConfig::new(9, members(3)).validate().is_err());
    }

    #[test]
    fn custom_quorum_must_match_members() {
        let mut c = NodeConfig::new(1, members(3));
        c.quorum = Some(Arc::new(Majority::new([1, 2], []).unwrap()));
        assert!(c.validate().is_err());
    }
}
