# Sourced by serve.sh and test.sh: makes .venv hold exactly what pyproject.toml pins.
# Usage: ensure_venv [EXTRA]   (EXTRA is an optional-dependencies group, e.g. dev)

find_python() {
  for candidate in "${HUB_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "The hub needs Python 3.11 (set HUB_PYTHON to its path)." >&2
  return 1
}

ensure_venv() {
  local extra="${1:-}" spec="." stamp pins python
  [ -n "$extra" ] && spec=".[$extra]"
  # Re-install only when the pins (or the extras asked for) changed since the last install;
  # an install with extras also satisfies a request for none.
  pins=$(sha256sum pyproject.toml | cut -c1-16)
  stamp=".venv/.installed-$pins-${extra:-base}"
  if [ -f "$stamp" ] || { [ -z "$extra" ] && compgen -G ".venv/.installed-$pins-*" >/dev/null; }; then
    return 0
  fi
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python) || return 1
    echo "Creating .venv with $python …"
    "$python" -m venv .venv
  fi
  echo "Installing the hub's pinned dependencies into .venv (first run takes a few minutes) …"
  .venv/bin/python -m pip install --quiet --upgrade pip
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet -e "$spec"
  rm -f .venv/.installed-*
  touch "$stamp"
}
