//! Reading fMP4 back: init segments into [`Track`]s, `moof`+`mdat` fragments into [`Frame`]s.
//!
//! An edge that follows an origin's LL-HLS (see the edge crate's `relay`) reads the origin's
//! init segments and parts with this module and packages the frames again, exactly as if a
//! publisher had sent them. It reads what this crate writes and what common CMAF packagers
//! write: `tfhd` with or without defaults, `trex` defaults, `trun` version 0 or 1 with any of
//! its optional fields, several `traf`s per `moof`.
//!
//! Nothing is copied: a frame's payload is a slice of the fragment's `Bytes`. Every length and
//! offset comes from a peer, so each is checked against the bytes actually there, and a
//! fragment or box larger than [`MAX_BOX`] is refused before it is buffered.

use bytes::Bytes;
use zerocast_core::codec::{aac::AacConfig, av1::Av1Config, avc::AvcConfig, hevc::HevcConfig};
use zerocast_core::{AudioCodec, Frame, Timescale, Timestamp, Track, TrackId, VideoCodec};

use crate::fmp4::{
    SAMPLE_IS_NON_SYNC, TFHD_BASE_DATA_OFFSET, TFHD_DEFAULT_DURATION, TFHD_DEFAULT_FLAGS,
    TFHD_DEFAULT_SIZE, TFHD_SAMPLE_DESCRIPTION_INDEX, TRUN_COMPOSITION_OFFSET, TRUN_DATA_OFFSET,
    TRUN_DURATION, TRUN_FIRST_SAMPLE_FLAGS, TRUN_SAMPLE_FLAGS, TRUN_SIZE,
};

/// Largest box accepted (a fragment's `mdat` of a 16 MiB frame fits with room to spare).
pub const MAX_BOX: u64 = 64 * 1024 * 1024;
/// Samples accepted in one `trun`.
const MAX_SAMPLES: u32 = 1 << 16;

/// Why fMP4 bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxError {
    /// A box or field runs past the bytes given.
    #[error("fMP4: {0} is truncated")]
    Truncated(&'static str),
    /// A field holds a value that cannot be right.
    #[error("fMP4: {0}")]
    Malformed(String),
    /// Valid, but not something this reader handles.
    #[error("fMP4: unsupported: {0}")]
    Unsupported(String),
}

fn malformed(what: impl Into<String>) -> DemuxError {
    DemuxError::Malformed(what.into())
}

/// What an init segment says: the tracks, and each track's `trex` sample defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Init {
    /// The tracks this reader understands, in `moov` order (others are skipped).
    pub tracks: Vec<Track>,
    defaults: Vec<(u32, Defaults)>,
}

/// Per-sample defaults (`trex`, overridden by `tfhd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Defaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// A box: its type, and where its body starts and the box ends, in the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The four-character type.
    pub kind: [u8; 4],
    /// Bytes of the header (8, or 16 with a 64-bit size).
    pub header_len: usize,
    /// Bytes of the whole box, header included.
    pub len: usize,
}

/// The header of the box at the start of `buf`: `Ok(None)` while fewer than 16 bytes (or the
/// header) are there. A box smaller than its header, running to the end of the file (size 0)
/// or larger than [`MAX_BOX`] is an error.
pub fn box_header(buf: &[u8]) -> Result<Option<BoxHeader>, DemuxError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = [buf[4], buf[5], buf[6], buf[7]];
    let (size, header_len) = match size32 {
        0 => {
            return Err(DemuxError::Unsupported(
                "box extending to end of file".into(),
            ))
        }
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let mut b = [0; 8];
            b.copy_from_slice(&buf[8..16]);
            (u64::from_be_bytes(b), 16)
        }
        n => (u64::from(n), 8),
    };
    if size < header_len as u64 {
        return Err(malformed(format!("box of {size} bytes")));
    }
    if size > MAX_BOX {
        return Err(malformed(format!(
            "{} box of {size} bytes (at most {MAX_BOX})",
            String::from_utf8_lossy(&kind)
        )));
    }
    Ok(Some(BoxHeader {
        kind,
        header_len,
        len: size as usize,
    }))
}

/// A child box: its type and body.
type Child<'a> = ([u8; 4], &'a [u8]);

/// The child boxes of a body.
fn children(body: &[u8]) -> Result<Vec<Child<'_>>, DemuxError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let h = box_header(rest)?.ok_or(DemuxError::Truncated("box header"))?;
        if h.len > rest.len() {
            return Err(DemuxError::Truncated("box"));
        }
        out.push((h.kind, &rest[h.header_len..h.len]));
        rest = &rest[h.len..];
    }
    Ok(out)
}

