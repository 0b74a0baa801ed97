//! Contract tests of the Unix implementation (safety contract R1, R2, R3, R8), each on a scratch
//! directory under the system temp dir: sizes and mtimes of a walk, idempotent removal, symlinks
//! never followed (also when swapped in concurrently), byte-exact names, no-replace rename,
//! bounded descriptors on a 3,000-deep tree under `RLIMIT_NOFILE` 64 (in a child process), FIFOs
//! and oversized files refused without blocking, and a tmpfs mount point not entered (skipped
//! loudly where mounting is not permitted).

use super::*;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique scratch directory under the system temp dir, removed on drop.
struct Tmp {
    path: PathBuf,
}

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let base = fs::canonicalize(std::env::temp_dir()).unwrap();
        let path = base.join(format!(
            "fsops-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            tag
        ));
        fs::create_dir(&path).unwrap();
        Tmp { path }
    }

    fn dir(&self) -> Dir {
        Dir::open_root(&self.path).unwrap()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if let Ok(d) = Dir::open_root(self.path.parent().unwrap()) {
            let _ = remove_tree(&d, self.path.file_name().unwrap());
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: secs as _,
        tv_nsec: nanos as _,
    };
    let times = [ts, ts];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Sum of st_blocks*512 over `p` and everything below (no symlink followed), plus counts.
fn expected_usage(p: &Path) -> (u64, u64, u64) {
    let m = fs::symlink_metadata(p).unwrap();
    let bytes = m.blocks() * 512;
    if !m.file_type().is_dir() {
        return (bytes, 1, 0);
    }
    let (mut b, mut f, mut d) = (bytes, 0, 1);
    for e in fs::read_dir(p).unwrap() {
        let (b2, f2, d2) = expected_usage(&e.unwrap().path());
        b += b2;
        f += f2;
        d += d2;
    }
    (b, f, d)
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), vec![b'a'; 100]).unwrap();
    fs::write(root.join("sub/b.txt"), vec![b'b'; 5000]).unwrap();
    fs::write(root.join("sub/deeper/c.txt"), vec![b'c'; 70_000]).unwrap();
}

