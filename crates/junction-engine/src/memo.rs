//! A bounded in-process memory of things that never change once stored
//! (application revisions, step versions, schema versions, companies, …),
//! shared by clones of the engine.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    map: Arc<Mutex<HashMap<K, V>>>,
    capacity: usize,
}

impl<K, V> Clone for Memo<K, V> {
    fn clone(&self) -> Self {
        Memo { map: self.map.clone(), capacity: self.capacity }
    }
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(capacity: usize) -> Self {
        Memo { map: Arc::default(), capacity }
    }

    /// The remembered value, or `fetch`'s answer (remembered when found).
    /// When full, the memory starts over: simpler than LRU, and a refill
    /// costs one read per key.
    pub async fn get_or_fetch<E>(
        &self,
        key: K,
        fetch: impl Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<V>, E> {
        if let Some(v) = self.lock().get(&key) {
            return Ok(Some(v.clone()));
        }
        let value = fetch.await?;
        if let Some(v) = &value {
            let mut map = self.lock();
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(key, v.clone());
        }
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_found_values_forgets_when_full_and_never_remembers_absence() {
        let memo: Memo<i64, String> = Memo::new(2);
        let found = |v: &str| std::future::ready(Ok::<_, ()>(Some(v.to_string())));
        assert_eq!(memo.get_or_fetch(1, found("one")).await, Ok(Some("one".into())));
        assert_eq!(memo.get_or_fetch(1, found("changed")).await, Ok(Some("one".into())), "remembered");
        assert_eq!(memo.get_or_fetch(2, std::future::ready(Ok::<_, ()>(None))).await, Ok(None));
        assert_eq!(memo.get_or_fetch(2, found("two")).await, Ok(Some("two".into())), "absence is not remembered");
        assert_eq!(memo.get_or_fetch(3, found("three")).await, Ok(Some("three".into())));
        assert_eq!(memo.get_or_fetch(1, found("again")).await, Ok(Some("again".into())), "full: started over");
        assert_eq!(memo.get_or_fetch(4, std::future::ready(Err(()))).await, Err(()));
    }
}
