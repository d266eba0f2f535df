//! The dataset on object storage (S3 or S3-compatible): every Parquet file the sinks write is
//! put under the same key below the store's prefix before it counts as durable, and a file the
//! sinks remove (a replay rewriting what a crashed run left) is deleted there too. The local
//! data directory stays the working copy the engine's state is rebuilt from; the store is what
//! readers (`burnrate query --data s3://...`, reports, other replicas' queries) see.
//!
//! Every writer of the dataset goes through [`crate::ParquetSink::write_segment`] and
//! [`crate::sink::parquet_sink::remove_segments`], so the mirror hooks in there, found by the
//! dataset's directory, instead of being threaded through each source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::EngineError;

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

    /// Puts `bytes` at `name` below the prefix (reports).
    pub fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        let key = self.prefix.clone().join(name);
        let store = self.store.clone();
        block_on(move || async move { store.put(&key, PutPayload::from(bytes)).await.map(|_| ()) })
    }
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
