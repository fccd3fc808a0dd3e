//! Which place a destination names, so an organisation's claim covers every spelling of it.
//! Stores normalise what they are given (host case, default ports, `.` segments, repeated
//! slashes), so a claim built from the raw strings would let two organisations claim one
//! container under two spellings. Claims are keyed by the canonical location instead, and
//! distinct locations never share a key.

use sha2::{Digest, Sha256};

use crate::model::destination::Destination;

/// The one spelling of the place a destination writes to (its bucket, container or folder,
/// without the prefix): `s3://bucket` (Amazon S3), `https://host[:port]/bucket` (an
/// S3-compatible store: bucket `x` on R2 is not bucket `x` on AWS),
/// `https://host[:port]/path/container`, `file:///a/b`.
pub fn canonical_location(dest: &Destination) -> String {
    match dest {
        Destination::S3 { bucket, endpoint_url: Some(endpoint), .. } => format!("{}/{}", canonical_account(endpoint), bucket.to_ascii_lowercase()),
        Destination::S3 { bucket, .. } => format!("s3://{}", bucket.to_ascii_lowercase()),
        Destination::Azure { account_url, container, .. } => format!("{}/{}", canonical_account(account_url), container.to_ascii_lowercase()),
        Destination::Local { path, .. } => format!("file://{}", canonical_path(path)),
    }
}

/// The control-store key part of a destination's claim (without the scheme). S3 bucket names are already
/// canonical and key-safe, so they stay readable as `s3/{bucket}`. Azure, local and
/// S3-compatible claims (`s3-compatible/`, endpoint host and port and bucket) are a
/// readable slug plus a digest of the canonical location without its scheme: the slug may
/// fold different characters together, the digest never does.
pub fn claim_id(dest: &Destination) -> String {
    let location = canonical_location(dest);
    match dest {
        Destination::S3 { endpoint_url: Some(_), .. } => {
            format!("s3-compatible/{}", slug_and_digest(location.split_once("://").map_or(&location[..], |(_, rest)| rest)))
        }
        Destination::S3 { bucket, .. } => format!("s3/{}", bucket.to_ascii_lowercase()),
        Destination::Azure { .. } => format!("azure/{}", slug_and_digest(location.split_once("://").map_or(&location[..], |(_, rest)| rest))),
        Destination::Local { .. } => format!("local/{}", slug_and_digest(location.trim_start_matches("file://"))),
    }
}

/// Whether two canonical locations (see [`canonical_location`]) overlap, so that one
/// organisation's claim on either must keep every other organisation off the other.
/// Buckets and containers are claimed whole (their prefixes are the owner's to divide), so
/// they overlap only when they are the same place; a local folder claim covers the folders
/// inside it and above it, segment by segment (`/data/acme` overlaps `/data` and
/// `/data/acme/187520`, not its sibling `/data/acme2`).
pub fn locations_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix("file://"), b.strip_prefix("file://")) {
        (Some(a), Some(b)) => {
            let (a, b) = (path_segments(a), path_segments(b));
            a.starts_with(&b) || b.starts_with(&a)
        }
        (None, None) => a == b,
        _ => false,
    }
}

fn path_segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The place a destination's files go, prefix included, as a key-safe id: a connection
/// that takes over a place from an earlier connection finds its record under this id.
pub fn place_id(dest: &Destination) -> String {
    let location = canonical_location(dest);
    let place = format!("{}/{}", location.split_once("://").map_or(&location[..], |(_, rest)| rest), dest.prefix().trim_matches('/'));
    slug_and_digest(place.trim_end_matches('/'))
}

/// The claim id releases before 2026-11 used for Azure and local destinations (raw
/// strings); still checked so a claim made then keeps protecting its destination.
pub fn legacy_claim_id(dest: &Destination) -> Option<String> {
    match dest {
        Destination::S3 { .. } => None,
        Destination::Azure { account_url, container, .. } => {
            let host = account_url.trim_end_matches('/').rsplit("//").next().unwrap_or(account_url);
            Some(format!("azure/{}/{container}", host.replace(['/', ':'], "_")))
        }
        Destination::Local { path, .. } => Some(format!("local/{}", path.trim_matches('/').replace('/', "_"))),
    }
}

