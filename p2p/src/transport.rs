//! TCP whose outbound connections can leave from a chosen local address.
//!
//! libp2p's TCP transport lets the kernel pick the source address of a dial (or reuses the
//! listen port on the unspecified address). On a host with several addresses that makes
//! peers observe, and attest, an address the node does not listen on; on one machine's
//! loopback range every node would appear as 127.0.0.1. This wrapper binds each dial to the
//! configured source address when it can reach the destination from there, and otherwise
//! leaves the dial to libp2p.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use libp2p::core::Transport;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::{Multiaddr, tcp};

/// TCP on tokio with an optional source address for dials.
pub(crate) struct SourceBoundTcp {
    inner: tcp::tokio::Transport,
    source_ip: Option<IpAddr>,
}

impl SourceBoundTcp {
    pub(crate) fn new(config: tcp::Config, source_ip: Option<IpAddr>) -> Self {
        SourceBoundTcp {
            inner: tcp::tokio::Transport::new(config),
            source_ip,
        }
    }

    /// The source address to bind a dial to `destination` to, if one is set and can reach it:
    /// same family, and loopback only towards loopback.
    fn source_for(&self, destination: &IpAddr) -> Option<IpAddr> {
        let source = self.source_ip?;
        let compatible = source.is_ipv4() == destination.is_ipv4()
            && source.is_loopback() == destination.is_loopback()
            && !source.is_unspecified();
        compatible.then_some(source)
    }
}

/// The TCP socket address of `/ip4|ip6/.../tcp/...` (a trailing `/p2p/...` is allowed).
fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(a) if ip.is_none() => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) if ip.is_none() => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) if port.is_none() && ip.is_some() => port = Some(p),
            Protocol::P2p(_) => {}
            _ => return None,
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

impl Transport for SourceBoundTcp {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = <tcp::tokio::Transport as Transport>::ListenerUpgrade;
    type Dial = Pin<Box<dyn Future<Output = io::Result<Self::Output>> + Send>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let target = socket_addr(&addr);
        let Some((target, source)) = target.and_then(|t| self.source_for(&t.ip()).map(|s| (t, s)))
        else {
            return self.inner.dial(addr, opts);
        };
        if target.port() == 0 || target.ip().is_unspecified() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        Ok(async move {
            let socket = match target {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::tokio::TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_socket_addresses() {
        let addr: Multiaddr =
            "/ip4/127.0.0.5/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap();
        assert_eq!(socket_addr(&addr), Some("127.0.0.5:4001".parse().unwrap()));
        let udp: Multiaddr = "/ip4/127.0.0.5/udp/4001".parse().unwrap();
        assert_eq!(socket_addr(&udp), None);
    }

    #[test]
    fn binds_only_where_the_source_can_reach_the_destination() {
        let t = SourceBoundTcp::new(tcp::Config::default(), Some("127.0.0.5".parse().unwrap()));
        assert_eq!(
            t.source_for(&"127.0.0.9".parse().unwrap()),
            Some("127.0.0.5".parse().unwrap())
        );
        assert_eq!(t.source_for(&"198.51.100.1".parse().unwrap()), None);
        assert_eq!(t.source_for(&"::1".parse().unwrap()), None);
        let unbound = SourceBoundTcp::new(tcp::Config::default(), None);
        assert_eq!(unbound.source_for(&"127.0.0.9".parse().unwrap()), None);
    }
}
