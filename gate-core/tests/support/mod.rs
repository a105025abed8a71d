//! Scaffolding shared by gate-core's integration tests.

mod in_flight;

pub(crate) use in_flight::InFlight;
