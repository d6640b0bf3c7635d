//! A scripted stand-in for the metadata server: a std `TcpListener` on
//! 127.0.0.1:0, one thread per connection, the n-th connection answered by the
//! n-th scripted reply (the last one repeats). It logs what each connection
//! asked and how much body it was sent, and joins all its threads on drop.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The attribute path, as on GCE.
pub(crate) const PATH: &str = "/computeMetadata/v1/instance/attributes/";
/// Bytes of body a `Stream` reply sends before it waits for the client to
/// hang up: four times what a client may read.
pub(crate) const PAUSE_AFTER: usize = 16 * 1024;
/// Bounds every wait in the stand-in so a broken client cannot hang a test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One scripted reply.
#[derive(Clone)]
pub(crate) enum Reply {
    /// These bytes, then the connection closes.
    Raw(Vec<u8>),
    /// Read the request, never answer; hold the connection until the client
    /// leaves.
    Silent,
    /// `head` (status line and headers, blank line included), then a body of
    /// `total` bytes (`None`: endless) in 4 KiB blocks, chunk-encoded if
    /// `chunked`. After `PAUSE_AFTER` bytes it waits for the client to hang up
    /// and only sends the rest if it does not.
    Stream {
        head: Vec<u8>,
        chunked: bool,
        total: Option<usize>,
    },
}

/// A complete reply with `Content-Length` and `Connection: close` added.
pub(crate) fn response(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut bytes = format!("HTTP/1.1 {status_line}\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

/// What the metadata server says for a key that exists.
pub(crate) fn ok(body: &[u8]) -> Reply {
    response("200 OK", &[("Metadata-Flavor", "Google")], body)
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conn {
    /// The request head, as received.
    pub(crate) request: String,
    /// Body bytes written successfully.
    pub(crate) body_bytes_sent: usize,
    /// The client hung up before the whole body was sent.
    pub(crate) hung_up_early: bool,
}

pub(crate) struct StandIn {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<Conn>>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl StandIn {
    pub(crate) fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let workers = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, conns, workers) = (stop.clone(), conns.clone(), workers.clone());
            std::thread::spawn(move || {
                let mut accepted = 0;
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let reply = script[accepted.min(script.len() - 1)].clone();
                    accepted += 1;
                    let conns = conns.clone();
                    let worker = std::thread::spawn(move || serve(stream, &reply, &conns));
                    workers.lock().unwrap().push(worker);
                }
            })
        };
        Self {
            addr,
            stop,
            accept: Some(accept),
            conns,
            workers,
        }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Connections that delivered a request head.
    pub(crate) fn requests(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    pub(crate) fn conns(&self) -> Vec<Conn> {
        self.conns.lock().unwrap().clone()
    }

    /// Stops, joins every thread, and returns the final log.
    pub(crate) fn finish(mut self) -> Vec<Conn> {
        self.shut_down();
        self.conns()
    }

    fn shut_down(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        for worker in workers {
            let _ = worker.join();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve(mut stream: TcpStream, reply: &Reply, conns: &Mutex<Vec<Conn>>) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let Some(request) = read_head(&mut stream) else {
        return;
    };
    let index = {
        let mut conns = conns.lock().unwrap();
        conns.push(Conn {
            request,
            ..Conn::default()
        });
        conns.len() - 1
    };
    match reply {
        Reply::Raw(bytes) => {
            let _ = stream.write_all(bytes);
            let _ = stream.shutdown(Shutdown::Write);
            wait_for_hang_up(&mut stream);
        }
        Reply::Silent => {
            wait_for_hang_up(&mut stream);
        }
        Reply::Stream {
            head,
            chunked,
            total,
        } => {
            if stream.write_all(head).is_err() {
                return;
            }
            let block = [b'x'; 4096];
            let mut sent = 0;
            loop {
                let n = match total {
                    Some(total) if sent >= *total => break,
                    Some(total) => block.len().min(total - sent),
                    None => block.len(),
                };
                let mut piece = Vec::new();
                if *chunked {
                    piece.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                }
                piece.extend_from_slice(&block[..n]);
                if *chunked {
                    piece.extend_from_slice(b"\r\n");
                }
                if stream.write_all(&piece).is_err() {
                    conns.lock().unwrap()[index].hung_up_early = true;
                    return;
                }
                sent += n;
                conns.lock().unwrap()[index].body_bytes_sent = sent;
                if sent == PAUSE_AFTER && wait_for_hang_up(&mut stream) {
                    conns.lock().unwrap()[index].hung_up_early = true;
                    return;
                }
            }
            if *chunked {
                let _ = stream.write_all(b"0\r\n\r\n");
            }
            wait_for_hang_up(&mut stream);
        }
    }
}

/// The request head, or `None` if the peer sent none (the drop's wake-up).
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

/// Whether the client closed the connection within `IO_TIMEOUT`. Anything the
/// client sends meanwhile is discarded.
fn wait_for_hang_up(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
