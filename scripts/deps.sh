#!/usr/bin/env bash
# Create .venv, install the Python requirements and the collection dependencies.
# Idempotent: each step is skipped when its stamp (a hash of its inputs) is unchanged.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Several make runs may share one work tree; only one of them installs at a time.
lock_file="${TMPDIR:-/tmp}/neonops-deps-$(printf '%s' "$repo_root" | sha256sum | cut -c1-16).lock"
exec 9>"$lock_file"
flock 9

venv=".venv"
requirements_stamp="$venv/.neonops-requirements.sha256"

log() { printf 'deps: %s\n' "$*"; }

python_version_ok() {  # $1 = interpreter, $2 = "3.12"
    "$1" -c "import sys, venv, ensurepip; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$2' else 1)" \
        >/dev/null 2>&1
}

# Pyenv shims only work when pyenv selects that version, so look for real interpreters first.
find_python() {
    local version candidate pyenv_root
    if [[ -n "${NEONOPS_PYTHON:-}" ]]; then
        echo "$NEONOPS_PYTHON"
        return 0
    fi
    pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for version in 3.12 3.11; do
        for candidate in \
            $(ls -d "$pyenv_root"/versions/"$version".*/bin/python3 2>/dev/null | sort -rV) \
            "/usr/local/bin/python$version" "/usr/bin/python$version" \
            "$(command -v "python$version" 2>/dev/null || true)"; do
            [[ -n "$candidate" && -x "$candidate" && "$candidate" != */shims/* ]] || continue
            if python_version_ok "$candidate" "$version"; then
                echo "$candidate"
                return 0
            fi
        done
    done
    return 1
}

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    :
else
    python="$(find_python)" || {
        echo "deps: no usable Python 3.12 or 3.11 found (set NEONOPS_PYTHON=/path/to/python3)" >&2
        exit 1
    }
    log "creating $venv with $python"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

wanted_hash="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [[ -f "$requirements_stamp" && "$(cat "$requirements_stamp")" == "$wanted_hash" ]]; then
    log "python requirements up to date"
else
    log "installing requirements-dev.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$wanted_hash" >"$requirements_stamp"
fi

# The team imports the collection from this tree; the link must stay relative so clones work anywhere.
mkdir -p .collections/ansible_collections/neonops
link=".collections/ansible_collections/neonops/storage"
if [[ "$(readlink "$link" 2>/dev/null)" != "../../.." ]]; then
    rm -rf "$link"
    ln -s ../../.. "$link"
fi

"$venv/bin/python" scripts/install_collections.py

# The pageserver role's molecule scenario runs sshd in a network namespace (openssh-server from Debian).
if [[ ! -x /usr/sbin/sshd ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing openssh-server (sshd for the molecule test hosts)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends openssh-server >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends openssh-server >/dev/null; }
    else
        log "warning: /usr/sbin/sshd missing (install openssh-server); the pageserver molecule scenario needs it"
    fi
fi
