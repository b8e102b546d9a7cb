"""The ``nacode`` command line (also ``python -m nacode``).

``nacode book``         execute the notebooks with a profile and build the HTML book
``nacode data verify``  check every entry of ``data_manifest.yaml``
``nacode bench``        time the methods and write the medians as JSON
``nacode tune breast``  tune the breast study's DIP methods on its validation subjects
``nacode recon``        reconstruct raw k-space (ISMRMRD) by gridding, CS-TV or dTV
``nacode tsc``          calibrate a sodium image on its tubes: aTSC map (mM), ROIs, table
``nacode denoise``      denoise your own images (CNN, DAE, NLM, TV, Gaussian)

The commands on a researcher's own files (``recon``, ``tsc``, ``denoise``) live in
:mod:`nacode.cli_data`.

Errors are one line on stderr naming the file and the fix, with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nacode import __version__, cli_data
from nacode.profiles import PROFILE_NAMES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nacode", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nacode {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    book = commands.add_parser("book", help="execute the notebooks and build the HTML book")
    book.add_argument("--profile", choices=PROFILE_NAMES, default="quick",
                      help="quick: 2 CPU cores, minutes (default); full: paper scale, GPU")
    book.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                      help="torch device for the notebooks (default cpu; auto picks cuda "
                      "when available)")
    book.add_argument("--only", action="append", metavar="NAME",
                      help="execute only this notebook (stem of book/NAME.md), then the intro, "
                           "whose claims read every chapter's results; repeatable")
    book.add_argument("--no-build", action="store_true", help="execute only, skip the HTML")
    book.add_argument("--strict", action="store_true", help="Sphinx warnings are errors")
    book.add_argument("--root", type=Path, default=None,
                      help="repository root (default: found from the working directory)")
    book.add_argument("--build-dir", type=Path, default=None,
                      help="output folder (default: ROOT/_build)")

    train = commands.add_parser("train", help="train a study's networks")
    train.add_argument("study", choices=("calf", "brain"), help="which study")
    train.add_argument("--nsa", type=int, action="append",
                       help="calf: train only the model for this NSA (repeatable; default: all)")
    train.add_argument("--fold", type=int, action="append", choices=range(1, 6),
                       metavar="K", help="brain: train only fold K (repeatable; default: all)")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs per model (calf: 100) or the cap before early stopping "
                            "(brain: 200)")
    train.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="stop each model after the epoch that exceeds this wall time")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default <build dir>/cache/<study>/weights; the "
                            "committed weights/ change only with --promote)")
    train.add_argument("--promote", action="store_true",
                       help="after training, copy the weights into weights/ and update their "
                            "sha256, size and description in data_manifest.yaml")
    train.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                       help="profile recorded in the provenance (default: quick for a trial "
                            "with --limit or fewer epochs than the paper's, else full)")
    train.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                       help="under torchrun each process takes cuda:LOCAL_RANK")
    train.add_argument("--limit", type=int, default=None, metavar="N",
                       help="calf: keep at most N training and N//3 validation slices "
                            "(a quick trial)")

    cli_data.add_parsers(commands)

    bench = commands.add_parser("bench", help="time NUFFT, CNN, CS, autoencoder and DIP-Fusion "
                                "(medians after warm-up) and write them as JSON")
    bench.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                       help="torch device (default auto: cuda when available)")
    bench.add_argument("--repeats", type=int, default=None, help="timed calls per benchmark")
    bench.add_argument("--quick", action="store_true",
                       help="smaller batches and fewer repeats (well under a minute on a CPU)")
    bench.add_argument("--only", action="append", metavar="NAME",
                       help="run only this benchmark (repeatable; with --compare: a workload, "
                            "nufft2d, nufft3d, torch, cs or cnn)")
    bench.add_argument("--compare", action="store_true",
                       help="nacode beside finufft, sigpy and its own backends on the same "
                            "inputs, interleaved, as ratios with each one's accuracy (CPU)")
    bench.add_argument("--out", type=Path, default=None,
                       help="JSON file (default _build/results/benchmark/bench_<device>.json)")

    tune = commands.add_parser("tune", help="tune a study's deep image priors on its "
                               "validation subjects and freeze the choice as JSON")
    tune.add_argument("study", choices=("breast",), help="which study")
    tune.add_argument("--profile", choices=PROFILE_NAMES, default="quick",
                      help="the profile whose cohort and iteration budget are tuned for")
    tune.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    tune.add_argument("--out", type=Path, default=None,
                      help="JSON file (default weights/breast_dip_tuning.json)")

    data = commands.add_parser("data", help="datasets and artifacts of data_manifest.yaml")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    verify = data_commands.add_parser("verify", help="check every manifest entry")
    verify.add_argument("--manifest", type=Path, default=None,
                        help="manifest file (default: ROOT/data_manifest.yaml)")
    return parser


def _root(given: Path | None) -> Path:
    from nacode.results import project_root

    return given.resolve() if given else project_root()


def _cmd_book(args: argparse.Namespace) -> int:
    from nacode.book import run_book

    run_book(_root(args.root), profile=args.profile, device=args.device, only=args.only,
             build=not args.no_build, strict=args.strict, build_dir=args.build_dir)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a study; under ``torchrun`` calf trains data-parallel and brain splits folds."""
    from nacode.book import resolve_device
    from nacode.denoise.distributed import init_from_env
    from nacode.studies import calf_data

    if args.epochs is not None and args.epochs < 1:  # before any work: 0 meant 100 before
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.study == "calf" and (unknown := sorted(set(args.nsa or ()) - set(calf_data.NSAS))):
        raise ValueError(f"--nsa {', '.join(map(str, unknown))}: the calf study trains one model "
                         f"per NSA in {', '.join(map(str, calf_data.NSAS))}")
    from nacode.results import build_dir

    args.out = args.out or build_dir() / "cache" / args.study / "weights"
    args.profile = args.profile or train_profile(args.study, args.epochs, args.limit)
    dist = init_from_env(resolve_device(args.device))
    try:
        if args.study == "brain":
            return _train_brain(args, dist)
        return _train_calf(args, dist)
    finally:
        dist.shutdown()


