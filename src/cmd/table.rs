//! Tables: aligned columns when stdout is a terminal, tab-separated lines otherwise (no header),
//! so scripts can `cut -f`. JSON is each command's own.

use std::io::IsTerminal;

/// Render rows under `head`. Cells must not contain tabs or newlines (callers escape names).
pub fn render(head: &[&str], rows: &[Vec<String>]) -> String {
    render_for(std::io::stdout().is_terminal(), head, rows)
}

/// [`render`] with the terminal decision made by the caller (tests).
pub fn render_for(terminal: bool, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if !terminal {
        for r in rows {
            out.push_str(&r.join("\t"));
            out.push('\n');
        }
        return out;
    }
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (k, c) in r.iter().enumerate() {
            if k < w.len() {
                w[k] = w[k].max(c.chars().count());
            }
        }
    }
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{c:<width$}", width = w[k]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_tables_align_and_pipes_get_tsv() {
        let rows = vec![
            vec!["a".to_string(), "1".to_string()],
            vec!["long".to_string(), "22".to_string()],
        ];
        assert_eq!(
            render_for(true, &["NAME", "N"], &rows),
            "NAME  N\na     1\nlong  22\n"
        );
        assert_eq!(render_for(false, &["NAME", "N"], &rows), "a\t1\nlong\t22\n");
    }
}
