"""Fast CNN inference: batch-norm folding is exact, the engine matches the eager network."""

from __future__ import annotations

import pytest
import torch

from nacode.denoise.dncnn import ResidualDnCNN
from nacode.denoise.fast import InferenceEngine, eager_denoiser, fast_denoiser, fold_batchnorm


def _model(seed: int = 0, *, blocks: int = 2, channels: int = 16) -> ResidualDnCNN:
    """A small ResidualDnCNN with random weights and non-trivial batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the layers' own initialisation, isolated from the caller
        model = ResidualDnCNN(blocks=blocks, channels=channels)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.3 + torch.rand(c, generator=gen))
                module.weight.copy_(0.5 + torch.rand(c, generator=gen))
                module.bias.copy_(0.1 * torch.randn(c, generator=gen))
    return model.eval()


def _images(n: int, size: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, size, size), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_folded_model_equals_original_in_float32_and_float64():
    model = _model()
    x = _images(3)[:, None]
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    denoised, residual = folded(x)
    reference, ref_residual = model(x)
    assert torch.allclose(denoised, reference, atol=1e-5)
    assert torch.allclose(residual, ref_residual, atol=1e-5)
    double = _model().double()
    out = fold_batchnorm(double)(x.double())[0]
    assert torch.allclose(out, double(x.double())[0], atol=1e-12, rtol=0)


def test_folding_does_not_modify_the_original():
    model = _model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    assert model.training  # the copy is put in eval mode, not the original
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_folding_refuses_a_batch_norm_without_a_conv_before_it():
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(model)


@pytest.mark.parametrize("batch_size", [4, 3, 16])
@torch.no_grad()
def test_engine_float32_matches_eager_model_including_a_short_last_batch(batch_size):
    model = _model()
    images = _images(10)
    engine = InferenceEngine(model, "cpu", batch_size=batch_size)
    out = engine(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.allclose(out, model(images[:, None])[0][:, 0], atol=1e-5)
    assert engine.info["dtype"] == "float32" and engine.info["bn_folded"]
    assert engine.info["cuda_graph"] is False and engine.info["compiled"] is False


@torch.no_grad()
def test_engine_bfloat16_on_cpu_is_close():
    model = _model()
    images = _images(5)
    engine = fast_denoiser(model, "cpu", dtype=torch.bfloat16, batch_size=2)
    out = engine(images)
    assert engine.info["dtype"] == "bfloat16" and engine.info["residual_dtype"] == "float32"
    reference = model(images[:, None])[0][:, 0]
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()


@torch.no_grad()
def test_engine_falls_back_to_eager_when_compile_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    model = _model()
    images = _images(3)
    engine = InferenceEngine(model, "cpu", compile=True, batch_size=2)
    out = engine(images)
    assert engine.info["compiled"] is False
    assert engine.info["compile"] == "default"
    assert engine.info["compile_error"] == "RuntimeError: no compiler here"
    assert torch.allclose(out, model(images[:, None])[0][:, 0], atol=1e-5)


@torch.no_grad()
def test_engine_falls_back_when_the_compiled_call_fails(monkeypatch):
    def lazy_failure(module, **kwargs):
        def call(x):
            raise RuntimeError("inductor failed at first call")
        return call

    monkeypatch.setattr(torch, "compile", lazy_failure)
    model = _model()
    engine = InferenceEngine(model, "cpu", compile="max-autotune-no-cudagraphs", batch_size=4)
    out = engine(_images(5))
    assert engine.info["compiled"] is False and "inductor" in engine.info["compile_error"]
    assert torch.allclose(out, model(_images(5)[:, None])[0][:, 0], atol=1e-5)


@torch.no_grad()
def test_eager_baseline_matches_the_model():
    model = _model()
    images = _images(7)
    apply = eager_denoiser(model, "cpu", batch_size=3, channels_last=True)
    assert torch.allclose(apply(images), model(images[:, None])[0][:, 0], atol=1e-5)


def test_engine_rejects_wrong_shapes():
    engine = InferenceEngine(_model(), "cpu")
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        engine(torch.zeros(2, 1, 8, 8))
