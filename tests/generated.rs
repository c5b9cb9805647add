//! The checked-in completions and man pages match the clap definition.

mod common;

use common::*;

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let fresh = tempfile::tempdir().unwrap();
    mp::generate::write_all(fresh.path()).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["completions", "man"] {
        let names = list(&fresh.path().join(dir));
        assert!(!names.is_empty());
        assert_eq!(names, list(&repo.join(dir)), "{dir}/ lists other files");
        for name in names {
            let want = std::fs::read(fresh.path().join(dir).join(&name)).unwrap();
            let have = std::fs::read(repo.join(dir).join(&name)).unwrap();
            assert!(
                want == have,
                "{dir}/{name} is stale: run `cargo run --example generate` and commit the result"
            );
        }
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let out = spawn(mp().args(["receive", "--help"])).wait(LIMIT);
    out.assert_code(0);
    let help = String::from_utf8(out.stdout).unwrap();
    for line in ["Exit codes:", "wrong code", "130"] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
}

#[test]
fn readme_exit_code_table_matches_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for kind in mp::error::Kind::ALL {
        let row = format!(
            "| {} | `{}` | {} |",
            kind.exit_code(),
            kind.name(),
            kind.meaning()
                .replace("--overwrite", "`--overwrite`")
                .replace("--yes", "`--yes`")
        );
        assert!(readme.contains(&row), "README lacks the row {row:?}");
    }
}

#[test]
fn man_pages_show_values_and_environment_and_name_no_missing_page() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = std::fs::read_to_string(repo.join("man/mp.1")).unwrap();
    assert!(
        !main.contains("mp\\-help"),
        "mp.1 names a page that does not exist"
    );
    let send = std::fs::read_to_string(repo.join("man/mp-send.1")).unwrap();
    assert!(send.contains(".SH ENVIRONMENT"), "{send}");
    assert!(send.contains("MP_SIGNAL"), "{send}");
    assert!(
        send.contains("\\fB\\-\\-signal\\fR \\fIURL\\fR"),
        "the synopsis shows option values"
    );
    let bash = std::fs::read_to_string(repo.join("completions/mp.bash")).unwrap();
    assert!(
        !bash.contains("generate") && !bash.contains("sctp"),
        "nothing hidden offered"
    );
    assert!(
        bash.contains("compgen -f -- \"${cur}\""),
        "mp send completes paths"
    );
}
