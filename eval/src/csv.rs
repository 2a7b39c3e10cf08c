//! The one CSV reader of the evaluations — NAB series and results files, fault cases'
//! `data.csv` and `graph.csv` — on the `csv` crate, so quoted fields and CRLF line ends read
//! as CSV means them; and the one walk that lists a folder's CSV files.

use std::path::{Path, PathBuf};

use crate::EvalError;

/// A CSV file read whole: its header and rows, cells trimmed; errors name the file and the line.
#[derive(Debug)]
pub struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
    /// Each row's line in the file (the header is line 1).
    lines: Vec<u64>,
}

impl Table {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read(path).map_err(EvalError::io(path))?;
        Self::parse(path, &text)
    }

    /// Parses `text`; `path` names it in errors. Blank lines are skipped; rows may be shorter or
    /// longer than the header (a missing cell is an error only when it is asked for).
    pub fn parse(path: &Path, text: &[u8]) -> Result<Self, EvalError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text);
        let header = reader
            .headers()
            .map_err(|e| EvalError::bad(path, e))?
            .iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if header.iter().all(String::is_empty) {
            return Err(EvalError::bad(path, "empty file"));
        }
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        let (mut counted_to, mut newlines) = (0usize, 0u64);
        for record in reader.into_records() {
            let record = record.map_err(|e| EvalError::bad(path, e))?;
            if record.iter().all(str::is_empty) {
                continue;
            }
            // The reader's own line count skips blank lines; its byte offset points at the
            // line ends before the record, so count the newlines up to its first character.
            let mut start = record.position().map_or(0, |p| p.byte() as usize);
            while text.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                start += 1;
            }
            let start = start.min(text.len()).max(counted_to);
            newlines += text[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = start;
            rows.push(record);
            lines.push(newlines + 1);
        }
        Ok(Self {
            path: path.to_owned(),
            header,
            rows,
            lines,
        })
    }

    /// The column names.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The index of column `name`, or an error naming it.
    pub fn column(&self, name: &str) -> Result<usize, EvalError> {
        self.header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| EvalError::bad(&self.path, format!("no {name} column")))
    }

    /// Data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is no data row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, each with its line number in the file (the header is line 1).
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows
            .iter()
            .zip(&self.lines)
            .map(move |(r, &line)| Row {
                table: self,
                record: r,
                line,
            })
    }
}

/// One data row of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    table: &'a Table,
    record: &'a csv::StringRecord,
    line: u64,
}

impl<'a> Row<'a> {
    /// The row's line in the file.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Cells in the row.
    pub fn len(&self) -> usize {
        self.record.len()
    }

    /// True when the row has no cell.
    pub fn is_empty(&self) -> bool {
        self.record.is_empty()
    }

    /// Cell `col` (trimmed), or an error naming the line and the column.
    pub fn cell(&self, col: usize) -> Result<&'a str, EvalError> {
        self.record.get(col).ok_or_else(|| {
            let name = self.table.header.get(col).map_or("", String::as_str);
            self.error(format!("missing column {} ({name})", col + 1))
        })
    }

    /// Cell `col` as a number; `what` names it in the error.
    pub fn number<T: std::str::FromStr>(&self, col: usize, what: &str) -> Result<T, EvalError> {
        let cell = self.cell(col)?;
        cell.parse()
            .map_err(|_| self.error(format!("bad {what} {cell:?}")))
    }

    /// An error about this row.
    pub fn error(&self, reason: impl std::fmt::Display) -> EvalError {
        EvalError::bad(&self.table.path, format!("row {}: {reason}", self.line()))
    }
}

/// Every `.csv` file under `path` (any depth), sorted, or `path` itself when it is a file.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, EvalError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(EvalError::io(&d))? {
            let p = e.map_err(EvalError::io(&d))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_crlf_read_as_csv_means_them() {
        let t = Table::parse(
            Path::new("x.csv"),
            b"timestamp,value,note\r\n2020-01-01 00:00:00,1.5,\"a, b\"\r\n\r\n2020-01-01 00:05:00, 2 ,c\r\n",
        )
        .expect("parse");
        assert_eq!(t.len(), 2);
        let rows: Vec<_> = t.rows().collect();
        assert_eq!(rows[0].cell(2).expect("note"), "a, b");
        assert_eq!(rows[1].number::<f64>(1, "value").expect("value"), 2.0);
        assert_eq!(rows[1].line(), 4);
    }

    #[test]
    fn errors_name_the_file_the_row_and_the_column() {
        let t = Table::parse(Path::new("d.csv"), b"time,a\n1,x\n2\n").expect("parse");
        let rows: Vec<_> = t.rows().collect();
        let e = rows[0]
            .number::<f64>(1, "value")
            .expect_err("an error")
            .to_string();
        assert!(
            e.contains("d.csv") && e.contains("row 2") && e.contains("\"x\""),
            "{e}"
        );
        let e = rows[1].cell(1).expect_err("an error").to_string();
        assert!(
            e.contains("row 3") && e.contains("missing column 2 (a)"),
            "{e}"
        );
        let e = t.column("value").expect_err("an error").to_string();
        assert!(e.contains("no value column"), "{e}");
        assert!(Table::parse(Path::new("e.csv"), b"").is_err());
    }

    #[test]
    fn files_lists_csvs_at_any_depth_sorted() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("b/c")).expect("mkdir");
        for f in ["b/c/z.csv", "a.csv", "b/readme.md"] {
            std::fs::write(dir.path().join(f), "x\n").expect("write");
        }
        let got = files(dir.path()).expect("list");
        let names: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(dir.path()).expect("under").to_owned())
            .collect();
        assert_eq!(names, [PathBuf::from("a.csv"), PathBuf::from("b/c/z.csv")]);
        assert_eq!(files(&dir.path().join("a.csv")).expect("one"), got[..1]);
    }
}
