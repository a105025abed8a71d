//! Trait impls written with `async fn`, including a trait that requires `Send` futures, and a
//! default method.

use std::future::Future;

use gate_core::gated;

trait Fetch {
    fn fetch(&self, id: u32) -> impl Future<Output = Result<String, String>> + Send;
}

trait Describe {
    async fn describe(&self) -> String;

    #[gated(limit = 1)]
    async fn twice(&self) -> String {
        let once = self.describe().await;
        format!("{once}{once}")
    }
}

struct Api;

impl Fetch for Api {
    #[gated(limit = 5, retry = 2)]
    async fn fetch(&self, id: u32) -> Result<String, String> {
        Ok(format!("item {id}"))
    }
}

impl Describe for Api {
    #[gated(limit = 5)]
    async fn describe(&self) -> String {
        "api".to_owned()
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    rt.block_on(async {
        let fetched = tokio::spawn(async { Api.fetch(3).await }).await.unwrap();
        assert_eq!(fetched.unwrap(), "item 3");
        assert_eq!(Api.twice().await, "apiapi");
    });
}
