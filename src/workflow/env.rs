//! The environment keys (run.md §2 "Environment"): `env` values of every form, `secrets`,
//! `env_files`, `profiles`, and their parser.

use super::cx::{show, Cx};
use super::is_identifier;
use super::keys::Cx as K;
use super::yaml::{Key, Node, NodeKind, Scalar};
use crate::error::Result;

/// One `env:` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    /// A string, number or boolean, as written.
    Plain(String),
    /// `{secret: true, value}`: masked as `***` wherever prodigy prints or writes it.
    Secret(String),
    /// `{command, cache}`: the command's trimmed stdout.
    Command {
        /// The shell command.
        command: String,
        /// Run once per run and reuse.
        cache: bool,
    },
    /// `{condition, when_true, when_false}`.
    Conditional {
        /// The expression (text for `src/workflow/expr.rs`).
        condition: String,
        /// Value when it holds.
        when_true: String,
        /// Value otherwise.
        when_false: String,
    },
}

/// One `secrets:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// The variable it sets.
    pub name: String,
    /// `env` (read the variable `key`) or `file` (read the file `key`, trimmed).
    pub provider: String,
    /// The variable name or the file path.
    pub key: String,
    /// `version`, when given.
    pub version: Option<String>,
}

/// One `profiles:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Its name (`--profile NAME`).
    pub name: String,
    /// `description`, when given.
    pub description: Option<String>,
    /// Variables it sets, in file order.
    pub env: Vec<(String, String)>,
}

