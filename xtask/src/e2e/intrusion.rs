//! The test-profile cases: the intruder halts the machine, and nothing
//! acknowledged before the halt is lost.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::console;
use super::resp::{self, Conn, Value};
use super::{check_acked, Acked, Ctx, ReadyProbe, Session};
use crate::qemu::{self, TempDir};
use crate::standin::Mode;

/// The bound the design sets, under TCG.
const HALT_WITHIN: Duration = Duration::from_secs(2);

/// What one watched intrusion showed.
struct Halt {
    notes: Vec<String>,
    problems: Vec<String>,
}

/// Waits for the intruder, the governor's verdict, the kernel's halt and
/// QEMU's exit; judges each.
fn watch_halt(s: &mut Session, from: usize) -> Result<Halt> {
    let c = s.vm.console().clone();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let start = c
        .wait_for(from, Duration::from_secs(60), |l| {
            l.contains(console::INTRUDER_START)
        })
        .map(|(_, l)| l);
    let verdict = c.wait_for(from, Duration::from_secs(30), |l| {
        console::halt_verdict(l).is_some()
    });
    let halted = c.wait_for(from, Duration::from_secs(30), |l| {
        l.contains(console::KERNEL_HALTED) || l.contains(console::KERNEL_POWER_DOWN)
    });
    let exit = s.vm.wait_exit(Duration::from_secs(10))?;
    let Some(start) = start else {
        bail!(
            "the test intruder never announced itself (is this a test-profile image?)\n{}",
            c.tail(10)
        );
    };
    let Some((_, verdict_line)) = verdict else {
        bail!(
            "no `{}` line after the intruder started\n{}",
            console::HALT_VERDICT,
            c.tail(10)
        );
    };
    let v = console::halt_verdict(&verdict_line.text).context("verdict line")?;
    match &v.process {
        Some(p) if p.cmdline.contains("--test-intruder") || p.exe == "/init" => {
            notes.push(format!(
                "governor named pid {} ppid {} uid {}/{} exe {} cmdline {:?} ({}, via {})",
                p.pid, p.ppid, p.uid, p.euid, p.exe, p.cmdline, v.reason, v.path
            ))
        }
        Some(p) => problems.push(format!(
            "the HALT line names pid {} exe {}, not the intruder",
            p.pid, p.exe
        )),
        None => problems.push(format!(
            "the HALT line names no process: {}",
            verdict_line.text
        )),
    }
    match &halted {
        Some((_, h)) => {
            let took = h.at.saturating_sub(start.at);
            notes.push(format!(
                "intruder start -> `{}` in {:.2}s",
                h.text.trim(),
                took.as_secs_f64()
            ));
            if took > HALT_WITHIN {
                problems.push(format!(
                    "the halt took {:.2}s (> {}s)",
                    took.as_secs_f64(),
                    HALT_WITHIN.as_secs()
                ));
            }
        }
        None => problems.push(
            "the kernel never printed `reboot: System halted` or `reboot: Power down`".into(),
        ),
    }
    match exit {
        Some(status) => notes.push(format!("QEMU exited by itself ({status})")),
        None => {
            let halt_only = halted
                .as_ref()
                .is_some_and(|(_, h)| h.text.contains(console::KERNEL_HALTED));
            problems.push(if halt_only {
                "the guest halted but QEMU did not exit: reboot(RB_HALT_SYSTEM) stops the CPUs and leaves \
                 QEMU running; the enforcer must use RB_POWER_OFF (after sync) for QEMU, and GCE, to see the stop"
                    .to_owned()
            } else {
                "QEMU did not exit within 10 s of the halt".to_owned()
            });
            s.vm.stop()?;
        }
    }
    let probe = resp::probe(s.port, Duration::from_secs(2));
    if !probe.no_service() {
        problems.push(format!(
            "the server port still answers after the halt: {probe:?}"
        ));
    }
    Ok(Halt { notes, problems })
}

