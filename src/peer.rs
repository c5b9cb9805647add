//! The WebRTC layer: one peer connection with one reliable, ordered data channel.
//!
//! Set-up choices, each measured or required:
//! - UDP sockets get 4 MiB send and receive buffers (default buffers drop packets at speed);
//! - the SCTP maximum message size is 256 KiB, so one frame is one message;
//! - the SCTP receive window (a_rwnd) and the sender's data-channel send buffer are sized for
//!   mp's widest flow-control window (16 MiB, `wide-window`), so on a long path SCTP never caps
//!   what mp's window allows (the webrtc-rs default, 1 MiB, is 10 MB/s at 100 ms); mp's window,
//!   which starts at 4 MiB and grows only on long paths, is what bounds the memory of both;
//! - ICE uses only the addresses given with `--bind` (default: every interface, IPv4 and IPv6),
//!   never multicast DNS, and only the STUN and TURN servers it is given (no public default);
//!   `--relay` restricts it to relay candidates;
//! - ICE checks run every 20 ms instead of 200 ms, which cuts the time to the first byte; a
//!   pair learnt from the peer's checks (peer-reflexive) may be nominated at once, one with its
//!   public address (server-reflexive) 100 ms after ICE started (webrtc-rs: 1 s and 0.5 s),
//!   a relayed one after 2 s, or at once with `--relay`;
//! - SCTP packets are sized for the path: they start at 1191 bytes, which any path carries,
//!   and SCTP's path MTU discovery (RFC 8899 probes, vendor/rtc-sctp) raises them to what the
//!   path carries, up to an Ethernet path's 1432 (17% fewer packets than at 1191); 16,000
//!   bytes when ICE is bound to loopback only (both ends on this machine); `MP_SCTP_MTU`
//!   replaces the starting size;
//! - once open, the certificate the peer presented must match the fingerprint of its sealed
//!   SDP (checked again here, whatever webrtc-rs checked).
//!
//! Candidates travel inside the sealed SDP, or one by one after it when both sides trickle
//! ([`Peer::take_candidates`], [`RemoteCandidates`]); the engines decide which.
//!
//! This is the only module that names a webrtc-rs type: the rest of `mp` sees a [`Peer`] (SDPs
//! in and out) and, once connected, a [`Link`] that moves frames.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceCandidateType, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

use bytes::BytesMut;
use webrtc::data_channel::DataChannelEvent;

use crate::error::{Failure, Kind};
use crate::protocol::frame;
use crate::protocol::message::Candidate;
use crate::rendezvous::IceServer;

/// UDP socket buffer size (send and receive).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Bytes the sender may have handed to SCTP but not yet had acknowledged: mp's widest window
/// and two frames. mp's own window keeps it lower unless the path needs it.
pub const SEND_BUFFER_LIMIT: usize = frame::WIDE_WINDOW as usize + 2 * frame::MAX_MESSAGE;
/// The SCTP receive window this side announces (a_rwnd): room for everything mp's widest
/// window lets the other side have in flight, so SCTP never caps it. Memory is taken only for
/// what arrived and was not yet read (behind a lost packet, at most that window).
pub const SCTP_RECEIVE_WINDOW: u32 = SEND_BUFFER_LIMIT as u32;
/// SCTP packet budget on a real network: webrtc-rs's default, which fits a TURN-relayed IPv6
/// path with the minimum MTU of 1280 bytes.
pub const DEFAULT_SCTP_MTU: u32 = 1191;
/// SCTP packet budget when both ends are on this machine (ICE bound to loopback only): the
/// path's MTU is 64 KiB, and one DTLS record carries at most 16 KiB. Fewer, larger packets
/// halve the CPU per byte.
pub const LOOPBACK_SCTP_MTU: u32 = 16_000;
/// The largest SCTP packet that path MTU discovery tries: what fits a 1500-byte Ethernet MTU
/// after IPv4 (20 bytes), UDP (8) and a DTLS 1.2 AES-GCM record's header, explicit nonce and
/// tag (13 + 8 + 16), rounded down to SCTP's 4-byte unit. IPv6, TURN framing or a tunnel
/// leave less, and the search finds it.
pub const MAX_SCTP_PATH_MTU: u32 = 1432;
/// How long ICE gathering may take.
const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after ICE starts a pair with a server-reflexive candidate may be nominated.
const SRFLX_WAIT: Duration = Duration::from_millis(100);

