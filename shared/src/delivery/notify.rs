//! Telling people a destination is broken: the [`Mailer`] port and the failure email.
//!
//! The email is written for the person who can fix the bucket or container, not for us:
//! the subject says where and what is missing, the body shows every probe's result, which
//! hours are waiting and how often they were tried, who was refused, and the policy
//! statement to paste. Text and HTML carry the same facts.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::access::policy::PolicyFix;
use crate::error::{ExportError, Result};
use crate::hour::UtcHour;
use crate::model::email::Email;
use crate::model::probe_report::{ProbeOutcome, ProbeReport};
use crate::ports::{Mailer, SendOutcome};

/// An hour that is not exported because of the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedHour {
    pub hour: UtcHour,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last error, as reported (never contains a secret: errors are redacted at the source).
    pub error: String,
}

/// Everything the failure email says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    pub connection_id: String,
    pub project_id: String,
    pub recipients: Vec<String>,
    pub report: ProbeReport,
    pub failing_hours: Vec<FailedHour>,
    /// The permission the failing run itself was refused, when the error named one
    /// (the probes may not reproduce every refusal, e.g. a Deny on one prefix).
    pub run_missing_permission: Option<String>,
    /// The identity that was refused (from the run's error, else the probe report).
    pub principal: Option<String>,
    pub fixes: Vec<PolicyFix>,
}

impl FailureNotice {
    /// Missing permissions: the probes' failures, plus the run's own when the probes did
    /// not name it, without repeats.
    pub fn missing(&self) -> Vec<String> {
        let mut out = self.report.missing();
        if let Some(p) = &self.run_missing_permission {
            if !out.contains(p) {
                out.insert(0, p.clone());
            }
        }
        out
    }

    fn principal(&self) -> Option<&str> {
        self.principal.as_deref().or(self.report.principal.as_deref())
    }
}

