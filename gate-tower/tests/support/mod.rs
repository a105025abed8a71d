//! Scaffolding shared by gate-tower's integration tests (the bodies and poll helpers sit
//! beside it).

#[path = "../../../gate-core/tests/support/in_flight.rs"]
mod in_flight;

pub(crate) use in_flight::InFlight;
