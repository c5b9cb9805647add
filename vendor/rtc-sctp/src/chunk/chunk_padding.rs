use super::{chunk_header::*, chunk_type::*, *};

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A PAD chunk (RFC 4820): `len` bytes of padding that the receiver ignores, used to give a
/// path-MTU probe its size.
///
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Type = 0x84   |   Flags=0     |             Length            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// \                                                               /
/// /                             Padding Data                      \
/// \                                                               /
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// Its type's highest bits (10) tell a receiver that does not know it to skip it, so a
/// receiver needs no code for it (`packet.rs` skips such chunks).
#[derive(Default, Debug, Clone)]
pub(crate) struct ChunkPadding {
    pub(crate) len: usize,
}

impl fmt::Display for ChunkPadding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.header())
    }
}

impl Chunk for ChunkPadding {
    fn header(&self) -> ChunkHeader {
        ChunkHeader {
            typ: CT_PAD,
            flags: 0,
            value_length: self.len as u16,
        }
    }

    fn unmarshal(raw: &Bytes) -> Result<Self> {
        let header = ChunkHeader::unmarshal(raw)?;
        if header.typ != CT_PAD {
            return Err(Error::ErrUnmarshalUnknownChunkType);
        }
        Ok(ChunkPadding {
            len: header.value_length(),
        })
    }

    fn marshal_to(&self, writer: &mut BytesMut) -> Result<usize> {
        self.header().marshal_to(writer)?;
        writer.put_bytes(0, self.len);
        Ok(writer.len())
    }

    fn check(&self) -> Result<()> {
        Ok(())
    }

    fn value_length(&self) -> usize {
        self.len
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
