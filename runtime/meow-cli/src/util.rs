//! Small helpers shared by the subcommands: logging, durations, error lines, private files.

use std::time::Duration;

use anyhow::{Context, bail};

/// Logs to stderr; `RUST_LOG` overrides the level chosen by -v / -q.
pub fn init_logging(verbose: u8, quiet: bool, chatty: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) if chatty => "info",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},fjall=warn,lsm_tree=warn")));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    // Every repeated line is cut to a few per interval, with a count of what was held back.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(meow_runtime::log::RateLimitLayer::default())
        .with(fmt)
        .try_init();
}

/// An error and its causes on one line: `outer: inner: root`.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Parses `90s`, `15m`, `24h`, `14d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    meow_yaml::duration(text).map_err(anyhow::Error::msg)
}

/// Parses a point in time for `--at`: RFC 3339 (`2026-12-02T08:30:00+01:00`), or local time
/// `YYYY-MM-DD HH:MM[:SS]` (a `T` between them works too); Unix milliseconds out.
pub fn parse_time_ms(text: &str) -> Result<u64, String> {
    use chrono::{DateTime, Local, NaiveDateTime};
    let t = text.trim();
    let at = if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        t.timestamp_millis()
    } else {
        let naive = [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(|| format!("{t:?} is not a time: write 2026-12-02 08:30, 2026-12-02 08:30:15 or RFC 3339"))?;
        naive
            .and_local_timezone(Local)
            .earliest()
            .ok_or_else(|| format!("{t:?} does not exist in the local time zone (a clock change)"))?
            .timestamp_millis()
    };
    u64::try_from(at).map_err(|_| format!("{t:?} is before 1970"))
}

/// Waits for SIGINT or SIGTERM.
pub fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use async_signal::{Signal, Signals};
    use futures_lite::StreamExt;
    let mut signals = Signals::new([Signal::Int, Signal::Term]).context("installing signal handlers")?;
    smol::block_on(async {
        let _ = signals.next().await;
    });
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The home directory: --home, MEOW_HOME, else ~/.meow.
pub fn home_dir(home: Option<&std::path::Path>) -> std::path::PathBuf {
    match home {
        Some(h) => h.to_owned(),
        None => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".meow"),
    }
}

/// The password: MEOW_PASSWORD, else the --password-file, else a prompt (twice when creating).
pub fn password(file: Option<&std::path::Path>, creating: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    match saved_secret("MEOW_PASSWORD", file)? {
        Some(p) => Ok(p),
        None => prompt_secret("password: ", "MEOW_PASSWORD", "--password-file", creating),
    }
}

/// The password a revocation key derives from: MEOW_REVOCATION_PASSWORD, else a prompt.
pub fn revocation_password() -> anyhow::Result<zeroize::Zeroizing<String>> {
    match saved_secret("MEOW_REVOCATION_PASSWORD", None)? {
        Some(p) => Ok(p),
        None => Ok(zeroize::Zeroizing::new(
            rpassword::prompt_password("the home's password when its second device was linked: ")
                .context("no revocation password: set MEOW_REVOCATION_PASSWORD, or run in a terminal")?,
        )),
    }
}

/// A compartment's password given without a prompt: MEOW_COMPARTMENT_PASSWORD, else the
/// --compartment-password-file.
pub fn saved_compartment_password(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    saved_secret("MEOW_COMPARTMENT_PASSWORD", file)
}

/// A compartment's password: saved, else a prompt (twice when making a new compartment).
pub fn compartment_password(
    file: Option<&std::path::Path>,
    creating: bool,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    match saved_compartment_password(file)? {
        Some(p) => Ok(p),
        None => prompt_secret(
            "compartment password: ",
            "MEOW_COMPARTMENT_PASSWORD",
            "--compartment-password-file",
            creating,
        ),
    }
}

/// A secret from the environment variable `var`, else from `file`.
fn saved_secret(var: &str, file: Option<&std::path::Path>) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Some(zeroize::Zeroizing::new(p)));
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading password file {}", f.display()))?;
        return Ok(Some(zeroize::Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )));
    }
    Ok(None)
}

/// A secret typed at a prompt (twice when `creating`).
fn prompt_secret(label: &str, var: &str, flag: &str, creating: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password(label)
            .with_context(|| format!("no password: set {var}, pass {flag} FILE, or run in a terminal"))?,
    );
    if creating {
        let again = zeroize::Zeroizing::new(rpassword::prompt_password("again: ")?);
        if *first != *again {
            bail!("the passwords differ");
        }
        if first.is_empty() {
            bail!("the password is empty");
        }
    }
    Ok(first)
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::format_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
