//! One owner per key space: no two connections write the same keys.
//!
//! A connection writes into two folders of its destination: its events folder `P/A` (parts
//! and complete markers, flat or in `dt=/hour=` folders, JSON or Parquet) and the
//! organisation's merged-IDs folder `P/-O`. Two connections whose folders are the same, or
//! one inside the other, on the same place (canonical bucket, container or folder, see
//! [`crate::control::claim`]) would write the same markers, or put files inside a folder a
//! table of the other reads. So such a connection is refused at create, and a stored one
//! (made before this rule, or racing a create) fails every run with an error retrying
//! cannot cure, naming the connection it collides with and the prefix to change.
//!
//! The one sharing that is allowed is the seed's: several projects of one organisation in
//! one bucket and prefix, each with merged IDs on. Their merged-IDs files are the
//! organisation's, identical for each of them, so exactly one connection writes them: the
//! oldest enabled one (creation time, then id) of those sharing the folder. The others skip
//! them and say so in their manifest (`merged_ids_written_by`). Ownership passes on by
//! itself when the owner is disabled or deleted, because it is decided at every run.

use chrono::{DateTime, Utc};

use crate::control::claim::{canonical_location, canonical_path};
use crate::control::connection::Connection;
use crate::control::store::ControlStore;
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;
use crate::model::layout_kind::LayoutKind;

/// Which data a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Events,
    MergedIds,
}

impl Data {
    fn name(self) -> &'static str {
        match self {
            Data::Events => "events folder",
            Data::MergedIds => "merged-IDs folder",
        }
    }
}

/// One folder a connection writes, in its canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    pub data: Data,
    /// The place without any folder: `s3://bucket`, `https://host/bucket`,
    /// `https://account/container`, or `file://` (a local folder's whole path is its folder,
    /// so `/d` with prefix `a` and `/d/a` with no prefix are one place and folder).
    pub place: String,
    /// Folder segments under the place (case kept: object keys are case-sensitive).
    pub folder: Vec<String>,
    pub layout: LayoutKind,
    pub org_id: String,
    /// The connection exports merged IDs only, so its complete markers are in this folder too.
    pub merged_only: bool,
}

impl KeySpace {
    /// `s3://bucket/exports/187520`, `file:///data/out/exports/-42`.
    pub fn describe(&self) -> String {
        if self.place == "file://" {
            format!("file:///{}", self.folder.join("/"))
        } else {
            format!("{}/{}", self.place, self.folder.join("/"))
        }
    }
}

fn place_and_base(dest: &Destination) -> (String, Vec<String>) {
    let segments = |s: &str| s.split('/').filter(|seg| !seg.is_empty()).map(str::to_string).collect::<Vec<_>>();
    match dest {
        Destination::Local { path, prefix } => {
            let mut folder = segments(&canonical_path(path));
            folder.extend(segments(prefix));
            ("file://".to_string(), folder)
        }
        other => (canonical_location(other), segments(other.prefix())),
    }
}

/// The folders `conn` writes.
pub fn key_spaces(conn: &Connection) -> Vec<KeySpace> {
    let mut out = Vec::new();
    let space = |data: Data, dest: &Destination, leaf: String| {
        let (place, mut folder) = place_and_base(dest);
        folder.push(leaf);
        KeySpace { data, place, folder, layout: conn.layout, org_id: conn.org_id.clone(), merged_only: !conn.export.events }
    };
    if conn.export.events {
        out.push(space(Data::Events, &conn.destination, conn.project_id.clone()));
    }
    if conn.export.merged_ids {
        out.push(space(Data::MergedIds, conn.merged_ids_destination(), format!("-{}", conn.org_id)));
    }
    out
}

/// How two folders of one place relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    Same,
    /// The first lies inside the second.
    Inside,
    /// The second lies inside the first.
    Contains,
}

fn overlap(a: &KeySpace, b: &KeySpace) -> Option<Overlap> {
    if a.place != b.place {
        return None;
    }
    let n = a.folder.len().min(b.folder.len());
    if a.folder[..n] != b.folder[..n] {
        return None;
    }
    Some(match a.folder.len().cmp(&b.folder.len()) {
        std::cmp::Ordering::Equal => Overlap::Same,
        std::cmp::Ordering::Greater => Overlap::Inside,
        std::cmp::Ordering::Less => Overlap::Contains,
    })
}

