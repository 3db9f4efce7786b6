//! Held (blocking) requests: how many wait, per client address and in all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::error::HttpError;

/// Counts held requests per client address and in all.
pub struct HeldLimiter {
    per_client: usize,
    total: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One held request; dropping it releases the slot.
pub struct HeldPermit<'a> {
    limiter: &'a HeldLimiter,
    client: Option<IpAddr>,
}

impl HeldLimiter {
    /// A limiter with the given caps.
    pub fn new(per_client: usize, total: usize) -> Self {
        Self {
            per_client,
            total,
            state: Mutex::default(),
        }
    }

    /// Takes a slot for `client`, or says which limit was hit. `None` is
    /// another origin forwarding its clients' requests (they were counted
    /// there): only the total applies.
    pub fn acquire(&self, client: Option<IpAddr>) -> Result<HeldPermit<'_>, HttpError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 >= self.total {
            return Err(HttpError::TooManyRequests("too many held requests".into()));
        }
        if let Some(client) = client {
            let n = st.1.entry(client).or_default();
            if *n >= self.per_client {
                return Err(HttpError::TooManyRequests(format!(
                    "more than {} held requests from this address",
                    self.per_client
                )));
            }
            *n += 1;
        }
        st.0 += 1;
        Ok(HeldPermit {
            limiter: self,
            client,
        })
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for HeldPermit<'_> {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 -= 1;
        if let Some(client) = self.client
            && let Some(n) = st.1.get_mut(&client)
        {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_requests_are_capped_per_client_and_released() {
        let l = HeldLimiter::new(2, 3);
        let a = Some("127.0.0.1".parse().unwrap());
        let b = Some("127.0.0.2".parse().unwrap());
        let p1 = l.acquire(a).unwrap();
        let _p2 = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_err());
        let _p3 = l.acquire(b).unwrap();
        assert!(l.acquire(b).is_err(), "total cap");
        drop(p1);
        assert!(l.acquire(a).is_ok());
    }

    #[test]
    fn another_origins_requests_count_only_toward_the_total() {
        let l = HeldLimiter::new(1, 3);
        let a = Some("127.0.0.1".parse().unwrap());
        let _p1 = l.acquire(None).unwrap();
        let _p2 = l.acquire(None).unwrap();
        let p3 = l.acquire(a).unwrap();
        assert!(l.acquire(None).is_err(), "total cap");
        drop(p3);
        assert_eq!(l.held(), 2);
        assert!(l.acquire(a).is_ok());
    }
}
