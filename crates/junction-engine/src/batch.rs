//! Group commit: items that callers submit at about the same time are
//! written by one task in one call (one transaction), and each caller gets
//! its own answer. Used for task completions, CI/CD jobs and XDS
//! activities.

use std::future::Future;
use std::sync::Arc;

use junction_store::StoreError;
use tokio::sync::{mpsc, oneshot};

type Answer<R> = oneshot::Sender<Result<R, String>>;

/// When a failed batch may be written again item by item (so one bad item
/// does not fail the others). A batch whose commit may have happened (the
/// connection broke during COMMIT) must never be written twice; writes that
/// are idempotent may always split.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Split {
    Always,
    OnDataErrors,
}

#[derive(Debug)]
pub(crate) struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Answer<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher { tx: self.tx.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer task: `write` takes up to `max` items and answers
    /// one result per item, in order.
    pub fn start<W, Fut>(max: usize, split: Split, write: W) -> Batcher<T, R>
    where
        W: Fn(Arc<Vec<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, Answer<R>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, answers): (Vec<T>, Vec<Answer<R>>) = batch.into_iter().unzip();
                let items = Arc::new(items);
                match write(items.clone()).await {
                    Ok(results) => {
                        for (a, r) in answers.into_iter().zip(results) {
                            let _ = a.send(Ok(r));
                        }
                    }
                    Err(e) if items.len() > 1 && (matches!(split, Split::Always) || e.is_data_error()) => {
                        for (item, a) in items.iter().zip(answers) {
                            let alone = write(Arc::new(vec![item.clone()])).await;
                            let _ = a.send(
                                alone
                                    .map_err(|e| e.to_string())
                                    .and_then(|mut r| r.pop().ok_or_else(|| "the item was not written".to_string())),
                            );
                        }
                    }
                    Err(e) => {
                        for a in answers {
                            let _ = a.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Batcher { tx }
    }

    /// Hands `item` to the writer and waits for its answer; `Err` with the
    /// reason when it could not be written (or the writer stopped).
    pub async fn submit(&self, item: T) -> Result<R, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((item, tx)).map_err(|_| "the writer stopped".to_string())?;
        rx.await.unwrap_or_else(|_| Err("the writer stopped".to_string()))
    }
}
