//! A STUN server (RFC 5389) that only answers Binding requests: it tells each client the
//! address and port its packets came from (XOR-MAPPED-ADDRESS), so a peer behind a NAT learns
//! its public address (a server-reflexive ICE candidate).
//!
//! `mp signal` runs it on UDP at the same address and port as its WebSocket listener. The
//! message codec is the webrtc-rs one (`rtc::stun`, the `rtc-stun` crate), not hand-written.
//!
//! Every datagram costs a bounded amount of work: anything longer than [`MAX_REQUEST`], not a
//! well-formed Binding request, or with a wrong FINGERPRINT is dropped without an answer. The
//! answer carries XOR-MAPPED-ADDRESS and nothing else (32 bytes for IPv4, 44 for IPv6), so a
//! forged source address gains an attacker little: a 20-byte request becomes at most 44 bytes.

use std::net::SocketAddr;
use std::time::Duration;

use rtc::stun::attributes::ATTR_FINGERPRINT;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::message::{
    is_stun_message, Message, Setter, BINDING_REQUEST, BINDING_SUCCESS, MESSAGE_HEADER_SIZE,
};
use rtc::stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

/// Longest datagram looked at (the IPv6 minimum MTU); a Binding request is usually 20 to
/// 100 bytes. Longer ones are dropped unread.
pub const MAX_REQUEST: usize = 1280;

/// The answer to one datagram from `from`: a Binding success response, or `None` when the
/// datagram is not a well-formed Binding request (then nothing is sent back).
pub fn answer(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    // Cheap checks on the header first (RFC 5389 §6): the two top bits zero, the magic cookie,
    // a length that covers exactly the rest of the datagram in whole 4-byte words, and the
    // Binding request type.
    if datagram.len() > MAX_REQUEST || !is_stun_message(datagram) || datagram[0] & 0xC0 != 0 {
        return None;
    }
    let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if MESSAGE_HEADER_SIZE + length != datagram.len() || length % 4 != 0 {
        return None;
    }
    let mut request = Message::new();
    request.raw = datagram.to_vec();
    request.decode().ok()?;
    if request.typ != BINDING_REQUEST {
        return None;
    }
    if request.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&request).is_err() {
        return None;
    }

    // An IPv4 client of a dual-stack socket shows up as ::ffff:a.b.c.d; it wants its IPv4
    // address back.
    let mapped = XorMappedAddress {
        ip: from.ip().to_canonical(),
        port: from.port(),
    };
    let mut response = Message::new();
    let setters: [Box<dyn Setter>; 3] = [
        Box::new(request.transaction_id),
        Box::new(BINDING_SUCCESS),
        Box::new(mapped),
    ];
    response.build(&setters).ok()?;
    Some(response.raw)
}

/// Answers Binding requests on `socket` until the process ends.
pub async fn serve(socket: UdpSocket) {
    // One byte more than accepted, so a longer datagram is seen as too long, not truncated.
    let mut buffer = vec![0u8; MAX_REQUEST + 1];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((len, from)) => {
                if let Some(response) = answer(&buffer[..len], from) {
                    // Never wait: with the send buffer full, the answer is dropped like any
                    // lost datagram and the client retries.
                    let _ = socket.try_send_to(&response, from);
                }
            }
            // Out of memory and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{Getter, TransactionId, BINDING_ERROR};
    use rtc::stun::textattrs::TextAttribute;

    fn request(setters: Vec<Box<dyn Setter>>) -> Message {
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m
    }

    fn decode(raw: &[u8]) -> Message {
        let mut m = Message::new();
        m.raw = raw.to_vec();
        m.decode().unwrap();
        m
    }

    #[test]
    fn a_binding_request_gets_the_source_address_back() {
        for from in [
            "203.0.113.7:40000",
            "[2001:db8::1]:5",
            "[::ffff:198.51.100.2]:9",
        ] {
            let from: SocketAddr = from.parse().unwrap();
            let id = TransactionId::new();
            let req = request(vec![Box::new(id), Box::new(BINDING_REQUEST)]);
            let raw = answer(&req.raw, from).expect("an answer");
            let res = decode(&raw);
            assert_eq!(res.typ, BINDING_SUCCESS);
            assert_eq!(res.transaction_id, id);
            let mut mapped = XorMappedAddress::default();
            mapped.get_from(&res).unwrap();
            assert_eq!(
                SocketAddr::new(mapped.ip, mapped.port),
                SocketAddr::new(from.ip().to_canonical(), from.port())
            );
            // Nothing but XOR-MAPPED-ADDRESS: 20 + 4 + 8 (IPv4) or 20 (IPv6).
            let want = if mapped.ip.is_ipv4() { 32 } else { 44 };
            assert_eq!(raw.len(), want, "{from}");
        }
    }

    #[test]
    fn a_request_with_attributes_and_a_fingerprint_is_answered() {
        let req = request(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(TextAttribute::new(
                rtc::stun::attributes::ATTR_SOFTWARE,
                "test".into(),
            )),
            Box::new(FINGERPRINT),
        ]);
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(answer(&req.raw, from).is_some());

        // The same with its fingerprint broken.
        let mut bad = req.raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(answer(&bad, from).is_none());
    }

    #[test]
    fn anything_else_is_ignored() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let binding = request(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
        ]);
        let not_binding = [
            request(vec![
                Box::new(TransactionId::new()),
                Box::new(BINDING_SUCCESS),
            ])
            .raw,
            request(vec![
                Box::new(TransactionId::new()),
                Box::new(BINDING_ERROR),
            ])
            .raw,
            Vec::new(),
            vec![0; 19],
            vec![0; 20],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            // Truncated, and with bytes past its stated length.
            binding.raw[..19].to_vec(),
            [&binding.raw[..], &[0, 0, 0, 0]].concat(),
            // Top bits set (not STUN, e.g. a DTLS or RTP packet with a cookie in place).
            {
                let mut raw = binding.raw.clone();
                raw[0] |= 0x80;
                raw
            },
            // A length that is not a multiple of 4.
            {
                let mut raw = [&binding.raw[..], &[0, 0]].concat();
                raw[3] = 2;
                raw
            },
            // An attribute that claims more bytes than there are.
            {
                let mut raw = [&binding.raw[..], &[0x80, 0x22, 0x00, 0x40]].concat();
                raw[3] = 4;
                raw
            },
            // Too long to look at.
            {
                let mut raw = binding.raw.clone();
                raw.extend(std::iter::repeat_n(0, MAX_REQUEST));
                let len = (raw.len() - MESSAGE_HEADER_SIZE) as u16;
                raw[2..4].copy_from_slice(&len.to_be_bytes());
                raw
            },
        ];
        for raw in not_binding {
            assert!(answer(&raw, from).is_none(), "{raw:?}");
        }
    }
}
