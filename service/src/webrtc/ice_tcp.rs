//! ICE-TCP (RFC 6544), passive side: the fallback that lets `kubectl port-forward pod/NAME`
//! (TCP only) carry a presenter's browser session to one pod. Each accepted connection is
//! framed as RFC 4571 says (a 16-bit big-endian length before every packet); its packets go
//! to the driver like UDP datagrams, tagged with the connection's addresses, and the driver's
//! TCP transmits come back through the connection's writer.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::driver::PeerCommand;

/// Packets queued for one connection's writer; beyond it they are dropped, as a full UDP
/// socket buffer would (media tolerates loss; a stalled TCP peer must not grow memory).
const WRITE_QUEUE: usize = 256;

/// Accept connections until the driver is gone; at most `max` open at once.
pub async fn accept(listener: TcpListener, driver: mpsc::UnboundedSender<PeerCommand>, max: usize) {
    let open = Arc::new(Semaphore::new(max));
    loop {
        let Ok((stream, remote)) = listener.accept().await else { continue };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%remote, max, "ICE-TCP: too many connections; closing one more");
            continue;
        };
        let Ok(local) = stream.local_addr() else { continue };
        let driver = driver.clone();
        if driver.is_closed() {
            return;
        }
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, local, remote, driver).await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    driver: mpsc::UnboundedSender<PeerCommand>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if driver.send(PeerCommand::TcpOpened { remote, writer: tx }).is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        // One buffer for every packet of the connection: the frame is written in one call.
        let mut framed = Vec::with_capacity(2 + 1500);
        while let Some(packet) = rx.recv().await {
            let Ok(len) = u16::try_from(packet.len()) else { continue };
            framed.clear();
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&packet);
            if write.write_all(&framed).await.is_err() {
                return;
            }
        }
    });
    let mut len = [0u8; 2];
    loop {
        if read.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        if read.read_exact(&mut packet).await.is_err() {
            break;
        }
        if driver.send(PeerCommand::TcpPacket { local, remote, packet }).is_err() {
            break;
        }
    }
    let _ = driver.send(PeerCommand::TcpClosed { remote });
    writer.abort();
}
