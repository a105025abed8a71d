//! Tower middleware over `gate-core` gates.