#[test]
fn walk_sums_disk_bytes_and_newest_mtime() {
    let t = Tmp::new("walk");
    let item = t.path.join("item");
    make_tree(&item);
    for p in ["a.txt", "sub/b.txt", "sub", "sub/deeper", ""] {
        set_mtime(&item.join(p), 1_000_000_000, 5);
    }
    set_mtime(&item.join("sub/deeper/c.txt"), 1_700_000_000, 123_456_789);
    set_mtime(&item.join("sub/deeper"), 1_000_000_000, 5);
    let (bytes, files, dirs) = expected_usage(&item);
    assert!(bytes >= 70_000, "c.txt alone occupies 70 kB: {bytes}");

    let s = walk(&t.dir(), os("item")).unwrap();
    assert_eq!(s.disk_bytes, bytes);
    assert_eq!((s.files, s.dirs), (files, dirs));
    assert_eq!((s.files, s.dirs), (3, 3));
    assert_eq!(s.newest_mtime, Some((1_700_000_000, 123_456_789)));
    assert!(s.mounts.is_empty() && s.problems.is_empty(), "{s:?}");

    // A single file is an item too; a missing one is empty.
    let f = walk(&t.dir().open_dir(os("item")).unwrap(), os("a.txt")).unwrap();
    assert_eq!((f.files, f.dirs), (1, 0));
    assert_eq!(f.newest_mtime, Some((1_000_000_000, 5)));
    let none = walk(&t.dir(), os("missing")).unwrap();
    assert_eq!((none.files, none.dirs, none.disk_bytes), (0, 0, 0));
    assert_eq!(none.newest_mtime, None);
    assert_eq!(
        walk(&t.dir(), os("../x")).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn remove_tree_removes_nested_tree_and_is_idempotent() {
    let t = Tmp::new("remove");
    let item = t.path.join("item");
    make_tree(&item);
    symlink("/nonexistent/dangling", item.join("sub/dangling")).unwrap();
    fs::write(t.path.join("sibling"), b"keep").unwrap();
    let (bytes, files, dirs) = expected_usage(&item);
    assert_eq!((files, dirs), (4, 3));

    let root = t.dir();
    let s = remove_tree(&root, os("item"));
    assert!(s.complete, "{s:?}");
    assert!(s.problems.is_empty() && s.mounts.is_empty(), "{s:?}");
    assert_eq!((s.files, s.dirs), (files, dirs));
    assert!(bytes > 0);
    assert!(!item.exists() && fs::symlink_metadata(&item).is_err());
    assert_eq!(fs::read(t.path.join("sibling")).unwrap(), b"keep");

    let again = remove_tree(&root, os("item"));
    assert!(again.complete);
    assert_eq!((again.files, again.dirs), (0, 0));
    assert!(again.problems.is_empty());

    // A plain file item.
    let s = remove_tree(&root, os("sibling"));
    assert!(s.complete && s.files == 1 && s.dirs == 0, "{s:?}");
    assert!(!t.path.join("sibling").exists());

    // Bad names touch nothing.
    fs::create_dir(t.path.join("x")).unwrap();
    for bad in ["", ".", "..", "x/..", "a/b"] {
        let s = remove_tree(&root, os(bad));
        assert!(!s.complete, "{bad:?}");
        assert_eq!(s.problems[0].error.kind(), io::ErrorKind::InvalidInput);
    }
    assert!(t.path.join("x").is_dir());
}

#[test]
fn symlink_to_outside_is_unlinked_never_followed() {
    let t = Tmp::new("symlink");
    let outside = t.path.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), vec![7u8; 1 << 20]).unwrap();
    fs::create_dir(outside.join("subdir")).unwrap();
    fs::write(outside.join("subdir/canary2"), b"x").unwrap();

    let home = t.path.join("home");
    let item = home.join("item");
    fs::create_dir_all(item.join("sub")).unwrap();
    symlink(&outside, item.join("link")).unwrap();
    symlink(outside.join("canary"), item.join("sub/filelink")).unwrap();
    symlink("../../../outside", item.join("sub/rel")).unwrap();
    // The item itself a symlink to outside.
    symlink(&outside, home.join("item2")).unwrap();

    let root = Dir::open_root(&home).unwrap();
    let w = walk(&root, os("item")).unwrap();
    assert_eq!((w.files, w.dirs), (3, 2), "{w:?}");
    assert!(w.disk_bytes < 1 << 20, "outside canary counted: {w:?}");
    let w2 = walk(&root, os("item2")).unwrap();
    assert_eq!((w2.files, w2.dirs), (1, 0));

    let s = remove_tree(&root, os("item"));
    assert!(s.complete && s.problems.is_empty(), "{s:?}");
    assert_eq!((s.files, s.dirs), (3, 2));
    let s2 = remove_tree(&root, os("item2"));
    assert!(s2.complete && s2.files == 1 && s2.dirs == 0, "{s2:?}");

    assert_eq!(fs::read(outside.join("canary")).unwrap().len(), 1 << 20);
    assert_eq!(fs::read(outside.join("subdir/canary2")).unwrap(), b"x");
    assert!(fs::read_dir(&home).unwrap().next().is_none());
}

