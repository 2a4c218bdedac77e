//! WebDataset shards: a one-time tar header walk into a per-shard index, cached as a sidecar.
//!
//! Grouping follows `webdataset` 1.0.2 exactly (`tariterators.tar_file_iterator` + `group_by_keys`):
//! only regular members count; top-level `__*__` members and names matching `__[^/]*__($|/)` are
//! skipped; the key is the directory plus the basename up to its first dot (regex
//! `^((?:.*/|)[^.]+)[.]([^/]*)$`), the extension is the rest, lower-cased; only consecutive members
//! group; a repeated extension within one sample is an error. GNU and PAX long names are honoured
//! (the `tar` crate resolves them).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// One tar member of a sample: extension id (into [`ShardIndex::exts`]), data offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub ext: u32,
    pub offset: u64,
    pub size: u64,
}

/// The index of one shard: its samples, their members and a fingerprint of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIndex {
    /// File size in bytes when indexed.
    pub file_size: u64,
    /// Modification time (ns since the epoch) when indexed.
    pub mtime_ns: i64,
    /// xxh3-64 of every byte the header walk read (headers and long-name records).
    pub header_hash: u64,
    /// Bytes the header walk read from the file.
    pub bytes_read: u64,
    /// Distinct extensions, in order of first appearance.
    pub exts: Vec<String>,
    /// Sample keys.
    pub keys: Vec<String>,
    /// `members[starts[i]..starts[i + 1]]` are the members of sample `i`.
    pub starts: Vec<u32>,
    pub members: Vec<Member>,
}

impl ShardIndex {
    /// Tokens per field, where the format tells them without reading data: raw `.u16` / `.u32`
    /// fields (`(extension, tokens)`, in the order of `exts`).
    pub fn token_counts(&self) -> Vec<(String, u64)> {
        self.exts
            .iter()
            .enumerate()
            .filter_map(|(e, ext)| {
                let width = match ext.rsplit('.').next() {
                    Some("u16") => 2,
                    Some("u32") => 4,
                    _ => return None,
                };
                let bytes: u64 = self
                    .members
                    .iter()
                    .filter(|m| m.ext as usize == e)
                    .map(|m| m.size)
                    .sum();
                Some((ext.clone(), bytes / width))
            })
            .collect()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the shard holds no sample.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The members of sample `i`.
    pub fn sample(&self, i: usize) -> &[Member] {
        &self.members[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Check the internal consistency every reader relies on: sample boundaries, extension ids,
    /// members inside the file, no sample without members or with a repeated extension.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.starts.len() != self.keys.len() + 1 {
            return Err(format!(
                "{} sample starts for {} keys",
                self.starts.len(),
                self.keys.len()
            ));
        }
        if self.starts.first() != Some(&0)
            || self.starts.last().map(|&s| s as usize) != Some(self.members.len())
        {
            return Err("sample starts do not span the members".into());
        }
        for (i, w) in self.starts.windows(2).enumerate() {
            if w[0] >= w[1] {
                return Err(format!("sample {i} has no member"));
            }
            let ms = &self.members[w[0] as usize..w[1] as usize];
            for (j, m) in ms.iter().enumerate() {
                if m.ext as usize >= self.exts.len() {
                    return Err(format!("sample {i}: extension id {} out of range", m.ext));
                }
                if m.offset
                    .checked_add(m.size)
                    .is_none_or(|e| e > self.file_size)
                {
                    return Err(format!("sample {i}: member outside the file"));
                }
                if ms[..j].iter().any(|o| o.ext == m.ext) {
                    return Err(format!("sample {i}: repeated extension"));
                }
            }
        }
        Ok(())
    }

    /// Id of extension `ext`, if any sample has it.
    pub fn ext_id(&self, ext: &str) -> Option<u32> {
        self.exts.iter().position(|e| e == ext).map(|i| i as u32)
    }
}

/// Split a member name into (key, extension) exactly like webdataset's `base_plus_ext`.
///
/// The regex `^((?:.*/|)[^.]+)[.]([^/]*)$` tries split points after each `/` from the last one
/// leftwards, then the start; from a split point the key runs to the next dot (at least one
/// character), and the extension after that dot must hold no `/`.
pub fn split_key(name: &str) -> Option<(&str, &str)> {
    let bytes = name.as_bytes();
    let starts = bytes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0));
    for start in starts {
        let Some(dot) = bytes[start..]
            .iter()
            .position(|b| *b == b'.')
            .map(|p| p + start)
        else {
            continue;
        };
        // `.*/` cannot cross a newline.
        if dot == start || bytes[dot + 1..].contains(&b'/') || bytes[..start].contains(&b'\n') {
            continue;
        }
        return Some((&name[..dot], &name[dot + 1..]));
    }
    None
}

