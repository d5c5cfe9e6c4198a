//! `sluice plugin new`: scaffolds a plugin project in any supported language.
//!
//! Everything written comes from files embedded in the binary when it was
//! built (`runtime/build.rs`), so the command works on any machine:
//!
//! - the language's template, `guest-sdk/templates/<lang>/`, with the
//!   placeholders `{{name}}` (the name as given, `my-filter`), `{{name_snake}}`
//!   (`my_filter`) and `{{sdk_path}}` (the Rust guest SDK directory) replaced
//!   in file contents and file names;
//! - the language helper, `guest-sdk/<lang>/`, into `NAME/sdk/` (Rust has
//!   none: its template depends on the `sluice-guest` crate by version, and
//!   by path on the SDK in this checkout);
//! - the plugin contract, `guest-sdk/wit/*.wit`, into `NAME/wit/`.
//!
//! Every template holds a `build.sh` producing `NAME/NAME.wasm` and a
//! `test/` directory with a config, an input and the expected output of
//! `sluice plugin test`, so a new project builds and passes its test at once.
//!
//! The project is written into a hidden temporary directory beside the target
//! and renamed into place when complete: a failure never leaves half a
//! project behind, and an existing directory is never overwritten.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A file embedded at build time (see `runtime/build.rs`).
#[derive(Debug)]
pub(crate) struct EmbeddedFile {
    /// `templates/<lang>`, `sdk/<lang>` or `wit`.
    pub group: &'static str,
    /// Path inside its group, `/`-separated.
    pub path: &'static str,
    pub bytes: &'static [u8],
    /// Written with execute permission (`*.sh`, or executable in the repo).
    pub executable: bool,
}

include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));

/// Directory of the Rust guest SDK (`guest-sdk/` of the repository this
/// binary was built from): the default `{{sdk_path}}`.
pub(crate) const DEFAULT_SDK_PATH: &str = env!("SLUICE_GUEST_SDK_DIR");

/// The languages a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `sluice-guest` crate.
    Rust,
    /// JavaScript, built with componentize-js.
    Js,
    /// Python, built with componentize-py.
    Python,
    /// C, built with clang and wasm-tools.
    C,
    /// Go, built with Go's wasip1 target and wasm-tools.
    Go,
}

impl Lang {
    /// Every language, in the order the docs list them.
    pub const ALL: [Lang; 5] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C, Lang::Go];

    /// The name used in directories and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::C => "c",
            Lang::Go => "go",
        }
    }

    /// Whether this build of sluice holds a template for the language.
    pub fn has_template(self) -> bool {
        files_of(&format!("templates/{}", self.as_str()))
            .next()
            .is_some()
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// Language of the template.
    pub lang: Lang,
    /// Plugin name: kebab-case ASCII (`my-filter`); also the directory name.
    pub name: String,
    /// Directory in which `name/` is created.
    pub parent: PathBuf,
    /// Rust guest SDK directory for `{{sdk_path}}`; [`DEFAULT_SDK_PATH`] if `None`.
    pub sdk_path: Option<PathBuf>,
}

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct Created {
    /// The new project directory.
    pub dir: PathBuf,
    /// Files written, relative to `dir`, sorted.
    pub files: Vec<String>,
    /// The `{{sdk_path}}` used.
    pub sdk_path: PathBuf,
}

/// Checks that `name` is kebab-case ASCII: lowercase letters and digits in
/// words joined by single `-`, starting with a letter, at most 64 bytes.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let hint = "use kebab-case ASCII: lowercase letters and digits in words joined by `-`, \
                starting with a letter (e.g. `my-filter`)";
    if name.is_empty() {
        bail!("the plugin name is empty; {hint}");
    }
    if name.len() > 64 {
        bail!("plugin name `{name}` is longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name `{name}` does not start with a lowercase letter; {hint}");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        bail!("plugin name `{name}` contains {c:?}; {hint}");
    }
    if name.ends_with('-') || name.contains("--") {
        bail!("plugin name `{name}` has an empty word between `-`; {hint}");
    }
    Ok(())
}

/// `my-filter` → `my_filter`.
pub(crate) fn snake_case(name: &str) -> String {
    name.replace('-', "_")
}

fn files_of(group: &str) -> impl Iterator<Item = &'static EmbeddedFile> {
    FILES.iter().filter(move |f| f.group == group)
}

