//! From bytes on disk to a CSV reader: content hash, encoding (UTF-8 with or without BOM,
//! else Windows-1252), an Excel `sep=` first line, and delimiter detection.
//!
//! Everything streams: the hash pass reads fixed-size chunks and the reader decodes as it
//! goes, so memory does not grow with the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::{Delimiter, Encoding};

const CHUNK: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The encodings a file can be read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEncoding {
    /// UTF-8.
    Utf8,
    /// Windows-1252.
    Windows1252,
}

/// What the first pass learnt about a file.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// CRC-32 of the same bytes: a cheap fingerprint the row pass compares with what it
    /// reads, to see the file was not rewritten in between (SHA-256 a second time cost
    /// an eighth of an import).
    pub crc32: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The encoding it is read in.
    pub encoding: FileEncoding,
    /// Whether it starts with a UTF-8 BOM.
    pub bom: bool,
}

/// Hashes the file and, for `encoding = "auto"`, decides between UTF-8 (valid throughout,
/// or with a BOM) and Windows-1252 (anything else).
pub fn inspect(path: &Path, wanted: Encoding) -> io::Result<Inspected> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut carry: Vec<u8> = Vec::with_capacity(8);
    let mut scratch: Vec<u8> = Vec::with_capacity(CHUNK + 8);
    let mut utf8 = Utf8Evidence::default();
    let mut size = 0u64;
    let mut first = true;
    let mut bom = false;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        crc.update(chunk);
        size += n as u64;
        if first {
            bom = chunk.starts_with(BOM);
            first = false;
        }
        if wanted == Encoding::Auto {
            scratch.clear();
            scratch.extend_from_slice(&carry);
            scratch.extend_from_slice(chunk);
            carry.clear();
            let rest = utf8.scan(&scratch);
            carry.extend_from_slice(rest);
        }
    }
    if !carry.is_empty() {
        utf8.invalid += 1;
    }
    let encoding = match wanted {
        Encoding::Utf8 => FileEncoding::Utf8,
        Encoding::Windows1252 => FileEncoding::Windows1252,
        Encoding::Auto if bom || utf8.is_utf8() => FileEncoding::Utf8,
        Encoding::Auto => FileEncoding::Windows1252,
    };
    Ok(Inspected {
        sha256: hex::encode(hasher.finalize()),
        crc32: crc.finalize(),
        size,
        encoding,
        bom,
    })
}

/// What the bytes of a file say about UTF-8: characters of more than one byte that are
/// valid UTF-8, and byte sequences that are not.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Evidence {
    multibyte: u64,
    invalid: u64,
}

impl Utf8Evidence {
    /// Counts the evidence in `bytes`; returns the incomplete sequence at the end (to be
    /// continued by the next chunk).
    fn scan<'b>(&mut self, mut bytes: &'b [u8]) -> &'b [u8] {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(valid) => {
                    self.count_multibyte(valid.as_bytes());
                    return &[];
                }
                Err(e) => {
                    self.count_multibyte(&bytes[..e.valid_up_to()]);
                    match e.error_len() {
                        Some(n) => {
                            self.invalid += 1;
                            bytes = &bytes[e.valid_up_to() + n..];
                        }
                        None => return &bytes[e.valid_up_to()..],
                    }
                }
            }
        }
    }

    fn count_multibyte(&mut self, valid: &[u8]) {
        self.multibyte += valid.iter().filter(|b| **b >= 0xC0).count() as u64;
    }

    /// UTF-8 when nothing is invalid, or when valid multi-byte characters outnumber the
    /// invalid bytes: a UTF-8 export with a few damaged bytes is read as UTF-8 (its
    /// damaged rows are rejected) instead of turning every `ë` into `Ã«`. Windows-1252
    /// text almost never forms valid multi-byte sequences.
    fn is_utf8(&self) -> bool {
        self.invalid == 0 || self.multibyte > self.invalid
    }
}

/// Counts the line breaks that pass through a reader, so that a CSV record's byte
/// position can be turned into the physical line it starts on, exactly, whatever
/// quoted line breaks came before. Keeps only the breaks the CSV reader has read ahead
/// of the record it returned, so memory does not grow with the file.
#[derive(Clone, Default)]
pub struct LineCounter(std::rc::Rc<std::cell::RefCell<LineState>>);

