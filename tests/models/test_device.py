"""The ``runtime`` section's resolver: settings to devices, one-line errors, autocast."""

import pytest
import torch

from pipeline.config import parse_params
from pipeline.errors import ConfigError
from pipeline.models import device as dev


@pytest.fixture
def two_gpus(monkeypatch):
    """A host that claims two CUDA devices (nothing is allocated on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(no_gpu, monkeypatch):
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dev.resolve_device("auto") == torch.device(dev.CUDA)
    assert dev.resolve_device(f"{dev.CUDA}:1") == torch.device(dev.CUDA, 1)
    assert dev.resolve_device(" cpu ") == torch.device("cpu")


def test_the_default_params_resolve_on_this_host():
    params = parse_params({})
    assert params.runtime.device == "auto" and params.runtime.precision == "fp32"
    expected = dev.CUDA if torch.cuda.is_available() else "cpu"
    assert dev.resolve_device(params.runtime.device).type == expected


@pytest.mark.parametrize(
    "setting, message",
    [
        ("tpu", r"runtime\.device: 'tpu' is not one of auto, cpu, cuda, cuda:N"),
        ("cuda:x", r"runtime\.device: 'cuda:x' is not one of"),
        ("CPU", r"runtime\.device: 'CPU' is not one of"),
        ("cuda", r"runtime\.device: 'cuda' asked for, but this host has no CUDA device"),
        ("cuda:0", r"runtime\.device: 'cuda:0' asked for, but this host has no CUDA device"),
    ],
)
def test_bad_settings_are_one_line_config_errors(no_gpu, setting, message):
    with pytest.raises(ConfigError, match=message) as error:
        dev.resolve_device(setting)
    assert "\n" not in str(error.value)


def test_a_cuda_index_past_the_device_count_is_refused(two_gpus):
    with pytest.raises(ConfigError, match=r"runtime\.device: 'cuda:7' asked for, but this host "
                       r"has 2 CUDA device\(s\) \(cuda:0 \.\. cuda:1\)"):  # fmt: skip
        dev.resolve_device("cuda:7")
    with pytest.raises(ConfigError, match=r"^--device: 'cuda:2'"):
        dev.resolve_device("cuda:2", name="--device")


def test_autocast_is_a_no_op_in_fp32_and_lowers_matmuls_otherwise():
    x = torch.randn(4, 4)
    with dev.autocast(torch.device("cpu"), "fp32"):
        assert (x @ x).dtype == torch.float32
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with dev.autocast(torch.device("cpu"), precision):
            out = x @ x
        assert out.dtype == dtype, precision
        torch.testing.assert_close(out.float(), x @ x, rtol=0.05, atol=0.05)
    with pytest.raises(ConfigError, match=r"runtime\.precision: 'fp8' is not one of"):
        dev.autocast(torch.device("cpu"), "fp8")


def test_module_device_and_the_accelerator_on_the_cpu():
    layer = torch.nn.Linear(2, 2).to("meta")
    assert dev.module_device(layer) == torch.device("meta")
    assert dev.module_device(torch.nn.Identity()) == torch.device("cpu")
    buffers_only = torch.nn.BatchNorm1d(2, affine=False).to("meta")
    assert dev.module_device(buffers_only) == torch.device("meta")
    accelerator = dev.make_accelerator(torch.device("cpu"))
    assert accelerator.device == torch.device("cpu")
    assert not dev.is_cuda(torch.device("cpu")) and dev.is_cuda(torch.device(dev.CUDA, 0))
