//! The intrusion cases: one per step of the test-only `intruder` Valkey
//! module ([`intruder::STEPS`]), named `intrude-<step>`, each in its own VM
//! of the test-profile image.
//!
//! Each case boots directly (`-kernel/-initrd`, whatever `--direct` says:
//! no step needs the firmware, and a direct boot under TCG is the cheaper
//! one by several seconds), waits until the admin can PING, has the visitor write
//! [`ACKED_XADDS`] acknowledged XADDs, checks that the visitor may not call
//! `INTRUDER.STEP`, then sends `INTRUDER.STEP <step>` as the admin and
//! watches both the reply and the console. Two endings count:
//! - **refused**: the reply says which call failed with which errno (or
//!   that a forked child was killed by a signal), no halt follows within
//!   [`PROMPT_HALT`], and the server still holds every acknowledged XADD;
//! - **halted**: a `procwatch: HALT` line naming the server or a child of
//!   it, the kernel's power-down line within the step's bound (measured
//!   from the module's console line announcing the step), QEMU exiting by
//!   itself; then a fresh VM on the same data disk holds every
//!   acknowledged XADD.
//!
//! Which ending the step's table entry expects is judged by
//! [`intruder::judge`]; a step that succeeds fails its case with "nothing
//! stopped it".

use std::time::Duration;

use anyhow::{bail, Context, Result};
use intruder::steps::Target;
use intruder::{judge, HaltWait, Observed, Outcome, Step, COMMAND, MARKER, STEPS};

use vm_harness::resp::{self, Value};
use vm_harness::standin::Mode;
use vm_harness::{matchers, BootMode};

use super::{check_acked, Acked, Ctx, ReadyProbe, Session};

/// Every intrusion case name starts with this.
pub(super) const PREFIX: &str = "intrude-";

/// Acknowledged visitor XADDs written before each step.
pub(super) const ACKED_XADDS: u64 = 100;

/// The bound for a prompt halt (an exec, a uid change, anything the
/// governor acts on when it sees it), under TCG: from the module's line
/// announcing the step to the kernel's power-down line. Also how long a
/// case watches for a halt after a reply.
pub(super) const PROMPT_HALT: Duration = Duration::from_secs(2);

/// The child lifetime the fork-stay case boots with
/// (`appliance.test_max_child_seconds`, a test-image hook): the reference's
/// `governor.max_child_seconds` is ten minutes, and what is tested is that
/// the bound is enforced, whatever its value.
pub(super) const TEST_MAX_CHILD_SECONDS: u64 = 15;

/// Added to the child bound: the governor notices an old child at a
/// rescan, and a halt takes its own time under TCG.
pub(super) const CHILD_MARGIN: Duration = Duration::from_secs(10);

/// The case names, in table order.
pub(super) fn case_names() -> Vec<String> {
    STEPS
        .iter()
        .map(|s| format!("{PREFIX}{}", s.name))
        .collect()
}

/// The step a case name stands for.
pub(super) fn step_for(case: &str) -> Option<&'static Step> {
    let name = case.strip_prefix(PREFIX)?;
    STEPS.iter().find(|s| s.name == name)
}

/// `n` visitor XADDs, pipelined; what was acknowledged, and the stream.
fn write_acked(s: &Session, n: u64) -> Result<(Acked, String)> {
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let mut c = s.visitor_conn()?;
    for i in 0..n {
        c.send(&["XADD", stream.as_str(), "*", "n", &i.to_string()])?;
    }
    let mut acked = Acked::default();
    for _ in 0..n {
        match c.read_reply()? {
            Value::Bulk(Some(id)) => {
                acked.count += 1;
                acked.last_id = Some(String::from_utf8_lossy(&id).into_owned());
            }
            other => bail!("XADD answered {other:?}"),
        }
    }
    Ok((acked, stream))
}

/// What the halt looked like.
struct HaltSeen {
    notes: Vec<String>,
    problems: Vec<String>,
}

