//! A small pool of SQLite connections used from async code: each call borrows a connection and
//! runs on the blocking thread pool, so a query never waits behind the ingestion writer (WAL
//! readers see the last commit) and never blocks the async runtime.

use crate::schema::{self, Role};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why a pooled call could not run its closure.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A connection could not be opened.
    #[error("cannot open the database: {0}")]
    Open(#[from] schema::SchemaError),
    /// The blocking task failed (the closure panicked).
    #[error("database task failed: {0}")]
    Task(String),
    /// The pool was closed.
    #[error("the database pool is closed")]
    Closed,
}

/// Connections of one role, at most `size` in use at once.
pub struct Pool {
    path: PathBuf,
    role: Role,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Pool {
    /// A pool of up to `size` connections to `path`, opened lazily, each waiting up to
    /// `busy_timeout` for another writer.
    pub fn new(path: PathBuf, role: Role, size: usize, busy_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            path,
            role,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        })
    }

    /// Runs `f` with a connection on the blocking thread pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Closed)?;
        let pooled = self.take_idle();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let (path, role, busy) = (self.path.clone(), self.role, self.busy_timeout);
                tokio::task::spawn_blocking(move || schema::open(&path, role, busy))
                    .await
                    .map_err(|e| PoolError::Task(e.to_string()))??
            }
        };
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut conn);
            (conn, out)
        })
        .await
        .map_err(|e| PoolError::Task(e.to_string()))?;
        self.give_back(conn);
        Ok(out)
    }

    /// Runs a short `f` (well under a millisecond, like an indexed read) right on the calling
    /// task: under CPU pressure every hand-off to another thread waits for the scheduler, which
    /// is what a query's tail latency is made of.
    pub async fn run_inline<T, F>(self: &Arc<Self>, f: F) -> Result<T, PoolError>
    where
        F: FnOnce(&mut Connection) -> T,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Closed)?;
        let pooled = self.take_idle();
        let mut conn = match pooled {
            Some(c) => c,
            None => schema::open(&self.path, self.role, self.busy_timeout)?,
        };
        let out = f(&mut conn);
        self.give_back(conn);
        Ok(out)
    }

    /// An idle connection, if one is kept.
    fn take_idle(&self) -> Option<Connection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Keeps a connection for the next caller.
    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}
