//! One conformance suite for every share backend (the `Backend` trait contract), plus tests
//! specific to the disk backend (Tahoe's exact container bytes, round trips with stock
//! Tahoe-LAFS 1.20) and the memory backend (simulated full disk).
//!
//! Each case in [`cases`] is an async function taking `&dyn Backend`; the `conformance!`
//! macro makes one `#[tokio::test]` per case that runs it against every backend named in
//! `LAFS_TEST_BACKENDS` (comma-separated; default `memory,disk,disk.named,cloud.s3`, where
//! `disk.named` stages uploads under stock's `incoming/` paths instead of in unnamed files;
//! also `disk.inplace` and `disk.rewrite`, the disk backend forced onto one mutable write
//! path).
//! A new backend is one arm in `common::make`, as OpenDAL's behaviour tests select services.
//! `cloud.s3` runs the cloud backend (16 KiB chunks; `cloud_layout.rs` tests sizes at the
//! chunk boundaries with 4 KiB ones) against a fresh s3s-fs per case
//! (`LAFS_S3S_FS` or `~/.cache/lafs/s3s-root/bin/s3s-fs`, made by `interop/s3s-fs.sh`;
//! missing, it is skipped with a message locally and fails under `CI=true`).
//!
//! The stock round trips run stock's own storage classes from the interop venv
//! (`LAFS_TAHOE_VENV`, default `~/.cache/lafs/tahoe-venv`, made by `interop/tahoe-venv.sh`;
//! a missing venv fails those tests with instructions, never skips them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            for name in selected_backends() {
                if !available(&name) {
                    continue;
                }
                let h = make(&name);
                println!("conformance case {} on backend {name}", stringify!($case));
                cases::$case(h.b()).await;
            }
        }
    )*};
}

conformance!(
    empty_backend,
    immutable_boundary_sizes,
    immutable_writes_out_of_order_and_overlapping,
    immutable_holes_and_partial_writes,
    immutable_large_share_rewrites_and_reads_while_staged,
    immutable_large_shares_written_in_order,
    immutable_staged_reads,
    immutable_write_bounds,
    immutable_visible_only_after_commit,
    immutable_abort,
    immutable_drop_without_commit,
    immutable_already_exists_and_in_progress,
    shares_listed_by_number,
    delete_shares,
    mutable_create_modify_extend_truncate,
    mutable_write_enabler_recorded_on_create_only,
    mutable_delete_and_empty_shares,
    mutable_boundary_sizes,
    kind_mismatch,
    concurrent_writers,
    list_storage_indexes_order_and_paging,
    clean_incoming_after_crash,
    available_space,
);

mod cases {
    use super::common::*;
    use bytes::Bytes;
    use lafs_storage::backend::{Backend, BackendError, StoredShare};
    use lafs_storage::types::{ShareKind, StorageIndex};
    use std::future::Future;
    use std::pin::Pin;

    const SIZES: [u64; 9] = [0, 1, 4095, 4096, 4097, MIB - 1, MIB, MIB + 1, 5 * MIB + 3];

    fn is_not_found<T: std::fmt::Debug>(r: Result<T, BackendError>) -> bool {
        matches!(r, Err(BackendError::NotFound))
    }

    fn shnums(list: &[StoredShare]) -> Vec<u16> {
        list.iter().map(|s| s.shnum).collect()
    }

    pub async fn empty_backend(b: &dyn Backend) {
        assert!(!b.name().is_empty());
        let s = si(1);
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert!(is_not_found(b.read(&s, 0, 0, 10).await));
        assert!(is_not_found(b.read(&s, 0, 0, 0).await));
        assert_eq!(b.mutable_write_enabler(&s, 0).await.unwrap(), None);
        b.delete(&s, 0).await.unwrap();
        assert!(b.list_storage_indexes(None, 100).await.unwrap().is_empty());
        b.clean_incoming().await.unwrap();
        assert!(b.list_shares(&s).await.unwrap().is_empty());
    }

    pub async fn immutable_boundary_sizes(b: &dyn Backend) {
        for (i, size) in SIZES.into_iter().enumerate() {
            let s = si(100 + i as u64);
            let shnum = i as u16;
            let data = pattern(size, i as u64);
            // Odd chunk sizes so writes straddle every boundary.
            let committed = put_immutable_chunked(b, &s, shnum, &data, 65_537).await;
            assert_eq!(committed, size, "size {size}");
            let listed = b.list_shares(&s).await.unwrap();
            assert_eq!(
                listed,
                vec![StoredShare {
                    shnum,
                    kind: ShareKind::Immutable,
                    size,
                    corrupt: None
                }]
            );
            assert!(
                read_all(b, &s, shnum).await == data,
                "size {size}: contents"
            );
            let whole = b.read(&s, shnum, 0, u64::MAX).await.unwrap();
            assert!(whole[..] == data[..], "size {size}: read(0, MAX)");
            if size > 0 {
                let last = b.read(&s, shnum, size - 1, 10).await.unwrap();
                assert_eq!(&last[..], &data[size as usize - 1..]);
                let last = b.read(&s, shnum, size - 1, u64::MAX).await.unwrap();
                assert_eq!(&last[..], &data[size as usize - 1..]);
                let first = b.read(&s, shnum, 0, 1).await.unwrap();
                assert_eq!(&first[..], &data[..1]);
                let mid = size / 2;
                let got = b.read(&s, shnum, mid, 4097).await.unwrap();
                let end = (mid + 4097).min(size) as usize;
                assert_eq!(&got[..], &data[mid as usize..end]);
                assert!(b.read(&s, shnum, 1, 0).await.unwrap().is_empty());
            }
            for past in [size, size + 1, size + 5000, u64::MAX] {
                assert!(
                    b.read(&s, shnum, past, 10).await.unwrap().is_empty(),
                    "size {size}: read at {past}"
                );
                assert!(b.read(&s, shnum, past, u64::MAX).await.unwrap().is_empty());
            }
        }
    }

    pub async fn immutable_writes_out_of_order_and_overlapping(b: &dyn Backend) {
        let s = si(200);
        let data = pattern(300_000, 7);
        let mut up = b.start_immutable(&s, 3, 300_000).await.unwrap();
        let chunk = 10_007usize;
        let starts: Vec<usize> = (0..data.len()).step_by(chunk).collect();
        for start in starts.iter().rev() {
            let end = (start + chunk).min(data.len());
            up.write(*start as u64, Bytes::copy_from_slice(&data[*start..end]))
                .await
                .unwrap();
        }
        // Overlapping rewrites of the same bytes, misaligned.
        for start in [5usize, 9_999, 10_000, 150_003, 299_000] {
            let end = (start + 20_000).min(data.len());
            up.write(start as u64, Bytes::copy_from_slice(&data[start..end]))
                .await
                .unwrap();
        }
        // The backend does not police conflicting overwrites (the server does): last wins.
        up.write(100, Bytes::from_static(b"OVERWRITTEN"))
            .await
            .unwrap();
        assert_eq!(up.commit().await.unwrap(), 300_000);
        let mut want = data.clone();
        want[100..111].copy_from_slice(b"OVERWRITTEN");
        assert!(read_all(b, &s, 3).await == want);
    }

    pub async fn immutable_holes_and_partial_writes(b: &dyn Backend) {
        let s = si(210);
        // Two islands: the share ends at the highest byte written, holes read as zeros.
        let mut up = b.start_immutable(&s, 0, 1000).await.unwrap();
        up.write(100, Bytes::from(vec![2u8; 10])).await.unwrap();
        up.write(0, Bytes::from(vec![1u8; 10])).await.unwrap();
        assert_eq!(up.commit().await.unwrap(), 110);
        let got = read_all(b, &s, 0).await;
        let mut want = vec![1u8; 10];
        want.extend(vec![0u8; 90]);
        want.extend(vec![2u8; 10]);
        assert_eq!(got, want);
        // Nothing written: an empty share.
        let up = b.start_immutable(&s, 1, 1000).await.unwrap();
        assert_eq!(up.commit().await.unwrap(), 0);
        // Allocated size 0, empty writes.
        let mut up = b.start_immutable(&s, 2, 0).await.unwrap();
        up.write(0, Bytes::new()).await.unwrap();
        assert_eq!(up.commit().await.unwrap(), 0);
        let listed = b.list_shares(&s).await.unwrap();
        assert_eq!(shnums(&listed), vec![0, 1, 2]);
        assert_eq!(
            listed.iter().map(|s| s.size).collect::<Vec<_>>(),
            vec![110, 0, 0]
        );
        assert!(b.read(&s, 1, 0, 10).await.unwrap().is_empty());
    }