/// After a HALT verdict at console index `verdict_at`: the process it
/// names, the power-down line within `bound` of `start`, QEMU's exit.
fn watch_halt(
    s: &mut Session,
    verdict_at: usize,
    start: Duration,
    bound: Duration,
) -> Result<HaltSeen> {
    let c = s.vm.console().clone();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let verdict_line = c
        .lines()
        .get(verdict_at)
        .map(|l| l.text.clone())
        .unwrap_or_default();
    match matchers::halt_verdict(&verdict_line).and_then(|v| v.process) {
        Some(p) if p.pid == 1 || p.ppid == 1 => {}
        Some(p) => problems.push(format!(
            "the HALT line names pid {} (ppid {}, exe {}), neither the server nor a child of it",
            p.pid, p.ppid, p.exe
        )),
        None => problems.push("the HALT line names no process".into()),
    }
    let down = c.wait_for(verdict_at, Duration::from_secs(30), |l| {
        l.contains(matchers::KERNEL_POWER_DOWN) || l.contains(matchers::KERNEL_HALTED)
    });
    let exit = s.vm.wait_exit(Duration::from_secs(10))?;
    match &down {
        Some((_, line)) => {
            let took = line.at.saturating_sub(start);
            notes.push(format!(
                "halted {:.2} s after the step began (bound {:.0} s): {}",
                took.as_secs_f64(),
                bound.as_secs_f64(),
                verdict_line.trim()
            ));
            if took > bound {
                problems.push(format!(
                    "the halt took {:.2} s, over the bound of {:.0} s",
                    took.as_secs_f64(),
                    bound.as_secs_f64()
                ));
            }
            if line.text.contains(matchers::KERNEL_HALTED) {
                problems.push(
                    "the kernel halted instead of powering off (RB_HALT_SYSTEM leaves QEMU and a GCE instance running)"
                        .into(),
                );
            }
        }
        None => problems.push(format!(
            "a HALT verdict ({}) but no `{}` line within 30 s",
            verdict_line.trim(),
            matchers::KERNEL_POWER_DOWN
        )),
    }
    match exit {
        Some(status) => notes.push(format!("QEMU exited by itself ({status})")),
        None => {
            problems.push("QEMU did not exit within 10 s of the halt".into());
            s.vm.stop()?;
        }
    }
    let probe = resp::probe(s.port, Duration::from_secs(2));
    if !probe.no_service() {
        problems.push(format!(
            "the server port still answers after the halt: {probe:?}"
        ));
    }
    Ok(HaltSeen { notes, problems })
}

