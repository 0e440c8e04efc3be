//! On-disk framing, and how recovery tells a torn write from corruption.
//!
//! A frame is `[u32 LE payload length][u32 LE crc32 of payload][payload]`.
//! Format 1 journals are frames only (snapshot files use the frame too).
//! Later formats write each append as one batch of frames, synced before
//! the next batch is written. A format 3 batch is
//!
//! ```text
//! [tag "TMB3"][u32 length][u32 crc32 of the frames][u32 flags][u32 crc32 of these 16 bytes]
//! [frames: `length` bytes]
//! [u32 length][u32 crc32 of the frames][u32 flags][u32 crc32 of the header][tag "TMB3"]
//! ```
//!
//! (all little-endian): the trailer is the header again with its tag moved
//! last, a redundant copy as TigerBeetle keeps of its headers, so a batch
//! whose header was damaged is still found, checked against its records and
//! its header written back ([`Scan::repaired`]). A format 2 batch (still
//! read) is `[tag "TMB2"][u32 length][u32 crc32]` and its frames.
//!
//! A batch that does not verify was either torn (the write a crash
//! interrupted: its sync never returned, so nothing in it was acknowledged,
//! and it is safe to cut) or damaged after it was written (its records may
//! have been acknowledged: recovery must refuse, not cut). Only the last
//! batch can be torn, so damage with a valid batch after it is corruption.
//! For the last one the evidence is what a torn write leaves behind: a
//! disk writes a sector (512 bytes, or a multiple) whole or not at all, and
//! the journal writes only into zeros (written ahead, or past the file's
//! end), so a write cut short runs past the end of the file or leaves its
//! whole part of some sector reading as zeros. A batch showing neither was
//! written whole, and if it does not verify, it was damaged since.
//!
//! For zeros to prove a torn write, a written part must never read as
//! zeros. In a format 3 batch each sector's part holds a tag byte or at
//! least [`DENSE_BITS_MIN`] set bits (so a couple of flipped bits cannot
//! blank it), or else the writer sets the batch's `SPARSE` flag and
//! recovery then trusts only zeros where a tag byte belongs. The header's
//! own checksum makes its length trustworthy. Formats 1 and 2 have neither,
//! so their torn tails are still cut, but not claimed never acknowledged.
//! What no format tells apart without a second sync per batch: an
//! acknowledged last batch a sector of which later reads as zeros (a write
//! the disk lost) looks torn.

use std::fmt;
use std::ops::Range;

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

/// Bytes a disk writes whole or not at all, at the least (a sector).
pub const SECTOR_BYTES: usize = 512;
/// Set bits a sector's part of a format 3 batch holds at least, unless it
/// holds a tag byte or the batch is flagged `SPARSE`: fewer flipped bits
/// than this cannot make a written part read as zeros.
const DENSE_BITS_MIN: u32 = 3;

/// What a scan found after the last valid frame or batch. Offsets count
/// from the start of the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The bytes end after a valid frame or batch (or, for batches, in zeros).
    Clean,
    /// The last write was cut short by a crash (`unwritten` shows the part
    /// of it that never reached the disk): everything from `offset`
    /// (`bytes` bytes) is to be cut. `certain`: the layout proves those
    /// bytes were meant to hold data (format 3), so the write's sync never
    /// returned and it was never acknowledged; older layouts make that
    /// likely, not certain.
    Torn {
        offset: usize,
        bytes: usize,
        unwritten: Unwritten,
        certain: bool,
    },
    /// The last write reached the disk whole (no part of it is missing)
    /// but does not verify: it was damaged after it was written, and its
    /// records may have been acknowledged. It spans `offset..end`.
    CorruptLast {
        offset: usize,
        end: usize,
        damage: Damage,
    },
    /// A damaged frame or batch with valid ones after it: acknowledged data is lost.
    CorruptMiddle { offset: usize },
}

/// The part of a torn write that never reached the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritten {
    /// The write runs past the end of the file, to `end`.
    PastEnd { end: usize },
    /// Bytes `from..to`, the write's whole part of one sector, are zeros.
    Zeros { from: usize, to: usize },
}

impl fmt::Display for Unwritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unwritten::PastEnd { end } => {
                write!(f, "it runs past the end of the file, to byte {end}")
            }
            Unwritten::Zeros { from, to } => write!(
                f,
                "its bytes {from}..{to}, all of its part of one disk sector, are zeros"
            ),
        }
    }
}

/// How a last write that reached the disk whole fails to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The record (frame) at `offset` fails its checksum.
    Record { offset: usize },
    /// Its header does not verify, nor does any copy of it.
    Header,
    /// Each of its records verifies, but not against its header's length
    /// and checksum (a damaged field of a header that has no checksum).
    HeaderFields,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Record { offset } => {
                write!(f, "the record at byte {offset} fails its checksum")
            }
            Damage::Header => write!(f, "its header does not verify, nor does any copy of it"),
            Damage::HeaderFields => write!(
                f,
                "each of its records verifies, but its header's length or checksum does not match them"
            ),
        }
    }
}

