//! A running QEMU: started in its own process group, its console captured
//! with host-side timestamps (and echoed or logged as asked), its stderr
//! kept, the HMP monitor on a unix socket, stopped by PID.
//!
//! Invariant: a [`Vm`] kills its QEMU by PID and waits for it when
//! dropped; nothing else is ever killed.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::console::{Console, ConsoleSinks, LineSplitter};
use crate::qemu::QemuSpec;
use crate::{Error, Result};

/// A running QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    started: Instant,
    console: Console,
    monitor: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

/// How long an exited QEMU's output may take to reach the console and the
/// stderr buffer (a program QEMU started, such as the metadata stand-in, can
/// hold a copy of a pipe open; the wait is bounded for that case).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(3);

impl Vm {
    /// Starts QEMU for `spec` in its own process group (a terminal's Ctrl-C
    /// reaches only xtask, which then stops QEMU itself).
    pub fn spawn(spec: &QemuSpec, sinks: &ConsoleSinks) -> Result<Vm> {
        let args = spec.args()?;
        let mut cmd = match &spec.tap_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&spec.qemu);
                c
            }
            None => Command::new(&spec.qemu),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut log_file = match &sinks.log_file {
            Some(p) => Some(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(Error::file("open", p))?,
            ),
            None => None,
        };
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: spec.qemu.clone(),
            source,
        })?;
        let console = Console::default();
        let (Some(stdout), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Io {
                what: "take QEMU's output pipes",
                source: std::io::Error::other("stdout or stderr not piped"),
            });
        };
        let echo = sinks.echo;
        let sink = console.clone();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut splitter = LineSplitter::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = buf.get(..n).unwrap_or_default();
                if echo {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(chunk);
                    let _ = out.flush();
                }
                if let Some(f) = log_file.as_mut() {
                    let _ = f.write_all(chunk);
                }
                for line in splitter.feed(chunk) {
                    sink.push(started.elapsed(), line);
                }
            }
            if let Some(line) = splitter.finish() {
                sink.push(started.elapsed(), line);
            }
            sink.close();
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr_pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Ok(mut buf) = err_sink.lock() {
                    buf.extend_from_slice(&line);
                }
                line.clear();
            }
        });
        Ok(Vm {
            child,
            started,
            console,
            monitor: spec.monitor.clone(),
            stderr,
            stderr_reader: Some(stderr_reader),
            exit: None,
        })
    }

    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The console.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// What QEMU wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// QEMU's exit status, if it has exited. Once it has, everything QEMU
    /// wrote is on the console and in [`Vm::stderr_text`] (bounded by
    /// `DRAIN_AFTER_EXIT`).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(Error::io("wait for QEMU"))?;
            if self.exit.is_some() {
                self.drain_output();
            }
        }
        Ok(self.exit)
    }

    /// Waits (bounded) for the capture threads to reach the end of QEMU's
    /// output, so a caller that saw the exit also sees the last lines.
    fn drain_output(&mut self) {
        let deadline = Instant::now() + DRAIN_AFTER_EXIT;
        self.console.wait_closed(DRAIN_AFTER_EXIT);
        if let Some(reader) = self.stderr_reader.take() {
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one HMP command on the monitor socket and returns its output.
    pub fn monitor(&self, command: &str) -> Result<String> {
        monitor_command(&self.monitor, command, Duration::from_secs(10))
    }

    /// Stops QEMU: `quit` on the monitor, then SIGKILL by PID if it is still
    /// there after 5 s. Waits for it either way.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        let _ = self.monitor("quit");
        if let Some(status) = self.wait_exit(Duration::from_secs(5))? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL to QEMU's PID, then wait.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(Error::io("wait for QEMU"))?;
        self.exit = Some(status);
        self.drain_output();
        Ok(status)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Nobody reads the output any more: no drain.
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HMP command over the monitor socket: waits for the `(qemu) ` prompt,
/// sends the command, returns what QEMU printed before the next prompt (or
/// before it closed the socket, as after `quit`).
pub fn monitor_command(socket: &Path, command: &str, timeout: Duration) -> Result<String> {
    let fail = |source| Error::Monitor {
        socket: socket.to_path_buf(),
        source,
    };
    let deadline = Instant::now() + timeout;
    let mut stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return Err(fail(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    read_to_prompt(&mut stream).map_err(fail)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(fail)?;
    let out = read_to_prompt(&mut stream).map_err(fail)?;
    // The terminal echo of the command comes first; drop it.
    let text = String::from_utf8_lossy(&out).into_owned();
    let text = text.replace('\r', "");
    let body = text
        .split_once('\n')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    Ok(body.trim_end_matches("(qemu) ").trim_end().to_owned())
}

fn read_to_prompt(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if out.ends_with(b"(qemu) ") {
            return Ok(out);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Boot;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    /// A spec whose "QEMU" is the shell script `body` (it gets QEMU's
    /// arguments and ignores them).
    fn fake_qemu(dir: &Path, body: &str) -> QemuSpec {
        let program = dir.join("fake-qemu");
        fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let mut spec = QemuSpec::new(
            Boot::Direct {
                kernel: dir.join("vmlinuz"),
                initrd: dir.join("initrd"),
                cmdline: "console=ttyS0".into(),
            },
            dir.join("monitor.sock"),
        );
        spec.qemu = program;
        spec
    }

    #[test]
    fn console_stderr_log_and_exit_are_captured() {
        let tmp = crate::host::temp_dir("vm-test").unwrap();
        let spec = fake_qemu(
            tmp.path(),
            "printf 'appliance: in'; sleep 0.2; printf 'it starting\\r\\nlast'; echo oops >&2; exit 3",
        );
        let log = tmp.path().join("console.log");
        let sinks = ConsoleSinks {
            echo: false,
            log_file: Some(log.clone()),
        };
        let mut vm = Vm::spawn(&spec, &sinks).unwrap();
        let (i, line) = vm
            .console()
            .wait_for(0, Duration::from_secs(10), |l| l.ends_with("starting"))
            .unwrap();
        assert_eq!((i, line.text.as_str()), (0, "appliance: init starting"));
        let status = vm.wait_exit(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        // The unterminated last line arrives when the output ends.
        assert!(vm
            .console()
            .wait_for(1, Duration::from_secs(10), |l| l == "last")
            .is_some());
        assert!(vm.console().is_closed());
        assert_eq!(vm.stderr_text().trim(), "oops");
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "appliance: init starting\r\nlast"
        );
        assert_eq!(
            vm.stop().unwrap().code(),
            Some(3),
            "an exited VM stays exited"
        );
    }

    #[test]
    fn kill_ends_a_running_vm() {
        let tmp = crate::host::temp_dir("vm-test").unwrap();
        let spec = fake_qemu(tmp.path(), "echo up; exec sleep 60");
        let mut vm = Vm::spawn(&spec, &ConsoleSinks::default()).unwrap();
        assert!(vm
            .console()
            .wait_for(0, Duration::from_secs(10), |l| l == "up")
            .is_some());
        assert_eq!(vm.try_exit().unwrap(), None);
        let started = Instant::now();
        let status = vm.kill().unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let tmp = crate::host::temp_dir("vm-test").unwrap();
        let mut spec = fake_qemu(tmp.path(), "exit 0");
        spec.qemu = tmp.path().join("no-such-qemu");
        let err = Vm::spawn(&spec, &ConsoleSinks::default()).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }

    /// The HMP conversation as QEMU holds it: banner and prompt, the
    /// command echoed, its output, the next prompt.
    #[test]
    fn monitor_command_returns_what_came_between_prompts() {
        let tmp = crate::host::temp_dir("vm-test").unwrap();
        let socket = tmp.path().join("monitor.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"QEMU 9.2 monitor - type 'help'\r\n(qemu) ")
                .unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while !got.ends_with(b"\n") {
                s.read_exact(&mut byte).unwrap();
                got.push(byte[0]);
            }
            s.write_all(b"info status\r\nVM status: running\r\n(qemu) ")
                .unwrap();
            got
        });
        let out = monitor_command(&socket, "info status", Duration::from_secs(10)).unwrap();
        assert_eq!(out, "VM status: running");
        assert_eq!(server.join().unwrap(), b"info status\n");
        let gone = tmp.path().join("gone.sock");
        let err = monitor_command(&gone, "quit", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, Error::Monitor { .. }), "{err}");
    }
}
