//! Tests of the settings: redaction, flags, the config file and its precedence, `herald config`.

use super::show::{shown, Shown};
use super::*;

#[test]
fn redact_url_hides_passwords_and_keeps_the_rest() {
    assert_eq!(
        redact_url("postgres://u:s3cretpw@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(
        redact_url("postgresql://u:p%40ss@h/db?sslmode=require&password=other"),
        "postgresql://u:***@h/db?sslmode=require&password=***"
    );
    assert_eq!(
        redact_url("postgres://u@h/db?sslpassword=k3y&application_name=herald"),
        "postgres://u@h/db?sslpassword=***&application_name=herald"
    );
    // Nothing secret: unchanged.
    for plain in [
        "postgres://u@h/db",
        "postgres://h/db",
        "sqlite://herald.db",
        "herald.db",
        "postgres://h/db?sslmode=disable",
    ] {
        assert_eq!(redact_url(plain), plain);
    }
}

#[test]
fn scrub_url_removes_the_url_and_quoted_passwords_from_messages() {
    let url = "postgres://u:s3cret%25pw@h/db";
    let msg = format!(
        "cannot connect to {url}: invalid percent-encoded token: \"s3cret%25pw\" (s3cret%pw)"
    );
    let out = scrub_url(&msg, url);
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("postgres://u:***@h/db"), "{out}");
    // Short passwords are only removed as part of the URL.
    assert_eq!(
        scrub_url("an abc error", "postgres://u:ab@h/db"),
        "an abc error"
    );
}

#[test]
fn settings_debug_never_prints_secrets() {
    let s = Settings {
        database_url: Secret::new("postgres://u:s3cretpw@h/db"),
        jwt_secret: Some(Secret::new("j".repeat(40))),
        ..Settings::default()
    };
    let shown = format!("{s:?}");
    assert!(!shown.contains("s3cretpw") && !shown.contains(&"j".repeat(40)));
}

/// Serialises the tests that parse a command line: clap reads `HERALD_*` variables from
/// the process environment, which one of them sets.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, clap::Parser)]
struct TestCli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

/// A fresh file in the temp directory holding `text`.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "herald-config-{}-{}-{name}.toml",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&path, text).expect("temp file");
    path
}

fn load_settings(args: &[&str]) -> Result<(Settings, Vec<(String, Origin)>), LoadError> {
    let loaded = load::<TestCli>(std::iter::once("herald").chain(args.iter().copied()))?;
    let settings = Settings::from_args(&loaded.cli.common, Some(&loaded.cli.serve));
    Ok((settings, loaded.origins))
}

fn origin_of(origins: &[(String, Origin)], key: &str) -> Origin {
    origins.iter().find(|(k, _)| k == key).expect(key).1
}

#[test]
fn every_setting_is_shown_and_the_shown_defaults_read_back_as_the_defaults() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // Arrange: `herald config` with nothing set, written to a file.
    let defaults = Settings::default();
    let keys = setting_keys();
    for key in &keys {
        assert!(shown(&defaults, key).is_some(), "`{key}` is not shown");
    }
    let origins: Vec<(String, Origin)> =
        keys.iter().map(|k| (k.clone(), Origin::Default)).collect();
    let path = temp_file("defaults", &render(&defaults, &origins));
    // Act
    let (read_back, origins) =
        load_settings(&["--config", path.to_str().unwrap()]).expect("the rendered defaults load");
    std::fs::remove_file(&path).ok();
    // Assert: the file changes nothing, and every value it names came from it.
    assert_eq!(format!("{read_back:?}"), format!("{defaults:?}"));
    for (key, origin) in origins {
        let expected = match shown(&defaults, &key) {
            Some(Shown::Unset) | Some(Shown::List(_)) => origin,
            _ => Origin::File,
        };
        assert_eq!(origin, expected, "{key}");
    }
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // Arrange
    let path = temp_file(
        "precedence",
        "replay_max = 10\nsend_rate = 11\nsend_burst = 12\nbind = \"0.0.0.0:9000\"\n",
    );
    std::env::set_var("HERALD_REPLAY_MAX", "20");
    std::env::set_var("HERALD_SEND_RATE", "21");
    // Act
    let result = load_settings(&["--config", path.to_str().unwrap(), "--replay-max", "30"]);
    std::env::remove_var("HERALD_REPLAY_MAX");
    std::env::remove_var("HERALD_SEND_RATE");
    std::fs::remove_file(&path).ok();
    // Assert
    let (s, origins) = result.expect("loads");
    assert_eq!(s.replay_max, 30);
    assert_eq!(origin_of(&origins, "replay_max"), Origin::Flag);
    assert_eq!(s.limits.send_rate, 21);
    assert_eq!(origin_of(&origins, "send_rate"), Origin::Env);
    assert_eq!(s.limits.send_burst, 12);
    assert_eq!(origin_of(&origins, "send_burst"), Origin::File);
    assert_eq!(s.bind, "0.0.0.0:9000");
    assert_eq!(s.limits.max_watch, Limits::default().max_watch);
    assert_eq!(origin_of(&origins, "max_watch"), Origin::Default);
}

