//! Sharding a run over servers and over bench processes.
//!
//! Every scenario numbers its connections globally (user `i` of the run), so that the same
//! plan holds whichever process opens a connection:
//!
//! - **Server**: connection `i` goes to server `i % servers` (round-robin over the `--url`s),
//!   publishers and subscribers alike.
//! - **Process**: with `--procs N`, unit `u` (a connection, or a pair in `direct`) belongs to
//!   child `(u / block) % N`, where `block` is the number of servers: each child gets whole
//!   blocks of consecutive units, so its connections are spread over every server too.
//! - **Source addresses**: child `k` binds its sockets to its own loopback addresses,
//!   127.0.0.(2 + k·A) … (1 + (k+1)·A) for `--source-addrs A`.

use std::net::{IpAddr, Ipv4Addr};

/// Which share of the run this process runs: child `index` of `count` (`count` 1: all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::SOLO
    }
}

impl Shard {
    /// The whole run in one process.
    pub const SOLO: Shard = Shard { index: 0, count: 1 };

    /// `"k/N"` (as passed to a child in `HERALD_BENCH_SHARD`).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected INDEX/COUNT"))?;
        let index: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: bad index"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: bad count"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {s:?}: index must be below count"));
        }
        Ok(Shard { index, count })
    }

    /// True in a child of `--procs` (a share of a bigger run).
    pub fn is_child(&self) -> bool {
        self.count > 1
    }

    /// True when unit `unit` belongs to this shard, with blocks of `block` units.
    pub fn owns(&self, unit: usize, block: usize) -> bool {
        (unit / block.max(1)) % self.count == self.index
    }

    /// The units of `0..n` that belong to this shard, in order.
    pub fn units(&self, n: usize, block: usize) -> Vec<usize> {
        (0..n).filter(|&u| self.owns(u, block)).collect()
    }

    /// This shard's part of a total rate: in proportion to its `mine` of `total` senders.
    pub fn rate_share(rate: f64, mine: usize, total: usize) -> f64 {
        if total == 0 {
            0.0
        } else {
            rate * mine as f64 / total as f64
        }
    }

    /// The loopback source addresses of this shard (`per` of them; none when `per` is 0).
    pub fn source_addrs(&self, per: u8) -> Result<Vec<IpAddr>, String> {
        let first = 2 + self.index * usize::from(per);
        let last = first + usize::from(per);
        if last > 255 {
            return Err(format!(
                "{} processes x {per} source addresses do not fit in 127.0.0.2-127.0.0.254",
                self.count
            ));
        }
        Ok((first..last)
            .map(|b| IpAddr::V4(Ipv4Addr::new(127, 0, 0, b as u8)))
            .collect())
    }
}

/// The server (index into the `--url` list) of global connection `i`.
pub fn server_of(i: usize, servers: usize) -> usize {
    i % servers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_shards() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        assert!(Shard::parse("5/5").is_err());
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("x").is_err());
        assert!(!Shard::SOLO.is_child());
        assert!(Shard::parse("0/2").is_ok_and(|s| s.is_child()));
    }

    #[test]
    fn every_unit_has_exactly_one_shard() {
        for count in 1..6 {
            for block in 1..4 {
                let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
                let mut seen = vec![0u32; 1000];
                for s in &shards {
                    for u in s.units(1000, block) {
                        seen[u] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "count {count} block {block}");
            }
        }
    }

    #[test]
    fn each_shard_spreads_over_every_server() {
        // 3 servers, 2 processes: both processes get connections on all three servers, and
        // the servers get equal shares overall.
        for index in 0..2 {
            let s = Shard { index, count: 2 };
            let mut per_server = [0usize; 3];
            for u in s.units(1200, 3) {
                per_server[server_of(u, 3)] += 1;
            }
            assert_eq!(per_server, [200, 200, 200]);
        }
    }

    #[test]
    fn publishers_spread_over_servers() {
        // fanout --pubs 4 over 3 servers: publishers 0..4 land on servers 0, 1, 2, 0.
        let servers: Vec<usize> = (0..4).map(|i| server_of(i, 3)).collect();
        assert_eq!(servers, vec![0, 1, 2, 0]);
    }

    #[test]
    fn rate_shares_add_up() {
        let total: f64 = [3usize, 1, 0]
            .iter()
            .map(|&m| Shard::rate_share(500.0, m, 4))
            .sum();
        assert!((total - 500.0).abs() < 1e-9);
        assert_eq!(Shard::rate_share(500.0, 1, 0), 0.0);
    }

    #[test]
    fn source_addresses_do_not_overlap() {
        let a = Shard { index: 0, count: 3 }
            .source_addrs(8)
            .unwrap_or_default();
        let b = Shard { index: 1, count: 3 }
            .source_addrs(8)
            .unwrap_or_default();
        assert_eq!(a.first(), Some(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert_eq!(b.first(), Some(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10))));
        assert!(a.iter().all(|x| !b.contains(x)));
        assert!(Shard {
            index: 40,
            count: 41
        }
        .source_addrs(8)
        .is_err());
    }
}