#: The papers' epochs: a run with fewer (or with --limit) is a trial, recorded as "quick".
PAPER_EPOCHS = {"calf": 100, "brain": 200}


def train_profile(study: str, epochs: int | None, limit: int | None) -> str:
    """The profile a training run records when ``--profile`` is not given."""
    trial = limit is not None or (epochs is not None and epochs < PAPER_EPOCHS[study])
    return "quick" if trial else "full"


def promote(names: list[str], out_dir: Path, descriptions: dict[str, str] | None = None, *,
            weights_dir: Path | None = None) -> list[Path]:
    """Copy trained ``<name>.safetensors`` and ``<name>.json`` from ``out_dir`` into the
    committed weights folder and update each one's manifest entry (sha256, size, description)."""
    from nacode import manifest
    from nacode.results import atomic_write
    from nacode.studies import calf

    weights_dir = Path(weights_dir or calf.WEIGHTS_DIR)
    manifest_path = weights_dir.parent / "data_manifest.yaml"
    promoted = []
    for name in names:
        for suffix in (".safetensors", ".json"):
            source, target = Path(out_dir) / f"{name}{suffix}", weights_dir / f"{name}{suffix}"
            if not source.is_file():
                raise FileNotFoundError(f"{source}: not found; train {name} first")
            if source.resolve() != target.resolve():
                with atomic_write(target, "wb") as handle:
                    handle.write(source.read_bytes())
        manifest.update_artifact(manifest_path, name, weights_dir / f"{name}.safetensors",
                                 description=(descriptions or {}).get(name))
        promoted.append(weights_dir / f"{name}.safetensors")
    return promoted


def calf_description(record: dict) -> str:
    """The manifest description of a trained calf CNN, from its provenance record."""
    budget = "; stopped by its time budget" if record.get("stopped_by_time_budget") else ""
    return (f"ResidualDnCNN of the calf study for {record['nsa']}-average images, trained by "
            f"`nacode train calf` on {record['device']} for {record['epochs_trained']} epochs "
            f"({record['wall_s']:.0f} s{budget}; the paper: 100 epochs on a GPU); best "
            f"validation loss {record['best_val_loss']:.4f} at epoch {record['best_epoch']}.")


