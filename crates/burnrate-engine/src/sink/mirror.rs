//! The dataset on object storage (S3 or S3-compatible): every Parquet file the sinks write is
//! put under the same key below the store's prefix before it counts as durable, and a file the
//! sinks remove (a replay rewriting what a crashed run left) is deleted there too. The local
//! data directory stays the working copy the engine's state is rebuilt from; the store is what
//! readers (`burnrate query --data s3://...`, reports, Spark or Trino) see.
//!
//! Each table in the store has a Delta log of its own, shared by every replica that mirrors
//! there. A replica replays its own log's commits into it, in order ([`publish`]): one store
//! commit per local commit while it keeps up, and up to [`CATCH_UP_COMMITS`] of them in one
//! store commit when it catches up after an outage. Each store commit carries a transaction id
//! (`txn`): the app id names the local table (its Delta table id), the version is the last
//! local commit it holds. That is how a replica knows, after a
//! crash or an outage of the store, which of its commits the store has: it resumes after the
//! version the store's log holds for it, as kafka-delta-ingest resumes from its offsets. Commits
//! to the store's log are put-if-absent, so replicas append side by side; each replica only adds
//! and removes its own files (Kafka partitions, receiver WALs and input files are each written
//! by one replica), so their commits never conflict.
//!
//! Every writer of the dataset goes through [`crate::ParquetSink::write_segment`] and
//! [`crate::sink::parquet_sink::remove_segments`], so the mirror hooks in there, found by the
//! dataset's directory, instead of being threaded through each source; every commit to a local
//! log is followed by a [`publish`] of its table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use burnrate_otlp::Table;
use deltalake_core::kernel::Action;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::sink::on_own_runtime;
use crate::sink::table_log::{self, LoggedFile, ObjectLog};

/// Below the data directory: per table, the last local version the store's log has
/// (`<table>.version`) and the lock that makes one process at a time replay it.
pub const MIRROR_DIR: &str = "_burnrate/mirror";

/// Keys put and not published yet beyond which the mirror stops remembering them and asks the
/// store instead (one `HEAD` per file): only files whose commit failed stay there.
const MAX_UNPUBLISHED: usize = 100_000;

/// Most local commits one store commit holds while catching up. A receiver flushing every 10 s
/// makes 8,640 commits a table a day: after a day's outage, 87 store commits instead of that
/// many, each a conditional put with its round trips.
const CATCH_UP_COMMITS: usize = 100;

/// `[object_store]`: where the dataset is mirrored. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the pod's web
/// identity), never from the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix`; nothing is mirrored without it.
    pub url: Option<String>,
    /// S3 options by name (`endpoint`, `region`, `allow_http`, `virtual_hosted_style_request`,
    /// ...), laid over the `AWS_*` environment variables.
    pub options: BTreeMap<String, String>,
}

/// A dataset location that is an object store URL rather than a directory.
pub fn is_object_url(location: &str) -> bool {
    location.starts_with("s3://") || location.starts_with("s3a://")
}

/// An S3 store for `url` (`s3://bucket/prefix`) and the prefix inside it.
pub fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath), EngineError> {
    let parsed = url::Url::parse(url).map_err(|e| EngineError::Config(format!("{url}: {e}")))?;
    if !is_object_url(url) || parsed.host_str().is_none_or(str::is_empty) {
        return Err(EngineError::Config(format!(
            "{url}: expected s3://BUCKET[/PREFIX]"
        )));
    }
    let mut builder = AmazonS3Builder::from_env().with_url(url);
    for (key, value) in options {
        let key = key
            .parse()
            .map_err(|e| EngineError::Config(format!("object_store.options.{key}: {e}")))?;
        builder = builder.with_config(key, value);
    }
    let store = builder
        .build()
        .map_err(|e| EngineError::Config(format!("{url}: {e}")))?;
    let prefix = ObjectPath::from(parsed.path().trim_matches('/'));
    Ok((Arc::new(store), prefix))
}

