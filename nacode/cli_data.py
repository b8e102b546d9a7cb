"""The ``nacode`` commands that work on a researcher's own files.

``nacode recon RAW OUT``   reconstruct ISMRMRD raw k-space (gridding, CS-TV, dTV with a prior)
``nacode tsc IMAGE OUT``   calibrate on the tubes: aTSC map (mM), tube ROIs, a CSV table
``nacode denoise IN OUT``  the calf CNN, the brain DAE (3D) or a classical denoiser

Errors are ``ValueError``/``FileNotFoundError`` with one line naming the file and the fix;
:func:`nacode.cli.main` prints them and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parsers(commands) -> None:
    """Add the ``denoise``, ``tsc`` and ``recon`` sub-commands to ``commands``."""
    den = commands.add_parser("denoise", help="denoise your own sodium images: 2D images with "
                              "the calf CNN or a classical method (.npy, NIfTI or DICOM), a 3D "
                              "aTSC volume in mM with the brain autoencoder (.npy, NIfTI)")
    den.add_argument("input", type=Path, help="2D image or stack: .npy, .nii/.nii.gz, DICOM; "
                     "dae: one 3D aTSC map in mM (.npy, .nii/.nii.gz), e.g. from nacode tsc")
    den.add_argument("output", type=Path, help="where to write the result (same format)")
    den.add_argument("--method", choices=("cnn", "nlm", "tv", "gaussian", "dae"), default="cnn",
                     help="the calf CNN (default), a classical baseline, or dae: the brain "
                          "study's 3D patch autoencoder (trained at 4 mm)")
    den.add_argument("--fold", type=int, default=None, choices=range(1, 6), metavar="K",
                     help="dae: the committed weights of cross-validation fold K (1-5, "
                          "default 1)")
    den.add_argument("--mask", type=Path, default=None, metavar="FILE",
                     help="dae: voxels to denoise (nonzero), the input's shape (default: "
                          "voxels above the volume's Otsu threshold, holes filled)")
    den.add_argument("--nsa", type=int, default=None,
                     help="cnn: number of averages of the input; the nearest trained model is "
                          "used")
    den.add_argument("--strength", type=float, default=None,
                     help="nlm: h in noise SDs (0.8); tv: weight (0.1); gaussian: sigma in "
                          "pixels (1.0)")
    den.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                     help="where the network runs (default: cuda when available)")
    den.add_argument("--model", type=Path, default=None,
                     help="weights (.safetensors) instead of the committed model for --nsa "
                          "(cnn) or --fold (dae)")
    den.add_argument("--force", action="store_true",
                     help="allow the output to be the input file (overwrite it)")
    den.add_argument("--slice-axis", type=int, default=None, metavar="AXIS",
                     help="axis of the stored array the 2D images lie along (default: the "
                          "only axis of its size when it is the smallest, else the last; "
                          ".npy: 0)")
    den.add_argument("--tubes", default="auto", metavar="auto|MASK|none",
                     help="report each calibration tube's mean before and after and warn "
                          "beyond 1 %%: auto (detected on the input; default), a label "
                          "image of the input's shape, or none")

    tsc = commands.add_parser("tsc", help="tissue sodium quantification: calibrate a sodium "
                              "image on its tubes and write the aTSC map (mM), the tube ROIs "
                              "and a CSV table")
    tsc.add_argument("image", type=Path, help="magnitude sodium image, 2D or 3D: .npy, "
                     ".nii/.nii.gz, DICOM")
    tsc.add_argument("out", type=Path, help="the aTSC map in mM (the input's format); "
                     "<OUT stem>_tubes<ext> and <OUT stem>.csv are written beside it")
    tsc.add_argument("--tubes", default="auto", metavar="auto|MASK",
                     help="auto: detect the tubes (default); MASK: a label image of the "
                          "image's shape, tube k holding the k-th value of --mM")
    tsc.add_argument("--mM", dest="mm", default="10,25,50,75,100", metavar="C1,C2,...",
                     help="tube concentrations in mM (default 10,25,50,75,100, the calf "
                          "paper's)")
    tsc.add_argument("--roi", type=Path, default=None, metavar="LABELS",
                     help="a label image of ROIs (1, 2, ...) whose aTSC median, IQR, mean and "
                          "SD go into the table")
    tsc.add_argument("--roi-names", default=None, metavar="A,B,...",
                     help="names of the --roi labels in increasing order (default roi1, "
                          "roi2, ...)")
    tsc.add_argument("--margin", type=int, default=1, metavar="VOXELS",
                     help="auto: erode each detected tube by this many voxels (default 1)")
    tsc.add_argument("--slice-axis", type=int, default=None, metavar="AXIS",
                     help="as for nacode denoise")

    recon = commands.add_parser("recon", help="reconstruct raw non-Cartesian k-space (ISMRMRD "
                                ".h5) by gridding, CS-TV or prior-guided directional TV")
    recon.add_argument("input", type=Path, help="ISMRMRD file: radial or spiral readouts with "
                       "trajectories, any number of coils, optional noise scan")
    recon.add_argument("output", type=Path, help="magnitude image: .nii, .nii.gz or .npy")
    recon.add_argument("--method", choices=("gridding", "cs", "dtv", "dip", "dip-fusion"),
                       default="gridding",
                       help="gridding (default); cs: TV-regularised; dtv: directional TV "
                            "guided by --prior; 2D only: dip, and dip-fusion (guided by "
                            "--prior), with the breast study's frozen settings")
    recon.add_argument("--prior", type=Path, default=None,
                       help="dtv: anatomical image (NIfTI/.npy) on the reconstruction grid")
    recon.add_argument("--lamda", type=float, default=None,
                       help="cs/dtv: regularisation relative to an image of peak 1 (0.01)")
    recon.add_argument("--iterations", type=int, default=None,
                       help="cs/dtv: primal-dual iterations (50); dip/dip-fusion: Adam "
                            "iterations (the breast study's tuned number)")
    recon.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                       help="dip/dip-fusion: where the network runs")
    recon.add_argument("--eta", type=float, default=None,
                       help="dtv: edge scale of the prior's direction field (0.05)")
    recon.add_argument("--force", action="store_true", help="overwrite an existing output")


def _cmd_denoise(args: argparse.Namespace) -> int:
    from nacode.book import resolve_device
    from nacode.denoise.apply import nearest_nsa, run
    from nacode.studies import calf, calf_data

    if args.method == "dae" or args.fold is not None or args.mask is not None:
        return _denoise_volume(args)
    path = digest = None
    label = args.method
    if args.method == "cnn":
        if args.nsa is None and args.model is None:
            raise ValueError("--method cnn needs --nsa N (the committed model for the nearest "
                             "number of averages) or --model WEIGHTS")
        chosen = nearest_nsa(args.nsa, calf_data.NSAS) if args.nsa is not None else None
        path = args.model or calf.WEIGHTS_DIR / f"{calf.model_name(chosen)}.safetensors"
        digest = calf.manifest_digests().get(Path(path).resolve())
        label = f"cnn (calf, NSA {chosen})" if chosen else "cnn"
    info = run(args.input, args.output, path, digest=digest, method=args.method,
               strength=args.strength, label=label, device=resolve_device(args.device),
               progress=True, force=args.force, slice_axis=args.slice_axis, tubes=args.tubes)
    used = info["method"]
    if args.method == "cnn":
        nsa = f"NSA {chosen} " if chosen else ""
        used = (f"the calf CNN, the {nsa}model ({info['model']}"
                f"{', checksum verified' if info['checksum_verified'] else ''})")
    print(f"denoised {info['images']} image(s) ({info['layout']}) with {used}: "
          f"{info['output']}")
    _print_tubes(info["tubes"])
    return 0


def _print_tubes(report) -> None:
    """The tube report: a line per tube on stdout, warnings beyond 1 % on stderr."""
    out, err = report.lines()
    print(*out, sep="\n", end="\n" if out else "")
    print(*err, sep="\n", end="\n" if err else "", file=sys.stderr)


def _cmd_tsc(args: argparse.Namespace) -> int:
    from nacode.recon import tsc

    result = tsc.run(args.image, args.out, tubes=args.tubes, mm=args.mm, roi=args.roi,
                     roi_names=args.roi_names, margin=args.margin, slice_axis=args.slice_axis)
    print(*tsc.summary(result), sep="\n")
    print(*result["warnings"], sep="\n", end="\n" if result["warnings"] else "",
          file=sys.stderr)
    return 0


def _denoise_volume(args: argparse.Namespace) -> int:
    """``nacode denoise --method dae``: the brain study's weights of ``--fold`` or ``--model``."""
    from nacode.book import resolve_device
    from nacode.denoise.apply import run
    from nacode.studies import brain, calf

    if args.method != "dae":
        raise ValueError(f"--fold and --mask are for --method dae, not --method {args.method}")
    unused = [flag for flag, value in (("--nsa", args.nsa), ("--strength", args.strength),
                                       ("--slice-axis", args.slice_axis)) if value is not None]
    if unused:
        raise ValueError(f"{', '.join(unused)}: not used by --method dae (one 3D volume, "
                         "denoised by the weights of --fold or --model); drop it")
    if args.fold is not None and args.model is not None:
        raise ValueError("give --fold K (the committed weights) or --model WEIGHTS, not both")
    fold = None if args.model is not None else args.fold or 1
    path = args.model or calf.WEIGHTS_DIR / f"{brain.model_name(fold)}.safetensors"
    digest = calf.manifest_digests().get(Path(path).resolve())
    info = run(args.input, args.output, path, digest=digest, method="dae",
               label=f"dae (brain, fold {fold})" if fold else "dae",
               device=resolve_device(args.device), force=args.force, mask_path=args.mask,
               tubes=args.tubes)
    which = f", fold {fold}" if fold else ""
    verified = ", checksum verified" if info["checksum_verified"] else ""
    print(f"denoised 1 volume ({info['volume']}) with the brain DAE{which} "
          f"({Path(info['model']).name}{verified}): {info['output']}")
    _print_tubes(info["tubes"])
    return 0


