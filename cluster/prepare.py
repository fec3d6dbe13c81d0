"""``python -m cluster.prepare``: the Flink and Spark distributions and Beam's job-server jars, once, in a cache.

What it makes under the cache (``$MIMAMO_CLUSTER_CACHE``, default ``~/.cache/mimamo-cluster``):

* ``flink-<version>/``: a ``FLINK_HOME`` (``bin/``, ``conf/`` from the ``apache-flink`` wheel, ``lib/`` from
  ``apache-flink-libraries``), downloaded with pip (hash-checked) and unpacked, never installed;
* ``spark-<version>/``: a ``SPARK_HOME`` (``bin/``, ``sbin/``, ``jars/``) from the ``pyspark`` source archive;
* ``jars/``: the Flink and Spark job servers built by Maven from ``cluster/*/pom.xml``; each jar's SHA-256 must
  equal the one pinned in ``cluster.versions`` (after the build and before every use).

Every step is skipped when its result is already there, and results appear atomically (built beside, then
renamed), so an interrupted run leaves nothing half-made behind.
"""
import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from cluster import versions

__all__ = ["ClusterFiles", "cache_dir", "prepare", "sha256_file", "checked_jar"]

CACHE_ENV = "MIMAMO_CLUSTER_CACHE"
POM_DIR = Path(__file__).resolve().parent
_COMPLETE = ".complete"  # marker written last into an unpacked distribution


@dataclass(frozen=True)
class ClusterFiles:
    """Where the prepared files are."""

    flink_home: Optional[Path] = None
    flink_job_server_jar: Optional[Path] = None
    spark_home: Optional[Path] = None
    spark_job_server_jar: Optional[Path] = None


