//! Loss recovery under random packet loss: when the receiver SACKs and how the sender
//! detects and repairs holes (RFC 9260 §6.7, §7.2.4, §6.3.1).

use super::*;

/// A receiving association and one DATA chunk for it: `len` bytes at `tsn` on stream 0.
fn data(tsn: u32, len: usize) -> ChunkPayloadData {
    ChunkPayloadData {
        beginning_fragment: true,
        ending_fragment: true,
        unordered: true,
        tsn,
        stream_identifier: 0,
        user_data: Bytes::from(vec![0u8; len]),
        ..Default::default()
    }
}

/// Feeds one packet carrying a DATA chunk, as `handle_inbound` would, and reports what the
/// receiver decided about its SACK. Any SACK it asked for is then sent, as a flush would.
fn receive(a: &mut Association, tsn: u32, now: Instant) -> Result<AckState> {
    a.handle_chunk_start();
    a.handle_data(&data(tsn, 100))?;
    a.handle_chunk_end(now);
    let decided = a.ack_state;
    a.gather_outbound_sack_packets(vec![]);
    Ok(decided)
}

fn receiver() -> Association {
    let mut a = create_association(TransportConfig::default());
    a.set_state(AssociationState::Established);
    a
}

#[test]
fn receiver_sacks_at_once_for_a_gap_and_for_the_chunk_that_fills_it() -> Result<()> {
    let now = Instant::now();
    let mut a = receiver();
    let first = a.peer_last_tsn.wrapping_add(1);

    // In sequence: the first packet may wait for the delayed-ACK timer (RFC 9260 §6.2).
    assert_eq!(AckState::Delay, receive(&mut a, first, now)?);
    a.timers.stop(Timer::Ack);
    a.ack_state = AckState::Idle;

    // first+1 is lost: each packet above the hole is reported at once (§6.7).
    assert_eq!(AckState::Immediate, receive(&mut a, first + 2, now)?);
    assert_eq!(AckState::Immediate, receive(&mut a, first + 3, now)?);

    // The retransmission fills the hole: the sender waits for this SACK, so it must not
    // wait for the 200 ms delayed-ACK timer.
    assert_eq!(AckState::Immediate, receive(&mut a, first + 1, now)?);
    assert_eq!(a.peer_last_tsn, first + 3);
    assert!(a.timers.get(Timer::Ack).is_none());

    // Back in sequence, delayed SACKs resume.
    assert_eq!(AckState::Delay, receive(&mut a, first + 4, now)?);
    Ok(())
}

#[test]
fn receiver_sacks_a_duplicate_at_once() -> Result<()> {
    let now = Instant::now();
    let mut a = receiver();
    let first = a.peer_last_tsn.wrapping_add(1);
    assert_eq!(AckState::Delay, receive(&mut a, first, now)?);
    a.timers.stop(Timer::Ack);
    a.ack_state = AckState::Idle;
    // A second copy of a delivered chunk (e.g. a T3-rtx retransmission that crossed our
    // SACK): RFC 9260 §6.7 says MUST SACK immediately.
    assert_eq!(AckState::Immediate, receive(&mut a, first, now)?);
    Ok(())
}
