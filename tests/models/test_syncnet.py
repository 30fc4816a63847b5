"""SyncNet: the official layout (syncnet_v2.model), scaled configurations, persistence."""

import json

import pytest
import torch

from pipeline.errors import MissingInputError
from pipeline.models.syncnet import (
    SyncNet,
    SyncNetConfig,
    file_sha256,
    load_for_metric,
    scaled_channels,
    video_sides,
    write_official_record,
)

# Shapes of SyncNetModel.S in syncnet_python (the layout of syncnet_v2.model).
OFFICIAL_SHAPES = {
    "netcnnaud.0.weight": (64, 1, 3, 3), "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3), "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3), "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.running_var": (512,),
    "netfcaud.0.weight": (512, 512), "netfcaud.1.running_mean": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7), "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3), "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3), "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netfclip.0.weight": (512, 512), "netfclip.3.weight": (1024, 512),
}  # fmt: skip


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    model = SyncNet.official()
    # Non-trivial BatchNorm statistics, so that a load that skipped them would show.
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model.eval()


def _inputs(size: int, batch: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand(batch, 3, 5, size, size, generator=generator) * 255
    audio = torch.randn(batch, 1, 13, 20, generator=generator) * 10
    return video, audio


def test_official_layout_has_the_released_keys_and_shapes(official):
    state = official.state_dict()
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    # 2 x 6 convs, each with a BatchNorm (2 + 5 entries), and 2 heads of 2 linears + 1 BN.
    assert len(state) == 12 * (2 + 5) + 2 * (2 * 2 + 5)
    assert official.is_official_architecture
    sides = video_sides(224)
    assert (sides["conv1"], sides["pool1"], sides["conv2"], sides["pool2"], sides["pool3"]) == (
        109, 54, 26, 13, 6)  # fmt: skip


def test_official_state_dict_round_trip_gives_equal_outputs(official, tmp_path):
    path = tmp_path / "syncnet_v2.model"
    torch.save(official.state_dict(), path)  # the layout of the released file
    loaded = SyncNet.load_official(path)
    assert not loaded.training
    video, audio = _inputs(224)
    with torch.no_grad():
        assert torch.equal(loaded.forward_video(video), official.forward_video(video))
        assert torch.equal(loaded.forward_audio(audio), official.forward_audio(audio))
    assert loaded.forward_video(video).shape == (2, 1024)


def test_files_without_batch_counters_load(official, tmp_path):
    # PyTorch < 0.4 saved no num_batches_tracked; they are unused in eval mode.
    state = {k: v for k, v in official.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "old.model"
    torch.save(state, path)
    loaded = SyncNet.load_official(path)
    _, audio = _inputs(224)
    with torch.no_grad():
        assert torch.equal(loaded.forward_audio(audio), official.forward_audio(audio))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("netcnnlip.18.weight"), "missing keys: netcnnlip.18.weight"),
        (lambda s: s.__setitem__("netfcaud.3.weight", torch.zeros(256, 512)),
         r"wrong shapes: netfcaud.3.weight \(256, 512\) \(expected \(1024, 512\)\)"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys: extra.weight"),
    ],
)  # fmt: skip
def test_mismatched_state_dicts_fail_naming_the_file(official, tmp_path, edit, message):
    state = dict(official.state_dict())
    edit(state)
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as error:
        SyncNet.load_official(path)
    assert str(path) in str(error.value)


def test_unreadable_or_missing_files_fail_naming_the_file(tmp_path):
    with pytest.raises(MissingInputError, match="nowhere.model"):
        SyncNet.load_official(tmp_path / "nowhere.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.model"):
        SyncNet.load_official(garbage)
    listed = tmp_path / "list.model"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match="list.model: expected a state dict"):
        SyncNet.load_official(listed)


@pytest.mark.parametrize(("width", "size", "embedding"), [(0.25, 48, 256), (0.1, 32, 16),
                                                          (0.5, 64, 64)])  # fmt: skip
