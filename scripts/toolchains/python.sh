#!/usr/bin/env bash
# Python plugin toolchain: `componentize-py` 0.25.x in a virtualenv at
# ${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/python/venv.
#
# Run it (installs what is missing and prints the environment to use) or source
# it (installs what is missing and exports that environment):
#
#   source scripts/toolchains/python.sh
#   componentize-py -d wit -w interceptor bindings build/bindings
#
# Needs `python3` (>= 3.9, with the venv module) on PATH. componentize-py embeds
# its own CPython (3.12+) in the component; the python3 used here only runs the
# tool. Exports PATH with the venv's bin directory first. Cold: about 10 s
# (pip); warm (already installed): a few milliseconds.

_sluice_python_install() (
  set -euo pipefail
  version="0.25"
  venv="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/python/venv"
  if [[ -x "$venv/bin/componentize-py" ]] &&
    compgen -G "$venv/lib/python3*/site-packages/componentize_py-$version.*.dist-info" >/dev/null; then
    exit 0
  fi
  if ! command -v python3 >/dev/null; then
    echo "python toolchain: \`python3\` is not on PATH" >&2
    exit 1
  fi
  echo "python toolchain: installing componentize-py $version.x into $venv" >&2
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "componentize-py>=$version,<0.$((${version#0.} + 1))" >&2
)

if _sluice_python_install; then
  _sluice_python_bin="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/python/venv/bin"
  case ":$PATH:" in
    *":$_sluice_python_bin:"*) ;;
    *) export PATH="$_sluice_python_bin:$PATH" ;;
  esac
  if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "export PATH=\"$_sluice_python_bin:\$PATH\""
  fi
  unset -f _sluice_python_install
  unset _sluice_python_bin
else
  unset -f _sluice_python_install
  # `return` when sourced, `exit` when run.
  return 1 2>/dev/null || exit 1
fi
