//! Interceptors and channel selectors: Flume runs them inside the source;
//! Sluice runs them as plugins of the source's chain.
//!
//! - `timestamp` → the `timestamp` plugin (`timestamp.wasm`);
//! - `host`, `static`, `uuid`, `remove_header`, `search_replace`,
//!   `regex_filter`, `regex_extractor` → the `flume-interceptors` plugin
//!   (`flume_interceptors.wasm`) with that `mode`;
//! - a replicating selector → the source's `channels`; a multiplexing one
//!   → the `header-router` plugin (`header_router.wasm`) as the source's
//!   `router`, its default channels as the source's `channels`;
//! - morphline interceptors and custom classes are reported: they become
//!   a plugin of their own (`sluice plugin new`).

use super::{Component, Ctx, Section, truthy, words};
use crate::import::toml_out::{Block, Table, Value};

/// The file of the Flume interceptors plugin.
const FLUME_INTERCEPTORS: &str = "flume_interceptors.wasm";
/// The file of the timestamp plugin.
const TIMESTAMP: &str = "timestamp.wasm";
/// The file of the header router plugin.
const HEADER_ROUTER: &str = "header_router.wasm";

/// Writes `[plugins.<name>]` owned by the agent's team.
fn plugin(
    ctx: &mut Ctx,
    name: &str,
    kind: &str,
    file: &str,
    config: Vec<(String, Value)>,
    comments: Vec<String>,
) {
    let team = ctx.team();
    let mut t = Table::new(&["plugins", name]);
    for line in comments {
        t.comment(line);
    }
    t.set("type", Value::str(kind));
    t.set("team", Value::str(team));
    t.set("path", Value::str(file));
    t.set("config", Value::Inline(config));
    ctx.push(Section::Plugins, Block::Table(t));
}

/// Whether `re` (the value of `key`) is a regular expression Sluice's
/// plugins and sources accept; reported if not.
pub(super) fn check_regex(ctx: &mut Ctx, c: &Component, key: &str, re: &str) -> bool {
    match regex::Regex::new(re) {
        Ok(_) => true,
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("invalid").trim().to_owned();
            ctx.unmapped(c, key, format!("`{re}` is not a regular expression Sluice reads ({why}): Sluice's syntax is Java's without look-around and back-references; rewrite it"));
            false
        }
    }
}

/// The interceptor plugins of source `c` (written as `source`), in order.
pub(super) fn interceptors(ctx: &mut Ctx, c: &Component, source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for i in words(c.str("interceptors").unwrap_or("")) {
        let mark = ctx.report.findings.len();
        let key = |k: &str| format!("interceptors.{i}.{k}");
        let Some(kind) = c.str(&key("type")).map(str::to_owned) else {
            ctx.unmapped(
                c,
                "interceptors",
                format!("interceptor `{i}` has no `type`: left out"),
            );
            continue;
        };
        let simple = kind
            .rsplit('.')
            .next()
            .unwrap_or(&kind)
            .trim_end_matches("$Builder")
            .to_ascii_lowercase();
        let lower = kind.to_ascii_lowercase();
        let builtin = lower.starts_with("org.apache.flume.interceptor.") || !lower.contains('.');
        let morphline = lower.starts_with("org.apache.flume.sink.solr.morphline.");
        let (file, config): (&str, Option<Vec<(String, Value)>>) = match (
            builtin,
            morphline,
            simple.as_str(),
        ) {
            (true, _, "timestamp" | "timestampinterceptor") => {
                (TIMESTAMP, Some(timestamp(ctx, c, &i)))
            }
            (true, _, "host" | "hostinterceptor") => (FLUME_INTERCEPTORS, Some(host(ctx, c, &i))),
            (true, _, "static" | "staticinterceptor") => {
                (FLUME_INTERCEPTORS, Some(static_(ctx, c, &i)))
            }
            (true, _, "remove_header" | "removeheaderinterceptor") => {
                (FLUME_INTERCEPTORS, remove_header(ctx, c, &i))
            }
            (true, _, "search_replace" | "searchandreplaceinterceptor") => {
                (FLUME_INTERCEPTORS, search_replace(ctx, c, &i))
            }
            (true, _, "regex_filter" | "regexfilteringinterceptor") => {
                (FLUME_INTERCEPTORS, regex_filter(ctx, c, &i))
            }
            (true, _, "regex_extractor" | "regexextractorinterceptor") => {
                (FLUME_INTERCEPTORS, regex_extractor(ctx, c, &i))
            }
            (_, true, "uuidinterceptor") => (FLUME_INTERCEPTORS, Some(uuid(ctx, c, &i))),
            (_, true, _) => {
                ctx.unmapped(c, &key("type"), "morphlines (Kite SDK) cannot run in Sluice: port the morphline's commands to a plugin (`sluice plugin new --lang rust <name>`), or use the `flume-interceptors` plugin's modes where they do the same");
                c.consume(&format!("interceptors.{i}"));
                (FLUME_INTERCEPTORS, None)
            }
            _ => {
                ctx.unmapped(c, &key("type"), format!("the custom interceptor `{kind}` cannot run in Sluice: write a plugin that does the same (`sluice plugin new --lang rust {}`; see docs/plugins.md), build it into the team's plugin_dir and add it to the source's `interceptors`", super::sanitize(&i).to_ascii_lowercase()));
                c.consume(&format!("interceptors.{i}"));
                (FLUME_INTERCEPTORS, None)
            }
        };
        let Some(config) = config else {
            c.consume(&format!("interceptors.{i}"));
            continue;
        };
        // Keys of this interceptor the mapping did not read.
        for (k, p) in c.below(&format!("interceptors.{i}.")) {
            if !matches!(k.as_str(), "type")
                && !read_keys(&simple)
                    .iter()
                    .any(|r| k == *r || k.starts_with(&format!("{r}.")))
            {
                let v = p.value.trim().to_owned();
                ctx.note(
                    c,
                    &key(&k),
                    format!("`{v}` ignored: not a key of Flume's {simple} interceptor"),
                );
            }
        }
        let name = ctx.unique(Section::Plugins, &format!("{source}-{i}"));
        let mut comments = vec![format!(
            "From Flume interceptor `{i}` of source `{}` ({}:{}), type {kind}.",
            c.name,
            ctx.file,
            c.line_of(&key("type"))
        )];
        comments.extend(ctx.findings_since(mark));
        plugin(ctx, &name, "interceptor", file, config, comments);
        names.push(name);
    }
    names
}

