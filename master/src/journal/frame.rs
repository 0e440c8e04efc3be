//! On-disk framing: `[u32 LE payload length][u32 LE crc32 of payload][payload]`.
//! Scanning tells a torn tail (never acknowledged: cut it off) from
//! corruption followed by valid records (acknowledged data is damaged:
//! refuse to start).

/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 8;
/// Largest payload a frame may carry; a larger length is corruption.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The header of a frame holding `payload`: its length and checksum. None
/// when the length does not fit the u32 field. Journal records are further
/// bounded by [`PAYLOAD_BYTES_MAX`]; snapshot files use the same layout
/// with only the u32 bound.
pub fn header(payload: &[u8]) -> Option<[u8; HEADER_BYTES]> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut header = [0; HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    Some(header)
}

/// A header's payload length and checksum.
pub fn read_header(header: &[u8; HEADER_BYTES]) -> (usize, u32) {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        u32::from_le_bytes([c0, c1, c2, c3]),
    )
}

fn journal_header(payload: &[u8]) -> [u8; HEADER_BYTES] {
    assert!(
        !payload.is_empty() && payload.len() <= PAYLOAD_BYTES_MAX,
        "frame payload size"
    );
    header(payload).expect("PAYLOAD_BYTES_MAX fits a u32")
}

/// Appends one frame holding `payload` to `buf`.
pub fn encode(payload: &[u8], buf: &mut Vec<u8>) {
    buf.extend_from_slice(&journal_header(payload));
    buf.extend_from_slice(payload);
}

/// Appends one frame holding `message` encoded, encoding it in place: the
/// journal's hot path, with no buffer per record.
pub fn encode_message(message: &impl prost::Message, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_BYTES]);
    // `encode_raw`, not `encode`: a Vec grows as needed, so the length
    // check `encode` makes first (a whole `encoded_len` pass) buys nothing.
    message.encode_raw(buf);
    let header = journal_header(&buf[start + HEADER_BYTES..]);
    buf[start..start + HEADER_BYTES].copy_from_slice(&header);
}

/// What a scan found after the last valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The bytes end exactly after a valid frame.
    Clean,
    /// An incomplete or damaged last stretch with no valid frame after it:
    /// a write that crashed before its sync. Safe to cut off.
    Torn { offset: usize, bytes: usize },
    /// A damaged frame with valid frames after it: acknowledged data is lost.
    CorruptMiddle { offset: usize },
}

#[derive(Debug)]
pub struct Scan<'a> {
    pub payloads: Vec<(usize, &'a [u8])>,
    /// Length of the prefix made of valid frames.
    pub valid_len: usize,
    pub tail: Tail,
}

/// Reads frames from `bytes` (offsets are relative to its start).
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match frame_at(bytes, pos) {
            Some(payload) => {
                payloads.push((pos, payload));
                pos += HEADER_BYTES + payload.len();
            }
            None => {
                let tail = if any_frame_after(bytes, pos + 1) {
                    Tail::CorruptMiddle { offset: pos }
                } else {
                    Tail::Torn {
                        offset: pos,
                        bytes: bytes.len() - pos,
                    }
                };
                return Scan {
                    payloads,
                    valid_len: pos,
                    tail,
                };
            }
        }
    }
    Scan {
        payloads,
        valid_len: pos,
        tail: Tail::Clean,
    }
}

/// The payload of a whole, checksum-valid frame at `pos`, if there is one.
fn frame_at(bytes: &[u8], pos: usize) -> Option<&[u8]> {
    let header = bytes.get(pos..pos + HEADER_BYTES)?.try_into().ok()?;
    let (len, crc) = read_header(header);
    if len == 0 || len > PAYLOAD_BYTES_MAX {
        return None;
    }
    let payload = bytes.get(pos + HEADER_BYTES..pos + HEADER_BYTES + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Whether a valid frame starts anywhere at or after `from`. Only run on
/// recovery after damage, so a byte-by-byte search is affordable; a random
/// match needs a plausible length and a matching 32-bit checksum.
fn any_frame_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(HEADER_BYTES)).any(|pos| frame_at(bytes, pos).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            encode(p, &mut buf);
        }
        buf
    }

    #[test]
    fn a_message_encoded_in_place_frames_like_its_bytes() {
        use prost::Message as _;
        let message = taskmaster_proto::v1::UnitRef {
            pipeline_id: "p-1".into(),
            group: "g".into(),
            unit: 7,
        };
        let mut in_place = vec![1, 2, 3];
        encode_message(&message, &mut in_place);
        let mut copied = vec![1, 2, 3];
        encode(&message.encode_to_vec(), &mut copied);
        assert_eq!(in_place, copied);
        let scan = scan(&in_place[3..]);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(scan.payloads[0].1, message.encode_to_vec());
    }

    #[test]
    fn clean_log_reads_back() {
        let buf = frames(&[b"one", b"two"]);
        let scan = scan(&buf);
        assert_eq!(scan.tail, Tail::Clean);
        let got: Vec<&[u8]> = scan.payloads.iter().map(|p| p.1).collect();
        assert_eq!(got, vec![&b"one"[..], &b"two"[..]]);
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_whole_frame() {
        let buf = frames(&[b"one", b"two-two"]);
        for cut in 12..buf.len() {
            let scan = scan(&buf[..cut]);
            assert_eq!(scan.payloads.len(), 1, "cut at {cut}");
            assert_eq!(
                scan.tail,
                Tail::Torn {
                    offset: 11,
                    bytes: cut - 11
                }
            );
        }
        let mut zeros = frames(&[b"one"]);
        zeros.extend_from_slice(&[0; 4096]);
        assert_eq!(
            scan(&zeros).tail,
            Tail::Torn {
                offset: 11,
                bytes: 4096
            }
        );
    }

    #[test]
    fn damage_before_valid_frames_is_corruption() {
        let mut buf = frames(&[b"one", b"two", b"three"]);
        buf[11 + HEADER_BYTES] ^= 0xff; // flip a byte of "two"
        let scan = scan(&buf);
        assert_eq!(scan.tail, Tail::CorruptMiddle { offset: 11 });
        assert_eq!(scan.payloads.len(), 1);
    }

    #[test]
    fn damaged_last_frame_is_a_torn_tail() {
        let mut buf = frames(&[b"one", b"two"]);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(
            scan(&buf).tail,
            Tail::Torn {
                offset: 11,
                bytes: 11
            }
        );
    }
}
