//! Connection caps of the API's listeners (plain and TLS together): at most `max_total` open
//! connections, and at most `max_per_ip` from one address (IPv6: one /64, which one host
//! usually holds whole). A connection over a cap is closed at once, before hyper reads a byte.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts behind both caps.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its places.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapHit {
    Total,
    PerIp,
}

/// The address as counted: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6 by its /64.
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

impl ConnCaps {
    /// Caps of `max_total` connections and `max_per_ip` per address (0: no per-address cap).
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a connection from `ip`, or which cap is reached.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, CapHit> {
        let ip = counted(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.max_total {
            return Err(CapHit::Total);
        }
        let n = open.1.entry(ip).or_insert(0);
        if self.max_per_ip > 0 && *n >= self.max_per_ip {
            return Err(CapHit::PerIp);
        }
        *n += 1;
        open.0 += 1;
        Ok(ConnSlot {
            caps: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Lets a repeated log line through at most once a second.
#[derive(Debug, Default)]
pub(crate) struct EverySecond(Option<std::time::Instant>);

impl EverySecond {
    /// Whether a line may be written now.
    pub(crate) fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .0
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_free_their_places() {
        let caps = ConnCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.acquire(a).unwrap();
        let _a2 = caps.acquire(a).unwrap();
        assert_eq!(caps.acquire(a).unwrap_err(), CapHit::PerIp);
        let _b1 = caps.acquire(b).unwrap();
        assert_eq!(caps.acquire(b).unwrap_err(), CapHit::Total);
        drop(a1);
        let _a3 = caps.acquire(a).unwrap();
        // One /64 is one address; IPv4-mapped IPv6 is IPv4.
        let caps = ConnCaps::new(10, 1);
        let _x = caps.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(caps.acquire("2001:db8::2".parse().unwrap()).is_err());
        assert!(caps.acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _y = caps.acquire(a).unwrap();
        assert!(caps.acquire("::ffff:10.0.0.1".parse().unwrap()).is_err());
        // Every place is given back: the map forgets addresses at zero.
        drop((_x, _y));
        assert!(caps.open.lock().unwrap().1.is_empty());
    }
}
