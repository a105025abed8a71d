//! README's Rust snippets are compiled in `examples/readme.rs`: this checks that each of them
//! still appears there, so a snippet edited in README.md without its compiled copy fails here,
//! and runs them.
//!
//! A snippet is compared paragraph by paragraph (README may show in one block what the
//! compiled copy splits over two functions) and with whitespace removed (rustfmt may break a
//! line that README keeps whole).

// The example's `main` is not called here: the test calls its `run`.
#[allow(dead_code)]
#[path = "../examples/readme.rs"]
pub mod readme;

const README: &str = include_str!("../../README.md");
const COMPILED: &str = include_str!("../examples/readme.rs");

/// The bodies of the ```` ```rust ```` blocks of a Markdown text.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```rust") => current = Some(String::new()),
            Some(_) if fence.starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The blank-line-separated paragraphs of a block.
fn paragraphs(block: &str) -> impl Iterator<Item = &str> {
    block.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The paragraphs of `markdown`'s Rust snippets that `compiled` does not contain.
fn missing(markdown: &str, compiled: &str) -> Vec<String> {
    let compiled = squeeze(compiled);
    rust_blocks(markdown)
        .iter()
        .flat_map(|block| paragraphs(block).map(str::to_owned).collect::<Vec<_>>())
        .filter(|paragraph| !compiled.contains(&squeeze(paragraph)))
        .collect()
}

#[test]
fn every_readme_rust_snippet_is_in_the_compiled_readme_example() {
    assert!(
        rust_blocks(README).len() >= 3,
        "README's macro, batch and layer snippets"
    );
    assert_eq!(
        missing(README, COMPILED),
        Vec::<String>::new(),
        "README.md has snippets that examples/examples/readme.rs does not compile (whitespace \
         aside); update the one to match the other"
    );
}

#[test]
fn the_check_finds_a_changed_snippet_and_ignores_layout_and_other_blocks() {
    let readme = "```sh\ncargo run\n```\n\n```rust\nlet app = Router::new().layer(GateLayer::new(64));\n\nserve(app);\n```\n";
    // Split over two functions, and reflowed the way rustfmt breaks a long chain.
    let compiled = "fn a() {\n    let app = Router::new()\n        .layer(GateLayer::new(64));\n}\nfn b() { serve(app); }\n";
    assert_eq!(missing(readme, compiled), Vec::<String>::new());
    // An argument changed in README and not in the compiled copy.
    let changed = readme.replace("new(64)", "new(65)");
    assert_eq!(
        missing(&changed, compiled),
        ["let app = Router::new().layer(GateLayer::new(65));"]
    );
}

#[tokio::test]
async fn the_readme_snippets_run_against_each_other_on_localhost() {
    readme::run().await.expect("README's snippets run");
}