/// Where ICE may gather candidates.
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    /// Local addresses to bind; empty means every non-loopback interface.
    pub bind: Vec<IpAddr>,
    /// SCTP packet budget; `None` picks one from `bind` (see [`LOOPBACK_SCTP_MTU`]).
    pub sctp_mtu: Option<u32>,
    /// STUN and TURN servers (none: host candidates only; there is no default server).
    pub ice_servers: Vec<IceServer>,
    /// Only relay candidates: the other side never learns this machine's address.
    pub relay: bool,
}

/// The tokio runtime, but with large UDP socket buffers.
#[derive(Debug)]
struct BufferedRuntime(TokioRuntime);

impl Runtime for BufferedRuntime {
    fn spawn(
        &self,
        future: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = socket2::SockRef::from(&socket);
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>,
    > {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>
    {
        self.0.resolve_host(host)
    }

    fn sleep(
        &self,
        duration: Duration,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio-buffered"
    }
}

/// Forwards connection events into channels the transfer code can await.
struct Events {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
    candidates: mpsc::UnboundedSender<Candidate>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(Candidate {
                candidate: init.candidate,
                mid: init.sdp_mid,
                mline: init.sdp_mline_index,
            });
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channels.try_send(channel);
    }
}

/// One peer connection, from its SDP to an open data channel ([`Peer::open`]).
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    /// Local candidates as they are gathered, until taken ([`Peer::take_candidates`]).
    candidates: Option<mpsc::UnboundedReceiver<Candidate>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    /// The offerer's own channel, created with the offer.
    offered: Option<Arc<dyn DataChannel>>,
    remote_max_message: usize,
    /// The SHA-256 certificate fingerprints in the other side's SDP (uppercase hex, colons).
    remote_fingerprints: Vec<String>,
}