/// Whether webdataset skips this member as metadata (`__*__` files and directories).
pub fn is_meta(name: &str) -> bool {
    if !name.contains('/') && name.starts_with("__") && name.ends_with("__") {
        return true;
    }
    // re.match(r"__[^/]*__($|/)", name)
    let first = name.split('/').next().unwrap_or("");
    first.len() >= 4 && first.starts_with("__") && first.ends_with("__")
}

/// Positional reads: a shard file (`pread`) or a byte buffer (tests, fuzzing).
pub trait ReadAt {
    /// Read into `buf` from offset `pos`; `Ok(0)` at the end.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, pos)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let start = usize::try_from(pos).map_or(self.len(), |p| p.min(self.len()));
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// A `Read + Seek` over a [`ReadAt`] source: seeks cost nothing; every byte read is counted and
/// hashed (the header walk only ever reads headers and long-name records).
struct HeaderReader<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    pos: u64,
    bytes_read: u64,
    hasher: Xxh3,
}

impl<R: ReadAt + ?Sized> Read for HeaderReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(buf, self.pos)?;
        self.pos += n as u64;
        self.bytes_read += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: ReadAt + ?Sized> Seek for HeaderReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek in shard"))?;
        Ok(self.pos)
    }
}

fn shard_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Shard {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io_err(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuse what cannot be read by offset: URLs, `pipe:` and compressed shards.
pub fn check_local_path(path: &Path) -> Result<()> {
    let s = path.to_string_lossy();
    if s.starts_with("pipe:") || s.contains("://") {
        return Err(shard_err(
            path,
            "only local (or mounted) files can be indexed; pipe: and URLs are not supported",
        ));
    }
    let lower = s.to_lowercase();
    for ext in [".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4"] {
        if lower.ends_with(ext) {
            return Err(shard_err(
                path,
                "compressed shards cannot be read by offset; decompress to a plain .tar \
                 (e.g. `gunzip -k`) or compress members individually",
            ));
        }
    }
    Ok(())
}

/// (size, mtime in ns) of a file.
pub fn stat(path: &Path) -> Result<(u64, i64)> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(shard_err(path, "not a regular file"));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok((meta.len(), mtime))
}

/// Walk the headers of one tar shard and group its members into samples.
pub fn build_index(path: &Path) -> Result<ShardIndex> {
    check_local_path(path)?;
    let (file_size, mtime_ns) = stat(path)?;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    walk(&file, path, file_size, mtime_ns)
}

/// Index a tar archive held in memory (same rules and errors as [`build_index`]; the errors name
/// the path `<memory>`). Used by the fuzz harness and the regression corpus.
pub fn index_bytes(data: &[u8]) -> Result<ShardIndex> {
    walk(data, Path::new("<memory>"), data.len() as u64, 0)
}

/// Whether a member carries PAX sparse records (`GNU.sparse.*` keys): its data is a sparse map,
/// not the file, and its name a placeholder (`GNUSparseFile.<pid>/...`).
fn is_pax_sparse<R: io::Read>(entry: &mut tar::Entry<'_, R>) -> bool {
    match entry.pax_extensions() {
        Ok(Some(exts)) => exts
            .flatten()
            .any(|e| e.key_bytes().starts_with(b"GNU.sparse.")),
        _ => false,
    }
}

/// The header walk over `src` of `file_size` bytes. Every allocation is bounded by the input:
/// names come from headers or long-name records no longer than the file, and each member is
/// checked to lie inside the file before it is recorded.
fn walk<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    file_size: u64,
    mtime_ns: i64,
) -> Result<ShardIndex> {
    if file_size == 0 {
        return Err(shard_err(path, "empty file, not a tar archive"));
    }
    let mut magic = [0u8; 6];
    let n = src.read_at(&mut magic, 0).map_err(|e| io_err(path, e))?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        return Err(shard_err(
            path,
            "gzip-compressed tar cannot be read by offset; decompress it to a plain .tar",
        ));
    }
    if (n >= 3 && &magic[..3] == b"BZh") || (n >= 6 && magic == [0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(shard_err(
            path,
            "compressed tar cannot be read by offset; decompress it",
        ));
    }
    let reader = HeaderReader {
        src,
        pos: 0,
        bytes_read: 0,
        hasher: Xxh3::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut exts: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut starts: Vec<u32> = Vec::new();
    let mut members: Vec<Member> = Vec::new();
    let corrupt = |e: io::Error| shard_err(path, format!("corrupt or truncated tar: {e}"));
    {
        let entries = archive.entries_with_seek().map_err(corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            let etype = entry.header().entry_type();
            if etype.is_gnu_sparse() {
                return Err(shard_err(path, "GNU sparse members are not supported"));
            }
            if !(etype.is_file() || etype.is_contiguous()) {
                continue;
            }
            if is_pax_sparse(&mut entry) {
                return Err(shard_err(
                    path,
                    "PAX sparse members (tar --format=pax -S) are not supported; re-create the \
                     tar without -S",
                ));
            }
            let offset = entry.raw_file_position();
            let size = entry.size();
            if offset.checked_add(size).is_none_or(|end| end > file_size) {
                return Err(shard_err(
                    path,
                    format!(
                        "truncated tar: member at offset {offset} needs {size} bytes but the \
                         file has {file_size}"
                    ),
                ));
            }
            let raw = entry.path_bytes();
            let name = std::str::from_utf8(&raw)
                .map_err(|_| shard_err(path, "member name is not valid UTF-8"))?;
            if is_meta(name) {
                continue;
            }
            let Some((key, ext)) = split_key(name) else {
                continue;
            };
            let ext = ext.to_lowercase();
            if ext == "__key__" || ext == "__url__" {
                // webdataset's sample already holds these fields: it refuses such a member
                return Err(shard_err(
                    path,
                    format!("{name}: duplicate file name in tar file (extension {ext:?})"),
                ));
            }
            let new_sample = keys.last().is_none_or(|k| k != key);
            if new_sample {
                keys.push(key.to_owned());
                starts.push(members.len() as u32);
            }
            let ext_id = match exts.iter().position(|e| *e == ext) {
                Some(i) => i as u32,
                None => {
                    exts.push(ext.clone());
                    (exts.len() - 1) as u32
                }
            };
            let first = starts.last().map_or(0, |s| *s as usize);
            if !new_sample && members[first..].iter().any(|m| m.ext == ext_id) {
                return Err(shard_err(
                    path,
                    format!("{name}: duplicate file name in tar file (extension {ext:?})"),
                ));
            }
            members.push(Member {
                ext: ext_id,
                offset,
                size,
            });
        }
    }
    if members.len() > u32::MAX as usize {
        return Err(shard_err(
            path,
            "too many members in one shard (more than 2^32)",
        ));
    }
    starts.push(members.len() as u32);
    let reader = archive.into_inner();
    let index = ShardIndex {
        file_size,
        mtime_ns,
        header_hash: reader.hasher.digest(),
        bytes_read: reader.bytes_read,
        exts,
        keys,
        starts,
        members,
    };
    Ok(index)
}

/// A coarse description of an indexing outcome, stable across inputs that fail (or succeed) the
/// same way: `ok` with a bucket of the sample count, or the error message without member names
/// and numbers. The fuzz harness files one input per class into the regression corpus.
pub fn outcome_class(res: &Result<ShardIndex>) -> String {
    match res {
        Ok(idx) => {
            let bucket = match idx.len() {
                0 => "0",
                1 => "1",
                2..=3 => "2-3",
                _ => "4+",
            };
            format!("ok samples={bucket}")
        }
        Err(Error::Shard { message, .. }) => {
            let m = match message.find(": duplicate file name") {
                Some(i) => &message[i + 2..],
                None => message.as_str(),
            };
            // Keep "what: why", drop the offending value ("...: <field bytes>", "(extension ..)").
            let m = m.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": ");
            let m = m.split(" (").next().unwrap_or_default();
            let m: String = m.chars().filter(|c| !c.is_ascii_digit()).take(60).collect();
            format!("err {}", m.trim_end())
        }
        Err(e) => format!("err {e}"),
    }
}

