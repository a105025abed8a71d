//! The scaffolding behind the runnable programs in `examples/`: what is not their lesson,
//! kept in a library as tonic keeps its `common.rs`. Each example file shows the gate code it
//! teaches; the tests include those files and run them with small numbers and paused time.
//!
//! - [`seed`]: what the seed's five examples share (a gauge, log stamps, a refusing server).
//! - [`mock`]: a mock OpenAI API on 127.0.0.1 with OpenAI's request, token and concurrency
//!   limits, headers and errors (`cargo run --example mock_llm` serves it alone).
//! - [`client`]: a small reqwest client for `POST /v1/chat/completions`.
//! - [`demo`]: the README's first command: the same prompts pushed three ways, then a table.
//! - [`plot`]: `--plot run.svg` for the demo and `llm_batch`: a run's timeline, sampled
//!   while it goes, drawn with plotters.
//! - [`redis_server`]: a redis-server of the demo's own, for `demo --replicas`.
//! - [`llm_batch`]: the batch tool (JSONL in, JSONL out in input order, RPM + TPM budgets,
//!   resume after a crash) and the OpenAI Cookbook's script beside it as the baseline.

pub mod client;
pub mod demo;
pub mod llm_batch;
pub mod mock;
mod out;
pub mod plot;
pub mod redis_server;
pub mod seed;

pub use out::Out;
