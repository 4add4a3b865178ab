//! Running under a service manager: systemd's readiness protocol (`sd_notify`), so a unit
//! of `Type=notify` is "started" only once the RPC server answers and dependent units (a
//! monitoring job, a proposal bot) never race the node's start.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `NOTIFY_SOCKET`; a name starting with `@` is in Linux's abstract namespace. Without the
//! variable (not started by systemd) every call does nothing. The library libsystemd is
//! not needed for this, and linking it would tie the binary to one init system.

use std::io;
use std::path::PathBuf;

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (lines such as `READY=1`, `STATUS=...`, `STOPPING=1`) to the service
/// manager. `Ok(false)` when there is none to tell.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) => notify_socket(&PathBuf::from(socket), state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket` (a path, or `@name` for an abstract
/// socket).
pub fn notify_socket(socket: &std::path::Path, state: &str) -> io::Result<()> {
    let datagram = std::os::unix::net::UnixDatagram::unbound()?;
    let name = socket.as_os_str().as_encoded_bytes();
    match name.first() {
        #[cfg(target_os = "linux")]
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name[1..])?;
            datagram.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some(b'/') => {
            datagram.send_to(state.as_bytes(), socket)?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{NOTIFY_SOCKET}={} is neither a path nor an abstract socket name",
                    socket.display()
                ),
            ));
        }
    }
    Ok(())
}

/// [`notify`], with a failure logged rather than returned: a node that cannot reach its
/// service manager still serves its peers (systemd then reports the start as timed out).
pub fn notify_or_warn(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        notify_socket(&path, "READY=1\nSTATUS=serving").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("commons-notify-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
            let abstract_receiver = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
            abstract_receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            notify_socket(std::path::Path::new(&format!("@{name}")), "STOPPING=1").unwrap();
            let n = abstract_receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"STOPPING=1");
        }
    }

    #[test]
    fn a_name_that_is_not_a_socket_is_an_error_naming_it() {
        let err = notify_socket(std::path::Path::new("relative/name"), "READY=1").unwrap_err();
        assert!(err.to_string().contains("relative/name"), "{err}");
    }
}
