//! Ids and names held while one repository is scanned, in 4 bytes each where the index already
//! holds them (issue 25: with every session in one repository, the names of its job
//! directories and mapping files held as `OsString`s cost about 450 bytes a session, more than
//! the index itself).

use super::*;
use crate::clean::index::{ids, Index};
use std::cmp::Ordering;

/// What the top two bits of a reference say it is.
const TAG: u32 = 0b11 << 30;
/// A session row of the index.
const ROW: u32 = 0;
/// A job of the index (see [`Index::job_ref`]).
const JOB: u32 = 0b01 << 30;
/// An offset into [`Ids::arena`]: a name packed there ([`ids::pack`]), after its length (two
/// bytes, little-endian).
const LOCAL: u32 = 0b10 << 30;
/// [`LOCAL`], for a job id (so that a reference says whether it is a job's: [`Ids::is_job`]).
const LOCAL_JOB: u32 = 0b11 << 30;

/// Ids (or any names) as `u32` references: into the index when it holds the id, else into a
/// packed arena of their own. A reference is only meaningful with the [`Ids`] and the index
/// (the same one, or none) that made it.
#[derive(Default)]
pub(super) struct Ids {
    arena: Vec<u8>,
}

impl Ids {
    /// A reference to `name`, a job id when `job` (else a session id or any name).
    pub(super) fn put(&mut self, idx: Option<&Index>, name: &[u8], job: bool) -> u32 {
        if let (Some(x), Ok(s)) = (idx, std::str::from_utf8(name)) {
            let found = if job { x.job_ref(s) } else { x.row(s) };
            if let Some(k) = found.filter(|&k| k & TAG == 0) {
                return k | if job { JOB } else { ROW };
            }
        }
        let off = self.arena.len();
        assert!(off < (1 << 30), "names of one directory exceed 1 GiB");
        self.arena.extend_from_slice(&[0, 0]);
        ids::pack(name, &mut self.arena);
        let len = (self.arena.len() - off - 2) as u16;
        self.arena[off..off + 2].copy_from_slice(&len.to_le_bytes());
        off as u32 | if job { LOCAL_JOB } else { LOCAL }
    }

    /// Whether reference `k` was made for a job id (`put` with `job`).
    pub(super) fn is_job(k: u32) -> bool {
        matches!(k & TAG, JOB | LOCAL_JOB)
    }

    /// The reference [`Ids::put`] would give job id `job` if the index holds it (`None`: it
    /// would be packed here).
    pub(super) fn job_in_index(idx: Option<&Index>, job: &str) -> Option<u32> {
        idx?.job_ref(job).filter(|&k| k & TAG == 0).map(|k| k | JOB)
    }

    /// Reference `k` against id `want` (whose reference, if the index holds it, is `want_ref`).
    pub(super) fn cmp_to(
        &self,
        idx: Option<&Index>,
        k: u32,
        want: &[u8],
        want_ref: Option<u32>,
    ) -> Ordering {
        match want_ref {
            Some(w) => self.cmp(idx, k, w),
            None => self.with(idx, k, |x| x.cmp(want)),
        }
    }

    /// Call `f` with the packed bytes ([`ids`]) reference `k` stands for.
    fn with_packed<R>(&self, idx: Option<&Index>, k: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        let v = k & !TAG;
        match (k & TAG, idx) {
            (ROW, Some(x)) => x.with_id_packed(v, f),
            (JOB, Some(x)) => x.with_job_packed(v, f),
            _ => {
                let o = v as usize;
                let len = u16::from_le_bytes([self.arena[o], self.arena[o + 1]]) as usize;
                f(&self.arena[o + 2..o + 2 + len])
            }
        }
    }

