//! The one task that owns the pod's UDP socket and every peer connection. str0m is sans-IO:
//! this loop feeds it packets and time, and carries out what it asks (send a datagram,
//! wake at a deadline, an event). Publishers' frames go to their pipelines; the pipelines'
//! encoded frames come back here to be written to the publisher and its viewers.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::pipeline::{self, Incoming};
use super::{OfferError, Session};
use crate::app::AppState;

type Reply<T> = oneshot::Sender<T>;

/// What the HTTP layer and the pipelines ask of the driver.
pub enum PeerCommand {
    Publish {
        offer: SdpOffer,
        session: Arc<Session>,
        reply: Reply<Result<SdpAnswer, OfferError>>,
    },
    View {
        offer: SdpOffer,
        session: Arc<Session>,
        viewer: String,
        reply: Reply<Result<SdpAnswer, OfferError>>,
    },
    End {
        session: String,
        viewer: Option<String>,
        reply: Reply<bool>,
    },
    EndAll {
        reply: Reply<usize>,
    },
    /// A processed, encoded frame of `session`, for its publisher (sendrecv) and viewers.
    Processed {
        session: String,
        frame: Arc<[u8]>,
        rtp_time: MediaTime,
        arrived: Instant,
    },
    /// The decoder lost its reference: ask the publisher for a key frame.
    NeedKeyframe {
        session: String,
    },
    /// An ICE-TCP connection ([`super::ice_tcp`]): opened, a packet from it, closed.
    TcpOpened {
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpPacket {
        local: SocketAddr,
        remote: SocketAddr,
        packet: Vec<u8>,
    },
    TcpClosed {
        remote: SocketAddr,
    },
}

enum Role {
    Publisher { ingress: mpsc::Sender<Incoming> },
    Viewer { id: String },
}

struct Peer {
    rtc: Rtc,
    session: Arc<Session>,
    role: Role,
    /// Where the camera arrives (publisher) and where processed video is sent.
    mid_in: Option<Mid>,
    mid_out: Option<Mid>,
    last_keyframe_ask: Option<Instant>,
    opened: Instant,
    connected: bool,
    /// When str0m next wants the time (its last `Output::Timeout`).
    wake: Instant,
}

/// An answered offer whose peer never completes ICE (a client that gave up, a browser that
/// cannot reach the candidate) gives its session slot back after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where peers reach this pod: the UDP candidate, and the passive ICE-TCP ones (the pod's
/// address and, for `kubectl port-forward`, loopback).
pub struct Candidates {
    pub udp: SocketAddr,
    pub tcp: Vec<SocketAddr>,
}

pub struct Driver {
    socket: UdpSocket,
    candidates: Candidates,
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    commands: mpsc::UnboundedReceiver<PeerCommand>,
    to_self: mpsc::UnboundedSender<PeerCommand>,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    app: AppState,
    max_kbps: u32,
    peers: Vec<Peer>,
}

impl Driver {
    pub fn new(
        socket: UdpSocket,
        candidates: Candidates,
        commands: mpsc::UnboundedReceiver<PeerCommand>,
        to_self: mpsc::UnboundedSender<PeerCommand>,
        sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
        app: AppState,
        max_kbps: u32,
    ) -> Self {
        Driver {
            socket,
            candidates,
            tcp: HashMap::new(),
            commands,
            to_self,
            sessions,
            app,
            max_kbps,
            peers: Vec::new(),
        }
    }

    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self.drive().await;
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok((n, source)) => {
                        let destination = self.candidates.udp;
                        self.receive(Protocol::Udp, &buf[..n], source, destination)
                    }
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket read"),
                },
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            let now = Instant::now();
            for peer in &mut self.peers {
                if !peer.connected && peer.rtc.is_alive() && now.duration_since(peer.opened) > CONNECT_TIMEOUT {
                    tracing::info!(session = %peer.session.id, "ICE did not connect within {CONNECT_TIMEOUT:?}; ending the session");
                    peer.rtc.disconnect();
                }
                // Only the peers whose time has come: with many sessions, most are waiting.
                if peer.rtc.is_alive() && peer.wake <= now {
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                        tracing::info!(session = %peer.session.id, error = %e, "peer failed");
                        peer.rtc.disconnect();
                    }
                }
            }
        }
    }

    fn receive(&mut self, proto: Protocol, data: &[u8], source: SocketAddr, destination: SocketAddr) {
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(Instant::now(), Receive { proto, source, destination, contents });
        // One socket for every session: the peer whose ICE credentials or DTLS/SRTP
        // addresses match takes the packet.
        if let Some(peer) = self.peers.iter_mut().find(|p| p.rtc.is_alive() && p.rtc.accepts(&input)) {
            if let Err(e) = peer.rtc.handle_input(input) {
                tracing::info!(session = %peer.session.id, error = %e, "peer failed on input");
                peer.rtc.disconnect();
            }
        }
    }

    /// Carry out what every peer has to say; returns when the next peer needs waking.
    async fn drive(&mut self) -> Instant {
        // With no peer there is nothing to time: wait for a packet or a command (a pod
        // without sessions, a rehearsal replica, never wakes for WebRTC).
        let idle = if self.peers.is_empty() { Duration::from_secs(3600) } else { Duration::from_millis(100) };
        let mut next = Instant::now() + idle;
        let mut i = 0;
        while i < self.peers.len() {
            loop {
                let peer = &mut self.peers[i];
                if !peer.rtc.is_alive() {
                    break;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        peer.wake = t;
                        next = next.min(t);
                        break;
                    }
                    Ok(Output::Transmit(t)) if t.proto == Protocol::Tcp => {
                        // A full or closed connection loses the packet, as UDP would.
                        if let Some(writer) = self.tcp.get(&t.destination) {
                            let _ = writer.try_send(t.contents.to_vec());
                        }
                    }
                    Ok(Output::Transmit(t)) => {
                        if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                            tracing::debug!(error = %e, to = %t.destination, "WebRTC send");
                        }
                    }
                    Ok(Output::Event(event)) => self.event(i, event),
                    Err(e) => {
                        tracing::info!(session = %peer.session.id, error = %e, "peer failed");
                        peer.rtc.disconnect();
                    }
                }
            }
            if self.peers[i].rtc.is_alive() {
                i += 1;
            } else {
                let peer = self.peers.swap_remove(i);
                self.closed(peer);
            }
        }
        next
    }

    fn event(&mut self, i: usize, event: Event) {
        let webrtc = self.app.metrics().webrtc();
        let peer = &mut self.peers[i];
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => peer.rtc.disconnect(),
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed) => {
                peer.connected = true
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                let publisher = matches!(peer.role, Role::Publisher { .. });
                if publisher && m.direction.is_receiving() && peer.mid_in.is_none() {
                    peer.mid_in = Some(m.mid);
                }
                if m.direction.is_sending() && peer.mid_out.is_none() {
                    peer.mid_out = Some(m.mid);
                }
            }
            Event::MediaData(data) => {
                let Role::Publisher { ingress } = &peer.role else { return };
                if Some(data.mid) != peer.mid_in {
                    return;
                }
                peer.session.frames_in.fetch_add(1, Ordering::Relaxed);
                webrtc.frame_in(data.data.len());
                let incoming = Incoming {
                    codec: data.params.spec().codec,
                    data: data.data,
                    rtp_time: data.time,
                    arrived: Instant::now(),
                    contiguous: data.contiguous,
                };
                let lost = !incoming.contiguous;
                // Bounded: a pipeline this far behind drops the frame (counted) and, having
                // lost a reference, needs a key frame.
                if ingress.try_send(incoming).is_err() {
                    peer.session.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    webrtc.frame_dropped();
                    ask_keyframe(peer);
                } else if lost {
                    ask_keyframe(peer);
                }
            }
            Event::KeyframeRequest(_) => peer.session.force_keyframe.store(true, Ordering::Relaxed),
            // TWCC (browsers) or the receiver's REMB (aiortc): what the path to it carries.
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. }) => {
                let kbps = (estimate.as_u64() / 1000).clamp(100, self.max_kbps as u64) as u32;
                peer.session.target_kbps.store(kbps, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn command(&mut self, command: PeerCommand) {
        match command {
            PeerCommand::Publish { offer, session, reply } => {
                let (tx, rx) = mpsc::channel(pipeline::INGRESS_FRAMES);
                let result =
                    self.open(offer, session.clone(), Role::Publisher { ingress: tx }, Direction::is_receiving);
                if result.is_ok() {
                    self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(session.id.clone(), session.clone());
                    self.app.metrics().webrtc().session_started("publisher");
                    tokio::spawn(pipeline::run(session, rx, self.app.clone(), self.to_self.clone()));
                }
                let _ = reply.send(result);
            }
            PeerCommand::View { offer, session, viewer, reply } => {
                let result = self.open(offer, session.clone(), Role::Viewer { id: viewer }, Direction::is_sending);
                if result.is_ok() {
                    session.viewers.fetch_add(1, Ordering::SeqCst);
                    session.force_keyframe.store(true, Ordering::Relaxed);
                    self.app.metrics().webrtc().session_started("viewer");
                }
                let _ = reply.send(result);
            }
            PeerCommand::End { session, viewer, reply } => {
                let mut found = false;
                for peer in &mut self.peers {
                    let matches = peer.session.id == session
                        && match (&viewer, &peer.role) {
                            (None, _) => true,
                            (Some(v), Role::Viewer { id }) => v == id,
                            (Some(_), Role::Publisher { .. }) => false,
                        };
                    if matches {
                        found = true;
                        peer.rtc.disconnect();
                    }
                }
                let _ = reply.send(found);
            }
            PeerCommand::EndAll { reply } => {
                let mut n = 0;
                for peer in &mut self.peers {
                    n += matches!(peer.role, Role::Publisher { .. }) as usize;
                    peer.rtc.disconnect();
                }
                let _ = reply.send(n);
            }
            PeerCommand::Processed { session, frame, rtp_time, arrived } => {
                self.send_processed(&session, frame, rtp_time, arrived)
            }
            PeerCommand::TcpOpened { remote, writer } => {
                self.tcp.insert(remote, writer);
            }
            PeerCommand::TcpPacket { local, remote, packet } => {
                // The candidate the connection arrived at: a port-forward arrives on loopback.
                let destination = self
                    .candidates
                    .tcp
                    .iter()
                    .copied()
                    .find(|c| c.port() == local.port() && c.ip().is_loopback() == local.ip().is_loopback())
                    .unwrap_or(local);
                self.receive(Protocol::Tcp, &packet, remote, destination);
            }
            PeerCommand::TcpClosed { remote } => {
                self.tcp.remove(&remote);
            }
            PeerCommand::NeedKeyframe { session } => {
                if let Some(peer) =
                    self.peers.iter_mut().find(|p| p.session.id == session && matches!(p.role, Role::Publisher { .. }))
                {
                    ask_keyframe(peer);
                }
            }
        }
    }

    /// A new peer connection for `offer`; `wanted` is the direction of video this side
    /// must have in the answer (receiving for a publisher, sending for a viewer).
    fn open(
        &mut self,
        offer: SdpOffer,
        session: Arc<Session>,
        role: Role,
        wanted: fn(&Direction) -> bool,
    ) -> Result<SdpAnswer, OfferError> {
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_vp8(true)
            .enable_h264(true)
            .enable_bwe(Some(Bitrate::kbps(600)))
            .build(now);
        rtc.bwe().set_desired_bitrate(Bitrate::kbps(self.max_kbps as u64));
        let udp = self.candidates.udp;
        let candidate =
            Candidate::host(udp, "udp").map_err(|e| OfferError::Unavailable(format!("host candidate {udp}: {e}")))?;
        rtc.add_local_candidate(candidate);
        for &addr in &self.candidates.tcp {
            let candidate = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| OfferError::Unavailable(format!("ICE-TCP candidate {addr}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::BadSdp(format!("the offer could not be accepted: {e}")))?;
        let video: Vec<(Mid, Direction)> = answer
            .media_lines
            .iter()
            .filter(|m| m.typ.to_string() == "video" && !m.disabled)
            .map(|m| (m.mid(), m.direction()))
            .collect();
        if !video.iter().any(|(_, d)| wanted(d)) {
            let what = match role {
                Role::Publisher { .. } => "a publisher's offer must send video (sendrecv or sendonly) in VP8",
                Role::Viewer { .. } => "a viewer's offer must receive video (recvonly) in VP8",
            };
            return Err(OfferError::NoCodec(format!("{what}; the answer's video lines: {video:?}")));
        }
        self.peers.push(Peer {
            rtc,
            session,
            role,
            mid_in: None,
            mid_out: None,
            last_keyframe_ask: None,
            opened: now,
            connected: false,
            wake: now,
        });
        Ok(answer)
    }

    fn send_processed(&mut self, session: &str, frame: Arc<[u8]>, rtp_time: MediaTime, arrived: Instant) {
        let webrtc = self.app.metrics().webrtc();
        let now = Instant::now();
        let mut written = false;
        for peer in self.peers.iter_mut().filter(|p| p.session.id == session && p.rtc.is_alive()) {
            let Some(mid) = peer.mid_out else { continue };
            let Some(writer) = peer.rtc.writer(mid) else { continue };
            let Some(pt) = writer.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt()) else {
                continue;
            };
            match writer.write(pt, now, rtp_time, frame.clone()) {
                Ok(()) => {
                    webrtc.bytes_out(frame.len());
                    written = true;
                }
                Err(e) => {
                    tracing::info!(session, error = %e, "writing processed video failed");
                    peer.rtc.disconnect();
                }
            }
        }
        if written {
            if let Some(s) = self.peers.iter().find(|p| p.session.id == session).map(|p| &p.session) {
                s.frames_out.fetch_add(1, Ordering::Relaxed);
                let latency = arrived.elapsed();
                s.latency.lock().unwrap_or_else(|p| p.into_inner()).record(latency, Instant::now());
                webrtc.frame_out(latency);
            }
        }
    }

    fn closed(&mut self, peer: Peer) {
        let webrtc = self.app.metrics().webrtc();
        match peer.role {
            Role::Publisher { .. } => {
                self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer.session.id);
                webrtc.session_ended("publisher");
                // Its viewers have nothing more to watch.
                for other in self.peers.iter_mut().filter(|p| p.session.id == peer.session.id) {
                    other.rtc.disconnect();
                }
                tracing::info!(session = %peer.session.id, frames_in = peer.session.frames_in.load(Ordering::Relaxed),
                    frames_out = peer.session.frames_out.load(Ordering::Relaxed),
                    dropped = peer.session.frames_dropped.load(Ordering::Relaxed), "session ended");
            }
            Role::Viewer { .. } => {
                peer.session.viewers.fetch_sub(1, Ordering::SeqCst);
                webrtc.session_ended("viewer");
            }
        }
    }
}

/// Ask the publisher for a key frame (PLI), at most once a second.
fn ask_keyframe(peer: &mut Peer) {
    if peer.last_keyframe_ask.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        return;
    }
    let Some(mid) = peer.mid_in else { return };
    if let Some(mut writer) = peer.rtc.writer(mid) {
        if writer.request_keyframe(None, KeyframeRequestKind::Pli).is_ok() {
            peer.last_keyframe_ask = Some(Instant::now());
        }
    }
}
