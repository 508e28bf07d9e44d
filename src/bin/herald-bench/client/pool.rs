//! Where sockets go and what they count: the servers (one or several nodes, chosen by index
//! or round-robin), the loopback source addresses handed out round-robin, the awc client for
//! REST calls, and this thread's network counters ([`NetStats`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Network-level counters of this process (one thread).
#[derive(Default)]
pub struct NetStats {
    /// Sockets whose driver is running.
    pub live: Cell<usize>,
    /// Text frames received (all connections).
    pub frames_in: Cell<u64>,
    /// Bytes of text frames received.
    pub bytes_in: Cell<u64>,
    /// Close codes the server sent without being asked (e.g. 4008 slow consumer).
    pub server_closes: RefCell<BTreeMap<String, u64>>,
    /// Connections that ended on a protocol or I/O error, by kind.
    pub errors: RefCell<BTreeMap<String, u64>>,
}

thread_local! {
    static NET: NetStats = NetStats::default();
}

/// Runs `f` with this thread's network counters.
pub fn net<R>(f: impl FnOnce(&NetStats) -> R) -> R {
    NET.with(f)
}

pub(super) fn bump(map: &RefCell<BTreeMap<String, u64>>, key: String) {
    *map.borrow_mut().entry(key).or_default() += 1;
}

/// One server (a Herald node) the bench connects to.
#[derive(Clone, Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// `host:port` for the `Host` header.
    pub authority: String,
}

/// Where and how sockets connect: the servers, the source addresses (round-robin) and an
/// awc client for REST calls.
pub struct ClientPool {
    /// At least one.
    pub servers: Vec<Server>,
    pub addrs: Vec<Option<IpAddr>>,
    next: Cell<usize>,
    next_server: Cell<usize>,
    http: awc::Client,
}

impl ClientPool {
    /// `addrs` empty: let the kernel choose the source address. `servers` must not be empty.
    pub fn new(servers: Vec<Server>, addrs: Vec<IpAddr>, timeout: Duration) -> Self {
        let addrs: Vec<Option<IpAddr>> = if addrs.is_empty() {
            vec![None]
        } else {
            addrs.into_iter().map(Some).collect()
        };
        let http = awc::Client::builder()
            .connector(awc::Connector::new().limit(256).timeout(timeout))
            .timeout(timeout)
            .finish();
        ClientPool {
            servers,
            addrs,
            next: Cell::new(0),
            next_server: Cell::new(0),
            http,
        }
    }

    /// The next source address.
    pub(super) fn next_addr(&self) -> Option<IpAddr> {
        let i = self.next.get();
        self.next.set((i + 1) % self.addrs.len());
        self.addrs[i]
    }

    /// The server with this index (modulo the number of servers).
    pub fn server(&self, index: usize) -> &Server {
        &self.servers[index % self.servers.len()]
    }

    /// The index of the next server, round-robin (for connections without a planned server).
    pub fn next_server(&self) -> usize {
        let i = self.next_server.get();
        self.next_server.set((i + 1) % self.servers.len());
        i
    }

    /// The awc client for REST calls.
    pub fn http(&self) -> &awc::Client {
        &self.http
    }
}