    /// Call `f` with the bytes of reference `k`.
    pub(super) fn with<R>(&self, idx: Option<&Index>, k: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        match (k & TAG, idx) {
            (ROW, Some(x)) => x.with_row_bytes(k & !TAG, f),
            (JOB, Some(x)) => x.with_job_bytes(k & !TAG, f),
            _ => self.with_packed(idx, k, |p| ids::with_unpacked(p, f)),
        }
    }

    /// The name reference `k` stands for.
    pub(super) fn os(&self, idx: Option<&Index>, k: u32) -> OsString {
        self.with(idx, k, os_of_bytes)
    }

    /// The id reference `k` stands for (references made from `&str`s only).
    pub(super) fn string(&self, idx: Option<&Index>, k: u32) -> String {
        self.with(idx, k, |b| String::from_utf8_lossy(b).into_owned())
    }

    /// References `a` and `b` in the order of their bytes.
    pub(super) fn cmp(&self, idx: Option<&Index>, a: u32, b: u32) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        // Two sessions of the index compare by their rows (in id order), two jobs by their
        // keys (unpacking costs as much as the id is long: issue 25's 128-character ids).
        match (a & TAG, b & TAG, idx) {
            (JOB, JOB, Some(x)) => return x.cmp_jobs(a & !TAG, b & !TAG),
            (ROW, ROW, Some(_)) => return (a & !TAG).cmp(&(b & !TAG)),
            _ => {}
        }
        self.with_packed(idx, a, |p| {
            self.with_packed(idx, b, |q| ids::cmp_packed(p, q))
        })
    }
}

/// The name of bytes from [`OsStr::as_encoded_bytes`] (or a `&str`'s), as [`Ids`] gives them
/// back exactly.
fn os_of_bytes(b: &[u8]) -> OsString {
    // SAFETY: every name an `Ids` holds came from `as_encoded_bytes` of an `OsStr` (or from a
    // `&str`) in this process, and packing round-trips its bytes exactly (`ids` module doc).
    unsafe { OsString::from_encoded_bytes_unchecked(b.to_vec()) }
}

/// A directory's entry names, sorted as [`Scanner::names`] sorts them, 4 bytes a name where
/// the index holds it as a job id (job directories), else packed.
#[derive(Default)]
pub struct NameList {
    ids: Ids,
    refs: Vec<u32>,
}

impl NameList {
    /// Number of names.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// True without names.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Name `i` (in sorted order).
    pub fn get(&self, idx: Option<&Index>, i: usize) -> OsString {
        self.ids.os(idx, self.refs[i])
    }

    /// Names `range`, as a whole-root scan lists them.
    pub fn slice(&self, idx: Option<&Index>, range: std::ops::Range<usize>) -> Vec<OsString> {
        range.map(|i| self.get(idx, i)).collect()
    }
}

impl Scanner<'_> {
    /// [`Scanner::names`], packed: the same names in the same order and the same warning, without
    /// holding a listing of `OsString`s.
    pub(super) fn name_list(&self, d: &Dir, parts: &[&OsStr], inv: &mut Inventory) -> NameList {
        self.name_list_in(self.index, d, parts, inv)
    }

    /// [`Scanner::name_list`] referring to index `idx` (pass 1, while it builds its index).
    pub(super) fn name_list_in(
        &self,
        idx: Option<&Index>,
        d: &Dir,
        parts: &[&OsStr],
        inv: &mut Inventory,
    ) -> NameList {
        let mut l = NameList::default();
        let r = d.for_each_listed(|name, _| {
            let k = l.ids.put(idx, name.as_encoded_bytes(), true);
            l.refs.push(k);
        });
        if let Err(e) = r {
            inv.warnings.push(format!(
                "cannot list `{}`: {}",
                rel_of_parts(parts.iter().copied()),
                crate::error::describe_io(&e)
            ));
            return NameList::default();
        }
        let ids = &l.ids;
        crate::sort::sort_unstable_by(&mut l.refs, |&a, &b| ids.cmp(idx, a, b));
        l.refs.shrink_to_fit();
        l
    }
}
