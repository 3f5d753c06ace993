//! A fault-injecting TCP proxy for "S3 died in the middle of a transfer" tests.
//!
//! It sits between the signer's S3 endpoint (so between bmat and S3, since presigned
//! URLs point wherever the signer's endpoint does) and forwards bytes as they come.
//! Once armed, it counts the bytes of bmat's presigned transfers in one direction;
//! after N of them it stops forwarding on those connections — everything holds — and
//! reports that it tripped. The test then kills S3 and releases the proxy, which cuts
//! the held connections. No sleeps, no races: the transfer is provably in flight when
//! S3 goes away.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Which bytes trip the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// Request bodies of presigned `PUT`s (part uploads).
    Upload,
    /// Response bodies of presigned `GET`s (archive downloads).
    Download,
}

struct Armed {
    trip: Trip,
    after: u64,
}

#[derive(Default)]
struct State {
    armed: Option<Armed>,
    counted: u64,
    tripped: bool,
    released: bool,
    /// Sockets of the connections that match the armed trip, cut on release.
    held: Vec<TcpStream>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = accept_shared.clone();
                thread::spawn(move || serve(client, upstream, shared));
            }
        });
        FaultProxy {
            addr,
            upstream,
            shared,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `METHOD url` (a URL through this proxy) straight to the upstream, with
    /// the proxy's Host header so that a presigned signature still matches, and
    /// returns the status code. Bypasses the trip: for probing while traffic is held.
    /// A PUT carries one byte (Garage refuses an empty part).
    pub fn probe(&self, method: &str, url: &str) -> u16 {
        let rest = url
            .strip_prefix(&self.url())
            .expect("a URL through this proxy");
        let body = if method == "PUT" { "x" } else { "" };
        let mut conn = TcpStream::connect(self.upstream).expect("upstream answers");
        let request = format!(
            "{method} {rest} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        conn.write_all(request.as_bytes()).expect("probe sent");
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"))
    }

    /// Trips after `after` bytes of the given kind (counted from now).
    pub fn arm(&self, trip: Trip, after: u64) {
        let mut st = self.lock();
        *st = State {
            armed: Some(Armed { trip, after }),
            ..State::default()
        };
    }

    /// Waits until the proxy tripped; panics after `limit`.
    pub fn wait_tripped(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut st = self.lock();
        while !st.tripped {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the proxy did not trip within {limit:?}");
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .expect("proxy lock")
                .0;
        }
    }

    /// Cuts every held connection and disarms; later connections pass through (or
    /// fail, if the upstream is down).
    pub fn release(&self) {
        let mut st = self.lock();
        st.released = true;
        // Disarmed: connections made from now on pass through.
        st.armed = None;
        for s in st.held.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("proxy lock")
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    // Upstream down: close the client at once, as a dead server's port would.
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut first = [0u8; 4096];
    let mut client_r = client.try_clone().expect("clone");
    let Ok(n) = client_r.read(&mut first) else {
        return;
    };
    if n == 0 {
        return;
    }
    let line_end = first[..n].iter().position(|b| *b == b'\n').unwrap_or(n);
    let line = String::from_utf8_lossy(&first[..line_end]).into_owned();
    // Presigned requests carry their signature in the query; the signer's own
    // requests to S3 sign a header instead and are never held.
    let kind = if !line.contains("X-Amz-Signature") {
        None
    } else if line.starts_with("PUT ") {
        Some(Trip::Upload)
    } else if line.starts_with("GET ") {
        Some(Trip::Download)
    } else {
        None
    };
    if kind.is_some() {
        let mut st = shared.state.lock().expect("proxy lock");
        st.held.push(client.try_clone().expect("clone"));
        st.held.push(server.try_clone().expect("clone"));
    }
    let (c2, s2) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let up_shared = shared.clone();
    let up = thread::spawn(move || pump(client_r, s2, &first[..n], kind, Trip::Upload, &up_shared));
    pump(server, c2, &[], kind, Trip::Download, &shared);
    let _ = up.join();
}

/// Copies `from` → `to`. `kind` is the connection's kind (None: never held);
/// `direction` says which trip this direction's bytes count for.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    prefix: &[u8],
    kind: Option<Trip>,
    direction: Trip,
    shared: &Shared,
) {
    let mut pending = prefix.to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if pending.is_empty() {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        if kind.is_some() && !hold_or_count(shared, kind, direction, pending.len() as u64) {
            break;
        }
        if to.write_all(&pending).is_err() {
            break;
        }
        pending.clear();
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Before forwarding `n` bytes: waits while the proxy holds; counts them when they are
/// of the armed kind. False: the connection was cut.
fn hold_or_count(shared: &Shared, kind: Option<Trip>, direction: Trip, n: u64) -> bool {
    let mut st = shared.state.lock().expect("proxy lock");
    let Some(armed) = st.armed.as_ref().map(|a| (a.trip, a.after)) else {
        return true;
    };
    if kind != Some(armed.0) {
        return true;
    }
    loop {
        if st.released {
            return false;
        }
        if !st.tripped {
            break;
        }
        st = shared.changed.wait(st).expect("proxy lock");
    }
    if direction == armed.0 {
        st.counted += n;
        if st.counted >= armed.1 {
            st.tripped = true;
            shared.changed.notify_all();
            // These bytes are not forwarded: hold from here on.
            while !st.released {
                st = shared.changed.wait(st).expect("proxy lock");
            }
            return false;
        }
    }
    true
}