const MAGIC: &[u8; 8] = b"ADOIDX01";

/// Suffix of index sidecars: `shard.tar` → `shard.tar.adoidx`.
pub const SIDECAR_SUFFIX: &str = ".adoidx";

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

impl ShardIndex {
    /// Serialise to the sidecar format (little-endian, length-prefixed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.members.len() * 20 + self.keys.len() * 24);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, self.file_size);
        put_u64(&mut out, self.mtime_ns as u64);
        put_u64(&mut out, self.header_hash);
        put_u64(&mut out, self.bytes_read);
        put_u32(&mut out, self.exts.len() as u32);
        for e in &self.exts {
            put_str(&mut out, e);
        }
        put_u32(&mut out, self.keys.len() as u32);
        for (i, k) in self.keys.iter().enumerate() {
            put_str(&mut out, k);
            let ms = self.sample(i);
            put_u32(&mut out, ms.len() as u32);
            for m in ms {
                put_u32(&mut out, m.ext);
                put_u64(&mut out, m.offset);
                put_u64(&mut out, m.size);
            }
        }
        out
    }

    /// Parse a sidecar; `None` when it is not a (valid) index of ours.
    pub fn decode(buf: &[u8]) -> Option<ShardIndex> {
        let mut c = Cursor { buf, pos: 0 };
        if c.take(8)? != MAGIC {
            return None;
        }
        let file_size = c.u64()?;
        let mtime_ns = c.u64()? as i64;
        let header_hash = c.u64()?;
        let bytes_read = c.u64()?;
        let n_exts = c.u32()? as usize;
        let exts = (0..n_exts)
            .map(|_| c.string())
            .collect::<Option<Vec<_>>>()?;
        let n = c.u32()? as usize;
        let mut keys = Vec::with_capacity(n.min(buf.len()));
        let mut starts = Vec::with_capacity(n.min(buf.len()) + 1);
        let mut members = Vec::new();
        for _ in 0..n {
            keys.push(c.string()?);
            starts.push(u32::try_from(members.len()).ok()?);
            let m = c.u32()?;
            for _ in 0..m {
                let ext = c.u32()?;
                let (offset, size) = (c.u64()?, c.u64()?);
                // A sidecar is trusted only as far as it is consistent: a member outside the
                // file would make a read allocate (and fail) on a corrupt size.
                if ext as usize >= exts.len() || offset.checked_add(size)? > file_size {
                    return None;
                }
                members.push(Member { ext, offset, size });
            }
        }
        starts.push(u32::try_from(members.len()).ok()?);
        if c.pos != buf.len() {
            return None;
        }
        let idx = ShardIndex {
            file_size,
            mtime_ns,
            header_hash,
            bytes_read,
            exts,
            keys,
            starts,
            members,
        };
        idx.validate().ok()?;
        Some(idx)
    }
}

