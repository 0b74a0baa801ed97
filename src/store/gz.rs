//! Gzip-compressed event and log files, `NAME.gz` beside where `NAME` was (issue 26).
//!
//! Readers open a file through [`open_read`]: a name ending in `.gz` is decompressed while it is
//! read (streaming, bounded memory: a 32 KiB window and the caller's buffer), any other name is
//! read as it is. A truncated or corrupt gzip stream is an `InvalidData` error naming it corrupt,
//! never a panic; the lines before the damage have been read by then.
//!
//! [`compress`] turns `NAME` into `NAME.gz` so that a kill at any moment leaves one readable
//! copy, never zero (safety R7): the data is written to `.NAME.gz.tmp-…` (created with
//! `O_EXCL|O_NOFOLLOW`, mode 0600), fsynced, given `NAME`'s mtime, renamed to `NAME.gz`
//! (never replacing), the directory fsynced; then `NAME` is checked to be unchanged (inode,
//! size, mtime) and unlinked, and the directory fsynced again. If `NAME` changed meanwhile the
//! `.gz` is removed and `NAME` kept. A leftover temp file is removed by the next pass over the
//! directory ([`is_leftover`]); when both `NAME` and `NAME.gz` exist (a kill between the rename
//! and the unlink) `NAME` is authoritative: the `.gz` is removed and redone only when it
//! decompresses to exactly `NAME`'s bytes, otherwise both are kept and reported.

use crate::store::fsops::{Dir, Kind, Meta};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};

/// The suffix of a compressed file.
pub const SUFFIX: &str = ".gz";

/// Read buffer of [`open_read`], bytes.
const BUF: usize = 64 << 10;

/// True when `name` ends in `.gz`.
pub fn is_gz(name: &OsStr) -> bool {
    name.as_encoded_bytes().ends_with(SUFFIX.as_bytes())
}

/// `name` without a trailing `.gz` (the name the data had before it was compressed).
pub fn plain_name(name: &OsStr) -> &OsStr {
    let b = name.as_encoded_bytes();
    match b.strip_suffix(SUFFIX.as_bytes()) {
        // SAFETY: cutting an ASCII suffix off a valid OsStr leaves a valid OsStr.
        Some(p) => unsafe { OsStr::from_encoded_bytes_unchecked(p) },
        None => name,
    }
}

/// `name` with `.gz` appended.
pub fn gz_name(name: &OsStr) -> OsString {
    let mut n = name.to_os_string();
    n.push(SUFFIX);
    n
}

/// True for a temp file [`compress`] left behind when it was killed before its rename:
/// `.NAME.gz.tmp-{pid}-{nanos}-{n}`.
pub fn is_leftover(name: &OsStr) -> bool {
    if !crate::store::atomic::is_temp_name(name) {
        return false;
    }
    let b = name.as_encoded_bytes();
    b.windows(SUFFIX.len() + 5)
        .any(|w| w == [SUFFIX.as_bytes(), b".tmp-"].concat().as_slice())
}

/// A file opened by [`open_read`]: plain or decompressed while read.
pub enum Reader {
    /// Read as it is.
    Plain(BufReader<File>),
    /// Decompressed while read.
    Gz(Box<BufReader<Corrupt<MultiGzDecoder<BufReader<File>>>>>),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(r) => r.read(buf),
            Reader::Gz(r) => r.read(buf),
        }
    }
}

impl BufRead for Reader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Reader::Plain(r) => r.fill_buf(),
            Reader::Gz(r) => r.fill_buf(),
        }
    }
    fn consume(&mut self, amt: usize) {
        match self {
            Reader::Plain(r) => r.consume(amt),
            Reader::Gz(r) => r.consume(amt),
        }
    }
}

/// Turns a decoder's errors into `InvalidData` "corrupt or truncated gzip data (…)".
pub struct Corrupt<R>(R);

impl<R: Read> Read for Corrupt<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            return match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(corrupt(&e)),
                ok => ok,
            };
        }
    }
}