/// The organisation's merged IDs shared by two connections: the one sharing that is allowed.
fn shares_merged_ids(a: &KeySpace, b: &KeySpace) -> bool {
    a.data == Data::MergedIds
        && b.data == Data::MergedIds
        && overlap(a, b) == Some(Overlap::Same)
        && a.org_id == b.org_id
        && a.layout == b.layout
        && !a.merged_only
        && !b.merged_only
}

/// Why a connection may not write beside another: the field to change, the problem, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub other: String,
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl Collision {
    pub fn into_error(self) -> ExportError {
        ExportError::invalid_config(self.field, self.problem, self.fix)
    }
}

/// Whether `conn`'s folders coincide with (or nest in) `other`'s; `None` when they may
/// write side by side.
pub fn collision(conn: &Connection, other: &Connection) -> Option<Collision> {
    find_collision(conn, other, true)
}

fn find_collision(conn: &Connection, other: &Connection, suggest: bool) -> Option<Collision> {
    if conn.id == other.id {
        return None;
    }
    for a in key_spaces(conn) {
        for b in key_spaces(other) {
            let Some(how) = overlap(&a, &b) else {
                continue;
            };
            if shares_merged_ids(&a, &b) {
                continue;
            }
            let field = match (a.data, &conn.merged_ids_destination) {
                (Data::MergedIds, Some(_)) => "merged_ids_destination.prefix",
                _ => "destination.prefix",
            };
            let (mine, theirs) = (a.describe(), b.describe());
            let other_id = &other.id;
            let problem = match how {
                Overlap::Same if a.data == Data::MergedIds && b.data == Data::MergedIds && a.org_id == b.org_id && a.layout != b.layout => format!(
                    "the organisation's merged IDs in {mine} are written by connection {other_id} in its {:?} layout; this connection's {:?} layout would put a second copy of them in the same folder",
                    b.layout, a.layout
                ),
                Overlap::Same if a.data == Data::MergedIds && b.data == Data::MergedIds && a.org_id == b.org_id => format!(
                    "connection {other_id} writes the organisation's merged IDs in {mine} too, and one of the two exports merged IDs only, so its complete markers would be the other's to share"
                ),
                Overlap::Same if a.data == b.data => format!(
                    "its {} {mine} is the {} of connection {other_id}: both would write the same keys (the same complete markers), so each would take the other's hours as its own",
                    a.data.name(),
                    b.data.name()
                ),
                Overlap::Same => format!("its {} {mine} is the {} of connection {other_id}: both would write into one folder", a.data.name(), b.data.name()),
                Overlap::Inside => format!(
                    "its {} {mine} lies inside the {} {theirs} of connection {other_id}: a table over that folder would read this connection's files as its own",
                    a.data.name(),
                    b.data.name()
                ),
                Overlap::Contains => format!(
                    "the {} {theirs} of connection {other_id} lies inside its {} {mine}: a table over this connection's folder would read that connection's files as its own",
                    b.data.name(),
                    a.data.name()
                ),
            };
            let mut fix = format!("Give this connection another {field}");
            if let Some(example) = if suggest { suggested_prefix(conn, other, a.data) } else { None } {
                fix.push_str(&format!(" (e.g. {example:?})"));
            }
            if a.data == Data::MergedIds && conn.export.events {
                fix.push_str(&format!(", set export.merged_ids to false (connection {other_id} already writes them)"));
            }
            if a.data == Data::MergedIds && b.data == Data::MergedIds && a.layout != b.layout && !b.merged_only {
                fix.push_str(&format!(", use connection {other_id}'s layout"));
            }
            fix.push_str(&format!(
                ", or delete connection {other_id} first (`exportctl connections delete {other_id}`). No two connections may write the same keys."
            ));
            return Some(Collision { other: other.id.clone(), field: field.to_string(), problem, fix });
        }
    }
    None
}