/// Where the sidecar of `shard` lives: next to it, or under `cache_dir` keyed by a hash of the
/// absolute path.
pub fn sidecar_paths(shard: &Path, cache_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut s = shard.as_os_str().to_owned();
    s.push(SIDECAR_SUFFIX);
    out.push(PathBuf::from(s));
    if let Some(dir) = cache_dir {
        let abs = std::path::absolute(shard).unwrap_or_else(|_| shard.to_path_buf());
        let h = xxhash_rust::xxh3::xxh3_64(abs.as_os_str().as_encoded_bytes());
        let name = shard
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(dir.join(format!("{name}.{h:016x}{SIDECAR_SUFFIX}")));
    }
    out
}

/// Write `bytes` to `path` atomically (temporary file in the same directory, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// How an index was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSource {
    /// Read from a valid sidecar.
    Cache,
    /// Built by a header walk and saved as a sidecar.
    Built,
    /// Built, but no sidecar could be written (read-only directory; a foreign file in the way).
    BuiltUncached,
}

/// Load the index of `shard` from its sidecar when the fingerprint (size + mtime) still matches,
/// otherwise walk the headers and (re)write the sidecar atomically. A file at a sidecar path that
/// is not one of our indexes is never overwritten.
pub fn load_or_build(shard: &Path, cache_dir: Option<&Path>) -> Result<(ShardIndex, IndexSource)> {
    check_local_path(shard)?;
    let (size, mtime) = stat(shard)?;
    let candidates = sidecar_paths(shard, cache_dir);
    for side in &candidates {
        if let Ok(bytes) = std::fs::read(side) {
            if let Some(idx) = ShardIndex::decode(&bytes) {
                if idx.file_size == size && idx.mtime_ns == mtime {
                    return Ok((idx, IndexSource::Cache));
                }
            }
        }
    }
    let idx = build_index(shard)?;
    let encoded = idx.encode();
    for side in &candidates {
        let ours_or_absent = match std::fs::read(side) {
            Ok(bytes) => bytes.starts_with(MAGIC),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if ours_or_absent && write_atomic(side, &encoded).is_ok() {
            return Ok((idx, IndexSource::Built));
        }
    }
    Ok((idx, IndexSource::BuiltUncached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_key_matches_webdataset_regex() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("img001.jpg", Some(("img001", "jpg"))),
            ("a/b.c/img001.seg.png", Some(("a/b.c/img001", "seg.png"))),
            ("img.001.jpg", Some(("img", "001.jpg"))),
            ("noext", None),
            (".hidden", None),
            ("a/.hidden.txt", Some(("a/", "hidden.txt"))),
            ("a.b/c", None),
            ("dir.v1/file.x", Some(("dir.v1/file", "x"))),
        ];
        for (name, want) in cases {
            assert_eq!(split_key(name), *want, "{name}");
        }
    }

    #[test]
    fn meta_members() {
        assert!(is_meta("__meta__"));
        assert!(is_meta("___"));
        assert!(is_meta("__x__/y.txt"));
        assert!(!is_meta("a/__x__"));
        assert!(!is_meta("__x__.txt"));
    }

    #[test]
    fn encode_decode_round_trip() {
        let idx = ShardIndex {
            file_size: 10240,
            mtime_ns: 123,
            header_hash: 7,
            bytes_read: 1536,
            exts: vec!["txt".into(), "cls".into()],
            keys: vec!["a".into(), "b".into()],
            starts: vec![0, 2, 3],
            members: vec![
                Member {
                    ext: 0,
                    offset: 512,
                    size: 3,
                },
                Member {
                    ext: 1,
                    offset: 1536,
                    size: 1,
                },
                Member {
                    ext: 0,
                    offset: 2560,
                    size: 4,
                },
            ],
        };
        let back = ShardIndex::decode(&idx.encode());
        assert_eq!(back.as_ref(), Some(&idx));
        assert!(ShardIndex::decode(b"not an index").is_none());
    }
}