/// Builds the failure email.
pub fn compose_failure_email(n: &FailureNotice) -> Email {
    let missing = n.missing();
    let what = if missing.is_empty() { "access refused".to_string() } else { format!("missing {}", missing.join(", ")) };
    let subject = format!("Event export to {} is failing: {what}", n.report.destination);

    let mut text = String::new();
    let _ = writeln!(text, "The hourly event export of project {} (connection {}) cannot write to", n.project_id, n.connection_id);
    let _ = writeln!(text, "{}.", n.report.destination);
    let _ = writeln!(text);
    if !missing.is_empty() {
        let _ = writeln!(text, "Missing permission(s): {}", missing.join(", "));
    }
    if let Some(p) = n.principal() {
        let _ = writeln!(text, "Refused principal:     {p}");
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Access checks just run against the destination:");
    let _ = writeln!(text);
    text.push_str(&n.report.table());
    let _ = writeln!(text);
    let _ = writeln!(text, "Hours not exported yet ({}):", n.failing_hours.len());
    for h in &n.failing_hours {
        let _ = writeln!(text, "  {}  after {} attempt(s): {}", h.hour, h.attempts, h.error);
    }
    let _ = writeln!(text);
    for fix in &n.fixes {
        let _ = writeln!(text, "{}:", fix.title);
        let _ = writeln!(text);
        let _ = writeln!(text, "{}", fix.statement);
        let _ = writeln!(text);
    }
    let _ = writeln!(text, "Once access is granted the next run exports these hours; no other action is needed.");
    let _ = writeln!(text, "You receive this once per failure, not once per hour.");

    let mut html = String::new();
    let _ = write!(html, "<html><body>");
    let _ = write!(
        html,
        "<p>The hourly event export of project <b>{}</b> (connection <code>{}</code>) cannot write to <code>{}</code>.</p>",
        esc(&n.project_id),
        esc(&n.connection_id),
        esc(&n.report.destination)
    );
    let _ = write!(html, "<ul>");
    if !missing.is_empty() {
        let perms: Vec<String> = missing.iter().map(|m| format!("<code>{}</code>", esc(m))).collect();
        let _ = write!(html, "<li>Missing permission(s): {}</li>", perms.join(", "));
    }
    if let Some(p) = n.principal() {
        let _ = write!(html, "<li>Refused principal: <code>{}</code></li>", esc(p));
    }
    let _ = write!(html, "</ul>");
    let _ =
        write!(html, "<h3>Access checks</h3><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\"><tr><th>Check</th><th>Permission</th><th>Result</th></tr>");
    for r in &n.report.results {
        let result = match &r.outcome {
            ProbeOutcome::Pass => "pass".to_string(),
            ProbeOutcome::Fail { cause, detail } => format!("<b>FAIL</b> {}: {}", esc(cause), esc(detail)),
            ProbeOutcome::Skipped { reason } => format!("skipped ({})", esc(reason)),
        };
        let _ = write!(html, "<tr><td>{}</td><td><code>{}</code></td><td>{result}</td></tr>", esc(&r.check), esc(&r.permission));
    }
    let _ = write!(html, "</table>");
    let _ = write!(html, "<h3>Hours not exported yet ({})</h3><ul>", n.failing_hours.len());
    for h in &n.failing_hours {
        let _ = write!(html, "<li>{} after {} attempt(s): {}</li>", esc(&h.hour.to_string()), h.attempts, esc(&h.error));
    }
    let _ = write!(html, "</ul>");
    for fix in &n.fixes {
        let _ = write!(html, "<h3>{}</h3><pre>{}</pre>", esc(&fix.title), esc(&fix.statement));
    }
    let _ = write!(
        html,
        "<p>Once access is granted the next run exports these hours; no other action is needed. You receive this once per failure, not once per hour.</p></body></html>"
    );

    Email { to: n.recipients.clone(), subject, text, html }
}

/// The failure notice as one Slack-compatible text (incoming webhooks take
/// `{"text": ...}` with `*bold*` and code blocks): what fails, which permission is missing,
/// who was refused, the hours waiting and the statement that fixes it.
pub fn compose_failure_text(n: &FailureNotice) -> String {
    let missing = n.missing();
    let mut text = String::new();
    let what = if missing.is_empty() { "access refused".to_string() } else { format!("missing `{}`", missing.join("`, `")) };
    let _ = writeln!(text, ":warning: *Event export to {} is failing: {what}*", n.report.destination);
    let _ = writeln!(text, "The hourly event export of project {} (connection `{}`) cannot write to {}.", n.project_id, n.connection_id, n.report.destination);
    if !missing.is_empty() {
        let _ = writeln!(text, "*Missing permission(s):* {}", missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "));
    }
    if let Some(p) = n.principal() {
        let _ = writeln!(text, "*Refused principal:* `{p}`");
    }
    let failed: Vec<String> =
        n.report.results.iter().filter(|r| matches!(r.outcome, ProbeOutcome::Fail { .. })).map(|r| format!("{} (`{}`)", r.check, r.permission)).collect();
    if !failed.is_empty() {
        let _ = writeln!(text, "*Failed checks:* {}", failed.join(", "));
    }
    if let Some(first) = n.failing_hours.first() {
        let _ = writeln!(text, "*Hours not exported yet:* {} (oldest {} after {} attempt(s))", n.failing_hours.len(), first.hour, first.attempts);
    }
    if n.fixes.is_empty() {
        let _ = writeln!(text, "*What to do:* grant the missing permission(s) on the destination to the refused principal.");
    }
    for fix in &n.fixes {
        let _ = writeln!(text, "*What to do: {}*", fix.title);
        let _ = writeln!(text, "```\n{}\n```", fix.statement.trim_end());
    }
    let _ = writeln!(text, "Once access is granted the next run exports these hours; no other action is needed. The admins got the same notice by email.");
    text
}

/// A recipient the mail service would not send to, and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecipient {
    pub address: String,
    pub reason: String,
}

/// One message the mail service accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCopy {
    pub message_id: String,
    pub to: Vec<String>,
}

/// Who got an email and who was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub sent: Vec<SentCopy>,
    pub refused: Vec<RefusedRecipient>,
}

impl Delivery {
    /// Whether at least one recipient got the email.
    pub fn reached_anyone(&self) -> bool {
        !self.sent.is_empty()
    }

    /// The recipients that got it.
    pub fn reached(&self) -> Vec<String> {
        self.sent.iter().flat_map(|c| c.to.iter().cloned()).collect()
    }

