"""``mimamo weights fetch|import|show``: get the official weights into the cache, verified (spec 5).

``register`` imports nothing heavy; torch is imported by the handlers only.
"""
import argparse
from typing import Dict, List, Optional

_DESCRIPTION = """\
Manages the two weight files MIMAMO-Net needs: the MIMAMO checkpoint (model_weights.pth.tar) and the
ResNet-50 FER+ backbone (resnet50_ferplus_dag.pth). Files are verified by loading them with weights_only=True and
checking every key and shape; their SHA-256 is recorded in <cache>/manifest.json. The cache is $MIMAMO_CACHE_DIR
or the platform user cache."""


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", default=None, help="weights cache directory (default: $MIMAMO_CACHE_DIR or the user cache)"
    )


def _add_pins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mimamo-sha256",
        default=None,
        help="required SHA-256 of the MIMAMO checkpoint (default: $MIMAMO_CHECKPOINT_SHA256; unset = no pin)",
    )
    parser.add_argument(
        "--backbone-sha256",
        default=None,
        help="required SHA-256 of the ResNet-50 FER+ weights (default: $MIMAMO_BACKBONE_SHA256; unset = no pin)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``weights`` and its actions to the ``mimamo`` parser."""
    parser = subparsers.add_parser("weights", help="fetch, import or show the model weights", description=_DESCRIPTION)
    actions = parser.add_subparsers(dest="weights_action", required=True, metavar="ACTION")

    fetch = actions.add_parser("fetch", help="download both files into the cache and verify them")
    _add_cache_dir(fetch)
    fetch.add_argument(
        "--mimamo-url", default=None, help="where to download the MIMAMO checkpoint (default: the official Drive link)"
    )
    fetch.add_argument(
        "--backbone-url", default=None, help="where to download the ResNet-50 FER+ weights (default: robots.ox.ac.uk)"
    )
    fetch.add_argument("--timeout-s", type=float, default=60.0, help="network timeout per request, in seconds")
    _add_pins(fetch)
    fetch.set_defaults(handler=run_fetch)

    imported = actions.add_parser(
        "import", help="verify weight files obtained by hand and copy them into the cache (recognised by keys)"
    )
    imported.add_argument("files", nargs="+", metavar="FILE", help="the MIMAMO checkpoint and/or the backbone")
    _add_cache_dir(imported)
    _add_pins(imported)
    imported.set_defaults(handler=run_import)

    show = actions.add_parser("show", help="print what the cache holds; exit status 1 if a file is missing")
    _add_cache_dir(show)
    show.set_defaults(handler=run_show)


def _pins(args: argparse.Namespace) -> Dict[str, Optional[str]]:
    from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO

    return {MIMAMO: args.mimamo_sha256, BACKBONE: args.backbone_sha256}


def run_fetch(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Handler of ``mimamo weights fetch``."""
    from mimamo_ops.model.checkpoints import BACKBONE, DESCRIPTIONS, MIMAMO
    from mimamo_ops.weights.cache import fetch_weights

    paths = fetch_weights(
        args.cache_dir,
        urls={MIMAMO: args.mimamo_url, BACKBONE: args.backbone_url},
        expected_sha256=_pins(args),
        timeout_s=args.timeout_s,
    )
    for kind, path in paths.items():
        print(f"{DESCRIPTIONS[kind]}: {path}")
    return 0


def run_import(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Handler of ``mimamo weights import``."""
    from mimamo_ops.model.checkpoints import DESCRIPTIONS
    from mimamo_ops.weights.cache import import_weights

    for kind, path in import_weights(args.files, args.cache_dir, expected_sha256=_pins(args)).items():
        print(f"{DESCRIPTIONS[kind]}: imported to {path}")
    return 0


def run_show(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Handler of ``mimamo weights show``: one block per file; exit status 1 if one is missing or unverified."""
    from mimamo_ops.model.checkpoints import DESCRIPTIONS
    from mimamo_ops.runtime.cache_dirs import default_cache_dir
    from mimamo_ops.weights.cache import inspect_cache

    cache = args.cache_dir or default_cache_dir()
    print(f"cache: {cache}")
    complete = True
    for entry in inspect_cache(cache):
        print(f"{DESCRIPTIONS[entry.kind]}: {entry.path}")
        if not entry.present:
            complete = False
            print("  missing: run `mimamo weights fetch`, or `mimamo weights import FILE` if you have the file")
            continue
        state = "verified" if entry.verified else "NOT verified (run `mimamo weights fetch` or `import` to verify)"
        complete = complete and entry.verified
        print(f"  size: {entry.size_bytes} bytes ({entry.size_bytes / 2**20:.1f} MiB)")
        print(f"  sha256: {entry.sha256}")
        print(f"  status: {state}")
        if entry.source:
            print(f"  source: {entry.source} (verified {entry.recorded_at})")
    return 0 if complete else 1
