//! CPU time of the process under test, from `/proc/PID/stat`: utime + stime
//! (fields 14 and 15, all threads), in clock ticks converted with
//! `sysconf(_SC_CLK_TCK)`.

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 if it fails).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("{path}: unexpected format"))
}

/// Fields after `comm` (which may hold spaces and parentheses) start at the
/// last `)`: state is field 3, utime 14, stime 15.
fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_stat(line), Some(325));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_ticks(std::process::id()).is_ok());
        assert!(clk_tck() > 0);
    }
}
