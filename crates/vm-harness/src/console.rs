//! A VM's serial console as lines: every line so far with the time it
//! arrived, and a way to wait for one. The capture thread of [`crate::Vm`]
//! feeds it through a [`LineSplitter`]; tests can push lines themselves.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One console line with the time it arrived, counted from QEMU's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Arrival time since the VM was started.
    pub at: Duration,
    /// The text, without `\r\n`, invalid UTF-8 replaced.
    pub text: String,
}

#[derive(Debug, Default)]
struct ConsoleLog {
    lines: Vec<Line>,
    closed: bool,
}

/// The serial console of a VM: every line so far, and a way to wait for one.
#[derive(Debug, Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<ConsoleLog>, Condvar)>,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleLog> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line (the capture thread, or a test).
    pub fn push(&self, at: Duration, text: String) {
        self.lock().lines.push(Line { at, text });
        self.inner.1.notify_all();
    }

    /// Marks the end of output (QEMU exited).
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lock().lines.clone()
    }

    /// How many lines so far.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// No lines yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether QEMU's output ended.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits up to `timeout` for the output to end; whether it did.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        self.wait_for(usize::MAX, timeout, |_| false);
        self.is_closed()
    }

    /// Waits up to `timeout` for a line at index `from` or later matching
    /// `pred`; returns its index and the line. `None` on timeout or when the
    /// output ended without one.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, Line)> {
        let deadline = Instant::now() + timeout;
        let mut log = self.lock();
        let mut next = from;
        loop {
            while let Some(line) = log.lines.get(next) {
                if pred(&line.text) {
                    return Some((next, line.clone()));
                }
                next = next.saturating_add(1);
            }
            if log.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            log = match self.inner.1.wait_timeout(log, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The last `n` lines as text, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.lock();
        let start = log.lines.len().saturating_sub(n);
        log.lines
            .iter()
            .skip(start)
            .map(|l| format!("    [{:7.2}] {}", l.at.as_secs_f64(), l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Splits a byte stream into console lines (`\n`-terminated, `\r` dropped).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => out.push(self.take()),
                b'\r' => {}
                _ => self.partial.push(b),
            }
        }
        out
    }

    /// The unterminated rest, if any (at end of stream).
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        line
    }
}

/// Where a VM's console goes besides the in-memory [`Console`].
#[derive(Debug, Clone, Default)]
pub struct ConsoleSinks {
    /// Echo every byte to this process's stdout (`cargo xtask run`).
    pub echo: bool,
    /// Append every byte to this file.
    pub log_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_splitter_handles_crlf_and_partial_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"appliance: in"), Vec::<String>::new());
        assert_eq!(
            s.feed(b"it 0.1 starting\r\nnext\r"),
            vec!["appliance: init 0.1 starting"]
        );
        assert_eq!(
            s.feed(b"\n\xff\n"),
            vec!["next".to_owned(), "\u{fffd}".to_owned()]
        );
        assert_eq!(s.feed(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn console_wait_for_sees_old_and_new_lines() {
        let c = Console::default();
        c.push(Duration::from_secs(1), "a".into());
        let (i, l) = c.wait_for(0, Duration::ZERO, |t| t == "a").unwrap();
        assert_eq!((i, l.at), (0, Duration::from_secs(1)));
        assert!(c
            .wait_for(1, Duration::from_millis(10), |t| t == "a")
            .is_none());
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.push(Duration::from_secs(2), "b".into());
        });
        let (i, _) = c.wait_for(0, Duration::from_secs(5), |t| t == "b").unwrap();
        assert_eq!(i, 1);
        t.join().unwrap();
        c.close();
        let start = Instant::now();
        assert!(c
            .wait_for(0, Duration::from_secs(5), |t| t == "zzz")
            .is_none());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "closed console must not wait"
        );
    }
}