fn child<'a>(boxes: &[Child<'a>], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes.iter().find(|(k, _)| k == kind).map(|(_, b)| *b)
}

fn need_child<'a>(boxes: &[Child<'a>], kind: &'static [u8; 4]) -> Result<&'a [u8], DemuxError> {
    child(boxes, kind).ok_or_else(|| malformed(format!("no {} box", String::from_utf8_lossy(kind))))
}

/// A cursor over a box body; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DemuxError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(DemuxError::Truncated(self.what))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DemuxError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DemuxError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DemuxError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DemuxError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), DemuxError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
}

/// Reads an init segment (`ftyp` + `moov`). `init` is kept whole: decoder configuration records
/// are slices of it.
pub fn read_init(init: &Bytes) -> Result<Init, DemuxError> {
    let top = children(init)?;
    let moov = need_child(&top, b"moov")?;
    let moov_boxes = children(moov)?;
    let mut out = Init::default();
    for (kind, body) in &moov_boxes {
        if kind == b"trak" {
            if let Some(track) = read_trak(init, body)? {
                out.tracks.push(track);
            }
        }
    }
    if let Some(mvex) = child(&moov_boxes, b"mvex") {
        for (kind, body) in children(mvex)? {
            if &kind == b"trex" {
                let mut r = Reader::new(body, "trex");
                r.full()?;
                let id = r.u32()?;
                r.u32()?; // default_sample_description_index
                let d = Defaults {
                    duration: r.u32()?,
                    size: r.u32()?,
                    flags: r.u32()?,
                };
                out.defaults.push((id, d));
            }
        }
    }
    if out.tracks.is_empty() {
        return Err(DemuxError::Unsupported(
            "no track of a known codec (H.264, HEVC, AV1, AAC)".into(),
        ));
    }
    Ok(out)
}

/// `whole` is the init segment `body` lies in: records are sliced from it without a copy.
fn read_trak(whole: &Bytes, body: &[u8]) -> Result<Option<Track>, DemuxError> {
    let trak = children(body)?;
    let mut r = Reader::new(need_child(&trak, b"tkhd")?, "tkhd");
    let (version, _) = r.full()?;
    r.take(if version == 1 { 16 } else { 8 })?;
    let id = r.u32()?;
    let mdia = children(need_child(&trak, b"mdia")?)?;
    let mut r = Reader::new(need_child(&mdia, b"mdhd")?, "mdhd");
    let (version, _) = r.full()?;
    r.take(if version == 1 { 16 } else { 8 })?;
    let timescale = Timescale::new(r.u32()?).ok_or_else(|| malformed("timescale 0"))?;
    let mut r = Reader::new(need_child(&mdia, b"hdlr")?, "hdlr");
    r.full()?;
    r.u32()?; // pre_defined
    let handler: [u8; 4] = r.take(4)?.try_into().unwrap_or_default();
    let minf = children(need_child(&mdia, b"minf")?)?;
    let stbl = children(need_child(&minf, b"stbl")?)?;
    let mut r = Reader::new(need_child(&stbl, b"stsd")?, "stsd");
    r.full()?;
    if r.u32()? == 0 {
        return Err(malformed("stsd without entries"));
    }
    let entries = children(r.rest())?;
    let Some((fourcc, entry)) = entries.first() else {
        return Err(DemuxError::Truncated("stsd"));
    };
    let slice = |part: &[u8]| whole.slice_ref(part);
    let id = TrackId(id);
    let codec_err = |e: zerocast_core::codec::CodecError| malformed(e.to_string());
    match &handler {
        b"vide" => {
            // VisualSampleEntry: 78 bytes of fields before its child boxes.
            let boxes = children(
                entry
                    .get(78..)
                    .ok_or(DemuxError::Truncated("video entry"))?,
            )?;
            let codec = match fourcc {
                b"avc1" | b"avc3" => VideoCodec::Avc(
                    AvcConfig::parse(slice(need_child(&boxes, b"avcC")?)).map_err(codec_err)?,
                ),
                b"hvc1" | b"hev1" => VideoCodec::Hevc(
                    HevcConfig::parse(slice(need_child(&boxes, b"hvcC")?)).map_err(codec_err)?,
                ),
                b"av01" => VideoCodec::Av1(
                    Av1Config::parse(slice(need_child(&boxes, b"av1C")?)).map_err(codec_err)?,
                ),
                _ => return Ok(None),
            };
            Ok(Some(Track::Video {
                id,
                timescale,
                codec,
            }))
        }
        b"soun" if fourcc == b"mp4a" => {
            // AudioSampleEntry (version 0): 28 bytes of fields before its child boxes.
            let boxes = children(
                entry
                    .get(28..)
                    .ok_or(DemuxError::Truncated("audio entry"))?,
            )?;
            let mut r = Reader::new(need_child(&boxes, b"esds")?, "esds");
            r.full()?;
            let asc = audio_specific_config(r.rest())?;
            let codec = AudioCodec::Aac(AacConfig::parse(slice(asc)).map_err(codec_err)?);
            Ok(Some(Track::Audio {
                id,
                timescale,
                codec,
            }))
        }
        _ => Ok(None),
    }
}