/// A prefix under this connection's own that clears `other`, to name in the fix.
fn suggested_prefix(conn: &Connection, other: &Connection, data: Data) -> Option<String> {
    let mut moved = conn.clone();
    let dest = match (data, &mut moved.merged_ids_destination) {
        (Data::MergedIds, Some(d)) => d,
        _ => &mut moved.destination,
    };
    let base = dest.prefix().trim_matches('/');
    let candidate = if base.is_empty() { conn.id.clone() } else { format!("{base}/{}", conn.id) };
    match dest {
        Destination::S3 { prefix, .. } | Destination::Azure { prefix, .. } | Destination::Local { prefix, .. } => *prefix = candidate.clone(),
    }
    find_collision(&moved, other, false).is_none().then_some(candidate)
}

fn created_at(conn: &Connection) -> DateTime<Utc> {
    conn.created.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok()).map(|t| t.with_timezone(&Utc)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether `a` came first: created earlier, or at the same time with the smaller id.
pub fn is_senior(a: &Connection, b: &Connection) -> bool {
    (created_at(a), &a.id) < (created_at(b), &b.id)
}

/// The connections of the control store as stored (secrets still sealed: only their places
/// and names matter here, so no key is opened). A file that does not parse is left to the
/// operator commands, which report it.
pub async fn stored_connections(control: &ControlStore) -> Result<Vec<Connection>> {
    let store = control.store();
    let mut out = Vec::new();
    for meta in store.list("connections/").await.map_err(|e| e.ours("control store"))? {
        if !meta.key.ends_with(".json") {
            continue;
        }
        let body = match store.get(&meta.key).await {
            Ok(b) => b,
            Err(ExportError::NotFound { .. }) => continue,
            Err(e) => return Err(e.ours("control store")),
        };
        if let Ok(conn) = serde_json::from_slice::<Connection>(&body) {
            out.push(conn);
        }
    }
    Ok(out)
}

/// At create: refuses `conn` when its folders coincide with any stored connection's.
pub async fn refuse_coinciding(control: &ControlStore, conn: &Connection) -> Result<()> {
    for other in stored_connections(control).await? {
        if let Some(c) = collision(conn, &other) {
            return Err(c.into_error());
        }
    }
    Ok(())
}

/// What a run of a connection may write, decided from the stored connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpacePlan {
    /// Another connection writes the organisation's merged IDs in this connection's
    /// merged-IDs folder: this run leaves them to it.
    pub merged_ids_owner: Option<String>,
}

/// The key-space rule for one connection among `all` (which may include it).
pub fn plan_among(conn: &Connection, all: &[Connection]) -> Result<KeySpacePlan> {
    // The older connection keeps its folders; the younger one is the one to change.
    if let Some(c) = all.iter().filter(|o| is_senior(o, conn)).find_map(|o| collision(conn, o)) {
        let mut err = c;
        err.problem.push_str("; this connection's runs write nothing until it is changed");
        return Err(err.into_error());
    }
    let mut plan = KeySpacePlan::default();
    if !conn.export.merged_ids {
        return Ok(plan);
    }
    let Some(mine) = key_spaces(conn).into_iter().find(|s| s.data == Data::MergedIds) else {
        return Ok(plan);
    };
    let broken = |c: &Connection| all.iter().any(|o| is_senior(o, c) && collision(c, o).is_some());
    let owner = all
        .iter()
        .filter(|o| o.id != conn.id && o.enabled && !broken(o))
        .filter(|o| key_spaces(o).iter().any(|s| shares_merged_ids(&mine, s)))
        .filter(|o| is_senior(o, conn) || !conn.enabled)
        .min_by(|a, b| if is_senior(a, b) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater });
    plan.merged_ids_owner = owner.map(|o| o.id.clone());
    Ok(plan)
}

