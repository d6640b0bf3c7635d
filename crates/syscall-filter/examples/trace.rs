//! Runs a command under a notifying seccomp filter and writes what it
//! called: the measurement an allowlist is derived from.
//!
//! ```text
//! trace --out FILE [--allow-file DESCRIPTION.json] [--draft-out DRAFT.json] -- CMD ARGS...
//! ```
//!
//! Without `--allow-file`, every call is notified (only the listener's own
//! handoff runs unseen), recorded, and let run. With it, the description's
//! refusals (`Notify`, `KillProcess`, `Trap`, a refusing default) become
//! notifications and are recorded and let run, so the report lists exactly
//! what the draft would refuse; its `Errno` answers stay (they are part of
//! what the program should see, e.g. `clone3` -> ENOSYS). `--draft-out`
//! writes every native call seen as an unconditional allowlist (JSON) to
//! start a description from. Needs Linux (x86_64); runs as any user
//! (`no_new_privs` is set in the child).
#![allow(clippy::print_stderr)]

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    eprintln!("trace: Linux x86_64 only");
    std::process::exit(2);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    if let Err(e) = imp::main() {
        eprintln!("trace: {e:#}");
        std::process::exit(2);
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::ffi::{CString, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use anyhow::{bail, Context, Result};
    use syscall_filter::linux::{run_traced_reporting, ChildExit};
    use syscall_filter::{Action, Filter};

    const USAGE: &str =
        "usage: trace --out FILE [--allow-file DESCRIPTION.json] [--draft-out DRAFT.json] -- CMD ARGS...";

    struct Args {
        out: PathBuf,
        allow_file: Option<PathBuf>,
        draft_out: Option<PathBuf>,
        command: Vec<OsString>,
    }

    fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args> {
        let (mut out, mut allow_file, mut draft_out) = (None, None, None);
        loop {
            let Some(arg) = args.next() else {
                bail!("{USAGE}");
            };
            let mut value = |name: &str| -> Result<PathBuf> {
                args.next()
                    .map(PathBuf::from)
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match arg.to_str() {
                Some("--out") => out = Some(value("--out")?),
                Some("--allow-file") => allow_file = Some(value("--allow-file")?),
                Some("--draft-out") => draft_out = Some(value("--draft-out")?),
                Some("--") => break,
                _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
            }
        }
        let command: Vec<OsString> = args.collect();
        if command.is_empty() {
            bail!("no command\n{USAGE}");
        }
        Ok(Args {
            out: out.context(USAGE)?,
            allow_file,
            draft_out,
            command,
        })
    }

    /// `CMD` as given when it has a slash, else the first match on `PATH`.
    fn resolve(cmd: &Path) -> Result<PathBuf> {
        if cmd.as_os_str().as_bytes().contains(&b'/') {
            return Ok(cmd.to_path_buf());
        }
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(cmd))
            .find(|p| p.is_file())
            .with_context(|| format!("{} not found on PATH", cmd.display()))
    }

    fn cstring(bytes: Vec<u8>) -> Result<CString> {
        CString::new(bytes).context("argument or environment entry contains a NUL byte")
    }

    pub(crate) fn main() -> Result<()> {
        let args = parse(std::env::args_os().skip(1))?;
        let filter = match &args.allow_file {
            None => Filter::new(Action::Notify),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let description: Filter = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                description
                    .validate()
                    .with_context(|| format!("checking {}", path.display()))?;
                description.with_refusals_as(Action::Notify)
            }
        };
        let first = args.command.first().context(USAGE)?;
        let program = resolve(Path::new(first))?;
        let path = cstring(program.into_os_string().into_vec())?;
        let argv = args
            .command
            .iter()
            .map(|a| cstring(a.as_bytes().to_vec()))
            .collect::<Result<Vec<_>>>()?;
        let envp = std::env::vars_os()
            .map(|(k, v)| {
                let mut entry = k.into_vec();
                entry.push(b'=');
                entry.extend(v.into_vec());
                cstring(entry)
            })
            .collect::<Result<Vec<_>>>()?;

        // Written again at each new call: a harness may SIGKILL us (the
        // traced program dies with us), and what was seen must survive.
        let out = args.out.clone();
        let command = args.command.clone();
        let mut on_new = |recorder: &syscall_filter::Recorder| {
            let _ = std::fs::write(
                &out,
                format!("# {command:?} still running\n{}", recorder.report()),
            );
        };
        let traced =
            run_traced_reporting(&path, &argv, &envp, &filter, &mut on_new).context("tracing")?;
        let exit = match traced.exit {
            ChildExit::Exited(code) => format!("exited with status {code}"),
            ChildExit::Signaled(signal) => format!("killed by signal {signal}"),
        };
        let report = format!("# {:?} {exit}\n{}", args.command, traced.recorder.report());
        std::fs::write(&args.out, report)
            .with_context(|| format!("writing {}", args.out.display()))?;
        if let Some(draft_out) = &args.draft_out {
            let draft = traced.recorder.draft_allowlist(Action::Notify);
            let json = serde_json::to_string_pretty(&draft)?;
            std::fs::write(draft_out, json + "\n")
                .with_context(|| format!("writing {}", draft_out.display()))?;
        }
        eprintln!(
            "trace: {exit}; {} calls of {} kinds written to {}",
            traced.recorder.total(),
            traced.recorder.calls().count(),
            args.out.display()
        );
        // Exit as the traced program did, so a caller that checks its
        // status (a test expecting a server to refuse to start) sees it.
        std::process::exit(match traced.exit {
            ChildExit::Exited(code) => code,
            ChildExit::Signaled(signal) => 128 + signal,
        })
    }
}
