//! The rule-dump parser reads what the kernel says is loaded: it must never
//! panic, and comparing any parsed dump with the expected rules must return.
#![no_main]

use appliance_spec::Spec;
use libfuzzer_sys::fuzz_target;
use pf_rules::{parse_rule_dump, verify_rules, Phase, Policy};

fuzz_target!(|data: &[u8]| {
    if let Ok(dump) = parse_rule_dump(data) {
        if let Ok(policy) = Spec::reference().map_err(|_| ()).and_then(|s| Policy::from_spec(&s).map_err(|_| ())) {
            let _ = verify_rules(&policy, Phase::Sealed, &dump.rules);
        }
    }
});