def _cmd_recon(args: argparse.Namespace) -> int:
    import numpy as np

    from nacode.io.images import new_layout, read_images, read_volume, write_images
    from nacode.io.raw import read_ismrmrd
    from nacode.recon import raw as recon
    from nacode.results import check_output

    if args.output.exists() and not args.force:
        raise ValueError(f"{args.output}: exists; choose another output (or --force)")
    check_output(args.input, args.output, force=args.force)  # a folder, unwritable, the input
    new_layout(args.output, (1, 1), 1.0)  # refuses, before any work, a format it cannot write
    data = read_ismrmrd(args.input)
    prior = None
    if args.prior is not None:
        prior = read_volume(args.prior)[0] if len(data.matrix) == 3 else np.stack(
            read_images(args.prior)[0])
    if args.method in ("dip", "dip-fusion"):
        image, info = _recon_dip(args, data, prior)
    else:
        image, info = recon.reconstruct(
            data, args.method, lamda=recon.LAMDA if args.lamda is None else args.lamda,
            max_iter=args.iterations or recon.MAX_ITER, prior=prior,
            eta=recon.ETA if args.eta is None else args.eta, progress=True)
    voxel = [f / n for f, n in zip(data.fov_mm, data.matrix, strict=True)]
    if image.ndim == 3 and len(data.matrix) == 2:  # 2D slices: (H, W, slices) in NIfTI
        image = np.moveaxis(image, 0, -1)
        voxel.append(voxel[0])
    layout = new_layout(args.output, image.shape, voxel)
    stack = image if image.ndim == 3 else image[None]
    written = write_images(args.output, stack, layout, {
        "input": str(args.input), **info, "prior": str(args.prior) if args.prior else None})
    whitened = "whitened by its noise scan, " if info["whitened"] else ""
    print(f"reconstructed {'x'.join(map(str, image.shape))} ({info['coils']} coil(s), "
          f"{whitened}{args.method}): {written}")
    return 0


def _recon_dip(args: argparse.Namespace, data, prior):
    """DIP or DIP-Fusion with the breast study's frozen choice (weights/breast_dip_tuning.json)."""
    from nacode.book import resolve_device
    from nacode.denoise.dip_recon import reconstruct_dip
    from nacode.studies import breast_tuning

    name = "DIP-Fusion" if args.method == "dip-fusion" else "DIP"
    tuning = breast_tuning.frozen()
    chosen, settings = tuning[name], tuning["settings"]
    return reconstruct_dip(
        data, prior, fusion=name == "DIP-Fusion", learning_rate=chosen["lr"],
        iterations=args.iterations or chosen.get("iteration") or settings["dip_budget"],
        lam_dtv=chosen.get("lam_dtv", 0.0), lam_gc=chosen.get("lam_gc", 0.0),
        base=settings["base"], levels=settings["levels"], window=settings["window"],
        device=resolve_device(args.device), progress=True)


#: Sub-command name → handler(args) → exit status.
HANDLERS = {"denoise": _cmd_denoise, "tsc": _cmd_tsc, "recon": _cmd_recon}
