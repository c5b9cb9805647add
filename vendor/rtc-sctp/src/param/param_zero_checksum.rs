use super::{param_header::*, param_type::*, *};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The Error Detection Method Identifier of SCTP over DTLS (RFC 9653 §7): DTLS authenticates
/// every record, so SCTP's CRC32c adds nothing.
pub(crate) const EDMID_DTLS: u32 = 1;

/// Zero Checksum Acceptable (RFC 9653 §4): the sender of the INIT or INIT ACK that carries it
/// accepts packets whose checksum is zero, because the method named by `edmid` already detects
/// errors. A peer that receives it MAY then send packets with a zero checksum.
///
/// 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///|   Type = 0x8001 (suggested)   |          Length = 8           |
///+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///|           Error Detection Method Identifier (EDMID)           |
///+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamZeroChecksumAcceptable {
    pub(crate) edmid: u32,
}

impl fmt::Display for ParamZeroChecksumAcceptable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} edmid={}", self.header(), self.edmid)
    }
}

impl Param for ParamZeroChecksumAcceptable {
    fn header(&self) -> ParamHeader {
        ParamHeader {
            typ: ParamType::ZeroChecksumAcceptable,
            value_length: self.value_length() as u16,
        }
    }

    fn unmarshal(raw: &Bytes) -> Result<Self> {
        let header = ParamHeader::unmarshal(raw)?;
        if header.value_length != 4 {
            return Err(Error::ErrParamHeaderParseFailed);
        }
        let mut value = &raw[PARAM_HEADER_LENGTH..PARAM_HEADER_LENGTH + 4];
        Ok(ParamZeroChecksumAcceptable {
            edmid: value.get_u32(),
        })
    }

    fn marshal_to(&self, buf: &mut BytesMut) -> Result<usize> {
        self.header().marshal_to(buf)?;
        buf.put_u32(self.edmid);
        Ok(buf.len())
    }

    fn value_length(&self) -> usize {
        4
    }

    fn clone_to(&self) -> Box<dyn Param> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshals_as_rfc_9653_says_and_parses_back() -> Result<()> {
        let param = ParamZeroChecksumAcceptable { edmid: EDMID_DTLS };
        let raw = param.marshal()?;
        assert_eq!(&raw[..], &[0x80, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01]);
        let parsed = build_param(&raw)?;
        let parsed = parsed
            .as_any()
            .downcast_ref::<ParamZeroChecksumAcceptable>()
            .expect("built as Zero Checksum Acceptable");
        assert_eq!(parsed, &param);
        Ok(())
    }

    #[test]
    fn a_wrong_length_is_rejected_not_misread() {
        for raw in [
            &[0x80, 0x01, 0x00, 0x04][..],
            &[0x80, 0x01, 0x00, 0x06, 0x00, 0x00][..],
            &[0x80, 0x01, 0x00, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0][..],
            &[0x80, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00][..],
        ] {
            assert!(
                build_param(&Bytes::copy_from_slice(raw)).is_err(),
                "{raw:?}"
            );
        }
    }
}
