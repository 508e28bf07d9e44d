//! The TOML config file and precedence (flag > env > file > default): `ConfigFile`, `load`,
//! where each setting came from (`Origin`) and the setting keys.

use super::*;

/// Name of the flag (`--config`) that names the config file; not itself a setting.
const CONFIG_KEY: &str = "config";

/// Where a setting's effective value came from. Precedence, highest first: flag,
/// environment variable, config file, built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "env",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

/// The setting keys, in `--help` order: the ids of the [`CommonArgs`] and [`ServeArgs`]
/// flags. Each is also a config-file key, and `HERALD_` plus the key upper-cased is its
/// environment variable.
pub fn setting_keys() -> Vec<String> {
    let cmd = ServeArgs::augment_args(CommonArgs::augment_args(clap::Command::new("herald")));
    cmd.get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != CONFIG_KEY)
        .collect()
}

/// A config file that was read: its settings as the raw strings a flag would take.
pub struct ConfigFile {
    path: PathBuf,
    values: Vec<(String, Vec<String>)>,
    has_secret: bool,
}

/// Names the keys only: the values may be secrets.
impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field(
                "keys",
                &self.values.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A config file that cannot be used: missing, not TOML, an unknown key, a bad value.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl ConfigFile {
    /// Reads and checks the file at `path` (which must exist).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the contents of the file at `path`: flat `key = value` pairs whose keys
    /// are [`setting_keys`] and whose values are strings, integers, booleans or arrays of
    /// those.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = text.parse().map_err(|e| error(format!("{e}")))?;
        let keys = setting_keys();
        let scalar = |key: &str, v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(error(format!(
                "`{key}` must be a string, integer or boolean, not a {}",
                other.type_str()
            ))),
        };
        let mut values = Vec::new();
        for (key, value) in &table {
            if !keys.contains(key) {
                return Err(error(format!(
                    "unknown key `{key}` (keys are the setting names without `HERALD_`, in \
                     snake_case, e.g. `replay_max`)"
                )));
            }
            let raw = match value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| scalar(key, v))
                    .collect::<Result<Vec<_>, _>>()?,
                v => vec![scalar(key, v)?],
            };
            values.push((key.clone(), raw));
        }
        let has_secret = table.contains_key("jwt_secret")
            || table.contains_key("webhook_secret")
            || table.contains_key("webhook_endpoints")
            || ["database_url", "redis_url"].iter().any(|k| {
                table
                    .get(*k)
                    .and_then(|v| v.as_str())
                    .is_some_and(|url| redact_url(url) != url)
            });
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
            has_secret,
        })
    }

    fn contains(&self, key: &str) -> bool {
        self.values.iter().any(|(k, _)| k == key)
    }

    /// `cmd` with the file's values as the flags' defaults, so clap itself gives flags and
    /// the environment precedence over the file, and checks the file's values.
    fn apply(&self, mut cmd: clap::Command) -> clap::Command {
        for (key, raw) in &self.values {
            // A secret is never shown as a default, should clap print the argument.
            let hide = matches!(
                key.as_str(),
                "database_url"
                    | "jwt_secret"
                    | "redis_url"
                    | "webhook_secret"
                    | "webhook_endpoints"
            );
            let raw = raw.clone();
            cmd = cmd.mut_arg(key, move |arg| {
                arg.default_values(raw).hide_default_value(hide)
            });
        }
        cmd
    }

    /// A warning, when the file holds a secret (the JWT secret or a database password)
    /// and users other than its owner may read it; `mode_of` reads a file's mode.
    pub fn permission_warning(&self, mode_of: impl Fn(&Path) -> Option<u32>) -> Option<String> {
        let mode = mode_of(&self.path).filter(|m| self.has_secret && m & 0o077 != 0)?;
        Some(format!(
            "config file {} holds secrets and is readable by other users (mode {:03o}); \
             run chmod 600 on it",
            self.path.display(),
            mode & 0o777
        ))
    }
}

/// The command line parsed, with the config file (if any) beneath it.
#[derive(Debug)]
pub struct Loaded<P> {
    pub cli: P,
    /// Where each setting (by key, in [`setting_keys`] order) came from.
    pub origins: Vec<(String, Origin)>,
    /// Things worth logging (a config file others can read).
    pub warnings: Vec<String>,
}

/// Why the command line could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// Flags or environment (clap prints these itself, `--help` included).
    Cli(clap::Error),
    Config(ConfigError),
}

/// Parses `args` (flags, `HERALD_*` variables) into `P`, a parser that flattens
/// [`CommonArgs`] and [`ServeArgs`]. When `--config`/`HERALD_CONFIG` names a file,
/// its values fill the settings neither a flag nor a variable set; whatever is still unset
/// keeps its `Settings::default()` value in [`Settings::from_args`].
pub fn load<P: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
) -> Result<Loaded<P>, LoadError> {
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cmd = with_default_help(P::command());
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(LoadError::Cli)?;
    let file = match matches.get_one::<PathBuf>(CONFIG_KEY) {
        Some(path) => Some(ConfigFile::read(path).map_err(LoadError::Config)?),
        None => None,
    };
    let matches = match &file {
        // Flags and environment parsed once already: a failure now is the file's value.
        Some(f) => f.apply(cmd).try_get_matches_from(&args).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            LoadError::Config(ConfigError {
                path: f.path.clone(),
                message: first.trim_start_matches("error: ").to_owned(),
            })
        })?,
        None => matches,
    };
    let cli = P::from_arg_matches(&matches).map_err(LoadError::Cli)?;
    let origins = setting_keys()
        .into_iter()
        .map(|key| {
            let origin = match matches.value_source(&key) {
                Some(clap::parser::ValueSource::CommandLine) => Origin::Flag,
                Some(clap::parser::ValueSource::EnvVariable) => Origin::Env,
                Some(_) if file.as_ref().is_some_and(|f| f.contains(&key)) => Origin::File,
                _ => Origin::Default,
            };
            (key, origin)
        })
        .collect();
    let warnings = file
        .iter()
        .filter_map(|f| f.permission_warning(crate::auth::file_mode))
        .collect();
    Ok(Loaded {
        cli,
        origins,
        warnings,
    })
}
