//! Local folder adapter (embedded mode): the lake, the control store and destinations as
//! directories. Writes are atomic: a temp file under `.uploads/`, then a rename; the
//! `.uploads/` folder is removed whenever no write is in progress.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{ExportError, Result};
use crate::ports::{ByteStream, CreateOutcome, ObjectMeta, ObjectStore, StreamingUpload};

/// Folder under the root that holds uploads in progress; never listed.
const UPLOADS_DIR: &str = ".uploads";

static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// A destination folder behaves like a bucket: it must exist, and a folder that is gone
    /// is "destination missing", never silently re-created.
    must_exist: bool,
}

impl LocalStore {
    /// Uses (and creates) `root` as the store's folder (lake, control store, outbox).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| ExportError::io(root.display().to_string(), e))?;
        Ok(LocalStore { root, must_exist: false })
    }

    /// A destination folder: it must exist now and at every write.
    pub fn existing(root: impl Into<PathBuf>) -> Result<Self> {
        let store = LocalStore { root: root.into(), must_exist: true };
        store.check_root()?;
        Ok(store)
    }

    fn check_root(&self) -> Result<()> {
        if !self.must_exist || std::fs::metadata(&self.root).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        Err(ExportError::DestinationMissing {
            resource: self.root.display().to_string(),
            hint: "The destination folder must exist (like a bucket, it is never created by the exporter); create it or fix the connection's path.".into(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a key to a path inside the root, refusing anything that could escape it.
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn temp_path(&self) -> PathBuf {
        let n = UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root.join(UPLOADS_DIR).join(format!("{}-{n}", std::process::id()))
    }

    /// A new temp file under `.uploads/`. That folder sits in the customer's destination, so
    /// every write that leaves it empty removes it (`release_uploads`), possibly between our
    /// `create_dir_all` and the create: then it is created again.
    async fn create_temp(&self) -> Result<(PathBuf, tokio::fs::File)> {
        let temp = self.temp_path();
        let mut attempts = 0;
        loop {
            create_parent(&temp).await?;
            match tokio::fs::File::create(&temp).await {
                Ok(f) => return Ok((temp, f)),
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 5 => attempts += 1,
                Err(e) => return Err(io_err(&temp, e)),
            }
        }
    }

    async fn write_temp(&self, body: &[u8]) -> Result<PathBuf> {
        let (temp, mut f) = self.create_temp().await?;
        f.write_all(body).await.map_err(|e| io_err(&temp, e))?;
        f.sync_all().await.map_err(|e| io_err(&temp, e))?;
        Ok(temp)
    }
}

/// Keys are relative, `/`-separated, with no empty, `.` or `..` segment and no backslash.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| ExportError::invalid_input(format!("object key {key:?}"), why.to_string());
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    if key.starts_with('/') {
        return Err(bad("must not start with '/'"));
    }
    if key.contains('\\') || key.contains('\0') {
        return Err(bad("must not contain a backslash or NUL"));
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad("must not contain empty, '.' or '..' segments"));
        }
    }
    if key.split('/').next() == Some(UPLOADS_DIR) {
        return Err(bad("the .uploads folder is reserved"));
    }
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> ExportError {
    match e.kind() {
        ErrorKind::PermissionDenied => ExportError::PermissionDenied {
            operation: "write".into(),
            resource: path.display().to_string(),
            permission: "file system write access".into(),
            principal: None,
            detail: e.to_string(),
        },
        _ => ExportError::io(path.display().to_string(), e),
    }
}

async fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_folders(parent).await.map_err(|e| io_err(parent, e))?;
    }
    Ok(())
}