#[test]
fn a_config_file_value_gets_the_same_bounds_as_a_flag() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let path = temp_file(
        "bounds",
        "send_rate = 0\nreplay_max = 0\nauto_away_ms = 0\n",
    );
    let result = load_settings(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    let (s, _) = result.expect("loads");
    assert_eq!(
        (s.limits.send_rate, s.replay_max, s.auto_away),
        (1, 1, None)
    );
}

#[test]
fn an_unknown_key_in_the_config_file_is_an_error_naming_it() {
    let err = ConfigFile::parse(Path::new("h.toml"), "replay_max = 1\nreplay_maxx = 2\n")
        .expect_err("unknown key");
    assert!(err.to_string().contains("`replay_maxx`"), "{err}");
    assert!(err.to_string().contains("h.toml"), "{err}");
    // `config` names the file; it is no setting.
    assert!(ConfigFile::parse(Path::new("h.toml"), "config = \"x\"").is_err());
}

#[test]
fn a_missing_or_malformed_config_file_is_an_error() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let missing = std::env::temp_dir().join("herald-config-does-not-exist.toml");
    match load_settings(&["--config", missing.to_str().unwrap()]) {
        Err(LoadError::Config(e)) => assert_eq!(e.path, missing),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    let path = temp_file("bad-value", "send_rate = \"fast\"\n");
    let result = load_settings(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    match result {
        Err(LoadError::Config(e)) => assert!(e.message.contains("fast"), "{e}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    for bad in ["send_rate = 1.5", "[server]\nbind = \"x\"", "send_rate ="] {
        assert!(
            ConfigFile::parse(Path::new("h.toml"), bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn herald_config_redacts_secrets_and_names_each_origin() {
    // Arrange
    let secret = "j".repeat(40);
    let s = Settings {
        database_url: Secret::new("postgres://u:s3cretpw@h/db"),
        jwt_secret: Some(Secret::new(secret.clone())),
        ..Settings::default()
    };
    let origins = vec![
        ("database_url".to_owned(), Origin::Env),
        ("jwt_secret".to_owned(), Origin::File),
        ("jwt_issuer".to_owned(), Origin::Default),
        ("replay_max".to_owned(), Origin::Flag),
    ];
    // Act
    let out = render(&s, &origins);
    // Assert
    assert!(!out.contains("s3cretpw") && !out.contains(&secret), "{out}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["database_url", "=", "\"postgres://u:***@h/db\"", "#", "env"],
            vec!["jwt_secret", "=", "\"<redacted>\"", "#", "file"],
            vec!["#", "jwt_issuer", "(not", "set)", "#", "default"],
            vec!["replay_max", "=", "1000", "#", "flag"],
        ]
    );
}

#[test]
fn a_config_file_with_secrets_readable_by_others_is_warned_about() {
    let with_secret = ConfigFile::parse(Path::new("h.toml"), "jwt_secret = \"x\"").expect("parses");
    let with_password = ConfigFile::parse(
        Path::new("h.toml"),
        "database_url = \"postgres://u:pw@h/db\"",
    )
    .expect("parses");
    let plain = ConfigFile::parse(Path::new("h.toml"), "database_url = \"postgres://u@h/db\"")
        .expect("parses");
    assert!(!format!("{with_password:?}").contains("pw@"));
    let warning = with_secret.permission_warning(|_| Some(0o100644));
    assert!(warning.is_some_and(|w| w.contains("h.toml") && w.contains("644")));
    assert!(with_password
        .permission_warning(|_| Some(0o100640))
        .is_some());
    assert!(with_secret.permission_warning(|_| Some(0o100600)).is_none());
    assert!(plain.permission_warning(|_| Some(0o100644)).is_none());
}

#[test]
fn help_shows_the_defaults_of_settings_default() {
    let help = with_default_help(<TestCli as clap::CommandFactory>::command())
        .render_help()
        .to_string();
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    assert!(help.contains("[default: 8388608]"), "{help}");
    assert!(help.contains("[default: sqlite://herald.db]"), "{help}");
}

/// Webhook settings (issue 19): URLs must be http(s), endpoint specs parse, secrets are
/// never shown by `herald config`.
mod webhooks {
    use super::super::*;
    use crate::webhook::EventType;

    #[test]
    fn only_http_and_https_webhook_urls_are_accepted() {
        assert!(webhook_url("https://crm.example/hooks").is_ok());
        assert!(webhook_url("http://127.0.0.1:9000/h").is_ok());
        for bad in [
            "ftp://x/h",
            "crm.example/hooks",
            "https://",
            "file:///etc/passwd",
        ] {
            let e = webhook_url(bad).unwrap_err();
            assert!(e.contains("http:// or https://"), "{bad}: {e}");
        }
    }

    #[test]
    fn endpoint_specs_parse_and_require_name_url_and_secret() {
        let e = WebhookEndpoint::parse(
            "name=crm url=https://crm.example/h secret=s3cret events=message.stored,user.online",
        )
        .unwrap();
        assert_eq!(e.name, "crm");
        assert_eq!(
            e.events,
            vec![EventType::MessageStored, EventType::UserOnline]
        );
        assert!(e.subscribes(EventType::UserOnline) && !e.subscribes(EventType::UserOffline));
        assert!(WebhookEndpoint::parse("name=a url=https://x/h").is_err());
        assert!(WebhookEndpoint::parse("name=a url=ftp://x/h secret=s").is_err());
        assert!(WebhookEndpoint::parse("name=a url=https://x/h secret=s events=nope").is_err());
    }

    #[test]
    fn herald_config_never_prints_webhook_secrets() {
        let mut s = Settings::default();
        s.webhooks.endpoints = vec![
            WebhookEndpoint {
                name: "default".into(),
                url: "https://a.example/h".into(),
                secret: Secret::new("env-secret-value"),
                events: vec![],
            },
            WebhookEndpoint::parse("name=crm url=https://b.example/h secret=file-secret-value")
                .unwrap(),
        ];
        let origins: Vec<(String, Origin)> = setting_keys()
            .into_iter()
            .map(|k| (k, Origin::Default))
            .collect();
        let out = render(&s, &origins);
        assert!(out.contains("https://a.example/h") && out.contains("https://b.example/h"));
        assert!(!out.contains("env-secret-value"), "{out}");
        assert!(!out.contains("file-secret-value"), "{out}");
        assert!(format!("{s:?}").find("secret-value").is_none());
    }

    #[test]
    fn several_endpoints_come_from_the_config_file_and_a_bad_url_is_refused() {
        let _env = super::ENV.lock().unwrap_or_else(|e| e.into_inner());
        let path = super::temp_file(
            "webhooks",
            r#"webhook_endpoints = [
  "name=push url=https://push.example/h secret=s1 events=message.undelivered",
  "name=crm url=http://127.0.0.1:9000/h secret=s2",
]
webhook_give_up_secs = 7200
"#,
        );
        let (s, origins) =
            super::load_settings(&["--config", path.to_str().unwrap()]).expect("loads");
        std::fs::remove_file(&path).ok();
        let names: Vec<&str> = s
            .webhooks
            .endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["push", "crm"]);
        assert_eq!(
            s.webhooks.endpoints[0].events,
            vec![EventType::MessageUndelivered]
        );
        assert_eq!(s.webhooks.endpoints[1].secret.expose(), "s2");
        assert_eq!(s.webhooks.give_up_after, Duration::from_secs(7200));
        assert_eq!(
            super::origin_of(&origins, "webhook_endpoints"),
            Origin::File
        );
        let bad = super::temp_file(
            "webhooks-bad",
            "webhook_endpoints = [\"name=x url=ftp://x/h secret=s\"]\n",
        );
        let e = super::load_settings(&["--config", bad.to_str().unwrap()]);
        std::fs::remove_file(&bad).ok();
        match e {
            Err(LoadError::Config(e)) => assert!(e.message.contains("http://"), "{e}"),
            other => panic!("expected a config error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn an_endpoint_without_a_secret_is_refused_at_start() {
        let mut s = WebhookSettings::default();
        s.endpoints.push(WebhookEndpoint {
            name: "default".into(),
            url: "https://a.example/h".into(),
            secret: Secret::new(""),
            events: vec![],
        });
        assert!(s.check().unwrap_err().contains("HERALD_WEBHOOK_SECRET"));
    }
}
