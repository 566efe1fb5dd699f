//! Every TOML block of the README and docs/ as a user would copy it: configuration blocks
//! into a config (a `[mqtt]` table and a station added when the block has none, the register
//! maps it names and the secrets its `*_env` keys name provided), register-map blocks into a
//! map of the required fields; then `heatgrid check` must accept each.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `(where, text)` of every ```toml block of README.md and docs/*.md.
fn blocks() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        let mut block: Option<(usize, String)> = None;
        for (n, line) in text.lines().enumerate() {
            match (&mut block, line.trim_start()) {
                (None, l) if l.starts_with("```toml") => block = Some((n + 1, String::new())),
                (Some(_), l) if l.starts_with("```") => {
                    let (at, body) = block.take().unwrap();
                    out.push((format!("{name}:{at}"), body));
                }
                (Some((_, body)), _) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    out
}

/// The values of `key = "…"` in `text`.
fn values_of<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("{key} = \"");
    text.match_indices(&pat)
        .filter_map(|(i, _)| text[i + pat.len()..].split('"').next())
        .collect()
}

/// A map with only the required fields, far from the addresses the docs' fragments use, in
/// wire addresses (`address_base = 0`, as the fragments' comments say).
const BASE_MAP: &str = "device = \"docs\"\naddress_base = 0\n\
    [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 100\ntype = \"i16\"\nscale = 0.01\n\
    [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = 101\ntype = \"i16\"\nscale = 0.01\n\
    [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 102\ntype = \"u16\"\nscale = 0.01\n";

/// The shipped map a block's `map = "…"` stands for: the plant's for a plant map, the OPC UA
/// node map for a path under `opcua/`, else a station's register map.
fn example_map(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = if name.contains("plant") {
        "config/modbus/heatgrid-sim-plant.toml"
    } else if name.contains("opcua") {
        "config/opcua/heatgrid-sim.toml"
    } else {
        "config/modbus/example-ecl-comfort.toml"
    };
    std::fs::read_to_string(root.join(file)).unwrap()
}

/// Runs `heatgrid check` on `config` in `dir`; the error output if it refused.
fn check(dir: &Path, config: &str) -> Result<(), String> {
    let file = dir.join("heatgrid.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heatgrid"));
    cmd.args(["check", "--config"]).arg(&file);
    for var in values_of(config, "token_env")
        .into_iter()
        .chain(values_of(config, "password_env"))
        .chain(values_of(config, "user_env"))
        .chain(values_of(config, "secret_env"))
    {
        cmd.env(var, "a-secret-long-enough-for-any-check-0123");
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_toml_block_of_the_docs_passes_check() {
    let blocks = blocks();
    assert!(blocks.len() >= 8, "only {} TOML blocks found", blocks.len());
    let mut failures = Vec::new();
    for (place, text) in &blocks {
        let dir = tempfile::tempdir().unwrap();
        let config = if text.contains("[[node]]") {
            // A node-map block: completed with the required fields it lacks, used by a station.
            let mut map = text.clone();
            for f in ["supply_temp_c", "return_temp_c", "flow_m3h"] {
                if !text.contains(&format!("field = \"{f}\"")) {
                    map.push_str(&format!(
                        "\n[[node]]\nfield = \"{f}\"\nnode_id = \"s=docs.{f}\"\ntype = \"double\"\n"
                    ));
                }
            }
            std::fs::write(dir.path().join("map.toml"), map).unwrap();
            "[mqtt]\nhost = \"127.0.0.1\"\n[[opcua.server]]\nname = \"s\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\n\
             [[station]]\nid = \"st-1\"\nopcua = { server = \"s\", map = \"map.toml\" }\n"
                .to_owned()
        } else if text.contains("[[register]]") {
            // A register-map block: added to a map of the required fields, which a station
            // then uses.
            std::fs::write(dir.path().join("map.toml"), format!("{BASE_MAP}\n{text}")).unwrap();
            "[mqtt]\nhost = \"127.0.0.1\"\n[[station]]\nid = \"st-1\"\n\
             modbus = { address = \"127.0.0.1:502\", map = \"map.toml\" }\n"
                .to_owned()
        } else {
            // Certificates and password files a block names exist (`heatgrid check` reads
            // them only at start).
            for key in ["server_certificate", "password_file"] {
                for f in values_of(text, key) {
                    let path = dir.path().join(f);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, "a-secret-long-enough-for-any-check-0123\n").unwrap();
                }
            }
            for map in values_of(text, "map") {
                let path = dir.path().join(map);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, example_map(map)).unwrap();
            }
            let mut config = String::new();
            if !text.contains("[mqtt]") {
                config.push_str("[mqtt]\nhost = \"127.0.0.1\"\n");
            }
            config.push_str(text);
            if !text.contains("[[station]]") {
                config.push_str("\n[[station]]\nid = \"st-1\"\n");
            }
            config
        };
        if let Err(e) = check(dir.path(), &config) {
            failures.push(format!("{place}:\n{text}\n→ {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
