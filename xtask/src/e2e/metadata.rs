//! Fail-closed metadata: with a stand-in that misbehaves, init halts before
//! the server starts, says why on the console, and the server port never
//! answers a byte.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use vm_harness::matchers;
use vm_harness::resp::{self, Probe};
use vm_harness::standin::{self, Mode};

use super::{Ctx, Session, FATAL_TIMEOUT};

/// g. One misbehaving stand-in mode.
pub(super) fn fail_closed(ctx: &mut Ctx, mode: Mode) -> Result<Vec<String>> {
    ctx.require(&ctx.image, "production image")?;
    let data = ctx.image.fresh_data("e2e-metadata")?;
    let disk = data.disk();
    let log = ctx.logs.path().join(format!(
        "metadata-{}.console.log",
        mode.to_string().replace(':', "-")
    ));
    let mut s = Session::boot(
        &ctx.image,
        ctx.opts.boot,
        &disk,
        ctx.state(mode.clone()),
        log,
    )?;
    let deadline = Instant::now() + FATAL_TIMEOUT;
    let mut probes = 0usize;
    let mut kinds: Vec<String> = Vec::new();
    // Probe the server port all along: not one byte may come back.
    let fatal = loop {
        let found =
            s.vm.console()
                .lines()
                .into_iter()
                .find(|l| matchers::fatal(&l.text).is_some());
        if let Some(line) = found {
            break line;
        }
        if let Some(status) = s.vm.try_exit()? {
            bail!(
                "QEMU exited ({status}) without a FATAL line\n{}",
                s.vm.console().tail(15)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no `{}` line within {}s\n{}",
                matchers::FATAL,
                FATAL_TIMEOUT.as_secs(),
                s.vm.console().tail(15)
            );
        }
        let p = resp::probe(s.port, Duration::from_secs(1));
        probes += 1;
        if let Probe::Data(bytes) = &p {
            bail!(
                "the server port answered during boot: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        kinds.push(format!("{p:?}"));
        std::thread::sleep(Duration::from_millis(500));
    };
    let halted = s.vm.console().wait_for(0, Duration::from_secs(20), |l| {
        l.contains(matchers::KERNEL_HALTED) || l.contains(matchers::KERNEL_POWER_DOWN)
    });
    let after = resp::probe(s.port, Duration::from_secs(2));
    probes += 1;
    if !after.no_service() {
        bail!("the server port answered after the halt: {after:?}");
    }
    let lines = s.vm.console().lines();
    if let Some(exec) = lines
        .iter()
        .find(|l| l.text.contains(matchers::EXEC_SERVER))
    {
        bail!("init went on to exec the server: {}", exec.text);
    }
    let served_values = [standin::ADMIN_KEY, standin::VISITOR_KEY]
        .iter()
        .filter_map(|k| s.state.value(k))
        .map(|v| v.trim().to_owned());
    let mut secrets: Vec<String> = vec![
        s.state.admin_pass.expose().to_owned(),
        s.state.visitor_pass.expose().to_owned(),
    ];
    secrets.extend(served_values);
    for pw in secrets.iter().filter(|p| !p.is_empty()) {
        if lines.iter().any(|l| l.text.contains(pw.as_str())) {
            bail!("a password appeared on the console");
        }
    }
    let served = standin::read_log(&s.dir.state_file());
    if served.is_empty() {
        bail!(
            "the guest never reached the metadata stand-in; the halt is not this mode's doing: {}",
            fatal.text
        );
    }
    let exited = s.vm.wait_exit(Duration::from_secs(5))?.is_some();
    s.vm.stop()?;
    kinds.sort();
    kinds.dedup();
    Ok(vec![
        format!(
            "console at {:.1}s: {}",
            fatal.at.as_secs_f64(),
            fatal.text.trim()
        ),
        format!(
            "stand-in served {} request(s): {}",
            served.len(),
            served.last().cloned().unwrap_or_default()
        ),
        format!(
            "{probes} probes of the server port, no byte back ({}); {}; QEMU {}",
            kinds.join(", "),
            match halted {
                Some((_, l)) => format!("kernel: `{}`", l.text.trim()),
                None => "no kernel halt line".to_owned(),
            },
            if exited {
                "exited by itself"
            } else {
                "stayed up (stopped by the test)"
            }
        ),
    ])
}