#[derive(Default)]
struct LineState {
    /// Bytes read so far.
    pos: u64,
    /// Line feeds read but not yet passed by a record start: their offset, and whether
    /// the line they end is empty (nothing but a carriage return).
    pending: std::collections::VecDeque<(u64, bool)>,
    /// Line feeds before the last record start asked about.
    before: u64,
    /// Whether the line being read has content yet.
    content: bool,
    /// Where the CSV reader stands in the stream it reads (see [`Csv`]).
    csv: Csv,
    /// Bytes of the current record passed to the CSV reader so far.
    record_len: usize,
    /// The current record is over [`MAX_RECORD`]: its bytes are counted, not passed on.
    cutting: Option<Cut>,
    /// Records cut so far and not yet asked about: where the cut is in the stream the
    /// CSV reader reads, and the record's whole length (known once it ends).
    cuts: std::collections::VecDeque<(u64, u64)>,
}

/// The longest record (one row, whatever its line breaks) read whole: a longer one is
/// cut there and rejected, so that a 50 MB line or row costs no more memory than this.
pub const MAX_RECORD: usize = 1 << 20;

/// A record being cut.
#[derive(Clone, Copy)]
struct Cut {
    /// The CSV reader was inside a quoted field where the cut began: a quote closes it.
    in_quotes: bool,
    /// The record's length so far, in bytes.
    len: u64,
}

/// The state of the CSV reader (quotes doubled to escape them, no escape character, no
/// comments: the reader's settings here), followed byte by byte so that the end of a
/// record is known before the reader sees it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Csv {
    #[default]
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

impl Csv {
    /// The next state after `b`, and whether `b` ends a record.
    fn step(self, b: u8, delimiter: u8) -> (Csv, bool) {
        let end = b == b'\n' || b == b'\r';
        match self {
            Csv::InQuoted if b == b'"' => (Csv::QuoteInQuoted, false),
            Csv::InQuoted => (Csv::InQuoted, false),
            Csv::StartField if b == b'"' => (Csv::InQuoted, false),
            Csv::QuoteInQuoted if b == b'"' => (Csv::InQuoted, false),
            _ if end => (Csv::StartField, true),
            _ if b == delimiter => (Csv::StartField, false),
            _ => (Csv::InField, false),
        }
    }
}

impl LineCounter {
    /// The 1-based physical line of the byte at `offset` (which never goes back).
    /// The CSV reader reports a record's position before the empty lines it skipped, so
    /// empty lines from there on are passed over too (and the line feed of a CRLF it may
    /// point at).
    pub fn line_at(&self, offset: u64) -> u64 {
        let mut st = self.0.borrow_mut();
        while st
            .pending
            .front()
            .is_some_and(|&(nl, empty)| nl <= offset || empty)
        {
            st.pending.pop_front();
            st.before += 1;
        }
        st.before + 1
    }

    /// The whole length of the record between `start` and `end` (offsets of the stream
    /// the CSV reader reads) when it was cut at [`MAX_RECORD`].
    pub fn cut_between(&self, start: u64, end: u64) -> Option<u64> {
        let mut st = self.0.borrow_mut();
        while st.cuts.front().is_some_and(|&(at, _)| at < start) {
            st.cuts.pop_front();
        }
        match st.cuts.front() {
            Some(&(at, len)) if at < end => {
                st.cuts.pop_front();
                Some(len)
            }
            _ => None,
        }
    }
}

/// Between the decoded file and the CSV reader: counts line breaks (see [`LineCounter`])
/// and cuts records longer than [`MAX_RECORD`], passing on only their start and an end
/// the reader reads as the end of that record (a closing quote when the cut fell inside
/// a quoted field), so the rows after a monster row are read as they are.
struct Counting<R> {
    inner: R,
    counter: LineCounter,
    delimiter: u8,
    input: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Nothing passed on is the end of the file only when the file has ended: a
        // whole chunk may fall inside a record being cut.
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = self.inner.read(&mut self.input)?;
                if self.end == 0 {
                    return Ok(0);
                }
            }
            let n = self.pass_on(buf);
            if n > 0 || buf.len() < 2 {
                return Ok(n);
            }
        }
    }
}

