//! `#[gated]` compile tests: `ui/pass` must build and run, `ui/fail` must fail with exactly the
//! blessed `.stderr` (bless with `TRYBUILD=overwrite`, then read every diff).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