/// The DecoderSpecificInfo (the AudioSpecificConfig) inside an ES_Descriptor.
fn audio_specific_config(es: &[u8]) -> Result<&[u8], DemuxError> {
    fn descriptor<'a>(r: &mut Reader<'a>, want: u8) -> Result<&'a [u8], DemuxError> {
        loop {
            let tag = r.u8()?;
            let mut size = 0usize;
            for _ in 0..4 {
                let b = r.u8()?;
                size = (size << 7) | usize::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
            let body = r.take(size)?;
            if tag == want {
                return Ok(body);
            }
        }
    }
    let mut r = Reader::new(es, "esds");
    let mut es = Reader::new(descriptor(&mut r, 0x03)?, "ES_Descriptor");
    es.u16()?; // ES_ID
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.u16()?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let n = es.u8()?;
        es.take(usize::from(n))?; // URL
    }
    if flags & 0x20 != 0 {
        es.u16()?; // OCR_ES_Id
    }
    let mut dcd = Reader::new(descriptor(&mut es, 0x04)?, "DecoderConfigDescriptor");
    dcd.take(13)?;
    descriptor(&mut dcd, 0x05)
}

/// Reads the frames of one `moof` and the `mdat` after it. `fragment` holds both boxes, `moof`
/// first (any boxes between them are allowed); `init` gives timescales and defaults. Frames
/// of tracks the init does not know are skipped. Returned in the order of their bytes.
pub fn read_fragment(init: &Init, fragment: &Bytes) -> Result<Vec<Frame>, DemuxError> {
    let h = box_header(fragment)?.ok_or(DemuxError::Truncated("moof"))?;
    if &h.kind != b"moof" {
        return Err(malformed("fragment does not start with moof"));
    }
    if h.len > fragment.len() {
        return Err(DemuxError::Truncated("moof"));
    }
    let mut frames = Vec::new();
    // Where the next run's data starts when its `trun` gives no offset: after the previous
    // run's, or at the start of the `mdat` payload for the first.
    let mut next_data: Option<usize> = None;
    for (kind, traf) in children(&fragment[h.header_len..h.len])? {
        if &kind != b"traf" {
            continue;
        }
        let boxes = children(traf)?;
        let mut r = Reader::new(need_child(&boxes, b"tfhd")?, "tfhd");
        let (_, flags) = r.full()?;
        let id = r.u32()?;
        if flags & TFHD_BASE_DATA_OFFSET != 0 {
            return Err(DemuxError::Unsupported(
                "tfhd base-data-offset (offsets into a whole file)".into(),
            ));
        }
        let Some(track) = init.tracks.iter().find(|t| t.id().0 == id) else {
            continue;
        };
        let mut d = init
            .defaults
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, d)| *d)
            .unwrap_or_default();
        if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
            r.u32()?;
        }
        if flags & TFHD_DEFAULT_DURATION != 0 {
            d.duration = r.u32()?;
        }
        if flags & TFHD_DEFAULT_SIZE != 0 {
            d.size = r.u32()?;
        }
        if flags & TFHD_DEFAULT_FLAGS != 0 {
            d.flags = r.u32()?;
        }
        let mut r = Reader::new(need_child(&boxes, b"tfdt")?, "tfdt");
        let (version, _) = r.full()?;
        let base = if version == 1 {
            r.u64()?
        } else {
            u64::from(r.u32()?)
        };
        let mut dts = i64::try_from(base).map_err(|_| malformed("tfdt out of range"))?;
        let scale = track.timescale();
        let audio = matches!(track, Track::Audio { .. });
        for (kind, trun) in &boxes {
            if kind != b"trun" {
                continue;
            }
            let mut r = Reader::new(trun, "trun");
            let (version, flags) = r.full()?;
            let count = r.u32()?;
            if count > MAX_SAMPLES {
                return Err(malformed(format!("trun of {count} samples")));
            }
            let mut at = if flags & TRUN_DATA_OFFSET != 0 {
                let off = i64::from(r.u32()? as i32);
                usize::try_from(off).map_err(|_| malformed("negative data offset"))?
            } else {
                match next_data {
                    Some(n) => n,
                    None => mdat_payload(fragment, h.len)?,
                }
            };
            let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            for i in 0..count {
                let duration = if flags & TRUN_DURATION != 0 {
                    r.u32()?
                } else {
                    d.duration
                };
                let size = if flags & TRUN_SIZE != 0 {
                    r.u32()?
                } else {
                    d.size
                } as usize;
                let sample_flags = if flags & TRUN_SAMPLE_FLAGS != 0 {
                    r.u32()?
                } else if i == 0 {
                    first_flags.unwrap_or(d.flags)
                } else {
                    d.flags
                };
                let cto = if flags & TRUN_COMPOSITION_OFFSET != 0 {
                    let v = r.u32()?;
                    if version == 0 {
                        i64::from(v)
                    } else {
                        i64::from(v as i32)
                    }
                } else {
                    0
                };
                let end = at
                    .checked_add(size)
                    .filter(|&e| e <= fragment.len() && at >= h.len)
                    .ok_or_else(|| malformed("sample data outside the fragment"))?;
                frames.push(Frame {
                    track: track.id(),
                    dts: Timestamp::new(dts, scale),
                    pts: Timestamp::new(dts + cto, scale),
                    keyframe: audio || sample_flags & SAMPLE_IS_NON_SYNC == 0,
                    data: fragment.slice(at..end),
                });
                at = end;
                dts = dts
                    .checked_add(i64::from(duration))
                    .ok_or_else(|| malformed("decode time overflow"))?;
            }
            next_data = Some(at);
        }
    }
    frames.sort_by_key(|f| f.data.as_ptr() as usize);
    Ok(frames)
}

