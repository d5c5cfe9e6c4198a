//! What ships beside the binary is checked by the tools that consume it:
//! the alert rules by `promtool` (syntax, and unit tests of when each alert
//! fires), the systemd unit by `systemd-analyze verify`, and the operations
//! guide against the metric families the binary exports.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `tool`, or `None` (a failure when CI requires the services) if absent.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_SERVICES").is_none(),
            "{name} is not installed (scripts/services.sh install)"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    let (ok, out) = run(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "rules",
        "sluice-alerts.yml",
    ]));
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = run(Command::new(&promtool).current_dir(&dir).args([
        "test",
        "rules",
        "sluice-alerts.test.yml",
    ]));
    assert!(ok, "{out}");
}

/// Every metric an alert or the guide names is one the binary exports.
#[test]
fn alerts_and_the_guide_name_only_exported_metrics() {
    let known: Vec<&str> = sluice::admin::exposition::FAMILIES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let exported = |name: &str| {
        known.contains(&name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| known.contains(&f)))
    };
    for file in ["deploy/prometheus/sluice-alerts.yml", "docs/operations.md"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("sluice_") && word.len() > "sluice_".len() {
                assert!(
                    exported(word),
                    "{file} names `{word}`, which Sluice does not export"
                );
            }
        }
    }
    // ... and the guide documents every family.
    let guide = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for name in known {
        assert!(
            guide.contains(&format!("`{name}`")),
            "docs/operations.md does not document `{name}`"
        );
    }
}

/// The unit as shipped, but for where the binary is installed, which here
/// is the binary under test: `systemd-analyze verify` then checks the
/// command exists, and prints a warning for any key or value it would ignore.
#[test]
fn the_systemd_unit_verifies() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/sluice.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/sluice "), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("sluice.service");
    std::fs::write(
        path,
        unit.replace("/usr/local/bin/sluice", env!("CARGO_BIN_EXE_sluice")),
    )
    .unwrap();
    let (ok, out) = run(Command::new(&analyze).arg("verify").arg(path));
    assert!(ok, "{out}");
    assert!(out.trim().is_empty(), "systemd-analyze warns: {out}");
    // A unit it would half-ignore fails here: the check can fail.
    std::fs::write(path, unit.replace("Type=exec", "Type=exce")).unwrap();
    let (_, out) = run(Command::new(&analyze).arg("verify").arg(path));
    assert!(out.contains("exce"), "a bad value goes unnoticed: {out}");
}

/// The Kubernetes manifests, decoded strictly into the Kubernetes API types
/// by `deploy/kubernetes/check` (Go, with the API's own structs), which
/// also checks the references between objects; a typo fails it.
#[test]
fn the_kubernetes_manifests_check() {
    let Some(go) = tool("go") else {
        return;
    };
    let check = repo().join("deploy/kubernetes/check");
    let (ok, out) = run(Command::new(&go)
        .current_dir(&check)
        .args(["run", ".", "../sluice.yaml"]));
    assert!(
        ok && out.contains("ok: ../sluice.yaml (5 objects)"),
        "{out}"
    );
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/sluice.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, text.replace("readinessProbe", "readinesProbe")).unwrap();
    let (ok, out) = run(Command::new(&go)
        .current_dir(&check)
        .arg("run")
        .arg(".")
        .arg(&bad));
    assert!(
        !ok && out.contains("readinesProbe"),
        "a misspelt field passes: {out}"
    );
}

/// The configuration the Kubernetes manifests ship passes `sluice validate`
/// (with its token file and data directory moved to a temporary directory).
#[test]
fn the_kubernetes_config_map_validates() {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/sluice.yaml")).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "sluice.toml: |");
    lines.next().expect("a sluice.toml key in the ConfigMap");
    let toml: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let toml = toml
        .join("\n")
        .replace(
            "/etc/sluice-token/token",
            &dir.path().join("token").display().to_string(),
        )
        .replace(
            "/var/lib/sluice",
            &dir.path().join("data").display().to_string(),
        );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, &toml).unwrap();
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&config));
    assert!(ok, "{out}\n{toml}");
}