fn corrupt(e: &io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt or truncated gzip data ({e})"),
    )
}

/// Wrap `r` (a gzip stream) so that reading it gives the decompressed bytes.
pub fn decoder<R: Read>(r: R) -> impl BufRead {
    BufReader::with_capacity(BUF, Corrupt(MultiGzDecoder::new(BufReader::new(r))))
}

/// `data` compressed as one gzip member (what [`compress`] writes), in memory.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

/// `f` (a gzip file) decompressed while read: [`open_read`]'s reader of a `.gz` for a file
/// opened elsewhere (an archive, `store::archive`).
pub fn decode_file(f: File) -> Reader {
    Reader::Gz(Box::new(BufReader::with_capacity(
        BUF,
        Corrupt(MultiGzDecoder::new(BufReader::new(f))),
    )))
}

/// Open child `name` of `d` (no symlink followed, regular files only: [`Dir::open_file`]) for
/// reading; a `.gz` name is decompressed while read.
pub fn open_read(d: &Dir, name: &OsStr) -> io::Result<Reader> {
    let f = d.open_file(name, false, false)?;
    Ok(if is_gz(name) {
        decode_file(f)
    } else {
        Reader::Plain(BufReader::with_capacity(BUF, f))
    })
}

/// The uncompressed size a gzip file records in its trailer (ISIZE: the size modulo 2^32, of
/// the last member only), read from its last 4 bytes; `None` when the file is shorter than a
/// gzip header and trailer or cannot be read.
pub fn trailer_size(d: &Dir, name: &OsStr) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = d.open_file(name, false, false).ok()?;
    let len = f.metadata().ok()?.len();
    if len < 18 {
        return None;
    }
    f.seek(SeekFrom::Start(len - 4)).ok()?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b).ok()?;
    Some(u64::from(u32::from_le_bytes(b)))
}

/// What [`compress`] did (or, in a dry run, would do) with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Compressed: the original's bytes on disk, and the `.gz`'s (in a dry run: its length).
    Done {
        /// `st_blocks * 512` of the original.
        before: u64,
        /// `st_blocks * 512` of the `.gz` (its length in a dry run).
        after: u64,
    },
    /// Kept as it is, with why (it changed, a differing `.gz` exists beside it …).
    Kept(String),
}

/// Counts what is written to it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// True when the gzip file `gz` of `d` decompresses to exactly the bytes of `plain`.
fn same_content(d: &Dir, gz: &OsStr, plain: &OsStr) -> io::Result<bool> {
    let mut a = open_read(d, gz)?;
    let mut b = BufReader::with_capacity(BUF, d.open_file(plain, false, false)?);
    loop {
        let x = a.fill_buf()?;
        let y = b.fill_buf()?;
        if x.is_empty() || y.is_empty() {
            return Ok(x.is_empty() && y.is_empty());
        }
        let n = x.len().min(y.len());
        if x[..n] != y[..n] {
            return Ok(false);
        }
        a.consume(n);
        b.consume(n);
    }
}

fn unchanged(a: &Meta, b: &Meta) -> bool {
    (a.dev, a.ino, a.len, a.mtime_secs, a.mtime_nanos)
        == (b.dev, b.ino, b.len, b.mtime_secs, b.mtime_nanos)
}

