use std::fs;

use aiops_models::{SampleBatchBuilder, SeriesId};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

use super::super::part::{self, ROW_GROUP_ROWS};
use super::*;

/// Field 3 (compressed size) and field 4 (crc) of a page header as parquet-rs writes it, with
/// the header's length — read without parquet's decoder.
fn header_fields(bytes: &[u8]) -> (i64, Option<u32>, usize) {
    let mut at = 0;
    let mut id = 0u8;
    let (mut compressed, mut crc) = (0, None);
    loop {
        let b = bytes[at];
        at += 1;
        if b == 0 {
            break;
        }
        id += b >> 4;
        assert_ne!(b >> 4, 0, "parquet-rs writes short-form field headers");
        if b & 0x0f != I32 {
            // The page-type header (a struct): skip to the end of the page header, which is
            // found from the sizes instead.
            return (compressed, crc, usize::MAX);
        }
        let v = varint(bytes, &mut at).expect("varint");
        let v = ((v >> 1) as i64) ^ -((v & 1) as i64);
        match id {
            3 => compressed = v,
            4 => crc = Some(v as i32 as u32),
            _ => {}
        }
    }
    (compressed, crc, at)
}

fn samples(n: usize) -> aiops_models::SampleBatch {
    let mut b = SampleBatchBuilder::with_capacity(n);
    for i in 0..n {
        // Many series, awkward values: pages of every size, CRCs with the top bit set.
        let id = SeriesId((i % 97) as u64);
        b.push(id, (i / 97) as i64 * 15_000, (i as f64).sin() * 1e6);
    }
    b.finish()
}

#[test]
fn every_page_of_a_part_carries_the_crc_of_its_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.parquet");
    let n = ROW_GROUP_ROWS + 50_000;
    let info = part::write_part(1, &path, &[samples(n)]).expect("writes");
    assert_eq!(info.rows, n as u64);
    let bytes = fs::read(&path).expect("reads");
    let meta = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
        .expect("footer and page indexes");
    let (mut pages, mut top_bit) = (0, 0);
    for (g, group) in meta.row_groups().iter().enumerate() {
        let offsets = meta.page_index_for_row_group(g);
        for (c, column) in group.columns().iter().enumerate() {
            let locations = &offsets
                .offset_index(c)
                .expect("offset index")
                .page_locations;
            let (start, len) = column.byte_range();
            assert_eq!(
                locations
                    .iter()
                    .map(|p| p.compressed_page_size as u64)
                    .sum::<u64>(),
                len,
                "the chunk's size is its pages' sizes"
            );
            assert_eq!(locations[0].offset as u64, start);
            for p in locations {
                let page =
                    &bytes[p.offset as usize..(p.offset + p.compressed_page_size as i64) as usize];
                let (compressed, crc, _) = header_fields(page);
                let body = &page[page.len() - compressed as usize..];
                let crc = crc.expect("every page header has a crc");
                assert_eq!(crc, crc32fast::hash(body), "row group {g} column {c}");
                pages += 1;
                top_bit += usize::from(crc >> 31 == 1);
            }
        }
    }
    assert!(pages >= 2 * 3, "{pages} pages");
    assert!(top_bit > 0, "a crc with the top bit set was exercised");
    // And the part reads back whole through parquet's own reader, which checks them.
    let rows: usize =
        ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).expect("open"))
            .expect("reader")
            .build()
            .expect("reader")
            .map(|b| b.expect("every page passes its crc").num_rows())
            .sum();
    assert_eq!(rows, n);
}

#[test]
fn parquets_own_reader_refuses_a_page_whose_bytes_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.parquet");
    part::write_part(1, &path, &[samples(30_000)]).expect("writes");
    let good = fs::read(&path).expect("reads");
    let meta = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(&bytes::Bytes::from(good.clone()))
        .expect("footer");
    // The last byte of every column's first page: inside the page's compressed bytes.
    let offsets = meta.page_index_for_row_group(0);
    for c in 0..meta.row_group(0).num_columns() {
        let p = &offsets
            .offset_index(c)
            .expect("offset index")
            .page_locations[0];
        let mut bad = good.clone();
        bad[(p.offset + p.compressed_page_size as i64 - 1) as usize] ^= 0x20;
        let bad_path = dir.path().join("bad.parquet");
        fs::write(&bad_path, &bad).expect("writes");
        let read: Result<Vec<_>, _> =
            ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&bad_path).expect("open"))
                .expect("the footer is intact")
                .build()
                .expect("reader")
                .collect();
        let err = read.expect_err("a damaged page is refused").to_string();
        assert!(err.contains("CRC"), "{err}");
    }
}

#[test]
fn the_crc_goes_in_as_field_four_and_the_next_field_keeps_its_id() {
    // type 0 (data page), sizes 4 and 4, then field 5 (a struct holding one i32 field, 3).
    let header = [
        0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2c, 0x15, 0x06, 0x00, 0x00,
    ];
    for crc in [0u32, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX] {
        let out = with_crc(&header, crc).expect("inserts");
        let (compressed, got, _) = header_fields(&out);
        assert_eq!((compressed, got), (4, Some(crc)));
        // Field 4's header and varint, then the struct's header with delta 1 (4 → 5).
        let at = 6 + 1 + {
            let mut at = 7;
            varint(&out, &mut at).expect("varint");
            at - 7
        };
        assert_eq!(out[at], 0x1c);
        assert_eq!(&out[at + 1..], &header[7..]);
    }
    // A dictionary page, a header that has one already, and a cut header are refused.
    assert!(with_crc(&[0x15, 0x04, 0x15, 0x08, 0x15, 0x08, 0x4c, 0x00, 0x00], 1).is_err());
    assert!(with_crc(&[0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x15, 0x02, 0x00], 1).is_err());
    assert!(with_crc(&[0x15, 0x00, 0x15], 1).is_err());
}