/// Offset of the first `mdat`'s payload after the `moof` that ends at `moof_end`.
fn mdat_payload(fragment: &[u8], moof_end: usize) -> Result<usize, DemuxError> {
    let mut at = moof_end;
    loop {
        let h = box_header(&fragment[at..])?.ok_or(DemuxError::Truncated("mdat"))?;
        if &h.kind == b"mdat" {
            return Ok(at + h.header_len);
        }
        at = at
            .checked_add(h.len)
            .filter(|&a| a <= fragment.len())
            .ok_or(DemuxError::Truncated("mdat"))?;
    }
}

/// Splits a byte stream of fMP4 fragments (a part or segment as it arrives) into whole
/// `moof`+`mdat` fragments. Push bytes in as they come; take fragments out as they complete.
/// Boxes other than `moof`/`mdat` (`styp`, `prft`, `sidx`, `emsg`) are skipped.
#[derive(Debug, Default)]
pub struct FragmentSplitter {
    /// Bytes not yet part of a complete fragment.
    pending: bytes::BytesMut,
}

impl FragmentSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes (one copy, into the buffer the frames will be sliced from).
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Bytes buffered that are not yet a whole fragment.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// The next complete fragment (`moof` through the end of its `mdat`), if one is buffered.
    pub fn next_fragment(&mut self) -> Result<Option<Bytes>, DemuxError> {
        loop {
            let Some(h) = box_header(&self.pending)? else {
                return Ok(None);
            };
            match &h.kind {
                b"moof" => {
                    if self.pending.len() < h.len {
                        return Ok(None);
                    }
                    // The boxes after `moof`, up to and including the first `mdat`.
                    let mut at = h.len;
                    loop {
                        let Some(n) = box_header(&self.pending[at..])? else {
                            return Ok(None);
                        };
                        let end = at + n.len;
                        if end as u64 > MAX_BOX {
                            return Err(malformed("fragment larger than the box limit"));
                        }
                        if self.pending.len() < end {
                            return Ok(None);
                        }
                        if &n.kind == b"mdat" {
                            return Ok(Some(self.pending.split_to(end).freeze()));
                        }
                        at = end;
                    }
                }
                _ => {
                    if self.pending.len() < h.len {
                        return Ok(None);
                    }
                    let _ = self.pending.split_to(h.len);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::tests::sample;
    use crate::fmp4::{fragment, init_segment, TrackRun};

    fn tracks() -> Vec<Track> {
        use crate::fmp4::tests::{aac_track, avc_track};
        vec![avc_track(), aac_track(&[0x11, 0x90])]
    }

    /// A fragment as the packager writes it, as one buffer.
    fn bytes_of(f: &crate::fmp4::Fragment) -> Bytes {
        let mut v = Vec::new();
        for c in f.chunks() {
            v.extend_from_slice(c);
        }
        Bytes::from(v)
    }

    #[test]
    fn reads_back_what_the_packager_writes() {
        let t = tracks();
        let init_bytes = init_segment(&t);
        let init = read_init(&init_bytes).unwrap();
        assert_eq!(init.tracks, t);
        let video = [
            sample(100, 1, 3000, 6000, true),
            sample(50, 2, 3000, -3000, false),
        ];
        let audio = [sample(10, 3, 1024, 0, true), sample(12, 4, 1024, 0, true)];
        let frag = fragment(
            7,
            &[
                TrackRun {
                    track_id: 1,
                    base_decode_time: 90_000,
                    samples: &video,
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: 48_000,
                    samples: &audio,
                },
            ],
        );
        let bytes = bytes_of(&frag);
        let frames = read_fragment(&init, &bytes).unwrap();
        assert_eq!(frames.len(), 4);
        let f = &frames[0];
        assert_eq!(
            (f.track, f.dts.ticks(), f.pts.ticks()),
            (TrackId::VIDEO, 90_000, 96_000)
        );
        assert!(f.keyframe);
        assert_eq!(&f.data[..], &[1; 100][..]);
        let f = &frames[1];
        assert_eq!(
            (f.dts.ticks(), f.pts.ticks(), f.keyframe),
            (93_000, 90_000, false)
        );
        let f = &frames[3];
        assert_eq!((f.track, f.dts.ticks()), (TrackId::AUDIO, 49_024));
        assert_eq!(f.dts.scale().ticks(), 48_000);
        assert_eq!(&f.data[..], &[4; 12][..]);
        // No copy: the payloads are slices of the fragment.
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(frames
            .iter()
            .all(|f| range.contains(&(f.data.as_ptr() as usize))));
    }

    #[test]
    fn splits_a_stream_however_it_arrives() {
        let t = tracks();
        let init = read_init(&init_segment(&t)).unwrap();
        let mut stream = Vec::new();
        // A `styp` first, as some packagers write at the start of a segment.
        stream.extend_from_slice(&[0, 0, 0, 16, b's', b't', b'y', b'p']);
        stream.extend_from_slice(b"msdhmsdh");
        let mut want = 0;
        for n in 0..5u8 {
            let s = [sample(40 + usize::from(n), n, 3000, 0, n == 0)];
            let f = fragment(
                u32::from(n),
                &[TrackRun {
                    track_id: 1,
                    base_decode_time: u64::from(n) * 3000,
                    samples: &s,
                }],
            );
            stream.extend_from_slice(&bytes_of(&f));
            want += 1;
        }
        for step in [1, 7, 64, 1000] {
            let mut sp = FragmentSplitter::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                sp.push(piece);
                while let Some(frag) = sp.next_fragment().unwrap() {
                    got.extend(read_fragment(&init, &frag).unwrap());
                }
            }
            assert_eq!(got.len(), want, "pieces of {step}");
            assert_eq!(sp.buffered(), 0);
            for (n, f) in got.iter().enumerate() {
                assert_eq!(f.dts.ticks(), n as i64 * 3000);
                assert_eq!(f.data.len(), 40 + n);
                assert_eq!(f.keyframe, n == 0);
            }
        }
    }

    #[test]
    fn refuses_lies_without_panicking() {
        let t = tracks();
        let init_bytes = init_segment(&t);
        let init = read_init(&init_bytes).unwrap();
        let s = [sample(30, 9, 3000, 0, true)];
        let good = bytes_of(&fragment(
            1,
            &[TrackRun {
                track_id: 1,
                base_decode_time: 0,
                samples: &s,
            }],
        ));
        // Every truncation of a good fragment or init is an error, never a panic.
        for n in 0..good.len() {
            assert!(read_fragment(&init, &good.slice(..n)).is_err(), "{n}");
        }
        for n in 0..init_bytes.len() {
            let _ = read_init(&init_bytes.slice(..n));
        }
        // A sample size past the mdat.
        let mut bad = good.to_vec();
        let size_at = bad.windows(4).position(|w| w == b"trun").unwrap() + 4 + 4 + 4 + 4 + 4;
        bad[size_at..size_at + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert!(matches!(
            read_fragment(&init, &Bytes::from(bad)),
            Err(DemuxError::Malformed(_))
        ));
        // An absurd box size is refused before anything is buffered.
        let mut sp = FragmentSplitter::new();
        sp.push(&[0xff, 0xff, 0xff, 0xff, b'm', b'o', b'o', b'f']);
        assert!(sp.next_fragment().is_err());
        assert!(box_header(&[0, 0, 0, 4, b'm', b'd', b'a', b't']).is_err());
    }
}