/// Compress regular file `name` of `d` into `name.gz` (see the module comment for the order
/// of writes). `real == false` is a dry run: the data is compressed into a counter, nothing is
/// created or removed, and `after` is the compressed length. `hook(step)` is called after each
/// step that changes the disk (tests kill the process there). Errors are I/O errors of a step,
/// described for the user; what is on disk is then `name` whole, and maybe a `.gz` beside it
/// that the next run verifies.
pub fn compress(
    d: &Dir,
    name: &OsStr,
    real: bool,
    hook: &mut dyn FnMut(&str),
) -> Result<Outcome, String> {
    let io = |what: &str, e: io::Error| format!("{what}: {}", crate::error::describe_io(&e));
    let m0 = d.stat(name).map_err(|e| io("stat", e))?;
    if m0.kind != Kind::File {
        return Ok(Outcome::Kept("not a regular file".into()));
    }
    if m0.nlink > 1 {
        return Ok(Outcome::Kept(format!("it has {} hard links", m0.nlink)));
    }
    let gz = gz_name(name);
    match d.stat(&gz) {
        Ok(g) if g.kind == Kind::File => {
            // A kill between the rename and the unlink: the original is authoritative.
            match same_content(d, &gz, name) {
                Ok(true) if real => {
                    d.unlink(&gz)
                        .map_err(|e| io("remove the earlier copy", e))?;
                    d.sync().map_err(|e| io("sync the directory", e))?;
                    hook("removed-earlier-gz");
                }
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Outcome::Kept(
                        "a different compressed copy is beside it; both kept".into(),
                    ))
                }
                Err(e) => {
                    return Ok(Outcome::Kept(format!(
                        "the compressed copy beside it cannot be read ({}); both kept",
                        crate::error::describe_io(&e)
                    )))
                }
            }
        }
        Ok(_) => return Ok(Outcome::Kept("its `.gz` name is taken".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat the compressed name", e)),
    }
    let mut src = d.open_file(name, false, false).map_err(|e| io("open", e))?;
    if !real {
        let mut enc = GzEncoder::new(Count(0), Compression::default());
        io::copy(&mut src, &mut enc).map_err(|e| io("read", e))?;
        let n = enc.finish().map_err(|e| io("compress", e))?.0;
        return Ok(Outcome::Done {
            before: m0.disk_bytes,
            after: n,
        });
    }
    let tmp = crate::store::atomic::temp_name(&gz);
    let file = d
        .create_new(&tmp)
        .map_err(|e| io("create a temp file", e))?;
    hook("created-temp");
    let written = (|| -> io::Result<File> {
        let mut enc = GzEncoder::new(
            io::BufWriter::with_capacity(BUF, file),
            Compression::default(),
        );
        io::copy(&mut src, &mut enc)?;
        let f = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.set_modified(mtime_of(&m0))?;
        f.sync_all()?;
        Ok(f)
    })();
    if let Err(e) = written {
        let _ = d.unlink(&tmp);
        return Err(io("write the compressed copy", e));
    }
    hook("written");
    if let Err(e) = d.rename(&tmp, d, &gz) {
        let _ = d.unlink(&tmp);
        return Err(io("rename the compressed copy", e));
    }
    d.sync().map_err(|e| io("sync the directory", e))?;
    hook("renamed");
    // The original must be what we read: a writer that appended meanwhile keeps it.
    match d.stat(name) {
        Ok(m) if unchanged(&m0, &m) => {}
        _ => {
            d.unlink(&gz).map_err(|e| io("remove the stale copy", e))?;
            let _ = d.sync();
            return Ok(Outcome::Kept("it changed while it was compressed".into()));
        }
    }
    let after = d.stat(&gz).map(|m| m.disk_bytes).unwrap_or(0);
    d.unlink(name).map_err(|e| io("remove the original", e))?;
    d.sync().map_err(|e| io("sync the directory", e))?;
    hook("unlinked");
    Ok(Outcome::Done {
        before: m0.disk_bytes,
        after,
    })
}