impl<R> Counting<R> {
    /// Passes the buffered input on into `buf` (see the type); returns the bytes written.
    fn pass_on(&mut self, buf: &mut [u8]) -> usize {
        let mut st = self.counter.0.borrow_mut();
        let mut w = 0;
        let mut slow = 0usize;
        // At most two bytes out per byte in (a closing quote and the record's end).
        while self.start < self.end && w + 2 <= buf.len() {
            // The common case, a line at a time: a line (up to LF or CR) without quotes,
            // outside quotes, in a record far from the limit. Where it does not apply,
            // the bytes up to the first quote go one by one (`slow`), so no byte is
            // searched more than twice.
            if slow == 0 && st.cutting.is_none() && matches!(st.csv, Csv::StartField | Csv::InField)
            {
                let input = &self.input[self.start..self.end];
                let len = memchr::memchr2(b'\n', b'\r', input).map_or(input.len(), |i| i + 1);
                let line = &input[..len];
                match memchr::memchr(b'"', line) {
                    None if len <= buf.len() - w && st.record_len + len < MAX_RECORD => {
                        buf[w..w + len].copy_from_slice(line);
                        let (body, end) = match line.split_last() {
                            Some((&e @ (b'\n' | b'\r'), body)) => (body, Some(e)),
                            _ => (line, None),
                        };
                        match end {
                            Some(b'\n') => {
                                let at = st.pos + (w + len - 1) as u64;
                                let empty = !st.content && body.is_empty();
                                st.pending.push_back((at, empty));
                                st.content = false;
                                st.csv = Csv::StartField;
                                st.record_len = 0;
                            }
                            Some(_) => {
                                st.content |= !body.is_empty();
                                st.csv = Csv::StartField;
                                st.record_len = 0;
                            }
                            None => {
                                st.content |= !body.is_empty();
                                st.record_len += len;
                                match body.last() {
                                    Some(&b) if b == self.delimiter => st.csv = Csv::StartField,
                                    Some(_) => st.csv = Csv::InField,
                                    None => {}
                                }
                            }
                        }
                        w += len;
                        self.start += len;
                        continue;
                    }
                    Some(q) => slow = q + 1,
                    None => slow = len,
                }
            }
            slow = slow.saturating_sub(1);
            let b = self.input[self.start];
            self.start += 1;
            if b == b'\n' {
                // The line is empty when nothing but carriage returns came since the
                // last line feed. A line feed not passed on (inside a cut record) counts
                // where the stream stands, before the next record.
                let (at, empty) = (st.pos + w as u64, !st.content);
                st.pending.push_back((at, empty));
                st.content = false;
            } else if b != b'\r' {
                st.content = true;
            }
            let (next, ends) = st.csv.step(b, self.delimiter);
            if let Some(mut cut) = st.cutting {
                st.csv = next;
                if !ends {
                    cut.len += 1;
                    st.cutting = Some(cut);
                    continue;
                }
                if cut.in_quotes {
                    buf[w] = b'"';
                    w += 1;
                }
                buf[w] = b;
                w += 1;
                if let Some(last) = st.cuts.back_mut() {
                    last.1 = cut.len;
                }
                st.cutting = None;
                st.record_len = 0;
                continue;
            }
            buf[w] = b;
            w += 1;
            st.csv = next;
            if ends {
                st.record_len = 0;
            } else {
                st.record_len += 1;
                if st.record_len >= MAX_RECORD {
                    let (at, len) = (st.pos + w as u64, st.record_len as u64);
                    st.cuts.push_back((at, len));
                    st.cutting = Some(Cut {
                        in_quotes: next == Csv::InQuoted,
                        len: st.record_len as u64,
                    });
                }
            }
        }
        st.pos += w as u64;
        w
    }
}

/// A CSV reader over the decoded file, with what the preamble said.
pub struct Opened {
    /// The CSV reader over the decoded rows (header first).
    pub reader: csv::Reader<Box<dyn Read>>,
    /// The field delimiter in use.
    pub delimiter: u8,
    /// Physical lines before the header that the CSV reader does not see (`sep=`).
    pub line_offset: u64,
    /// Line breaks of the stream the CSV reader reads, for exact line numbers.
    pub lines: LineCounter,
}

impl Opened {
    /// The whole length in bytes of `record` when it was longer than [`MAX_RECORD`] and
    /// was cut (only its start was read): call once per record, in order.
    pub fn cut_length(&self, record: &csv::ByteRecord) -> Option<u64> {
        let start = record.position().map(|p| p.byte()).unwrap_or(0);
        self.lines
            .cut_between(start, self.reader.position().byte().max(start + 1))
    }

