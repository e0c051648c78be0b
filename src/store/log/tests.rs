use std::collections::BTreeMap;

use super::frame::{self, Batch, Header, Write};
use super::*;
use crate::store::keys;

fn temp_tree() -> (sled::Db, sled::Tree) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("t").unwrap();
    (db, tree)
}

/// The tree's contents without the watermark.
fn contents(tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
    tree.iter()
        .map(Result::unwrap)
        .filter(|(k, _)| **k != keys::LOG_APPLIED)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn watermark(tree: &sled::Tree) -> Option<Position> {
    tree.get(keys::LOG_APPLIED).unwrap().and_then(|v| Position::decode(&v))
}

/// One group through the log as the writer does it: bodies staged, sealed with the writes,
/// written and synced, applied with the frame's end as watermark.
fn commit(log: &mut Log, tree: &sled::Tree, bodies: &[&[u8]], batch: &Batch) -> Vec<BodyRef> {
    let refs = bodies.iter().map(|b| log.stage(b"", b)).collect();
    let end = log.seal(&[batch]).unwrap();
    log.write(true).unwrap();
    apply(tree, batch.as_bytes(), Some(end)).unwrap();
    refs
}

fn batch(writes: &[(&str, Option<&str>)]) -> Batch {
    let mut b = Batch::default();
    for (k, v) in writes {
        match v {
            Some(v) => b.insert(k.as_bytes(), v.as_bytes()),
            None => b.remove(k.as_bytes()),
        }
    }
    b
}

#[test]
fn a_frame_reads_back_its_writes_in_order() {
    let b = batch(&[("a", Some("1")), ("b", None), ("a", Some("")), ("", Some("x"))]);
    let mut out = Vec::new();
    frame::open(&mut out);
    out.extend_from_slice(b"body");
    frame::seal(&mut out, 4, &[b.as_bytes()]);
    let header = Header::parse(out[..frame::HEADER].try_into().unwrap()).unwrap();
    assert_eq!((header.payload_len as usize, header.bodies_len), (out.len() - frame::HEADER, 4));
    let payload = &out[frame::HEADER..];
    assert!(header.holds(payload));
    assert_eq!(&payload[..4], b"body");
    let writes: Vec<Write> = frame::writes(&payload[4..]).map(Result::unwrap).collect();
    assert_eq!(
        writes,
        [Write::Insert(b"a", b"1"), Write::Remove(b"b"), Write::Insert(b"a", b""), Write::Insert(b"", b"x")]
    );
    // Writes that stop short do not parse, and say so rather than guess.
    let cut = &payload[4..payload.len() - 1];
    assert!(frame::writes(cut).any(|w| w.is_err()));
}

#[test]
fn bodies_read_back_across_reopen_and_each_open_starts_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(log.current_segment(), 1);
    let refs = commit(&mut log, &tree, &[b"first body", b"", &[7u8; 3000]], &batch(&[("k", Some("v"))]));
    assert_eq!(read(dir.path(), refs[0]).unwrap(), b"first body");
    assert_eq!(read(dir.path(), refs[1]).unwrap(), b"");
    assert_eq!(read(dir.path(), refs[2]).unwrap(), vec![7u8; 3000]);
    // The first body follows the segment's magic and the frame's header.
    assert_eq!(refs[0].offset, (SEGMENT_MAGIC.len() + frame::HEADER) as u64);

    // Reopened, it appends to a new segment; the old one's bodies still read.
    drop(log);
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(log.current_segment(), 2);
    let d = commit(&mut log, &tree, &[b"after reopen"], &Batch::default());
    assert_eq!(d[0].segment, 2);
    assert_eq!(read(dir.path(), d[0]).unwrap(), b"after reopen");
    assert_eq!(read(dir.path(), refs[0]).unwrap(), b"first body");
    // A segment that holds its magic alone (or a part of it) is taken over, not left behind.
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(log.current_segment(), 3);
    drop(log);
    std::fs::write(segment_path(dir.path(), 3), &SEGMENT_MAGIC[..3]).unwrap();
    assert_eq!(Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap().current_segment(), 3);
    assert_eq!(std::fs::read(segment_path(dir.path(), 3)).unwrap(), SEGMENT_MAGIC);
}