#[test]
fn open_dir_and_open_path_refuse_symlinks() {
    let t = Tmp::new("opendir");
    fs::create_dir_all(t.path.join("real/x")).unwrap();
    symlink(t.path.join("real"), t.path.join("link")).unwrap();
    symlink("real", t.path.join("rellink")).unwrap();
    let root = t.dir();

    for l in ["link", "rellink"] {
        let e = root.open_dir(os(l)).unwrap_err();
        let c = e.raw_os_error();
        assert!(c == Some(libc::ELOOP) || c == Some(libc::ENOTDIR), "{e}");
        assert!(root.open_path(&[os(l), os("x")]).is_err());
    }
    let x = root.open_path(&[os("real"), os("x")]).unwrap();
    let m = fs::metadata(t.path.join("real/x")).unwrap();
    assert_eq!((x.dev(), x.ino()), (m.dev(), m.ino()));
    assert_eq!(x.meta().unwrap().ino, m.ino());
    let same = root.open_path(&[]).unwrap();
    assert_eq!(same.ino(), root.ino());

    for bad in ["", ".", "..", "real/x", "a\0b"] {
        let e = root.open_dir(os(bad)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    // A file is not a directory.
    fs::write(t.path.join("f"), b"").unwrap();
    assert!(root.open_dir(os("f")).is_err());
    // The root itself: symlink and relative paths refused.
    assert!(Dir::open_root(&t.path.join("link")).is_err());
    assert_eq!(
        Dir::open_root(Path::new("relative/path"))
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidInput
    );
    // stat never follows.
    assert_eq!(root.stat(os("link")).unwrap().kind, Kind::Symlink);
    assert_eq!(root.stat(os("real")).unwrap().kind, Kind::Dir);
    assert_eq!(root.stat(os("f")).unwrap().kind, Kind::File);
}

#[test]
fn reopen_via_dotdot_verifies_identity() {
    let t = Tmp::new("dotdot");
    fs::create_dir_all(t.path.join("a/b")).unwrap();
    let a = t.dir().open_dir(os("a")).unwrap();
    let b = a.open_dir(os("b")).unwrap();
    unix::test_reopen_dotdot(&b, a.dev(), a.ino()).unwrap();
    let e = unix::test_reopen_dotdot(&b, a.dev(), a.ino() + 1).unwrap_err();
    assert!(e.to_string().contains("moved or replaced"), "{e}");
    // b moved elsewhere: its ".." is no longer a.
    fs::create_dir(t.path.join("elsewhere")).unwrap();
    fs::rename(t.path.join("a/b"), t.path.join("elsewhere/b")).unwrap();
    assert!(unix::test_reopen_dotdot(&b, a.dev(), a.ino()).is_err());
}

fn count_fds() -> Option<usize> {
    if cfg!(target_os = "linux") {
        fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
    } else {
        None
    }
}

const DEPTH: usize = 3000;

/// Runs in a child process (started by `deep_tree_with_low_fd_limit`) with RLIMIT_NOFILE
/// lowered to 64, so that the rest of the test binary is unaffected.
#[test]
fn deep_tree_child() {
    let Some(dir) = std::env::var_os("FSOPS_DEEP_CHILD") else {
        return;
    };
    let lim = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let root = Dir::open_root(Path::new(&dir)).unwrap();
    root.create_dir(os("item")).unwrap();
    // Build the tree fd-relative: its paths are far longer than PATH_MAX.
    let mut cur = root.open_dir(os("item")).unwrap();
    for i in 0..DEPTH {
        cur.create_dir(os("d")).unwrap();
        use std::io::Write;
        let mut f = cur.open_file(os("f"), true, true).unwrap();
        f.write_all(format!("{i}").as_bytes()).unwrap();
        drop(f);
        cur = cur.open_dir(os("d")).unwrap();
    }
    drop(cur);
    let before = count_fds();
    let w = walk(&root, os("item")).unwrap();
    assert!(w.problems.is_empty(), "{:?}", &w.problems[..1]);
    assert_eq!((w.dirs, w.files), (DEPTH as u64 + 1, DEPTH as u64));
    assert_eq!(count_fds(), before, "descriptor leak in walk");
    let s = remove_tree(&root, os("item"));
    assert!(s.problems.is_empty(), "{:?}", &s.problems[..1]);
    assert!(s.complete);
    assert_eq!((s.dirs, s.files), (DEPTH as u64 + 1, DEPTH as u64));
    assert_eq!(count_fds(), before, "descriptor leak in remove_tree");
    assert!(root.names().unwrap().is_empty());
    println!("FSOPS_DEEP_CHILD_OK");
}

#[test]
fn deep_tree_with_low_fd_limit() {
    let t = Tmp::new("deep");
    let module = module_path!();
    // Test names omit the crate name: "fsops::tests" -> "tests", or
    // "prodigy::store::fsops::tests" -> "store::fsops::tests".
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::deep_tree_child"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FSOPS_DEEP_CHILD", &t.path)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("FSOPS_DEEP_CHILD_OK"),
        "child did not run:\n{text}"
    );
}

#[test]
fn read_file_refuses_fifo_oversized_and_symlink() {
    let t = Tmp::new("read");
    let fifo = CString::new(t.path.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fs::write(t.path.join("big"), vec![1u8; 100]).unwrap();
    fs::write(t.path.join("ok.json"), b"{}").unwrap();
    symlink("ok.json", t.path.join("link")).unwrap();
    fs::create_dir(t.path.join("dir")).unwrap();

    let path = t.path.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let d = Dir::open_root(&path).unwrap();
        let r1 = d.read_file(os("fifo"), 1000);
        let r2 = d.open_file(os("fifo"), false, false);
        let _ = tx.send((r1.map_err(|e| e.kind()), r2.map_err(|e| e.kind()).map(drop)));
    });
    let start = Instant::now();
    let (r1, r2) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("read_file blocked on a FIFO");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(r1.unwrap_err(), io::ErrorKind::InvalidData);
    assert_eq!(r2.unwrap_err(), io::ErrorKind::InvalidData);

    let d = t.dir();
    let e = d.read_file(os("big"), 10).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(e.to_string(), "file too large (100 bytes, limit 10)");
    assert_eq!(d.read_file(os("big"), 100).unwrap().len(), 100);
    assert_eq!(d.read_file(os("ok.json"), 1 << 20).unwrap(), b"{}");
    assert!(d.read_file(os("link"), 1 << 20).is_err());
    assert!(d.open_file(os("link"), false, false).is_err());
    assert_eq!(
        d.read_file(os("dir"), 1 << 20).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        d.read_file(os("missing"), 10).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );

    // open_file creates 0600 lock files and never through a dangling symlink.
    symlink(t.path.join("target-not-created"), t.path.join("dangling")).unwrap();
    assert!(d.open_file(os("dangling"), true, true).is_err());
    assert!(!t.path.join("target-not-created").exists());
    let f = d.open_file(os("lock"), true, true).unwrap();
    assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
}

