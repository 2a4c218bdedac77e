//! WebDataset shards: a one-time tar header walk into a per-shard index, cached as a sidecar.
//!
//! Grouping follows `webdataset` 1.0.2 exactly (`tariterators.tar_file_iterator` + `group_by_keys`):
//! only regular members count; top-level `__*__` members and names matching `__[^/]*__($|/)` are
//! skipped; the key is the directory plus the basename up to its first dot (regex
//! `^((?:.*/|)[^.]+)[.]([^/]*)$`), the extension is the rest, lower-cased; only consecutive members
//! group; a repeated extension within one sample is an error. GNU and PAX long names are honoured
//! (the `tar` crate resolves them).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// One tar member of a sample: extension id (into [`ShardIndex::exts`]), data offset and size,
/// and what binds it to the bytes: the xxh3-64 of its 512-byte tar header plus its data, and
/// whether that header holds the member's whole name (no GNU/PAX long-name record), so that a
/// reader can also check the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub ext: u32,
    pub offset: u64,
    pub size: u64,
    pub hash: u64,
    pub named: bool,
}

/// Identity of a local file: size, modification and change times, inode and device. `cp -p`,
/// `rsync -t` and `touch -r` restore the mtime but never the ctime, and a replaced file has
/// another inode, so a sidecar is trusted only for the very file it was built from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub dev: u64,
}

