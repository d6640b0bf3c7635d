//! The recording fake, as another crate's test would use it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use appliance_spec::Spec;
use pf_rules::fake::{Call, FakeFirewall};
use pf_rules::{Firewall, FirewallError, Phase, Policy};

/// A boot sequence in miniature: seal only if the boot phase went in.
fn boot_then_seal(fw: &mut dyn Firewall, policy: &Policy) -> Result<(), FirewallError> {
    fw.apply(policy, Phase::Boot)?;
    fw.apply(policy, Phase::Sealed)
}

#[test]
fn records_calls_in_order() {
    let policy = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    let mut fw = FakeFirewall::new();
    boot_then_seal(&mut fw, &policy).unwrap();
    assert_eq!(fw.phases(), [Phase::Boot, Phase::Sealed]);
    assert_eq!(
        fw.calls[0],
        Call::Apply {
            policy: policy.clone(),
            phase: Phase::Boot
        }
    );
}

#[test]
fn injected_failure_stops_the_sequence() {
    let policy = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    let mut fw = FakeFirewall::new().fail_call(0, "no nf_tables");
    let err = boot_then_seal(&mut fw, &policy).unwrap_err();
    assert!(
        matches!(err, FirewallError::Injected(ref r) if r == "no nf_tables"),
        "{err}"
    );
    assert_eq!(fw.phases(), [Phase::Boot]);
}

#[test]
fn verify_is_recorded_and_reports_the_rendered_hash() {
    let policy = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    let mut fw = FakeFirewall::new().fail_call(2, "dump refused");
    fw.apply(&policy, Phase::Sealed).unwrap();
    let rb = fw.verify(&policy, Phase::Sealed).unwrap();
    assert_eq!(rb, pf_rules::ReadBack::expected(&policy, Phase::Sealed));
    assert_eq!(rb.rules, 14);
    assert!(fw.verify(&policy, Phase::Sealed).is_err());
    assert_eq!(
        fw.calls[1],
        Call::Verify {
            policy: policy.clone(),
            phase: Phase::Sealed
        }
    );
    assert_eq!(fw.phases(), [Phase::Sealed]);
}

#[test]
fn observer_sees_every_call_in_order_failed_ones_included() {
    use std::sync::{Arc, Mutex};
    let policy = Policy::from_spec(&Spec::reference().unwrap()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut fw = FakeFirewall::new().fail_call(1, "seal refused");
    let log = Arc::clone(&seen);
    fw.set_observer(move |call| log.lock().unwrap().push(call.clone()));
    assert!(boot_then_seal(&mut fw, &policy).is_err());
    assert_eq!(*seen.lock().unwrap(), fw.calls);
    assert_eq!(fw.phases(), [Phase::Boot, Phase::Sealed]);
}