#[test]
fn a_full_segment_rolls_and_an_old_one_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), 1).unwrap();
    let first = commit(&mut log, &tree, &[b"x"], &Batch::default())[0];
    assert_eq!(log.roll_if_full().unwrap(), Some(1));
    assert_eq!(log.current_segment(), 2);
    let second = commit(&mut log, &tree, &[b"y"], &Batch::default())[0];
    assert_eq!(second.segment, 2);
    log.remove_segment(2); // the current segment stays
    assert_eq!(read(dir.path(), second).unwrap(), b"y");
    log.remove_segment(1);
    assert!(matches!(read(dir.path(), first), Err(ReadError::Damaged(m)) if m.contains("00000001.log")));
}

#[test]
fn damage_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    let r = commit(&mut log, &tree, &[b"{\"id\":\"evt_1\"}"], &Batch::default())[0];
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[r.offset as usize + 3] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(m)) if m.contains("checksum")));
    // Cut short, or gone: damage too, never a passing I/O condition to retry.
    std::fs::write(&path, &bytes[..r.offset as usize + 4]).unwrap();
    assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(_))));
}

#[test]
fn a_reference_past_the_end_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    let BodyRef { segment, crc32, .. } = commit(&mut log, &tree, &[b"abc"], &Batch::default())[0];
    let size = std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
    for (offset, len) in [(0, u32::MAX), (size - 2, 3), (size, 1), (u64::MAX, 1), (u64::MAX - 1, u32::MAX)] {
        let e = read(dir.path(), BodyRef { segment, offset, len, crc32, headers: 0 }).unwrap_err();
        assert!(e.to_string().contains(&format!("runs past the segment's end ({size} bytes)")), "{e}");
    }
    assert_eq!(read(dir.path(), BodyRef { segment, offset: size, len: 0, crc32: 0, headers: 0 }).unwrap(), b"");
    let e = read(dir.path(), BodyRef { segment, offset: size + 1, len: 0, crc32: 0, headers: 0 }).unwrap_err();
    assert!(e.to_string().contains("runs past the segment's end"), "{e}");
}

#[test]
fn an_abandoned_frame_is_not_written_and_a_cut_one_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    log.stage(b"", b"never");
    log.abandon();
    let kept = commit(&mut log, &tree, &[b"kept"], &Batch::default())[0];
    assert_eq!(kept.offset, (SEGMENT_MAGIC.len() + frame::HEADER) as u64);
    let before = log.end();
    log.stage(b"", b"taken back");
    log.seal(&[&batch(&[("k", Some("v"))])]).unwrap();
    log.write(true).unwrap();
    log.cut(before).unwrap();
    assert_eq!(std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len(), before);
    // Recovery finds the one frame that stayed, not the cut one.
    let (_db, fresh) = temp_tree();
    assert_eq!(recover(dir.path(), &fresh).unwrap().groups, 1);
    assert!(contents(&fresh).is_empty());
}

/// Recovery applies every whole frame past the watermark, in order, and nothing before it; run
/// again, it changes nothing; a torn frame ends its segment, and later segments are read on.
#[test]
fn recovery_applies_what_sled_lacks_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tree) = temp_tree();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    commit(&mut log, &tree, &[b"b1"], &batch(&[("a", Some("1")), ("b", Some("1"))]));
    let applied = watermark(&tree).unwrap();
    // A tree that has the first group only (as after a crash before sled wrote the rest).
    let (_db2, behind) = temp_tree();
    for (k, v) in tree.iter().map(Result::unwrap) {
        behind.insert(k, v).unwrap();
    }
    commit(&mut log, &tree, &[b"b2"], &batch(&[("a", Some("2")), ("b", None)]));
    commit(&mut log, &tree, &[], &batch(&[("c", Some("3"))]));
    let whole = contents(&tree);
    assert_eq!(recover(dir.path(), &tree).unwrap().groups, 0, "nothing past the watermark");

    let done = recover(dir.path(), &behind).unwrap();
    assert_eq!(done.groups, 2);
    assert_eq!(contents(&behind), whole);
    assert_eq!(watermark(&behind), watermark(&tree));
    assert!(watermark(&behind) > Some(applied));
    assert_eq!(recover(dir.path(), &behind).unwrap().groups, 0);

    // A tree with nothing: every frame from the first, the same result.
    let (_db3, empty) = temp_tree();
    assert_eq!(recover(dir.path(), &empty).unwrap().groups, 3);
    assert_eq!(contents(&empty), whole);

    // The last frame torn, then a later run's segment: its frame is applied, the torn one not.
    drop(log);
    let path = segment_path(dir.path(), 1);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 1).unwrap();
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    let (_db4, other) = temp_tree();
    commit(&mut log, &other, &[], &batch(&[("d", Some("4"))]));
    let (_db5, cut) = temp_tree();
    assert_eq!(recover(dir.path(), &cut).unwrap().groups, 3);
    let got = contents(&cut);
    assert_eq!(got.get(&b"b"[..]), None);
    assert_eq!(got.get(&b"a"[..]).map(Vec::as_slice), Some(&b"2"[..]));
    assert_eq!(got.get(&b"c"[..]), None, "the torn frame's write");
    assert_eq!(got.get(&b"d"[..]).map(Vec::as_slice), Some(&b"4"[..]), "the later segment's");
}