/// The keys of an interceptor type the mapping reads.
fn read_keys(simple: &str) -> &'static [&'static str] {
    match simple {
        "timestamp" | "timestampinterceptor" => &["headerName", "preserveExisting", "header"],
        "host" | "hostinterceptor" => &["hostHeader", "preserveExisting", "useIP"],
        "static" | "staticinterceptor" => &["key", "value", "preserveExisting"],
        "remove_header" | "removeheaderinterceptor" => {
            &["withName", "fromList", "fromListSeparator", "matching"]
        }
        "search_replace" | "searchandreplaceinterceptor" => {
            &["searchPattern", "replaceString", "charset"]
        }
        "regex_filter" | "regexfilteringinterceptor" => &["regex", "excludeEvents"],
        "regex_extractor" | "regexextractorinterceptor" => &["regex", "serializers"],
        "uuidinterceptor" => &["headerName", "preserveExisting", "prefix"],
        _ => &[],
    }
}

/// `preserveExisting` of interceptor `i`, with Flume's default.
fn preserve(c: &Component, i: &str, default: bool) -> Value {
    Value::Bool(
        c.str(&format!("interceptors.{i}.preserveExisting"))
            .map_or(default, truthy),
    )
}

fn timestamp(ctx: &mut Ctx, c: &Component, i: &str) -> Vec<(String, Value)> {
    let mut config = Vec::new();
    let header = c
        .first(&[
            &format!("interceptors.{i}.headerName"),
            &format!("interceptors.{i}.header"),
        ])
        .map(|(_, h)| h.to_owned());
    if let Some(h) = header {
        config.push(("header".into(), Value::str(h)));
    }
    config.push(("source".into(), Value::str("kafka")));
    config.push(("preserve_existing".into(), preserve(c, i, false)));
    ctx.note(c, &format!("interceptors.{i}.type"), "Flume stamped the time the interceptor ran; Sluice plugins have no clock, so the plugin stamps the event's own timestamp: the Kafka record's time, or when a file, HTTP or syslog source read the event");
    config
}

fn host(ctx: &mut Ctx, c: &Component, i: &str) -> Vec<(String, Value)> {
    let header = c
        .str(&format!("interceptors.{i}.hostHeader"))
        .unwrap_or("host")
        .to_owned();
    let use_ip = c.str(&format!("interceptors.{i}.useIP")).is_none_or(truthy);
    ctx.team_env.insert("HOSTNAME".into());
    let message = if use_ip {
        "Flume wrote the agent's IP address (useIP defaults to true); a plugin cannot look it up, so it writes the environment variable HOSTNAME (the team passes it): for the IP, export one (Kubernetes: POD_IP from the downward API) and change `env` here and in the team"
    } else {
        "a plugin cannot look the host name up: it writes the environment variable HOSTNAME, which the team passes; export it to the agent (systemd: `Environment=HOSTNAME=%H`)"
    };
    ctx.note(c, &format!("interceptors.{i}.useIP"), message);
    vec![
        ("mode".into(), Value::str("host")),
        ("env".into(), Value::str("HOSTNAME")),
        ("header".into(), Value::str(header)),
        ("preserve_existing".into(), preserve(c, i, false)),
    ]
}