/// The index of one shard: its samples, their members and fingerprints of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIndex {
    /// File size in bytes when indexed.
    pub file_size: u64,
    /// Modification time (ns since the epoch) when indexed.
    pub mtime_ns: i64,
    /// Change time (ns since the epoch), inode and device of the indexed file (0 when the index
    /// was built from memory or comes from a remote sidecar).
    pub ctime_ns: i64,
    pub inode: u64,
    pub dev: u64,
    /// xxh3-64 of the whole file: what a downloaded copy is checked against.
    pub content_hash: u64,
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

    /// The local-file identity this index was built from.
    pub fn file_stat(&self) -> FileStat {
        FileStat {
            size: self.file_size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            dev: self.dev,
        }
    }

    /// Where the header walk reads the next header after member `g` (its data padded to 512
    /// bytes); 0 before the first member.
    fn end_of(&self, g: usize) -> u64 {
        g.checked_sub(1)
            .and_then(|p| self.members.get(p))
            .map_or(0, |m| {
                m.offset.saturating_add(m.size).saturating_add(511) & !511
            })
    }

    /// Check that `buf`, the bytes of the file from offset `lo` on, holds sample `i` exactly as
    /// indexed: each member's tar header plus data hashes to the recorded value; where the
    /// header holds the whole name, that name gives the sample's key and the member's extension;
    /// and where no record lies between the member and the one before it (so that no PAX record
    /// can override its size), the header's size field is the indexed size — an index cannot
    /// stretch a member over the samples after it. `buf` must cover
    /// `[first member offset - 512, last member end)`.
    pub fn verify_sample(&self, i: usize, buf: &[u8], lo: u64) -> std::result::Result<(), String> {
        let key = &self.keys[i];
        let first = self.starts[i] as usize;
        for (g, m) in self
            .sample(i)
            .iter()
            .enumerate()
            .map(|(j, m)| (first + j, m))
        {
            let start = m
                .offset
                .checked_sub(512)
                .and_then(|s| s.checked_sub(lo))
                .ok_or("member header before the read range")?;
            let end = start + 512 + m.size;
            let bytes = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(a, b)| buf.get(a..b))
                .ok_or("member outside the read range")?;
            if xxhash_rust::xxh3::xxh3_64(bytes) != m.hash {
                return Err(format!(
                    "sample {key:?}: the bytes at offset {} are not the indexed member",
                    m.offset
                ));
            }
            if self.end_of(g) == m.offset - 512 {
                let size = tar::Header::from_byte_slice(&bytes[..512]).entry_size();
                if size.ok() != Some(m.size) {
                    return Err(format!(
                        "sample {key:?}: the tar header at offset {} gives another size than \
                         the index's {}",
                        m.offset - 512,
                        m.size
                    ));
                }
            }
            if m.named {
                let name = header_name(&bytes[..512]);
                let ext = &self.exts[m.ext as usize];
                let ok =
                    split_key(&name).is_some_and(|(k, e)| k == key && e.to_lowercase() == *ext);
                if !ok {
                    return Err(format!(
                        "sample {key:?}: the tar header at offset {} names another member",
                        m.offset - 512
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ShardIndex {
    /// Check that the members tile the archive, so that a sidecar carrying a file's identity
    /// cannot leave samples out: from offset 0, each member's 512-byte header follows the
    /// previous member's data padded to 512 bytes, and after the last member the archive ends
    /// (a zero block, or the end of the file). Where something lies between (a long-name or
    /// PAX record, a directory, a `__meta__` file, a name without a key) its headers are read
    /// and must be ones the header walk skips, and the member's size (a PAX record's, if it
    /// sets one) must be the indexed size; after a plain ustar member nothing is read, so a
    /// shard without such records costs one 512-byte read, and the size of such a member is
    /// checked when it is read ([`ShardIndex::verify_sample`]). O(members).
    pub fn check_tiling<R: ReadAt + ?Sized>(&self, src: &R) -> std::result::Result<(), String> {
        let mut next = 0u64; // where the header walk reads its next header
        for m in &self.members {
            let header = m
                .offset
                .checked_sub(512)
                .ok_or("member before the archive")?;
            if header < next {
                return Err(format!(
                    "the member at offset {header} overlaps the one before"
                ));
            }
            if header > next {
                skipped_span(src, next, Some((header, m.size)))?;
            }
            next = m
                .offset
                .checked_add(m.size)
                .and_then(|e| e.checked_add(511))
                .map(|e| e & !511)
                .ok_or("member size overflows")?;
        }
        if next < self.file_size {
            skipped_span(src, next, None)?;
        }
        Ok(())
    }
}

/// The name a ustar header holds (`prefix/name`, or the 100-byte name of older formats).
fn header_name(block: &[u8]) -> String {
    let field = |a: usize, b: usize| {
        let f = &block[a..b];
        let n = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..n]).into_owned()
    };
    let name = field(0, 100);
    if &block[257..262] == b"ustar" {
        let prefix = field(345, 500);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
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

fn ns(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn stat_of(meta: &std::fs::Metadata) -> FileStat {
    FileStat {
        size: meta.len(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        dev: meta.dev(),
    }
}

/// Identity of a regular file (a directory, FIFO or device is refused before it is opened).
pub fn stat(path: &Path) -> Result<FileStat> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(shard_err(path, "not a regular file"));
    }
    Ok(stat_of(&meta))
}

/// Identity of an open file; refuses anything but a regular file.
pub fn fstat(file: &File, path: &Path) -> Result<FileStat> {
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(shard_err(path, "not a regular file"));
    }
    Ok(stat_of(&meta))
}

/// Open a shard for reading without blocking on a FIFO and check that it is a regular file.
pub fn open_regular(path: &Path) -> Result<(File, FileStat)> {
    stat(path)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock())
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let st = fstat(&file, path)?;
    Ok((file, st))
}

/// `O_NONBLOCK` (only matters for FIFOs, which are refused right after opening).
const fn libc_o_nonblock() -> i32 {
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    {
        0x0004
    }
    #[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
    {
        0o4000
    }
}

/// Walk the headers of one tar shard, group its members into samples and hash its content
/// (one sequential read of the file; see [`ShardIndex::content_hash`] and [`Member::hash`]).
pub fn build_index(path: &Path) -> Result<ShardIndex> {
    check_local_path(path)?;
    let (file, st) = open_regular(path)?;
    let mut idx = walk(&file, path, st.size)?;
    idx.mtime_ns = st.mtime_ns;
    idx.ctime_ns = st.ctime_ns;
    idx.inode = st.inode;
    idx.dev = st.dev;
    hash_content(&file, path, &mut idx)?;
    // A file written while it was indexed is not indexed.
    if fstat(&file, path)? != st {
        return Err(shard_err(path, "shard changed while it was indexed"));
    }
    Ok(idx)
}

/// Index a tar archive held in memory (same rules and errors as [`build_index`]; the errors name
/// the path `<memory>`). Used by the fuzz harness and the regression corpus.
pub fn index_bytes(data: &[u8]) -> Result<ShardIndex> {
    let path = Path::new("<memory>");
    let mut idx = walk(data, path, data.len() as u64)?;
    hash_content(data, path, &mut idx)?;
    Ok(idx)
}

/// Size and xxh3-64 of a whole file, read sequentially (a downloaded shard is checked with it).
pub fn file_digest(path: &Path) -> Result<(u64, u64)> {
    let (file, st) = open_regular(path)?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = FileExt::read_at(&file, &mut buf, pos).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    if pos != st.size {
        return Err(shard_err(path, "file changed while it was hashed"));
    }
    Ok((pos, h.digest()))
}

/// One sequential pass over the file: the whole-file hash and each member's (header + data)
/// hash. Members come in file order; one that overlaps an earlier one (never in a real tar) is
/// hashed by its own read.
fn hash_content<R: ReadAt + ?Sized>(src: &R, path: &Path, idx: &mut ShardIndex) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut whole = Xxh3::new();
    let mut buf = vec![
        0u8;
        CHUNK
            .min(usize::try_from(idx.file_size).unwrap_or(CHUNK))
            .max(1)
    ];
    let mut pos = 0u64;
    let mut next = 0usize;
    let mut cur = Xxh3::new();
    let n_members = idx.members.len();
    let ranges: Vec<(u64, u64)> = idx
        .members
        .iter()
        .map(|m| (m.offset.saturating_sub(512), m.offset + m.size))
        .collect();
    let mut done = vec![false; n_members];
    // Streamable: starts at or after the end of every earlier member (always, in a real tar).
    let mut streamable = vec![false; n_members];
    let mut max_end = 0u64;
    for (i, &(a, b)) in ranges.iter().enumerate() {
        streamable[i] = a >= max_end;
        max_end = max_end.max(b);
    }
    while pos < idx.file_size {
        let n = src.read_at(&mut buf, pos).map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Err(shard_err(path, "shard shrank while it was indexed"));
        }
        let chunk = &buf[..n];
        let end = pos + n as u64;
        whole.update(chunk);
        loop {
            while next < n_members && !streamable[next] {
                next += 1;
            }
            if next >= n_members {
                break;
            }
            let (a, b) = ranges[next];
            if a >= end {
                break;
            }
            let from = (a.max(pos) - pos) as usize;
            let to = (b.min(end) - pos) as usize;
            cur.update(&chunk[from..to]);
            if b > end {
                break;
            }
            idx.members[next].hash = cur.digest();
            done[next] = true;
            cur = Xxh3::new();
            next += 1;
        }
        pos = end;
    }
    idx.content_hash = whole.digest();
    for (i, m) in idx.members.iter_mut().enumerate() {
        if !done[i] {
            let (a, b) = ranges[i];
            let mut data = vec![0u8; (b - a) as usize];
            read_exact(src, &mut data, a).map_err(|e| io_err(path, e))?;
            m.hash = xxhash_rust::xxh3::xxh3_64(&data);
        }
    }
    Ok(())
}

fn read_exact<R: ReadAt + ?Sized>(src: &R, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = src.read_at(buf, pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pos += n as u64;
        buf = &mut buf[n..];
    }
    Ok(())
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

/// Whether the walk looks at this entry's name: regular (or contiguous) files only. Sparse
/// members are refused.
fn indexed_type<R: io::Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<bool> {
    let etype = entry.header().entry_type();
    if etype.is_gnu_sparse() {
        return Err(shard_err(path, "GNU sparse members are not supported"));
    }
    if !(etype.is_file() || etype.is_contiguous()) {
        return Ok(false);
    }
    if is_pax_sparse(entry) {
        return Err(shard_err(
            path,
            "PAX sparse members (tar --format=pax -S) are not supported; re-create the \
             tar without -S",
        ));
    }
    Ok(true)
}

/// `(key, extension)` of a member the walk indexes; `None` for metadata and names without a key.
fn sample_name(name: &str) -> Option<(&str, &str)> {
    if is_meta(name) {
        return None;
    }
    split_key(name)
}

/// A [`ReadAt`] view of `src` from offset `base` on.
struct Offset<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    base: u64,
}

impl<R: ReadAt + ?Sized> ReadAt for Offset<'_, R> {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        match self.base.checked_add(pos) {
            Some(p) => self.src.read_at(buf, p),
            None => Ok(0),
        }
    }
}

