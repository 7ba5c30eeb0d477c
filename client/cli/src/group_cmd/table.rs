//! Plain-text tables: one header line, then rows, columns padded to their
//! widest cell and separated by two spaces.

/// Renders `rows` under `headers`. Every line ends in a newline and has no
/// trailing spaces.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_line(&mut out, &widths, headers.iter().copied());
    for row in rows {
        push_line(&mut out, &widths, row.iter().map(String::as_str));
    }
    out
}

fn push_line<'a>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let start = out.len();
    for (i, (cell, width)) in cells.zip(widths).enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count());
        out.extend(std::iter::repeat_n(' ', pad));
    }
    let trimmed = out[start..].trim_end().len();
    out.truncate(start + trimmed);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn columns_align_to_the_widest_cell() {
        let text = render(
            &["TOPIC", "PARTITION", "LAG"],
            &[row(&["orders", "0", "12"]), row(&["o", "10", "-"])],
        );
        assert_eq!(
            text,
            "TOPIC   PARTITION  LAG\n\
             orders  0          12\n\
             o       10         -\n"
        );
    }

    #[test]
    fn no_rows_still_prints_headers_and_no_trailing_spaces() {
        assert_eq!(render(&["A", "B"], &[]), "A  B\n");
        assert_eq!(render(&["A", "B"], &[row(&["x", ""])]), "A  B\nx\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let text = render(&["N", "V"], &[row(&["é", "1"])]);
        assert_eq!(text, "N  V\né  1\n");
    }
}