/// Runs an object store call to completion from any thread, inside a runtime or not.
pub fn block_on<T, F, Fut>(call: F) -> Result<T, EngineError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, object_store::Error>>,
{
    crate::sink::on_own_runtime(|| async { call().await.map_err(object_error) })
}

/// One line: the store's first line, plus the S3 error code its XML body carries.
fn object_error(e: object_store::Error) -> EngineError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.split(": <?xml").next().unwrap_or(first);
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| format!(" ({code})"))
        .unwrap_or_default();
    // Generic is what a network failure, a 5xx or throttling becomes; the rest are answers.
    let retryable = matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    );
    EngineError::ObjectStore {
        message: format!("{first}{code}"),
        retryable,
    }
}

/// The local dataset directory's copy on object storage.
pub struct ObjectMirror {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Keys this process put whose add is not in the store's log yet: known to be there.
    unpublished: Mutex<HashSet<ObjectPath>>,
    /// Each table's log in the store, opened at its first publish.
    logs: Mutex<HashMap<Table, Arc<Mutex<Option<TableCopy>>>>>,
}

impl ObjectMirror {
    /// Opens the store and checks it answers (a missing bucket or bad credentials fail here, at
    /// startup, not at the first flush).
    pub fn open(config: &ObjectStoreConfig) -> Result<Option<Self>, EngineError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let (store, prefix) = open_store(url, &config.options)?;
        let probe = store.clone();
        let list_prefix = prefix.clone();
        block_on(move || async move {
            let mut listing = probe.list(Some(&list_prefix));
            listing.try_next().await.map(|_| ())
        })
        .map_err(|e| EngineError::Config(format!("object_store.url {url}: {e}")))?;
        Ok(Some(ObjectMirror {
            url: url.clone(),
            store,
            prefix,
            unpublished: Mutex::default(),
            logs: Mutex::default(),
        }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, root: &Path, file: &Path) -> Result<ObjectPath, EngineError> {
        let relative = file.strip_prefix(root).map_err(|_| {
            EngineError::Config(format!(
                "{} is not under {}",
                file.display(),
                root.display()
            ))
        })?;
        let mut key = self.prefix.clone();
        for part in relative.iter() {
            key = key.join(part.to_string_lossy().as_ref());
        }
        Ok(key)
    }

    /// Puts `file` (under `root`) whole: an object appears complete or not at all.
    pub fn put_file(&self, root: &Path, file: &Path) -> Result<(), EngineError> {
        let key = self.key(root, file)?;
        self.put_key(key.clone(), file)?;
        if let Ok(mut unpublished) = self.unpublished.lock() {
            if unpublished.len() >= MAX_UNPUBLISHED {
                unpublished.clear();
            }
            unpublished.insert(key);
        }
        Ok(())
    }

    fn put_key(&self, key: ObjectPath, file: &Path) -> Result<(), EngineError> {
        let bytes = std::fs::read(file).map_err(|e| EngineError::io(file, e))?;
        let store = self.store.clone();
        block_on(move || async move { store.put(&key, PutPayload::from(bytes)).await.map(|_| ()) })
    }

    pub fn delete_file(&self, root: &Path, file: &Path) -> Result<(), EngineError> {
        let key = self.key(root, file)?;
        let store = self.store.clone();
        block_on(move || async move {
            match store.delete(&key).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
    }

    /// Vacuums the store's copy of `table`: see [`table_log::vacuum_object_table`]. Publishing
    /// goes on meanwhile; the vacuum opens the log on its own.
    pub fn vacuum(&self, table: Table, keep: std::time::Duration) -> Result<usize, EngineError> {
        let url = self.table_url(table)?;
        let store = self.store.clone();
        on_own_runtime(|| table_log::vacuum_object_table(url, store, keep))
    }

    /// Puts `bytes` at `name` below the prefix (reports).
    pub fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        let key = self.prefix.clone().join(name);
        let store = self.store.clone();
        block_on(move || async move { store.put(&key, PutPayload::from(bytes)).await.map(|_| ()) })
    }
}

impl ObjectMirror {
    /// Replays into the store's log of `table` every commit of the local log (under `root`)
    /// that it does not have yet, in order, and returns how many. The first call in a process
    /// asks the store's log which local version it holds (its `txn` for this table); a store
    /// that has none gets the table as it is now in one commit, every file put that is not
    /// there yet.
    pub fn publish(&self, root: &Path, table: Table) -> Result<u64, EngineError> {
        let dir = root.join(table.name());
        if !table_log::has_log(&dir) {
            return Ok(0);
        }
        let copy = {
            let mut logs = self
                .logs
                .lock()
                .map_err(|_| EngineError::Config("the mirror's log registry panicked".into()))?;
            logs.entry(table).or_default().clone()
        };
        let mut copy = copy.lock().map_err(|_| {
            EngineError::Config(format!("{}: a mirror commit panicked", table.name()))
        })?;
        let state_dir = root.join(MIRROR_DIR);
        fs::create_dir_all(&state_dir).map_err(|e| EngineError::io(&state_dir, e))?;
        // Another process on this directory (`burnrate compact` beside `run`) replays the same
        // log: one at a time, each from where the other stopped.
        let lock_path = state_dir.join(format!("{}.lock", table.name()));
        let lock = File::create(&lock_path).map_err(|e| EngineError::io(&lock_path, e))?;
        lock.lock().map_err(|e| EngineError::io(&lock_path, e))?;
        let marker = state_dir.join(format!("{}.version", table.name()));
        let copy = match &mut *copy {
            Some(copy) => copy,
            empty => empty.insert(self.open_copy(root, table, &marker)?),
        };
        let mut next = read_marker(&marker)?.map_or(0, |version| version + 1);
        let mut replayed = 0;
        loop {
            let mut commits = Vec::new();
            while commits.len() < CATCH_UP_COMMITS {
                let version = next + commits.len() as u64;
                let Some(actions) = table_log::local_commit(&dir, version)? else {
                    if table_log::local_checkpoint(&dir)
                        .is_some_and(|checkpoint| checkpoint >= version)
                    {
                        return Err(EngineError::TableLog {
                            table: format!("{}/{}", self.url, table.name()),
                            message: format!(
                                "the store's log lacks this directory's commits from version {version}, which its log no longer keeps (past delta.logRetentionDuration): the store's copy of the table cannot be brought up to date"
                            ),
                            retryable: false,
                        });
                    }
                    break;
                };
                commits.push(actions);
            }
            if commits.is_empty() {
                break;
            }
            let last = next + commits.len() as u64 - 1;
            let actions = self.net(table, commits);
            let actions = self.present(&dir, table, actions)?;
            if !actions.is_empty() {
                let version = i64::try_from(last).unwrap_or(i64::MAX);
                let app_id = copy.app_id.as_str();
                let log = &mut copy.log;
                on_own_runtime(|| log.append(actions, app_id, version))?;
            }
            write_marker(&marker, last)?;
            replayed += last + 1 - next;
            next = last + 1;
        }
        Ok(replayed)
    }

    /// Opens the store's log of `table` and finds where this directory's log stands in it,
    /// writing that version to `marker`.
    fn open_copy(
        &self,
        root: &Path,
        table: Table,
        marker: &Path,
    ) -> Result<TableCopy, EngineError> {
        let dir = root.join(table.name());
        let Some((table_id, head, files)) = table_log::local_head(&dir)? else {
            return Err(EngineError::NotFound(format!(
                "{}: no Delta log",
                dir.display()
            )));
        };
        let app_id = format!("burnrate-mirror-{table_id}");
        let url = self.table_url(table)?;
        let store = self.store.clone();
        let mut log = on_own_runtime(|| ObjectLog::open(table, url, store))?;
        let holds = on_own_runtime(|| log.transaction_version(&app_id))?;
        let version = match holds.and_then(|version| u64::try_from(version).ok()) {
            Some(version) => version,
            None => {
                let seeded = self.seed(&dir, table, &files)?;
                let added = seeded.len();
                let version = i64::try_from(head).unwrap_or(i64::MAX);
                on_own_runtime(|| log.append(seeded, &app_id, version))?;
                tracing::info!(
                    table = table.name(),
                    url = %self.url,
                    files = added,
                    version = head,
                    "copied the table as it is to the store's log"
                );
                head
            }
        };
        write_marker(marker, version)?;
        Ok(TableCopy { log, app_id })
    }

    /// Adds for `files` (the local log's, at its head), each put to the store first unless
    /// it is there already.
    fn seed(
        &self,
        dir: &Path,
        table: Table,
        files: &[LoggedFile],
    ) -> Result<Vec<Action>, EngineError> {
        let table_prefix = self.prefix.clone().join(table.name());
        let store = self.store.clone();
        let listed: HashSet<ObjectPath> = block_on(move || async move {
            store
                .list(Some(&table_prefix))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
        })?;
        let mut adds = Vec::with_capacity(files.len());
        for file in files {
            let key = self.table_key(table, &file.path);
            let local = dir.join(&file.path);
            if !listed.contains(&key) {
                if !local.is_file() {
                    continue;
                }
                self.put_key(key, &local)?;
            }
            adds.push(table_log::add_of(file));
        }
        Ok(adds)
    }

    /// Consecutive local commits as one store commit: their actions in order, less each add a
    /// later one of them removes, and that removal (the store's log never lists the file).
    /// Replicas name their files uniquely, so a path is added once and removed at most once.
    fn net(&self, table: Table, commits: Vec<Vec<Action>>) -> Vec<Action> {
        let actions: Vec<Action> = commits.into_iter().flatten().collect();
        let mut added = HashSet::new();
        let mut gone = HashSet::new();
        for action in &actions {
            match action {
                Action::Add(add) => {
                    added.insert(add.path.clone());
                }
                Action::Remove(remove) if added.contains(&remove.path) => {
                    gone.insert(remove.path.clone());
                }
                _ => {}
            }
        }
        if let Ok(mut unpublished) = self.unpublished.lock() {
            for path in &gone {
                unpublished.remove(&self.table_key(table, path));
            }
        }
        actions
            .into_iter()
            .filter(|action| match action {
                Action::Add(add) => !gone.contains(&add.path),
                Action::Remove(remove) => !gone.contains(&remove.path),
                _ => true,
            })
            .collect()
    }

    /// `actions` with every add's object in the store: put by this process already, found
    /// there, or put now from the local file. An add whose file is neither there nor here any
    /// more (a later commit removed it, and a vacuum deleted it) is left out.
    fn present(
        &self,
        dir: &Path,
        table: Table,
        actions: Vec<Action>,
    ) -> Result<Vec<Action>, EngineError> {
        let mut kept = Vec::with_capacity(actions.len());
        for action in actions {
            if let Action::Add(add) = &action {
                let key = self.table_key(table, &add.path);
                let known = self
                    .unpublished
                    .lock()
                    .is_ok_and(|mut unpublished| unpublished.remove(&key));
                if !known && !self.exists(&key)? {
                    let local = dir.join(&add.path);
                    if !local.is_file() {
                        continue;
                    }
                    self.put_key(key, &local)?;
                }
            }
            kept.push(action);
        }
        Ok(kept)
    }

    fn exists(&self, key: &ObjectPath) -> Result<bool, EngineError> {
        let store = self.store.clone();
        let key = key.clone();
        block_on(move || async move {
            match store.head(&key).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// The key of a file a table's log names (`date=.../<segment>.parquet`).
    fn table_key(&self, table: Table, path: &str) -> ObjectPath {
        let mut key = self.prefix.clone().join(table.name());
        for part in path.split('/') {
            key = key.join(part);
        }
        key
    }

    /// `s3://bucket/prefix/<table>`.
    fn table_url(&self, table: Table) -> Result<url::Url, EngineError> {
        let base = self.url.trim_end_matches('/');
        url::Url::parse(&format!("{base}/{}", table.name()))
            .map_err(|e| EngineError::Config(format!("{base}: {e}")))
    }
}

/// A table's log in the store, as this process writes to it.
struct TableCopy {
    log: ObjectLog,
    /// Names this directory's table in the store's log's transaction ids.
    app_id: String,
}

fn read_marker(path: &Path) -> Result<Option<u64>, EngineError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

/// Not fsynced: a marker lost to a power cut only replays commits the store's log already
/// has, and each process starts from the store's own `txn`.
fn write_marker(path: &Path, version: u64) -> Result<(), EngineError> {
    let temporary = path.with_extension("version.tmp");
    fs::write(&temporary, version.to_string())
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|e| EngineError::io(path, e))
}

/// After a commit to the log of `table` under `root`: the store's log gets it too, if the
/// dataset is mirrored. A failure is logged, not returned: the local commit stands, and the
/// next publish (the table's next commit, or [`publish_all`]) catches up.
pub(crate) fn publish(root: &Path, table: Table) {
    let Some((mirror_root, mirror)) = mirror_of(root) else {
        return;
    };
    if let Err(error) = mirror.publish(&mirror_root, table) {
        tracing::warn!(
            table = table.name(),
            url = %mirror.url,
            error = %error,
            "the store's log of the table is behind this directory's; the next commit catches up"
        );
    }
}

/// Brings the store's log of every table up to this directory's (at start and at the end of a
/// run); how many local commits went there. Does nothing when the dataset is not mirrored.
pub fn publish_all(root: &Path) -> Result<u64, EngineError> {
    let Some((mirror_root, mirror)) = mirror_of(root) else {
        return Ok(0);
    };
    let mut replayed = 0;
    for table in Table::ALL {
        replayed += mirror.publish(&mirror_root, table)?;
    }
    Ok(replayed)
}

type Registry = Mutex<Vec<(PathBuf, Arc<ObjectMirror>)>>;

fn registry() -> &'static Registry {
    static MIRRORS: OnceLock<Registry> = OnceLock::new();
    MIRRORS.get_or_init(|| Mutex::new(Vec::new()))
}

/// From now on, every Parquet file written or removed under `root` is mirrored to `mirror`.
pub fn mirror_dataset(root: &Path, mirror: ObjectMirror) {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    if let Ok(mut mirrors) = registry().lock() {
        mirrors.retain(|(r, _)| r != &root);
        mirrors.push((root, Arc::new(mirror)));
    }
}

/// The mirror of the dataset at `root`, if it has one.
pub fn mirror_of(root: &Path) -> Option<(PathBuf, Arc<ObjectMirror>)> {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let mirrors = registry().lock().ok()?;
    mirrors
        .iter()
        .find(|(r, _)| *r == root)
        .map(|(r, m)| (r.clone(), m.clone()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatch;
    use object_store::memory::InMemory;

    use super::*;
    use crate::ParquetSink;
    use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
    use crate::sink::parquet_sink::remove_segments;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_767_225_600_000_000_000;

    fn segment(rows: usize) -> BTreeMap<Table, Vec<RecordBatch>> {
        let letters: Vec<DeadLetter> = (0..rows)
            .map(|i| DeadLetter::numbered(i, NEW_YEAR + i as i64, vec![0; i + 1]))
            .collect();
        BTreeMap::from([(
            Table::DeadLetters,
            vec![dead_letter_batch(&letters).unwrap()],
        )])
    }

    /// A mirror to `store` as a new process opens it: nothing known about the store's logs.
    fn mirror(store: Arc<InMemory>) -> ObjectMirror {
        ObjectMirror {
            url: "s3://lake/data".into(),
            store,
            prefix: ObjectPath::from("data"),
            unpublished: Mutex::default(),
            logs: Mutex::default(),
        }
    }

    /// The files the store's log of `dead_letters` lists, the version it holds for the local
    /// table under `root`, and that table's latest local version.
    fn store_log(store: &Arc<InMemory>, root: &Path) -> (Vec<String>, Option<i64>, u64) {
        let (id, head, _) = table_log::local_head(&root.join("dead_letters"))
            .unwrap()
            .unwrap();
        let store: Arc<dyn ObjectStore> = store.clone();
        let (files, holds) = on_own_runtime(|| async {
            let url = url::Url::parse("s3://lake/data/dead_letters").unwrap();
            let files = table_log::object_logged_files(url.clone(), store.clone())
                .await?
                .unwrap_or_default();
            let log = ObjectLog::open(Table::DeadLetters, url, store.clone()).await?;
            let holds = log
                .transaction_version(&format!("burnrate-mirror-{id}"))
                .await?;
            let mut names: Vec<String> = files.into_iter().map(|f| f.path).collect();
            names.sort();
            Ok((names, holds))
        })
        .unwrap();
        (files, holds, head)
    }

    /// The keys below `prefix`, sorted.
    fn keys(store: &Arc<InMemory>, prefix: &str) -> Vec<String> {
        let store = store.clone();
        let prefix = ObjectPath::from(prefix);
        let mut keys: Vec<String> = block_on(move || async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
        })
        .unwrap();
        keys.sort();
        keys
    }

    /// The data objects of `dead_letters`.
    fn objects(store: &Arc<InMemory>) -> Vec<String> {
        let mut keys = keys(store, "data/dead_letters");
        keys.retain(|key| !key.contains("/_delta_log/"));
        keys
    }

    #[test]
    fn the_stores_log_follows_the_local_one_from_wherever_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b, c) = (
            "date=2026-01-01/files-a.parquet",
            "date=2026-01-01/files-b.parquet",
            "date=2026-01-01/files-c.parquet",
        );
        // Written before the store was configured.
        let sink = ParquetSink::new(root);
        sink.write_segment("files-a", &segment(3)).unwrap();
        sink.write_segment("files-b", &segment(2)).unwrap();

        // A store that holds nothing of this table gets it as it is, files and all.
        let store = Arc::new(InMemory::new());
        mirror_dataset(root, mirror(store.clone()));
        assert_eq!(publish_all(root).unwrap(), 0, "seeded, not replayed");
        let (files, holds, head) = store_log(&store, root);
        assert_eq!(files, [a, b]);
        assert_eq!(holds, Some(head as i64));
        assert_eq!(
            objects(&store),
            [
                format!("data/dead_letters/{a}"),
                format!("data/dead_letters/{b}")
            ]
        );

        // Each later commit follows at once, an add and a removal alike; the removed file
        // leaves the store after the store's log has left it.
        let sink = ParquetSink::new(root);
        sink.write_segment("files-c", &segment(1)).unwrap();
        remove_segments(root, |segment, _| segment == "files-a").unwrap();
        let (files, holds, head) = store_log(&store, root);
        assert_eq!(files, [b, c]);
        assert_eq!(holds, Some(head as i64));
        assert_eq!(
            objects(&store),
            [
                format!("data/dead_letters/{b}"),
                format!("data/dead_letters/{c}")
            ]
        );

        // Commits the store's log missed (its copy failed, the process died) are replayed in
        // order at the next publish, and replaying one it had changes nothing.
        let marker = root.join(MIRROR_DIR).join("dead_letters.version");
        fs::write(&marker, (head - 2).to_string()).unwrap();
        assert_eq!(publish_all(root).unwrap(), 2);
        let (files, holds, _) = store_log(&store, root);
        assert_eq!(files, [b, c]);
        assert_eq!(holds, Some(head as i64));

        // A restarted process goes by what the store's log holds, not by its marker.
        fs::write(&marker, "0").unwrap();
        mirror_dataset(root, mirror(store.clone()));
        assert_eq!(publish_all(root).unwrap(), 0);
        assert_eq!(fs::read_to_string(&marker).unwrap(), head.to_string());

        // Local commits past the log's retention cannot be replayed: an error, not a gap.
        fs::write(&marker, (head - 2).to_string()).unwrap();
        let log_dir = root.join("dead_letters").join(table_log::LOG_DIR);
        fs::remove_file(log_dir.join(format!("{:020}.json", head - 1))).unwrap();
        fs::write(
            log_dir.join("_last_checkpoint"),
            format!(r#"{{"version":{head},"size":1}}"#),
        )
        .unwrap();
        let error = publish_all(root).unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains("no longer keeps"), "{error}");
    }

    /// The store's log's commit files of `dead_letters`, in order.
    fn store_commits(store: &Arc<InMemory>) -> Vec<String> {
        let mut keys = keys(store, "data/dead_letters/_delta_log");
        keys.retain(|key| key.ends_with(".json"));
        keys
    }

    #[test]
    fn catching_up_after_an_outage_takes_one_store_commit_for_many() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let store = Arc::new(InMemory::new());
        mirror_dataset(root, mirror(store.clone()));
        let sink = ParquetSink::new(root);
        sink.write_segment("files-a", &segment(1)).unwrap();
        let before = store_commits(&store);

        // The store is away (this process mirrors elsewhere meanwhile): ten files are added,
        // and one of them removed again.
        mirror_dataset(root, mirror(Arc::new(InMemory::new())));
        let sink = ParquetSink::new(root);
        for n in 0..10 {
            sink.write_segment(&format!("files-b{n}"), &segment(1))
                .unwrap();
        }
        remove_segments(root, |segment, _| segment == "files-b3").unwrap();

        // Back: the eleven local commits it missed go in as one.
        mirror_dataset(root, mirror(store.clone()));
        assert_eq!(publish_all(root).unwrap(), 11);
        let after = store_commits(&store);
        assert_eq!(after.len(), before.len() + 1, "{after:?}");
        let (files, holds, head) = store_log(&store, root);
        assert_eq!(holds, Some(head as i64));
        assert_eq!(files.len(), 10, "{files:?}");
        assert!(files.iter().all(|f| !f.contains("files-b3")), "{files:?}");
        // The file added and removed while the store was away is not in its log at all.
        let last = after.last().unwrap().clone();
        let commit = block_on(move || async move {
            let bytes = store.get(&ObjectPath::from(last)).await?.bytes().await?;
            Ok::<_, object_store::Error>(String::from_utf8_lossy(&bytes).into_owned())
        })
        .unwrap();
        assert!(!commit.contains("files-b3"), "{commit}");
        assert!(commit.contains("files-b9"), "{commit}");
    }

    #[test]
    fn the_stores_log_writes_a_checkpoint_every_hundred_commits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let store = Arc::new(InMemory::new());
        mirror_dataset(root, mirror(store.clone()));
        let sink = ParquetSink::new(root);
        for n in 0..101 {
            sink.write_segment(&format!("files-{n:03}"), &segment(1))
                .unwrap();
        }
        let checkpoint = ObjectPath::from(
            "data/dead_letters/_delta_log/00000000000000000100.checkpoint.parquet",
        );
        let head = store.clone();
        block_on(move || async move { head.head(&checkpoint).await.map(|_| ()) })
            .expect("the store's log has its checkpoint");
        // Read from that checkpoint: every file, and where this directory's log stands.
        let (files, holds, head) = store_log(&store, root);
        assert_eq!(files.len(), 101);
        assert_eq!(holds, Some(head as i64));
    }
}
