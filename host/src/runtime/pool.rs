//! A small pool of initialized component instances, so independent actions run in parallel.
//! An instance that trapped is dropped, never returned; the next taker gets a fresh one.

use super::{Guest, Runtime, error_text};
use anyhow::{Result, anyhow};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Pool {
    pub rt: Runtime,
    config_json: String,
    idle: Mutex<Vec<Guest>>,
    permits: Arc<Semaphore>,
    pub size: usize,
}

impl Pool {
    /// `config_json` is passed to every new instance's `initialize`.
    pub fn new(rt: Runtime, config_json: String, size: usize) -> Arc<Pool> {
        let size = size.max(1);
        Arc::new(Pool {
            rt,
            config_json,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// Puts an already initialized instance in the pool.
    pub fn offer(&self, guest: Guest) {
        if !guest.poisoned {
            self.idle.lock().expect("pool").push(guest);
        }
    }

    /// An initialized instance, waiting while `size` are in use.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow!("the instance pool is closed"))?;
        let reuse = self.idle.lock().expect("pool").pop();
        let guest = match reuse {
            Some(g) => g,
            None => {
                let mut g = self.rt.instance().await?;
                g.initialize(&self.config_json)
                    .await?
                    .map_err(|e| anyhow!(error_text(&e)))?;
                g
            }
        };
        Ok(Pooled {
            guest: Some(guest),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// An instance on loan; it goes back to the pool on drop unless it trapped.
pub struct Pooled {
    guest: Option<Guest>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Pooled {
    type Target = Guest;
    fn deref(&self) -> &Guest {
        self.guest.as_ref().expect("pooled guest")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Guest {
        self.guest.as_mut().expect("pooled guest")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(g) = self.guest.take() {
            self.pool.offer(g);
        }
    }
}