/// `scheme://host[:port]/path` of an account (or S3-compatible endpoint) URL: scheme and
/// host lower case (a trailing dot dropped), web ports removed, `.`/`..` resolved, empty
/// segments and trailing slash dropped. Azure account names are lower case, so the path
/// (an emulator's account) is too; an S3 endpoint has no path.
fn canonical_account(account_url: &str) -> String {
    let Ok(url) = url::Url::parse(account_url.trim()) else {
        // Validation refuses such URLs before a claim is made; keep a stable spelling anyway.
        return account_url.trim().to_ascii_lowercase();
    };
    let host = url.host_str().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    // One account answers on both web ports (http is refused later, but must not be a way
    // around a claim), so 80 and 443 are dropped whichever scheme names them.
    let port = url.port_or_known_default().filter(|p| ![80, 443].contains(p)).map(|p| format!(":{p}")).unwrap_or_default();
    let path = canonical_path(url.path()).to_ascii_lowercase();
    let path = if path == "/" { String::new() } else { path };
    format!("{}://{host}{port}{path}", url.scheme())
}

/// A path with `.`, `..`, repeated and trailing slashes resolved lexically (symbolic links
/// are not followed: claims must not depend on the disk of whoever computes them).
pub fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let absolute = path.starts_with('/');
    let joined = segments.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