#[test]
fn read_listed_trusts_only_what_the_descriptor_shows() {
    let t = Tmp::new("listed");
    let fifo = CString::new(t.path.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fs::write(t.path.join("ok.json"), b"{}").unwrap();
    symlink("ok.json", t.path.join("link")).unwrap();
    fs::create_dir(t.path.join("dir")).unwrap();
    let d = t.dir();

    let mut listed = d.listing().unwrap();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let kinds: Vec<(&str, Option<Kind>)> = listed
        .iter()
        .map(|(n, k)| (n.to_str().unwrap(), *k))
        .collect();
    if cfg!(target_os = "linux") && kinds.iter().all(|(_, k)| k.is_some()) {
        assert_eq!(
            kinds,
            [
                ("dir", Some(Kind::Dir)),
                ("fifo", Some(Kind::Other)),
                ("link", Some(Kind::Symlink)),
                ("ok.json", Some(Kind::File)),
            ]
        );
    } else {
        eprintln!("listing reports no entry types here: hints not checked");
    }
    for (name, kind) in &listed {
        let r = d.read_listed(name, 1 << 20, *kind);
        match name.to_str().unwrap() {
            "ok.json" => assert_eq!(r.unwrap(), b"{}"),
            "link" => assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ELOOP)),
            _ => assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData),
        }
    }
    // A stale hint that says "regular file" is checked again on the descriptor: a FIFO is
    // refused without blocking, a symlink is not followed, a directory is refused.
    let start = Instant::now();
    let e = d.read_listed(os("fifo"), 10, Some(Kind::File)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        d.read_listed(os("link"), 10, Some(Kind::File))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ELOOP)
    );
    assert_eq!(
        d.read_listed(os("dir"), 10, Some(Kind::File))
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidData
    );
    // A hint that says "not a file" refuses without opening: even a real file.
    assert_eq!(
        d.read_listed(os("ok.json"), 10, Some(Kind::Other))
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidData
    );
}

#[test]
fn names_are_byte_exact() {
    let t = Tmp::new("names");
    let bad = OsStr::from_bytes(b"bad\xff");
    fs::write(t.path.join(bad), b"").unwrap();
    fs::write(t.path.join("ok"), b"").unwrap();
    fs::create_dir(t.path.join("dir\u{e9}")).unwrap();
    let d = t.dir();
    for _ in 0..2 {
        let mut names = d.names().unwrap();
        names.sort();
        let want: Vec<OsString> = vec![
            OsString::from_vec(b"bad\xff".to_vec()),
            OsString::from("dir\u{e9}"),
            OsString::from("ok"),
        ];
        assert_eq!(names, want);
    }
    assert_eq!(d.stat(bad).unwrap().kind, Kind::File);
    let s = remove_tree(&t.dir(), bad);
    assert!(s.complete && s.files == 1);
    assert_eq!(d.names().unwrap().len(), 2);
}