fn static_(_ctx: &mut Ctx, c: &Component, i: &str) -> Vec<(String, Value)> {
    let get = |k: &str, d: &str| {
        c.get(&format!("interceptors.{i}.{k}"))
            .map_or(d.to_owned(), |p| p.value.trim().to_owned())
    };
    vec![
        ("mode".into(), Value::str("static")),
        ("key".into(), Value::str(get("key", "key"))),
        ("value".into(), Value::str(get("value", "value"))),
        ("preserve_existing".into(), preserve(c, i, true)),
    ]
}

/// A `static` interceptor of one generated source (a multiport syslog
/// source's `portHeader`); returns the plugin's name.
pub(super) fn static_header(
    ctx: &mut Ctx,
    c: &Component,
    source: &str,
    header: &str,
    value: &str,
) -> String {
    let name = ctx.unique(Section::Plugins, &format!("{source}-port"));
    plugin(
        ctx,
        &name,
        "interceptor",
        FLUME_INTERCEPTORS,
        vec![
            ("mode".into(), Value::str("static")),
            ("key".into(), Value::str(header)),
            ("value".into(), Value::str(value)),
            ("preserve_existing".into(), Value::Bool(false)),
        ],
        vec![format!(
            "Flume source `{}`'s portHeader for port {value}.",
            c.name
        )],
    );
    name
}

fn uuid(_ctx: &mut Ctx, c: &Component, i: &str) -> Vec<(String, Value)> {
    let mut config = vec![
        ("mode".into(), Value::str("uuid")),
        (
            "header".into(),
            Value::str(
                c.str(&format!("interceptors.{i}.headerName"))
                    .unwrap_or("id"),
            ),
        ),
        ("preserve_existing".into(), preserve(c, i, true)),
    ];
    if let Some(prefix) = c.get(&format!("interceptors.{i}.prefix")) {
        config.push(("prefix".into(), Value::str(prefix.value.trim())));
    }
    config
}

fn remove_header(ctx: &mut Ctx, c: &Component, i: &str) -> Option<Vec<(String, Value)>> {
    let key = |k: &str| format!("interceptors.{i}.{k}");
    let mut config = vec![("mode".into(), Value::str("remove_header"))];
    if let Some(name) = c.str(&key("withName")) {
        config.push(("with_name".into(), Value::str(name)));
    }
    if let Some(list) = c.str(&key("fromList")) {
        match c.str(&key("fromListSeparator")) {
            None | Some(r"\s*,\s*") => {
                let names: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                config.push(("from_list".into(), Value::strs(names)));
            }
            Some(sep) => {
                config.push(("from_list".into(), Value::str(list)));
                if check_regex(ctx, c, &key("fromListSeparator"), sep) {
                    config.push(("from_list_separator".into(), Value::str(sep)));
                }
            }
        }
    }
    if let Some(re) = c.str(&key("matching"))
        && check_regex(ctx, c, &key("matching"), re)
    {
        config.push(("matching".into(), Value::str(re)));
    }
    if config.len() == 1 {
        ctx.unmapped(c, &key("type"), "none of `withName`, `fromList`, `matching` is set: the interceptor removes nothing; left out");
        return None;
    }
    Some(config)
}

fn search_replace(ctx: &mut Ctx, c: &Component, i: &str) -> Option<Vec<(String, Value)>> {
    let key = |k: &str| format!("interceptors.{i}.{k}");
    let Some(pattern) = c
        .get(&key("searchPattern"))
        .map(|p| p.value.clone())
        .filter(|p| !p.is_empty())
    else {
        ctx.unmapped(c, &key("type"), "no `searchPattern`: left out");
        return None;
    };
    if !check_regex(ctx, c, &key("searchPattern"), &pattern) {
        return None;
    }
    let mut config = vec![
        ("mode".into(), Value::str("search_replace")),
        ("search_pattern".into(), Value::str(pattern)),
    ];
    if let Some(replace) = c.get(&key("replaceString")) {
        config.push(("replace_string".into(), Value::str(&replace.value)));
    }
    if let Some(cs) = c.str(&key("charset"))
        && !cs.eq_ignore_ascii_case("utf-8")
        && !cs.eq_ignore_ascii_case("utf8")
    {
        let cs = cs.to_owned();
        ctx.unmapped(
            c,
            &key("charset"),
            format!("`{cs}`: the plugin reads bodies as UTF-8 only"),
        );
    }
    Some(config)
}

