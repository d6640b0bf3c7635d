//! Recording what a program calls, to derive its allowlist from a run.
//!
//! Run the program under a filter whose refusals are
//! [`Notify`](crate::Action::Notify) (every call, or
//! [`Filter::with_refusals_as`](crate::Filter::with_refusals_as) of a draft
//! allowlist), let a supervisor [`record`](Recorder::record) and continue
//! each notified call, then read the [`report`](Recorder::report): every
//! call by name, how often, and the argument signatures a rule's conditions
//! would test (clone flags, socket family, mmap protection, ...).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::args::signature;
use crate::notify::call_name;
use crate::{Action, Filter, Notification, Rule, Syscall};

/// Counts of notified calls, by call and argument signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorder {
    /// By call name (`call_name`: also covers x32 and unknown numbers).
    calls: BTreeMap<String, CallRecord>,
    total: u64,
}

/// What was seen of one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallRecord {
    /// The syscall, when it is a native call the table knows.
    pub syscall: Option<Syscall>,
    /// How many times it was called.
    pub count: u64,
    /// Each distinct signature of its interesting arguments, with its count
    /// (one empty signature for calls with none).
    pub signatures: BTreeMap<String, u64>,
}

impl Recorder {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one notified call.
    pub fn record(&mut self, notification: &Notification) {
        let data = &notification.data;
        let entry = self.calls.entry(call_name(data)).or_default();
        entry.syscall = notification
            .syscall_name()
            .and_then(|_| Syscall::from_nr(data.nr));
        entry.count += 1;
        *entry
            .signatures
            .entry(signature(data.nr, &data.args))
            .or_default() += 1;
        self.total += 1;
    }

    /// How many distinct (call, argument signature) pairs were seen.
    pub fn signatures(&self) -> usize {
        self.calls.values().map(|c| c.signatures.len()).sum()
    }

    /// Every call seen, by name.
    pub fn calls(&self) -> impl Iterator<Item = (&str, &CallRecord)> {
        self.calls
            .iter()
            .map(|(name, record)| (name.as_str(), record))
    }

    /// Total calls recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The report: a header line, then one line per call (name and count,
    /// sorted by name) followed by one indented line per distinct argument
    /// signature with its count.
    pub fn report(&self) -> String {
        let mut out = format!(
            "# {} distinct calls, {} calls in all\n",
            self.calls.len(),
            self.total
        );
        for (name, record) in &self.calls {
            let _ = writeln!(out, "{name:<24} {:>8}", record.count);
            for (signature, count) in &record.signatures {
                if !signature.is_empty() {
                    let _ = writeln!(out, "    {signature:<60} {count:>8}");
                }
            }
        }
        out
    }

    /// A first draft of an allowlist: every native call seen, allowed
    /// unconditionally, in name order, everything else answered by
    /// `default`. Argument conditions are left to the author (the report
    /// shows what they would need to admit).
    pub fn draft_allowlist(&self, default: Action) -> Filter {
        Filter {
            default,
            rules: self
                .calls
                .values()
                .filter_map(|r| r.syscall)
                .map(|s| Rule::new(s, Action::Allow))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeccompData;

    fn note(name: &str, args: [u64; 6]) -> Notification {
        Notification {
            id: 1,
            pid: 42,
            data: SeccompData::x86_64(Syscall::named(name).unwrap().nr(), args),
        }
    }

    #[test]
    fn report_groups_by_name_and_signature() {
        let mut r = Recorder::new();
        for n in [
            note("mmap", [0, 4096, 3, 0x22, u64::MAX, 0]),
            note("read", [0; 6]),
            note("mmap", [0, 8192, 3, 0x22, u64::MAX, 0]),
            note("mmap", [0, 4096, 5, 0x802, 3, 0]),
            note("clone", [0x0120_0011, 0, 0, 0, 0, 0]),
            note("read", [0; 6]),
        ] {
            r.record(&n);
        }
        r.record(&Notification {
            id: 2,
            pid: 42,
            data: SeccompData::x86_64(0x4000_0027, [0; 6]),
        });
        insta::assert_snapshot!(r.report(), @r"
        # 4 distinct calls, 7 calls in all
        clone                           1
            flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD               1
        mmap                            3
            prot=PROT_READ|PROT_EXEC flags=MAP_PRIVATE|MAP_DENYWRITE            1
            prot=PROT_READ|PROT_WRITE flags=MAP_PRIVATE|MAP_ANONYMOUS           2
        read                            2
        x32:0x40000027                  1
        ");
        let draft = r.draft_allowlist(Action::Notify);
        let names: Vec<&str> = draft.rules.iter().map(|r| r.syscall.name()).collect();
        assert_eq!(names, ["clone", "mmap", "read"]);
        draft.validate().unwrap();
    }
}
