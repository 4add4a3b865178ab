//! The fuzz corpora as a regression test on stable: every committed file under
//! `fuzz/corpus/<target>/` goes through the same property function its fuzz target calls,
//! under the same allocation meter. A fuzz target without a corpus, or a corpus without a
//! target, fails too.

use std::path::{Path, PathBuf};

use commons_fuzz::Target;
use commons_fuzz::alloc::Meter;

#[global_allocator]
static METER: Meter = Meter;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("props/ sits in fuzz/")
        .to_path_buf()
}

fn names_in(dir: &Path, strip: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(strip).map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_corpus() {
    let mut expected: Vec<String> = Target::ALL.iter().map(|t| t.name().to_string()).collect();
    expected.sort();
    assert_eq!(names_in(&fuzz_dir().join("fuzz_targets"), ".rs"), expected);
    assert_eq!(names_in(&fuzz_dir().join("corpus"), ""), expected);
}

#[test]
fn the_meter_is_installed_and_counts() {
    assert!(commons_fuzz::alloc::installed());
    let (_, peak) = commons_fuzz::alloc::peak_during(|| vec![0u8; 10_000]);
    assert!(peak >= 10_000, "{peak}");
}

#[test]
fn every_corpus_file_keeps_its_properties() {
    for target in Target::ALL {
        let dir = fuzz_dir().join("corpus").join(target.name());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| target.check(&data));
            assert!(outcome.is_ok(), "{} fails its properties", file.display());
        }
    }
}
