//! What a ~150-call allowlist costs each system call, printed as a table.
//!
//! `cargo bench -p syscall-filter` (Linux x86_64). Knobs:
//! SYSCALL_FILTER_BENCH_CALLS (2000000 calls per run), SYSCALL_FILTER_BENCH_RUNS
//! (7 runs of every setting, interleaved; rows are medians).
//!
//! Each run forks a child that sets `no_new_privs`, installs the setting's
//! filter (none for the baseline) and times `getppid` in a loop with the
//! vDSO clock; the child reports nanoseconds per call through a pipe. Since
//! Linux 5.11 the kernel caches, per syscall number, a filter's answer when
//! it does not depend on the arguments, and then runs no BPF at all for
//! that call; so the settings are: `getppid` allowed outright (cacheable),
//! and `getppid` allowed only when `arg0 == 0` (the program runs on every
//! call), first or last of the linear layout, and in the tree layout. The
//! "executed" column counts the BPF instructions run for that call
//! (interpreter, host-independent).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::print_stdout
)]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    imp::main();
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    println!("filter_cost: Linux x86_64 only");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::time::Instant;

    use syscall_filter::interpret::interpret;
    use syscall_filter::linux::{install, InstallFlags};
    use syscall_filter::{
        compile_with, Action, ArgCondition, Filter, Layout, Program, Rule, SeccompData, Syscall,
    };

    fn env(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    struct Setting {
        name: &'static str,
        program: Option<Program>,
    }

    /// 149 other calls plus `getppid`, placed first or last, plain or with
    /// an argument condition.
    fn allowlist(getppid_first: bool, conditional: bool) -> Filter {
        let getppid = Syscall::named("getppid").unwrap();
        let mut rule = Rule::new(getppid, Action::Allow);
        if conditional {
            rule = rule.when(ArgCondition::equal(0, 0));
        }
        let others = Syscall::all()
            .filter(|s| *s != getppid && s.name() != "exit_group")
            .take(148)
            .map(|s| Rule::new(s, Action::Allow));
        let mut rules: Vec<Rule> = vec![Rule::new(
            Syscall::named("exit_group").unwrap(),
            Action::Allow,
        )];
        if getppid_first {
            rules.insert(0, rule.clone());
        }
        rules.extend(others);
        if !getppid_first {
            rules.push(rule);
        }
        Filter {
            default: Action::KillProcess,
            rules,
        }
    }

    /// One run: a child installs `program` and times `calls` getppid calls.
    fn run(program: Option<&Program>, calls: u64) -> f64 {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: this bench is single-threaded; the child only makes system
        // calls and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            if let Some(p) = program {
                if install(p, InstallFlags::default()).is_err() {
                    // SAFETY: ends the child.
                    unsafe { libc::_exit(1) };
                }
            }
            let start = Instant::now();
            for _ in 0..calls {
                // SAFETY: getppid takes no arguments.
                unsafe { libc::syscall(libc::SYS_getppid, 0) };
            }
            let ns = start.elapsed().as_nanos() as u64;
            // SAFETY: writes 8 bytes from a live buffer to the pipe.
            unsafe { libc::write(fds[1], ns.to_ne_bytes().as_ptr().cast(), 8) };
            // SAFETY: ends the child.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(fds[1]) };
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer.
        let got = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 8) };
        // SAFETY: closing the read end.
        unsafe { libc::close(fds[0]) };
        let mut status = 0;
        // SAFETY: waitpid writes the status through a valid pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(got, 8, "child failed (status {status:#x})");
        u64::from_ne_bytes(buf) as f64 / calls as f64
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    pub(crate) fn main() {
        let calls = env("SYSCALL_FILTER_BENCH_CALLS", 2_000_000);
        let runs = env("SYSCALL_FILTER_BENCH_RUNS", 7) as usize;
        let compile = |f: &Filter, layout| compile_with(f, layout).unwrap();
        let settings = vec![
            Setting {
                name: "no filter",
                program: None,
            },
            Setting {
                name: "150 allowed, linear, getppid last, plain",
                program: Some(compile(&allowlist(false, false), Layout::Linear)),
            },
            Setting {
                name: "150 allowed, tree, getppid plain",
                program: Some(compile(&allowlist(false, false), Layout::Tree)),
            },
            Setting {
                name: "150 allowed, linear, getppid first, arg0==0",
                program: Some(compile(&allowlist(true, true), Layout::Linear)),
            },
            Setting {
                name: "150 allowed, linear, getppid last, arg0==0",
                program: Some(compile(&allowlist(false, true), Layout::Linear)),
            },
            Setting {
                name: "150 allowed, tree, getppid arg0==0",
                program: Some(compile(&allowlist(false, true), Layout::Tree)),
            },
        ];
        let getppid = SeccompData::x86_64(Syscall::named("getppid").unwrap().nr(), [0; 6]);

        // Warm up, then interleave the settings so drift hits all alike.
        for s in &settings {
            run(s.program.as_ref(), calls / 10);
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
        for _ in 0..runs {
            for (i, s) in settings.iter().enumerate() {
                samples[i].push(run(s.program.as_ref(), calls));
            }
        }
        let medians: Vec<f64> = samples.into_iter().map(median).collect();
        let base = medians[0];

        println!(
            "getppid cost under a seccomp filter ({calls} calls per run, median of {runs} runs)"
        );
        println!();
        println!("| setting                                        | instructions | executed | ns/call | overhead |");
        println!("|------------------------------------------------|-------------:|---------:|--------:|---------:|");
        for (s, ns) in settings.iter().zip(&medians) {
            let (len, executed) = match &s.program {
                None => ("-".to_owned(), "-".to_owned()),
                Some(p) => {
                    let run = interpret(p.instructions(), &getppid).unwrap();
                    assert_eq!(Action::from_ret_value(run.ret), Some(Action::Allow));
                    (p.len().to_string(), run.executed.to_string())
                }
            };
            let overhead = if s.program.is_none() {
                "-".to_owned()
            } else {
                format!("{:+.1}", ns - base)
            };
            println!(
                "| {:<46} | {len:>12} | {executed:>8} | {ns:>7.1} | {overhead:>8} |",
                s.name
            );
        }

        let filter = allowlist(false, true);
        let start = Instant::now();
        let n = 200;
        for _ in 0..n {
            std::hint::black_box(
                compile_with(std::hint::black_box(&filter), Layout::Tree).unwrap(),
            );
        }
        println!();
        println!(
            "compiling the 150-rule description: {:.1} us",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        );
    }
}
