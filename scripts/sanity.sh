#!/usr/bin/env bash
# Run `ansible-test sanity` offline, without Docker, on a copy of the collection content.
#
# ansible-test only checks files git tracks and needs the collection at .../ansible_collections/neonops/storage,
# so the content (git ls-files, tracked plus untracked-but-not-ignored) is copied to build/sanity.XXXXXX/ and a
# throwaway git repository is made there. Paths that are not collection content are left out:
#   neonsim/, tests/neonsim/  - the simulator is a separate Python package, not collection code
#   tests/integration/        - a pytest harness, not ansible-test integration targets (no targets/ layout)
#   tests/chaos/              - the fault campaign (make chaos), a harness over neonsim like tests/integration
#   benchmarks/, scripts/, .ci/ - repository tooling; excluded from the built artifact too (galaxy.yml)
# Extra arguments go to ansible-test (e.g. `make sanity SANITY_ARGS="--test pylint"`).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

excluded='^(neonsim|tests/neonsim|tests/integration|tests/chaos|benchmarks|scripts|\.ci)/'
# A fresh tree per run: several engineers may run sanity in one work tree at once. ansible-test's warm state
# (its per-test venvs) lives under ~/.ansible/test, so a new tree costs nothing.
mkdir -p "$repo_root/build"
run_dir="$(mktemp -d "$repo_root/build/sanity.XXXXXX")"
trap 'rm -rf "$run_dir"' EXIT
sanity_root="$run_dir/ansible_collections"
tree="$sanity_root/neonops/storage"

python="$repo_root/.venv/bin/python"
python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ansible-test looks for get-pip in its cache before downloading; 2.21 wants 25.2, 2.19 wants 24.2.
cache_dir="$HOME/.ansible/test/cache"
mkdir -p "$cache_dir"
for pip_version in 25_2 24_2; do
    cached="$cache_dir/get_pip_$pip_version.py"
    if [[ ! -f "$cached" ]] || grep -q 'neonops-storage get-pip stand-in' "$cached"; then
        cp scripts/get_pip_standin.py "$cached"
    fi
done

mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | grep -zvE "$excluded" |
    while IFS= read -r -d '' path; do
        if [[ -e "$path" || -L "$path" ]]; then
            cp -P --parents -- "$path" "$tree/"
        fi
    done

# Make the dependency collections (amazon.aws, ...) visible next to ours.
for dependency in .collections/ansible_collections/*/*; do
    [[ "$dependency" == */neonops/storage ]] && continue
    namespace_dir="$sanity_root/$(basename "$(dirname "$dependency")")"
    mkdir -p "$namespace_dir"
    ln -sfn "$repo_root/$dependency" "$namespace_dir/$(basename "$dependency")"
done

# validate-modules wants a GPLv3 header in every module; this collection is Apache-2.0 (galaxy.yml, LICENSE),
# so that one check is ignored for every module. Generated here so a new module never needs a hand edit;
# the committed ignore file holds only the other, individually reasoned entries.
core_version="$("$python" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')"
ignore_file="$tree/tests/sanity/ignore-$core_version.txt"
mkdir -p "$(dirname "$ignore_file")"
if [[ -s "$ignore_file" && -n "$(tail -c1 "$ignore_file")" ]]; then
    echo >>"$ignore_file"
fi
for module in "$tree"/plugins/modules/*.py; do
    [[ -e "$module" ]] || continue
    echo "${module#"$tree/"} validate-modules:missing-gplv3-license # Apache-2.0 collection, not GPLv3" >>"$ignore_file"
done

cd "$tree"
git init -q .
git add -A .

echo "== ansible-test sanity --python $python_version (in $tree)"
"$repo_root/.venv/bin/ansible-test" sanity --python "$python_version" --color no "$@"