/// e. The test intruder makes the governor halt the machine within 2 s;
/// the console names it; QEMU exits by itself.
pub(super) fn intrusion(ctx: &mut Ctx) -> Result<Vec<String>> {
    ctx.require(&ctx.test_image, "test-profile image")?;
    let data = TempDir::new("e2e-intrusion")?;
    let disk = data.path().join("data.raw");
    qemu::copy_sparse(&ctx.test_image.file("data.raw"), &disk)?;
    let log = ctx.logs.path().join("intrusion.console.log");
    let mut s = Session::boot(
        &ctx.test_image,
        ctx.opts.boot,
        &disk,
        ctx.state(Mode::Normal),
        log,
    )?;
    s.wait_ready(ReadyProbe::AdminPing)?;
    let halt = watch_halt(&mut s, 0)?;
    if !halt.problems.is_empty() {
        bail!("{}\n{}", halt.problems.join("\n"), halt.notes.join("\n"));
    }
    Ok(halt.notes)
}

/// f. 1000 acknowledged XADDs, the intrusion halt, then a fresh VM on the
/// same data disk: XLEN 1000 and the same last ID.
pub(super) fn nothing_lost(ctx: &mut Ctx) -> Result<Vec<String>> {
    ctx.require(&ctx.test_image, "test-profile image")?;
    ctx.require(&ctx.image, "production image")?;
    let data = TempDir::new("e2e-nothing-lost")?;
    let disk = data.path().join("data.raw");
    qemu::copy_sparse(&ctx.test_image.file("data.raw"), &disk)?;
    let log = ctx.logs.path().join("nothing-lost.console.log");
    let mut s = Session::boot(
        &ctx.test_image,
        ctx.opts.boot,
        &disk,
        ctx.state(Mode::Normal),
        log,
    )?;
    s.wait_ready(ReadyProbe::AdminPing)?;
    let (name, stream) = s.visitor()?;
    let (name, stream) = (name.to_owned(), stream.to_owned());
    let mut c = Conn::connect(s.port, super::REPLY_TIMEOUT)?;
    c.auth(&name, s.state.visitor_pass.expose())?;
    // Pipelined in batches: `appendfsync always` syncs once per event-loop
    // turn, so this finishes well inside the intruder's delay.
    let mut acked = Acked::default();
    let mut failure = None;
    'outer: for batch in 0..10 {
        for i in 0..100 {
            c.send(&[
                "XADD",
                stream.as_str(),
                "*",
                "n",
                &format!("{}", batch * 100 + i),
            ])?;
        }
        for _ in 0..100 {
            match c.read_reply() {
                Ok(Value::Bulk(Some(id))) => {
                    acked.count += 1;
                    acked.last_id = Some(String::from_utf8_lossy(&id).into_owned());
                }
                Ok(other) => {
                    failure = Some(format!("XADD answered {other:?}"));
                    break 'outer;
                }
                Err(e) => {
                    failure = Some(format!("{e:#}"));
                    break 'outer;
                }
            }
        }
    }
    drop(c);
    let halt = watch_halt(&mut s, 0)?;
    drop(s);
    if acked.count < 1000 {
        bail!(
            "only {} XADDs were acknowledged before the halt ({}); the intruder's delay is too short for 1000 under TCG",
            acked.count,
            failure.unwrap_or_default()
        );
    }
    // Fresh VM, production image (the data disk outlives image replacement).
    let log = ctx.logs.path().join("nothing-lost-after.console.log");
    let mut fresh = Session::boot(
        &ctx.image,
        ctx.opts.boot,
        &disk,
        ctx.state(Mode::Normal),
        log,
    )?;
    fresh.wait_ready(ReadyProbe::AdminPing)?;
    let mut admin = fresh.admin_conn()?;
    let checked = check_acked(&mut admin, &stream, &acked)?;
    fresh.vm.stop()?;
    let mut notes = vec![format!(
        "1000 acknowledged; after the halt a fresh production VM sees {checked}"
    )];
    if !halt.problems.is_empty() {
        notes.push(format!(
            "(halt problems, judged by `intrusion`: {})",
            halt.problems.join("; ")
        ));
    }
    Ok(notes)
}