    /// The message id, or the ids (comma-separated) when it went out one recipient at a time.
    pub fn message_ids(&self) -> String {
        self.sent.iter().map(|c| c.message_id.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// `a@x (reason); b@y (reason)`, for logs and errors.
    pub fn refused_summary(&self) -> String {
        self.refused.iter().map(|r| format!("{} ({})", r.address, r.reason)).collect::<Vec<_>>().join("; ")
    }
}

/// Sends `email` so that every recipient the mail service will send to gets it: one
/// message to all first; if the service refuses that message as addressed (SES rejects the
/// whole message for one malformed or, in the sandbox, unverified recipient), one message
/// per recipient, each recipient seeing only its own address. `Err` only when nothing was
/// sent because the service could not be reached (or the email has no recipient): the
/// caller tries again later, as before. A delivery that reached nobody is `Ok`, with
/// every recipient in `refused`: the caller decides (see [`Delivery::reached_anyone`]).
pub async fn deliver(mailer: &dyn Mailer, email: &Email) -> Result<Delivery> {
    if email.to.is_empty() {
        return Err(ExportError::invalid_config("recipients", "the connection has no admin or creator email", "Add admins to the connection."));
    }
    let reason = match mailer.send(email).await? {
        SendOutcome::Accepted { message_id } => return Ok(Delivery { sent: vec![SentCopy { message_id, to: email.to.clone() }], refused: Vec::new() }),
        SendOutcome::Refused { reason } => reason,
    };
    if let [only] = email.to.as_slice() {
        return Ok(Delivery { sent: Vec::new(), refused: vec![RefusedRecipient { address: only.clone(), reason }] });
    }
    tracing::warn!(recipients = email.to.len(), reason = %reason, "the failure email was refused as addressed; sending it to each recipient alone");
    let mut delivery = Delivery::default();
    for address in &email.to {
        let single = Email { to: vec![address.clone()], ..email.clone() };
        match mailer.send(&single).await {
            Ok(SendOutcome::Accepted { message_id }) => delivery.sent.push(SentCopy { message_id, to: single.to }),
            Ok(SendOutcome::Refused { reason }) => delivery.refused.push(RefusedRecipient { address: address.clone(), reason }),
            // Nobody has it yet: fail as a whole, so the caller's retry sends to everyone
            // once (no one gets it twice).
            Err(e) if !delivery.reached_anyone() => return Err(e),
            // Some already have it: a retry would send them a second copy. This one is
            // reported as not reached instead.
            Err(e) => delivery.refused.push(RefusedRecipient { address: address.clone(), reason: format!("not sent: {e}") }),
        }
    }
    Ok(delivery)
}

/// Minimal HTML escaping for text placed in element content.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::probe_report::ProbeResult;
    use crate::ExportError;

    fn notice() -> FailureNotice {
        let denied = ExportError::PermissionDenied {
            operation: "PutObject".into(),
            resource: "dest/exports/probe".into(),
            permission: "s3:PutObject".into(),
            principal: Some("arn:aws:iam::123456789012:role/export-187520".into()),
            detail: "AccessDenied".into(),
        };
        FailureNotice {
            connection_id: "c1".into(),
            project_id: "187520".into(),
            recipients: vec!["admin@example.com".into(), "creator@example.com".into()],
            report: ProbeReport {
                destination: "s3://dest/exports".into(),
                principal: Some("arn:aws:iam::123456789012:role/export-187520".into()),
                results: vec![
                    ProbeResult::pass("list under prefix", "s3:ListBucket"),
                    ProbeResult::fail("put probe object", "s3:PutObject", &denied),
                    ProbeResult::skipped("read probe back", "s3:GetObject", "nothing was written"),
                ],
            },
            failing_hours: vec![FailedHour { hour: UtcHour::parse("2020-01-25T17").unwrap(), attempts: 5, error: "permission denied <x>".into() }],
            run_missing_permission: Some("s3:PutObject".into()),
            principal: None,
            fixes: vec![PolicyFix {
                title: "Add this statement to the bucket policy of dest".into(),
                statement: "{\"Effect\": \"Allow\", \"Action\": [\"s3:PutObject\"]}".into(),
            }],
        }
    }

    #[test]
    fn subject_names_destination_and_permission() {
        let e = compose_failure_email(&notice());
        assert_eq!(e.subject, "Event export to s3://dest/exports is failing: missing s3:PutObject");
        assert_eq!(e.to, vec!["admin@example.com", "creator@example.com"]);
    }

    #[test]
    fn bodies_carry_probes_hours_principal_and_fix() {
        let e = compose_failure_email(&notice());
        for body in [&e.text, &e.html] {
            assert!(body.contains("s3:ListBucket"), "{body}");
            assert!(body.contains("put probe object"));
            assert!(body.contains("2020-01-25T17"));
            assert!(body.contains("5 attempt(s)"));
            assert!(body.contains("arn:aws:iam::123456789012:role/export-187520"));
            assert!(body.contains("Add this statement to the bucket policy of dest"));
        }
        assert!(e.text.contains("{\"Effect\": \"Allow\""));
        assert!(e.html.contains("{&quot;Effect&quot;: &quot;Allow&quot;"), "html escapes the statement");
        assert!(e.html.contains("permission denied &lt;x&gt;"));
    }

    #[test]
    fn run_permission_is_named_even_when_probes_pass() {
        let mut n = notice();
        n.report.results = vec![ProbeResult::pass("put probe object", "s3:PutObject")];
        n.run_missing_permission = Some("s3:DeleteObject".into());
        assert_eq!(n.missing(), vec!["s3:DeleteObject".to_string()]);
        assert!(compose_failure_email(&n).subject.ends_with("missing s3:DeleteObject"));
    }

    /// Like SES: refuses a whole message naming a `refuse` address; fails (unreachable)
    /// for a message naming a `fail` address.
    #[derive(Debug, Default)]
    struct Service {
        refuse: Vec<&'static str>,
        fail: Vec<&'static str>,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Mailer for Service {
        async fn send(&self, e: &Email) -> Result<SendOutcome> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(e.to.clone());
            if let Some(bad) = e.to.iter().find(|a| self.refuse.contains(&a.as_str())) {
                return Ok(SendOutcome::Refused { reason: format!("InvalidParameterValue: Illegal address {bad}") });
            }
            if e.to.iter().any(|a| self.fail.contains(&a.as_str())) {
                return Err(ExportError::transient("ses:SendEmail", "throttled"));
            }
            Ok(SendOutcome::Accepted { message_id: format!("id{}", calls.len()) })
        }
    }

