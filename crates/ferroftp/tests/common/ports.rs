//! Free loopback ports for listeners and passive ranges.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

/// A loopback port free just now (from the ephemeral range: for a listener the server binds at
/// once, not for a passive range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first of `n` consecutive ports free now on 127.0.0.1, below the ephemeral range: see
/// [`free_port_range_on`].
pub fn free_port_range(n: u16) -> u16 {
    free_port_range_on(Ipv4Addr::LOCALHOST, n)
}

/// The first of `n` consecutive ports that are free now on `ip` and lie below the kernel's
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`): a port probed free and then
/// released inside that range can be given to any test's outgoing connection before the
/// server binds it, one below it only to an explicit bind. Blocks are handed out one after
/// the other from a random start, so that tests of one binary never get the same block and
/// binaries running at once rarely do; a caller whose later bind still fails should pick
/// another block, not unwrap.
pub fn free_port_range_on(ip: Ipv4Addr, n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Above the usual service ports; if the ephemeral range starts too low to leave room,
    // any unprivileged block is the best that can be done.
    let (floor, ceiling) = if ephemeral_low > 10_000 + n {
        (10_000, ephemeral_low - n)
    } else {
        (1024, u16::MAX - n)
    };
    let random = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let start = floor + (random % u64::from(ceiling - floor)) as u16;
    let _ = NEXT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..1000 {
        let base = NEXT.fetch_add(n + 3, Ordering::SeqCst);
        if base < floor || base > ceiling {
            NEXT.store(floor, Ordering::SeqCst);
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map(|p| TcpListener::bind((ip, p)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free block of {n} ports below the ephemeral range on {ip}");
}