fn regex_filter(ctx: &mut Ctx, c: &Component, i: &str) -> Option<Vec<(String, Value)>> {
    let key = |k: &str| format!("interceptors.{i}.{k}");
    let regex = c.str(&key("regex")).unwrap_or(".*").to_owned();
    if !check_regex(ctx, c, &key("regex"), &regex) {
        return None;
    }
    Some(vec![
        ("mode".into(), Value::str("regex_filter")),
        ("regex".into(), Value::str(regex)),
        (
            "exclude_events".into(),
            Value::Bool(c.str(&key("excludeEvents")).is_some_and(truthy)),
        ),
    ])
}

fn regex_extractor(ctx: &mut Ctx, c: &Component, i: &str) -> Option<Vec<(String, Value)>> {
    let key = |k: &str| format!("interceptors.{i}.{k}");
    let Some(regex) = c.str(&key("regex")).map(str::to_owned) else {
        ctx.unmapped(c, &key("type"), "no `regex`: left out");
        return None;
    };
    if !check_regex(ctx, c, &key("regex"), &regex) {
        return None;
    }
    let mut serializers = Vec::new();
    for s in words(c.str(&key("serializers")).unwrap_or("")) {
        let sk = |k: &str| key(&format!("serializers.{s}.{k}"));
        let Some(name) = c.str(&sk("name")).map(str::to_owned) else {
            ctx.unmapped(c, &key("serializers"), format!("serializer `{s}` has no `name`: the interceptor is left out (serializers map to groups in order)"));
            return None;
        };
        let kind = c.str(&sk("type")).unwrap_or("default").to_owned();
        let mut entry = vec![("name".into(), Value::str(name))];
        match kind.rsplit('.').next().unwrap_or(&kind) {
            "default" | "RegexExtractorInterceptorPassThroughSerializer" => {
                entry.push(("type".into(), Value::str("default")));
            }
            "millis" | "RegexExtractorInterceptorMillisSerializer" => {
                entry.push(("type".into(), Value::str("millis")));
                match c.str(&sk("pattern")) {
                    Some(p) => entry.push(("pattern".into(), Value::str(p))),
                    None => {
                        ctx.unmapped(
                            c,
                            &sk("pattern"),
                            "a millis serializer needs `pattern`: the interceptor is left out",
                        );
                        return None;
                    }
                }
                ctx.note(c, &sk("pattern"), "times without a zone in the pattern are read as UTC (Flume used the JVM's time zone)");
            }
            _ => {
                ctx.unmapped(c, &sk("type"), format!("the custom serializer `{kind}` cannot run in Sluice: the interceptor is left out; port it to a plugin (`sluice plugin new --lang rust <name>`)"));
                return None;
            }
        }
        for (k, p) in c.below(&format!("interceptors.{i}.serializers.{s}.")) {
            if !matches!(k.as_str(), "name" | "type" | "pattern") {
                let v = p.value.trim().to_owned();
                ctx.note(
                    c,
                    &sk(&k),
                    format!("`{v}` ignored: serializers take `name`, `type` and `pattern`"),
                );
            }
        }
        serializers.push(Value::Inline(entry));
    }
    if serializers.is_empty() {
        ctx.unmapped(
            c,
            &key("serializers"),
            "no serializers: the interceptor sets no header; left out",
        );
        return None;
    }
    Some(vec![
        ("mode".into(), Value::str("regex_extractor")),
        ("regex".into(), Value::str(regex)),
        ("serializers".into(), Value::Array(serializers)),
    ])
}

/// Where a source's events go.
pub(super) struct Wiring {
    /// The source's `channels` (Sluice names).
    pub channels: Vec<String>,
    /// Its `router` plugin, for a multiplexing selector.
    pub router: Option<String>,
}

