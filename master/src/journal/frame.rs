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
                return Scan {
                    payloads,
                    valid_len: pos,
                    tail: damage_at(bytes, pos, any_frame_after),
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

/// What bytes that do not read at `pos` are: damage to acknowledged
/// records when something valid follows them (`valid_after`), else the
/// torn tail of a write that never completed.
fn damage_at(bytes: &[u8], pos: usize, valid_after: fn(&[u8], usize) -> bool) -> Tail {
    if valid_after(bytes, pos + 1) {
        Tail::CorruptMiddle { offset: pos }
    } else {
        Tail::Torn {
            offset: pos,
            bytes: bytes.len() - pos,
        }
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

/// Bytes of a batch header (journal format 2): a tag, the length of the
/// frames that follow and their crc32.
const BATCH_HEADER_BYTES: usize = 12;
const BATCH_TAG: [u8; 4] = *b"TMB2";

/// The header of a batch holding `frames`; None when they exceed the u32
/// length field (4 GiB).
pub fn batch_header(frames: &[u8]) -> Option<[u8; BATCH_HEADER_BYTES]> {
    let len = u32::try_from(frames.len()).ok()?;
    let mut header = [0; BATCH_HEADER_BYTES];
    header[..4].copy_from_slice(&BATCH_TAG);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..].copy_from_slice(&crc32fast::hash(frames).to_le_bytes());
    Some(header)
}

/// The frames of a whole, checksum-valid batch at `pos`, if there is one.
fn batch_at(bytes: &[u8], pos: usize) -> Option<&[u8]> {
    let header = bytes.get(pos..pos + BATCH_HEADER_BYTES)?;
    if header[..4] != BATCH_TAG {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    let start = pos + BATCH_HEADER_BYTES;
    let frames = bytes.get(start..start.checked_add(len)?)?;
    (len > 0 && crc32fast::hash(frames) == crc).then_some(frames)
}

/// Reads the batches of a format 2 journal (offsets are relative to the
/// start of `bytes`). The journal writes one batch per write and syncs it
/// before writing the next, so only the last batch can be torn by a crash,
/// and with the file's room written ahead any of its pages may be the ones
/// missing: a bad batch with no valid batch after it is a torn tail, one
/// followed by a valid batch is damage to acknowledged records. Zeros
/// after the last batch are room written ahead, not a tail.
pub fn scan_batches(bytes: &[u8]) -> Scan<'_> {
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(frames) = batch_at(bytes, pos) else {
            let tail = if bytes[pos..].iter().all(|&b| b == 0) {
                Tail::Clean
            } else {
                damage_at(bytes, pos, any_batch_after)
            };
            return Scan {
                payloads,
                valid_len: pos,
                tail,
            };
        };
        let start = pos + BATCH_HEADER_BYTES;
        let inner = scan(frames);
        if inner.tail != Tail::Clean {
            // The batch's checksum holds, so these are the bytes written:
            // not a torn write but a batch that was never well formed.
            return Scan {
                payloads,
                valid_len: pos,
                tail: Tail::CorruptMiddle { offset: pos },
            };
        }
        payloads.extend(inner.payloads.into_iter().map(|(at, p)| (start + at, p)));
        pos = start + frames.len();
    }
    Scan {
        payloads,
        valid_len: pos,
        tail: Tail::Clean,
    }
}

/// Whether a valid batch starts anywhere at or after `from` (recovery
/// after damage only).
fn any_batch_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(BATCH_HEADER_BYTES))
        .any(|pos| bytes[pos..pos + 4] == BATCH_TAG && batch_at(bytes, pos).is_some())
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

    fn batches(batches: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payloads in batches {
            let inner = frames(payloads);
            out.extend_from_slice(&batch_header(&inner).unwrap());
            out.extend_from_slice(&inner);
        }
        out
    }

    fn payloads<'a>(scan: &Scan<'a>) -> Vec<&'a [u8]> {
        scan.payloads.iter().map(|p| p.1).collect()
    }

    #[test]
    fn batches_read_back_and_zeros_after_them_are_room() {
        let mut buf = batches(&[&[b"one", b"two"], &[b"three"]]);
        let end = buf.len();
        let clean = scan_batches(&buf);
        assert_eq!((clean.tail.clone(), clean.valid_len), (Tail::Clean, end));
        assert_eq!(payloads(&clean), [&b"one"[..], b"two", b"three"]);
        buf.extend_from_slice(&[0; 5000]);
        let roomy = scan_batches(&buf);
        assert_eq!((roomy.tail.clone(), roomy.valid_len), (Tail::Clean, end));
        assert_eq!(payloads(&roomy).len(), 3);
        assert_eq!(scan_batches(&[0; 100]).payloads.len(), 0);
    }

    #[test]
    fn a_torn_last_batch_is_cut_whole_whichever_of_its_pages_are_missing() {
        let first = batches(&[&[b"one"]]);
        let last: &[&[u8]] = &[&[7; 3000], &[8; 3000], &[9; 3000]];
        let whole = [first.clone(), batches(&[last]), vec![0; 8192]].concat();
        let torn = |damage: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = whole.clone();
            damage(&mut buf);
            let scan = scan_batches(&buf);
            assert!(matches!(scan.tail, Tail::Torn { offset, .. } if offset == first.len()));
            assert_eq!(payloads(&scan), [&b"one"[..]]);
        };
        // Cut anywhere inside the batch; its first page lost, later ones
        // kept; its last page lost.
        for cut in (first.len() + 1..first.len() + 9000).step_by(997) {
            torn(&|buf| buf.truncate(cut));
        }
        torn(&|buf| buf[first.len()..first.len() + 4096].fill(0));
        torn(&|buf| buf[first.len() + 4096..first.len() + 8192].fill(0));
    }

    #[test]
    fn damage_before_a_valid_batch_is_corruption() {
        let mut buf = batches(&[&[b"one"], &[b"two"], &[b"three"]]);
        let second = BATCH_HEADER_BYTES + HEADER_BYTES + 3;
        buf[second + BATCH_HEADER_BYTES + HEADER_BYTES] ^= 0x20; // in "two"
        let scan = scan_batches(&buf);
        assert_eq!(scan.tail, Tail::CorruptMiddle { offset: second });
        assert_eq!(payloads(&scan), [&b"one"[..]]);
        // Its header lost instead: the same.
        let mut buf = batches(&[&[b"one"], &[b"two"], &[b"three"]]);
        buf[second..second + 4].fill(0);
        assert_eq!(
            scan_batches(&buf).tail,
            Tail::CorruptMiddle { offset: second }
        );
    }

    #[test]
    fn a_batch_whose_checksum_holds_but_whose_frames_do_not_is_corruption() {
        let inner = [frames(&[b"one"]), vec![1, 2, 3]].concat();
        let buf = [batch_header(&inner).unwrap().to_vec(), inner].concat();
        assert_eq!(scan_batches(&buf).tail, Tail::CorruptMiddle { offset: 0 });
    }
}