/// Walk the tar headers of `src` from `start` (a header boundary) and check that every entry
/// before `until` is one the walk skips (not a regular file, metadata, a name without a key;
/// long-name and PAX records are consumed with the entry they describe). With `Some(h)` the
/// walk must then reach an entry whose header is at `h`; with `None` it must reach the end of
/// the archive (a zero block or the end of the file).
fn skipped_span<R: ReadAt + ?Sized>(
    src: &R,
    start: u64,
    until: Option<(u64, u64)>,
) -> std::result::Result<(), String> {
    let path = Path::new("<sidecar check>");
    let reader = HeaderReader {
        src: &Offset { src, base: start },
        pos: 0,
        bytes_read: 0,
        hasher: Xxh3::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries_with_seek()
        .map_err(|_| "unreadable tar header".to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|_| format!("unreadable tar header after offset {start}"))?;
        let at = start.saturating_add(entry.raw_header_position());
        match until {
            Some((h, size)) if at == h => {
                if entry.size() != size {
                    return Err(format!(
                        "the member at offset {h} has {} bytes, not the indexed {size}",
                        entry.size()
                    ));
                }
                return Ok(());
            }
            Some((h, _)) if at > h => return Err(format!("no tar header at offset {h}")),
            _ => {}
        }
        let listed = indexed_type(&mut entry, path).map_err(|e| e.to_string())?
            && std::str::from_utf8(&entry.path_bytes())
                .map_or(true, |name| sample_name(name).is_some());
        if listed {
            return Err(format!("the member at offset {at} is missing"));
        }
    }
    match until {
        Some((h, _)) => Err(format!("no tar header at offset {h}")),
        None => Ok(()),
    }
}