#[test]
fn rename_moves_and_never_replaces() {
    let t = Tmp::new("rename");
    fs::create_dir_all(t.path.join("a/inner")).unwrap();
    fs::write(t.path.join("a/inner/f"), b"1").unwrap();
    fs::create_dir(t.path.join("trash")).unwrap();
    let root = t.dir();
    let trash = root.open_dir(os("trash")).unwrap();
    root.rename(os("a"), &trash, os("a-1")).unwrap();
    trash.sync().unwrap();
    root.sync().unwrap();
    assert!(!t.path.join("a").exists());
    assert_eq!(fs::read(t.path.join("trash/a-1/inner/f")).unwrap(), b"1");

    fs::create_dir(t.path.join("b")).unwrap();
    fs::create_dir(t.path.join("trash/b")).unwrap();
    let e = root.rename(os("b"), &trash, os("b")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    // Also for a file target (plain rename(2) would silently replace it).
    fs::write(t.path.join("trash/file"), b"old").unwrap();
    fs::write(t.path.join("file"), b"new").unwrap();
    let e = root.rename(os("file"), &trash, os("file")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(fs::read(t.path.join("trash/file")).unwrap(), b"old");
    assert!(t.path.join("b").is_dir());
    assert_eq!(
        root.rename(os("b"), &trash, os("../x")).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    // Other small operations.
    assert_eq!(
        root.create_dir(os("b")).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    root.unlink(os("no-such-file")).unwrap();
    root.unlink(os("file")).unwrap();
    assert!(!t.path.join("file").exists());
    assert!(root.unlink(os("b")).is_err());
}

/// Case 2: directories swapped for symlinks to the outside while remove_tree runs. Whatever
/// interleaving happens, nothing outside may be touched.
#[test]
fn concurrent_swap_for_symlink_never_escapes() {
    let t = Tmp::new("swap");
    let outside = t.path.join("outside");
    fs::create_dir_all(outside.join("keep")).unwrap();
    fs::write(outside.join("canary"), b"alive").unwrap();
    fs::write(outside.join("keep/canary2"), b"alive").unwrap();
    let home = t.path.join("home");
    fs::create_dir(&home).unwrap();
    let root = Dir::open_root(&home).unwrap();
    for round in 0..30 {
        let item = home.join("item");
        for i in 0..20 {
            let d = item.join(format!("x{i}"));
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(d.join("f"), b"f").unwrap();
            fs::write(d.join("sub/g"), b"g").unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (item2, outside2, stop2) = (item.clone(), outside.clone(), stop.clone());
        let swapper = std::thread::spawn(move || {
            let mut n = 0;
            while !stop2.load(Ordering::Relaxed) && n < 2000 {
                let i = n % 20;
                let d = item2.join(format!("x{i}"));
                let moved = item2.join(format!("moved{round}-{n}"));
                if fs::rename(&d, &moved).is_ok() {
                    let _ = symlink(&outside2, &d);
                    // Only inside a real directory: if `d` was already one of our
                    // symlinks, `moved` now points outside and must not be written through.
                    if fs::symlink_metadata(&moved).is_ok_and(|m| m.is_dir()) {
                        let _ = symlink(&outside2, moved.join("sub-link"));
                    }
                }
                n += 1;
            }
        });
        let mut done = false;
        for _ in 0..10 {
            let s = remove_tree(&root, os("item"));
            if s.complete {
                done = true;
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        if !done || home.join("item").exists() {
            let s = remove_tree(&root, os("item"));
            assert!(s.complete, "{s:?}");
        }
        assert_eq!(fs::read(outside.join("canary")).unwrap(), b"alive");
        assert_eq!(fs::read(outside.join("keep/canary2")).unwrap(), b"alive");
    }
    let left: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// Removes the tmpfs mount on drop, even if the test fails.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Case 8: a mount point inside an item is reported, not entered, and the item is not
/// complete. Needs permission to mount a tmpfs; skipped loudly otherwise.
#[test]
fn mount_point_inside_item_is_not_entered() {
    let t = Tmp::new("mount");
    let item = t.path.join("item");
    let mnt = item.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(item.join("file"), b"x").unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "fsops-test"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED mount_point_inside_item_is_not_entered: cannot mount tmpfs here");
        return;
    }
    let _guard = Mount(mnt.clone());
    fs::write(mnt.join("inside"), b"on the other fs").unwrap();

    let root = t.dir();
    let w = walk(&root, os("item")).unwrap();
    assert_eq!(w.mounts, vec![PathBuf::from("mnt")]);
    assert_eq!((w.files, w.dirs), (1, 1), "{w:?}");

    let s = remove_tree(&root, os("item"));
    assert!(!s.complete);
    assert_eq!(s.mounts, vec![PathBuf::from("mnt")]);
    assert!(s.problems.is_empty(), "{s:?}");
    assert_eq!(s.files, 1);
    assert_eq!(fs::read(mnt.join("inside")).unwrap(), b"on the other fs");
    assert!(!item.join("file").exists());

    // The item itself being a mount point.
    let item_dir = root.open_dir(os("item")).unwrap();
    let s = remove_tree(&item_dir, os("mnt"));
    assert!(!s.complete);
    assert_eq!(s.mounts, vec![PathBuf::new()]);
    assert_eq!(fs::read(mnt.join("inside")).unwrap(), b"on the other fs");
    let w = walk(&item_dir, os("mnt")).unwrap();
    assert_eq!(w.mounts, vec![PathBuf::new()]);
    assert_eq!(w.files, 0);
}