def cache_dir() -> Path:
    """``$MIMAMO_CLUSTER_CACHE`` or ``~/.cache/mimamo-cluster``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mimamo-cluster")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 8 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_jar(path: Path, expected_sha256: str) -> Path:
    """Returns ``path`` after checking its SHA-256.

    Raises:
        RuntimeError: the file's SHA-256 is not ``expected_sha256``.
    """
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise RuntimeError(f"{path}: SHA-256 {actual}, expected the pinned {expected_sha256} (cluster/versions.py)")
    return path


def _download(name: str, downloads: Path) -> Path:
    """The distribution file ``name`` of ``versions.DISTRIBUTIONS``, fetched by pip with its hash checked."""
    requirement, sha256, flags = versions.DISTRIBUTIONS[name]
    prefix = requirement.replace("==", "-")  # e.g. apache-flink-1.19.0, as pip names the file (- or _)

    def matching() -> List[Path]:
        return [path for path in sorted(downloads.glob("*")) if path.is_file()
                and path.name.replace("_", "-").startswith(prefix + ("-" if path.suffix == ".whl" else "."))
                and sha256_file(path) == sha256]

    found = matching() if downloads.is_dir() else []
    if found:
        return found[0]
    requirements = downloads / f"{name}.requirements.txt"
    downloads.mkdir(parents=True, exist_ok=True)
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                    "--dest", str(downloads), "-r", str(requirements), *flags], check=True)
    found = matching()
    if not found:
        raise RuntimeError(f"pip downloaded no file with SHA-256 {sha256} for {requirement}")
    return found[0]


def _members_under(archive: tarfile.TarFile, prefix: str) -> List[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        if member.name.startswith(prefix) and (member.isfile() or member.isdir()):
            member.name = member.name[len(prefix):]
            if member.name:
                members.append(member)
    return members


def _unpack_tree(archive_path: Path, prefix: str, target: Path) -> None:
    """Unpacks the files under ``prefix`` of a .tar.gz into ``target`` (data filter: nothing escapes it)."""
    with tarfile.open(archive_path) as archive:
        archive.extractall(target, members=_members_under(archive, prefix), filter="data")


def _unpack_wheel_tree(wheel: Path, prefix: str, target: Path) -> None:
    """Unpacks the files under ``prefix`` of a wheel into ``target``, keeping shell scripts executable."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            relative = Path(info.filename[len(prefix):])
            destination = (target / relative).resolve()
            if target.resolve() not in destination.parents:
                raise RuntimeError(f"{wheel}: {info.filename} would leave {target}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)
            if relative.parts[0] == "bin":
                destination.chmod(0o755)


def _atomic_dir(final: Path, build) -> Path:
    """Runs ``build(partial_dir)`` unless ``final`` is complete, then renames the result to ``final``."""
    if (final / _COMPLETE).exists():
        return final
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    partial.mkdir(parents=True)
    build(partial)
    (partial / _COMPLETE).write_text("")
    partial.rename(final)
    return final


def _flink_home(cache: Path) -> Path:
    def build(home: Path) -> None:
        scripts = _download("flink-scripts", cache / "downloads")
        libraries = _download("flink-libraries", cache / "downloads")
        _unpack_wheel_tree(scripts, "pyflink/bin/", home / "bin")
        _unpack_wheel_tree(scripts, "pyflink/conf/", home / "conf")
        root = f"apache-flink-libraries-{versions.FLINK_VERSION}/deps/"
        _unpack_tree(libraries, root + "lib/", home / "lib")
        _unpack_tree(libraries, root + "bin/", home / "bin")  # bash-java-utils.jar, used by the start scripts
        (home / "log").mkdir()
        for script in (home / "bin").glob("*.sh"):
            script.chmod(0o755)
        (home / "bin" / "flink").chmod(0o755)

    return _atomic_dir(cache / f"flink-{versions.FLINK_VERSION}", build)


def _spark_home(cache: Path) -> Path:
    def build(home: Path) -> None:
        archive = _download("spark", cache / "downloads")
        root = f"pyspark-{versions.SPARK_VERSION}/deps/"
        for part in ("bin", "sbin", "jars"):
            _unpack_tree(archive, f"{root}{part}/", home / part)
        for script in list((home / "bin").iterdir()) + list((home / "sbin").iterdir()):
            script.chmod(0o755)

    return _atomic_dir(cache / f"spark-{versions.SPARK_VERSION}", build)


def _job_server(name: str, cache: Path) -> Path:
    """The job-server jar of ``cluster/<name>/pom.xml``: built by Maven unless cached, SHA-256 checked."""
    jar_name, sha256 = versions.JOB_SERVERS[name]
    final = cache / "jars" / jar_name
    if final.exists():
        return checked_jar(final, sha256)
    build_dir = cache / "build" / name
    shutil.rmtree(build_dir, ignore_errors=True)
    subprocess.run(["mvn", "--batch-mode", "--quiet", "-f", str(POM_DIR / name / "pom.xml"),
                    f"-Dbuild.dir={build_dir}", "package"], check=True)
    checked_jar(build_dir / jar_name, sha256)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(build_dir / jar_name, final)
    shutil.rmtree(build_dir, ignore_errors=True)
    return final


def prepare(engines=("flink", "spark"), cache: Optional[Path] = None) -> ClusterFiles:
    """Makes sure the files of ``engines`` are in the cache (a no-op when they are) and says where they are.

    One process at a time prepares a cache (an exclusive ``flock`` on ``<cache>/.lock``); others wait for it.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    found: Dict[str, Path] = {}
    with open(cache / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if "flink" in engines:
            found["flink_home"] = _flink_home(cache)
            found["flink_job_server_jar"] = _job_server("flink-job-server", cache)
        if "spark" in engines:
            found["spark_home"] = _spark_home(cache)
            found["spark_job_server_jar"] = _job_server("spark-job-server", cache)
    return ClusterFiles(**found)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.prepare", description=__doc__.splitlines()[0])
    # no choices=: with nargs="*", Python 3.11's argparse checks an empty list against them and refuses it
    parser.add_argument("engines", nargs="*", metavar="{flink,spark}", help="which engines to prepare (default both)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.engines) - {"flink", "spark"})
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)} (choose from flink, spark)")
    started = time.monotonic()
    files = prepare(tuple(args.engines or ("flink", "spark")))
    for field, path in vars(files).items():
        if path is not None:
            print(f"{field}: {path}")
    print(f"cluster files ready in {time.monotonic() - started:.1f} s (cache {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
