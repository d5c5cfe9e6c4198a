//! HDFS sink paths: where (`hdfs://`, `s3a://`, `oss://`, a local path, ...)
//! becomes the object-store sink's `url`, and the escapes of the rest
//! become its `path` template.
//!
//! The URL takes the leading directories without escapes; the template the
//! rest: `hdfs://nn/flume/events/%Y-%m-%d/%H` → `url = "s3://CHANGE-ME/flume/events"`,
//! `path = "%Y-%m-%d/%H"`. `%{header}`, `%Y %y %m %d %H %M %S %j` are the
//! same in Sluice; `%D` is `%m/%d/%y`; `%e`, `%k`, `%n` become their padded
//! forms; `%[localhost]`/`%[FQDN]` and `%[IP]` become the environment
//! variables `${HOSTNAME}` and `${HOST_IP}` (replaced when Sluice loads
//! the file); `%t`, `%s` and the locale escapes have no Sluice equivalent
//! and are dropped, reported.

/// Where files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    /// The sink's `url`.
    pub url: String,
    /// The `path` template.
    pub template: String,
    /// Whether `template` holds `${VAR}` references to keep.
    pub uses_env: bool,
    /// `s3.endpoint` to write, for Alibaba OSS.
    pub oss_endpoint: Option<String>,
    /// `azure.account_name` to write, for `wasb://` and `abfs://` paths.
    pub azure_account: Option<String>,
    /// The finest time unit the template renders, in seconds (for
    /// `hdfs.round`), if it renders any.
    pub finest: Option<u64>,
    /// What could not be carried over.
    pub unmapped: Vec<String>,
    /// Differences to know.
    pub notes: Vec<String>,
}

/// Converts an `hdfs.path` value.
pub(super) fn location(path: &str) -> Location {
    let mut loc = Location {
        url: String::new(),
        template: String::new(),
        uses_env: false,
        oss_endpoint: None,
        azure_account: None,
        finest: None,
        unmapped: Vec::new(),
        notes: Vec::new(),
    };
    let (scheme, authority, rest) = split(path);
    let components: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let fixed = components.iter().take_while(|c| !c.contains('%')).count();
    let prefix = components[..fixed].join("/");
    let template = components[fixed..].join("/");
    let joined = |base: &str| {
        if prefix.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{prefix}")
        }
    };
    match scheme.as_deref() {
        Some("s3" | "s3a" | "s3n") if !authority.is_empty() => {
            loc.url = joined(&format!("s3://{authority}"));
            loc.notes.push("credentials come from the AWS environment (`AWS_ACCESS_KEY_ID`, ..., instance roles) or `[sinks.<name>.s3]`, not from Hadoop's `fs.s3a.*` settings".into());
        }
        Some("oss") if !authority.is_empty() => {
            loc.url = joined(&format!("s3://{authority}"));
            loc.oss_endpoint = Some("https://oss-cn-hangzhou.aliyuncs.com".into());
            loc.notes.push("Alibaba OSS is reached through its S3 API: set `s3.endpoint` to the bucket's region (Flume's `fs.oss.endpoint`) and the credentials (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` = your AccessKey pair)".into());
        }
        Some("gs") if !authority.is_empty() => {
            loc.url = joined(&format!("gs://{authority}"));
            loc.notes.push(
                "credentials come from `GOOGLE_APPLICATION_CREDENTIALS` or `[sinks.<name>.gcs]`"
                    .into(),
            );
        }
        Some("wasb" | "wasbs" | "abfs" | "abfss") if authority.contains('@') => {
            let (container, host) = authority
                .split_once('@')
                .unwrap_or((authority.as_str(), ""));
            loc.url = joined(&format!("az://{container}"));
            loc.azure_account = host
                .split('.')
                .next()
                .map(str::to_owned)
                .filter(|a| !a.is_empty());
            loc.notes.push("credentials come from the `AZURE_*` environment or `[sinks.<name>.azure]` (`access_key`, `sas_key`, ...)".into());
        }
        Some("file") => {
            loc.url = format!("file:///{prefix}");
            if !rest.starts_with('/') {
                loc.unmapped.push(
                    "a relative local path: Sluice needs an absolute one; change the url".into(),
                );
            }
        }
        Some(_) | None if !rest.starts_with('/') => {
            loc.url = "file:///CHANGE-ME".into();
            loc.unmapped.push(format!("`{path}` is a relative HDFS path (under the user's HDFS home): Sluice needs a bucket or an absolute local directory; change the url"));
        }
        _ => {
            let shown = scheme.as_deref().unwrap_or("hdfs");
            loc.url = joined("s3://CHANGE-ME");
            loc.unmapped.push(format!("{shown} is not a store Sluice writes to: written as an S3 bucket placeholder (`s3://CHANGE-ME/...`); name your bucket (S3, or Alibaba OSS/MinIO through `s3.endpoint`), or use `gs://`, `az://`, or `file:///` for a local or mounted directory (e.g. an HDFS NFS gateway)"));
        }
    }
    loc.template = escapes(&template, &mut loc);
    loc
}

/// `(scheme, authority, path)` of `scheme://authority/path`, `scheme:/path`
/// or a bare path.
fn split(path: &str) -> (Option<String>, String, String) {
    let path = path.trim();
    let scheme_end = path.find(':').filter(|at| {
        let s = &path[..*at];
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let Some(at) = scheme_end else {
        return (None, String::new(), path.to_owned());
    };
    let scheme = path[..at].to_ascii_lowercase();
    let rest = &path[at + 1..];
    match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (
                Some(scheme),
                after[..end].to_owned(),
                after[end..].to_owned(),
            )
        }
        None => (Some(scheme), String::new(), rest.to_owned()),
    }
}

