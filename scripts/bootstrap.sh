#!/usr/bin/env bash
# Install what resilience.dr's lab and tests need, and nothing that is already there:
#   - Debian packages (when root and apt-get exist): PostgreSQL 15, pgBackRest, HAProxy,
#     nginx, shellcheck, etcd (for Patroni tests), rsync and python3-venv (the Patroni and
#     Barman tests build venvs the postgres user can run). Services are not started by the install:
#     the lab and the tests start their own.
#   - .venv with python3.12 when it works, else python3, and requirements-test.txt.
#   - ansible-test's get-pip bootstrap script, served from ensurepip + PyPI, so that
#     `ansible-test sanity --venv` works on a machine (or an air-gapped network) that cannot
#     reach ansible-test's download host.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

# each Debian package with a file that shows it is installed (same order in both lists)
debian_packages=(postgresql-15 postgresql-contrib pgbackrest haproxy nginx-light shellcheck etcd-server rsync python3-venv)
package_files=(/usr/lib/postgresql/15/bin/pg_ctl /usr/share/postgresql/15/extension/pg_stat_statements.control
  /usr/bin/pgbackrest /usr/sbin/haproxy /usr/sbin/nginx /usr/bin/shellcheck /usr/bin/etcd /usr/bin/rsync
  /usr/lib/python3.11/ensurepip/__init__.py)

missing=()
for i in "${!debian_packages[@]}"; do
  [[ -e "${package_files[$i]}" ]] || missing+=("${debian_packages[$i]}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    # keep the packages' own services stopped: the lab runs its own instances
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [[ -e $policy ]] && had_policy=1
    if ((had_policy == 0)); then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if ((had_policy == 0)); then rm -f "$policy"; fi
  else
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: install them (apt-get install ${missing[*]}) or run this as root" >&2
    exit 1
  fi
fi

pick_python() {
  local candidate
  for candidate in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
  PYTHON="$(pick_python)" || { echo "bootstrap: no usable python3 found" >&2; exit 1; }
  echo "bootstrap: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap: installing Python requirements into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements-test.txt"
  echo "$want" >"$stamp"
fi

# ansible-test bootstraps every venv it builds with a get-pip script it downloads from a
# host outside the package registries; a cached file of the right name is used instead.
req_py="$("$VENV/bin/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"))')"
pip_version="$(grep -oE "pip='[0-9.]+'" "$req_py" | head -1 | cut -d"'" -f2)"
pip_version="${pip_version:-25.2}"
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [[ ! -f $cache ]]; then
  mkdir -p "$(dirname "$cache")"
  cp "$ROOT/scripts/get_pip_offline.py" "$cache"
  echo "bootstrap: wrote $cache"
fi
