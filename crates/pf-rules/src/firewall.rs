//! The OS seam: something that puts a policy in force.
#![forbid(unsafe_code)]

use crate::policy::{Phase, Policy};
use crate::{FirewallError, ReadBack};

/// Puts a firewall policy in force for a phase, replacing whatever this
/// crate put in force before (and nothing else).
///
/// On Linux the real implementation is `NetlinkFirewall`; tests use the
/// recording fake behind the `fake` feature.
pub trait Firewall {
    /// Applies `policy` for `phase` atomically: on error the previous rules
    /// stay in force unchanged.
    fn apply(&mut self, policy: &Policy, phase: Phase) -> Result<(), FirewallError>;

    /// Reads the rules of our table back from the kernel and checks them,
    /// rule by rule, against those `apply(policy, phase)` loads.
    /// [`FirewallError::ReadBackMismatch`] names the first difference.
    fn verify(&mut self, policy: &Policy, phase: Phase) -> Result<ReadBack, FirewallError>;
}
