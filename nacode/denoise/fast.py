"""Fast inference of the calf CNN: batch-norm folding, channels-last, bf16, compile, CUDA graphs.

The levers, in the order :class:`InferenceEngine` applies them:

1. :func:`fold_batchnorm` folds every batch norm (running statistics) into the convolution
   before it, so a block is pad → conv (+ bias) → ReLU with no normalisation pass;
2. weights and activations in ``channels_last`` (NHWC), the layout tensor-core convolutions
   want;
3. on CUDA the network body runs in bfloat16 (converted weights); the input is kept in
   float32 and the global residual is added in float32, so ``denoised = noisy + residual``
   loses no precision in the identity path;
4. optionally :func:`torch.compile` (``mode="max-autotune-no-cudagraphs"`` on CUDA, so it
   can be captured below), guarded: if compiling or the first compiled call fails, the engine
   falls back to eager and records the error;
5. on CUDA the forward pass for a fixed batch size is captured once in a CUDA graph and
   replayed (the last, short batch is padded), removing the per-kernel launch overhead;
   cuDNN's autotuner is switched on while the graph is captured (and restored afterwards).

Images are normalised (n, H, W) float32 tensors, as :mod:`nacode.denoise.dncnn` expects.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: Default CPU batch of :class:`InferenceEngine`. Measured on two cores (``nacode bench
#: --compare``, per-slice time of 64 slices of 80 × 80): batches of 2–8 were fastest and 64 was
#: 1.4× slower than 4 (the activations of a large batch fall out of the caches).
CPU_BATCH = 4

def _last_conv(module: nn.Module) -> nn.Conv2d:
    if isinstance(module, nn.Conv2d):
        return module
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Conv2d):
        return module[-1]
    raise ValueError(f"batch norm preceded by {type(module).__name__}, not a convolution; "
                     "cannot fold it")


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """``bn(conv(x)) == conv'(x)``: scale the kernels and shift the bias, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("batch norm without running statistics cannot be folded")
    dtype = conv.weight.dtype
    scale = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
    bias = (conv.bias.double() if conv.bias is not None
            else torch.zeros_like(scale))
    conv.weight.copy_((conv.weight.double() * scale[:, None, None, None]).to(dtype))
    new_bias = (bias * scale + shift).to(dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm2d folded into the conv before it.

    The folding uses the running statistics (evaluation behaviour) and is computed in
    float64, so a float64 model's output is unchanged up to rounding; a float32 model's
    within ≈ 1e-6. The original ``model`` is not modified.

    Parameters
    ----------
    model : nn.Module
        E.g. a :class:`~nacode.denoise.dncnn.ResidualDnCNN`; each batch norm must follow a
        ``Conv2d`` (or a ``Sequential`` ending in one) inside an ``nn.Sequential``.

    Returns
    -------
    nn.Module
        Same class and forward signature, batch norms replaced by ``nn.Identity``.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for i, name in enumerate(names):
            child = module._modules[name]
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                if i == 0:
                    raise ValueError("batch norm at the start of a Sequential; cannot fold it")
                _fold_into(_last_conv(module._modules[names[i - 1]]), child)
                module._modules[name] = nn.Identity()
    left = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"{len(left)} batch norm layer(s) could not be folded")
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