    pub async fn immutable_large_share_rewrites_and_reads_while_staged(b: &dyn Backend) {
        // Larger than several writeback windows of the disk backend (4 MiB): ranges
        // whose writeback has started are read back and rewritten before the commit.
        let s = si(205);
        let len = 11 * MIB + 12_345;
        let data = pattern(len, 11);
        let mut up = b.start_immutable(&s, 1, len).await.unwrap();
        let chunk = 512 * 1024 + 3;
        // Second half first, then the first half, in uneven chunks.
        let half = (len / 2) as usize;
        for (from, to) in [(half, len as usize), (0, half)] {
            let mut at = from;
            while at < to {
                let end = (at + chunk).min(to);
                up.write(at as u64, Bytes::copy_from_slice(&data[at..end]))
                    .await
                    .unwrap();
                at = end;
            }
        }
        let probe = 5 * MIB as usize - 7;
        assert_eq!(
            &up.read(probe as u64, 100).await.unwrap()[..],
            &data[probe..probe + 100]
        );
        let mut want = data.clone();
        for at in [17usize, 4 * MIB as usize + 1, 9 * MIB as usize] {
            let patch = pattern(70_000, at as u64);
            up.write(at as u64, Bytes::from(patch.clone()))
                .await
                .unwrap();
            want[at..at + patch.len()].copy_from_slice(&patch);
        }
        assert_eq!(up.commit().await.unwrap(), len);
        assert!(read_all(b, &s, 1).await == want);
    }

    pub async fn immutable_large_shares_written_in_order(b: &dyn Backend) {
        // The way clients upload (the disk backend then bypasses the page cache): in order,
        // in uneven pieces. One share straight through; one with a read while staged and a
        // rewrite of earlier bytes in the middle; one written short of its allocation.
        let len = 3 * MIB + 777;
        let data = pattern(len, 21);
        let pieces = [1usize, 511, 524_288, 99_999, 1_048_576, 12_345];
        for (case, allocated) in [(0u8, len), (1, len), (2, len + 5000)] {
            let s = si(230 + u64::from(case));
            let mut up = b.start_immutable(&s, 3, allocated).await.unwrap();
            let mut want = data.clone();
            let (mut at, mut i) = (0usize, 0);
            while at < len as usize {
                let end = (at + pieces[i % pieces.len()]).min(len as usize);
                up.write(at as u64, Bytes::copy_from_slice(&data[at..end]))
                    .await
                    .unwrap();
                at = end;
                i += 1;
                if case == 1 && i == 4 {
                    let got = up.read(100, 600_000).await.unwrap();
                    assert!(got[..] == data[100..600_100]);
                    let patch = pattern(4000, 9);
                    up.write(300, Bytes::from(patch.clone())).await.unwrap();
                    want[300..4300].copy_from_slice(&patch);
                }
            }
            assert_eq!(up.commit().await.unwrap(), len, "case {case}");
            assert!(read_all(b, &s, 3).await == want, "case {case}");
            assert_eq!(
                &b.read(&s, 3, len - 10, 100).await.unwrap()[..],
                &want[len as usize - 10..],
                "case {case}"
            );
        }
    }