def _train_calf(args: argparse.Namespace, dist) -> int:
    from nacode.studies import calf, calf_data

    if args.limit is not None and args.limit < 3:
        raise ValueError(f"--limit {args.limit} leaves no validation slice; use --limit 3 "
                         "or more")
    limit = None if args.limit is None else {"train": args.limit, "val": args.limit // 3}
    records = calf.train_models(args.nsa or calf_data.NSAS, epochs=args.epochs or 100,
                                time_budget_s=args.time_budget,
                                out_dir=args.out, profile=args.profile,
                                device=dist.device, limit=limit, progress=dist.is_main,
                                dist=dist)
    if dist.is_main:
        for record in records:
            on = (f" on {record['world_size']} {record['backend']} processes"
                  if dist.distributed else "")
            print(f"{record['name']}: {record['epochs_trained']} epochs in {record['wall_s']} s"
                  f"{on}, best validation loss {record['best_val_loss']:.4f} (epoch "
                  f"{record['best_epoch']}): {args.out / record['name']}.safetensors")
        if args.promote:
            for path in promote([r["name"] for r in records], args.out,
                                {r["name"]: calf_description(r) for r in records}):
                print(f"promoted: {path.name} into weights/, manifest updated")
    return 0


def _train_brain(args: argparse.Namespace, dist) -> int:
    """Train the selected folds; under torchrun rank r takes folds r, r + W, ... alone."""
    from nacode.studies import brain, brain_data

    if dist.is_main:  # one process generates the cohort cache ...
        scans = brain.cached_cohort()
    dist.barrier()
    if not dist.is_main:  # ... the others read it
        scans = brain.cached_cohort(progress=False)
    selected = [fold for fold in brain_data.folds() if not args.fold or fold.index in args.fold]
    mine = selected[dist.rank::dist.world_size]
    prefix = f"rank {dist.rank} ({dist.device}): " if dist.distributed else ""
    if dist.distributed:
        print(f"{prefix}folds {', '.join(str(f.index) for f in mine) or 'none'}", flush=True)
    for fold in mine:
        record = brain.train_fold(scans, fold, out_dir=args.out,
                                  device=dist.device, profile=args.profile,
                                  max_epochs=args.epochs or 200, time_budget_s=args.time_budget,
                                  progress=dist.is_main)
        print(f"{prefix}{record['name']}: {record['epochs_trained']} epochs in "
              f"{record['wall_s']} s on {record['device_name']}, best validation MSE "
              f"{record['best_val_mse']:.3e} (epoch {record['best_epoch']}"
              f"{', early stop' if record['early_stopped'] else ''})", flush=True)
        if args.promote:
            print(f"promoted: {promote([record['name']], args.out)[0].name} into weights/, "
                  "manifest updated", flush=True)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from nacode import bench

    if args.compare:
        from nacode import bench_compare

        data = bench_compare.run(quick=args.quick, out=args.out, only=args.only)
        print(bench_compare.table(data)[["workload", "implementation", "median_ms",
                                         "nacode_over_this", "rel_error"]].to_string(index=False))
        print(f"written: {data['header']['out']}")
        return 0
    data = bench.run(args.device, repeats=args.repeats, quick=args.quick, out=args.out,
                     only=args.only)
    print(bench.table(data)[["name", "device", "median_s", "items_per_s", "paper_s",
                             "paper_over_ours"]].to_string(index=False))
    print(f"written: {data['header']['out']}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from nacode.book import resolve_device
    from nacode.studies import breast_tuning

    path = breast_tuning.run(args.profile, device=resolve_device(args.device), out=args.out)
    print(f"written: {path} (add its sha256 to data_manifest.yaml: sha256sum {path})")
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from nacode import manifest

    path = args.manifest or _root(None) / "data_manifest.yaml"
    checks = manifest.verify(path)
    print(manifest.format_table(checks))
    failed = [check for check in checks if check.failed]
    for check in failed:
        print(f"nacode data verify: {check.id}: {check.detail}", file=sys.stderr)
    print(f"{len(checks)} entries: {len(checks) - len(failed)} fine, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from nacode.book import BookError
    from nacode.manifest import ManifestError

    args = _parser().parse_args(argv)
    handlers = {"book": _cmd_book, "train": _cmd_train, "bench": _cmd_bench,
                "tune": _cmd_tune, "data": _cmd_data_verify, **cli_data.HANDLERS}
    try:
        return handlers[args.command](args)
    except (BookError, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"nacode {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ManifestError) else 1
    except KeyboardInterrupt:
        print(f"nacode {args.command}: interrupted", file=sys.stderr)
        return 130
