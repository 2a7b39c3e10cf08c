//! Writing parts whose pages carry CRC-32s, as the Parquet format defines them (`PageHeader.crc`,
//! the CRC-32 of the page's bytes after compression), so that any Parquet reader that checks
//! them — parquet-rs with its `crc` feature (ours), Arrow C++, Spark — refuses a damaged page
//! instead of decoding it.
//!
//! parquet-rs encodes the page headers itself and leaves `crc` empty. Its Arrow column writers
//! hand each page to a [`PageStore`] as two blobs, the encoded header and then the page's
//! bytes; [`CrcPages`] is such a store that, when the bytes arrive, puts their CRC into the
//! header it holds (a Thrift compact field inserted after field 3, a handful of bytes). What
//! the writer recorded of the chunk's layout — page offsets and sizes in the offset index,
//! the chunk's total sizes — is then moved by the bytes each header grew ([`account`]) before
//! the chunk is spliced into the file. Column chunks are written without dictionaries (see
//! `part::writer_properties`); a dictionary page is refused.

use std::fs::File;
use std::sync::{Arc, Mutex};

use crate::IngestError;
use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::column::page_store::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// Thrift compact type of an `i32` field.
const I32: u8 = 5;
/// `PageType::DICTIONARY_PAGE`.
const DICTIONARY_PAGE: i32 = 2;

type Growth = Arc<Mutex<Vec<u32>>>;

/// A Parquet writer of sample batches, one row group per [`write`](Self::write), every page
/// with its CRC.
pub(super) struct PartWriter {
    file: SerializedFileWriter<File>,
    columns: ArrowRowGroupWriterFactory,
    pages: Arc<CrcPages>,
}

impl PartWriter {
    /// A writer of `file` with `props` (the Arrow schema goes into the footer, as
    /// `ArrowWriter` puts it).
    pub(super) fn new(file: File, props: WriterProperties) -> Result<Self, IngestError> {
        let (file, columns) =
            ArrowWriter::try_new(file, aiops_models::sample_schema(), Some(props))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(IngestError::codec("parquet"))?;
        let pages = Arc::new(CrcPages::default());
        let columns = columns.with_page_store_factory(pages.clone());
        Ok(Self {
            file,
            columns,
            pages,
        })
    }

    /// Writes `batch` as the next row group.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), IngestError> {
        self.write_group(batch)
            .map_err(IngestError::codec("parquet write"))
    }

    fn write_group(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        let index = self.file.flushed_row_groups().len();
        let mut writers = self.columns.create_column_writers(index)?;
        let growths = self.pages.take(writers.len())?;
        let schema = batch.schema();
        for ((writer, field), column) in
            writers.iter_mut().zip(schema.fields()).zip(batch.columns())
        {
            for leaf in compute_leaves(field, column)? {
                writer.write(&leaf)?;
            }
        }
        let mut group = self.file.next_row_group()?;
        for (writer, growth) in writers.into_iter().zip(growths) {
            let mut chunk = writer.close()?;
            let growth = std::mem::take(&mut *growth.lock().expect("not poisoned"));
            account(chunk.close_mut(), &growth)?;
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        Ok(())
    }

    /// Writes the footer and hands back the file (not yet synced).
    pub(super) fn finish(self) -> Result<File, IngestError> {
        self.file
            .into_inner()
            .map_err(IngestError::codec("parquet close"))
    }
}

/// The [`PageStoreFactory`] of a part's column writers: a [`CrcStore`] per column chunk, and
/// for each the bytes its pages' headers grew, collected by [`take`](Self::take).
#[derive(Debug, Default)]
struct CrcPages {
    growths: Mutex<Vec<(usize, Growth)>>,
}

impl CrcPages {
    /// The growth logs of the `columns` stores created since the last call, in column order.
    fn take(&self, columns: usize) -> parquet::errors::Result<Vec<Growth>> {
        let mut made = std::mem::take(&mut *self.growths.lock().expect("not poisoned"));
        made.sort_by_key(|(column, _)| *column);
        if made.len() != columns || made.iter().enumerate().any(|(i, (c, _))| *c != i) {
            return Err(ParquetError::General(format!(
                "expected a page store for each of {columns} columns, got {}",
                made.len()
            )));
        }
        Ok(made.into_iter().map(|(_, g)| g).collect())
    }
}

impl PageStoreFactory for CrcPages {
    fn create(&self, args: &PageStoreArgs<'_>) -> parquet::errors::Result<Box<dyn PageStore>> {
        let growth = Growth::default();
        self.growths
            .lock()
            .expect("not poisoned")
            .push((args.column_index(), growth.clone()));
        Ok(Box::new(CrcStore {
            blobs: Vec::new(),
            resident: 0,
            header: None,
            growth,
        }))
    }
}