/// Replaces the placeholders in `text`.
fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// Scaffolds the project described by `new` (see the module docs).
pub fn create(new: &NewPlugin) -> Result<Created> {
    validate_name(&new.name)?;
    let lang = new.lang;
    if !lang.has_template() {
        bail!(
            "this build of sluice has no `{lang}` template: guest-sdk/templates/{lang}/ was \
             missing when it was compiled (available: {})",
            Lang::ALL
                .iter()
                .filter(|l| l.has_template())
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !new.parent.is_dir() {
        bail!(
            "{} is not a directory (it is where `{}/` would be created)",
            new.parent.display(),
            new.name
        );
    }
    let dir = new.parent.join(&new.name);
    if std::fs::symlink_metadata(&dir).is_ok() {
        bail!(
            "{} already exists; choose another name or remove it first",
            dir.display()
        );
    }
    let sdk_path = match &new.sdk_path {
        Some(p) => std::path::absolute(p)
            .with_context(|| format!("resolving --sdk-path {}", p.display()))?,
        None => PathBuf::from(DEFAULT_SDK_PATH),
    };
    let sdk_text = sdk_path.display().to_string().replace('\\', "/");
    if sdk_text.contains('"') {
        bail!("--sdk-path {sdk_text} contains `\"`, which cannot be written into Cargo.toml");
    }
    let snake = snake_case(&new.name);
    let vars = [
        ("name", new.name.as_str()),
        ("name_snake", snake.as_str()),
        ("sdk_path", sdk_text.as_str()),
    ];

    // What goes where, relative to the project directory.
    let mut plan: Vec<(String, &'static EmbeddedFile, bool)> = Vec::new();
    for f in files_of(&format!("templates/{lang}")) {
        plan.push((substitute(f.path, &vars), f, true));
    }
    for f in files_of(&format!("sdk/{lang}")) {
        plan.push((format!("sdk/{}", f.path), f, false));
    }
    for f in files_of("wit") {
        plan.push((format!("wit/{}", f.path), f, false));
    }

    // Write into a hidden sibling, then rename: all or nothing.
    let staging = new
        .parent
        .join(format!(".{}.sluice-new-{}", new.name, std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing stale {}", staging.display()))?;
    }
    let written = write_all(&staging, &plan, &vars).and_then(|files| {
        std::fs::rename(&staging, &dir)
            .with_context(|| format!("moving {} to {}", staging.display(), dir.display()))?;
        Ok(files)
    });
    match written {
        Ok(mut files) => {
            files.sort();
            Ok(Created {
                dir,
                files,
                sdk_path,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn write_all(
    root: &Path,
    plan: &[(String, &'static EmbeddedFile, bool)],
    vars: &[(&str, &str)],
) -> Result<Vec<String>> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut files = Vec::with_capacity(plan.len());
    for (rel, file, is_template) in plan {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // Only templates hold placeholders; helpers and WIT are copied as is
        // (binary files always are).
        let bytes = match (is_template, std::str::from_utf8(file.bytes)) {
            (true, Ok(text)) => substitute(text, vars).into_bytes(),
            _ => file.bytes.to_vec(),
        };
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        if file.executable {
            set_executable(&path)?;
        }
        files.push(rel.clone());
    }
    Ok(files)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)
        .with_context(|| format!("reading permissions of {}", path.display()))?
        .permissions();
    perms.set_mode(perms.mode() | 0o755);
    std::fs::set_permissions(path, perms)
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_kebab_case_ascii() {
        for ok in ["a", "my-filter", "mask2", "a-1-b"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("", "empty"),
            ("My-filter", "does not start with a lowercase letter"),
            ("1abc", "does not start"),
            ("my_filter", "contains '_'"),
            ("my filter", "contains ' '"),
            ("my-", "empty word"),
            ("a--b", "empty word"),
            ("héllo", "contains 'é'"),
            ("../x", "does not start"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert_eq!(snake_case("my-filter-2"), "my_filter_2");
    }

    #[test]
    fn substitutes_every_placeholder() {
        let vars = [("name", "my-filter"), ("name_snake", "my_filter")];
        assert_eq!(
            substitute("{{name}}/{{name_snake}}.wasm {{name}} {{other}}", &vars),
            "my-filter/my_filter.wasm my-filter {{other}}"
        );
    }

    #[test]
    fn the_rust_template_and_the_contract_are_embedded() {
        assert!(Lang::Rust.has_template());
        for needed in [
            "Cargo.toml",
            "src/lib.rs",
            "build.sh",
            "test/config.toml",
            "test/input.jsonl",
            "test/expected.jsonl",
            "README.md",
        ] {
            assert!(
                files_of("templates/rust").any(|f| f.path == needed),
                "templates/rust/{needed} not embedded"
            );
        }
        let wit: Vec<_> = files_of("wit").map(|f| f.path).collect();
        assert!(
            wit.contains(&"worlds.wit") && wit.contains(&"types.wit"),
            "{wit:?}"
        );
        assert!(
            files_of("templates/rust")
                .find(|f| f.path == "build.sh")
                .is_some_and(|f| f.executable)
        );
    }

    #[test]
    fn scaffolds_a_rust_project_and_refuses_to_overwrite_it() {
        let tmp = tempfile::tempdir().unwrap();
        let new = NewPlugin {
            lang: Lang::Rust,
            name: "my-filter".into(),
            parent: tmp.path().to_path_buf(),
            sdk_path: Some("/opt/sdk".into()),
        };
        let created = create(&new).unwrap();
        assert_eq!(created.dir, tmp.path().join("my-filter"));
        assert!(created.files.contains(&"wit/types.wit".to_owned()));
        assert!(!created.files.iter().any(|f| f.starts_with("sdk/")));
        let cargo = std::fs::read_to_string(created.dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains(r#"name = "my-filter""#), "{cargo}");
        assert!(cargo.contains(r#"path = "/opt/sdk""#), "{cargo}");
        let expected = std::fs::read_to_string(created.dir.join("test/expected.jsonl")).unwrap();
        assert!(
            expected.contains(r#""processed-by":"my-filter""#),
            "{expected}"
        );
        for f in &created.files {
            let text = std::fs::read(created.dir.join(f)).unwrap();
            let text = String::from_utf8_lossy(&text);
            for p in ["{{name}}", "{{name_snake}}", "{{sdk_path}}"] {
                assert!(!text.contains(p), "{f} still holds {p}");
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(created.dir.join("build.sh"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
        }
        // No staging directory is left behind.
        let entries: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("my-filter")]);

        let err = create(&new).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn a_missing_parent_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = create(&NewPlugin {
            lang: Lang::Rust,
            name: "x".into(),
            parent: tmp.path().join("nope"),
            sdk_path: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
