#!/usr/bin/env bash
# Fetches the corpus of real migration sets that tests/corpus/manifest.toml names, for
# tests/it/corpus.rs. Nothing of these projects is committed: each set comes from its
# registry package, by name and exact version, through the registry's ordinary client
# (pip download, npm pack, cargo info), and its archive must match the manifest's sha256.
#
#   scripts/corpus.sh [SET...]      every set of the manifest when none is named
#
# Writes <dir>/<set>/V<n>__<description>.sql (the renaming rules are the manifest's) and
# <dir>/<set>/SOURCE.txt (where each file came from), where <dir> is $NEO_CORPUS_DIR, else
# $CARGO_TARGET_DIR/corpus, else target/corpus. Downloads are kept in <dir>/.downloads, and a
# set whose manifest entry has not changed since it was written is left as it is, so a second
# run needs no network. Runs of this script wait for each other (a lock file in <dir>).
# Exit 1, saying which package and why, when a download fails (no network?), an archive does
# not match its sha256, or a set's files are not what the manifest says.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest="$PWD/tests/corpus/manifest.toml"
out="${NEO_CORPUS_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/corpus}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! python3 -c 'import tomllib' 2>/dev/null; then
  echo "corpus: python3 >= 3.11 (for tomllib) is needed to read $manifest" >&2
  exit 1
fi

exec 9>"$out/.lock"
flock 9

exec python3 - "$manifest" "$out" "$@" <<'PY'
import fnmatch, hashlib, io, json, os, re, shutil, subprocess, sys, tarfile, tempfile, tomllib, zipfile

# Bump when what this script writes changes, so that sets written before are written again.
LAYOUT = 1
MARKER = b"-- neo:no-transaction\n"

manifest_path, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]


def fail(message):
    print(f"corpus: {message}", file=sys.stderr)
    sys.exit(1)


with open(manifest_path, "rb") as f:
    manifest = tomllib.load(f)
sets = manifest.get("sets", {})
for name in wanted:
    if name not in sets:
        fail(f"no set {name!r} in {manifest_path} (sets: {', '.join(sets)})")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(name, entry, argv, cwd):
    """Runs a registry client; fails with its output, naming the package, when it fails."""
    try:
        done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except FileNotFoundError:
        fail(f"{name}: {argv[0]} is not installed; it is needed to fetch {entry['registry']} package {entry['package']} {entry['version']}")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        fail(
            f"{name}: could not fetch {entry['registry']} package {entry['package']} {entry['version']} "
            f"({' '.join(argv)} exited with {done.returncode}; is the registry reachable?):\n{tail}"
        )


def download(name, entry, downloads):
    """The archive of `entry`, downloaded once into `downloads` and checked against its sha256."""
    registry, package, version, archive = entry["registry"], entry["package"], entry["version"], entry["archive"]
    cached = os.path.join(downloads, registry, archive)
    if os.path.isfile(cached) and sha256(cached) == entry["sha256"]:
        return cached
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        if registry == "pypi":
            kind = "--only-binary=:all:" if archive.endswith(".whl") else "--no-binary=:all:"
            run(name, entry, [sys.executable, "-m", "pip", "download", "--no-deps", kind, "--disable-pip-version-check",
                              "--quiet", "--dest", tmp, f"{package}=={version}"], tmp)
            got = os.path.join(tmp, archive)
        elif registry == "npm":
            run(name, entry, ["npm", "pack", f"{package}@{version}", "--pack-destination", tmp,
                              "--ignore-scripts", "--loglevel=error"], tmp)
            got = os.path.join(tmp, archive)
        elif registry == "crates":
            # `cargo info` downloads the crate into cargo's own cache to read its manifest; it runs
            # in an empty directory outside this workspace, so that no lock file picks another version.
            with tempfile.TemporaryDirectory() as empty:
                run(name, entry, ["cargo", "info", f"{package}@{version}"], empty)
            cargo_home = os.environ.get("CARGO_HOME") or os.path.join(os.path.expanduser("~"), ".cargo")
            cache = os.path.join(cargo_home, "registry", "cache")
            found = [os.path.join(cache, d, archive) for d in sorted(os.listdir(cache))
                     if os.path.isfile(os.path.join(cache, d, archive))] if os.path.isdir(cache) else []
            if not found:
                fail(f"{name}: cargo info {package}@{version} left no {archive} under {cache}")
            got = next((f for f in found if sha256(f) == entry["sha256"]), found[0])
        else:
            fail(f"{name}: unknown registry {registry!r} (pypi, npm or crates)")
        if not os.path.isfile(got):
            fail(f"{name}: the {registry} client did not produce {archive} (got: {', '.join(os.listdir(tmp)) or 'nothing'})")
        digest = sha256(got)
        if digest != entry["sha256"]:
            fail(f"{name}: {archive} has sha256 {digest}, the manifest says {entry['sha256']}: "
                 "not the archive the corpus was made from; nothing written")
        shutil.copyfile(got, cached + ".part")
        os.replace(cached + ".part", cached)
    return cached


