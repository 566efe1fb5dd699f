//! The web control room's words: one catalogue per language (`web/i18n/en.json`,
//! `web/i18n/zh-CN.json`), built into the binary and served as one script, `/i18n.js`, that
//! the page (`web/app.js`) reads through its `t()`; and the checks that every key is in both
//! catalogues with the same placeholders, that every key the page uses exists, and that none
//! is left unused.
//!
//! Where it sits: beside [`super::web`], which serves the page's other files the same way.

use std::sync::OnceLock;

use axum::response::Response;

const EN: &str = include_str!("../../web/i18n/en.json");
const ZH_CN: &str = include_str!("../../web/i18n/zh-CN.json");

/// The languages, as the page names them.
pub const LANGUAGES: [(&str, &str); 2] = [("en", EN), ("zh-CN", ZH_CN)];

/// `const CATALOGUES = {"en": {…}, "zh-CN": {…}};`
fn script() -> &'static str {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let mut s = String::from(
            "// The control room's words, one catalogue per language (web/i18n/*.json).\n\
             const CATALOGUES = {",
        );
        for (i, (lang, json)) in LANGUAGES.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\n{lang:?}: {}", json.trim()));
        }
        s.push_str("};\n");
        s
    })
}

/// `GET /i18n.js`.
pub(super) async fn i18n_js() -> Response {
    super::web::asset(script(), "text/javascript; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const APP_JS: &str = include_str!("../../web/app.js");
    const INDEX: &str = include_str!("../../web/index.html");

    fn catalogue(json: &str) -> BTreeMap<String, String> {
        serde_json::from_str(json).expect("a catalogue is one JSON object of strings")
    }

    /// The `{name}`s of a text.
    fn placeholders(text: &str) -> BTreeSet<&str> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn every_key_is_in_every_language_with_the_same_placeholders() {
        let en = catalogue(EN);
        assert!(en.len() > 150, "{} keys", en.len());
        for (lang, json) in LANGUAGES {
            let other = catalogue(json);
            let missing: Vec<_> = en.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !en.contains_key(*k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{lang}: missing {missing:?}, not in en {extra:?}"
            );
            for (k, v) in &other {
                assert!(!v.trim().is_empty(), "{lang}: {k} is empty");
                assert_eq!(
                    placeholders(v),
                    placeholders(&en[k]),
                    "{lang}: {k} {v:?} against en {:?}",
                    en[k]
                );
            }
        }
    }

    /// Every `t("key")` of the page and `data-i18n="key"` of its HTML is in the catalogue;
    /// every catalogue key is used, literally or under a prefix the page completes with a
    /// value the engine sends (`t("state." + k)`, `tv("kind", a.kind)`).
    #[test]
    fn the_page_uses_every_key_and_only_keys_that_exist() {
        let en = catalogue(EN);
        // What follows each `open` that does not continue a longer name (`t(` but not
        // `split(`), up to `close`.
        let quoted = |text: &str, open: &str, close: char| -> BTreeSet<String> {
            text.match_indices(open)
                .filter(|(i, _)| {
                    !text[..*i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || "_.$".contains(c))
                })
                .filter_map(|(i, _)| text[i + open.len()..].split_once(close))
                .map(|(k, _)| k.to_owned())
                .collect()
        };
        let mut literal = quoted(APP_JS, "t(\"", '"');
        literal.extend(quoted(INDEX, "data-i18n=\"", '"'));
        let unknown: Vec<_> = literal
            .iter()
            .filter(|k| !k.ends_with('.') && !en.contains_key(*k))
            .collect();
        assert!(
            unknown.is_empty(),
            "used but not in the catalogue: {unknown:?}"
        );
        // Prefixes: t("state." + …) and tv("kind", …).
        let mut prefixes: BTreeSet<String> = literal
            .iter()
            .filter(|k| k.ends_with('.'))
            .cloned()
            .collect();
        prefixes.extend(quoted(APP_JS, "tv(\"", '"').into_iter().map(|p| p + "."));
        // Keys chosen by a condition: t(x ? "a" : "b").
        let strings = quoted(APP_JS, "\"", '"');
        let unused: Vec<_> = en
            .keys()
            .filter(|k| {
                !literal.contains(*k)
                    && !strings.contains(*k)
                    && !prefixes.iter().any(|p| k.starts_with(p.as_str()))
            })
            .collect();
        assert!(
            unused.is_empty(),
            "in the catalogue but never used: {unused:?}"
        );
        // What the engine sends has its words.
        let mut needed: Vec<String> = Vec::new();
        needed.extend(crate::alarms::AlarmKind::ALL.map(|k| format!("kind.{}", k.as_str())));
        needed.extend(crate::alarms::Severity::ALL.map(|s| format!("sev.{}", s.as_str())));
        needed.extend(crate::diagnose::Kind::ALL.map(|k| format!("finding.{}", k.as_str())));
        for state in ["in_control", "deviating", "stale", "comm_lost", "manual"] {
            needed.push(format!("state.{state}"));
        }
        for m in ["auto", "manual", "hold"] {
            needed.push(format!("mode.{m}"));
        }
        let kpis = serde_json::to_value(crate::control::kpi::DayKpis::default()).unwrap();
        for name in kpis.as_object().unwrap().keys() {
            needed.push(format!("kpi.{name}"));
        }
        let missing: Vec<_> = needed.iter().filter(|k| !en.contains_key(*k)).collect();
        assert!(missing.is_empty(), "no words for {missing:?}");
    }

    #[test]
    fn the_script_holds_every_language() {
        let s = script();
        assert!(s.starts_with("// The control room's words"));
        for (lang, _) in LANGUAGES {
            assert!(s.contains(&format!("{lang:?}: {{")), "{lang}");
        }
    }
}
