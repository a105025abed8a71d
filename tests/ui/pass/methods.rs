//! Methods keep their receivers: `&self`, `&mut self`, `self: Arc<Self>`, by value, and
//! methods of generic impls, with and without retries.

use std::sync::Arc;

use gate_core::gated;

#[derive(Debug)]
struct Busy;

struct Client<T> {
    name: T,
    calls: u32,
}

impl<T: AsRef<str> + Send + Sync> Client<T> {
    #[gated(limit = 4)]
    async fn name(&self) -> &str {
        self.name.as_ref()
    }

    #[gated(limit = 4, retry = 2)]
    async fn name_len(&self, extra: &str) -> Result<usize, Busy> {
        Ok(self.name.as_ref().len() + extra.len())
    }

    #[gated(limit = 1)]
    async fn bump(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[gated(limit = 1, retry = 3)]
    async fn bump_until(&mut self, target: u32) -> Result<u32, Busy> {
        self.calls += 1;
        if self.calls < target { Err(Busy) } else { Ok(self.calls) }
    }

    #[gated(limit = 2, retry = 1)]
    async fn shared(self: Arc<Self>) -> Result<usize, Busy> {
        Ok(Arc::strong_count(&self))
    }

    #[gated(limit = 2)]
    async fn into_name(self) -> T {
        self.name
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let mut client = Client { name: "api", calls: 0 };
        assert_eq!(client.name().await, "api");
        assert_eq!(client.name_len("!").await.unwrap(), 4);
        assert_eq!(client.bump().await, 1);
        assert_eq!(client.bump_until(3).await.unwrap(), 3);
        let client = Arc::new(client);
        assert_eq!(Arc::clone(&client).shared().await.unwrap(), 2);
        let client = Arc::into_inner(client).unwrap();
        assert_eq!(client.into_name().await, "api");
    });
}