/// Rewrites the escapes of `template`, recording findings in `loc`.
fn escapes(template: &str, loc: &mut Location) -> String {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    fn finest(loc: &mut Location, s: u64) {
        loc.finest = Some(loc.finest.map_or(s, |f| f.min(s)));
    }
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            loc.unmapped
                .push("a `%` at the end of the path: dropped".into());
            break;
        };
        match e {
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                if name.is_empty() {
                    loc.unmapped.push("an empty `%{}`: dropped".into());
                } else {
                    out.push_str(&format!("%{{{name}}}"));
                }
            }
            '[' => {
                let name: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match name.to_ascii_lowercase().as_str() {
                    "localhost" | "fqdn" => {
                        out.push_str("${HOSTNAME}");
                        loc.uses_env = true;
                        loc.notes.push(format!("`%[{name}]` became a reference to the environment variable HOSTNAME, replaced when Sluice loads the file: export HOSTNAME to the agent (systemd: `Environment=HOSTNAME=%H`)"));
                    }
                    "ip" => {
                        out.push_str("${HOST_IP}");
                        loc.uses_env = true;
                        loc.notes.push("`%[IP]` became a reference to the environment variable HOST_IP, replaced when Sluice loads the file: set HOST_IP for the agent (Kubernetes: the downward API's status.hostIP)".into());
                    }
                    _ => loc
                        .unmapped
                        .push(format!("`%[{name}]` is not a Flume escape: dropped")),
                }
            }
            'Y' | 'y' => {
                out.push_str(&format!("%{e}"));
                finest(loc, 365 * 86_400);
            }
            'm' => {
                out.push_str("%m");
                finest(loc, 28 * 86_400);
            }
            'd' | 'j' => {
                out.push_str(&format!("%{e}"));
                finest(loc, 86_400);
            }
            'H' => {
                out.push_str("%H");
                finest(loc, 3_600);
            }
            'M' => {
                out.push_str("%M");
                finest(loc, 60);
            }
            'S' => {
                out.push_str("%S");
                finest(loc, 1);
            }
            'D' => {
                out.push_str("%m/%d/%y");
                finest(loc, 86_400);
            }
            'e' | 'k' | 'n' => {
                let (to, unit) = match e {
                    'e' => ("%d", 86_400),
                    'k' => ("%H", 3_600),
                    _ => ("%m", 28 * 86_400),
                };
                out.push_str(to);
                finest(loc, unit);
                loc.notes.push(format!("`%{e}` (without zero padding) became `{to}` (zero-padded): directory names differ below 10"));
            }
            '%' => out.push_str("%%"),
            't' | 's' => {
                finest(loc, 1);
                loc.unmapped.push(format!("`%{e}` (the time as a number) has no Sluice escape: dropped; Sluice's file names are unique by topic, partition and offset"));
            }
            'a' | 'A' | 'b' | 'B' | 'c' | 'I' | 'p' | 'z' => {
                loc.unmapped.push(format!("`%{e}` (locale names, 12-hour clock, time zone) has no Sluice escape: dropped; use the numeric escapes (%Y %m %d %H %M %S)"));
            }
            other => loc.unmapped.push(format!(
                "`%{other}` is not an escape of the HDFS sink: dropped"
            )),
        }
    }
    // Components emptied by dropped escapes go too.
    out.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdfs_paths_split_into_a_placeholder_bucket_and_a_template() {
        let loc = location("hdfs://namenode:8020/flume/events/%{topic}/%y-%m-%d/%H%M/%S");
        assert_eq!(loc.url, "s3://CHANGE-ME/flume/events");
        assert_eq!(loc.template, "%{topic}/%y-%m-%d/%H%M/%S");
        assert_eq!(loc.finest, Some(1));
        assert_eq!(loc.unmapped.len(), 1);
        let bare = location("/flume/events/%Y-%m-%d");
        assert_eq!(bare.url, "s3://CHANGE-ME/flume/events");
        assert_eq!(bare.finest, Some(86_400));
    }

    #[test]
    fn object_stores_keep_their_bucket() {
        let s3 = location("s3a://lake/raw/%{topic}");
        assert_eq!(
            (s3.url.as_str(), s3.template.as_str()),
            ("s3://lake/raw", "%{topic}")
        );
        assert!(s3.unmapped.is_empty());
        let oss = location("oss://bucket/logs/%Y");
        assert_eq!(oss.url, "s3://bucket/logs");
        assert!(oss.oss_endpoint.is_some());
        let az = location("abfss://data@account1.dfs.core.windows.net/in/%d");
        assert_eq!(az.url, "az://data/in");
        assert_eq!(az.azure_account.as_deref(), Some("account1"));
        let local = location("file:///var/flume/out/%H");
        assert_eq!(
            (local.url.as_str(), local.template.as_str()),
            ("file:///var/flume/out", "%H")
        );
        assert!(location("flume/rel").unmapped[0].contains("relative"));
    }

    #[test]
    fn escapes_are_rewritten_or_reported() {
        let loc = location("s3://b/x/%D/%[localhost]/%t/%e-%k/%b%%");
        assert_eq!(loc.template, "%m/%d/%y/${HOSTNAME}/%d-%H/%%");
        assert!(loc.uses_env);
        assert_eq!(loc.unmapped.len(), 2, "{:?}", loc.unmapped);
        let ip = location("s3://b/%[IP]/%Y");
        assert_eq!(ip.template, "${HOST_IP}/%Y");
    }
}