/// `create_dir_all`, again when a concurrent removal of an emptied folder (a delete's
/// `remove_empty_folders_above`, `release_uploads`) races it: `create_dir_all` then fails
/// with "exists" (it found the folder, which was gone when it looked again) or "not found".
async fn create_folders(dir: &Path) -> std::io::Result<()> {
    let mut attempts = 0;
    loop {
        match tokio::fs::create_dir_all(dir).await {
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) && attempts < 10 => attempts += 1,
            other => return other,
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.check_root()?;
        let path = self.path_of(key)?;
        let temp = self.write_temp(&body).await?;
        let published = publish(&temp, &path, Publish::Replace).await.map_err(|e| io_err(&path, e));
        release_uploads(&self.root).await;
        published
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        self.check_root()?;
        let path = self.path_of(key)?;
        let temp = self.write_temp(&body).await?;
        // hard_link fails if the target exists: an atomic create-only publish.
        let outcome = match publish(&temp, &path, Publish::CreateOnly).await {
            Ok(()) => Ok(CreateOutcome::Created),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(CreateOutcome::AlreadyExists),
            Err(e) => Err(io_err(&path, e)),
        };
        let _ = tokio::fs::remove_file(&temp).await;
        release_uploads(&self.root).await;
        outcome
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        self.check_root()?;
        let path = self.path_of(key)?;
        let (temp, file) = self.create_temp().await?;
        Ok(Box::new(LocalUpload { file: tokio::io::BufWriter::with_capacity(1 << 20, file), temp, path, root: self.root.clone() }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ExportError::NotFound { what: format!("{}/{key}", self.describe()) }),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(ExportError::NotFound { what: format!("{}/{key}", self.describe()) }),
            Err(e) => return Err(io_err(&path, e)),
        };
        let display = path.display().to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |r| r.map_err(|e| ExportError::io(display.clone(), e)));
        Ok(Box::pin(stream))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.check_root()?;
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta { key: key.to_string(), size: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.check_root()?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix)).await.map_err(|e| ExportError::Internal(format!("listing task failed: {e}")))?
    }

    async fn first(&self, prefix: &str) -> Result<Option<ObjectMeta>> {
        self.check_root()?;
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || first_blocking(&root, &prefix)).await.map_err(|e| ExportError::Internal(format!("listing task failed: {e}")))?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check_root()?;
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
        self.remove_empty_folders_above(&path).await;
        Ok(())
    }
}

impl LocalStore {
    /// Folders are this adapter's own artefact (a bucket has none): once a delete leaves
    /// one empty, it goes too, so a probe or a replaced export leaves no empty folder in
    /// the customer's destination. Walks up to, never including, the root. `remove_dir`
    /// refuses a folder that holds anything, so a folder a concurrent writer has just
    /// filled stays, and the walk stops there; one it has created but not yet filled may
    /// go, which [`publish`] recovers from.
    async fn remove_empty_folders_above(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || tokio::fs::remove_dir(d).await.is_err() {
                return;
            }
            dir = d.parent();
        }
    }
}

#[derive(Clone, Copy)]
enum Publish {
    /// `rename`: replaces an existing object, as S3's PutObject does.
    Replace,
    /// `hard_link`: fails with `AlreadyExists` if the object exists.
    CreateOnly,
}

/// Removes the uploads folder when no upload is in progress (`remove_dir` refuses a folder
/// that holds anything), so a destination keeps only what was exported.
async fn release_uploads(root: &Path) {
    let _ = tokio::fs::remove_dir(root.join(UPLOADS_DIR)).await;
}

/// Moves a finished temp file to `path`, creating its folders. A delete of the last object
/// of a folder removes the folder (see `remove_empty_folders_above`), possibly between our
/// `create_dir_all` and the rename: then the folders are created again and the move retried.
async fn publish(temp: &Path, path: &Path, how: Publish) -> std::io::Result<()> {
    let mut attempts = 0;
    loop {
        if let Some(parent) = path.parent() {
            create_folders(parent).await?;
        }
        let moved = match how {
            Publish::Replace => tokio::fs::rename(temp, path).await,
            Publish::CreateOnly => tokio::fs::hard_link(temp, path).await,
        };
        match moved {
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < 5 && tokio::fs::try_exists(temp).await.unwrap_or(false) => attempts += 1,
            other => return other,
        }
    }
}

/// Where a walk for `prefix` starts: the deepest folder the prefix names completely, with
/// its key.
fn walk_start<'p>(root: &Path, prefix: &'p str) -> Result<(PathBuf, &'p str)> {
    let dir_part = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    if !dir_part.is_empty() {
        validate_key(dir_part)?;
    }
    Ok((if dir_part.is_empty() { root.to_path_buf() } else { root.join(dir_part) }, dir_part))
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let (start, dir_part) = walk_start(root, prefix)?;
    let mut out = Vec::new();
    let mut stack = vec![(start, dir_part.to_string())];
    while let Some((dir, key_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => continue,
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if key_dir.is_empty() && name == UPLOADS_DIR {
                continue;
            }
            let key = if key_dir.is_empty() { name.clone() } else { format!("{key_dir}/{name}") };
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted between read_dir and metadata: like S3, a listing just misses it.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&entry.path(), e)),
            };
            if meta.is_dir() {
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    stack.push((entry.path(), key));
                }
            } else if key.starts_with(prefix) {
                out.push(ObjectMeta { key, size: meta.len() });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The first key under `prefix` without walking the whole tree: siblings are visited in
/// key order (a folder sorts as `name/`, as its keys do) and the walk stops at the first file.
fn first_blocking(root: &Path, prefix: &str) -> Result<Option<ObjectMeta>> {
    let (start, dir_part) = walk_start(root, prefix)?;
    first_in(&start, dir_part, prefix)
}

fn first_in(dir: &Path, key_dir: &str, prefix: &str) -> Result<Option<ObjectMeta>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if key_dir.is_empty() && name == UPLOADS_DIR {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&entry.path(), e)),
        };
        let key = if key_dir.is_empty() { name } else { format!("{key_dir}/{name}") };
        let order = if meta.is_dir() { format!("{key}/") } else { key.clone() };
        children.push((order, key, meta));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, key, meta) in children {
        if meta.is_dir() {
            if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                if let Some(found) = first_in(&dir.join(key.rsplit('/').next().unwrap_or(&key)), &key, prefix)? {
                    return Ok(Some(found));
                }
            }
        } else if key.starts_with(prefix) {
            return Ok(Some(ObjectMeta { key, size: meta.len() }));
        }
    }
    Ok(None)
}

