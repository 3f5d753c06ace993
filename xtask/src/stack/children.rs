//! What the stack's child processes share: loopback ports, random secrets, their log
//! filter.

use std::net::TcpListener;

use anyhow::{Result, bail};

/// A free loopback port for a child to listen on. Picked at random *below* the
/// kernel's ephemeral range (32768 and up on Linux): a port from that range, even
/// one just released, can be taken at any moment as the local end of some outgoing
/// connection (every test opens many), and Garage would then die on bind.
///
/// A port is never handed out twice by one process: stacks started at once by
/// parallel tests would otherwise both see a port free before either child binds
/// it, and the loser can die *after* it was found ready (a server may bind one port
/// after another already answers), which no start-up retry catches: seen as
/// "Connection refused" from Garage on the first request of a signer test. Other processes'
/// picks can still collide; a child that finds its port taken during start-up is
/// started again on new ports (see [`port_taken`]).
pub(super) fn free_port() -> Result<u16> {
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..200 {
        let port = rand::random_range(RANGE);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port in {RANGE:?} after 200 tries")
}

/// True when a child failed because its port was taken (see [`free_port`]); the log
/// tail is part of the error.
pub(super) fn port_taken(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Address already in use") || text.contains("AddrInUse")
}

pub(super) fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// `RUST_LOG` of the signer and the shim: `BMAT_STACK_LOG`, default `info`.
pub(super) fn child_log_filter() -> String {
    non_empty_var("BMAT_STACK_LOG").unwrap_or_else(|| "info".to_owned())
}

pub(super) fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
