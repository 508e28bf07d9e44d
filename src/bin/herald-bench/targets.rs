//! The servers a run connects to: `--url` (repeated or comma-separated) parsed into
//! `host:port` pairs and resolved to IPv4 socket addresses, one per Herald node.

use std::net::{Ipv4Addr, SocketAddr};

use crate::client::Server;
use crate::scenarios::BenchResult;

/// `ws://host:port` (a path, if any, is ignored) → (host, port).
pub fn parse_url(url: &str) -> BenchResult<(String, u16)> {
    let url = url.trim();
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("--url {url}: expected ws://HOST:PORT (TLS is not supported)"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| format!("--url {url}: bad port {p:?}"))?,
        ),
        None => (authority.to_owned(), 80),
    };
    if host.is_empty() {
        return Err(format!("--url {url}: no host"));
    }
    Ok((host, port))
}

/// Every `--url` (each value may hold several, comma-separated), in order.
pub fn parse_urls(urls: &[String]) -> BenchResult<Vec<(String, u16)>> {
    let out: Vec<(String, u16)> = urls
        .iter()
        .flat_map(|u| u.split(','))
        .filter(|u| !u.trim().is_empty())
        .map(parse_url)
        .collect::<BenchResult<_>>()?;
    if out.is_empty() {
        return Err("no --url given".into());
    }
    Ok(out)
}

/// True when every server is on the loopback (then sockets are bound to 127.0.0.x).
pub fn all_loopback(targets: &[(String, u16)]) -> bool {
    targets
        .iter()
        .all(|(h, _)| h == "localhost" || h.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback()))
}

/// Resolves every server (IPv4 only: the sockets are IPv4 and bound to 127.0.0.x).
pub async fn resolve_all(targets: &[(String, u16)]) -> BenchResult<Vec<Server>> {
    let mut out = Vec::with_capacity(targets.len());
    for (host, port) in targets {
        out.push(Server {
            addr: resolve(host, *port).await?,
            authority: format!("{host}:{port}"),
        });
    }
    Ok(out)
}

async fn resolve(host: &str, port: u16) -> BenchResult<SocketAddr> {
    let addr = actix_web::rt::net::TcpStream::connect((host, port))
        .await
        .and_then(|s| s.peer_addr())
        .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
    if !addr.is_ipv4() {
        return Err(format!(
            "{host}:{port} resolved to {addr}; only IPv4 is supported"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("ws://127.0.0.1:8080").ok(),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_url("ws://localhost:9/v1/ws").ok(),
            Some(("localhost".into(), 9))
        );
        assert!(parse_url("wss://x:1").is_err());
    }

    #[test]
    fn several_urls_repeated_or_comma_separated() {
        let v = parse_urls(&[
            "ws://127.0.0.1:1,ws://127.0.0.1:2".into(),
            "ws://127.0.0.1:3".into(),
        ]);
        let ports: Vec<u16> = v.unwrap_or_default().iter().map(|t| t.1).collect();
        assert_eq!(ports, vec![1, 2, 3]);
        assert!(parse_urls(&[]).is_err());
        assert!(parse_urls(&["ws://a:1,wss://b:2".into()]).is_err());
        assert!(all_loopback(&[
            ("127.0.0.1".into(), 1),
            ("localhost".into(), 2)
        ]));
        assert!(!all_loopback(&[("10.0.0.1".into(), 1)]));
    }
}
