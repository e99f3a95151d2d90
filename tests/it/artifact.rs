//! The shippable artifact (README, "Installing the package"): `--version` names the
//! source revision, completions and the man page come from the program itself, the
//! license file matches `Cargo.toml`, and the package metadata lists what the package
//! must hold. (`.ci/run` builds the package itself and lists its contents.)

use std::path::Path;
use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
}

fn repo(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn stdout(args: &[&str]) -> String {
    let out = binary().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `--version` is the package version and the git revision this build came from.
#[test]
fn version_names_the_source_revision() {
    let version = stdout(&["--version"]);
    let describe = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    let pkg = env!("CARGO_PKG_VERSION");
    match describe {
        // The working tree may have changed since the build (dirty or not): the commit
        // is what must match.
        Some(d) => {
            let commit = d.trim_end_matches("-dirty");
            assert!(
                version.starts_with(&format!("invoice-sync {pkg} ({commit}")),
                "{version:?} does not name {d}"
            );
        }
        None => assert_eq!(version.trim(), format!("invoice-sync {pkg} (unknown)")),
    }
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let commands = [
        "run",
        "daemon",
        "import",
        "status",
        "deactivate",
        "export-paid",
        "resend",
        "check",
        "sandbox",
        "completions",
        "manpage",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for c in commands {
            assert!(script.contains(c), "{shell} completion lacks {c}");
        }
    }
    assert!(stdout(&["completions", "zsh"]).starts_with("#compdef invoice-sync"));
    let man = stdout(&["manpage"]);
    assert!(
        man.contains(".TH invoice-sync 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains(env!("CARGO_PKG_VERSION")));
    for c in commands {
        assert!(
            man.contains(&c.replace('-', "\\-")),
            "the man page lacks {c}"
        );
    }
    let bad = binary().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_license_file_matches_cargo_toml() {
    let manifest = repo("Cargo.toml");
    assert!(manifest.contains("license = \"MIT\""));
    let license = repo("LICENSE");
    assert!(license.starts_with("MIT License\n"), "{license}");
    assert!(license.contains("Permission is hereby granted, free of charge"));
}

/// What the package must hold: the binary, the six units, the sysusers file, the sample
/// config as a conffile, the man page and three completions; and a dist profile that
/// keeps the binary small.
#[test]
fn the_package_metadata_lists_everything_an_install_needs() {
    let manifest: toml::Value = toml::from_str(&repo("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dest = |want: &str| assets.iter().any(|(_, d)| d == want);
    for want in [
        "usr/bin/",
        "etc/invoice-sync/invoice-sync.toml",
        "usr/lib/sysusers.d/invoice-sync.conf",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/invoice-sync",
        "usr/share/zsh/vendor-completions/",
        "usr/share/fish/vendor_completions.d/",
    ] {
        assert!(dest(want), "no asset goes to {want}: {assets:?}");
    }
    for unit in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")).unwrap() {
        let name = unit.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".service") || name.ends_with(".timer") {
            assert!(
                assets.iter().any(
                    |(s, d)| s.ends_with(&format!("/{name}")) && d == "usr/lib/systemd/system/"
                ),
                "the package lacks systemd/{name}"
            );
        }
    }
    assert_eq!(
        deb["conf-files"].as_array().unwrap()[0].as_str(),
        Some("/etc/invoice-sync/invoice-sync.toml")
    );
    // The packaged config is a valid config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoice-sync.toml");
    std::fs::write(&path, repo("packaging/invoice-sync.toml")).unwrap();
    invoice_sync::config::Config::load(&path)
        .expect("packaging/invoice-sync.toml is a valid config");
    let dist = &manifest["profile"]["dist"];
    assert_eq!(dist["inherits"].as_str(), Some("release"));
}