/// The case `intrude-<step>`.
pub(super) fn step_case(ctx: &mut Ctx, step: &'static Step) -> Result<Vec<String>> {
    let missing = ctx.test_image.missing(true);
    if !missing.is_empty() {
        bail!(
            "no test-profile image at {} (missing {}); build it with `cargo xtask image --test`",
            ctx.test_image.dir().display(),
            missing.join(", ")
        );
    }
    let mut notes = vec![format!(
        "step {}: {}; the table expects {}",
        step.name, step.does, step.expect
    )];
    let bound = match step.wait {
        HaltWait::Prompt => PROMPT_HALT,
        HaltWait::ChildLifetime => {
            notes.push(format!(
                "booted with appliance.test_max_child_seconds={TEST_MAX_CHILD_SECONDS} (the spec's bound, shortened by a test hook)"
            ));
            Duration::from_secs(TEST_MAX_CHILD_SECONDS) + CHILD_MARGIN
        }
    };
    let (_cmdline_dir, image) = match step.wait {
        HaltWait::Prompt => (None, ctx.test_image.clone()),
        HaltWait::ChildLifetime => {
            let (dir, image) = ctx.test_image.with_extra_cmdline(&format!(
                "appliance.test_max_child_seconds={TEST_MAX_CHILD_SECONDS}"
            ))?;
            (Some(dir), image)
        }
    };
    let data = ctx.test_image.fresh_data("e2e-intrude")?;
    let disk = data.disk();
    let log = ctx
        .logs
        .path()
        .join(format!("{PREFIX}{}.console.log", step.name));
    let mut s = Session::boot(
        &image,
        BootMode::Direct,
        &disk,
        ctx.state(Mode::Normal),
        log,
    )?;
    s.wait_ready(ReadyProbe::AdminPing)?;
    let c = s.vm.console().clone();
    if !c.lines().iter().any(|l| l.text.contains(MARKER)) {
        bail!(
            "the intruder module did not announce itself (`{MARKER}`): is this a test-profile image?\n{}",
            c.tail(10)
        );
    }
    let (acked, stream) = write_acked(&s, ACKED_XADDS)?;

    // The command is the admin's; a visitor (whose password is public)
    // must not reach it.
    let mut visitor = s.visitor_conn()?;
    match visitor.cmd(&[COMMAND, step.name])? {
        Value::Error(e) if e.starts_with("NOPERM") => {}
        other => bail!(
            "the visitor called {COMMAND} {} and got {other:?}",
            step.name
        ),
    }
    drop(visitor);

    let mut args = vec![COMMAND.to_owned(), step.name.to_owned()];
    if step.target == Target::GovernorPid {
        let pid = c
            .lines()
            .iter()
            .find_map(|l| matchers::governor_pid(&l.text))
            .context("no governor pid on the console")?;
        args.push(pid.to_string());
    }
    let mut admin = s.admin_conn()?;
    let from = c.len();
    admin.send(&args)?;
    let sent = s.vm.started().elapsed();
    let reply = admin.read_reply();
    drop(admin);
    let outcome = match reply {
        Ok(Value::Simple(text)) => Some(
            Outcome::parse(&text)
                .with_context(|| format!("{COMMAND} answered {text:?}, not an outcome"))?,
        ),
        Ok(Value::Error(e)) => bail!("{COMMAND} {} answered an error: {e}", step.name),
        Ok(other) => bail!("{COMMAND} {} answered {other:?}", step.name),
        // The connection ends with the VM: no reply before a halt.
        Err(_) => None,
    };
    let watch = match (&outcome, step.wait) {
        (None, _) => Duration::from_secs(30),
        (Some(Outcome::Succeeded(_)), HaltWait::ChildLifetime) => bound,
        (Some(_), _) => PROMPT_HALT,
    };
    let verdict = c.wait_for(from, watch, |l| matchers::halt_verdict(l).is_some());
    let start = c
        .lines()
        .iter()
        .skip(from)
        .find(|l| {
            l.text
                .contains(&format!("{}{}:", intruder::STEP_LINE, step.name))
        })
        .map_or(sent, |l| l.at);

    let mut problems = Vec::new();
    let observed = match verdict {
        Some((at, _)) => {
            let seen = watch_halt(&mut s, at, start, bound)?;
            notes.extend(seen.notes);
            problems.extend(seen.problems);
            if let Some(o) = &outcome {
                notes.push(format!("the step replied first: {}", o.reply()));
            }
            drop(s);
            // A fresh VM on the same data disk.
            let log = ctx
                .logs
                .path()
                .join(format!("{PREFIX}{}-after.console.log", step.name));
            let mut fresh = Session::boot(
                &ctx.test_image,
                BootMode::Direct,
                &disk,
                ctx.state(Mode::Normal),
                log,
            )?;
            fresh.wait_ready(ReadyProbe::AdminPing)?;
            let mut admin = fresh.admin_conn()?;
            match check_acked(&mut admin, &stream, &acked) {
                Ok(seen) => notes.push(format!(
                    "{} acknowledged XADDs before the halt; a fresh VM on the same disk sees {seen}",
                    acked.count
                )),
                Err(e) => problems.push(format!("after the halt: {e:#}")),
            }
            drop(admin);
            super::power_off(fresh);
            Observed::Halted { reply: outcome }
        }
        None => {
            let Some(outcome) = outcome else {
                bail!(
                    "no reply and no halt within {} s of the step\n{}",
                    watch.as_secs(),
                    c.tail(15)
                );
            };
            notes.push(format!("the step replied: {}", outcome.reply()));
            for l in c.lines().iter().skip(from) {
                if let Some(v) = matchers::allow_verdict(&l.text) {
                    notes.push(format!("the governor allowed: {} [{}]", v.reason, v.path));
                }
            }
            if matches!(outcome, Outcome::Succeeded(_)) {
                notes.push(format!(
                    "no halt within {:.0} s of the reply",
                    watch.as_secs_f64()
                ));
            }
            match s
                .admin_conn()
                .and_then(|mut a| check_acked(&mut a, &stream, &acked))
            {
                Ok(seen) => notes.push(format!(
                    "the server still serves: {} acknowledged XADDs, it reports {seen}",
                    acked.count
                )),
                Err(e) => problems.push(format!("after the step the server does not serve: {e:#}")),
            }
            s.vm.stop()?;
            Observed::Replied(outcome)
        }
    };
    match judge(step.expect, &observed) {
        Ok(what) if problems.is_empty() => {
            notes.insert(0, what);
            Ok(notes)
        }
        Ok(what) => bail!("{}\n{what}\n{}", problems.join("\n"), notes.join("\n")),
        Err(why) => {
            problems.insert(0, why);
            bail!("{}\n{}", problems.join("\n"), notes.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_case_per_step_and_back() {
        let names = case_names();
        assert_eq!(names.len(), STEPS.len());
        for (name, step) in names.iter().zip(STEPS.iter()) {
            assert_eq!(step_for(name), Some(step));
        }
        assert_eq!(step_for("intrude-nope"), None);
        assert_eq!(step_for("fork-stay"), None);
    }
}