/// Converts the channel selector of source `c` (written as `source`);
/// `channels` are its Flume channels that were written.
pub(super) fn selector(
    ctx: &mut Ctx,
    c: &Component,
    source: &str,
    channels: &[String],
    kafka: bool,
) -> Wiring {
    let sluice = |ctx: &Ctx, n: &str| ctx.channels.get(n).cloned();
    let all: Vec<String> = channels.iter().filter_map(|n| sluice(ctx, n)).collect();
    let kind = c
        .str("selector.type")
        .map_or("replicating".to_owned(), str::to_ascii_lowercase);
    match kind.as_str() {
        "replicating" | "org.apache.flume.channel.replicatingchannelselector" => {
            if let Some(optional) = c.str("selector.optional").map(str::to_owned) {
                ctx.note(c, "selector.optional", format!("Sluice has no optional channels: `{optional}` get every event like the others, and a full one holds the source back (Flume ignored its failures)"));
            }
            Wiring {
                channels: all,
                router: None,
            }
        }
        "multiplexing" | "org.apache.flume.channel.multiplexingchannelselector" => {
            multiplexing(ctx, c, source, channels, all, kafka)
        }
        "load_balancing" | "org.apache.flume.channel.loadbalancingchannelselector" => {
            ctx.unmapped(c, "selector.type", format!("Sluice does not spread one source's events over several channels: all go to `{}`; for parallel sinks put them in a sink group (`load_balance`) on that channel", all[0]));
            c.consume("selector");
            Wiring {
                channels: vec![all[0].clone()],
                router: None,
            }
        }
        _ => {
            ctx.unmapped(c, "selector.type", "a custom channel selector cannot run in Sluice: events go to every channel; write a router plugin (`sluice plugin new --lang rust <name>`, a router) that does the same");
            c.consume("selector");
            Wiring {
                channels: all,
                router: None,
            }
        }
    }
}

fn multiplexing(
    ctx: &mut Ctx,
    c: &Component,
    source: &str,
    flume: &[String],
    all: Vec<String>,
    kafka: bool,
) -> Wiring {
    let header = c
        .str("selector.header")
        .unwrap_or("flume.selector.header")
        .to_owned();
    if kafka && matches!(header.as_str(), "topic" | "partition" | "key" | "timestamp") {
        ctx.unmapped(c, "selector.header", format!("Flume's Kafka source set the header `{header}`; Sluice's keeps it as event metadata, so the router cannot see it: read each topic with its own source instead, or have producers set a header"));
    }
    let known = |ctx: &mut Ctx, key: &str, list: &str| -> Vec<String> {
        let mut out = Vec::new();
        for n in list.split_whitespace() {
            match ctx.channels.get(n) {
                Some(s) if flume.iter().any(|f| f == n) => out.push(s.clone()),
                _ => ctx.unmapped(
                    c,
                    key,
                    format!("`{n}` is not one of the source's channels: left out"),
                ),
            }
        }
        out
    };
    let mut routes: Vec<(String, Value)> = Vec::new();
    for (value, prop) in c.below("selector.mapping.") {
        let key = format!("selector.mapping.{value}");
        let targets = known(ctx, &key, &prop.value);
        match targets.split_first() {
            None => {}
            Some((first, rest)) => {
                if !rest.is_empty() {
                    ctx.unmapped(c, &key, format!("the router sends an event to one channel: events with `{header}` = `{value}` go to `{first}` only, not to {}; give those channels' sinks to one channel (a sink group), or route by another value", rest.join(", ")));
                }
                routes.push((value, Value::str(first)));
            }
        }
    }
    for (value, _) in c.below("selector.optional.") {
        ctx.unmapped(
            c,
            &format!("selector.optional.{value}"),
            "Sluice has no optional channels: left out",
        );
    }
    let defaults = c
        .get("selector.default")
        .map(|p| p.value.clone())
        .map(|d| known(ctx, "selector.default", &d))
        .unwrap_or_default();
    let channels = if defaults.is_empty() {
        ctx.unmapped(c, "selector.default", format!("without `selector.default` Flume dropped events whose `{header}` matched no mapping; Sluice sends them to the source's channels: `{}` (add a `regex_filter` interceptor, or a channel drained by a `null` sink, to drop them)", all[0]));
        vec![all[0].clone()]
    } else {
        defaults.clone()
    };
    if routes.is_empty() {
        ctx.note(
            c,
            "selector.type",
            "no `selector.mapping.*`: every event goes to the default channels, without a router",
        );
        return Wiring {
            channels,
            router: None,
        };
    }
    let name = ctx.unique(Section::Plugins, &format!("{source}-selector"));
    let mut config = vec![
        ("header".into(), Value::str(&header)),
        ("routes".into(), Value::Inline(routes)),
    ];
    if let [one] = defaults.as_slice() {
        config.push(("default".into(), Value::str(one)));
    }
    let comments = vec![format!(
        "From the multiplexing channel selector of Flume source `{}` ({}:{}): events go to the channel mapped to their `{header}` header, others to the source's channels.",
        c.name,
        ctx.file,
        c.line_of("selector.type")
    )];
    plugin(ctx, &name, "router", HEADER_ROUTER, config, comments);
    Wiring {
        channels,
        router: Some(name),
    }
}