impl Peer {
    pub async fn new(options: &PeerOptions) -> Result<Peer, Failure> {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = watch::channel(false);
        let (channels_tx, channels) = mpsc::channel(1);
        let (candidates_tx, candidates) = mpsc::unbounded_channel();
        let loopback = options.bind.iter().any(IpAddr::is_loopback);
        let loopback_only =
            !options.bind.is_empty() && options.bind.iter().all(IpAddr::is_loopback);
        let mtu = options.sctp_mtu.unwrap_or(if loopback_only {
            LOOPBACK_SCTP_MTU
        } else {
            DEFAULT_SCTP_MTU
        });
        let settings = SettingEngineBuilder::new()
            .with_sctp_mtu(mtu)
            // rtc-sctp searches only from a start at least 16 bytes under it: not on loopback.
            .with_sctp_max_path_mtu(MAX_SCTP_PATH_MTU)
            // The offerer (mp send) is then the DTLS client, hence the SCTP client, and opens
            // the data channel.
            .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server)
            // The receiver, the DTLS server, answers the ClientHello with its ServerHello
            // flight, not a cookie: ICE's checks already proved the address, and the round
            // trip it saves is 100 ms of set-up on a 100 ms path.
            .with_dtls_skip_hello_verify(true)
            .with_include_loopback_candidate(loopback)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_sctp_max_message_size(
                rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize::Bounded(
                    frame::MAX_MESSAGE as u32,
                ),
            )
            .with_sctp_max_receive_buffer_size(SCTP_RECEIVE_WINDOW)
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), Some(50))
            // A check that arrives before the candidate it comes from (trickle races it) makes
            // a peer-reflexive candidate, which webrtc-rs would not nominate until 1 s after
            // ICE started: about one set-up in five sat idle for a second. It is the same
            // address the other side is signaling, so it may be nominated at once.
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            // A pair with the other side's server-reflexive (public) address waits this long
            // after ICE started before it may be nominated, so that a host pair (the same LAN:
            // a shorter path than through the NAT) is found first when it works. webrtc-rs
            // waits 0.5 s; the first byte through two cone NATs took 0.55 s. Host candidates
            // are trickled first and checked every 20 ms, so 100 ms is five checks of a host
            // pair, far more than a LAN needs.
            .with_srflx_acceptance_min_wait(Some(SRFLX_WAIT))
            // A relay pair waits 2 s for a direct one to prove itself, unless `--relay`
            // allows nothing but relay pairs: then there is nothing to wait for.
            .with_relay_acceptance_min_wait(options.relay.then_some(Duration::ZERO))
            .with_ice_timeouts(
                Some(Duration::from_secs(3)),
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(1)),
            )
            .build();
        let udp_addrs: Vec<SocketAddr> = if options.bind.is_empty() {
            // Every interface, IPv4 and (where the host has it) IPv6.
            let mut any = vec![SocketAddr::from(([0, 0, 0, 0], 0))];
            let v6 = SocketAddr::from(([0u16; 8], 0));
            if std::net::UdpSocket::bind(v6).is_ok() {
                any.push(v6);
            }
            any
        } else {
            options
                .bind
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect()
        };
        let ice_servers = options
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone(),
                credential: server.credential.clone(),
            })
            .collect();
        let policy = if options.relay {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .with_ice_transport_policy(policy)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_handler(Arc::new(Events {
                state: state_tx,
                gathered: gathered_tx,
                channels: channels_tx,
                candidates: candidates_tx,
            }))
            .with_runtime(Arc::new(BufferedRuntime(TokioRuntime)))
            .with_udp_addrs(udp_addrs)
            .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
            .build()
            .await
            .map_err(|e| Failure::new(Kind::Connect, format!("cannot set up WebRTC: {e}")))?;
        Ok(Peer {
            pc: Arc::new(pc),
            candidates: Some(candidates),
            state,
            gathered,
            channels,
            offered: None,
            remote_max_message: frame::MAX_MESSAGE,
            remote_fingerprints: Vec::new(),
        })
    }

    /// The local candidates, as they are gathered (for trickling them to the other side).
    pub fn take_candidates(&mut self) -> Option<mpsc::UnboundedReceiver<Candidate>> {
        self.candidates.take()
    }

    /// A handle that adds the other side's candidates while the peer itself is busy opening.
    pub fn remote_candidates(&self) -> RemoteCandidates {
        RemoteCandidates {
            pc: self.pc.clone(),
        }
    }

    /// Offerer: creates the data channel and the offer. With `trickle`, returns it at once
    /// (candidates follow from [`Peer::take_candidates`]); else once gathering is done, with
    /// every candidate inside.
    pub async fn offer(&mut self, trickle: bool) -> Result<String, Failure> {
        let channel = self
            .pc
            .create_data_channel(
                "mp",
                Some(RTCDataChannelInit {
                    ordered: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(webrtc_error)?;
        self.offered = Some(channel);
        let offer = self.pc.create_offer(None).await.map_err(webrtc_error)?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(webrtc_error)?;
        self.local_sdp(trickle).await
    }

    /// Answerer: takes the offer and returns the answer (at once with `trickle`, else once
    /// gathering is done).
    pub async fn answer(&mut self, offer: String, trickle: bool) -> Result<String, Failure> {
        self.remote_max_message = remote_max_message(&offer);
        self.remote_fingerprints = sha256_fingerprints(&offer);
        let offer = RTCSessionDescription::offer(offer).map_err(bad_sdp)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(bad_sdp)?;
        let answer = self.pc.create_answer(None).await.map_err(webrtc_error)?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(webrtc_error)?;
        self.local_sdp(trickle).await
    }

    /// Offerer: applies the answer.
    pub async fn apply_answer(&mut self, answer: String) -> Result<(), Failure> {
        self.remote_max_message = remote_max_message(&answer);
        self.remote_fingerprints = sha256_fingerprints(&answer);
        let answer = RTCSessionDescription::answer(answer).map_err(bad_sdp)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(bad_sdp)
    }

    /// Resolves once the data channel is open: the offerer's own, or the one the offerer
    /// opened towards the answerer. Fails when the connection fails; it sets no timeout (the
    /// engines own those).
    pub async fn open(&mut self) -> Result<Link, Failure> {
        let mut state = self.state.clone();
        let channel = match self.offered.clone() {
            Some(channel) => {
                tokio::select! {
                    opened = wait_open(&channel) => opened.map(|_| channel),
                    _ = ended(&mut state) => Err(()),
                }
            }
            None => {
                tokio::select! {
                    channel = self.channels.recv() => channel.ok_or(()),
                    _ = ended(&mut state) => Err(()),
                }
            }
        };
        let channel = channel.map_err(|_| {
            Failure::new(
                Kind::Connect,
                "no direct connection could be established with the other side",
            )
        })?;
        self.check_certificate().await?;
        Ok(Link {
            channel,
            state: self.state.clone(),
            max_message: self.remote_max_message.min(frame::MAX_MESSAGE),
            path_rtt: self.path_rtt().await,
            draining_until: None,
        })
    }

    /// The round trip of the selected path as ICE's connectivity checks measured it (the
    /// nominated candidate pair's latest STUN round trip), if it has one.
    async fn path_rtt(&self) -> Option<Duration> {
        let report = self
            .pc
            .get_stats(
                std::time::Instant::now(),
                webrtc::peer_connection::StatsSelector::None,
            )
            .await;
        report
            .candidate_pairs()
            .filter(|pair| pair.nominated && pair.current_round_trip_time > 0.0)
            .map(|pair| pair.current_round_trip_time)
            .reduce(f64::min)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
    }

    /// Defence in depth: the certificate the other side presented in the DTLS handshake must
    /// be the one whose fingerprint came in its sealed SDP. webrtc-rs checks this itself; a
    /// flaw there alone must not let anyone into the middle, so mp checks it again.
    async fn check_certificate(&self) -> Result<(), Failure> {
        let mismatch = |why: &str| {
            Failure::new(
                Kind::WrongCode,
                format!(
                    "the other side's DTLS certificate {why}: someone may be in the middle of the \
                     connection"
                ),
            )
        };
        let sctp = self
            .pc
            .sctp()
            .await
            .ok_or_else(|| mismatch("could not be read"))?;
        let certificates = sctp
            .transport()
            .get_remote_certificates()
            .await
            .map_err(|_| mismatch("could not be read"))?;
        let presented = certificates
            .first()
            .map(|der| fingerprint(der))
            .ok_or_else(|| mismatch("is missing"))?;
        if !self.remote_fingerprints.contains(&presented) {
            return Err(mismatch("does not match the fingerprint in its sealed SDP"));
        }
        Ok(())
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pc.close()).await;
    }

    /// Which path the open connection took, once it is open.
    pub async fn path(&self) -> Option<Path> {
        let sctp = self.pc.sctp().await?;
        let pair = sctp
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await
            .ok()??;
        Some(Path {
            local: candidate_type(pair.local().typ),
            remote: candidate_type(pair.remote().typ),
        })
    }

    async fn local_sdp(&mut self, trickle: bool) -> Result<String, Failure> {
        if !trickle {
            let gathered = self.gathered.wait_for(|done| *done);
            match tokio::time::timeout(GATHER_TIMEOUT, gathered).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Err(Failure::new(
                        Kind::Connect,
                        "ICE gathering did not complete",
                    ))
                }
            }
        }
        let description =
            self.pc.local_description().await.ok_or_else(|| {
                Failure::new(Kind::Connect, "WebRTC produced no local description")
            })?;
        Ok(description.sdp)
    }
}