/// A segment from before frames (raw bodies, no magic) is never read as frames; a watermark that
/// does not decode stops recovery rather than start it anywhere.
#[test]
fn old_segments_and_a_damaged_watermark_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 1), b"SHG1 a raw body that looks like a frame").unwrap();
    let (_db, tree) = temp_tree();
    assert_eq!(recover(dir.path(), &tree).unwrap().groups, 0);
    let mut log = Log::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(log.current_segment(), 2);
    let (_db2, other) = temp_tree();
    commit(&mut log, &other, &[], &batch(&[("k", Some("v"))]));
    assert_eq!(recover(dir.path(), &tree).unwrap().groups, 1);
    let (_db3, damaged) = temp_tree();
    damaged.insert(keys::LOG_APPLIED, &b"short"[..]).unwrap();
    assert_eq!(recover(dir.path(), &damaged).unwrap().groups, 0);
}

/// A data folder of a version before the log: `bodies/` becomes `log/`, its bodies still read.
#[test]
fn the_old_body_directory_is_taken_over() {
    let data = tempfile::tempdir().unwrap();
    let old = data.path().join("bodies");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("00000001.log"), b"raw body").unwrap();
    let r = BodyRef { segment: 1, offset: 4, len: 4, crc32: crc32fast::hash(b"body"), headers: 0 };
    assert_eq!(read(&dir_of(data.path()), r).unwrap(), b"body");
    let dir = take_over_old_dir(data.path()).unwrap();
    assert_eq!(dir, data.path().join("log"));
    assert!(!old.exists());
    assert_eq!(dir_of(data.path()), dir);
    assert_eq!(read(&dir, r).unwrap(), b"body");
    assert_eq!(take_over_old_dir(data.path()).unwrap(), dir, "once only");
}

mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// A reference changed in one field, or made up.
    #[derive(Debug, Clone)]
    enum Probe {
        Segment(u32),
        Offset(u64),
        Len(u32),
        Crc(u32),
        Headers(u32),
        Any(BodyRef),
    }

    fn probe() -> impl Strategy<Value = (Index, Probe)> {
        let near = || prop_oneof![0u64..300, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()];
        let small = || prop_oneof![0u32..300, Just(u32::MAX), any::<u32>()];
        let any_ref = (0u32..4, near(), small(), any::<u32>(), small())
            .prop_map(|(segment, offset, len, crc32, headers)| BodyRef { segment, offset, len, crc32, headers });
        let change = prop_oneof![
            prop_oneof![0u32..4, any::<u32>()].prop_map(Probe::Segment),
            near().prop_map(Probe::Offset),
            prop_oneof![0u32..300, Just(u32::MAX)].prop_map(Probe::Len),
            any::<u32>().prop_map(Probe::Crc),
            small().prop_map(Probe::Headers),
            any_ref.prop_map(Probe::Any),
        ];
        (any::<Index>(), change)
    }

    proptest! {
        // Each case syncs a few segment writes: fewer cases than elsewhere.
        #![proptest_config(crate::proptest_cases(32))]

        /// Every reference the log gave reads back its headers and body; any other reads the
        /// bytes it names when they are there and pass its checksum, or is an error: never a
        /// panic, never damaged or made-up bytes.
        #[test]
        fn any_reference_reads_its_bytes_or_an_error(
            events in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..20), prop::collection::vec(any::<u8>(), 0..80)),
                1..8,
            ),
            probes in prop::collection::vec(probe(), 1..16),
        ) {
            let dir = tempfile::tempdir().unwrap();
            // Small segments, so the references name several.
            let mut log = Log::open(dir.path().to_path_buf(), 100).unwrap();
            let mut refs = Vec::new();
            for (headers, body) in &events {
                refs.push(log.stage(headers, body));
                log.seal(&[&Batch::default()]).unwrap();
                log.write(true).unwrap();
                log.roll_if_full().unwrap();
            }
            for (r, (headers, body)) in refs.iter().zip(&events) {
                prop_assert_eq!(&read_parts(dir.path(), *r).unwrap(), &(headers.clone(), body.clone()));
            }
            for (which, probe) in probes {
                let BodyRef { segment, offset, len, crc32, headers } = refs[which.index(refs.len())];
                let r = match probe {
                    Probe::Segment(segment) => BodyRef { segment, offset, len, crc32, headers },
                    Probe::Offset(offset) => BodyRef { segment, offset, len, crc32, headers },
                    Probe::Len(len) => BodyRef { segment, offset, len, crc32, headers },
                    Probe::Crc(crc32) => BodyRef { segment, offset, len, crc32, headers },
                    Probe::Headers(headers) => BodyRef { segment, offset, len, crc32, headers },
                    Probe::Any(r) => r,
                };
                if let Ok((head, body)) = read_parts(dir.path(), r) {
                    let BodyRef { segment, offset, len, crc32, headers } = r;
                    let file = std::fs::read(segment_path(dir.path(), segment)).unwrap();
                    let there =
                        usize::try_from(offset).ok().and_then(|at| file.get(at..at.checked_add(len as usize)?));
                    let bytes = [head.clone(), body].concat();
                    prop_assert_eq!(Some(&bytes[..]), there, "{:?}", r);
                    prop_assert_eq!(crc32fast::hash(&bytes), crc32);
                    prop_assert_eq!(head.len(), headers as usize);
                }
            }
        }
    }

    fn writes() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..40);
        prop::collection::vec((bytes(), prop::option::of(bytes())), 0..8)
    }

    proptest! {
        #![proptest_config(crate::proptest_cases(64))]

        /// Any frame reads back what it was given; cut anywhere, or with any one byte changed,
        /// it is not taken for a frame at all.
        #[test]
        fn a_frame_is_whole_or_not_a_frame(
            bodies in prop::collection::vec(any::<u8>(), 0..100),
            writes in writes(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut b = Batch::default();
            for (k, v) in &writes {
                match v {
                    Some(v) => b.insert(k, v),
                    None => b.remove(k),
                }
            }
            let mut out = Vec::new();
            frame::open(&mut out);
            out.extend_from_slice(&bodies);
            frame::seal(&mut out, bodies.len(), &[b.as_bytes()]);
            let whole = |bytes: &[u8]| {
                let head: &[u8; frame::HEADER] = bytes.get(..frame::HEADER)?.try_into().ok()?;
                let header = Header::parse(head)?;
                let payload = bytes.get(frame::HEADER..frame::HEADER + header.payload_len as usize)?;
                header.holds(payload).then(|| payload[header.bodies_len as usize..].to_vec())
            };
            let got = whole(&out).unwrap();
            let read: Vec<(Vec<u8>, Option<Vec<u8>>)> = frame::writes(&got)
                .map(|w| match w.unwrap() {
                    Write::Insert(k, v) => (k.to_vec(), Some(v.to_vec())),
                    Write::Remove(k) => (k.to_vec(), None),
                })
                .collect();
            prop_assert_eq!(read, writes);
            prop_assert!(whole(&out[..cut.index(out.len())]).is_none());
            let mut changed = out.clone();
            changed[flip.index(out.len())] ^= 1 << bit;
            prop_assert!(whole(&changed).is_none());
        }
    }
}
