//! The logic behind the runnable programs in `examples/`, kept in a library so that tests
//! can run every example (and the demo) with small numbers and check what it printed.
//!
//! - [`seed`]: the five examples of the asyncio semaphore notes, in Rust.
//! - [`mock`]: an OpenAI-compatible mock API on 127.0.0.1 with rate and concurrency limits.
//! - [`client`]: a minimal HTTP/1 client for `POST /v1/chat/completions`.
//! - [`demo`]: the README's first command: the same prompts pushed three ways, then a table.

pub mod client;
pub mod demo;
pub mod mock;
mod out;
pub mod seed;

pub use out::Out;
