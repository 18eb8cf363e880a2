"""The seven architectures: shapes for any window length, gradients, determinism, the registry,
the BN-folded inference path, and that each one can actually learn real beats."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import config
from models import MODEL_NAMES, create_model

README_ORDER = ("liteecgnet", "ecgnet", "se_ecgnet", "bircnn", "resnet", "deepecgnet", "ldcnn")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches: one thread avoids OpenMP hand-off costs (and suffers least when the
    machine is shared). The real-data fitting test asks for two."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _build(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **kw)


# --- registry ---------------------------------------------------------------------------------

def test_registry_names_in_readme_order():
    assert MODEL_NAMES == README_ORDER
    assert tuple(config.MODEL_CONFIGS) == README_ORDER


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as e:
        create_model("nope")
    assert "nope" in str(e.value)
    for name in MODEL_NAMES:
        assert name in str(e.value)


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="does not take .*wings"):
        create_model("resnet", wings=3)


def test_overrides_merge_with_config():
    m = create_model("ldcnn", head_hidden=32, num_classes=5)
    assert m.hidden.out_features == 32 and m.fc.out_features == 5
    assert m.dropout == config.LDCNN_CONFIG["dropout"]  # untouched keys come from config.py
    # config values stored as lists (e.g. read back from JSON) work as well as tuples
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in config.LITEECGNET_CONFIG.items()}
    assert create_model("liteecgnet", **cfg)(torch.randn(2, 1, 720)).shape == (2, 4)


def test_no_if_chain_over_model_names():
    """The registry is a dict; no module compares against model names."""
    pattern = re.compile(r"""==\s*["'](%s)["']""" % "|".join(MODEL_NAMES))
    for path in (Path(__file__).resolve().parents[1] / "models").glob("*.py"):
        assert not pattern.search(path.read_text()), path


# --- shapes, gradients, determinism -----------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_any_length_both_class_counts(name):
    for num_classes in (4, 5):
        m = _build(name, num_classes=num_classes)
        for training in (True, False):
            m.train(training)
            for t in (360, 720, 1080):
                with torch.no_grad():
                    y = m(torch.randn(3, 1, t))
                assert y.shape == (3, num_classes), (t, training)
                assert torch.isfinite(y).all(), (t, training)
    with torch.no_grad():  # lengths that are not a multiple of the stem stride, and 4 s
        for t in (1001, 1440):
            assert m(torch.randn(2, 1, t)).shape == (2, 5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rejects_wrong_input_shape(name):
    m = _build(name).eval()
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        m(torch.randn(2, 720))
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        m(torch.randn(2, 8, 720))  # one lead is one channel


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_parameter(name):
    m = _build(name).train()
    x, y = torch.randn(8, 1, 720), torch.arange(8) % 4
    F.cross_entropy(m(x), y).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_weights_and_output(name):
    a, b, c = _build(name, seed=7).eval(), _build(name, seed=7).eval(), _build(name, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    x = torch.randn(4, 1, 720)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rr_features_path(name):
    m = _build(name, rr_dim=4).train()
    x, rr = torch.randn(5, 1, 720), torch.rand(5, 4, requires_grad=True)
    out = m(x, rr)
    assert out.shape == (5, 4)
    out.sum().backward()
    assert rr.grad is not None and rr.grad.abs().sum() > 0  # RR features reach the logits
    with pytest.raises(ValueError, match="rr_dim=4"):
        m(x)
    with pytest.raises(ValueError, match="rr_dim=0"):
        _build(name)(x, rr.detach())


def test_ensemble_returns_the_log_of_the_members_mean_probability():
    """Two members with constant outputs (zero weights, biases log p): probabilities (0.9, 0.1)
    and (0.5, 0.5) average to (0.7, 0.3), whatever the input."""
    from models import Ensemble
    ens = create_model("liteecgnet", num_classes=2, members=2).eval()
    assert isinstance(ens, Ensemble) and len(ens.members) == 2
    with torch.no_grad():
        for m, p in zip(ens.members, ([0.9, 0.1], [0.5, 0.5])):
            m.fc.weight.zero_()
            m.fc.bias.copy_(torch.tensor(p).log())
        out = ens(torch.randn(3, 1, 432))
    assert torch.allclose(out, torch.tensor([[0.7, 0.3]] * 3).log(), atol=1e-6)
    assert ens.num_classes == 2 and ens.rr_dim == 0 and ens.in_channels == 1


def test_ensemble_members_must_match_and_be_at_least_two():
    from models import Ensemble
    a = create_model("liteecgnet", num_classes=2)
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble([a])
    for other in (create_model("liteecgnet", num_classes=3), create_model("ldcnn", num_classes=2)):
        with pytest.raises(ValueError, match="share their architecture"):
            Ensemble([a, other])
    with pytest.raises(ValueError, match="members must be >= 1"):
        create_model("liteecgnet", members=0)
    assert not isinstance(create_model("liteecgnet", members=1), Ensemble)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_folded_inference_path_matches_and_never_goes_stale(name):
    """Eval + no-grad runs convs with BN folded in (cached); it must equal the plain path and
    follow every weight change: optimizer steps, load_state_dict, deepcopy."""
    m = _build(name)
    x = torch.randn(6, 1, 720)
    opt = torch.optim.AdamW(m.parameters(), 1e-2)
    for _ in range(2):  # moves weights and BN statistics away from their initial values
        m.train()
        opt.zero_grad()
        F.cross_entropy(m(x), torch.arange(6) % 4).backward()
        opt.step()
        m.eval()
        with torch.inference_mode():
            folded = m(x)
        ref = m(x).detach()  # grad enabled: the plain conv -> BN path
        torch.testing.assert_close(folded, ref, rtol=1e-4, atol=1e-4)
    other = _build(name, seed=99).eval()
    m.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m(x), other(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(copy.deepcopy(m)(x), other(x), rtol=1e-4, atol=1e-4)


# --- learning real beats ----------------------------------------------------------------------

# full-batch AdamW steps (lr 1e-2) allowed to reach 95% training accuracy on 256 real beats.
# Measured need at seed 1337: 25-40 steps (eval-mode accuracy lags while BN statistics settle).
FIT_STEPS = {name: 60 for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def beats_256(mitbih_dir, cache_dir):
    """256 beats of records 208 and 232 (all four seed4 classes), seeded and class-balanced."""
    from utils import PreprocConfig, load_beats
    data = load_beats(mitbih_dir, PreprocConfig(classes="seed4"), records=["208", "232"],
                      cache_dir=cache_dir, download=False, log=lambda s: None)
    rng = np.random.default_rng(1337)
    idx = np.concatenate([rng.permutation(np.flatnonzero(data.y == c))[:64]
                          for c in range(len(data.class_names))])
    idx = np.concatenate([idx, rng.permutation(np.setdiff1d(np.arange(len(data.y)), idx))])[:256]
    x = torch.from_numpy(data.x[idx]).unsqueeze(1)  # (256, 1, T)
    y = torch.from_numpy(data.y[idx])
    assert len(torch.unique(y)) >= 3
    return x, y


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fits_256_real_beats(name, beats_256):
    x, y = beats_256
    torch.set_num_threads(2)  # batch 256: both cores help (restored by the autouse fixture)
    m = _build(name, seed=1337, num_classes=4)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    acc = 0.0
    for step in range(1, FIT_STEPS[name] + 1):
        m.train()
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
        if step % 5 == 0:
            m.eval()  # accuracy as a user would see it: eval mode, BN running statistics
            with torch.inference_mode():
                acc = (m(x).argmax(1) == y).float().mean().item()
            if acc >= 0.95:
                break
    assert acc >= 0.95, f"{name}: train accuracy {acc:.3f} after {FIT_STEPS[name]} steps"
