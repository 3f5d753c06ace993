//! A text table with columns padded to their widest cell.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(headers: [(&str, Align); N]) -> Table {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank and extra cells dropped.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        let mut cells = Vec::from(cells);
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Widths in characters, not bytes, so non-ASCII paths line up.
    fn widths(&self) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn write_line(
        &self,
        f: &mut fmt::Formatter<'_>,
        cells: &[String],
        widths: &[usize],
    ) -> fmt::Result {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width - cell.chars().count();
            match self.headers[i].1 {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        writeln!(f, "{}", line.trim_end())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        let headers: Vec<String> = self.headers.iter().map(|(h, _)| h.to_uppercase()).collect();
        self.write_line(f, &headers, &widths)?;
        for row in &self.rows {
            self.write_line(f, row, &widths)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new([("name", Align::Left), ("size", Align::Right)]);
        t.row(["é.txt".to_owned(), "1 B".to_owned()]);
        t.row(["long-name".to_owned(), "10 KiB".to_owned()]);
        assert_eq!(
            t.to_string(),
            "NAME         SIZE\né.txt         1 B\nlong-name  10 KiB\n"
        );
    }
}