/// Adds the other side's trickled candidates.
#[derive(Clone)]
pub struct RemoteCandidates {
    pc: Arc<dyn PeerConnection>,
}

impl RemoteCandidates {
    /// Adds one candidate; a malformed one is refused (its text is the peer's).
    pub async fn add(&self, candidate: Candidate) -> Result<(), Failure> {
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.mid,
            sdp_mline_index: candidate.mline.or(Some(0)),
            ..Default::default()
        };
        self.pc.add_ice_candidate(init).await.map_err(|e| {
            Failure::new(
                Kind::Connect,
                format!("the other side sent an unusable ICE candidate: {e}"),
            )
        })
    }
}

/// The kind of an ICE candidate, as RFC 8445 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidateKind {
    /// An address of one of the machine's interfaces.
    Host,
    /// The public address a STUN server saw.
    ServerReflexive,
    /// An address learned from the other side's checks.
    PeerReflexive,
    /// An address on a TURN relay.
    Relay,
    Unknown,
}

impl CandidateKind {
    /// The short name used in SDP and in JSON events: host, srflx, prflx, relay.
    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relay => "relay",
            CandidateKind::Unknown => "unknown",
        }
    }

    /// The kind named in a candidate line (`… typ host …`).
    pub fn of_line(line: &str) -> CandidateKind {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "typ" {
                return match words.next() {
                    Some("host") => CandidateKind::Host,
                    Some("srflx") => CandidateKind::ServerReflexive,
                    Some("prflx") => CandidateKind::PeerReflexive,
                    Some("relay") => CandidateKind::Relay,
                    _ => CandidateKind::Unknown,
                };
            }
        }
        CandidateKind::Unknown
    }
}

