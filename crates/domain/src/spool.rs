//! A list kept in memory until told to spill, then in an unnamed temporary file: how a window
//! larger than the process's byte budget is held until it commits without holding its bytes.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// Items in order: all in memory, or (once [`spill`](Spool::spill)ed) all in a temporary file
/// that the operating system deletes when it is closed, even by a crash.
pub struct Spool<T: Spill> {
    /// In chunks of at most [`CHUNK`]: a large window grows without copying itself into a
    /// buffer twice its size (which a single `Vec` does, holding both for a moment).
    memory: Vec<Vec<T>>,
    file: Option<BufWriter<File>>,
    /// Items in the file.
    spilled: usize,
    tables: T::Tables,
}

const CHUNK: usize = 1024;

/// An item that can be written to a spool's file and read back.
pub trait Spill: Sized {
    /// What a spool's items share and its file holds once (a window's topics and header
    /// lists), kept beside the file.
    type Tables: Default;
    fn write_to(&self, w: &mut impl Write, tables: &mut Self::Tables) -> io::Result<()>;
    fn read_from(r: &mut impl Read, tables: &Self::Tables) -> io::Result<Self>;
}

impl<T: Spill> Default for Spool<T> {
    fn default() -> Self {
        Spool { memory: Vec::new(), file: None, spilled: 0, tables: T::Tables::default() }
    }
}

impl<T: Spill> From<Vec<T>> for Spool<T> {
    fn from(items: Vec<T>) -> Self {
        Spool { memory: vec![items], ..Spool::default() }
    }
}

impl<T: Spill> Spool<T> {
    /// Adds an item at the end: to the file once the spool has spilled.
    pub fn push(&mut self, item: T) -> io::Result<()> {
        match &mut self.file {
            Some(file) => {
                item.write_to(file, &mut self.tables)?;
                self.spilled += 1;
            }
            None => match self.memory.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(item),
                _ => self.memory.push(vec![item]),
            },
        }
        Ok(())
    }

    /// Moves what memory holds to a new temporary file (in `TMPDIR`); later items go there too.
    pub fn spill(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?));
        }
        // With a file, `push` writes there.
        for item in std::mem::take(&mut self.memory).into_iter().flatten() {
            self.push(item)?;
        }
        Ok(())
    }

    /// Every item, in order, failing at the first that cannot be read back.
    pub fn into_vec(self) -> io::Result<Vec<T>> {
        self.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.in_memory() + self.spilled
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// How many items memory holds (all of them, unless spilled).
    pub fn in_memory(&self) -> usize {
        self.memory.iter().map(Vec::len).sum()
    }
}

impl<T: Spill> IntoIterator for Spool<T> {
    type Item = io::Result<T>;
    type IntoIter = SpoolIter<T>;

    /// Memory's items, or the file's read back one at a time (a spilled spool is never whole
    /// in memory again). A file that cannot be rewound fails at the first item.
    fn into_iter(self) -> SpoolIter<T> {
        let file = self.file.map(|w| {
            w.into_inner().map_err(|e| e.into_error()).and_then(|mut f| {
                f.rewind()?;
                Ok(BufReader::with_capacity(256 * 1024, f))
            })
        });
        SpoolIter { memory: self.memory.into_iter().flatten(), file, left: self.spilled, tables: self.tables }
    }
}

/// A spool's items, in order (see [`Spool::into_iter`]).
pub struct SpoolIter<T: Spill> {
    memory: std::iter::Flatten<std::vec::IntoIter<Vec<T>>>,
    file: Option<io::Result<BufReader<File>>>,
    left: usize,
    tables: T::Tables,
}

impl<T: Spill> Iterator for SpoolIter<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if let Some(item) = self.memory.next() {
            return Some(Ok(item));
        }
        if self.left == 0 {
            return None;
        }
        match self.file.as_mut()? {
            Ok(reader) => {
                self.left -= 1;
                let item = T::read_from(reader, &self.tables);
                if item.is_err() {
                    self.left = 0;
                }
                Some(item)
            }
            Err(_) => {
                self.left = 0;
                match self.file.take() {
                    Some(Err(e)) => Some(Err(e)),
                    _ => None,
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (low, high) = self.memory.size_hint();
        (low + self.left, high.map(|h| h + self.left))
    }
}

/// A spill file that does not read back as written.
pub fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spill file: {what}"))
}

pub fn put_u32(w: &mut impl Write, n: u32) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

pub fn put_u64(w: &mut impl Write, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

pub fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub fn get_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Bytes that may be absent: their length, `u32::MAX` for none, then the bytes.
pub fn put_bytes(w: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
    match bytes {
        None => put_u32(w, u32::MAX),
        Some(b) => {
            let len =
                u32::try_from(b.len()).ok().filter(|l| *l != u32::MAX).ok_or_else(|| corrupt("item too large"))?;
            put_u32(w, len)?;
            w.write_all(b)
        }
    }
}

pub fn get_bytes(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let len = get_u32(r)?;
    if len == u32::MAX {
        return Ok(None);
    }
    let mut b = vec![0; len as usize];
    r.read_exact(&mut b)?;
    Ok(Some(b))
}

pub fn get_string(r: &mut impl Read) -> io::Result<Option<String>> {
    get_bytes(r)?.map(|b| String::from_utf8(b).map_err(|_| corrupt("text is not UTF-8"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test item: text, spilled as its bytes.
    impl Spill for String {
        type Tables = ();
        fn write_to(&self, w: &mut impl Write, _: &mut ()) -> io::Result<()> {
            put_bytes(w, Some(self.as_bytes()))
        }
        fn read_from(r: &mut impl Read, _: &()) -> io::Result<Self> {
            get_string(r)?.ok_or_else(|| corrupt("no text"))
        }
    }

    #[test]
    fn a_spool_keeps_order_across_its_chunks_and_a_spill() {
        let mut spool = Spool::default();
        for i in 0..2 * CHUNK + 3 {
            spool.push(i.to_string()).unwrap();
        }
        assert_eq!((spool.len(), spool.in_memory()), (2 * CHUNK + 3, 2 * CHUNK + 3));
        spool.spill().unwrap();
        assert_eq!(spool.in_memory(), 0, "spilling frees memory");
        spool.push("last".to_string()).unwrap();
        let items: Vec<String> = spool.into_iter().map(Result::unwrap).collect();
        let mut expected: Vec<String> = (0..2 * CHUNK + 3).map(|i| i.to_string()).collect();
        expected.push("last".into());
        assert_eq!(items, expected);
    }

    #[test]
    fn a_truncated_spill_file_is_an_error_not_a_short_list() {
        let mut spool = Spool::default();
        spool.spill().unwrap();
        spool.push("k".to_string()).unwrap();
        // Claims one item more than the file holds.
        spool.spilled += 1;
        let items: Vec<_> = spool.into_iter().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
