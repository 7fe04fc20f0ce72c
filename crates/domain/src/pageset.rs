//! The pages of one window, checked for completeness before anything is committed.

use std::collections::HashSet;

use super::record::Record;
use super::source::Page;

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

/// Accumulates a window's pages in order and decides when the set is complete.
#[derive(Debug)]
pub struct PageSet {
    key_field: &'static str,
    total_on_every_page: bool,
    paged: bool,
    expected: Option<u64>,
    pages: u32,
    /// Records accepted so far, including those already taken.
    count: u64,
    /// Records accepted and not yet taken.
    records: Vec<Record>,
    /// The keys seen, by [`key_digest`]: a 200k-record window's keys as text would be some
    /// 15 MB, as digests 4.
    keys: HashSet<u128>,
}

impl PageSet {
    pub fn new(key_field: &'static str, total_on_every_page: bool) -> Self {
        PageSet {
            key_field,
            total_on_every_page,
            paged: true,
            expected: None,
            pages: 0,
            count: 0,
            records: Vec::new(),
            keys: HashSet::new(),
        }
    }

    /// For an unpaged API: its one response is the whole set, with or without a total.
    pub fn unpaged(key_field: &'static str) -> Self {
        PageSet { paged: false, ..PageSet::new(key_field, false) }
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The vendor's total, once a page carried it.
    pub fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// Adds the next page. The first page must carry the total; completion is reaching it.
    /// Pages are not assumed to have the size asked for: vendors may cut it.
    pub fn add(&mut self, page: Page) -> Result<Progress, PageSetError> {
        let index = self.pages;
        self.pages += 1;
        if !self.paged {
            let total = page.total;
            self.push_all(page.records)?;
            let got = self.count;
            return match total {
                Some(expected) if expected != got => Err(PageSetError::ShortRead { expected, got }),
                _ => Ok(Progress::Complete),
            };
        }
        let expected = match (self.expected, page.total) {
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
        if page.records.is_empty() && got_before < expected {
            return Err(PageSetError::ShortRead { expected, got: got_before });
        }
        self.push_all(page.records)?;
        let got = self.count;
        if got > expected {
            return Err(PageSetError::Overflow { expected, got });
        }
        Ok(if got == expected { Progress::Complete } else { Progress::More })
    }

    fn push_all(&mut self, records: Vec<Record>) -> Result<(), PageSetError> {
        for rec in records {
            // A record without a usable key (or not readable as JSON) still counts toward the
            // total; the worker dead-letters it.
            if let Ok(Some(key)) = rec.key(self.key_field)
                && !self.keys.insert(key_digest(&key))
            {
                return Err(PageSetError::DuplicateKey { key: key.into_owned() });
            }
            self.records.push(rec);
            self.count += 1;
        }
        Ok(())
    }

    /// How many records were accepted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The records accepted since the last call, in the vendor's order, so they can be
    /// processed while later pages are fetched. The set still checks the window as a whole.
    pub fn take_new(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// The window's records not taken yet (all of them if none were), in the vendor's order.
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }
}

/// 128 bits of a key: two SipHashes, the second salted. Two keys of a window share one with a
/// chance of about n²/2¹²⁹ (10⁻²⁹ for 200k keys); std's SipHash keys are fixed, so such a pair
/// would be refused as a duplicate on every read of that window.
fn key_digest(key: &str) -> u128 {
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
    use serde_json::json;

    fn page(keys: &[&str], total: Option<u64>) -> Page {
        Page { records: keys.iter().map(|k| json!({"id": k}).into()).collect(), total }
    }

    #[test]
    fn pages_adding_up_to_the_total_complete_the_set() {
        let mut s = PageSet::new("id", false);
        assert_eq!(s.add(page(&["a", "b"], Some(3))), Ok(Progress::More));
        assert_eq!(s.add(page(&["c"], None)), Ok(Progress::Complete));
        assert_eq!(s.pages(), 2);
        assert_eq!(s.into_records().len(), 3);
    }

    #[test]
    fn taking_records_page_by_page_keeps_judging_the_whole_window() {
        let mut s = PageSet::new("id", false);
        assert_eq!(s.add(page(&["a", "b"], Some(4))), Ok(Progress::More));
        let first: Vec<String> = s.take_new().iter().map(|r| r.key("id").unwrap().unwrap().into_owned()).collect();
        assert_eq!(first, ["a", "b"]);
        assert!(s.take_new().is_empty(), "taken once");
        // A record already taken still counts for duplicates and for the total.
        assert_eq!(s.add(page(&["b"], None)), Err(PageSetError::DuplicateKey { key: "b".into() }));
        let mut s = PageSet::new("id", false);
        s.add(page(&["a", "b"], Some(4))).unwrap();
        s.take_new();
        assert_eq!(s.add(page(&["c"], None)), Ok(Progress::More));
        assert_eq!(s.add(page(&["d"], None)), Ok(Progress::Complete));
        assert_eq!((s.count(), s.into_records().len()), (4, 2), "four accepted, two not taken");
    }

    #[test]
    fn an_empty_window_is_one_page() {
        let mut s = PageSet::new("id", false);
        assert_eq!(s.add(page(&[], Some(0))), Ok(Progress::Complete));
    }

    #[test]
    fn inconsistencies_are_named() {
        let mut s = PageSet::new("id", false);
        s.add(page(&["a"], Some(3))).unwrap();
        assert_eq!(s.add(page(&[], None)), Err(PageSetError::ShortRead { expected: 3, got: 1 }));

        let mut s = PageSet::new("id", false);
        s.add(page(&["a", "b"], Some(3))).unwrap();
        assert_eq!(s.add(page(&["b", "c"], None)), Err(PageSetError::DuplicateKey { key: "b".into() }));

        let mut s = PageSet::new("id", false);
        s.add(page(&["a"], Some(2))).unwrap();
        assert_eq!(s.add(page(&["b", "c"], None)), Err(PageSetError::Overflow { expected: 2, got: 3 }));

        let mut s = PageSet::new("id", true);
        s.add(page(&["a"], Some(2))).unwrap();
        assert_eq!(s.add(page(&["b"], Some(3))), Err(PageSetError::TotalChanged { first: 2, now: 3, page: 1 }));

        let mut s = PageSet::new("id", false);
        assert_eq!(s.add(page(&["a"], None)), Err(PageSetError::MissingTotal));

        let mut s = PageSet::new("id", false);
        let keyless = Page { records: vec![json!({"other": 1}).into(), json!({"other": 1}).into()], total: Some(2) };
        assert_eq!(s.add(keyless), Ok(Progress::Complete), "keyless records count; they are dead-lettered later");
    }

    #[test]
    fn an_unpaged_response_is_the_whole_set() {
        let mut s = PageSet::unpaged("id");
        assert_eq!(s.add(page(&["a", "b"], None)), Ok(Progress::Complete));
        let mut s = PageSet::unpaged("id");
        assert_eq!(s.add(page(&["a", "a"], None)), Err(PageSetError::DuplicateKey { key: "a".into() }));
        let mut s = PageSet::unpaged("id");
        assert_eq!(s.add(page(&["a"], Some(2))), Err(PageSetError::ShortRead { expected: 2, got: 1 }));
    }

    #[test]
    fn numeric_keys_are_text() {
        let mut s = PageSet::new("id", false);
        let page = Page { records: vec![json!({"id": 17}).into(), json!({"id": "17"}).into()], total: Some(2) };
        assert_eq!(s.add(page), Err(PageSetError::DuplicateKey { key: "17".into() }));
    }
}
