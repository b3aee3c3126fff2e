use std::sync::Arc;

use rampart_crypto::{PasswordHasher, PasswordVerification, StoredPasswordHash};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::{CoreError, CoreResult};

/// Runs Argon2 on the blocking pool with bounded concurrency and a bounded queue, so a
/// login storm neither starves the async runtime nor grows memory without limit.
#[derive(Clone)]
pub struct PasswordPool {
    hasher: Arc<PasswordHasher>,
    running: Arc<Semaphore>,
    queued: Arc<Semaphore>,
}

impl PasswordPool {
    pub fn new(hasher: PasswordHasher, concurrency: usize, queue: usize) -> Self {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map(usize::from).unwrap_or(2)
        } else {
            concurrency
        };
        Self {
            hasher: Arc::new(hasher),
            running: Arc::new(Semaphore::new(concurrency)),
            queued: Arc::new(Semaphore::new(concurrency + queue)),
        }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&PasswordHasher) -> T + Send + 'static) -> CoreResult<T> {
        let _slot = self.queued.clone().try_acquire_owned().map_err(|_| CoreError::Busy)?;
        let _permit = self.running.clone().acquire_owned().await.map_err(|_| CoreError::Busy)?;
        let hasher = Arc::clone(&self.hasher);
        tokio::task::spawn_blocking(move || work(&hasher)).await.map_err(CoreError::internal)
    }

    pub async fn hash(&self, password: SecretString) -> CoreResult<StoredPasswordHash> {
        self.run(move |h| h.hash(&password)).await?.map_err(CoreError::internal)
    }

    /// `stored = None` verifies against a dummy hash: same cost, always false.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<StoredPasswordHash>,
    ) -> CoreResult<PasswordVerification> {
        self.run(move |h| h.verify(&password, stored.as_ref())).await
    }
}
