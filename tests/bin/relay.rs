//! `commons-e2e-relay LISTEN DELAY_MS MARK`: the latency of the fault tests' laboratory
//! network (`commons_e2e::netns`). It accepts the TCP connections that nftables redirected
//! to LISTEN, connects to each one's original destination with the socket mark MARK (which
//! the redirect rule lets pass) and forwards the bytes both ways, each chunk DELAY_MS after
//! it was read: a delay line, not a rate limit. It runs in a node's network namespace, so the
//! far end sees the node's own address. It exits when its standard input closes, so that it
//! never outlives the test that started it. It prints `relay listening on LISTEN` once
//! ready, then `relayed DESTINATION` for each connection it forwards.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Chunks held per direction before the reader waits for the writer: bounds the memory of a
/// connection at this many reads of up to 64 KiB.
const QUEUE_CHUNKS: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [listen, delay, mark] => listen
            .parse::<SocketAddr>()
            .ok()
            .zip(delay.parse::<u64>().ok())
            .zip(mark.parse::<u32>().ok()),
        _ => None,
    };
    let Some(((listen, delay_ms), mark)) = parsed else {
        eprintln!("usage: commons-e2e-relay LISTEN_ADDR DELAY_MS SOCKET_MARK");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            println!("relay cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("relay listening on {listen}");
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let delay = Duration::from_millis(delay_ms);
    for inbound in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(e) = relay(inbound, delay, mark) {
                eprintln!("commons-e2e-relay: {e}");
            }
        });
    }
}

fn relay(inbound: TcpStream, delay: Duration, mark: u32) -> std::io::Result<()> {
    let destination = SockRef::from(&inbound)
        .original_dst_v4()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("no IPv4 original destination"))?;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_mark(mark)?;
    socket.connect_timeout(&destination.into(), Duration::from_secs(10))?;
    let outbound: TcpStream = socket.into();
    // One line per connection: the lab counts them, to show that traffic takes this path.
    println!("relayed {destination}");
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    delay_line(inbound.try_clone()?, outbound.try_clone()?, delay);
    delay_line(outbound, inbound, delay);
    Ok(())
}

/// Forwards what `from` sends to `to`, each chunk `delay` after it was read; on the end of
/// either side, shuts the other down so that both threads end.
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let reader_end = from.try_clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                if let Ok(from) = &reader_end {
                    let _ = from.shutdown(Shutdown::Both);
                }
                return;
            }
        }
        // The reader saw the end of its side: pass it on once the delayed bytes are out.
        let _ = to.shutdown(Shutdown::Write);
    });
}
