//! What `export` and `tick` say about the hours they ran, in words: one line per hour on
//! stdout when it was exported or skipped (and why), on stderr when it failed (with what
//! happens next), so a terminal shows errors and a script reading stdout gets the hours.
//! `--json` prints the responses instead (see docs/CLI.md for their shape).

use exporter::delivery::failure::{AfterFailure, HourResult};
use exporter::delivery::invocation::HourlyResponse;

/// Tables and notes fit this many columns.
pub const WIDTH: usize = 100;

/// A line of one hour's result, and whether it is an error (stderr).
pub struct Said {
    pub text: String,
    pub error: bool,
}

/// Every line `response` says, in order: the hours run, runs found dead, and a deferral.
pub fn hourly(response: &HourlyResponse) -> Vec<Said> {
    let id = &response.connection_id;
    let mut out = Vec::new();
    if let Some(d) = &response.deferred {
        out.push(Said {
            text: format!(
                "{id}: deferred: the destination still fails its probe ({}); {} owed hour(s) wait for it and nothing was exported \
                 (`exportctl verify {id}` lists what is missing)",
                d.still_failing.join("; "),
                d.hours_waiting
            ),
            error: true,
        });
    }
    for stopped in &response.stopped {
        out.push(Said {
            text: format!("{id} {}: a run found dead on this hour was counted as a failed attempt{}", stopped.request.hour, next_step(stopped)),
            error: true,
        });
    }
    if response.hours.is_empty() && response.deferred.is_none() {
        out.push(Said { text: format!("{id}: nothing due (no owed hour is settled yet)"), error: false });
    }
    for h in &response.hours {
        out.push(hour(id, h));
    }
    out
}

fn hour(id: &str, h: &HourResult) -> Said {
    let head = format!("{id} {} {}", h.request.hour, h.request.mode);
    let attempt = if h.request.attempt > 1 { format!(" (attempt {})", h.request.attempt) } else { String::new() };
    match &h.exported {
        Some(s) if s.skipped => Said {
            text: format!(
                "{head}: skipped: already complete (its _complete marker is there); to export it again: \
                 exportctl export {id} --hour {} --mode replace",
                h.request.hour
            ),
            error: false,
        },
        Some(s) => {
            let late = if s.late_parts > 0 { format!(" in {} late part(s)", s.late_parts) } else { String::new() };
            Said { text: format!("{head}{attempt}: exported {} events{late}", s.events_exported), error: false }
        }
        None if h.left_alone() => Said { text: format!("{head}: left to another run{}", next_step(h)), error: false },
        None => {
            let kind = h.error_kind.as_deref().unwrap_or("Error");
            let error = h.error.as_deref().unwrap_or("no detail recorded");
            Said { text: format!("{head}{attempt}: failed ({kind}): {error}{}", next_step(h)), error: true }
        }
    }
}

/// What happens to a failed hour next, as a clause.
fn next_step(h: &HourResult) -> String {
    match &h.after_failure {
        Some(AfterFailure::RetryScheduled { at, attempt, .. }) => format!("; attempt {attempt} is scheduled at {}", rfc(*at)),
        Some(AfterFailure::NotRetryable) => "; not retried: fix the cause above, then export the hour again".into(),
        Some(AfterFailure::GaveUp { accessibility, email }) => {
            let mail = match (accessibility, email) {
                (true, Some(_)) => "; the admins and the creator were emailed",
                (true, None) => "; the admins were already emailed for this outage",
                (false, _) => "",
            };
            format!("; retries are over: the hour stays owed and every hourly run tries it again{mail}")
        }
        Some(AfterFailure::LeftToOtherRun) => ": another run holds the hour's lease and finishes it".into(),
        Some(AfterFailure::HandedOff { at, .. }) => format!(": not started (short of time), a one-time schedule runs it at {}", rfc(*at)),
        None => String::new(),
    }
}

/// A time as the CLI prints it: RFC 3339, whole seconds, `Z`.
pub fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `text` broken at spaces into lines of at most `WIDTH` columns (a longer word stays
/// whole), the first indented by `first`, the rest by `rest`.
pub fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `items` joined with `, `, broken only between items into lines of at most `WIDTH`
/// columns where they fit, the first line starting with `first`, the rest with `rest`.
pub fn wrap_items(items: &[String], first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        let piece = if last { item.clone() } else { format!("{item},") };
        let empty = line == first || line == rest;
        if !empty && line.chars().count() + 1 + piece.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
        } else if !empty {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_in_order_within_the_width() {
        let text = "LATE: 48 hour(s) past the freshness SLO of 1h00m (oldest 2020-01-26T00, due 2020-01-26T01:00, 48h20m overdue); \
                    no scheduled run has taken hours since it was created — is the connection's hourly schedule there? run: exportctl connections enable c1";
        let wrapped = wrap(text, "  ", "    ");
        assert!(wrapped.lines().count() > 1);
        assert!(wrapped.lines().all(|l| l.chars().count() <= WIDTH), "{wrapped}");
        let rejoined: Vec<&str> = wrapped.split_whitespace().collect();
        assert_eq!(rejoined.join(" "), text);
        assert_eq!(wrap("short", "", ""), "short\n");
        let items: Vec<String> = (0..30).map(|i| format!("2020-01-25T{:02} failing (3 attempts)", i % 24)).collect();
        let wrapped = wrap_items(&items, "  owed: ", "    ");
        assert!(wrapped.lines().all(|l| l.chars().count() <= WIDTH), "{wrapped}");
        assert_eq!(wrapped.split_whitespace().collect::<Vec<_>>().join(" "), format!("owed: {}", items.join(", ")));
        assert!(wrapped.lines().all(|l| !l.ends_with("failing")), "an item is never cut: {wrapped}");
    }
}
