//! The pages of one window, checked for completeness before anything is committed.

use std::collections::HashSet;

/// Why a window's pages do not add up; the worker fetches the window again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageSetError {
    #[error("first page carries no total count")]
    MissingTotal,
    #[error("total changed while paging: {first} on the first page, {now} on page {page}")]
    TotalChanged { first: u64, now: u64, page: u32 },
    #[error("pages ended after {got} of {expected} records")]
    ShortRead { expected: u64, got: u64 },
    #[error("pages returned {got} records but the total is {expected}")]
    Overflow { expected: u64, got: u64 },
    #[error("record key {key:?} appears twice in the window (records shifted between pages)")]
    DuplicateKey { key: String },
}

/// Whether more pages must be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    More,
    Complete,
}

/// Follows a window's pages in order, by their totals and their records' keys, and decides
/// when the set is complete. It holds no records: the reader keys each record as it reads it
/// (one parse) and tells the set.
#[derive(Debug)]
pub struct PageSet {
    total_on_every_page: bool,
    paged: bool,
    expected: Option<u64>,
    pages: u32,
    /// Records accepted so far.
    count: u64,
    /// The keys seen, by [`key_digest`]: a 200k-record window's keys as text would be some
    /// 15 MB, as digests 4.
    keys: HashSet<u128>,
}

impl PageSet {
    pub fn new(total_on_every_page: bool) -> Self {
        PageSet { total_on_every_page, paged: true, expected: None, pages: 0, count: 0, keys: HashSet::new() }
    }

    /// For an unpaged API: its one response is the whole set, with or without a total.
    pub fn unpaged() -> Self {
        PageSet { paged: false, ..PageSet::new(false) }
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The vendor's total, once a page carried it.
    pub fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// Adds the next page: the total it carries, if any, and its records' business ids in
    /// order (`None` for a record without a usable one: it counts, and is dead-lettered). The
    /// first page must carry the total; completion is reaching it. Pages are not assumed to
    /// have the size asked for: vendors may cut it.
    pub fn add<'k>(
        &mut self,
        total: Option<u64>,
        keys: impl IntoIterator<Item = Option<&'k [u8]>>,
    ) -> Result<Progress, PageSetError> {
        let index = self.pages;
        self.pages += 1;
        if !self.paged {
            self.push_all(keys)?;
            let got = self.count;
            return match total {
                Some(expected) if expected != got => Err(PageSetError::ShortRead { expected, got }),
                _ => Ok(Progress::Complete),
            };
        }
        let expected = match (self.expected, total) {
            (None, Some(t)) => {
                self.expected = Some(t);
                t
            }
            (None, None) => return Err(PageSetError::MissingTotal),
            (Some(first), Some(now)) if self.total_on_every_page && now != first => {
                return Err(PageSetError::TotalChanged { first, now, page: index });
            }
            (Some(first), _) => first,
        };
        let got_before = self.count;
        self.push_all(keys)?;
        let got = self.count;
        if got == got_before && got_before < expected {
            return Err(PageSetError::ShortRead { expected, got: got_before });
        }
        if got > expected {
            return Err(PageSetError::Overflow { expected, got });
        }
        Ok(if got == expected { Progress::Complete } else { Progress::More })
    }

    fn push_all<'k>(&mut self, keys: impl IntoIterator<Item = Option<&'k [u8]>>) -> Result<(), PageSetError> {
        for key in keys {
            if let Some(key) = key
                && !self.keys.insert(key_digest(key))
            {
                return Err(PageSetError::DuplicateKey { key: String::from_utf8_lossy(key).into_owned() });
            }
            self.count += 1;
        }
        Ok(())
    }

    /// How many records were accepted so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// 128 bits of a key: two SipHashes, the second salted. Two keys of a window share one with a
/// chance of about n²/2¹²⁹ (10⁻²⁹ for 200k keys); std's SipHash keys are fixed, so such a pair
/// would be refused as a duplicate on every read of that window.
fn key_digest(key: &[u8]) -> u128 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut a = DefaultHasher::new();
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    0x7469_6465_6d61_726bu64.hash(&mut b);
    key.hash(&mut b);
    u128::from(a.finish()) << 64 | u128::from(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds a page of records keyed `keys` (`""` for a record without a key).
    fn add(s: &mut PageSet, keys: &[&str], total: Option<u64>) -> Result<Progress, PageSetError> {
        s.add(total, keys.iter().map(|k| (!k.is_empty()).then_some(k.as_bytes())))
    }

    #[test]
    fn pages_adding_up_to_the_total_complete_the_set() {
        let mut s = PageSet::new(false);
        assert_eq!(add(&mut s, &["a", "b"], Some(3)), Ok(Progress::More));
        assert_eq!(add(&mut s, &["c"], None), Ok(Progress::Complete));
        assert_eq!((s.pages(), s.count()), (2, 3));
    }

    #[test]
    fn a_key_seen_on_an_earlier_page_is_a_duplicate() {
        let mut s = PageSet::new(false);
        assert_eq!(add(&mut s, &["a", "b"], Some(4)), Ok(Progress::More));
        assert_eq!(add(&mut s, &["b"], None), Err(PageSetError::DuplicateKey { key: "b".into() }));
        let mut s = PageSet::new(false);
        add(&mut s, &["a", "b"], Some(4)).unwrap();
        assert_eq!(add(&mut s, &["c"], None), Ok(Progress::More));
        assert_eq!(add(&mut s, &["d"], None), Ok(Progress::Complete));
        assert_eq!(s.count(), 4);
    }

    #[test]
    fn an_empty_window_is_one_page() {
        let mut s = PageSet::new(false);
        assert_eq!(add(&mut s, &[], Some(0)), Ok(Progress::Complete));
    }

    #[test]
    fn inconsistencies_are_named() {
        let mut s = PageSet::new(false);
        add(&mut s, &["a"], Some(3)).unwrap();
        assert_eq!(add(&mut s, &[], None), Err(PageSetError::ShortRead { expected: 3, got: 1 }));

        let mut s = PageSet::new(false);
        add(&mut s, &["a", "b"], Some(3)).unwrap();
        assert_eq!(add(&mut s, &["b", "c"], None), Err(PageSetError::DuplicateKey { key: "b".into() }));

        let mut s = PageSet::new(false);
        add(&mut s, &["a"], Some(2)).unwrap();
        assert_eq!(add(&mut s, &["b", "c"], None), Err(PageSetError::Overflow { expected: 2, got: 3 }));

        let mut s = PageSet::new(true);
        add(&mut s, &["a"], Some(2)).unwrap();
        assert_eq!(add(&mut s, &["b"], Some(3)), Err(PageSetError::TotalChanged { first: 2, now: 3, page: 1 }));

        let mut s = PageSet::new(false);
        assert_eq!(add(&mut s, &["a"], None), Err(PageSetError::MissingTotal));

        let mut s = PageSet::new(false);
        assert_eq!(
            add(&mut s, &["", ""], Some(2)),
            Ok(Progress::Complete),
            "keyless records count; they are dead-lettered later"
        );
    }

    #[test]
    fn an_unpaged_response_is_the_whole_set() {
        let mut s = PageSet::unpaged();
        assert_eq!(add(&mut s, &["a", "b"], None), Ok(Progress::Complete));
        let mut s = PageSet::unpaged();
        assert_eq!(add(&mut s, &["a", "a"], None), Err(PageSetError::DuplicateKey { key: "a".into() }));
        let mut s = PageSet::unpaged();
        assert_eq!(add(&mut s, &["a"], Some(2)), Err(PageSetError::ShortRead { expected: 2, got: 1 }));
    }
}
