//! User names checked, and CSV cells made safe (names of nodes, meters and sites are `names`').

use super::error::{Error, Result};

/// Checks a user name (the scheduler's): 1 to 200 printable characters without spaces.
pub(crate) fn check_user_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            "must be 1 to 200 characters without spaces",
        ))
    }
}

/// One CSV cell: quoted where needed, and defused where a spreadsheet would read a formula.
pub(crate) fn csv_cell(s: &str) -> String {
    // Spreadsheets skip leading blanks before reading a formula: `  =cmd` is one too.
    let defused = if s.starts_with(['\t', '\r'])
        || s.trim_start_matches([' ', '\t', '\r', '\n', '\u{a0}'])
            .starts_with(['=', '+', '-', '@'])
    {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod csv_tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_defused_behind_blanks_too() {
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("  =HYPERLINK(1)"), "'  =HYPERLINK(1)");
        assert_eq!(csv_cell("\n@SUM(A1)"), "\"'\n@SUM(A1)\"");
        assert_eq!(csv_cell("a - b"), "a - b");
    }
}
