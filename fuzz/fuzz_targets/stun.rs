//! The STUN service of `mp signal`: any datagram from anyone on the Internet.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mp::signal::stun::{answer, MAX_REQUEST};

fuzz_target!(|input: (u128, u16, &[u8])| {
    let (ip, port, datagram) = input;
    for from in [
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip as u32)), port),
    ] {
        if let Some(response) = answer(datagram, from) {
            assert!(datagram.len() <= MAX_REQUEST);
            // A Binding success response with XOR-MAPPED-ADDRESS and nothing else: at most 44
            // bytes, so a forged source gains an attacker little.
            assert!(response.len() <= 44, "{} bytes", response.len());
            assert_eq!(&response[..2], &[0x01, 0x01]);
            // The request's transaction id.
            assert_eq!(&response[4..20], &datagram[4..20]);
        }
    }
});
