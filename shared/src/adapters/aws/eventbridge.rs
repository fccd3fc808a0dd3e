//! Amazon EventBridge: "Hour Exported" events on the stack's bus (`EXPORT_EVENT_BUS_NAME`),
//! source `event-export`, detail-type `Hour Exported`, the event as `detail`. PutEvents
//! answers 200 even when it refused the entry, so `FailedEntryCount` is checked.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use crate::adapters::aws::service_errors::classify;
use crate::error::{ExportError, Result};
use crate::model::hour_event::{HourExported, EVENT_SOURCE, HOUR_EXPORTED};
use crate::ports::HourEventSink;

/// PutEvents takes at most 256 KiB per entry (source, detail-type and detail together):
/// a larger event goes without its part list (the marker has it).
pub const MAX_DETAIL_BYTES: usize = 240 * 1024;

/// Entry error codes worth another attempt.
const TRANSIENT_ENTRY_ERRORS: [&str; 3] = ["ThrottlingException", "InternalFailure", "InternalException"];

#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: Client,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        EventBridgeSink { client, bus: bus.into() }
    }
}

#[async_trait]
impl HourEventSink for EventBridgeSink {
    fn describe(&self) -> String {
        format!("EventBridge bus {}", self.bus)
    }

    async fn publish(&self, event: &HourExported) -> Result<()> {
        let detail = String::from_utf8(event.within(MAX_DETAIL_BYTES)?.to_json()).expect("JSON is UTF-8");
        let entry = PutEventsRequestEntry::builder().event_bus_name(&self.bus).source(EVENT_SOURCE).detail_type(HOUR_EXPORTED).detail(detail).build();
        let resource = format!("event bus {}", self.bus);
        let out = self.client.put_events().entries(entry).send().await.map_err(|e| classify("events:PutEvents", &resource, e))?;
        if out.failed_entry_count() == 0 {
            return Ok(());
        }
        let (code, message) = out.entries().first().map(|e| (e.error_code().unwrap_or(""), e.error_message().unwrap_or(""))).unwrap_or(("", ""));
        let detail = format!("{resource} refused event {}: {code} {message}", event.id).trim_end().to_string();
        if TRANSIENT_ENTRY_ERRORS.contains(&code) {
            return Err(ExportError::transient("events:PutEvents", detail));
        }
        Err(ExportError::Internal(format!("events:PutEvents: {detail}")))
    }
}