#[derive(Debug)]
pub struct Scan<'a> {
    /// Each valid record's payload, with the offset of its frame.
    pub payloads: Vec<(usize, &'a [u8])>,
    /// Where the valid frames or batches end.
    pub valid_len: usize,
    pub tail: Tail,
    /// Batches whose header was damaged but whose records the copy of the
    /// header after them verified: the header to write back, and where.
    pub repaired: Vec<Repair>,
    /// Batch boundaries at least [`MARK_EVERY_BYTES`] apart, as (records
    /// before it, offset), ascending: where a later read of the file can
    /// start scanning again (format 3 only; empty for frames).
    pub marks: Vec<(usize, usize)>,
}

/// Bytes between two marks at least: a read from a position scans at most
/// this much besides what it reads, and a journal keeps one mark per this
/// many bytes in memory.
pub const MARK_EVERY_BYTES: usize = 256 * 1024;

/// A batch header to write back over a damaged one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub offset: usize,
    pub header: [u8; BATCH_HEADER_BYTES],
}

/// Reads format 1 frames from the start of `bytes`.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    scan_from(bytes, 0)
}

/// Reads format 1 frames from `bytes[start..]`; offsets, and the sectors
/// recovery judges a damaged last frame by, count from the start of `bytes`.
pub fn scan_from(bytes: &[u8], start: usize) -> Scan<'_> {
    let mut payloads = Vec::new();
    let mut pos = start;
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
                    last_frame(bytes, pos)
                };
                return Scan {
                    payloads,
                    valid_len: pos,
                    tail,
                    repaired: Vec::new(),
                    marks: Vec::new(),
                };
            }
        }
    }
    Scan {
        payloads,
        valid_len: pos,
        tail: Tail::Clean,
        repaired: Vec::new(),
        marks: Vec::new(),
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

/// The damaged last frame at `pos` (nothing valid after it): torn if it
/// runs past the end or a sector's part of it is zeros, else damaged after
/// it was written. Format 1 cannot prove the first (its length has no
/// checksum, its payload may hold zeros).
fn last_frame(bytes: &[u8], pos: usize) -> Tail {
    let Some(header) = bytes.get(pos..pos + HEADER_BYTES) else {
        // Cut by the end of the file: whatever it says, the write that
        // began here did not end (an acknowledged write is all in the file).
        let end = pos + HEADER_BYTES;
        return torn(bytes, pos, Unwritten::PastEnd { end }, true);
    };
    let (len, _) = read_header(header.try_into().expect("a frame header"));
    let plausible = (1..=PAYLOAD_BYTES_MAX).contains(&len);
    // With a length that cannot be, only the header is known to be the write's.
    let end = pos + HEADER_BYTES + if plausible { len } else { 0 };
    if end > bytes.len() {
        return torn(bytes, pos, Unwritten::PastEnd { end }, false);
    }
    match blank_part(bytes, pos..end, |_| true) {
        Some(zeros) => torn(bytes, pos, zeros, false),
        None => Tail::CorruptLast {
            offset: pos,
            end,
            damage: if plausible {
                Damage::Record { offset: pos }
            } else {
                Damage::Header
            },
        },
    }
}

/// Cuts everything from `offset`.
fn torn(bytes: &[u8], offset: usize, unwritten: Unwritten, certain: bool) -> Tail {
    Tail::Torn {
        offset,
        bytes: bytes.len() - offset,
        unwritten,
        certain,
    }
}

/// The first part of `range` inside one sector (sectors counted from the
/// start of `bytes`) that `counts` accepts and that reads as all zeros.
/// Only parts within `bytes` are looked at.
fn blank_part(
    bytes: &[u8],
    range: Range<usize>,
    counts: impl Fn(&Range<usize>) -> bool,
) -> Option<Unwritten> {
    let end = range.end.min(bytes.len());
    let mut from = range.start;
    while from < end {
        let to = ((from / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if counts(&(from..to)) && bytes[from..to].iter().all(|&b| b == 0) {
            return Some(Unwritten::Zeros { from, to });
        }
        from = to;
    }
    None
}

/// Bytes of a format 3 batch header, and of its trailer (the same fields).
pub const BATCH_HEADER_BYTES: usize = 20;
const TRAILER_BYTES: usize = BATCH_HEADER_BYTES;
const TAG: [u8; 4] = *b"TMB3";
/// Flag: some sector's part of the batch holds no tag byte and fewer than
/// [`DENSE_BITS_MIN`] set bits, so zeros there do not prove a torn write.
const FLAG_SPARSE: u32 = 1;
/// A format 2 batch: a tag, the length of the frames and their crc32.
const TAG_V2: [u8; 4] = *b"TMB2";
const BATCH_HEADER_V2_BYTES: usize = 12;

/// What a format 3 batch header holds besides its tag and own checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    len: u32,
    crc: u32,
    flags: u32,
}

impl Fields {
    fn header(self) -> [u8; BATCH_HEADER_BYTES] {
        let mut header = [0; BATCH_HEADER_BYTES];
        header[..4].copy_from_slice(&TAG);
        header[4..8].copy_from_slice(&self.len.to_le_bytes());
        header[8..12].copy_from_slice(&self.crc.to_le_bytes());
        header[12..16].copy_from_slice(&self.flags.to_le_bytes());
        let check = crc32fast::hash(&header[..16]);
        header[16..].copy_from_slice(&check.to_le_bytes());
        header
    }

    /// The header with its tag moved last: the tag then ends every batch
    /// too, so the last sector's part of a batch is never zeros once written.
    fn trailer(self) -> [u8; TRAILER_BYTES] {
        let header = self.header();
        let mut trailer = [0; TRAILER_BYTES];
        trailer[..16].copy_from_slice(&header[4..]);
        trailer[16..].copy_from_slice(&TAG);
        trailer
    }

    /// The fields of a format 3 header, if it is one and its checksum holds.
    fn read(header: &[u8]) -> Option<Fields> {
        let header: &[u8; BATCH_HEADER_BYTES] = header.try_into().ok()?;
        if header[..4] != TAG {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        (crc32fast::hash(&header[..16]) == word(16)).then(|| Fields {
            len: word(4),
            crc: word(8),
            flags: word(12),
        })
    }

    fn read_trailer(trailer: &[u8]) -> Option<Fields> {
        let trailer: &[u8; TRAILER_BYTES] = trailer.try_into().ok()?;
        let mut header = [0; BATCH_HEADER_BYTES];
        header[..4].copy_from_slice(&trailer[16..]);
        header[4..].copy_from_slice(&trailer[..16]);
        Fields::read(&header)
    }
}

/// Appends `frames` to `out` as one format 3 batch that will be written at
/// file offset `at` (the sectors it will span decide its `SPARSE` flag).
/// None when the frames exceed the u32 length field (4 GiB); no frames
/// make no batch.
pub fn encode_batch(frames: &[u8], at: u64, out: &mut Vec<u8>) -> Option<()> {
    if frames.is_empty() {
        return Some(());
    }
    let fields = Fields {
        len: u32::try_from(frames.len()).ok()?,
        crc: crc32fast::hash(frames),
        flags: if sparse(frames, at) { FLAG_SPARSE } else { 0 },
    };
    out.extend_from_slice(&fields.header());
    out.extend_from_slice(frames);
    out.extend_from_slice(&fields.trailer());
    Some(())
}

/// Whether some sector's part of the batch of `frames` written at `at`
/// holds no tag byte and fewer than [`DENSE_BITS_MIN`] set bits. Only the
/// frames' bits are counted (the header's other fields only add bits): a
/// sector part without frames lies within the header or the trailer, and
/// holds a tag byte, as both are shorter than a sector. Cheap: a part's
/// count stops at its first few set bits, typically one byte.
fn sparse(frames: &[u8], at: u64) -> bool {
    let sector = SECTOR_BYTES as u64;
    let frames_at = at + BATCH_HEADER_BYTES as u64;
    let header_tag_end = at + TAG.len() as u64;
    let trailer_tag_at = frames_at + (frames.len() + TRAILER_BYTES - TAG.len()) as u64;
    let mut from = 0;
    while from < frames.len() {
        let offset = frames_at + from as u64;
        let sector_start = offset - offset % sector;
        let sector_end = sector_start + sector;
        let to = frames.len().min(from + (sector_end - offset) as usize);
        let has_tag = sector_start < header_tag_end || sector_end > trailer_tag_at;
        if !has_tag && !dense(&frames[from..to]) {
            return true;
        }
        from = to;
    }
    false
}

fn dense(part: &[u8]) -> bool {
    let mut bits = 0;
    part.iter().any(|b| {
        bits += b.count_ones();
        bits >= DENSE_BITS_MIN
    })
}

/// Where a batch lies and what it holds, as its header (or the copy of its
/// header after it) says.
#[derive(Debug, Clone, Copy)]
struct Extent {
    start: usize,
    frames_at: usize,
    fields: Fields,
    end: usize,
    /// A format 3 batch (checksummed header, flags, trailer).
    format3: bool,
}

impl Extent {
    fn format3(start: usize, fields: Fields) -> Extent {
        let frames_at = start + BATCH_HEADER_BYTES;
        Extent {
            start,
            frames_at,
            fields,
            end: frames_at + fields.len as usize + TRAILER_BYTES,
            format3: true,
        }
    }

    fn frames_end(&self) -> usize {
        self.frames_at + self.fields.len as usize
    }

    /// Whether all of it is there and its frames match its checksum (a
    /// trailer is only read when a header is not).
    fn verifies(&self, bytes: &[u8]) -> bool {
        self.fields.len > 0
            && self.end <= bytes.len()
            && crc32fast::hash(&bytes[self.frames_at..self.frames_end()]) == self.fields.crc
    }

    /// Whether zeros in this sector part of the batch prove it torn: any
    /// part of a batch not flagged sparse, else only a part with a tag byte.
    fn proves_torn(&self, part: &Range<usize>) -> bool {
        if self.fields.flags & FLAG_SPARSE == 0 {
            return true;
        }
        let tags = [
            self.start..self.start + TAG.len(),
            self.end - TAG.len()..self.end,
        ];
        tags.iter()
            .any(|t| part.start < t.end && t.start < part.end)
    }
}

/// The batch as its header at `pos` says: a format 3 header whose checksum
/// holds, or a format 2 tag (whose length and checksum nothing checks).
fn by_header(bytes: &[u8], pos: usize) -> Option<Extent> {
    if let Some(fields) = bytes
        .get(pos..pos + BATCH_HEADER_BYTES)
        .and_then(Fields::read)
    {
        return Some(Extent::format3(pos, fields));
    }
    let header = bytes.get(pos..pos + BATCH_HEADER_V2_BYTES)?;
    if header[..4] != TAG_V2 {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let fields = Fields {
        len: word(4),
        crc: word(8),
        flags: 0,
    };
    let frames_at = pos + BATCH_HEADER_V2_BYTES;
    Some(Extent {
        start: pos,
        frames_at,
        fields,
        end: frames_at + fields.len as usize,
        format3: false,
    })
}

/// The format 3 batch starting at `pos` as the copy of its header after it
/// says: the first trailer whose length puts its batch's start at `pos`.
/// A search to the end of the bytes at worst: recovery after damage only.
fn by_trailer(bytes: &[u8], pos: usize) -> Option<Extent> {
    let first = pos + BATCH_HEADER_BYTES + 1;
    let last = bytes.len().checked_sub(TRAILER_BYTES)?;
    (first..=last).find_map(|at| {
        if bytes[at + TRAILER_BYTES - TAG.len()..at + TRAILER_BYTES] != TAG {
            return None;
        }
        let fields = Fields::read_trailer(&bytes[at..at + TRAILER_BYTES])?;
        (at - pos - BATCH_HEADER_BYTES == fields.len as usize).then(|| Extent::format3(pos, fields))
    })
}

/// Reads the batches at the start of `bytes`.
pub fn scan_batches(bytes: &[u8]) -> Scan<'_> {
    scan_batches_from(bytes, 0)
}

/// Reads the batches of a journal of format 2 or 3 from `bytes[start..]`;
/// offsets, and sectors, count from the start of `bytes`. Zeros after the
/// last batch are room written ahead, not a tail. See the module doc for
/// how a damaged batch is judged.
pub fn scan_batches_from(bytes: &[u8], start: usize) -> Scan<'_> {
    let mut scan = Scan {
        payloads: Vec::new(),
        valid_len: start,
        tail: Tail::Clean,
        repaired: Vec::new(),
        marks: Vec::new(),
    };
    let mut pos = start;
    let mut last_mark = start;
    while pos < bytes.len() {
        let (batch, repair) = match by_header(bytes, pos).filter(|b| b.verifies(bytes)) {
            Some(batch) => (batch, None),
            // Before any search: zeros to the end are the room written ahead.
            None if bytes[pos..].iter().all(|&b| b == 0) => break,
            None => match by_trailer(bytes, pos).filter(|b| b.verifies(bytes)) {
                Some(batch) => (batch, Some(batch.fields.header())),
                None => {
                    scan.tail = if any_batch_after(bytes, pos + 1) {
                        Tail::CorruptMiddle { offset: pos }
                    } else {
                        last_batch(bytes, pos)
                    };
                    break;
                }
            },
        };
        let inner = scan_from(&bytes[..batch.frames_end()], batch.frames_at);
        if inner.tail != Tail::Clean {
            // The batch's checksum holds, so these are the bytes written:
            // not a torn write but a batch that was never well formed.
            scan.tail = Tail::CorruptMiddle { offset: pos };
            break;
        }
        if let Some(header) = repair {
            scan.repaired.push(Repair {
                offset: pos,
                header,
            });
        }
        scan.payloads.extend(inner.payloads);
        pos = batch.end;
        scan.valid_len = pos;
        if pos - last_mark >= MARK_EVERY_BYTES {
            scan.marks.push((scan.payloads.len(), pos));
            last_mark = pos;
        }
    }
    scan
}

/// Whether a valid batch starts anywhere at or after `from`, found by its
/// header or by its trailer (recovery after damage only).
fn any_batch_after(bytes: &[u8], from: usize) -> bool {
    let verified = |batch: Option<Extent>| batch.is_some_and(|b| b.verifies(bytes));
    let Some(last) = bytes.len().checked_sub(TAG.len()) else {
        return false;
    };
    (from..=last).any(|at| {
        let tag = &bytes[at..at + TAG.len()];
        if tag == TAG_V2 {
            return verified(by_header(bytes, at));
        }
        if tag != TAG {
            return false;
        }
        // A header here, or the tag that ends a trailer.
        let ending_here = || {
            let trailer_at = (at + TAG.len()).checked_sub(TRAILER_BYTES)?;
            let fields = Fields::read_trailer(bytes.get(trailer_at..at + TAG.len())?)?;
            let start = trailer_at.checked_sub(BATCH_HEADER_BYTES + fields.len as usize)?;
            (start >= from).then(|| Extent::format3(start, fields))
        };
        verified(by_header(bytes, at)) || verified(ending_here())
    })
}

/// The damaged last batch at `pos` (no valid batch after it, not all
/// zeros): torn if part of it provably never reached the disk, else
/// damaged after it was written.
fn last_batch(bytes: &[u8], pos: usize) -> Tail {
    let header = by_header(bytes, pos);
    let Some(batch) = header.or_else(|| by_trailer(bytes, pos)) else {
        return unreadable_header(bytes, pos);
    };
    let unwritten = if batch.end > bytes.len() {
        Some(Unwritten::PastEnd { end: batch.end })
    } else {
        // A torn write is followed by the zeros it was written into.
        blank_part(bytes, pos..batch.end, |part| batch.proves_torn(part))
            .filter(|_| bytes[batch.end..].iter().all(|&b| b == 0))
    };
    // A format 2 length has no checksum: records that verify up to a
    // shorter length matching the batch's checksum were written whole,
    // and its length was damaged since.
    let length_damaged = !batch.format3 && whole_before(bytes, &batch).is_some();
    let damage = if length_damaged {
        Damage::HeaderFields
    } else if let Some(unwritten) = unwritten {
        return torn(bytes, pos, unwritten, batch.format3);
    } else {
        damage_in(bytes, &batch, header.is_some())
    };
    Tail::CorruptLast {
        offset: pos,
        end: batch.end.min(bytes.len()),
        damage,
    }
}

/// Where the records of a format 2 batch end, when they verify one by one
/// and together match its checksum, short of or past the end its length says.
fn whole_before(bytes: &[u8], batch: &Extent) -> Option<usize> {
    let mut end = batch.frames_at;
    while let Some(payload) = frame_at(bytes, end) {
        end += HEADER_BYTES + payload.len();
    }
    (end > batch.frames_at
        && end != batch.frames_end()
        && crc32fast::hash(&bytes[batch.frames_at..end]) == batch.fields.crc)
        .then_some(end)
}

/// What is wrong with a batch written whole: its first record that fails
/// its checksum, or else its header.
fn damage_in(bytes: &[u8], batch: &Extent, header_read: bool) -> Damage {
    let frames = &bytes[..batch.frames_end().min(bytes.len())];
    let mut at = batch.frames_at;
    while at < frames.len() {
        match frame_at(frames, at) {
            Some(payload) => at += HEADER_BYTES + payload.len(),
            None => return Damage::Record { offset: at },
        }
    }
    if header_read {
        Damage::HeaderFields
    } else {
        Damage::Header
    }
}

/// A last batch whose header does not read and has no copy that reads:
/// torn if a sector part of the header is zeros (its first part holds the
/// tag, so it is never zeros once written: zeros there prove the write cut
/// short), or if the end of the file cuts it; else damaged.
fn unreadable_header(bytes: &[u8], pos: usize) -> Tail {
    let end = pos + BATCH_HEADER_BYTES;
    if let Some(zeros) = blank_part(bytes, pos..end, |_| true) {
        let certain = matches!(zeros, Unwritten::Zeros { from, .. } if from == pos);
        return torn(bytes, pos, zeros, certain);
    }
    if end > bytes.len() {
        // Cut by the end of the file: the write did not end.
        return torn(bytes, pos, Unwritten::PastEnd { end }, true);
    }
    Tail::CorruptLast {
        offset: pos,
        end,
        damage: Damage::Header,
    }
}

/// Appends `frames` as one format 2 batch (as journals before format 3
/// wrote them), for tests of reading them.
#[cfg(test)]
pub(crate) fn encode_batch_v2(frames: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(frames.len()).expect("a test batch");
    out.extend_from_slice(&TAG_V2);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(frames).to_le_bytes());
    out.extend_from_slice(frames);
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
            // The header cut: certain. The length read: it has no checksum.
            let (end, certain) = if cut < 19 {
                (19, true)
            } else {
                (buf.len(), false)
            };
            assert_eq!(
                scan.tail,
                Tail::Torn {
                    offset: 11,
                    bytes: cut - 11,
                    unwritten: Unwritten::PastEnd { end },
                    certain,
                },
                "cut at {cut}"
            );
        }
        let mut zeros = frames(&[b"one"]);
        zeros.extend_from_slice(&[0; 4096]);
        assert_eq!(
            scan(&zeros).tail,
            Tail::Torn {
                offset: 11,
                bytes: 4096,
                unwritten: Unwritten::Zeros { from: 11, to: 19 },
                certain: false,
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
    fn a_damaged_last_frame_written_whole_is_corruption_not_a_torn_tail() {
        let mut buf = frames(&[b"one", b"two"]);
        let last = buf.len() - 1;
        buf[last] ^= 0x01;
        assert_eq!(
            scan(&buf).tail,
            Tail::CorruptLast {
                offset: 11,
                end: 22,
                damage: Damage::Record { offset: 11 },
            }
        );
    }

    /// Format 3 batches of `payloads`, laid out from offset 0.
    fn batches(batches: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payloads in batches {
            encode_batch(&frames(payloads), out.len() as u64, &mut out).unwrap();
        }
        out
    }

    fn payloads<'a>(scan: &Scan<'a>) -> Vec<&'a [u8]> {
        scan.payloads.iter().map(|p| p.1).collect()
    }

    /// The bytes of batch `n` among those `bytes` hold (none damaged).
    fn batch_range(bytes: &[u8], n: usize) -> Range<usize> {
        let mut start = 0;
        for _ in 0..n {
            start = by_header(bytes, start).unwrap().end;
        }
        start..by_header(bytes, start).unwrap().end
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
        assert!(roomy.repaired.is_empty());
    }

    /// A first batch, then a last one of three records over several
    /// sectors, then room: the last batch's range, and the bytes.
    fn with_a_long_last_batch() -> (Range<usize>, Vec<u8>) {
        let last: &[&[u8]] = &[&[7; 3000], &[8; 3000], &[9; 3000]];
        let mut whole = batches(&[&[b"one"], last]);
        let range = batch_range(&whole, 1);
        whole.extend_from_slice(&[0; 8192]);
        (range, whole)
    }

    #[test]
    fn a_torn_last_batch_is_cut_whole_whichever_of_its_sectors_are_missing() {
        let (last, whole) = with_a_long_last_batch();
        let torn = |damage: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = whole.clone();
            damage(&mut buf);
            let scan = scan_batches(&buf);
            assert!(
                matches!(scan.tail, Tail::Torn { offset, certain: true, .. } if offset == last.start),
                "{:?}",
                scan.tail
            );
            assert_eq!(payloads(&scan), [&b"one"[..]]);
        };
        // Cut anywhere inside the batch (its length runs past the end).
        for cut in (last.start + 1..last.end).step_by(997) {
            torn(&|buf| buf.truncate(cut));
        }
        // Its first page lost, later ones kept; a middle sector lost; its
        // last sector lost (the trailer); everything after the header lost.
        torn(&|buf| buf[last.start..4096].fill(0));
        torn(&|buf| buf[4096..4608].fill(0));
        torn(&|buf| buf[(last.end - 1) / 512 * 512..last.end].fill(0));
        torn(&|buf| buf[last.start + BATCH_HEADER_BYTES..].fill(0));
    }

    #[test]
    fn a_whole_last_batch_with_a_flipped_bit_is_corruption_not_a_torn_tail() {
        let (last, whole) = with_a_long_last_batch();
        let record = last.start + BATCH_HEADER_BYTES;
        for at in [
            record + HEADER_BYTES + 5,
            record + 3008 + 2999,
            last.end - 25,
        ] {
            let mut buf = whole.clone();
            buf[at] ^= 0x10;
            let scan = scan_batches(&buf);
            let Tail::CorruptLast {
                offset,
                end,
                damage,
            } = scan.tail
            else {
                panic!("byte {at} flipped: {:?}", scan.tail);
            };
            assert_eq!((offset, end), (last.start, last.end));
            assert!(matches!(damage, Damage::Record { .. }), "{damage:?}");
            assert_eq!(payloads(&scan), [&b"one"[..]]);
        }
        // Without the room after it too (a file that grew with each write).
        let mut buf = whole[..last.end].to_vec();
        buf[record + HEADER_BYTES] ^= 0x01;
        assert!(matches!(
            scan_batches(&buf).tail,
            Tail::CorruptLast {
                damage: Damage::Record { offset },
                ..
            } if offset == record
        ));
    }

    #[test]
    fn no_flipped_bit_in_a_whole_last_batch_is_cut_and_no_torn_one_is_kept_damaged() {
        let last: &[&[u8]] = &[&[3; 700], b"two", &[0x80; 400]];
        let mut whole = batches(&[&[b"one"], last]);
        let range = batch_range(&whole, 1);
        whole.extend_from_slice(&[0; 1024]);
        let all = payloads(&scan_batches(&whole));
        // Every bit of it (header, records, trailer): refused, or written
        // back from the header's copy; never cut.
        for at in range.clone() {
            for bit in 0..8 {
                let mut buf = whole.clone();
                buf[at] ^= 1 << bit;
                let scan = scan_batches(&buf);
                match scan.tail {
                    Tail::Clean => assert_eq!(payloads(&scan), all, "byte {at} bit {bit}"),
                    Tail::CorruptLast { offset, .. } => assert_eq!(offset, range.start),
                    other => panic!("byte {at} bit {bit}: {other:?}"),
                }
            }
        }
        // Any of its sectors never written, or the file cut inside it:
        // cut as certainly torn, or kept whole (only its trailer missing).
        let torn = |buf: &[u8], how: &str| {
            let scan = scan_batches(buf);
            match scan.tail {
                Tail::Torn {
                    offset,
                    certain: true,
                    ..
                } => assert_eq!((offset, scan.payloads.len()), (range.start, 1), "{how}"),
                Tail::Clean => assert_eq!(payloads(&scan), all, "{how}"),
                other => panic!("{how}: {other:?}"),
            }
        };
        for sector in range.start / SECTOR_BYTES..range.end.div_ceil(SECTOR_BYTES) {
            let mut buf = whole.clone();
            let part = (sector * SECTOR_BYTES).max(range.start)
                ..((sector + 1) * SECTOR_BYTES).min(range.end);
            buf[part.clone()].fill(0);
            torn(&buf, &format!("{part:?} zeros"));
        }
        for cut in range.start + 1..range.end {
            torn(&whole[..cut], &format!("cut at {cut}"));
        }
    }

    #[test]
    fn a_damaged_header_is_rewritten_from_its_copy_after_the_batch() {
        let (last, whole) = with_a_long_last_batch();
        let expected = scan_batches(&whole);
        for at in [0, 5, last.start + 2, last.start + 9, last.start + 17] {
            let mut buf = whole.clone();
            buf[at] ^= 0x04;
            let scan = scan_batches(&buf);
            assert_eq!(scan.tail, Tail::Clean, "byte {at} flipped");
            assert_eq!(payloads(&scan), payloads(&expected));
            let [repair] = &scan.repaired[..] else {
                panic!("{:?}", scan.repaired);
            };
            let start = if at < last.start { 0 } else { last.start };
            assert_eq!(repair.offset, start);
            assert_eq!(
                repair.header[..],
                whole[start..start + BATCH_HEADER_BYTES],
                "the header as written"
            );
        }
        // A damaged trailer is not needed while the header reads.
        let mut buf = whole.clone();
        buf[last.end - 10] ^= 0x04;
        let scan = scan_batches(&buf);
        assert_eq!((scan.tail, scan.repaired.len()), (Tail::Clean, 0));
        // Header and a record both damaged: corrupt, with or without a
        // batch after it.
        let mut buf = whole.clone();
        buf[last.start + 5] ^= 0x04;
        buf[last.start + 100] ^= 0x04;
        assert!(matches!(
            scan_batches(&buf).tail,
            Tail::CorruptLast { offset, .. } if offset == last.start
        ));
        let mut buf = whole[..last.end].to_vec();
        buf.extend_from_slice(&batches(&[&[b"after"]]));
        buf[5] ^= 0x04;
        buf[30] ^= 0x04;
        assert_eq!(scan_batches(&buf).tail, Tail::CorruptMiddle { offset: 0 });
        // The batch after it known by the copy of its header alone, at the
        // very end of the file: still a valid batch after the damage.
        let mut buf = whole[..last.end].to_vec();
        buf[5] ^= 0x04;
        buf[30] ^= 0x04;
        buf[last.start + 5] ^= 0x04;
        assert_eq!(scan_batches(&buf).tail, Tail::CorruptMiddle { offset: 0 });
    }

    #[test]
    fn zeros_in_a_batch_that_holds_zeros_prove_nothing_but_at_its_tags() {
        let sparse_records: &[&[u8]] = &[&[0; 2000], &[1; 10]];
        let dense_records: &[&[u8]] = &[&[1; 2000], &[1; 10]];
        let mut flagged = Vec::new();
        encode_batch(&frames(sparse_records), 0, &mut flagged).unwrap();
        assert_eq!(by_header(&flagged, 0).unwrap().fields.flags, FLAG_SPARSE);
        let mut plain = Vec::new();
        encode_batch(&frames(dense_records), 0, &mut plain).unwrap();
        assert_eq!(by_header(&plain, 0).unwrap().fields.flags, 0);
        // A bit flipped in a flagged batch, whose records hold whole
        // sectors of zeros: still corruption.
        let mut whole = flagged.clone();
        whole.extend_from_slice(&[0; 4096]);
        let mut buf = whole.clone();
        buf[flagged.len() - 30] ^= 0x01;
        assert!(
            matches!(scan_batches(&buf).tail, Tail::CorruptLast { .. }),
            "{:?}",
            scan_batches(&buf).tail
        );
        // Its trailer's sector missing, or its length past the end: torn.
        let mut buf = whole.clone();
        buf[flagged.len() - 36..flagged.len()].fill(0);
        assert!(matches!(
            scan_batches(&buf).tail,
            Tail::Torn { certain: true, .. }
        ));
        assert!(matches!(
            scan_batches(&whole[..flagged.len() - 1]).tail,
            Tail::Torn { certain: true, .. }
        ));
    }

    #[test]
    fn the_sparse_flag_counts_the_sectors_the_batch_will_be_written_over() {
        let flags = |payload: &[u8], at: u64| {
            let mut out = Vec::new();
            encode_batch(&frames(&[payload]), at, &mut out).unwrap();
            Fields::read(&out[..BATCH_HEADER_BYTES]).unwrap().flags
        };
        // 700 bytes of ones, 600 of zeros, 700 of ones: the zeros are at
        // file offsets at+728..at+1328.
        let inner = [vec![1u8; 700], vec![0; 600], vec![1; 700]].concat();
        assert_eq!(flags(&inner, 0), 0, "no whole sector inside the zeros");
        assert_eq!(flags(&inner, 296), FLAG_SPARSE, "1024..1536 is zeros");
        assert_eq!(flags(&inner, 298), FLAG_SPARSE, "two set bits in it");
        assert_eq!(flags(&inner, 299), 0, "three set bits in it");
        // Zeros to the end of the frames: their sector holds the trailer's tag.
        let last = [vec![1u8; 700], vec![0; 600]].concat();
        assert_eq!(flags(&last, 0), 0);
        assert_eq!(flags(&last, 296), FLAG_SPARSE);
    }

    #[test]
    fn damage_before_a_valid_batch_is_corruption() {
        let mut buf = batches(&[&[b"one"], &[b"two"], &[b"three"]]);
        let second = batch_range(&buf, 1).start;
        buf[second + BATCH_HEADER_BYTES + HEADER_BYTES] ^= 0x20; // in "two"
        let scan = scan_batches(&buf);
        assert_eq!(scan.tail, Tail::CorruptMiddle { offset: second });
        assert_eq!(payloads(&scan), [&b"one"[..]]);
        // Its header and its trailer lost instead: the same.
        let mut buf = batches(&[&[b"one"], &[b"two"], &[b"three"]]);
        let end = batch_range(&buf, 1).end;
        buf[second..second + 4].fill(0);
        buf[end - 4..end].fill(0);
        assert_eq!(
            scan_batches(&buf).tail,
            Tail::CorruptMiddle { offset: second }
        );
    }

    #[test]
    fn a_batch_whose_checksum_holds_but_whose_frames_do_not_is_corruption() {
        let inner = [frames(&[b"one"]), vec![1, 2, 3]].concat();
        let mut buf = Vec::new();
        encode_batch(&inner, 0, &mut buf).unwrap();
        assert_eq!(scan_batches(&buf).tail, Tail::CorruptMiddle { offset: 0 });
    }

    #[test]
    fn format_2_batches_read_back_and_their_damaged_last_one_is_judged_as_well_as_they_allow() {
        let mut v2 = Vec::new();
        encode_batch_v2(&frames(&[b"one"]), &mut v2);
        let second = v2.len();
        encode_batch_v2(&frames(&[&[5; 1000], b"two"]), &mut v2);
        let end = v2.len();
        v2.extend_from_slice(&[0; 4096]);
        // Format 3 batches may follow (a journal upgraded in place).
        let mut upgraded = v2[..end].to_vec();
        encode_batch(&frames(&[b"three"]), end as u64, &mut upgraded).unwrap();
        let scan = scan_batches(&upgraded);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(payloads(&scan).len(), 4);
        // Cut short, or a sector of it zeros: torn, but not certain.
        for buf in [v2[..end - 1].to_vec(), {
            let mut b = v2.clone();
            b[1024..1536].fill(0);
            b
        }] {
            let tail = scan_batches(&buf).tail;
            assert!(
                matches!(tail, Tail::Torn { offset, certain: false, .. } if offset == second),
                "{tail:?}"
            );
        }
        // A flipped bit in a record written whole: corruption.
        let mut buf = v2.clone();
        buf[second + 400] ^= 0x02;
        assert!(matches!(
            scan_batches(&buf).tail,
            Tail::CorruptLast {
                damage: Damage::Record { .. },
                ..
            }
        ));
        // Its length grown by a flipped bit, so it seems to run into the
        // zeros after it: its records still match its checksum, so it is
        // a damaged length, not a write cut short.
        let mut buf = v2.clone();
        buf[second + 5] ^= 0x08;
        assert_eq!(
            scan_batches(&buf).tail,
            Tail::CorruptLast {
                offset: second,
                end: second + BATCH_HEADER_V2_BYTES + (end - second - 12) + 2048,
                damage: Damage::HeaderFields,
            }
        );
    }

    #[test]
    fn a_header_cut_by_the_end_of_the_file_or_never_written_is_torn() {
        let buf = batches(&[&[b"one"], &[b"two"]]);
        let second = batch_range(&buf, 1).start;
        for cut in second + 1..second + BATCH_HEADER_BYTES {
            let tail = scan_batches(&buf[..cut]).tail;
            assert!(
                matches!(tail, Tail::Torn { offset, .. } if offset == second),
                "cut at {cut}: {tail:?}"
            );
        }
        // Garbage where a header should be, not zeros: corruption.
        let mut buf = buf[..second].to_vec();
        buf.extend_from_slice(&[0xa5; 30]);
        buf.extend_from_slice(&[0; 1000]);
        assert!(matches!(
            scan_batches(&buf).tail,
            Tail::CorruptLast {
                damage: Damage::Header,
                ..
            }
        ));
    }
}
