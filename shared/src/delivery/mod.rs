//! How hours get run and what happens when they fail: the functions' events
//! (scheduled hour, retry, backfill), the retry plan on EventBridge Scheduler, the failure
//! handler that decides between retrying and emailing, the email itself (and its
//! Slack-style twin for a failure webhook), and the backfill fan-out. It drives the control
//! layer through [`crate::control::run_api`].

pub mod backfill;
pub mod failure;
pub mod invocation;
pub mod notify;
pub mod retry;