impl Cx<'_> {
    /// `env:` of the workflow (`top`) or of a step, every value form; in file order.
    pub(crate) fn env_map(&self, k: &Key, v: &Node, top: bool) -> Result<Vec<(String, EnvValue)>> {
        let m = self.map_of(k, v, "`env`")?;
        let mut out = Vec::new();
        let mut failed = None;
        for (ek, ev) in m {
            match self.env_value(ek, ev, top) {
                Ok(val) => out.push((ek.name.clone(), val)),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn env_name(&self, ek: &Key, what: &str) -> Result<()> {
        if is_identifier(&ek.name) {
            return Ok(());
        }
        Err(self.err(
            ek.pos,
            format!(
                "`{what}` name `{}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                ek.name
            ),
        ))
    }

    fn env_value(&self, ek: &Key, ev: &Node, top: bool) -> Result<EnvValue> {
        self.env_name(ek, "env")?;
        let NodeKind::Map(m) = &ev.kind else {
            return match &ev.kind {
                NodeKind::Scalar(Scalar::Null, _) | NodeKind::Seq(_) => Err(self.err(
                    ev.pos_or(ek),
                    format!(
                        "`env.{}` must be a string, number, boolean or a map (`{{secret: true, \
                         value}}`, `{{command}}`, `{{condition, when_true, when_false}}`), found {}",
                        ek.name,
                        ev.describe()
                    ),
                )),
                _ => Ok(EnvValue::Plain(self.text(ek, ev, &format!("env.{}", ek.name))?)),
            };
        };
        self.check_keys(m, K::EnvValue);
        let field = |name: &str| self.get(K::EnvValue, m, name);
        let what = format!("env.{}", ek.name);
        let _ = top;
        if let Some((sk, sv)) = field("secret") {
            if !self.bool(sk, sv)? {
                self.warn(
                    sk.pos,
                    format!("`{what}` has `secret: false`; it is an ordinary value"),
                );
            }
            let Some((vk, vv)) = field("value") else {
                return Err(self.err(ek.pos, format!("`{what}` has `secret` but no `value`")));
            };
            let value = self.text(vk, vv, &format!("{what}.value"))?;
            return Ok(if self.bool(sk, sv)? {
                EnvValue::Secret(value)
            } else {
                EnvValue::Plain(value)
            });
        }
        if let Some((ck, cv)) = field("command") {
            let command = self.command(ck, cv)?;
            let cache = match field("cache") {
                Some((a, b)) => self.bool(a, b)?,
                None => false,
            };
            return Ok(EnvValue::Command { command, cache });
        }
        if let Some((ck, cv)) = field("condition") {
            let condition = self.command(ck, cv)?;
            let branch = |name: &str| -> Result<String> {
                match field(name) {
                    Some((a, b)) => self.text(a, b, &format!("{what}.{name}")),
                    None => {
                        Err(self.err(ek.pos, format!("`{what}` has `condition` but no `{name}`")))
                    }
                }
            };
            let when_true = branch("when_true");
            let when_false = branch("when_false");
            return Ok(EnvValue::Conditional {
                condition,
                when_true: when_true?,
                when_false: when_false?,
            });
        }
        if let Some((vk, vv)) = field("value") {
            return Ok(EnvValue::Plain(self.text(
                vk,
                vv,
                &format!("{what}.value"),
            )?));
        }
        Err(self.err(
            ev.pos_or(ek),
            format!(
                "`{what}` as a map needs `secret` and `value`, `command`, or `condition` with \
                 `when_true` and `when_false`"
            ),
        ))
    }

    /// `secrets:`: `NAME: "ENV_VAR"` or `NAME: {provider: env|file, key, version?}`.
    #[allow(clippy::redundant_closure_call)]
    pub(crate) fn secrets(&self, k: &Key, v: &Node) -> Result<Vec<Secret>> {
        let m = self.map_of(k, v, "`secrets`")?;
        let mut out = Vec::new();
        let mut failed = None;
        for (sk, sv) in m {
            let r = (|| -> Result<Secret> {
                self.env_name(sk, "secrets")?;
                if let NodeKind::Scalar(Scalar::Str(var), _) = &sv.kind {
                    if var.trim().is_empty() {
                        return Err(self.err(sv.pos, format!("`secrets.{}` is empty", sk.name)));
                    }
                    return Ok(Secret {
                        name: sk.name.clone(),
                        provider: "env".into(),
                        key: var.clone(),
                        version: None,
                    });
                }
                let NodeKind::Map(sm) = &sv.kind else {
                    return Err(self.err(
                        sv.pos_or(sk),
                        format!(
                            "`secrets.{}` must be the name of an environment variable or \
                             `{{provider: env|file, key}}`, found {}",
                            sk.name,
                            show(sv)
                        ),
                    ));
                };
                self.check_keys(sm, K::Secret);
                let provider = match self.get(K::Secret, sm, "provider") {
                    None => "env".to_string(),
                    Some((pk, pv)) => match &pv.kind {
                        NodeKind::Scalar(Scalar::Str(p), _) if p == "env" || p == "file" => {
                            p.clone()
                        }
                        _ => {
                            return Err(self.err(
                                pv.pos_or(pk),
                                format!(
                                    "secret provider {} is not supported; use `env` (an \
                                     environment variable) or `file` (a file's contents)",
                                    show(pv)
                                ),
                            ))
                        }
                    },
                };
                let Some((kk, kv)) = self.get(K::Secret, sm, "key") else {
                    return Err(self.err(sk.pos, format!("`secrets.{}` needs `key`", sk.name)));
                };
                let key = self.command(kk, kv)?;
                let version = match self.get(K::Secret, sm, "version") {
                    Some((a, b)) => Some(self.text(a, b, "version")?),
                    None => None,
                };
                Ok(Secret {
                    name: sk.name.clone(),
                    provider,
                    key,
                    version,
                })
            })();
            match r {
                Ok(s) => out.push(s),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// `env_files:`: a list of paths (a single string is one path).
    pub(crate) fn env_files(&self, k: &Key, v: &Node) -> Result<Vec<String>> {
        match &v.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| self.command(k, i))
                .collect::<Result<Vec<_>>>(),
            NodeKind::Scalar(Scalar::Null, _) => Ok(Vec::new()),
            _ => Ok(vec![self.command(k, v)?]),
        }
    }

    /// `profiles:`: `NAME: {description?, KEY: value…}`.
    pub(crate) fn profiles(&self, k: &Key, v: &Node) -> Result<Vec<Profile>> {
        let m = self.map_of(k, v, "`profiles`")?;
        let mut out = Vec::new();
        for (pk, pv) in m {
            let pm = self.map_of(pk, pv, &format!("`profiles.{}`", pk.name))?;
            let mut p = Profile {
                name: pk.name.clone(),
                description: None,
                env: Vec::new(),
            };
            for (ek, ev) in pm {
                if ek.name == "description" {
                    p.description = Some(self.text(ek, ev, "description")?);
                    continue;
                }
                self.env_name(ek, &format!("profiles.{}", pk.name))?;
                p.env.push((
                    ek.name.clone(),
                    self.text(ek, ev, &format!("profiles.{}.{}", pk.name, ek.name))?,
                ));
            }
            out.push(p);
        }
        Ok(out)
    }
}