fn candidate_type(typ: RTCIceCandidateType) -> CandidateKind {
    match typ {
        RTCIceCandidateType::Host => CandidateKind::Host,
        RTCIceCandidateType::Srflx => CandidateKind::ServerReflexive,
        RTCIceCandidateType::Prflx => CandidateKind::PeerReflexive,
        RTCIceCandidateType::Relay => CandidateKind::Relay,
        _ => CandidateKind::Unknown,
    }
}

/// The candidate pair the connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    pub local: CandidateKind,
    pub remote: CandidateKind,
}

impl Path {
    /// True when a TURN relay carries the bytes.
    pub fn is_relayed(&self) -> bool {
        self.local == CandidateKind::Relay || self.remote == CandidateKind::Relay
    }
}

/// The open data channel: the frame link between the two engines.
pub struct Link {
    channel: Arc<dyn DataChannel>,
    state: watch::Receiver<RTCPeerConnectionState>,
    max_message: usize,
    /// The path's round trip as ICE measured it, if it did.
    path_rtt: Option<Duration>,
    /// Once the connection has ended, messages that had arrived are still delivered until then.
    draining_until: Option<tokio::time::Instant>,
}

/// What the link delivers.
#[derive(Debug)]
pub enum LinkEvent {
    /// One data-channel message (one frame).
    Message(Vec<u8>),
    /// The channel or the connection closed; every message that had arrived was delivered.
    Closed,
}

/// How long messages that arrived before the connection ended are still looked for.
const DRAIN: Duration = Duration::from_millis(500);

impl Link {
    /// The largest message the other side accepts (from its SDP), never more than ours.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The path's round trip as ICE's connectivity checks measured it, if they did.
    pub fn path_rtt(&self) -> Option<Duration> {
        self.path_rtt
    }

    /// Sends one frame; waits while the bounded send buffer is full, but not past the end of
    /// the connection (webrtc-rs would wait for buffer space that never comes).
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), Failure> {
        let lost = || Failure::new(Kind::PeerGone, "the connection to the other side was lost");
        let mut state = self.state.clone();
        tokio::select! {
            sent = self.channel.send(BytesMut::from(bytes::Bytes::from(frame))) => {
                sent.map_err(|_| lost())
            }
            _ = ended(&mut state) => Err(lost()),
        }
    }

    /// The next message, or [`LinkEvent::Closed`]. Cancel-safe.
    pub async fn recv(&mut self) -> LinkEvent {
        loop {
            if let Some(until) = self.draining_until {
                return match tokio::time::timeout_at(until, self.channel.poll()).await {
                    Ok(Some(DataChannelEvent::OnMessage(message))) => {
                        LinkEvent::Message(Vec::from(message.data))
                    }
                    Ok(Some(DataChannelEvent::OnClose)) | Ok(None) | Err(_) => LinkEvent::Closed,
                    Ok(Some(_)) => continue,
                };
            }
            tokio::select! {
                biased;
                event = self.channel.poll() => match event {
                    Some(DataChannelEvent::OnMessage(message)) => {
                        return LinkEvent::Message(Vec::from(message.data))
                    }
                    Some(DataChannelEvent::OnClose) | None => return LinkEvent::Closed,
                    Some(_) => {}
                },
                _ = ended(&mut self.state) => {
                    self.draining_until = Some(tokio::time::Instant::now() + DRAIN);
                }
            }
        }
    }

    /// Notes that the link is going away (a send failed): what had arrived is still delivered
    /// by [`Link::recv`] for a moment, then it reports [`LinkEvent::Closed`].
    pub fn going_away(&mut self) {
        self.draining_until
            .get_or_insert_with(|| tokio::time::Instant::now() + DRAIN);
    }

    /// Gives the frames already sent a moment to leave (closing the connection drops whatever
    /// SCTP has not sent yet). Best effort, at most a second.
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.channel.outstanding_bytes().await? > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<(), webrtc::error::Error>(())
        })
        .await;
    }
}