class _Residual(nn.Module):
    """The residual branch of a ResidualDnCNN (no global skip): (n, 1, H, W) → (n, 1, H, W)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head, self.blocks, self.tail = model.head, model.blocks, model.tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.blocks(self.head(x)))


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


class InferenceEngine:
    """Callable fast denoiser: (n, H, W) float32 normalised images → denoised images.

    Parameters
    ----------
    model : ResidualDnCNN
        Trained network (not modified; a folded copy is used).
    device : str or torch.device
        Where to compute (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …).
    dtype : torch.dtype, optional
        Precision of the network body: default bfloat16 on CUDA, float32 on CPU.
    channels_last : bool
        NHWC weights and activations.
    compile : bool or str
        ``torch.compile`` the body; ``True`` means ``"max-autotune-no-cudagraphs"`` on CUDA
        and ``"default"`` on CPU, a string is the mode. Failures fall back to eager.
    cuda_graph : bool, optional
        Capture and replay a CUDA graph per image size (default: on for CUDA; ignored on
        CPU).
    batch_size : int, optional
        Images per forward pass (and the graph's fixed batch): default 1024 on CUDA,
        :data:`CPU_BATCH` on the CPU.

    Attributes
    ----------
    info : dict
        What is in use, for reports: device, dtype, channels_last, bn_folded, batch_size,
        compile (requested mode or None), compiled (bool), compile_error, cuda_graph (bool, or
        ``"inductor"`` when the compile mode captures its own graphs), graph_error.

    Notes
    -----
    The output lives on the input's device. The graph path copies each batch into a static
    input buffer and the result out of a static output buffer, so calls are not re-entrant.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", *,
                 dtype: torch.dtype | None = None, channels_last: bool = True,
                 compile: bool | str = False, cuda_graph: bool | None = None,
                 batch_size: int | None = None) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
        self.batch_size = int(batch_size or (1024 if cuda else CPU_BATCH))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.channels_last = channels_last
        self.use_graph = bool(cuda if cuda_graph is None else cuda_graph) and cuda
        body = _Residual(fold_batchnorm(model)).to(self.device, self.dtype)
        if channels_last:
            body = body.to(memory_format=torch.channels_last)
        self.body = body
        mode = None
        if compile:
            mode = compile if isinstance(compile, str) else (
                "max-autotune-no-cudagraphs" if cuda else "default")
        self.info: dict[str, Any] = {
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "channels_last": channels_last, "bn_folded": True, "batch_size": self.batch_size,
            "compile": mode, "compiled": False, "compile_error": None,
            "cuda_graph": self.use_graph, "graph_error": None, "residual_dtype": "float32"}
        self._forward_body = body
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._compiled_shapes: set[tuple[int, int]] = set()
        if mode in ("reduce-overhead", "max-autotune") and self.use_graph:
            self.use_graph = False  # inductor captures its own CUDA graphs in these modes
            self.info["cuda_graph"] = "inductor"
        if mode is not None:
            try:
                self._forward_body = torch.compile(body, mode=mode, dynamic=False)
                self.info["compiled"] = True
            except Exception as exc:  # any failure means: stay eager
                self._compile_failed(exc)

    def _compile_failed(self, exc: Exception) -> None:
        message = str(exc).strip().splitlines()
        self.info["compile_error"] = f"{type(exc).__name__}: {message[0] if message else ''}"
        self.info["compiled"] = False
        self._forward_body = self.body

    def _check_compiled(self, height: int, width: int) -> None:
        """Compile errors surface on the first call of a shape: try it, fall back to eager."""
        if not self.info["compiled"] or (height, width) in self._compiled_shapes:
            return
        probe = torch.zeros((self.batch_size, 1, height, width), device=self.device)
        try:
            with _cudnn_benchmark(self.device.type == "cuda"):
                self._run(probe)
        except Exception as exc:  # inductor/triton/C++ compiler failures
            self._compile_failed(exc)
            return
        self._compiled_shapes.add((height, width))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, H, W) float32 on the device → denoised (n, 1, H, W) float32."""
        inner = x.to(self.dtype)
        if self.channels_last:
            inner = inner.contiguous(memory_format=torch.channels_last)
        residual = self._forward_body(inner)
        return x + residual.float()

    def _graph(self, height: int, width: int):
        key = (height, width)
        if key not in self._graphs:
            static_in = torch.zeros((self.batch_size, 1, height, width), device=self.device)
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.no_grad(), _cudnn_benchmark(True):
                with torch.cuda.stream(stream):
                    for _ in range(3):  # warm-up: autotuning and allocations outside capture
                        self._run(static_in)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = self._run(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        return self._graphs[key]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Denoise a stack.

        Parameters
        ----------
        images : Tensor, shape (n, H, W)
            Normalised noisy images (float32 or convertible), on any device.

        Returns
        -------
        Tensor, shape (n, H, W), float32
            Denoised images, on the input's device.
        """
        images = torch.as_tensor(images)
        if images.ndim != 3:
            raise ValueError(f"expected (n, H, W) images, got shape {tuple(images.shape)}")
        n, height, width = images.shape
        out = torch.empty((n, height, width), dtype=torch.float32, device=self.device)
        self._check_compiled(height, width)
        pad = self.use_graph or self.info["compiled"]
        for start in range(0, n, self.batch_size):
            chunk = images[start:start + self.batch_size].to(self.device, torch.float32,
                                                             non_blocking=True)
            m = chunk.shape[0]
            if self.use_graph:
                try:
                    graph, static_in, static_out = self._graph(height, width)
                except Exception as exc:  # capture failed: record it, run eagerly
                    self.use_graph = False
                    self.info["cuda_graph"] = False
                    self.info["graph_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    pad = self.info["compiled"]
            if self.use_graph:
                static_in[:m, 0].copy_(chunk)
                if m < self.batch_size:
                    static_in[m:].zero_()
                graph.replay()
                out[start:start + m] = static_out[:m, 0]
                continue
            batch = chunk[:, None]
            if pad and m < self.batch_size:  # a fixed shape: no recompilation
                batch = torch.cat([batch, batch.new_zeros((self.batch_size - m, 1, height,
                                                           width))])
            with _cudnn_benchmark(self.device.type == "cuda"):
                out[start:start + m] = self._run(batch)[:m, 0]
        return out.to(images.device)


def fast_denoiser(model: nn.Module, device: str | torch.device = "cpu", **options
                  ) -> InferenceEngine:
    """Shorthand for :class:`InferenceEngine` ``(model, device, **options)``."""
    return InferenceEngine(model, device, **options)


@torch.no_grad()
def eager_denoiser(model: nn.Module, device: str | torch.device = "cpu", *,
                   dtype: torch.dtype = torch.float32, channels_last: bool = False,
                   batch_size: int = 64):
    """The plain baseline: an eval-mode copy of ``model`` (no folding, no graph, no compile).

    Returns a callable (n, H, W) → (n, H, W) float32 on the input's device, running the body
    in ``dtype`` (the global residual in float32), to compare :class:`InferenceEngine` with.
    """
    device = torch.device(device)
    net = copy.deepcopy(model).eval().to(device, dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    body = _Residual(net)

    @torch.no_grad()
    def apply(images: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, torch.float32)[:, None]
            inner = x.to(dtype)
            if channels_last:
                inner = inner.contiguous(memory_format=torch.channels_last)
            outs.append((x + body(inner).float())[:, 0])
        return torch.cat(outs).to(images.device)

    return apply


def gflop_per_slice(model: nn.Module, height: int = 80, width: int = 80) -> float:
    """Multiply–adds × 2 of every convolution of ``model`` on one (1, height, width) image, in
    GFLOP (≈ 8.0 for the calf ResidualDnCNN at 80 × 80)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
               for m in convs) * height * width / 1e9


def throughput(model: nn.Module, images: torch.Tensor, timer, *, device: str = "cpu",
               eager_chunk: int | None = None, **engine_options) -> dict[str, Any]:
    """Time the fast engine and the eager baselines on one device-resident batch.

    Parameters
    ----------
    model : ResidualDnCNN
    images : Tensor, shape (n, H, W), float32, on ``device``
    timer : callable
        ``timer(fn) -> {"median_s", "iqr_s", "repeats", ...}`` (e.g.
        :func:`nacode.bench.measure` with its options bound).
    eager_chunk : int, optional
        Batch of the eager baselines (default all ``n`` at once).
    **engine_options
        Passed to :class:`InferenceEngine` (``batch_size`` defaults to ``n``).

    Returns
    -------
    dict
        ``engine`` (its info), ``stats`` (the engine's timing), ``baselines`` — eager float32
        NCHW, and on CUDA eager bfloat16 channels-last — each with ``median_s, iqr_s, repeats,
        items_per_s``, and ``speedup`` of the engine over each.
    """
    n = images.shape[0]
    engine = InferenceEngine(model, device, **{"batch_size": n, **engine_options})
    stats = timer(lambda: engine(images))
    variants = {"eager_float32": (torch.float32, False)}
    if torch.device(device).type == "cuda":
        variants["eager_bf16_channels_last"] = (torch.bfloat16, True)
    baselines = {}
    for label, (dtype, channels_last) in variants.items():
        apply = eager_denoiser(model, device, dtype=dtype, channels_last=channels_last,
                               batch_size=eager_chunk or n)
        base = timer(lambda apply=apply: apply(images))
        baselines[label] = {"median_s": base["median_s"], "iqr_s": base["iqr_s"],
                            "repeats": base["repeats"], "items_per_s": n / base["median_s"],
                            "chunk": eager_chunk or n, "dtype": str(dtype).replace("torch.", ""),
                            "channels_last": channels_last}
    rate = n / stats["median_s"]
    return {"engine": engine.info, "stats": stats, "baselines": baselines,
            "speedup": {k: rate / v["items_per_s"] for k, v in baselines.items()}}


def latency(model: nn.Module, image, timer, *, device: str = "cpu") -> dict[str, Any]:
    """Time one (H, W) NumPy image through the network, host → device → host.

    ``eager`` is the book's use (min–max normalise, eager float32, batch 1, map back);
    ``engine`` an :class:`InferenceEngine` of batch 1 on the image as given. ``timer`` as in
    :func:`throughput`. Returns ``{"eager": stats, "engine": stats, "engine_info": info}``.
    """
    net = copy.deepcopy(model).eval().to(device)
    engine = InferenceEngine(model, device, batch_size=1)

    @torch.no_grad()
    def eager():
        low, span = image.min(), image.max() - image.min()
        x = torch.from_numpy((image - low) / span)[None, None].to(device)
        return net(x)[0][0, 0].cpu().numpy() * span + low

    return {"eager": timer(eager), "engine": timer(lambda: engine(torch.from_numpy(image)[None])
                                                     .cpu()), "engine_info": engine.info}
