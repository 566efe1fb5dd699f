#!/usr/bin/env bash
# Builds heatgrid's Debian package: target/debian/heatgrid_<version>-1_<arch>.deb.
#
#   bash scripts/package.sh          release build (what you install)
#   bash scripts/package.sh --dev    the debug build the tests already made (scripts/test.sh
#                                    checks the package's contents and unit with it)
#
# Before cargo-deb packs (assets in Cargo.toml, [package.metadata.deb]), the binary writes what
# is generated from its own CLI definition into target/package: one man page per verb
# (gzipped) and the bash, zsh and fish completions. The service's /etc/heatgrid/heatgrid.toml is
# the annotated example with the service's data directory and the packaged register maps.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
profile=release
[ "${1:-}" = "--dev" ] && profile=dev
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION (crates.io)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

if [ "$profile" = release ]; then
  cargo build --release --bin heatgrid
  bin=target/release/heatgrid
else
  # The build the test command made of every target: the same features (a build of the
  # binary alone would resolve the dependencies' features without the dev-dependencies and
  # rebuild them).
  cargo build --workspace --all-targets
  bin=target/debug/heatgrid
fi

out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/heatgrid"
"$bin" completions zsh >"$out/completions/_heatgrid"
"$bin" completions fish >"$out/completions/heatgrid.fish"
sed -e 's|^data_dir = "./heatgrid-data"|data_dir = "/var/lib/heatgrid"|' \
    -e 's|map = "modbus/|map = "/usr/share/heatgrid/modbus/|' \
    config/heatgrid.toml >"$out/heatgrid.toml"
grep -q '^data_dir = "/var/lib/heatgrid"$' "$out/heatgrid.toml" \
  || { echo "package.sh: the example's data_dir line changed; update the sed above" >&2; exit 1; }

# --strip: the binary without symbols (the debug build's line tables make it 100 MB).
cargo deb --no-build --profile "$profile" --strip
ls -1 target/debian/*.deb
