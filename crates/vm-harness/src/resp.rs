//! A minimal RESP2 client for talking to the appliance from outside: encode
//! a command, parse a reply (pure, `&[u8]`, never panics), and a blocking
//! connection with timeouts. Hand-written instead of a client library so a
//! test sees exactly what came back, errors and silences included.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Arrays nested deeper than this are refused (COMMAND replies nest 3-4).
const MAX_DEPTH: usize = 16;
/// Bulk strings longer than this are refused.
const MAX_BULK: usize = 64 * 1024 * 1024;

/// A RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` or `$-1` (`None`).
    Bulk(Option<Vec<u8>>),
    /// `*n` or `*-1` (`None`).
    Array(Option<Vec<Value>>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "+{s}"),
            Value::Error(s) => write!(f, "-{s}"),
            Value::Int(i) => write!(f, ":{i}"),
            Value::Bulk(None) | Value::Array(None) => f.write_str("(nil)"),
            Value::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

impl Value {
    /// The error text, if this is an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }

    /// A simple or bulk string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements, if this is a non-nil array.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A malformed reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RESP protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Parses one reply from the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the value and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((rest.get(..end)?, pos.checked_add(end)?.checked_add(2)?))
}

fn parse_int(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(text))))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("arrays nested too deep".into()));
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((line, next)) = line_at(buf, pos.saturating_add(1)) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), next))),
        b'-' => Ok(Some((Value::Error(text()), next))),
        b':' => Ok(Some((Value::Int(parse_int(line)?), next))),
        b'$' => {
            let len = parse_int(line)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_BULK)
                .ok_or_else(|| ProtocolError(format!("bad bulk length {len}")))?;
            let end = next.saturating_add(len);
            let Some(data) = buf.get(next..end) else {
                return Ok(None);
            };
            match buf.get(end..end.saturating_add(2)) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((
                    Value::Bulk(Some(data.to_vec())),
                    end.saturating_add(2),
                ))),
                Some(b"\r") => Ok(None),
                Some(_) => Err(ProtocolError("bulk string not followed by CRLF".into())),
            }
        }
        b'*' => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            let n =
                usize::try_from(n).map_err(|_| ProtocolError(format!("bad array length {n}")))?;
            // Each element takes at least 3 bytes: an absurd count cannot
            // make us reserve memory.
            let mut items = Vec::with_capacity(n.min(buf.len() / 3));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth.saturating_add(1))? {
                    Some((v, after)) => {
                        items.push(v);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!(
            "unknown reply type byte 0x{other:02x}"
        ))),
    }
}

/// A blocking connection to the server.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`; every read waits at most `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let fail = |source| Error::Connect {
            from: None,
            to: addr,
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            timeout,
        })
    }

    /// Wraps a connected stream (the test network's clients connect
    /// themselves, from their own source address).
    pub fn from_stream(stream: TcpStream, timeout: Duration) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    /// The underlying stream (for raw writes in abuse cases).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends a command and reads its reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        self.send(args)?;
        self.read_reply()
    }

    /// Sends a command without reading (for pipelining).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        self.stream
            .write_all(&encode(args))
            .map_err(Error::io("send command"))
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> Result<Value> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some((v, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NoReply(self.timeout));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(Error::io("read reply"))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Error::NoReply(self.timeout))
                }
                Err(e) => return Err(Error::io("read reply")(e)),
            }
        }
    }

    /// `AUTH user pass`, failing unless `+OK`.
    pub fn auth(&mut self, user: &str, pass: &str) -> Result<()> {
        match self.cmd(&["AUTH", user, pass])? {
            Value::Simple(ok) if ok == "OK" => Ok(()),
            other => Err(Error::Auth {
                user: user.to_owned(),
                reply: format!("{other:?}"),
            }),
        }
    }
}

/// What a connection to a port that should offer no service saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The connection was refused (nothing forwards the port).
    Refused,
    /// Accepted (by QEMU's slirp on the host side), then closed or reset
    /// without one byte.
    ClosedWithoutData,
    /// Accepted and silent for the whole wait (the guest's firewall drops
    /// slirp's SYN without a reset).
    Silent,
    /// Bytes came back: a service answered.
    Data(Vec<u8>),
    /// The connect itself timed out.
    ConnectTimeout,
}