/// Holds one column chunk's blobs in memory, as parquet's own store does, writing each page's
/// CRC into its header when the page's bytes arrive.
struct CrcStore {
    blobs: Vec<Bytes>,
    resident: usize,
    /// The header waiting for its page's bytes.
    header: Option<usize>,
    /// Bytes each page's header grew, in page order.
    growth: Growth,
}

impl PageStore for CrcStore {
    fn put(&mut self, value: Bytes) -> parquet::errors::Result<PageKey> {
        if let Some(h) = self.header.take() {
            let with_crc = with_crc(&self.blobs[h], crc32fast::hash(&value))?;
            let grew = with_crc.len() - self.blobs[h].len();
            self.growth.lock().expect("not poisoned").push(grew as u32);
            self.resident += grew;
            self.blobs[h] = with_crc;
        } else {
            self.header = Some(self.blobs.len());
        }
        self.resident += value.len();
        self.blobs.push(value);
        Ok(PageKey::new(self.blobs.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> parquet::errors::Result<Bytes> {
        let blob = self
            .blobs
            .get_mut(key.get() as usize)
            .map(std::mem::take)
            .ok_or_else(|| ParquetError::General(format!("no page blob {}", key.get())))?;
        self.resident -= blob.len();
        Ok(blob)
    }

    fn memory_size(&self) -> usize {
        self.resident
    }
}

fn bad_header(what: &str) -> ParquetError {
    ParquetError::General(format!("unexpected page header encoding: {what}"))
}

/// Reads a ULEB128 varint at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> parquet::errors::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or_else(|| bad_header("cut short"))?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad_header("varint too long"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `header` (a Thrift compact `PageHeader` as parquet-rs writes it: fields 1–3 — type,
/// uncompressed and compressed size — in short form, then the page-type header) with field 4,
/// `crc`, set to `crc`. The field after it keeps its id: its delta shrinks by one.
fn with_crc(header: &[u8], crc: u32) -> parquet::errors::Result<Bytes> {
    let mut at = 0;
    let mut page_type = 0;
    for field in 1..=3 {
        if header.get(at) != Some(&(0x10 | I32)) {
            return Err(bad_header(&format!(
                "field {field} is not a short-form i32"
            )));
        }
        at += 1;
        let v = varint(header, &mut at)?;
        if field == 1 {
            page_type = ((v >> 1) as i64 ^ -((v & 1) as i64)) as i32;
        }
    }
    if page_type == DICTIONARY_PAGE {
        return Err(bad_header("dictionary pages are not written by parts"));
    }
    let next = *header.get(at).ok_or_else(|| bad_header("cut short"))?;
    if next == 0x10 | I32 {
        return Err(bad_header("the crc is already set"));
    }
    let mut out = Vec::with_capacity(header.len() + 6);
    out.extend_from_slice(&header[..at]);
    out.push(0x10 | I32);
    let crc = crc as i32;
    put_varint(&mut out, u64::from(((crc << 1) ^ (crc >> 31)) as u32));
    // Short form `delta << 4 | type` with delta ≥ 2 (the next field is 5, 7 or 8); 0 is the stop
    // byte (no page-type header) and a zero delta is the long form with an absolute id.
    if next >> 4 >= 2 {
        out.push(next - 0x10);
    } else if next >> 4 == 1 {
        return Err(bad_header("field 4 of another type"));
    } else {
        out.push(next);
    }
    out.extend_from_slice(&header[at + 1..]);
    Ok(Bytes::from(out))
}

/// Moves what the column writer recorded of its chunk by the bytes each page header grew:
/// the offset index's page offsets and sizes, and the chunk's total sizes.
fn account(close: &mut ColumnCloseResult, growth: &[u32]) -> parquet::errors::Result<()> {
    let total: i64 = growth.iter().map(|&g| i64::from(g)).sum();
    if let Some(index) = close.offset_index.as_mut() {
        if index.page_locations.len() != growth.len() {
            return Err(ParquetError::General(format!(
                "{} pages in the offset index, {} written",
                index.page_locations.len(),
                growth.len()
            )));
        }
        let mut shift = 0i64;
        for (page, &g) in index.page_locations.iter_mut().zip(growth) {
            page.offset += shift;
            page.compressed_page_size += g as i32;
            shift += i64::from(g);
        }
    }
    let meta = &close.metadata;
    let (compressed, uncompressed) = (meta.compressed_size(), meta.uncompressed_size());
    close.metadata = meta
        .clone()
        .into_builder()
        .set_total_compressed_size(compressed + total)
        .set_total_uncompressed_size(uncompressed + total)
        .build()?;
    close.bytes_written += total as u64;
    Ok(())
}

#[cfg(test)]
mod tests;
