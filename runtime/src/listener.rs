//! Listening TCP sockets for Sluice's servers (the admin endpoint, the
//! `http` and `syslog` sources), with the longest accept queue the kernel
//! allows.
//!
//! Connections a server does not accept at once wait in that queue: the
//! `http` source and the admin endpoint accept only while a connection
//! slot is free, and the `syslog` source stops accepting while its
//! pipeline pushes back. The standard library (and tokio) ask for a queue
//! of 128, and a burst of clients arriving then lost connections: SYNs
//! dropped once the queue was full, and connections reset whose SYN cookie
//! came back to a full queue. The queue costs nothing until clients wait
//! in it.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for. Linux caps it at `net.core.somaxconn`
/// (4096 by default since Linux 5.4), so this means "as long as allowed".
const BACKLOG: u32 = 65_535;

/// Binds `addr` with the longest accept queue the kernel allows.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server binds its port again while old connections of
    // it linger in TIME_WAIT, as every server does.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