impl Probe {
    /// True unless a byte came back. This is the e2e definition of "the
    /// port never accepts a connection": with `restrict=on` and a
    /// `hostfwd`, QEMU accepts every host-side connection itself and only
    /// then tries the guest, so a refused guest shows as a closed or silent
    /// host connection, never as a refused one; what matters is that no
    /// RESP (or any) byte ever comes back.
    pub fn no_service(&self) -> bool {
        !matches!(self, Probe::Data(_))
    }
}

/// Connects to 127.0.0.1:`port`, sends `PING\r\n` (inline command: any
/// Redis-like server answers it, even to an unauthenticated client), and
/// waits up to `wait` for any byte.
pub fn probe(port: u16, wait: Duration) -> Probe {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = match TcpStream::connect_timeout(&addr, wait) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(_) => return Probe::ConnectTimeout,
    };
    // The guest may have closed already; a failed write is no service too.
    let _ = stream.write_all(b"PING\r\n");
    let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let mut chunk = [0u8; 256];
    let got = match stream.read(&mut chunk) {
        Ok(n) => chunk.get(..n).unwrap_or_default().to_vec(),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            let _ = stream.shutdown(Shutdown::Both);
            return Probe::Silent;
        }
        Err(_) => Vec::new(),
    };
    if got.is_empty() {
        Probe::ClosedWithoutData
    } else {
        Probe::Data(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["XADD", "s", "*", "f", ""]),
            b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn parses_replies_table() {
        type Case<'a> = (&'a [u8], Option<(Value, usize)>);
        let cases: Vec<Case> = vec![
            (b"+OK\r\n", Some((Value::Simple("OK".into()), 5))),
            (
                b"-NOPERM no\r\nrest",
                Some((Value::Error("NOPERM no".into()), 12)),
            ),
            (b":-12\r\n", Some((Value::Int(-12), 6))),
            (
                b"$3\r\nabc\r\n",
                Some((Value::Bulk(Some(b"abc".to_vec())), 9)),
            ),
            (b"$-1\r\n", Some((Value::Bulk(None), 5))),
            (b"*-1\r\n", Some((Value::Array(None), 5))),
            (
                b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                Some((
                    Value::Array(Some(vec![
                        Value::Bulk(Some(b"a".to_vec())),
                        Value::Array(Some(vec![Value::Int(1)])),
                    ])),
                    19,
                )),
            ),
            (b"", None),
            (b"+OK", None),
            (b"$3\r\nab", None),
            (b"$3\r\nabc\r", None),
            (b"*2\r\n:1\r\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input).unwrap(),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        for input in [
            &b"?x\r\n"[..],
            b":x\r\n",
            b"$-2\r\n",
            b"$1\r\nab\r\n",
            b"*-5\r\n",
        ] {
            assert!(
                parse(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn bulk_round_trip(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut wire = format!("${}\r\n", data.len()).into_bytes();
            wire.extend_from_slice(&data);
            wire.extend_from_slice(b"\r\n");
            let (v, used) = parse(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(v, Value::Bulk(Some(data)));
        }
    }

    #[test]
    fn probe_sees_refused_closed_silent_and_data() {
        use std::net::TcpListener;
        // Refused: a port nobody listens on.
        let port = crate::host::free_port().unwrap();
        assert_eq!(probe(port, Duration::from_millis(500)), Probe::Refused);

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            drop(s);
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(800));
            drop(s);
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"+PONG\r\n").unwrap();
        });
        assert_eq!(
            probe(port, Duration::from_secs(5)),
            Probe::ClosedWithoutData
        );
        assert_eq!(probe(port, Duration::from_millis(300)), Probe::Silent);
        let p = probe(port, Duration::from_secs(5));
        assert_eq!(p, Probe::Data(b"+PONG\r\n".to_vec()));
        assert!(!p.no_service());
        t.join().unwrap();
    }
}