/// The `a=fingerprint:sha-256 …` values of an SDP, normalised to uppercase.
fn sha256_fingerprints(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a=fingerprint:"))
        .filter_map(|value| {
            let (hash, print) = value.split_once(' ')?;
            hash.eq_ignore_ascii_case("sha-256")
                .then(|| print.trim().to_ascii_uppercase())
        })
        .collect()
}

/// The SHA-256 fingerprint of a DER certificate, as SDP writes it (`AB:CD:…`).
fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The `max-message-size` an SDP announces (RFC 8841): 65,536 when absent, no limit for 0.
fn remote_max_message(sdp: &str) -> usize {
    let announced = sdp
        .lines()
        .find_map(|line| line.trim().strip_prefix("a=max-message-size:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    match announced {
        None => 65_536,
        Some(0) => usize::MAX,
        Some(size) => size,
    }
}

/// Waits for the data channel to open (`OnOpen`).
///
/// webrtc-rs 0.21 as published sent what handling an event queued (the SCTP INIT once DTLS
/// is up, the data-channel OPEN once SCTP is) only at its next wake-up, and the DTLS
/// ClientHello only at its next timer: mp nudged the driver every 2 ms and still lost
/// 20-30 ms per set-up. The vendored `rtc` and `webrtc` (`vendor/*/README.mp.md`) send them
/// at once, so there is nothing to nudge.
async fn wait_open(channel: &Arc<dyn DataChannel>) -> Result<(), ()> {
    loop {
        match channel.poll().await {
            Some(DataChannelEvent::OnOpen) => return Ok(()),
            Some(DataChannelEvent::OnClose) | None => return Err(()),
            Some(_) => {}
        }
    }
}

/// Resolves once the connection has failed or closed.
async fn ended(state: &mut watch::Receiver<RTCPeerConnectionState>) {
    let _ = state
        .wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )
        })
        .await;
}

fn webrtc_error(err: webrtc::error::Error) -> Failure {
    Failure::new(Kind::Connect, format!("WebRTC: {err}")).caused_by(err)
}

fn bad_sdp(err: webrtc::error::Error) -> Failure {
    Failure::new(
        Kind::Connect,
        format!("the other side sent an unusable SDP: {err}"),
    )
    .caused_by(err)
}

#[cfg(test)]
mod tests {
    use super::remote_max_message;

    #[test]
    fn certificate_fingerprints_are_read_and_computed_as_sdp_writes_them() {
        let sdp = "v=0\r\na=fingerprint:sha-256 ab:CD:01\r\na=fingerprint:sha-1 00\r\n";
        assert_eq!(super::sha256_fingerprints(sdp), ["AB:CD:01"]);
        let print = super::fingerprint(b"certificate");
        assert_eq!(print.len(), 32 * 3 - 1);
        assert!(print.starts_with(&print[..2].to_ascii_uppercase()));
    }

    #[test]
    fn the_peers_message_size_is_read_from_its_sdp() {
        assert_eq!(
            remote_max_message("v=0\r\na=max-message-size:262144\r\n"),
            262_144
        );
        assert_eq!(
            remote_max_message("v=0\r\na=max-message-size:0\r\n"),
            usize::MAX
        );
        assert_eq!(remote_max_message("v=0\r\n"), 65_536, "RFC 8841 default");
        assert_eq!(remote_max_message("a=max-message-size:junk"), 65_536);
    }
}
