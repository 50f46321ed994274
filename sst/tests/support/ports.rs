//! Loopback ports for the node processes a test starts, claimed so that nothing else takes
//! one between the claim and the node's bind (or between a kill and the restart).
//!
//! A port comes from below the kernel's ephemeral range, which `bind(port 0)` and the source
//! ports of outgoing connections are drawn from, so no other test's free-port probe and no
//! connection can land on it. The claim itself is a UDP socket bound to the same port number
//! on loopback, held as long as the [`Port`] lives: UDP and TCP ports are separate, so the
//! node can bind the TCP port while another claim of that number (any test process on the
//! machine, any worktree) fails to bind the UDP one; the kernel drops it when the process
//! dies, so a crashed run leaves no claim behind.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Lowest port handed out.
const FIRST: u16 = 20_000;
/// Fewest ports a range must offer to be used.
const MIN_PORTS: u16 = 1_000;
/// Longest wait for a loopback connection probe (a refusal is immediate).
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A loopback TCP address claimed for this test process until dropped.
#[derive(Debug)]
pub struct Port {
    addr: SocketAddr,
    _claim: UdpSocket,
}

impl Port {
    /// The claimed address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Claims a free loopback TCP port: not claimed by any other test process or thread,
/// outside the ephemeral range, and not listened on right now.
pub fn claim() -> anyhow::Result<Port> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let range = candidates();
    let len = u64::from(range.end - range.start);
    // Processes start at different points (pid), threads of one process walk on (counter).
    let start = u64::from(std::process::id()).wrapping_mul(7_919)
        + NEXT.fetch_add(1, Ordering::Relaxed) * 97;
    for i in 0..len {
        let offset = u16::try_from((start + i) % len)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, range.start + offset));
        // Bound by another claim (or anything else): not ours.
        let Ok(claim) = UdpSocket::bind(addr) else {
            continue;
        };
        // Something that takes no claims (a server on a fixed port) may listen there.
        // Probed by connecting, not by binding: a probe listener could be inherited by a
        // child another thread forks at that moment and stay bound until it execs.
        let refused = matches!(
            TcpStream::connect_timeout(&addr, PROBE_TIMEOUT),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        );
        if refused {
            return Ok(Port {
                addr,
                _claim: claim,
            });
        }
    }
    anyhow::bail!("no free loopback port in {range:?}: every one claimed or listened on")
}

/// Ports below the ephemeral range (Linux: `ip_local_port_range`; elsewhere the IANA range
/// from 49152), or above it when too few lie below.
fn candidates() -> Range<u16> {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((49_152, 65_535));
    if low >= FIRST.saturating_add(MIN_PORTS) {
        FIRST..low
    } else {
        high.saturating_add(1).max(FIRST)..u16::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Claims differ while held, lie outside the ephemeral range and can be bound; a held
    /// claim's port is not claimed again.
    #[test]
    fn held_claims_are_distinct_bindable_and_exclusive() -> anyhow::Result<()> {
        let claims = (0..8)
            .map(|_| claim())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let range = candidates();
        let mut ports: Vec<u16> = claims.iter().map(|c| c.addr().port()).collect();
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "{ports:?} in {range:?}"
        );
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), claims.len(), "two claims of one port");
        for c in &claims {
            TcpListener::bind(c.addr())?;
            assert!(
                UdpSocket::bind(c.addr()).is_err(),
                "{} claimed twice",
                c.addr()
            );
        }
        Ok(())
    }
}