def members(archive):
    """{path inside the archive: bytes} of the archive's regular files."""
    files = {}
    if archive.endswith(".whl") or archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    files[info.filename] = z.read(info)
    else:
        with tarfile.open(archive, "r:*") as t:
            for info in t.getmembers():
                if info.isfile():
                    files[info.name] = t.extractfile(info).read()
    return files


def matches(pattern, path):
    """fnmatch per path component: `*` never crosses a `/`."""
    parts, names = pattern.split("/"), path.split("/")
    return len(parts) == len(names) and all(fnmatch.fnmatchcase(n, p) for p, n in zip(parts, names))


def description(rule, rel):
    if rule == "stem":
        text = rel.rsplit("/", 1)[-1]
        text = text[: -len(".sql")] if text.endswith(".sql") else text
    elif rule == "dir":
        if "/" not in rel:
            fail(f"description = \"dir\" needs files in directories, not {rel!r}")
        text = rel.rsplit("/", 2)[-2]
    else:
        fail(f"unknown description rule {rule!r} (stem or dir)")
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def write_set(name, entry, archive):
    prefix = entry["dir"].strip("/") + "/"
    files = members(archive)
    selected = sorted(p[len(prefix):] for p in files if p.startswith(prefix) and matches(entry["files"], p[len(prefix):]))
    excluded = {e["file"]: e["reason"] for e in entry.get("exclude", [])}
    for rel in excluded:
        if rel not in selected:
            fail(f"{name}: excluded file {rel!r} is not among the selected files")
    selected = [rel for rel in selected if rel not in excluded]
    if len(selected) != entry["count"]:
        fail(f"{name}: {len(selected)} files match {entry['dir']}/{entry['files']} in {entry['archive']}, "
             f"the manifest says {entry['count']}")
    no_tx = set(entry.get("no_transaction", []))
    for rel in no_tx:
        if rel not in selected:
            fail(f"{name}: no_transaction file {rel!r} is not among the selected files")
    target = os.path.join(out, name)
    staging = target + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    source = [
        f"{name}: {entry['registry']} package {entry['package']} {entry['version']} ({entry['archive']}, sha256 {entry['sha256']})",
        f"upstream {entry['upstream']} {entry.get('upstream_ref', '')}".rstrip(),
        f"license {entry['license']} ({entry['license_source']})",
        "",
    ]
    for version, rel in enumerate(selected, start=1):
        body = files[prefix + rel]
        marked = rel in no_tx
        file_name = f"V{version}__{description(entry['description'], rel)}.sql"
        with open(os.path.join(staging, file_name), "wb") as f:
            f.write((MARKER if marked else b"") + body)
        source.append(f"{file_name} <- {entry['dir']}/{rel}{'  (+ -- neo:no-transaction)' if marked else ''}")
    for rel, reason in excluded.items():
        source.append(f"excluded {entry['dir']}/{rel}: {reason}")
    with open(os.path.join(staging, "SOURCE.txt"), "w") as f:
        f.write("\n".join(source) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


downloads = os.path.join(out, ".downloads")
os.makedirs(downloads, exist_ok=True)
for name in wanted or list(sets):
    entry = sets[name]
    stamp = hashlib.sha256(json.dumps([LAYOUT, entry], sort_keys=True).encode()).hexdigest()
    stamp_file = os.path.join(out, name + ".stamp")
    if os.path.isdir(os.path.join(out, name)) and os.path.isfile(stamp_file) and open(stamp_file).read().strip() == stamp:
        continue
    archive = download(name, entry, downloads)
    write_set(name, entry, archive)
    with open(stamp_file, "w") as f:
        f.write(stamp + "\n")
    print(f"corpus: {name}: {entry['count']} migrations from {entry['registry']} package {entry['package']} {entry['version']}", file=sys.stderr)
PY
