#!/usr/bin/env bash
# The Debian package as an installer sees it (run by scripts/test.sh): builds it from the debug
# build (scripts/package.sh --dev), checks its control data and contents, verifies the systemd
# unit with systemd-analyze, unpacks it into a temporary root and runs the unpacked binary on
# the packaged config through `heatgrid check`, with the secrets filled in the packaged
# environment file as an operator would.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package test FAILED: $*" >&2; exit 1; }

rm -f target/debian/heatgrid_*.deb
bash scripts/package.sh --dev
deb=$(ls target/debian/heatgrid_*.deb)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

echo "== control data of $deb"
[ "$(dpkg-deb --field "$deb" Package)" = heatgrid ] || fail "package name"
depends=$(dpkg-deb --field "$deb" Depends)
[[ $depends == *libc6* && $depends == *adduser* ]] || fail "Depends: $depends"
mkdir "$root/control"
dpkg-deb --control "$deb" "$root/control"
for f in /etc/heatgrid/heatgrid.toml /etc/heatgrid/heatgrid.env; do
  grep -qx "$f" "$root/control/conffiles" || fail "$f is not a conffile"
done
for s in postinst postrm; do
  [ -f "$root/control/$s" ] || fail "no $s"
done
for s in "$root"/control/p*inst "$root"/control/p*rm; do
  [ -f "$s" ] && { sh -n "$s" || fail "$s is not valid sh"; }
done
grep -q 'adduser --system' "$root/control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper' "$root/control/postinst" || fail "postinst lacks the unit's registration"
if grep -q 'deb-systemd-invoke start' "$root/control/postinst"; then
  fail "postinst starts the service (it must wait for the operator's config)"
fi

echo "== contents"
listing=$(dpkg-deb --contents "$deb")
expect() {  # mode path
  grep -Eq "^$1 .* \./$2\$" <<<"$listing" || fail "missing or wrong mode: $1 $2"
}
expect '-rwxr-xr-x' 'usr/bin/heatgrid'
expect '-rw-r--r--' 'etc/heatgrid/heatgrid.toml'
expect '-rw-------' 'etc/heatgrid/heatgrid.env'
expect '-rw-r--r--' 'usr/lib/systemd/system/heatgrid.service'
expect '-rw-r--r--' 'usr/share/heatgrid/modbus/heatgrid-sim.toml'
expect '-rw-r--r--' 'usr/share/heatgrid/modbus/example-ecl-comfort.toml'
expect '-rw-r--r--' 'usr/share/heatgrid/opcua/heatgrid-sim.toml'
expect '-rw-r--r--' 'usr/share/doc/heatgrid/examples/heatgrid.toml'
expect '-rw-r--r--' 'usr/share/man/man1/heatgrid.1.gz'
expect '-rw-r--r--' 'usr/share/man/man1/heatgrid-run.1.gz'
expect '-rw-r--r--' 'usr/share/bash-completion/completions/heatgrid'
expect '-rw-r--r--' 'usr/share/zsh/vendor-completions/_heatgrid'
expect '-rw-r--r--' 'usr/share/fish/vendor_completions.d/heatgrid.fish'

echo "== unpacked into $root"
dpkg-deb -x "$deb" "$root"
unit="$root/usr/lib/systemd/system/heatgrid.service"
for key in 'User=heatgrid' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/heatgrid' \
           'NoNewPrivileges=yes' 'Restart=on-failure' 'EnvironmentFile=-/etc/heatgrid/heatgrid.env'; do
  grep -qx "$key" "$unit" || fail "unit lacks $key"
done
# The unit is verified in the unpacked root (so ExecStart= is the packaged binary) beside the
# host's own units (sysinit.target, network-online.target, … that every unit depends on).
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
systemd-analyze verify --root="$root" --man=no --generators=no heatgrid.service 2>&1 \
  | tee "$root/verify.log"
[ "${PIPESTATUS[0]}" -eq 0 ] && ! grep -q . "$root/verify.log" \
  || fail "systemd-analyze verify reported the above"
# The hardening stays where it is: exposure at most 2.0 of 10 (it is 1.5 when written).
systemd-analyze security --offline=true --root="$root" --threshold=20 heatgrid.service \
  | tail -1 || fail "the unit's exposure rose above 2.0 (systemd-analyze security)"
zcat "$root/usr/share/man/man1/heatgrid.1.gz" | grep -q '^\.TH heatgrid 1' || fail "man page"
bash -n "$root/usr/share/bash-completion/completions/heatgrid" || fail "bash completion"
grep -q '^data_dir = "/var/lib/heatgrid"$' "$root/etc/heatgrid/heatgrid.toml" || fail "data_dir"

# The operator fills the secrets the config names; `check` must then accept the packaged config.
env_file="$root/etc/heatgrid/heatgrid.env"
sed -i -e 's|^#HEATGRID_TOKEN_CONTROL_ROOM=$|HEATGRID_TOKEN_CONTROL_ROOM=a-long-enough-operator-token|' \
       -e 's|^#HEATGRID_INFLUX_TOKEN=$|HEATGRID_INFLUX_TOKEN=secret|' "$env_file"
out=$(env -i PATH=/usr/bin:/bin bash -c "set -a; . '$env_file'; set +a; \
  '$root/usr/bin/heatgrid' check --config '$root/etc/heatgrid/heatgrid.toml'") \
  || fail "heatgrid check on the packaged config: $out"
grep -q ': OK (' <<<"$out" || fail "check said: $out"
echo "$out"
# Without the secrets, check refuses and names what is missing.
if env -i PATH=/usr/bin:/bin "$root/usr/bin/heatgrid" check \
     --config "$root/etc/heatgrid/heatgrid.toml" 2>"$root/err"; then
  fail "check accepted the config without its secrets"
fi
grep -q HEATGRID_TOKEN_CONTROL_ROOM "$root/err" || fail "missing secret not named: $(cat "$root/err")"
echo "package test: OK ($(du -h "$deb" | cut -f1) $deb)"