    pub async fn immutable_staged_reads(b: &dyn Backend) {
        // The server compares overlapping writes with what is staged.
        let s = si(215);
        let mut up = b.start_immutable(&s, 0, 300_000).await.unwrap();
        assert!(up.read(0, 10).await.unwrap().is_empty());
        let data = pattern(100_000, 5);
        up.write(200_000, Bytes::from(data.clone())).await.unwrap();
        up.write(0, Bytes::from_static(b"head")).await.unwrap();
        assert_eq!(&up.read(0, 4).await.unwrap()[..], b"head");
        assert_eq!(&up.read(2, 6).await.unwrap()[..], b"ad\0\0\0\0");
        let got = up.read(199_990, 20).await.unwrap();
        assert_eq!(&got[..10], &[0u8; 10]);
        assert_eq!(&got[10..], &data[..10]);
        let got = up.read(250_000, u64::MAX).await.unwrap();
        assert_eq!(&got[..], &data[50_000..]);
        for past in [300_000, 300_001, u64::MAX] {
            assert!(up.read(past, 10).await.unwrap().is_empty());
        }
        assert!(up.read(5, 0).await.unwrap().is_empty());
        // Still invisible, and the reads do not disturb the commit.
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert_eq!(up.commit().await.unwrap(), 300_000);
        let all = read_all(b, &s, 0).await;
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[200_000..], &data[..]);
    }

    pub async fn immutable_write_bounds(b: &dyn Backend) {
        let s = si(220);
        let mut up = b.start_immutable(&s, 0, 100).await.unwrap();
        for (offset, len) in [
            (90u64, 11usize),
            (100, 1),
            (0, 101),
            (u64::MAX, 1),
            (u64::MAX - 3, 5),
        ] {
            let r = up.write(offset, Bytes::from(vec![9u8; len])).await;
            assert!(
                matches!(r, Err(BackendError::Invalid(_))),
                "write {len} at {offset}: {r:?}"
            );
        }
        assert!(matches!(
            up.write(101, Bytes::new()).await,
            Err(BackendError::Invalid(_))
        ));
        up.write(100, Bytes::new()).await.unwrap();
        let data = pattern(100, 3);
        up.write(0, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(up.commit().await.unwrap(), 100);
        assert_eq!(read_all(b, &s, 0).await, data);
    }

    pub async fn immutable_visible_only_after_commit(b: &dyn Backend) {
        let s = si(230);
        let data = pattern(5000, 1);
        let mut up = b.start_immutable(&s, 4, 5000).await.unwrap();
        up.write(0, Bytes::from(data.clone())).await.unwrap();
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert!(is_not_found(b.read(&s, 4, 0, 10).await));
        assert_eq!(b.mutable_write_enabler(&s, 4).await.unwrap(), None);
        assert!(b.list_storage_indexes(None, 100).await.unwrap().is_empty());
        // Another share of the same storage index completes meanwhile.
        put_immutable(b, &s, 5, b"other").await;
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![5]);
        assert_eq!(up.commit().await.unwrap(), 5000);
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![4, 5]);
        assert_eq!(read_all(b, &s, 4).await, data);
        assert_eq!(b.list_storage_indexes(None, 100).await.unwrap(), vec![s]);
    }

    pub async fn immutable_abort(b: &dyn Backend) {
        let s = si(240);
        let mut up = b.start_immutable(&s, 0, 100).await.unwrap();
        up.write(0, Bytes::from(vec![1u8; 100])).await.unwrap();
        up.abort().await.unwrap();
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert!(is_not_found(b.read(&s, 0, 0, 1).await));
        assert!(b.list_storage_indexes(None, 10).await.unwrap().is_empty());
        // The same share can be uploaded again, with other contents.
        put_immutable(b, &s, 0, b"second try").await;
        assert_eq!(read_all(b, &s, 0).await, b"second try");
    }

    pub async fn immutable_drop_without_commit(b: &dyn Backend) {
        let s = si(250);
        let mut up = b.start_immutable(&s, 7, 100).await.unwrap();
        up.write(0, Bytes::from(vec![1u8; 50])).await.unwrap();
        drop(up);
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        // A new upload of the same share may start at once.
        let mut up = b.start_immutable(&s, 7, 3).await.unwrap();
        up.write(0, Bytes::from_static(b"new")).await.unwrap();
        assert_eq!(up.commit().await.unwrap(), 3);
        assert_eq!(read_all(b, &s, 7).await, b"new");
        // Dropping an upload that was never written to.
        drop(b.start_immutable(&s, 8, 100).await.unwrap());
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![7]);
    }

    pub async fn immutable_already_exists_and_in_progress(b: &dyn Backend) {
        let s = si(260);
        put_immutable(b, &s, 0, b"complete").await;
        assert!(matches!(
            b.start_immutable(&s, 0, 8).await,
            Err(BackendError::AlreadyExists)
        ));
        // A mutable share is a share too.
        b.write_mutable(&s, 5, mw(&[(0, b"mutable")], None, 1))
            .await
            .unwrap();
        assert!(matches!(
            b.start_immutable(&s, 5, 8).await,
            Err(BackendError::AlreadyExists)
        ));
        // Two uploads of one share at once: the second is refused, transiently.
        let first = b.start_immutable(&s, 6, 8).await.unwrap();
        let second = b.start_immutable(&s, 6, 8).await;
        assert!(
            matches!(&second, Err(e) if e.is_transient()),
            "second concurrent upload: {second:?}"
        );
        drop(second);
        drop(first);
        b.start_immutable(&s, 6, 8)
            .await
            .unwrap()
            .abort()
            .await
            .unwrap();
        // A share appearing during the upload makes the commit fail and stays untouched.
        let mut up = b.start_immutable(&s, 7, 4).await.unwrap();
        up.write(0, Bytes::from_static(b"late")).await.unwrap();
        b.write_mutable(&s, 7, mw(&[(0, b"first")], None, 2))
            .await
            .unwrap();
        assert!(matches!(
            up.commit().await,
            Err(BackendError::AlreadyExists)
        ));
        assert_eq!(read_all(b, &s, 7).await, b"first");
        let listed = b.list_shares(&s).await.unwrap();
        assert_eq!(shnums(&listed), vec![0, 5, 7]);
        assert_eq!(listed[2].kind, ShareKind::Mutable);
        // And the failed upload left nothing behind that blocks a later one.
        b.delete(&s, 7).await.unwrap();
        put_immutable(b, &s, 7, b"again").await;
        assert_eq!(read_all(b, &s, 7).await, b"again");
        assert_eq!(read_all(b, &s, 0).await, b"complete");
    }

    pub async fn shares_listed_by_number(b: &dyn Backend) {
        let s = si(270);
        for n in [7u16, 0, 255, 3, 10, 100] {
            put_immutable(b, &s, n, &pattern(u64::from(n) + 1, 1)).await;
        }
        for n in [1u16, 20] {
            b.write_mutable(&s, n, mw(&[(0, &pattern(u64::from(n) * 2, 2))], None, 3))
                .await
                .unwrap();
        }
        let listed = b.list_shares(&s).await.unwrap();
        assert_eq!(shnums(&listed), vec![0, 1, 3, 7, 10, 20, 100, 255]);
        for share in &listed {
            let (kind, size) = match share.shnum {
                1 | 20 => (ShareKind::Mutable, u64::from(share.shnum) * 2),
                n => (ShareKind::Immutable, u64::from(n) + 1),
            };
            assert_eq!(
                (share.kind, share.size, &share.corrupt),
                (kind, size, &None)
            );
        }
        // Other storage indexes are unaffected.
        assert!(b.list_shares(&si(271)).await.unwrap().is_empty());
    }

    pub async fn delete_shares(b: &dyn Backend) {
        let (s, t) = (si(280), si(281));
        put_immutable(b, &s, 0, b"zero").await;
        put_immutable(b, &s, 1, b"one").await;
        b.write_mutable(&s, 2, mw(&[(0, b"two")], None, 1))
            .await
            .unwrap();
        put_immutable(b, &t, 0, b"other").await;
        b.delete(&s, 0).await.unwrap();
        b.delete(&s, 2).await.unwrap();
        b.delete(&s, 9).await.unwrap(); // missing: fine
        b.delete(&si(289), 0).await.unwrap();
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![1]);
        assert!(is_not_found(b.read(&s, 0, 0, 1).await));
        assert_eq!(b.mutable_write_enabler(&s, 2).await.unwrap(), None);
        assert_eq!(read_all(b, &s, 1).await, b"one");
        let mut all = vec![s, t];
        all.sort();
        assert_eq!(b.list_storage_indexes(None, 10).await.unwrap(), all);
        b.delete(&s, 1).await.unwrap();
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert_eq!(b.list_storage_indexes(None, 10).await.unwrap(), vec![t]);
        // A deleted share can be created again.
        put_immutable(b, &s, 0, b"reborn").await;
        assert_eq!(read_all(b, &s, 0).await, b"reborn");
    }

    /// Applies `w` to the backend and to the model, and checks they agree.
    async fn step(
        b: &dyn Backend,
        s: &StorageIndex,
        n: u16,
        model: &mut Vec<u8>,
        w: lafs_storage::backend::MutableWrite,
    ) {
        model_apply(model, &w);
        let what = format!("{:?} new_length {:?}", w.writes.len(), w.new_length);
        let len = b.write_mutable(s, n, w).await.unwrap();
        assert_eq!(
            len,
            model.len() as u64,
            "{}: returned length after {what}",
            b.name()
        );
        let got = read_all(b, s, n).await;
        assert!(got == *model, "{}: contents after {what}", b.name());
        let listed = b.list_shares(s).await.unwrap();
        let share = listed.iter().find(|x| x.shnum == n).expect("listed");
        assert_eq!(
            (share.kind, share.size),
            (ShareKind::Mutable, model.len() as u64)
        );
    }

    pub async fn mutable_create_modify_extend_truncate(b: &dyn Backend) {
        let s = si(300);
        let mut m = Vec::new();
        step(b, &s, 3, &mut m, mw(&[(0, b"hello world")], None, 1)).await;
        assert_eq!(m, b"hello world");
        step(b, &s, 3, &mut m, mw(&[(6, b"WORLD")], None, 1)).await;
        // Extend past the end: the hole reads as zeros.
        step(b, &s, 3, &mut m, mw(&[(20, b"tail")], None, 1)).await;
        assert_eq!(&m[11..20], &[0u8; 9]);
        // Several writes, overlapping, applied in order.
        step(
            b,
            &s,
            3,
            &mut m,
            mw(&[(0, b"aaaa"), (2, b"bb"), (3, b"C")], None, 1),
        )
        .await;
        assert_eq!(&m[..4], b"aabC");
        // new_length only shrinks.
        step(b, &s, 3, &mut m, mw(&[], Some(100), 1)).await;
        assert_eq!(m.len(), 24);
        step(b, &s, 3, &mut m, mw(&[], Some(8), 1)).await;
        // Growing again never exposes the truncated bytes.
        step(b, &s, 3, &mut m, mw(&[(12, b"z")], None, 1)).await;
        assert_eq!(&m[8..12], &[0u8; 4]);
        step(b, &s, 3, &mut m, mw(&[(9, b"yy")], None, 1)).await;
        // Writes, then truncation, in one request.
        step(b, &s, 3, &mut m, mw(&[(0, &[b'X'; 20])], Some(5), 1)).await;
        assert_eq!(m, b"XXXXX");
        // An empty write past the end extends with zeros (stock does so too).
        step(b, &s, 3, &mut m, mw(&[(5, b"")], None, 1)).await;
        step(b, &s, 3, &mut m, mw(&[(50, b"")], None, 1)).await;
        assert_eq!(m.len(), 50);
        // A large write with a large hole.
        step(
            b,
            &s,
            3,
            &mut m,
            mw(&[(3 * MIB, &pattern(70_000, 9))], None, 1),
        )
        .await;
        step(
            b,
            &s,
            3,
            &mut m,
            mw(&[(1000, &pattern(5000, 10))], Some(MIB), 1),
        )
        .await;
        // Clipped reads.
        let got = b.read(&s, 3, MIB - 3, 100).await.unwrap();
        assert_eq!(&got[..], &m[MIB as usize - 3..]);
        assert!(b.read(&s, 3, MIB, 100).await.unwrap().is_empty());
        assert!(b.read(&s, 3, u64::MAX, u64::MAX).await.unwrap().is_empty());
        assert_eq!(b.mutable_write_enabler(&s, 3).await.unwrap(), Some([1; 32]));
    }

    pub async fn mutable_write_enabler_recorded_on_create_only(b: &dyn Backend) {
        let s = si(310);
        b.write_mutable(&s, 0, mw(&[(0, b"a")], None, 0xaa))
            .await
            .unwrap();
        b.write_mutable(&s, 1, mw(&[(0, b"b")], None, 0xbb))
            .await
            .unwrap();
        assert_eq!(
            b.mutable_write_enabler(&s, 0).await.unwrap(),
            Some([0xaa; 32])
        );
        assert_eq!(
            b.mutable_write_enabler(&s, 1).await.unwrap(),
            Some([0xbb; 32])
        );
        // Later writes carry another enabler (the server checked the real one): unchanged.
        b.write_mutable(&s, 0, mw(&[(1, b"c")], None, 0xcc))
            .await
            .unwrap();
        assert_eq!(
            b.mutable_write_enabler(&s, 0).await.unwrap(),
            Some([0xaa; 32])
        );
        assert_eq!(b.mutable_write_enabler(&s, 2).await.unwrap(), None);
        // Deleted and created again: the new enabler.
        b.write_mutable(&s, 0, mw(&[], Some(0), 0xcc))
            .await
            .unwrap();
        b.write_mutable(&s, 0, mw(&[(0, b"d")], None, 0xdd))
            .await
            .unwrap();
        assert_eq!(
            b.mutable_write_enabler(&s, 0).await.unwrap(),
            Some([0xdd; 32])
        );
    }

    pub async fn mutable_delete_and_empty_shares(b: &dyn Backend) {
        let s = si(320);
        b.write_mutable(&s, 0, mw(&[(0, b"data")], None, 1))
            .await
            .unwrap();
        b.write_mutable(&s, 1, mw(&[(0, b"keep")], None, 1))
            .await
            .unwrap();
        // new_length 0 deletes (the writes in the same request are moot).
        assert_eq!(
            b.write_mutable(&s, 0, mw(&[(0, b"ignored")], Some(0), 1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![1]);
        assert!(is_not_found(b.read(&s, 0, 0, 1).await));
        assert_eq!(b.mutable_write_enabler(&s, 0).await.unwrap(), None);
        // ... and on a missing share creates nothing.
        let t = si(321);
        assert_eq!(
            b.write_mutable(&t, 0, mw(&[(0, b"x")], Some(0), 1))
                .await
                .unwrap(),
            0
        );
        assert!(b.list_shares(&t).await.unwrap().is_empty());
        // The last share deleted: the storage index is gone.
        b.write_mutable(&s, 1, mw(&[], Some(0), 1)).await.unwrap();
        assert!(b.list_shares(&s).await.unwrap().is_empty());
        assert!(b.list_storage_indexes(None, 10).await.unwrap().is_empty());
        // A write without data creates an empty share with its write enabler.
        assert_eq!(b.write_mutable(&t, 2, mw(&[], None, 7)).await.unwrap(), 0);
        let listed = b.list_shares(&t).await.unwrap();
        assert_eq!(
            listed,
            vec![StoredShare {
                shnum: 2,
                kind: ShareKind::Mutable,
                size: 0,
                corrupt: None
            }]
        );
        assert_eq!(b.mutable_write_enabler(&t, 2).await.unwrap(), Some([7; 32]));
        assert!(b.read(&t, 2, 0, 10).await.unwrap().is_empty());
    }

    pub async fn mutable_boundary_sizes(b: &dyn Backend) {
        for (i, size) in [0, 1, 4095, 4096, 4097, MIB - 1, MIB, MIB + 1, 3 * MIB]
            .into_iter()
            .enumerate()
        {
            let s = si(330 + i as u64);
            let mut m = Vec::new();
            step(
                b,
                &s,
                0,
                &mut m,
                mw(&[(0, &pattern(size, i as u64))], None, 2),
            )
            .await;
            if size > 0 {
                step(b, &s, 0, &mut m, mw(&[(size / 2, b"M")], None, 2)).await;
            }
            step(b, &s, 0, &mut m, mw(&[(size, b"+")], None, 2)).await;
            step(b, &s, 0, &mut m, mw(&[(size + 4096, b"++")], None, 2)).await;
            if size / 2 > 0 {
                // (new_length 0 would delete the share: see mutable_delete_and_empty_shares)
                step(b, &s, 0, &mut m, mw(&[], Some(size / 2), 2)).await;
            }
            step(b, &s, 0, &mut m, mw(&[(size, b"end")], None, 2)).await;
        }
    }

    pub async fn kind_mismatch(b: &dyn Backend) {
        let s = si(340);
        put_immutable(b, &s, 0, b"immutable").await;
        for w in [
            mw(&[(0, b"x")], None, 1),
            mw(&[], Some(0), 1),
            mw(&[], Some(3), 1),
        ] {
            let r = b.write_mutable(&s, 0, w).await;
            assert!(matches!(r, Err(BackendError::Invalid(_))), "{r:?}");
        }
        assert!(matches!(
            b.mutable_write_enabler(&s, 0).await,
            Err(BackendError::Invalid(_))
        ));
        assert_eq!(read_all(b, &s, 0).await, b"immutable");
        assert_eq!(
            b.list_shares(&s).await.unwrap()[0].kind,
            ShareKind::Immutable
        );
    }

    pub async fn concurrent_writers(b: &dyn Backend) {
        // A few storage indexes (so shares share directories), many shares each; existing
        // shares deleted meanwhile (so directories come and go).
        let sis: Vec<StorageIndex> = (0..4).map(|i| si(400 + i)).collect();
        for s in &sis {
            put_immutable(b, s, 200, b"to be deleted").await;
        }
        type Task<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
        let mut tasks: Vec<Task<'_>> = Vec::new();
        for (i, s) in sis.iter().enumerate() {
            for n in 0..10u16 {
                let data = pattern(20_000 + u64::from(n) * 1000, i as u64 * 100 + u64::from(n));
                tasks.push(Box::pin(async move {
                    let mut up = b.start_immutable(s, n, data.len() as u64).await.unwrap();
                    // Interleaved, out-of-order chunks.
                    for start in (0..data.len()).step_by(4096).rev() {
                        let end = (start + 4096).min(data.len());
                        up.write(start as u64, Bytes::copy_from_slice(&data[start..end]))
                            .await
                            .unwrap();
                        tokio::task::yield_now().await;
                    }
                    assert_eq!(up.commit().await.unwrap(), data.len() as u64);
                }));
            }
            for n in 100..104u16 {
                tasks.push(Box::pin(async move {
                    let data = pattern(3000, u64::from(n));
                    b.write_mutable(s, n, mw(&[(0, &data)], None, 5))
                        .await
                        .unwrap();
                    b.write_mutable(s, n, mw(&[(5000, b"more")], None, 5))
                        .await
                        .unwrap();
                }));
            }
            tasks.push(Box::pin(async move {
                b.delete(s, 200).await.unwrap();
            }));
        }
        join_all(tasks).await;
        for (i, s) in sis.iter().enumerate() {
            let listed = b.list_shares(s).await.unwrap();
            let mut want: Vec<u16> = (0..10).collect();
            want.extend(100..104);
            assert_eq!(shnums(&listed), want);
            for n in 0..10u16 {
                let data = pattern(20_000 + u64::from(n) * 1000, i as u64 * 100 + u64::from(n));
                assert!(read_all(b, s, n).await == data);
            }
            for n in 100..104u16 {
                let mut want = pattern(3000, u64::from(n));
                want.resize(5000, 0);
                want.extend_from_slice(b"more");
                assert!(read_all(b, s, n).await == want);
            }
        }
    }

    pub async fn list_storage_indexes_order_and_paging(b: &dyn Backend) {
        let mut sis: Vec<StorageIndex> = (0..30).map(|i| si(500 + i)).collect();
        // Extremes and neighbours: base32 digits (2-7) sort after letters in the alphabet
        // but before them in ASCII; same two-character prefix; adjacent values.
        for bytes in [[0u8; 16], [0xff; 16], [0x80; 16], [0x07; 16], [0x08; 16]] {
            sis.push(StorageIndex(bytes));
        }
        let mut near = [0x10u8; 16];
        sis.push(StorageIndex(near));
        near[15] = 0x11;
        sis.push(StorageIndex(near));
        near[1] = 0x3f; // same first 10 bits as 0x10 0x10
        sis.push(StorageIndex(near));
        for (i, s) in sis.iter().enumerate() {
            if i % 3 == 0 {
                b.write_mutable(s, 1, mw(&[(0, b"m")], None, 1))
                    .await
                    .unwrap();
            } else {
                put_immutable(b, s, (i % 5) as u16, b"i").await;
            }
        }
        // Not listed: a storage index with only a staged upload, and one whose only share
        // was deleted.
        let staged = si(600);
        let _up = b.start_immutable(&staged, 0, 10).await.unwrap();
        let gone = si(601);
        put_immutable(b, &gone, 0, b"x").await;
        b.delete(&gone, 0).await.unwrap();

        sis.sort();
        sis.dedup();
        assert_eq!(b.list_storage_indexes(None, 1000).await.unwrap(), sis);
        assert!(b.list_storage_indexes(None, 0).await.unwrap().is_empty());
        for page in [1usize, 3, 7, 100] {
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let batch = b.list_storage_indexes(after, page).await.unwrap();
                assert!(batch.len() <= page);
                if batch.is_empty() {
                    break;
                }
                after = batch.last().copied();
                got.extend(batch);
            }
            assert_eq!(got, sis, "page size {page}");
        }
        // `after` need not be present.
        let probe = StorageIndex([0x90; 16]);
        let want: Vec<_> = sis.iter().copied().filter(|s| *s > probe).collect();
        assert_eq!(
            b.list_storage_indexes(Some(probe), 1000).await.unwrap(),
            want
        );
        assert!(
            b.list_storage_indexes(Some(StorageIndex([0xff; 16])), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn clean_incoming_after_crash(b: &dyn Backend) {
        let s = si(700);
        put_immutable(b, &s, 0, b"committed").await;
        // A crash mid-upload: the upload object is never dropped.
        let mut up = b.start_immutable(&s, 1, 100).await.unwrap();
        up.write(0, Bytes::from(vec![3u8; 100])).await.unwrap();
        std::mem::forget(up);
        let mut up = b.start_immutable(&si(701), 2, 100).await.unwrap();
        up.write(0, Bytes::from(vec![3u8; 50])).await.unwrap();
        std::mem::forget(up);
        b.clean_incoming().await.unwrap();
        assert_eq!(shnums(&b.list_shares(&s).await.unwrap()), vec![0]);
        assert_eq!(read_all(b, &s, 0).await, b"committed");
        assert_eq!(b.list_storage_indexes(None, 10).await.unwrap(), vec![s]);
        // The abandoned shares can be uploaded afresh.
        put_immutable(b, &s, 1, b"fresh").await;
        put_immutable(b, &si(701), 2, b"fresh too").await;
        assert_eq!(read_all(b, &s, 1).await, b"fresh");
        // Idempotent.
        b.clean_incoming().await.unwrap();
        assert_eq!(read_all(b, &si(701), 2).await, b"fresh too");
    }

    pub async fn available_space(b: &dyn Backend) {
        if let Some(n) = b.available_space().await.unwrap() {
            assert!(n > 0, "{}: no space reported", b.name());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Disk backend specifics.

mod disk {
    use super::common::*;
    use bytes::Bytes;
    use lafs_storage::backend::disk::DiskBackend;
    use lafs_storage::backend::{Backend, BackendError, StoredShare};
    use lafs_storage::types::{ShareKind, StorageIndex};
    use serde_json::{Value, json};
    use std::fs;
    use std::path::{Path, PathBuf};

    const MAGIC_V2: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

    fn share_path(storage: &Path, s: &StorageIndex, n: u16) -> PathBuf {
        let b32 = s.to_base32();
        storage
            .join("shares")
            .join(&b32[..2])
            .join(&b32)
            .join(n.to_string())
    }

    fn incoming_path(storage: &Path, s: &StorageIndex, n: u16) -> PathBuf {
        let b32 = s.to_base32();
        storage
            .join("shares/incoming")
            .join(&b32[..2])
            .join(&b32)
            .join(n.to_string())
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn open(storage: &Path) -> DiskBackend {
        DiskBackend::open(storage.to_path_buf()).unwrap()
    }

    #[tokio::test]
    async fn immutable_container_bytes_and_named_staging() {
        let h = make("disk.named");
        let storage = h.storage_dir.clone().unwrap();
        let b = h.b();
        let s = StorageIndex([0x42; 16]);
        let data = pattern(5000, 1);
        let mut up = b.start_immutable(&s, 3, 5000).await.unwrap();
        // Staged where stock stages, with stock's allocation header.
        let staged = incoming_path(&storage, &s, 3);
        assert_eq!(
            fs::read(&staged).unwrap(),
            [0, 0, 0, 2, 0, 0, 0x13, 0x88, 0, 0, 0, 0]
        );
        up.write(0, Bytes::from(data.clone())).await.unwrap();
        up.commit().await.unwrap();
        let file = fs::read(share_path(&storage, &s, 3)).unwrap();
        assert_eq!(&file[..12], &[0, 0, 0, 2, 0, 0, 0x13, 0x88, 0, 0, 0, 0]);
        assert_eq!(&file[12..], &data[..]);
        // Incoming cleaned up down to `incoming/` itself.
        assert!(!staged.exists());
        assert!(dir_entries(&storage.join("shares/incoming")).is_empty());

        // Written less than allocated: the file holds exactly what was written, and the
        // header says so.
        let mut up = b.start_immutable(&s, 4, 100).await.unwrap();
        assert_eq!(
            fs::read(incoming_path(&storage, &s, 4)).unwrap()[4..8],
            [0, 0, 0, 100]
        );
        up.write(
            0,
            Bytes::from_static(b"forty bytes of forty bytes of forty byte"),
        )
        .await
        .unwrap();
        assert_eq!(up.commit().await.unwrap(), 40);
        let file = fs::read(share_path(&storage, &s, 4)).unwrap();
        assert_eq!(file.len(), 52);
        assert_eq!(&file[..12], &[0, 0, 0, 2, 0, 0, 0, 40, 0, 0, 0, 0]);

        // Abort and drop remove the staged file and its directories.
        let up = b.start_immutable(&s, 5, 10).await.unwrap();
        assert!(incoming_path(&storage, &s, 5).exists());
        up.abort().await.unwrap();
        let up = b.start_immutable(&s, 6, 10).await.unwrap();
        drop(up);
        assert!(dir_entries(&storage.join("shares/incoming")).is_empty());
        assert_eq!(
            dir_entries(share_path(&storage, &s, 0).parent().unwrap()),
            ["3", "4"]
        );
    }

    #[tokio::test]
    async fn mutable_container_bytes() {
        let h = make("disk");
        let storage = h.storage_dir.clone().unwrap();
        let b = h.b();
        let s = StorageIndex([0x43; 16]);
        let mut w = mw(&[(0, b"hello")], None, 0x77);
        w.nodeid = [0x07; 20];
        assert_eq!(b.write_mutable(&s, 0, w).await.unwrap(), 5);
        let file = fs::read(share_path(&storage, &s, 0)).unwrap();
        // Exactly what stock 1.20 writes for the same share, minus its lease in slot 0.
        let mut want = MAGIC_V2.to_vec();
        want.extend([0x07; 20]);
        want.extend([0x77; 32]);
        want.extend(5u64.to_be_bytes());
        want.extend(473u64.to_be_bytes());
        want.extend([0u8; 368]);
        want.extend(b"hello");
        want.extend([0u8; 4]);
        assert_eq!(file, want);

        // Grown, then truncated: header fields follow; the extra-lease count stays after
        // the data.
        for (w, len) in [
            (mw(&[(10, b"world")], None, 0), 15u64),
            (mw(&[], Some(7), 0), 7),
        ] {
            b.write_mutable(&s, 0, w).await.unwrap();
            let file = fs::read(share_path(&storage, &s, 0)).unwrap();
            assert_eq!(&file[..32], MAGIC_V2);
            assert_eq!(&file[52..84], &[0x77; 32], "write enabler kept");
            assert_eq!(file[84..92], len.to_be_bytes());
            let elo = u64::from_be_bytes(file[92..100].try_into().unwrap());
            assert!(elo >= 468 + len);
            assert_eq!(&file[elo as usize..elo as usize + 4], &[0, 0, 0, 0]);
        }
        assert_eq!(read_all(b, &s, 0).await, b"hello\0\0");

        // The same through the in-place path.
        let inplace = open(&storage).with_mutable_rewrite_limit(0);
        inplace
            .write_mutable(&s, 0, mw(&[(9, b"!")], None, 0))
            .await
            .unwrap();
        let file = fs::read(share_path(&storage, &s, 0)).unwrap();
        assert_eq!(file[84..92], 10u64.to_be_bytes());
        let elo = u64::from_be_bytes(file[92..100].try_into().unwrap());
        assert!(elo >= 478);
        assert_eq!(&file[elo as usize..elo as usize + 4], &[0, 0, 0, 0]);
        assert_eq!(read_all(&inplace, &s, 0).await, b"hello\0\0\0\0!");
        // No temporary files left behind.
        assert!(dir_entries(&storage.join("shares/incoming/lafs-mutable-tmp")).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutable_cases_on_both_write_paths() {
        // Each case expects an empty backend.
        for name in ["disk.inplace", "disk.rewrite"] {
            println!("mutable cases on {name}");
            super::cases::mutable_create_modify_extend_truncate(make(name).b()).await;
            super::cases::mutable_boundary_sizes(make(name).b()).await;
            super::cases::mutable_delete_and_empty_shares(make(name).b()).await;
            super::cases::mutable_write_enabler_recorded_on_create_only(make(name).b()).await;
            super::cases::concurrent_writers(make(name).b()).await;
        }
    }

    #[tokio::test]
    async fn corrupt_containers_are_listed_and_fail_reads() {
        let h = make("disk");
        let storage = h.storage_dir.clone().unwrap();
        let b = h.b();
        let s = StorageIndex([0x44; 16]);
        put_immutable(b, &s, 0, b"good").await;
        let mut truncated_mutable = MAGIC_V2.to_vec();
        truncated_mutable.extend([0u8; 30]);
        let mut overlong_mutable = MAGIC_V2.to_vec();
        overlong_mutable.extend([0u8; 52]);
        overlong_mutable.extend(1000u64.to_be_bytes());
        overlong_mutable.extend(1468u64.to_be_bytes());
        overlong_mutable.extend([0u8; 400]);
        let bad: Vec<(u16, Vec<u8>, ShareKind)> = vec![
            (1, vec![], ShareKind::Immutable),
            (2, vec![0, 0, 0], ShareKind::Immutable),
            (
                3,
                vec![0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
                ShareKind::Immutable,
            ),
            (4, vec![0, 0, 0, 2, 0, 0, 0, 5, 0, 0], ShareKind::Immutable),
            (
                5,
                vec![0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 1, 2, 3],
                ShareKind::Immutable,
            ),
            (
                6,
                b"just some text that is long enough".to_vec(),
                ShareKind::Immutable,
            ),
            (7, truncated_mutable, ShareKind::Mutable),
            (8, overlong_mutable, ShareKind::Mutable),
        ];
        let dir = share_path(&storage, &s, 0).parent().unwrap().to_path_buf();
        for (n, bytes, _) in &bad {
            fs::write(dir.join(n.to_string()), bytes).unwrap();
        }
        let listed = b.list_shares(&s).await.unwrap();
        assert_eq!(listed.len(), 9);
        assert_eq!(
            listed[0],
            StoredShare {
                shnum: 0,
                kind: ShareKind::Immutable,
                size: 4,
                corrupt: None
            }
        );
        for ((n, _, kind), share) in bad.iter().zip(&listed[1..]) {
            assert_eq!((share.shnum, share.kind, share.size), (*n, *kind, 0));
            let reason = share.corrupt.as_ref().expect("corrupt");
            println!("share {n}: {reason}");
            assert!(matches!(
                b.read(&s, *n, 0, 10).await,
                Err(BackendError::Corrupt(_))
            ));
            assert!(matches!(
                b.mutable_write_enabler(&s, *n).await,
                Err(BackendError::Corrupt(_))
            ));
            assert!(matches!(
                b.write_mutable(&s, *n, mw(&[(0, b"x")], None, 1)).await,
                Err(BackendError::Corrupt(_))
            ));
            assert!(matches!(
                b.start_immutable(&s, *n, 10).await,
                Err(BackendError::AlreadyExists)
            ));
        }
        // The good share is still served; corrupt ones can be deleted.
        assert_eq!(read_all(b, &s, 0).await, b"good");
        for (n, _, _) in &bad {
            b.delete(&s, *n).await.unwrap();
        }
        assert_eq!(b.list_shares(&s).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn every_prefix_directory_exists_once_opened_and_listing_ignores_empty_ones() {
        let h = make("disk");
        let storage = h.storage_dir.clone().unwrap();
        let shares = storage.join("shares");
        let names: Vec<String> = dir_entries(&shares);
        assert_eq!(names.len(), 1024 + 1, "1024 prefixes and incoming");
        for n in 0..200u64 {
            let s = si(n + 5000);
            assert!(shares.join(s.prefix()).is_dir(), "{}", s.prefix());
        }
        assert!(
            h.b()
                .list_storage_indexes(None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Opening again changes nothing, and stored shares list as before.
        let again = DiskBackend::open(storage.clone()).unwrap();
        put_immutable(&again, &si(5), 0, b"x").await;
        assert_eq!(dir_entries(&shares).len(), 1024 + 1);
        assert_eq!(
            again.list_storage_indexes(None, 10).await.unwrap(),
            vec![si(5)]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn weird_names_are_ignored_and_never_followed() {
        use std::os::unix::fs::symlink;
        let h = make("disk");
        let storage = h.storage_dir.clone().unwrap();
        let b = h.b();
        let shares = storage.join("shares");
        let good = StorageIndex([0x45; 16]);
        put_immutable(b, &good, 2, b"real").await;
        let good_dir = share_path(&storage, &good, 2)
            .parent()
            .unwrap()
            .to_path_buf();

        // Outside the storage directory: a valid-looking tree and a share file.
        let outside = h
            .storage_dir
            .as_ref()
            .unwrap()
            .parent()
            .unwrap()
            .join("outside");
        let victim = StorageIndex([0x46; 16]);
        let v32 = victim.to_base32();
        fs::create_dir_all(outside.join(&v32[..2]).join(&v32)).unwrap();
        fs::write(
            outside.join(&v32[..2]).join(&v32).join("0"),
            [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, b's'],
        )
        .unwrap();
        fs::write(
            outside.join("share"),
            [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, b's'],
        )
        .unwrap();

        // Junk at the prefix level.
        for d in ["AB", "a", "a1", "abc", "..."] {
            fs::create_dir_all(shares.join(d)).unwrap();
        }
        // The backend made every (empty) prefix directory when it opened: replace two.
        fs::remove_dir(shares.join("ab")).unwrap();
        fs::remove_dir(shares.join(&v32[..2])).unwrap();
        fs::write(shares.join("ab"), b"a file where a prefix dir would be").unwrap();
        symlink(outside.join(&v32[..2]), shares.join(&v32[..2])).unwrap();
        // Junk at the storage-index level, under the good prefix.
        let prefix = good_dir.parent().unwrap();
        fs::create_dir_all(prefix.join("hello")).unwrap();
        fs::create_dir_all(prefix.join(good.to_base32().to_uppercase())).unwrap();
        let wrong_prefix = StorageIndex([0x00; 16]).to_base32();
        fs::create_dir_all(prefix.join(&wrong_prefix)).unwrap();
        fs::write(prefix.join(&wrong_prefix).join("0"), b"misplaced").unwrap();
        let linked = StorageIndex([0x45, 0x45, 0x45, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(linked.prefix(), good.prefix());
        symlink(
            outside.join(&v32[..2]).join(&v32),
            prefix.join(linked.to_base32()),
        )
        .unwrap();
        // Junk at the share level.
        for f in ["...", "01", "-1", "+1", " 1", "1.tmp", "99999", "share"] {
            fs::write(good_dir.join(f), [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        }
        fs::create_dir_all(good_dir.join("5")).unwrap();
        symlink(outside.join("share"), good_dir.join("6")).unwrap();

        assert_eq!(b.list_storage_indexes(None, 100).await.unwrap(), vec![good]);
        assert_eq!(
            b.list_shares(&good)
                .await
                .unwrap()
                .iter()
                .map(|s| s.shnum)
                .collect::<Vec<_>>(),
            vec![2]
        );
        for n in [5, 6] {
            assert!(matches!(
                b.read(&good, n, 0, 10).await,
                Err(BackendError::NotFound)
            ));
            assert_eq!(b.mutable_write_enabler(&good, n).await.unwrap(), None);
        }
        assert!(b.list_shares(&victim).await.unwrap().is_empty());
        assert!(b.list_shares(&linked).await.unwrap().is_empty());
        assert!(matches!(
            b.read(&linked, 0, 0, 10).await,
            Err(BackendError::NotFound)
        ));
        assert!(matches!(
            b.read(&victim, 0, 0, 10).await,
            Err(BackendError::NotFound)
        ));
        assert!(
            b.list_shares(&StorageIndex([0; 16]))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(read_all(b, &good, 2).await, b"real");
        // Deleting through a symlinked name removes the link, never its target.
        b.delete(&good, 6).await.unwrap();
        assert!(outside.join("share").exists());
    }

    /// Unnamed staging (the default where the filesystem has `O_TMPFILE`): an upload in
    /// progress has no name anywhere, the committed file is stock's container with one link,
    /// and an upload that ends without commit leaves nothing behind.
    #[tokio::test]
    async fn unnamed_staging_leaves_no_names() {
        let h = make("disk");
        let storage = h.storage_dir.clone().unwrap();
        let b = h.b();
        let s = StorageIndex([0x48; 16]);
        let incoming = storage.join("shares/incoming");
        let mut up = b.start_immutable(&s, 3, 5000).await.unwrap();
        let staged_debug = format!("{up:?}");
        assert!(staged_debug.contains("Unnamed"), "{staged_debug}");
        up.write(0, Bytes::from(pattern(3000, 2))).await.unwrap();
        assert!(
            dir_entries(&incoming).is_empty(),
            "{:?}",
            dir_entries(&incoming)
        );
        assert!(!share_path(&storage, &s, 3).parent().unwrap().exists());
        assert_eq!(up.commit().await.unwrap(), 3000);
        let path = share_path(&storage, &s, 3);
        let file = fs::read(&path).unwrap();
        // Stock's header, with the size set to what was written.
        assert_eq!(&file[..12], &[0, 0, 0, 2, 0, 0, 0x0b, 0xb8, 0, 0, 0, 0]);
        assert!(file[12..] == pattern(3000, 2)[..]);
        {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(&path).unwrap().nlink(), 1);
        }
        // Abort, drop and a "crash" (never dropped) leave no file and no name; afterwards the
        // share can be uploaded afresh.
        let up = b.start_immutable(&s, 4, 10).await.unwrap();
        up.abort().await.unwrap();
        drop(b.start_immutable(&s, 5, 10).await.unwrap());
        let mut up = b.start_immutable(&s, 6, 10).await.unwrap();
        up.write(0, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        std::mem::forget(up);
        assert!(dir_entries(&incoming).is_empty());
        assert_eq!(
            dir_entries(path.parent().unwrap()),
            ["3"],
            "only the committed share has a name"
        );
        b.clean_incoming().await.unwrap();
        for n in 4..=6 {
            put_immutable(b, &s, n, b"fresh").await;
        }
        assert_eq!(dir_entries(path.parent().unwrap()), ["3", "4", "5", "6"]);
    }

    #[tokio::test]
    async fn shares_survive_reopen_and_clean_incoming_empties_incoming() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        let s = StorageIndex([0x47; 16]);
        {
            let b = open(&storage).with_named_staging();
            put_immutable(&b, &s, 0, b"persisted").await;
            b.write_mutable(&s, 1, mw(&[(0, b"mutable")], None, 9))
                .await
                .unwrap();
            let mut up = b.start_immutable(&s, 2, 100).await.unwrap();
            up.write(0, Bytes::from(vec![1u8; 100])).await.unwrap();
            std::mem::forget(up); // crash
        }
        assert!(incoming_path(&storage, &s, 2).exists());
        let b = open(&storage);
        // Not visible even before the cleanup.
        assert_eq!(b.list_shares(&s).await.unwrap().len(), 2);
        b.clean_incoming().await.unwrap();
        assert!(dir_entries(&storage.join("shares/incoming")).is_empty());
        assert_eq!(read_all(&b, &s, 0).await, b"persisted");
        assert_eq!(read_all(&b, &s, 1).await, b"mutable");
        assert_eq!(b.mutable_write_enabler(&s, 1).await.unwrap(), Some([9; 32]));
        let space = b.available_space().await.unwrap().unwrap();
        assert!(space > 0);
    }

    /// One share of a manifest exchanged with `stock_shares.py`.
    #[derive(Clone, Debug)]
    struct Spec {
        si: StorageIndex,
        shnum: u16,
        mutable: bool,
        data: Vec<u8>,
        write_enabler: Option<[u8; 32]>,
    }

    fn parse_manifest(m: &Value) -> Vec<Spec> {
        m["shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Spec {
                si: StorageIndex::from_base32(e["si"].as_str().unwrap()).unwrap(),
                shnum: e["shnum"].as_u64().unwrap() as u16,
                mutable: e["kind"] == "mutable",
                data: hex::decode(e["data"].as_str().unwrap()).unwrap(),
                write_enabler: e["write_enabler"]
                    .as_str()
                    .map(|h| hex::decode(h).unwrap().try_into().unwrap()),
            })
            .collect()
    }

    /// A manifest of lafs-written (version 2) shares for `stock_shares.py check`.
    fn manifest(shares: &[Spec], leases: u64, stock_modify: bool) -> Value {
        json!({
            "nodeid": hex::encode([0x07; 20]),
            "shares": shares.iter().map(|sp| json!({
                "si": sp.si.to_base32(),
                "shnum": sp.shnum,
                "kind": if sp.mutable { "mutable" } else { "immutable" },
                "version": 2,
                "data": hex::encode(&sp.data),
                "write_enabler": sp.write_enabler.map(hex::encode),
                "leases": leases,
                "stock_modify": stock_modify,
            })).collect::<Vec<_>>(),
        })
    }

    fn stock_check(storage: &Path, manifest: &Value) {
        let path = storage.parent().unwrap().join("manifest.json");
        fs::write(&path, serde_json::to_vec(manifest).unwrap()).unwrap();
        let out = run_stock(&["check".as_ref(), storage.as_os_str(), path.as_os_str()]);
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"ok": true})
        );
    }

    /// Shares written by stock's own classes (with leases, v1 and v2 containers, a partially
    /// written immutable share, a truncated mutable one) are listed and read exactly; lafs
    /// modifies the mutable ones (both write paths) and stock reads the result, leases and
    /// container versions intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stock_written_shares_are_read_and_modified_by_lafs() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        let out = run_stock(&["make".as_ref(), storage.as_os_str()]);
        let mut manifest: Value = serde_json::from_str(&out).unwrap();
        let b = open(&storage);
        let specs = parse_manifest(&manifest);
        assert_eq!(specs.len(), 8);
        for sp in &specs {
            let (s, n) = (&sp.si, sp.shnum);
            let listed = b.list_shares(s).await.unwrap();
            let share = listed.iter().find(|x| x.shnum == n).expect("listed");
            let kind = if sp.mutable {
                ShareKind::Mutable
            } else {
                ShareKind::Immutable
            };
            assert_eq!(
                (share.kind, share.size, &share.corrupt),
                (kind, sp.data.len() as u64, &None),
                "{s:?}/{n}"
            );
            assert!(read_all(&b, s, n).await == sp.data, "{s:?}/{n}: contents");
            let past = b.read(s, n, sp.data.len() as u64, 1000).await.unwrap();
            assert!(past.is_empty(), "{s:?}/{n}: leases leaked past the end");
            match sp.write_enabler {
                Some(we) => assert_eq!(b.mutable_write_enabler(s, n).await.unwrap(), Some(we)),
                None => assert!(matches!(
                    b.mutable_write_enabler(s, n).await,
                    Err(BackendError::Invalid(_))
                )),
            }
        }
        let mut want_sis: Vec<_> = specs.iter().map(|sp| sp.si).collect();
        want_sis.sort();
        want_sis.dedup();
        assert_eq!(b.list_storage_indexes(None, 100).await.unwrap(), want_sis);

        // lafs modifies the mutable shares: in place past the extra-lease block (share 0),
        // rewritten (share 1 and the v1 share 9), truncated in place (share 2).
        let inplace = open(&storage).with_mutable_rewrite_limit(0);
        let rewrite = open(&storage).with_mutable_rewrite_limit(u64::MAX);
        let entries = manifest["shares"].as_array_mut().unwrap();
        for (e, sp) in entries.iter_mut().zip(&specs) {
            if !sp.mutable {
                continue;
            }
            let mut m = sp.data.clone();
            let w = match sp.shnum {
                2 => mw(&[], Some(300), 0),
                _ => mw(
                    &[(0, b"lafs"), (m.len() as u64 + 7, b"grown by lafs")],
                    None,
                    0,
                ),
            };
            model_apply(&mut m, &w);
            let backend = if sp.shnum == 0 || sp.shnum == 2 {
                &inplace
            } else {
                &rewrite
            };
            let len = backend.write_mutable(&sp.si, sp.shnum, w).await.unwrap();
            assert_eq!(len, m.len() as u64);
            assert!(read_all(&b, &sp.si, sp.shnum).await == m);
            e["data"] = json!(hex::encode(&m));
        }
        stock_check(&storage, &manifest);
    }

    /// Shares written by lafs are read exactly by stock's classes; stock then adds leases and
    /// grows the mutable ones; lafs reads the result (leases ignored), grows them again in
    /// place (moving stock's extra-lease block), and stock still reads them, leases intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lafs_written_shares_are_read_and_modified_by_stock() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        let b = open(&storage);
        let mut shares = Vec::new();
        for (i, size) in [0u64, 1, 1000, 70_000].into_iter().enumerate() {
            let s = StorageIndex([0x50 + i as u8; 16]);
            let data = pattern(size, i as u64);
            put_immutable(&b, &s, i as u16, &data).await;
            shares.push(Spec {
                si: s,
                shnum: i as u16,
                mutable: false,
                data,
                write_enabler: None,
            });
        }
        for (i, (size, truncate)) in [(0u64, None), (5, None), (2000, None), (3000, Some(1200))]
            .into_iter()
            .enumerate()
        {
            let s = StorageIndex([0x60 + i as u8; 16]);
            let mut data = pattern(size, 10 + i as u64);
            let mut w = mw(&[(0, &data)], None, 0x30 + i as u8);
            w.nodeid = [0x07; 20];
            b.write_mutable(&s, 0, w).await.unwrap();
            if let Some(n) = truncate {
                b.write_mutable(&s, 0, mw(&[], Some(n), 0)).await.unwrap();
                data.truncate(n as usize);
            }
            shares.push(Spec {
                si: s,
                shnum: 0,
                mutable: true,
                data,
                write_enabler: Some([0x30 + i as u8; 32]),
            });
        }
        // Stock reads them (no leases), then adds five leases to each and grows the mutable
        // ones by a 10-byte hole and b"stock".
        stock_check(&storage, &manifest(&shares, 0, true));
        for sp in &mut shares {
            if sp.mutable {
                sp.data.extend([0u8; 10]);
                sp.data.extend(b"stock");
            }
            let listed = b.list_shares(&sp.si).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].size, sp.data.len() as u64, "{sp:?}: size");
            let got = read_all(&b, &sp.si, sp.shnum).await;
            assert!(got == sp.data, "{:?}: contents with leases", sp.si);
        }
        // lafs grows the mutable shares again, in place, past stock's extra-lease block.
        let inplace = open(&storage).with_mutable_rewrite_limit(0);
        for sp in shares.iter_mut().filter(|sp| sp.mutable) {
            let w = mw(&[(sp.data.len() as u64 + 3, b"lafs again")], None, 0);
            model_apply(&mut sp.data, &w);
            inplace.write_mutable(&sp.si, sp.shnum, w).await.unwrap();
            assert!(read_all(&b, &sp.si, sp.shnum).await == sp.data);
        }
        // Five leases each (stock's own write renewed one of them).
        stock_check(&storage, &manifest(&shares, 5, false));
    }
}

// ---------------------------------------------------------------------------------------
// Memory backend specifics.

mod memory {
    use super::common::*;
    use bytes::Bytes;
    use lafs_storage::backend::memory::MemoryBackend;
    use lafs_storage::backend::{Backend, BackendError};
    use lafs_storage::types::StorageIndex;

    #[tokio::test]
    async fn capacity_limit_simulates_a_full_disk() {
        let b = MemoryBackend::with_capacity_limit(10_000);
        let s = StorageIndex([1; 16]);
        assert_eq!(b.available_space().await.unwrap(), Some(10_000));
        put_immutable(&b, &s, 0, &pattern(6000, 1)).await;
        assert_eq!(b.available_space().await.unwrap(), Some(4000));
        let mut up = b.start_immutable(&s, 1, 5000).await.unwrap();
        up.write(0, Bytes::from(vec![1u8; 3000])).await.unwrap();
        assert_eq!(b.available_space().await.unwrap(), Some(1000));
        assert!(matches!(
            up.write(3000, Bytes::from(vec![1u8; 2000])).await,
            Err(BackendError::NoSpace)
        ));
        up.abort().await.unwrap();
        assert_eq!(b.available_space().await.unwrap(), Some(4000));
        assert!(matches!(
            b.write_mutable(&s, 2, mw(&[(0, &[1u8; 5000])], None, 1))
                .await,
            Err(BackendError::NoSpace)
        ));
        assert!(b.list_shares(&s).await.unwrap().len() == 1);
        b.write_mutable(&s, 2, mw(&[(0, &[1u8; 3000])], None, 1))
            .await
            .unwrap();
        assert_eq!(b.available_space().await.unwrap(), Some(1000));
        b.write_mutable(&s, 2, mw(&[], Some(1000), 1))
            .await
            .unwrap();
        assert_eq!(b.available_space().await.unwrap(), Some(3000));
        b.delete(&s, 0).await.unwrap();
        b.delete(&s, 2).await.unwrap();
        assert_eq!(b.available_space().await.unwrap(), Some(10_000));
        assert_eq!(MemoryBackend::new().available_space().await.unwrap(), None);
    }

    #[tokio::test]
    async fn marked_corrupt_shares_are_listed_and_fail_reads() {
        let b = MemoryBackend::new();
        let s = StorageIndex([2; 16]);
        put_immutable(&b, &s, 0, b"data").await;
        assert!(b.mark_corrupt(&s, 0, "bit rot"));
        assert!(!b.mark_corrupt(&s, 1, "missing"));
        let listed = b.list_shares(&s).await.unwrap();
        assert_eq!(listed[0].corrupt.as_deref(), Some("bit rot"));
        assert!(matches!(
            b.read(&s, 0, 0, 1).await,
            Err(BackendError::Corrupt(_))
        ));
    }
}
