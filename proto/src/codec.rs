//! The gRPC codec of every generated client and server: prost's encoding,
//! run on contiguous memory.
//!
//! `tonic_prost::ProstCodec` encodes straight into tonic's `BytesMut`
//! through its `BufMut`, whose `put_u8` is an out-of-line `put_slice` call:
//! one call per varint byte, 17% of the master's instructions in a batched
//! run (callgrind; BENCHMARKS.md, "Why the code is shaped so: the slice
//! codec"). Encoding into a `Vec` and copying that once, and decoding
//! from a plain slice, lets the compiler inline prost's byte loops. The
//! bytes on the wire are the same.

use std::cell::RefCell;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A [`Codec`] for `application/grpc+proto` messages (see the module docs).
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SliceEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SliceEncoder { _pd: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder { _pd: PhantomData }
    }
}

/// Encodes a message into a buffer of its thread, then appends that in
/// one copy.
#[derive(Debug)]
pub struct SliceEncoder<T> {
    _pd: PhantomData<T>,
}

/// Room a thread's encoding buffer keeps between messages; a larger
/// message's room is given back after it.
const SCRATCH_KEPT_BYTES: usize = 1 << 20;

thread_local! {
    /// Per thread, not per encoder: tonic makes an encoder per call, and a
    /// new buffer for each unary reply grew (and copied) itself each time.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<T: Message> Encoder for SliceEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        SCRATCH.with_borrow_mut(|scratch| {
            let encoded = encode_via(scratch, &item);
            buf.reserve(encoded.len());
            buf.put_slice(encoded);
            if scratch.capacity() > SCRATCH_KEPT_BYTES {
                *scratch = Vec::new();
            }
        });
        Ok(())
    }
}

/// `item`'s encoding, in `scratch`.
fn encode_via<'a>(scratch: &'a mut Vec<u8>, item: &impl Message) -> &'a [u8] {
    scratch.clear();
    // No `reserve(item.encoded_len())`: that is a whole pass over the
    // message (prost computes each nested message's length again while
    // encoding), and the thread's buffer keeps its room, so it rarely grows.
    item.encode_raw(scratch);
    scratch
}

/// Decodes a message from one contiguous slice of the received bytes.
#[derive(Debug)]
pub struct SliceDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // tonic hands over one whole message; taking it as `Bytes` splits
        // the receive buffer without copying when it is contiguous.
        let bytes = buf.copy_to_bytes(buf.remaining());
        decode_from(&bytes).map(Some)
    }
}

fn decode_from<U: Message + Default>(bytes: &[u8]) -> Result<U, Status> {
    // An unparsable message is INTERNAL, as gRPC's status codes document
    // and as tonic's own prost codec answers.
    U::decode(bytes).map_err(|e| Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Lease, UnitRef};

    fn lease() -> Lease {
        Lease {
            unit: Some(UnitRef {
                pipeline_id: "p-1".into(),
                group: "map".into(),
                unit: 300,
            }),
            lease_id: u64::MAX,
            command: vec!["wc".into(), "-l".into()],
            env: [("K".to_string(), "v".to_string())].into(),
            inputs: vec!["/data/in.txt".into()],
            ..Default::default()
        }
    }

    #[test]
    fn encodes_the_bytes_prost_encodes_and_decodes_them_back() {
        let mut scratch = Vec::new();
        // Twice through one buffer: the second encoding replaces the first.
        encode_via(&mut scratch, &Lease::default());
        let wire = encode_via(&mut scratch, &lease()).to_vec();
        assert_eq!(wire, lease().encode_to_vec());
        assert_eq!(decode_from::<Lease>(&wire).unwrap(), lease());
    }

    #[test]
    fn garbage_is_an_internal_error_not_a_panic() {
        let err = decode_from::<Lease>(&[0x0a, 0xff, 0xff]).unwrap_err(); // a length past the end
        assert_eq!(err.code(), tonic::Code::Internal);
    }
}