    /// The physical line (as an editor numbers them) where a record starts.
    pub fn line_of(&self, record: &csv::ByteRecord) -> u64 {
        let offset = record.position().map(|p| p.byte()).unwrap_or(0);
        self.lines.line_at(offset) + self.line_offset
    }
}

/// Why a file cannot be read as CSV at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    /// Reading failed.
    Io(#[from] io::Error),
    #[error("the file is empty")]
    /// The file is empty.
    Empty,
    #[error("the file has no header line")]
    /// No header line.
    NoHeader,
    #[error("the first line is longer than 1 MiB: this is not a CSV export's header")]
    /// The header line is absurdly long.
    HeaderTooLong,
}

/// Opens `path` for reading rows. `wrap` may wrap the raw file (a progress bar).
pub fn open(
    path: &Path,
    info: &Inspected,
    delimiter: Delimiter,
    wrap: impl FnOnce(File) -> Box<dyn Read>,
) -> Result<Opened, OpenError> {
    if info.size == 0 {
        return Err(OpenError::Empty);
    }
    let raw = wrap(File::open(path)?);
    let decoded: Box<dyn Read> = match info.encoding {
        FileEncoding::Utf8 => Box::new(raw),
        FileEncoding::Windows1252 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::WINDOWS_1252))
                .bom_override(false)
                .build(raw),
        ),
    };
    let mut input = BufReader::with_capacity(CHUNK, decoded);
    if info.encoding == FileEncoding::Utf8 && info.bom {
        let mut skip = [0u8; 3];
        input.read_exact(&mut skip)?;
    }

    let mut first = Vec::new();
    first_line(&mut input, &mut first)?;
    let mut line_offset = 0;
    let mut from_sep = None;
    if let Some(d) = sep_line(&first) {
        from_sep = Some(d);
        line_offset = 1;
        first.clear();
        first_line(&mut input, &mut first)?;
    }
    if first.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(OpenError::NoHeader);
    }
    let delimiter = match (from_sep, delimiter) {
        (Some(d), _) => d,
        (None, Delimiter::Byte(d)) => d,
        (None, Delimiter::Auto) => sniff_delimiter(&first),
    };
    let lines = LineCounter::default();
    let stream: Box<dyn Read> = Box::new(Counting {
        inner: Cursor::new(first).chain(input),
        counter: lines.clone(),
        delimiter,
        input: vec![0; CHUNK].into_boxed_slice(),
        start: 0,
        end: 0,
    });
    let reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(CHUNK)
        .from_reader(stream);
    Ok(Opened {
        reader,
        delimiter,
        line_offset,
        lines,
    })
}

/// Reads the header line (or the `sep=` line before it) with its line end (LF, CRLF or a
/// lone CR), at most [`MAX_RECORD`] bytes.
fn first_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> Result<(), OpenError> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let (take, ended) = match memchr::memchr2(b'\n', b'\r', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        if ended {
            // CRLF: the LF belongs to this line.
            if line.last() == Some(&b'\r') && input.fill_buf()?.first() == Some(&b'\n') {
                line.push(b'\n');
                input.consume(1);
            }
            return Ok(());
        }
        if line.len() >= MAX_RECORD {
            return Err(OpenError::HeaderTooLong);
        }
    }
}

/// Excel's `sep=;` first line: returns the delimiter it names.
fn sep_line(line: &[u8]) -> Option<u8> {
    let line = trim_eol(line);
    if line.len() == 5 && line[..4].eq_ignore_ascii_case(b"sep=") {
        Some(line[4])
    } else {
        None
    }
}