/// The header walk over `src` of `file_size` bytes. Every allocation is bounded by the input:
/// names come from headers or long-name records no longer than the file, and each member is
/// checked to lie inside the file before it is recorded.
fn walk<R: ReadAt + ?Sized>(src: &R, path: &Path, file_size: u64) -> Result<ShardIndex> {
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
    // The tar crate's messages may quote header fields, which for a file that is not a tar
    // could be anything (a password file): only fixed texts reach the user.
    let corrupt = |e: io::Error| {
        let text = e.to_string();
        // "numeric field was not a number: <field bytes> when getting cksum for <name>": keep
        // the part before the quoted value, and only if it is plain text.
        let head = text.split(": ").next().unwrap_or_default();
        let head = head.split(" when getting").next().unwrap_or_default();
        let plain = !head.is_empty()
            && head.len() <= 80
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " -_.'()".contains(c));
        let what = if plain { head } else { "malformed tar header" };
        shard_err(path, format!("corrupt or truncated tar: {what}"))
    };
    {
        let entries = archive.entries_with_seek().map_err(corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            if !indexed_type(&mut entry, path)? {
                continue;
            }
            let offset = entry.raw_file_position();
            let size = entry.size();
            if entry.raw_header_position().checked_add(512) != Some(offset) {
                return Err(shard_err(path, "member data does not follow its header"));
            }
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
            let named = header_name(entry.header().as_bytes()) == name;
            let Some((key, ext)) = sample_name(name) else {
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
                hash: 0,
                named,
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
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        dev: 0,
        content_hash: 0,
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

const MAGIC: &[u8; 8] = b"ADOIDX02";
/// What every version of our sidecars starts with (older ones are ours to replace).
const MAGIC_FAMILY: &[u8; 7] = b"ADOIDX0";

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
        put_u64(&mut out, self.ctime_ns as u64);
        put_u64(&mut out, self.inode);
        put_u64(&mut out, self.dev);
        put_u64(&mut out, self.content_hash);
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
                put_u64(&mut out, m.hash);
                out.push(u8::from(m.named));
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
        let ctime_ns = c.u64()? as i64;
        let inode = c.u64()?;
        let dev = c.u64()?;
        let content_hash = c.u64()?;
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
                let (offset, size, hash) = (c.u64()?, c.u64()?, c.u64()?);
                let named = match c.take(1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                // A sidecar is trusted only as far as it is consistent: a member outside the
                // file would make a read allocate (and fail) on a corrupt size.
                if ext as usize >= exts.len()
                    || offset < 512
                    || offset.checked_add(size)? > file_size
                {
                    return None;
                }
                members.push(Member {
                    ext,
                    offset,
                    size,
                    hash,
                    named,
                });
            }
        }
        starts.push(u32::try_from(members.len()).ok()?);
        if c.pos != buf.len() {
            return None;
        }
        let idx = ShardIndex {
            file_size,
            mtime_ns,
            ctime_ns,
            inode,
            dev,
            content_hash,
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

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name nobody can guess: a hash of the process, the time, a counter and an
/// address, so a file (or symlink) planted in advance cannot be where we write.
fn private_tmp_name(name: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let local = 0u8;
    let mut h = Xxh3::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&now.to_le_bytes());
    h.update(&count.to_le_bytes());
    h.update(&(std::ptr::addr_of!(local) as usize).to_le_bytes());
    format!(".{name}.{:032x}.tmp", h.digest128())
}

/// Write `bytes` to `path` atomically: a new file created exclusively (`O_EXCL`, which never
/// follows a symlink) under a private name in the same directory, then renamed over `path` (a
/// rename replaces a symlink there, never its target).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = io::Error::other("no temporary file could be created");
    for _ in 0..8 {
        let tmp = dir.join(private_tmp_name(&name));
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        };
        let res = file
            .write_all(bytes)
            .and_then(|()| file.sync_data())
            .and_then(|()| std::fs::rename(&tmp, path));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        return res;
    }
    Err(last)
}