def test_scaled_configurations_output_shapes(width, size, embedding):
    torch.manual_seed(0)
    model = SyncNet(width=width, size=size, embedding=embedding).eval()
    video, audio = _inputs(size)
    with torch.no_grad():
        assert model.forward_video(video).shape == (2, embedding)
        assert model.forward_audio(audio).shape == (2, embedding)
        assert model.netcnnlip(video).shape[2:] == (1, 1, 1)  # the last conv reaches 1x1
        both = model(video, audio)
        assert torch.equal(both.video, model.forward_video(video))
        assert torch.equal(both.audio, model.forward_audio(audio))
    state = model.state_dict()
    assert state["netcnnlip.0.weight"].shape[0] == scaled_channels(96, width)
    assert state["netfclip.3.weight"].shape == (embedding, scaled_channels(512, width))
    assert not model.is_official_architecture


def test_scaled_channels_and_sides():
    assert scaled_channels(96, 0.25) == 24 and scaled_channels(512, 0.25) == 128
    assert scaled_channels(64, 0.01) == 8  # never fewer than 8
    # 48 px: 21 -> 10 -> 4 -> 2, then a 2-pixel last pool (the 3-pixel one does not fit).
    assert video_sides(48) == {"conv1": 21, "pool1_kernel": 3, "pool1": 10, "conv2": 4,
                               "pool2": 2, "pool3_kernel": 2, "pool3": 1}  # fmt: skip
    with pytest.raises(ValueError, match="too small"):
        SyncNetConfig(size=16)
    with pytest.raises(ValueError, match="width"):
        SyncNet(width=0)


def test_bad_input_shapes_fail():
    model = SyncNet(width=0.1, size=32, embedding=8).eval()
    with pytest.raises(ValueError, match=r"\(B, 3, 5, 32, 32\)"):
        model.forward_video(torch.zeros(1, 3, 5, 48, 48))
    with pytest.raises(ValueError, match=r"\(B, 1, 13, 20\)"):
        model.forward_audio(torch.zeros(1, 13, 20))


def test_own_weights_save_and_load(tmp_path):
    torch.manual_seed(1)
    model = SyncNet(width=0.1, size=32, embedding=16)
    model.train()
    video, audio = _inputs(32, batch=4)
    model(video, audio)  # moves the BatchNorm statistics away from their initial values
    model.eval()
    model.save(tmp_path / "net")
    assert json.loads((tmp_path / "net" / "syncnet_config.json").read_text()) == {
        "embedding": 16, "size": 32, "width": 0.1}  # fmt: skip
    loaded = SyncNet.load(tmp_path / "net")
    with torch.no_grad():
        assert torch.equal(loaded.forward_video(video), model.forward_video(video))
        assert torch.equal(loaded.forward_audio(audio), model.forward_audio(audio))
    with pytest.raises(MissingInputError, match="syncnet_config.json"):
        SyncNet.load(tmp_path / "empty")


def test_metric_model_from_an_official_record_or_a_trained_folder(official, tmp_path):
    weights = tmp_path / "syncnet_v2.model"
    torch.save(official.state_dict(), weights)
    record = write_official_record(tmp_path / "final", weights)
    assert record["sha256"] == file_sha256(weights) and record["weights"] == str(weights)
    model, is_official = load_for_metric(tmp_path / "final")
    assert is_official and model.is_official_architecture
    # The recorded file changed: refuse rather than report another net's numbers.
    state = official.state_dict()
    state["netfcaud.3.bias"] = state["netfcaud.3.bias"] + 1
    torch.save(state, weights)
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_for_metric(tmp_path / "final")
    SyncNet(width=0.1, size=32, embedding=8).save(tmp_path / "trained")
    model, is_official = load_for_metric(tmp_path / "trained")
    assert not is_official and model.size == 32