fn mtime_of(m: &Meta) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    if m.mtime_secs >= 0 {
        UNIX_EPOCH + Duration::new(m.mtime_secs as u64, m.mtime_nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(m.mtime_secs.unsigned_abs())
            + Duration::from_nanos(u64::from(m.mtime_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("prodigy-gz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn read_all(d: &Dir, n: &str) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        open_read(d, OsStr::new(n))?.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn names() {
        assert!(is_gz(OsStr::new("events-1.jsonl.gz")));
        assert!(!is_gz(OsStr::new("events-1.jsonl")));
        assert_eq!(plain_name(OsStr::new("a.log.gz")), OsStr::new("a.log"));
        assert_eq!(plain_name(OsStr::new("a.log")), OsStr::new("a.log"));
        assert!(is_leftover(OsStr::new(".a.log.gz.tmp-1-2-3")));
        assert!(!is_leftover(OsStr::new(".a.log.tmp-1-2-3")));
        assert!(!is_leftover(OsStr::new("a.log.gz")));
    }

    #[test]
    fn compress_replaces_the_file_with_an_identical_gz_of_the_same_mtime() {
        let p = tmpdir("roundtrip");
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"event_type\":\"x\",\"n\":{i}}}\n").into_bytes())
            .collect();
        std::fs::write(p.join("e.jsonl"), &body).unwrap();
        let d = Dir::open_root(&p).unwrap();
        let m0 = d.stat(OsStr::new("e.jsonl")).unwrap();
        // A dry run changes nothing.
        let dry = compress(&d, OsStr::new("e.jsonl"), false, &mut |_| {}).unwrap();
        assert!(
            matches!(dry, Outcome::Done { after, .. } if after > 0 && after < body.len() as u64)
        );
        assert!(p.join("e.jsonl").exists() && !p.join("e.jsonl.gz").exists());
        let mut steps = Vec::new();
        let out = compress(&d, OsStr::new("e.jsonl"), true, &mut |s| {
            steps.push(s.to_string())
        })
        .unwrap();
        assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
        assert_eq!(steps, ["created-temp", "written", "renamed", "unlinked"]);
        assert!(!p.join("e.jsonl").exists());
        assert_eq!(read_all(&d, "e.jsonl.gz").unwrap(), body);
        let m1 = d.stat(OsStr::new("e.jsonl.gz")).unwrap();
        assert_eq!(
            (m1.mtime_secs, m1.mtime_nanos),
            (m0.mtime_secs, m0.mtime_nanos)
        );
        assert_eq!(
            trailer_size(&d, OsStr::new("e.jsonl.gz")),
            Some(body.len() as u64)
        );
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 1);
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn both_copies_keep_the_original_and_redo_only_an_identical_gz() {
        let p = tmpdir("both");
        std::fs::write(p.join("a.log"), b"hello\n").unwrap();
        let d = Dir::open_root(&p).unwrap();
        // A copy identical to the original (a kill before the unlink): redone.
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b"hello\n").unwrap();
        std::fs::write(p.join("a.log.gz"), e.finish().unwrap()).unwrap();
        let out = compress(&d, OsStr::new("a.log"), true, &mut |_| {}).unwrap();
        assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
        assert_eq!(read_all(&d, "a.log.gz").unwrap(), b"hello\n");
        assert!(!p.join("a.log").exists());
        // A different copy (a writer made a new `a.log`): both kept.
        std::fs::write(p.join("a.log"), b"new\n").unwrap();
        let out = compress(&d, OsStr::new("a.log"), true, &mut |_| {}).unwrap();
        assert!(matches!(out, Outcome::Kept(_)), "{out:?}");
        assert_eq!(read_all(&d, "a.log.gz").unwrap(), b"hello\n");
        assert_eq!(std::fs::read(p.join("a.log")).unwrap(), b"new\n");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_truncated_or_corrupt_gz_is_an_invalid_data_error() {
        let p = tmpdir("corrupt");
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&b"{\"a\":1}\n".repeat(1000)).unwrap();
        let gz = e.finish().unwrap();
        std::fs::write(p.join("t.gz"), &gz[..gz.len() / 2]).unwrap();
        let mut bad = gz.clone();
        bad[12] ^= 0xff;
        std::fs::write(p.join("c.gz"), &bad).unwrap();
        std::fs::write(p.join("n.gz"), b"not gzip at all\n").unwrap();
        let d = Dir::open_root(&p).unwrap();
        for n in ["t.gz", "c.gz", "n.gz"] {
            let e = read_all(&d, n).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{n}: {e}");
            assert!(
                e.to_string().contains("corrupt or truncated gzip"),
                "{n}: {e}"
            );
        }
        std::fs::remove_dir_all(&p).unwrap();
    }
}
