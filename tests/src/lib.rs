//! Integration tests for the gate workspace; see `tests/`.