/// The bytes of a sidecar if it is a regular file of at most `limit` bytes; a symlink, FIFO,
/// device or directory is never opened for reading (`/dev/zero` or a FIFO would never end).
pub fn read_sidecar(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() > limit {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock() | libc_o_nofollow())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= limit).then_some(out)
}

/// `O_NOFOLLOW`.
const fn libc_o_nofollow() -> i32 {
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    {
        0x0100
    }
    #[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
    {
        0o400000
    }
}

/// Largest sidecar worth reading for a shard of `size` bytes (each member costs the shard at
/// least 512 bytes and the sidecar at most its key plus 33 bytes).
fn sidecar_limit(size: u64) -> u64 {
    size.saturating_mul(2).saturating_add(1 << 16)
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
    /// Built because a sidecar carrying the file's identity does not describe it (its members
    /// do not tile the archive: samples left out); the sidecar was replaced where it could be.
    Rejected,
}

/// Load the index of `shard` from its sidecar when it was built from this very file (size,
/// mtime, ctime, inode and device all match), otherwise walk the headers and (re)write the
/// sidecar atomically. A file at a sidecar path that is not one of our indexes (or not a
/// regular file) is never read past its type check, nor overwritten. A sidecar with the file's
/// identity must also tile the archive ([`ShardIndex::check_tiling`]), so it cannot leave
/// samples out ([`IndexSource::Rejected`] otherwise); readers check every member against its
/// hash and name, so it cannot make them serve other bytes or keys either.
pub fn load_or_build(shard: &Path, cache_dir: Option<&Path>) -> Result<(ShardIndex, IndexSource)> {
    check_local_path(shard)?;
    let st = stat(shard)?;
    let candidates = sidecar_paths(shard, cache_dir);
    let mut rejected = false;
    for side in &candidates {
        if let Some(bytes) = read_sidecar(side, sidecar_limit(st.size)) {
            if let Some(idx) = ShardIndex::decode(&bytes) {
                if idx.file_stat() == st {
                    let (file, now) = open_regular(shard)?;
                    if now == st && idx.check_tiling(&file).is_ok() {
                        return Ok((idx, IndexSource::Cache));
                    }
                    rejected = true;
                }
            }
        }
    }
    let idx = build_index(shard)?;
    let encoded = idx.encode();
    let mut written = false;
    for side in &candidates {
        let ours_or_absent = match std::fs::symlink_metadata(side) {
            Ok(_) => read_sidecar(side, sidecar_limit(st.size))
                .is_some_and(|b| b.starts_with(MAGIC_FAMILY)),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if ours_or_absent && write_atomic(side, &encoded).is_ok() {
            written = true;
            break;
        }
    }
    let source = match (rejected, written) {
        (true, _) => IndexSource::Rejected,
        (false, true) => IndexSource::Built,
        (false, false) => IndexSource::BuiltUncached,
    };
    Ok((idx, source))
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

    /// A tar of `n` samples (`.txt` and `.bin` members) with, before sample `i`, the extras
    /// the header walk skips: a directory, a `__meta__` file, a name without a key and a
    /// member whose name needs a GNU long-name record.
    fn tar_bytes(n: usize, extras: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).expect("append");
        };
        for i in 0..n {
            if extras && i == 1 {
                add("dir/", b"", tar::EntryType::Directory);
                add("__meta__", b"{}", tar::EntryType::Regular);
                add("README", b"no key", tar::EntryType::Regular);
            }
            let key = if extras && i == 2 {
                format!("{}/s{i:03}", "long".repeat(40))
            } else {
                format!("s{i:03}")
            };
            add(
                &format!("{key}.txt"),
                key.as_bytes(),
                tar::EntryType::Regular,
            );
            add(
                &format!("{key}.bin"),
                &vec![i as u8; 700 + i],
                tar::EntryType::Regular,
            );
        }
        b.into_inner().expect("finish")
    }

    /// `idx` with its samples limited to `keep`.
    fn keep_samples(idx: &ShardIndex, keep: &[usize]) -> ShardIndex {
        let mut out = idx.clone();
        (out.keys, out.starts, out.members) = (Vec::new(), vec![0], Vec::new());
        for &i in keep {
            out.keys.push(idx.keys[i].clone());
            out.members.extend_from_slice(idx.sample(i));
            out.starts.push(out.members.len() as u32);
        }
        out
    }

    #[test]
    fn a_real_index_tiles_its_archive() {
        for extras in [false, true] {
            let tar = tar_bytes(6, extras);
            let idx = index_bytes(&tar).expect("index");
            assert_eq!(idx.len(), 6);
            // with extras, one member's name comes from a long-name record
            assert_eq!(idx.members.iter().all(|m| m.named), !extras);
            assert_eq!(idx.check_tiling(tar.as_slice()), Ok(()), "extras: {extras}");
            // the same archive without its end marker (the file just ends) tiles as well
            let end = idx.members.last().map(|m| (m.offset + m.size + 511) & !511);
            let cut = &tar[..end.expect("members") as usize];
            let mut short = index_bytes(cut).expect("index");
            short.file_size = cut.len() as u64;
            assert_eq!(short.check_tiling(cut), Ok(()));
        }
    }

    #[test]
    fn an_index_that_leaves_samples_out_does_not_tile() {
        for extras in [false, true] {
            let tar = tar_bytes(6, extras);
            let idx = index_bytes(&tar).expect("index");
            for keep in [&[0, 1][..], &[1, 2, 3, 4, 5], &[0, 1, 3, 4, 5], &[0, 2, 4]] {
                let forged = keep_samples(&idx, keep);
                assert!(forged.validate().is_ok(), "a consistent index");
                let err = forged
                    .check_tiling(tar.as_slice())
                    .expect_err("samples left out");
                assert!(err.contains("missing"), "{keep:?}: {err}");
            }
            // a member moved off its header, or listed twice
            let mut off = idx.clone();
            off.members[1].offset += 512;
            assert!(off.check_tiling(tar.as_slice()).is_err());
            let mut twice = idx.clone();
            twice.members[1] = twice.members[0];
            assert!(twice.check_tiling(tar.as_slice()).is_err());
        }
    }

    /// `idx` with the last member of sample `at` stretched over the samples after it up to
    /// `through` (which are dropped), its hash recomputed: a forgery the tiling cannot see
    /// where the stretched member follows the one before it without a record in between.
    fn stretch(idx: &ShardIndex, tar: &[u8], at: usize, through: usize) -> ShardIndex {
        let last = idx.starts[at + 1] as usize - 1;
        let end = idx.sample(through).last().map(|m| m.offset + m.size);
        let mut forged = idx.clone();
        let m = &mut forged.members[last];
        m.size = end.expect("members") - m.offset;
        let span = (m.offset - 512) as usize..(m.offset + m.size) as usize;
        m.hash = xxhash_rust::xxh3::xxh3_64(&tar[span]);
        let keep: Vec<usize> = (0..idx.len()).filter(|&i| i <= at || i > through).collect();
        keep_samples(&forged, &keep)
    }

    /// The bytes of sample `i` as the reader reads them, and their offset.
    fn sample_bytes<'a>(idx: &ShardIndex, tar: &'a [u8], i: usize) -> (&'a [u8], u64) {
        let ms = idx.sample(i);
        let lo = ms.iter().map(|m| m.offset - 512).min().expect("members");
        let hi = ms.iter().map(|m| m.offset + m.size).max().expect("members");
        (&tar[lo as usize..hi as usize], lo)
    }

    #[test]
    fn a_member_stretched_over_the_samples_after_it_is_caught() {
        // after a plain member: the tiling cannot tell, the read-time size check does
        let tar = tar_bytes(6, false);
        let idx = index_bytes(&tar).expect("index");
        for i in 0..idx.len() {
            let (buf, lo) = sample_bytes(&idx, &tar, i);
            assert_eq!(idx.verify_sample(i, buf, lo), Ok(()));
        }
        let forged = stretch(&idx, &tar, 1, 3);
        assert!(forged.validate().is_ok(), "a consistent index");
        assert_eq!(forged.len(), 4);
        assert_eq!(forged.check_tiling(tar.as_slice()), Ok(()));
        let (buf, lo) = sample_bytes(&forged, &tar, 1);
        let err = forged.verify_sample(1, buf, lo).expect_err("stretched");
        assert!(err.contains("another size"), "{err}");
        // the samples it did not touch still read
        let (buf, lo) = sample_bytes(&forged, &tar, 0);
        assert_eq!(forged.verify_sample(0, buf, lo), Ok(()));

        // after a long-name record: the tiling reads the record and compares the size
        let tar = tar_bytes(6, true);
        let idx = index_bytes(&tar).expect("index");
        let forged = stretch(&idx, &tar, 2, 4);
        let err = forged
            .check_tiling(tar.as_slice())
            .expect_err("stretched after a record");
        assert!(err.contains("not the indexed"), "{err}");
    }

    #[test]
    fn a_size_from_a_pax_record_is_read_and_checked() {
        // a member whose ustar size field is 0 and whose size comes from a PAX record (how
        // writers store sizes past 8 GiB): it indexes, tiles and reads; misstated, it does not
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |kind: tar::EntryType, name: &str, size: u64, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(0o644);
            h.set_path(name).expect("path");
            h.set_cksum();
            b.append(&h, data).expect("append");
        };
        add(tar::EntryType::Regular, "s0.bin", 5, b"first");
        let record = b"12 size=700\n";
        add(tar::EntryType::XHeader, "PaxHeader", 12, record);
        add(tar::EntryType::Regular, "s1.bin", 0, &[7u8; 700]);
        add(tar::EntryType::Regular, "s2.bin", 5, b"third");
        let tar = b.into_inner().expect("finish");
        let idx = index_bytes(&tar).expect("index");
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.members[1].size, 700);
        assert_eq!(idx.check_tiling(tar.as_slice()), Ok(()));
        for i in 0..idx.len() {
            let (buf, lo) = sample_bytes(&idx, &tar, i);
            assert_eq!(idx.verify_sample(i, buf, lo), Ok(()), "sample {i}");
        }
        let mut short = idx.clone();
        short.members[1].size = 600;
        let err = short
            .check_tiling(tar.as_slice())
            .expect_err("pax size differs");
        assert!(err.contains("not the indexed"), "{err}");
    }

    #[test]
    fn encode_decode_round_trip() {
        let idx = ShardIndex {
            file_size: 10240,
            mtime_ns: 123,
            ctime_ns: 456,
            inode: 9,
            dev: 3,
            content_hash: 11,
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
                    hash: 1,
                    named: true,
                },
                Member {
                    ext: 1,
                    offset: 1536,
                    size: 1,
                    hash: 2,
                    named: false,
                },
                Member {
                    ext: 0,
                    offset: 2560,
                    size: 4,
                    hash: 3,
                    named: true,
                },
            ],
        };
        let back = ShardIndex::decode(&idx.encode());
        assert_eq!(back.as_ref(), Some(&idx));
        assert!(ShardIndex::decode(b"not an index").is_none());
    }
}