struct LocalUpload {
    file: tokio::io::BufWriter<tokio::fs::File>,
    temp: PathBuf,
    path: PathBuf,
    root: PathBuf,
}

#[async_trait]
impl StreamingUpload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.file.write_all(&chunk).await.map_err(|e| io_err(&self.temp, e))
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        self.file.flush().await.map_err(|e| io_err(&self.temp, e))?;
        self.file.get_ref().sync_all().await.map_err(|e| io_err(&self.temp, e))?;
        let published = publish(&self.temp, &self.path, Publish::Replace).await.map_err(|e| io_err(&self.path, e));
        release_uploads(&self.root).await;
        published
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let _ = tokio::fs::remove_file(&self.temp).await;
        release_uploads(&self.root).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_and_folders(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_delete_removes_the_folders_it_leaves_empty_but_never_the_root_or_a_folder_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dest");
        std::fs::create_dir(&root).unwrap();
        let store = LocalStore::existing(&root).unwrap();
        store.put("exports/_export_probe/probe-1", Bytes::from_static(b"x")).await.unwrap();
        store.put("exports/187520/part", Bytes::from_static(b"x")).await.unwrap();

        store.delete("exports/_export_probe/probe-1").await.unwrap();
        assert!(!root.join("exports/_export_probe").exists(), "{:?}", files_and_folders(&root));
        assert!(root.join("exports/187520/part").is_file(), "a folder that still holds a file stays");

        store.delete("exports/187520/part").await.unwrap();
        assert!(root.is_dir(), "the destination root is never removed");
        assert_eq!(files_and_folders(&root), Vec::<String>::new(), "nothing is left, the uploads folder included");

        // A key at the top, and a key that was never there: the root stays.
        store.put("top", Bytes::from_static(b"x")).await.unwrap();
        store.delete("top").await.unwrap();
        store.delete("a/b/never-written").await.unwrap();
        assert!(root.is_dir());

        // A home store (created on demand) keeps its root too.
        let lake = LocalStore::new(dir.path().join("lake")).unwrap();
        lake.put("k", Bytes::from_static(b"x")).await.unwrap();
        lake.delete("k").await.unwrap();
        assert!(dir.path().join("lake").is_dir());
    }

    // Threads, not tasks on one thread: the folder a write creates can vanish between the
    // system calls of `create_dir_all` only when writes really run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_uploads_all_land_though_each_finished_one_removes_the_uploads_folder_when_empty() {
        for _round in 0..20 {
            concurrent_uploads_round().await;
        }
    }

    async fn concurrent_uploads_round() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::existing(dir.path()).unwrap();
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        store.put(&format!("a/{i}"), Bytes::from(vec![b'x'; 1000])).await
                    } else {
                        let mut up = store.upload(&format!("b/{i}")).await?;
                        up.write(Bytes::from(vec![b'y'; 1000])).await?;
                        up.finish().await
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.list("").await.unwrap().len(), 64);
        assert!(!dir.path().join(UPLOADS_DIR).exists(), "{:?}", files_and_folders(dir.path()));
    }

    #[tokio::test]
    async fn writes_racing_a_delete_that_empties_their_folder_still_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::existing(dir.path()).unwrap();
        for round in 0..50 {
            let (a, b) = (store.clone(), store.clone());
            let writer = tokio::spawn(async move { a.put(&format!("p/h/part-{round}"), Bytes::from_static(b"x")).await });
            let deleter = tokio::spawn(async move { b.delete(&format!("p/h/part-{}", round.max(1) - 1)).await });
            writer.await.unwrap().unwrap();
            deleter.await.unwrap().unwrap();
            assert!(dir.path().join(format!("p/h/part-{round}")).is_file(), "round {round}");
        }
    }
}
