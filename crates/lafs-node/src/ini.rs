//! A reader and writer for `tahoe.cfg`, following Python `configparser` as stock Tahoe uses it.
//!
//! Sections are `[name]`; entries are `key = value` or `key: value`; keys are case-insensitive
//! (stored lower-case); lines starting with `#` or `;` are comments; an indented line
//! continues the previous value (joined with a newline). Unlike some INI crates, backslashes
//! are not escapes (`C:\tahoe` stays as written) and `;` after a value is part of the value, as
//! in Python.

use std::collections::BTreeMap;

/// Why a config file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IniError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parsed INI: section -> key -> value, in file order where it matters for writing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Ini {
    /// Parses INI text.
    pub fn parse(text: &str) -> Result<Self, IniError> {
        let mut ini = Ini::default();
        let mut current: Option<usize> = None;
        let mut last_key: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                last_key = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = line.starts_with(' ') || line.starts_with('\t');
            if indented && let (Some(s), Some(k)) = (current, last_key) {
                let v = &mut ini.sections[s].1[k].1;
                v.push('\n');
                v.push_str(trimmed);
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(IniError {
                        line: line_no,
                        message: "section header without ']'".into(),
                    });
                };
                let name = name.trim().to_string();
                current = Some(match ini.sections.iter().position(|(s, _)| *s == name) {
                    Some(i) => i,
                    None => {
                        ini.sections.push((name, Vec::new()));
                        ini.sections.len() - 1
                    }
                });
                last_key = None;
                continue;
            }
            let Some(s) = current else {
                return Err(IniError {
                    line: line_no,
                    message: "entry before any [section]".into(),
                });
            };
            let sep = trimmed.find(['=', ':']).ok_or_else(|| IniError {
                line: line_no,
                message: format!("expected 'key = value', got {trimmed:?}"),
            })?;
            let key = trimmed[..sep].trim().to_ascii_lowercase();
            if key.is_empty() {
                return Err(IniError {
                    line: line_no,
                    message: "empty key".into(),
                });
            }
            let value = trimmed[sep + 1..].trim().to_string();
            let entries = &mut ini.sections[s].1;
            match entries.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    entries[i].1 = value;
                    last_key = Some(i);
                }
                None => {
                    entries.push((key, value));
                    last_key = Some(entries.len() - 1);
                }
            }
        }
        Ok(ini)
    }

    /// The value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, e)| e.iter().find(|(k, _)| *k == key))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` in `section`, creating either.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let key = key.to_ascii_lowercase();
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let entries = &mut self.sections[idx].1;
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value.to_string(),
            None => entries.push((key, value.to_string())),
        }
    }

    /// All keys of a section.
    pub fn section(&self, section: &str) -> BTreeMap<&str, &str> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .map(|(_, e)| e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default()
    }

    /// Serializes (sections and keys in insertion order).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, entries) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in entries {
                let v = v.replace('\n', "\n    ");
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_configparser_semantics() {
        let text = "# comment\n[node]\nNickname = bob ; not a comment\ntub.port: tcp:47900:interface=127.0.0.1\nweb.port =\n\n[storage]\nenabled = true\nreserved_space = 1G\npath = C:\\tahoe\\x\nmulti = a\n  b\n";
        let ini = Ini::parse(text).unwrap();
        assert_eq!(ini.get("node", "nickname"), Some("bob ; not a comment"));
        assert_eq!(
            ini.get("node", "tub.port"),
            Some("tcp:47900:interface=127.0.0.1")
        );
        assert_eq!(ini.get("node", "web.port"), Some(""));
        assert_eq!(ini.get("storage", "path"), Some("C:\\tahoe\\x"));
        assert_eq!(ini.get("storage", "multi"), Some("a\nb"));
        assert_eq!(ini.get("storage", "missing"), None);
        let again = Ini::parse(&ini.to_text()).unwrap();
        assert_eq!(again, ini);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(Ini::parse("x = 1").unwrap_err().line, 1);
        assert_eq!(Ini::parse("[a]\n\nnonsense").unwrap_err().line, 3);
        assert_eq!(Ini::parse("[a\n").unwrap_err().line, 1);
    }
}