/// At run: fails (not retryable) when an older connection's folders coincide with this
/// one's, and says who writes the organisation's merged IDs.
pub async fn plan_run(control: &ControlStore, conn: &Connection) -> Result<KeySpacePlan> {
    plan_among(conn, &stored_connections(control).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str, created: &str, destination: serde_json::Value, extra: serde_json::Value) -> Connection {
        let mut doc = serde_json::json!({"id": id, "org_id": "42", "project_id": "187520", "created": created,
            "destination": destination, "admins": ["a@example.com"], "creator": "c@example.com"});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Connection::from_json(&doc.to_string()).unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    fn s3(bucket: &str, prefix: &str) -> serde_json::Value {
        serde_json::json!({"type": "s3", "bucket": bucket, "prefix": prefix, "region": "us-east-1"})
    }

    fn local(path: &str, prefix: &str) -> serde_json::Value {
        serde_json::json!({"type": "local", "path": path, "prefix": prefix})
    }

    fn azure(url: &str, prefix: &str) -> serde_json::Value {
        serde_json::json!({"type": "azure", "account_url": url, "container": "events", "prefix": prefix, "sas_token": "sv=1&sig=x"})
    }

    const FIRST: &str = "2020-01-25T00:05:00Z";
    const LATER: &str = "2020-01-26T00:05:00Z";

    #[test]
    fn the_key_space_rule() {
        let none = serde_json::json!({});
        let base = conn("c1", FIRST, s3("acme", "exports"), none.clone());
        // (case, second connection, refused: Some(words the message holds))
        let table: Vec<(&str, Connection, Option<&str>)> = vec![
            (
                "same everything",
                conn("c2", LATER, s3("acme", "exports"), none.clone()),
                Some("its events folder s3://acme/exports/187520 is the events folder of connection c1"),
            ),
            (
                "json and parquet on one place",
                conn("c2", LATER, s3("acme", "exports"), serde_json::json!({"format": "parquet"})),
                Some("the same complete markers"),
            ),
            ("hive beside amplitude in one events folder", conn("c2", LATER, s3("acme", "exports"), serde_json::json!({"layout": "hive"})), Some("c1")),
            ("a trailing slash on the prefix", conn("c2", LATER, s3("acme", "exports/"), none.clone()), Some("c1")),
            ("another project, same prefix: the seed's case", conn("c2", LATER, s3("acme", "exports"), serde_json::json!({"project_id": "187521"})), None),
            ("another prefix", conn("c2", LATER, s3("acme", "exports-parquet"), serde_json::json!({"format": "parquet"})), None),
            ("another bucket", conn("c2", LATER, s3("acme-2", "exports"), none.clone()), None),
            ("prefix case differs: S3 keys are case-sensitive", conn("c2", LATER, s3("acme", "Exports"), none.clone()), None),
            (
                "nested: inside the other's events folder",
                conn("c2", LATER, s3("acme", "exports/187520"), serde_json::json!({"export": {"events": true, "merged_ids": false}})),
                Some("lies inside the events folder s3://acme/exports/187520 of connection c1"),
            ),
            (
                "a string prefix that is not a folder prefix",
                conn("c2", LATER, s3("acme", "exports/1875"), serde_json::json!({"export": {"events": true, "merged_ids": false}})),
                None,
            ),
            (
                "merged IDs in another layout in the org's folder",
                conn("c2", LATER, s3("acme", "exports"), serde_json::json!({"project_id": "187521", "layout": "hive"})),
                Some("in its Amplitude layout; this connection's Hive layout"),
            ),
            (
                "merged-IDs destination onto the other's merged IDs, events elsewhere, merged only",
                conn(
                    "c2",
                    LATER,
                    s3("acme-2", "x"),
                    serde_json::json!({"export": {"events": false, "merged_ids": true}, "merged_ids_destination": s3("acme", "exports")}),
                ),
                Some("merged IDs only"),
            ),
            (
                "merged-IDs destination into the other's events folder",
                conn("c2", LATER, s3("acme-2", "x"), serde_json::json!({"project_id": "187521", "merged_ids_destination": s3("acme", "exports/187520")})),
                Some("merged_ids_destination.prefix"),
            ),
            (
                "merged IDs of the same org in the same folder via a merged-IDs destination",
                conn("c2", LATER, s3("acme-2", "x"), serde_json::json!({"project_id": "187521", "merged_ids_destination": s3("acme", "exports")})),
                None,
            ),
            (
                "merged IDs off and another project",
                conn("c2", LATER, s3("acme", "exports"), serde_json::json!({"project_id": "7", "export": {"events": true, "merged_ids": false}})),
                None,
            ),
        ];
        for (case, second, refused) in table {
            let got = collision(&second, &base);
            match (refused, &got) {
                (None, None) => {}
                (Some(words), Some(c)) => {
                    let text = c.clone().into_error().to_string();
                    assert!(text.contains(words), "{case}: {text}");
                    assert!(text.contains("connections delete c1") && text.contains("another"), "{case}: the fix is named: {text}");
                    // The rule is symmetric: the first connection could not be made beside the second either.
                    assert!(collision(&base, &second).is_some(), "{case}: not symmetric");
                }
                _ => panic!("{case}: expected refused={refused:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_folder_holding_another_connections_folder_is_refused_too() {
        let inner = conn("c1", FIRST, s3("acme", "e/187520"), serde_json::json!({}));
        let outer = conn("c2", LATER, s3("acme", "e"), serde_json::json!({}));
        let c = collision(&outer, &inner).expect("c1's folders lie inside c2's events folder");
        assert!(
            c.problem.contains("the events folder s3://acme/e/187520/187520 of connection c1 lies inside its events folder s3://acme/e/187520"),
            "{}",
            c.problem
        );
    }

    #[test]
    fn spellings_of_one_place_are_one_place() {
        let none = serde_json::json!({});
        let a = conn("c1", FIRST, local("/data/out", "exports"), none.clone());
        for (dest, what) in [
            (local("/data/out/exports", ""), "the prefix folded into the path"),
            (local("/data/./out//", "exports/"), "dot segments, repeated and trailing slashes"),
            (local("/data/x/../out", "exports"), "parent segments"),
        ] {
            let b = conn("c2", LATER, dest, none.clone());
            assert!(collision(&b, &a).is_some(), "{what}");
        }
        let a = conn("c1", FIRST, azure("https://acct.blob.core.windows.net", "p"), none.clone());
        let b = conn("c2", LATER, azure("https://ACCT.blob.core.windows.net:443/", "p"), none.clone());
        let c = collision(&b, &a).expect("one container, two spellings");
        assert!(c.problem.contains("https://acct.blob.core.windows.net/events/p/187520"), "{}", c.problem);
        let other_account = conn("c3", LATER, azure("https://other.blob.core.windows.net", "p"), none.clone());
        assert!(collision(&other_account, &a).is_none());
        // A suggestion is only given when it clears the other connection.
        let c = collision(&conn("c2", LATER, s3("acme", "exports"), none.clone()), &conn("c1", FIRST, s3("acme", "exports"), none)).unwrap();
        assert!(c.fix.contains("\"exports/c2\""), "{}", c.fix);
    }

    #[test]
    fn the_oldest_enabled_connection_writes_the_organisations_merged_ids() {
        let none = serde_json::json!({});
        let web = conn("web", FIRST, s3("acme", "exports"), none.clone());
        let app = conn("app", LATER, s3("acme", "exports"), serde_json::json!({"project_id": "187521"}));
        let all = vec![web.clone(), app.clone()];
        assert_eq!(plan_among(&web, &all).unwrap().merged_ids_owner, None, "the oldest writes them");
        assert_eq!(plan_among(&app, &all).unwrap().merged_ids_owner.as_deref(), Some("web"));
        // Ownership passes on when the owner is disabled or deleted.
        let mut disabled = web.clone();
        disabled.enabled = false;
        assert_eq!(plan_among(&app, &[disabled.clone(), app.clone()]).unwrap().merged_ids_owner, None);
        assert_eq!(plan_among(&disabled, &[disabled.clone(), app.clone()]).unwrap().merged_ids_owner.as_deref(), Some("app"));
        assert_eq!(plan_among(&app, std::slice::from_ref(&app)).unwrap().merged_ids_owner, None);
        // A stored younger twin fails its runs (not retryable); the older one keeps working.
        let twin = conn("twin", LATER, s3("acme", "exports"), serde_json::json!({"format": "parquet"}));
        let all = vec![web.clone(), twin.clone()];
        let err = plan_among(&twin, &all).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("connection web") && err.to_string().contains("write nothing until it is changed"), "{err}");
        assert_eq!(plan_among(&web, &all).unwrap(), KeySpacePlan::default());
        // Ties on creation time go to the smaller id.
        let same_time = conn("aaa", FIRST, s3("acme", "exports"), serde_json::json!({"project_id": "187521"}));
        assert_eq!(plan_among(&web, &[web.clone(), same_time.clone()]).unwrap().merged_ids_owner.as_deref(), Some("aaa"));
    }
}