    fn email(to: &[&str]) -> Email {
        Email { to: to.iter().map(|s| s.to_string()).collect(), subject: "s".into(), text: "t".into(), html: "h".into() }
    }

    #[tokio::test]
    async fn one_message_to_all_when_nobody_is_refused() {
        let svc = Service::default();
        let d = deliver(&svc, &email(&["a@x.com", "b@x.com"])).await.unwrap();
        assert_eq!(d.sent, vec![SentCopy { message_id: "id1".into(), to: vec!["a@x.com".into(), "b@x.com".into()] }]);
        assert!(d.refused.is_empty());
        assert_eq!(svc.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_recipient_is_reported_and_the_others_get_it_alone() {
        let svc = Service { refuse: vec!["bad@x.com"], ..Default::default() };
        let d = deliver(&svc, &email(&["a@x.com", "bad@x.com", "b@x.com"])).await.unwrap();
        assert!(d.reached_anyone());
        assert_eq!(d.reached(), vec!["a@x.com", "b@x.com"]);
        assert_eq!(d.message_ids(), "id2, id4");
        assert_eq!(d.refused, vec![RefusedRecipient { address: "bad@x.com".into(), reason: "InvalidParameterValue: Illegal address bad@x.com".into() }]);
        assert_eq!(d.refused_summary(), "bad@x.com (InvalidParameterValue: Illegal address bad@x.com)");
        let calls = svc.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 4, "one to all, then one each: {calls:?}");
        assert!(calls[1..].iter().all(|to| to.len() == 1), "each copy names only its recipient");
    }

    #[tokio::test]
    async fn refused_for_everyone_reaches_nobody_and_no_recipients_is_an_error() {
        let svc = Service { refuse: vec!["a@x.com", "b@x.com"], ..Default::default() };
        let d = deliver(&svc, &email(&["a@x.com", "b@x.com"])).await.unwrap();
        assert!(!d.reached_anyone());
        assert_eq!(d.refused.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["a@x.com", "b@x.com"]);
        let single = deliver(&svc, &email(&["a@x.com"])).await.unwrap();
        assert_eq!(single.refused.len(), 1, "a lone recipient is not sent to twice");
        assert!(deliver(&svc, &email(&[])).await.unwrap_err().to_string().contains("no admin or creator email"));
    }

    #[tokio::test]
    async fn an_unreachable_service_fails_unless_someone_already_has_the_email() {
        // Before anyone has it: an error, so the caller's retry sends to all once.
        let svc = Service { refuse: vec!["bad@x.com"], fail: vec!["a@x.com"], ..Default::default() };
        let e = deliver(&svc, &email(&["a@x.com", "bad@x.com"])).await.unwrap_err();
        assert_eq!(e.kind(), "Transient");
        // After someone has it: reported as not reached (a retry would mail the others twice).
        let svc = Service { refuse: vec!["bad@x.com"], fail: vec!["c@x.com"], ..Default::default() };
        let d = deliver(&svc, &email(&["a@x.com", "bad@x.com", "c@x.com"])).await.unwrap();
        assert_eq!(d.reached(), vec!["a@x.com"]);
        assert_eq!(d.refused.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["bad@x.com", "c@x.com"]);
        assert!(d.refused[1].reason.starts_with("not sent: transient failure"), "{:?}", d.refused);
    }
}
