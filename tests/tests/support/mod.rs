//! Scaffolding shared by the integration tests of the `tests` crate.

#[path = "../../../gate-core/tests/support/in_flight.rs"]
mod in_flight;

pub(crate) use in_flight::InFlight;