fn trim_eol(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// The candidate that occurs most often outside quotes in the header line; `,` on a tie.
fn sniff_delimiter(header: &[u8]) -> u8 {
    const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    for &b in header {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes && let Some(i) = CANDIDATES.iter().position(|c| *c == b) {
            counts[i] += 1;
        }
    }
    let mut best = 0;
    for i in 1..CANDIDATES.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    CANDIDATES[best]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn rows(bytes: &[u8]) -> (u8, u64, Vec<Vec<String>>) {
        let f = write(bytes);
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        let mut o = open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)).unwrap();
        let mut out = vec![
            o.reader
                .headers()
                .unwrap()
                .iter()
                .map(String::from)
                .collect(),
        ];
        for r in o.reader.records() {
            out.push(r.unwrap().iter().map(String::from).collect());
        }
        (o.delimiter, o.line_offset, out)
    }

    /// The physical start line of every record, as an editor numbers lines.
    fn start_lines(bytes: &[u8]) -> Vec<u64> {
        let f = write(bytes);
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        let mut o = open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)).unwrap();
        let mut rec = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while o.reader.read_byte_record(&mut rec).unwrap() {
            lines.push(o.line_of(&rec));
        }
        lines
    }

    /// Each record: its start line, its fields, and its whole length if it was cut.
    fn records(bytes: &[u8]) -> Vec<(u64, Vec<String>, Option<u64>)> {
        let f = write(bytes);
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        let mut o = open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)).unwrap();
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while o.reader.read_byte_record(&mut rec).unwrap() {
            let cut = o.cut_length(&rec);
            let fields = rec
                .iter()
                .map(|f| String::from_utf8_lossy(&f[..f.len().min(20)]).into_owned())
                .collect();
            out.push((o.line_of(&rec), fields, cut));
        }
        out
    }

    #[test]
    fn a_record_over_the_limit_is_cut_and_the_rows_after_it_are_read_as_they_are() {
        let big = 3 * MAX_RECORD;
        let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for eol in ["\n", "\r\n"] {
            // One long line, unquoted.
            let mut text = format!("a,b,c{eol}1,x,y{eol}2,");
            text.push_str(&"x".repeat(big));
            text.push_str(&format!(",z{eol}3,p,q{eol}"));
            let got = records(text.as_bytes());
            assert_eq!(got.len(), 3, "{eol:?}");
            assert_eq!(got[0], (2, strs(&["1", "x", "y"]), None));
            assert_eq!(got[1].0, 3);
            assert_eq!(got[1].2, Some(big as u64 + 4), "{eol:?}");
            assert_eq!(got[2], (4, strs(&["3", "p", "q"]), None), "{eol:?}");

            // A quoted field spanning many lines, cut inside the quotes, with a quote
            // and delimiters past the cut that must not upset the rows after it.
            let mut text = format!("a,b,c{eol}1,x,y{eol}2,\"");
            let line = format!("{},\"\"q{eol}", "y".repeat(97));
            let lines = big / line.len();
            text.push_str(&line.repeat(lines));
            text.push_str(&format!("\",z{eol}3,\"p\",q{eol}"));
            let got = records(text.as_bytes());
            assert_eq!(got.len(), 3, "{eol:?}");
            assert_eq!(got[1].0, 3);
            assert!(got[1].2.is_some_and(|n| n as usize > big / 2), "{eol:?}");
            assert_eq!(
                got[2],
                (4 + lines as u64, strs(&["3", "p", "q"]), None),
                "{eol:?}"
            );
        }
        // Just under the limit: read whole.
        let text = format!("a,b\n1,{}\n2,z\n", "x".repeat(MAX_RECORD - 10));
        let got = records(text.as_bytes());
        assert_eq!(got[0].2, None);
        assert_eq!(got[1], (3, strs(&["2", "z"]), None));
    }

    #[test]
    fn a_file_with_carriage_returns_only_is_never_cut() {
        // Two MiB of short rows ended by CR alone: each is a record of its own.
        let rows = 2 * MAX_RECORD / 12;
        let mut text = String::from("a,b\r");
        for i in 0..rows {
            text.push_str(&format!("{:06},xyz\r", i % 1_000_000));
        }
        let got = records(text.as_bytes());
        assert_eq!(got.len(), rows);
        assert!(got.iter().all(|(_, f, cut)| cut.is_none() && f.len() == 2));
    }

    #[test]
    fn a_header_line_over_the_limit_is_refused() {
        let f = write(format!("{}\n1\n", "h".repeat(MAX_RECORD + 1)).as_bytes());
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert!(matches!(
            open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)),
            Err(OpenError::HeaderTooLong)
        ));
    }

    #[test]
    fn records_are_numbered_by_the_physical_line_they_start_on() {
        for eol in ["\n", "\r\n"] {
            let text = [
                "a,b", // 1
                "1,x", // 2
                "2,\"two",
                "lines\"", // 3-4
                "3,y",     // 5
                "",        // 6 (blank)
                "4,\"three",
                "more",
                "lines\"", // 7-9
                "5,z",     // 10
            ]
            .join(eol)
                + eol;
            assert_eq!(
                start_lines(text.as_bytes()),
                vec![2, 3, 5, 7, 10],
                "{eol:?}"
            );
        }
        // A multi-line header shifts every line after it; so does `sep=`.
        assert_eq!(start_lines(b"\"a\nb\",c\n1,2\n3,4\n"), vec![3, 4]);
        assert_eq!(
            start_lines(b"sep=,\r\na,b\r\n1,\"x\r\ny\"\r\n2,z\r\n"),
            vec![3, 5]
        );
    }

    #[test]
    fn a_utf8_file_with_a_few_bad_bytes_is_still_utf8() {
        // Zoë and René in UTF-8, and one stray Windows-1252 byte.
        let f = write(
            "name,x\nZoë,1\nRené,2\nbad \u{0}\n"
                .replace('\u{0}', "")
                .as_bytes(),
        );
        assert_eq!(
            inspect(f.path(), Encoding::Auto).unwrap().encoding,
            FileEncoding::Utf8
        );
        let mut bytes = "name,x\nZoë,1\nRené,2\n".as_bytes().to_vec();
        bytes.extend_from_slice(b"Caf\xE9,3\n");
        let f = write(&bytes);
        assert_eq!(
            inspect(f.path(), Encoding::Auto).unwrap().encoding,
            FileEncoding::Utf8
        );
        // Windows-1252 throughout stays Windows-1252.
        let f = write(b"name,x\nZo\xEB,1\nRen\xE9,2\nCaf\xE9,3\n");
        assert_eq!(
            inspect(f.path(), Encoding::Auto).unwrap().encoding,
            FileEncoding::Windows1252
        );
    }

    #[test]
    fn utf8_with_bom_and_crlf() {
        let (d, off, r) = rows(b"\xEF\xBB\xBFa,b\r\n1,\xC3\xA9\r\n");
        assert_eq!((d, off), (b',', 0));
        assert_eq!(r, vec![vec!["a", "b"], vec!["1", "é"]]);
    }

    #[test]
    fn windows_1252_is_decoded() {
        // 0x80 is € and 0xEB is ë in Windows-1252; neither is valid UTF-8 here.
        let f = write(b"naam;bedrag\nZo\xEB;\x80 12,50\n");
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert_eq!(info.encoding, FileEncoding::Windows1252);
        let (d, _, r) = rows(b"naam;bedrag\nZo\xEB;\x80 12,50\n");
        assert_eq!(d, b';');
        assert_eq!(r[1], vec!["Zoë", "€ 12,50"]);
    }

    #[test]
    fn sep_line_sets_the_delimiter_and_shifts_lines() {
        let (d, off, r) = rows(b"sep=;\r\na;b,c\r\n1;2,5\r\n");
        assert_eq!((d, off), (b';', 1));
        assert_eq!(r[1], vec!["1", "2,5"]);
    }

    #[test]
    fn quoted_fields_keep_delimiters_and_line_breaks() {
        let (d, _, r) = rows(b"a,b\n\"x, y\",\"line1\nline2\"\n");
        assert_eq!(d, b',');
        assert_eq!(r[1], vec!["x, y", "line1\nline2"]);
    }

    #[test]
    fn tab_delimiter_is_detected() {
        let (d, _, _) = rows(b"a\tb\tc\n1\t2\t3\n");
        assert_eq!(d, b'\t');
    }

    #[test]
    fn utf8_split_across_chunks_is_still_utf8() {
        let mut bytes = b"a,b\n".to_vec();
        while bytes.len() < CHUNK - 1 {
            bytes.push(b'x');
        }
        bytes.extend_from_slice("é,1\n".as_bytes()); // é straddles the chunk boundary
        let f = write(&bytes);
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert_eq!(info.encoding, FileEncoding::Utf8);
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        let f = write(b"abc");
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert_eq!(
            info.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn empty_and_headerless_files_are_refused() {
        let f = write(b"");
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert!(matches!(
            open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)),
            Err(OpenError::Empty)
        ));
        let f = write(b"sep=;\n\n");
        let info = inspect(f.path(), Encoding::Auto).unwrap();
        assert!(matches!(
            open(f.path(), &info, Delimiter::Auto, |f| Box::new(f)),
            Err(OpenError::NoHeader)
        ));
    }
}