fn slug_and_digest(location: &str) -> String {
    let slug: String =
        location.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c.to_ascii_lowercase() } else { '_' }).take(80).collect();
    let digest = hex::encode(&Sha256::digest(location.as_bytes())[..10]);
    format!("{}.{digest}", slug.trim_matches('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure(url: &str) -> Destination {
        Destination::Azure {
            account_url: url.into(),
            container: "events".into(),
            prefix: String::new(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            sas_token: None,
        }
    }

    fn local(path: &str) -> Destination {
        Destination::Local { path: path.into(), prefix: String::new() }
    }

    #[test]
    fn every_spelling_of_one_place_is_one_claim() {
        let same_azure = [
            "http://localhost:10000/devstoreaccount1",
            "http://LOCALHOST:10000/devstoreaccount1/",
            "HTTP://localhost:10000//devstoreaccount1",
            "http://localhost:10000/x/../devstoreaccount1",
            "http://localhost:10000/./devstoreaccount1//",
        ];
        let ids: Vec<String> = same_azure.iter().map(|u| claim_id(&azure(u))).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:#?}");
        assert_eq!(canonical_location(&azure(same_azure[1])), "http://localhost:10000/devstoreaccount1/events");
        assert_eq!(claim_id(&azure("https://acct.blob.core.windows.net")), claim_id(&azure("https://ACCT.blob.core.windows.net.:443/")));

        let same_local = ["/t/dest", "/t/./dest", "/t//dest/", "/t/x/../dest"];
        let ids: Vec<String> = same_local.iter().map(|p| claim_id(&local(p))).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:#?}");
    }

    #[test]
    fn distinct_places_never_share_a_claim() {
        assert_ne!(claim_id(&local("/a/b_c")), claim_id(&local("/a_b/c")));
        assert_ne!(claim_id(&local("/a/b")), claim_id(&local("/a/b/c")));
        assert_ne!(claim_id(&azure("http://localhost:10000/acct")), claim_id(&azure("http://localhost:10001/acct")));
        // The scheme is not part of the place: one account answers on http and https.
        assert_eq!(claim_id(&azure("http://acct.blob.core.windows.net")), claim_id(&azure("https://acct.blob.core.windows.net")));
        assert_ne!(claim_id(&azure("https://a.blob.core.windows.net")), claim_id(&azure("https://b.blob.core.windows.net")));
        // The legacy scheme folded these two together; the canonical one does not.
        assert_eq!(legacy_claim_id(&local("/a/b_c")), legacy_claim_id(&local("/a_b/c")));
    }

    fn compatible(endpoint: &str, bucket: &str) -> Destination {
        Destination::s3_compatible(endpoint, bucket, "", "auto", true, "AKIAEXAMPLE", crate::model::secret::Secret::new("s"))
    }

    #[test]
    fn s3_compatible_claims_name_the_endpoint_and_amazon_claims_stay_as_they_were() {
        // Amazon S3 claims are unchanged: stored claims keep protecting their buckets.
        assert_eq!(claim_id(&Destination::aws_s3("Acme-Events", "p", "us-east-1", None)), "s3/acme-events");
        assert_eq!(canonical_location(&Destination::aws_s3("acme-events", "", "us-east-1", None)), "s3://acme-events");
        let r2 = compatible("https://acct.r2.cloudflarestorage.com", "acme-events");
        assert_eq!(canonical_location(&r2), "https://acct.r2.cloudflarestorage.com/acme-events");
        assert!(claim_id(&r2).starts_with("s3-compatible/acct.r2.cloudflarestorage.com_acme-events."), "{}", claim_id(&r2));
        assert_ne!(claim_id(&r2), claim_id(&Destination::aws_s3("acme-events", "", "us-east-1", None)), "bucket x on R2 is not bucket x on AWS");
        for spelling in [
            "https://ACCT.R2.cloudflarestorage.com/",
            "https://acct.r2.cloudflarestorage.com:443",
            "https://acct.r2.cloudflarestorage.com.",
            "http://acct.r2.cloudflarestorage.com:80",
        ] {
            assert_eq!(claim_id(&compatible(spelling, "acme-events")), claim_id(&r2), "{spelling}");
        }
        for other in [
            compatible("https://acct.r2.cloudflarestorage.com:8443", "acme-events"),
            compatible("https://other.r2.cloudflarestorage.com", "acme-events"),
            compatible("https://acct.r2.cloudflarestorage.com", "acme-events2"),
        ] {
            assert_ne!(claim_id(&other), claim_id(&r2), "{}", canonical_location(&other));
        }
        assert_eq!(legacy_claim_id(&r2), None);
    }

    #[test]
    fn a_folder_claim_covers_the_folders_inside_and_above_it_but_not_its_siblings() {
        let claimed = canonical_location(&local("/data/acme"));
        let overlaps = |path: &str| locations_overlap(&claimed, &canonical_location(&local(path)));
        for same_or_nested in ["/data/acme", "/data//acme/", "/data/./acme", "/data/x/../acme", "/data/acme/187520", "/data/acme/a/b/c", "/data", "/", "/data/"]
        {
            assert!(overlaps(same_or_nested), "{same_or_nested} overlaps /data/acme");
        }
        for apart in ["/data/acme2", "/data/acm", "/data/other/acme", "/acme", "/dat", "/data2/acme"] {
            assert!(!overlaps(apart), "{apart} does not overlap /data/acme");
        }
        // Buckets and containers are claimed whole: only the same one overlaps.
        let bucket = canonical_location(&Destination::aws_s3("acme-events", "p", "us-east-1", None));
        assert!(locations_overlap(&bucket, &canonical_location(&Destination::aws_s3("acme-events", "other", "us-east-1", None))));
        assert!(!locations_overlap(&bucket, &canonical_location(&Destination::aws_s3("acme-events2", "", "us-east-1", None))));
        assert!(!locations_overlap(&bucket, &claimed));
        assert!(!locations_overlap(&canonical_location(&azure("http://localhost:10000/acct")), &canonical_location(&azure("http://localhost:10000/acct2"))));
    }

    #[test]
    fn a_place_is_the_location_and_the_prefix_in_any_spelling() {
        let place = |path: &str, prefix: &str| place_id(&Destination::Local { path: path.into(), prefix: prefix.into() });
        assert_eq!(place("/data/acme", "exports"), place("/data//acme/", "exports/"));
        assert_ne!(place("/data/acme", "exports"), place("/data/acme", "other"));
        assert_ne!(place("/data/acme", ""), place("/data/acme", "exports"));
        assert!(place("/weird path/#", "a/b").bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)));
    }

    #[test]
    fn claim_ids_are_key_safe() {
        for d in [
            azure("http://[::1]:10000/acct"),
            local("/weird path/with%25/and#hash"),
            azure("https://xn--bcher-kva.example"),
            compatible("http://[::1]:9000", "b"),
            compatible("https://bücher.example:9000", "b"),
        ] {
            let id = claim_id(&d);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)), "{id}");
        }
    }
}
