//! The archive reader (`store::archive::scan`, issue 26): archives are untrusted input.
//! Properties, with the input taken as a gzip file and, again, as the decompressed tar stream:
//! reading never panics; an archive it accepts holds only paths that pass the layout check
//! (`check_path`: relative, no `..`, names of the grammar, under an archived type), each entry
//! belongs to a manifest item whose declared file count and bytes are what the entries hold,
//! and the manifest's items are of the archived types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::archive::{check_path, scan, Scanned};
use prodigy::store::gz;

fn check(s: &Scanned) {
    assert_eq!(s.owner.len(), s.entries.len());
    let mut files = vec![0u64; s.manifest.items.len()];
    let mut bytes = vec![0u64; s.manifest.items.len()];
    for (h, &i) in s.entries.iter().zip(&s.owner) {
        check_path(&h.path).expect("an accepted entry passes the layout check");
        assert!(!h.path.split('/').any(|c| c == ".." || c.is_empty()));
        assert!(!h.dir || h.size == 0);
        let it = &s.manifest.items[i];
        assert!(
            h.path == it.path
                || h.path.starts_with(&format!("{}/", it.path))
                || it
                    .also
                    .iter()
                    .any(|a| h.path == *a || h.path.starts_with(&format!("{a}/")))
        );
        if !h.dir {
            files[i] += 1;
            bytes[i] += h.size;
        }
    }
    for (i, it) in s.manifest.items.iter().enumerate() {
        assert_eq!((files[i], bytes[i]), (it.files, it.bytes));
        assert_ne!(it.ty, "worktrees");
        check_path(&it.path).expect("an accepted item passes the layout check");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = scan(&mut gz::decoder(data)) {
        check(&s);
    }
    if let Ok(s) = scan(&mut &data[..]) {
        check(&s);
    }
});
