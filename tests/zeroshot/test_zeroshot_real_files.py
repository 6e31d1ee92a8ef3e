"""Both methods on real split files and real MP4s: class names -> CLIP text features -> fixed classifier."""
import pytest
import torch


@pytest.fixture()
def real_lists(tmp_path, real_video_paths):
    videos = sorted(real_video_paths.values())
    (tmp_path / "train.csv").write_text(f"{videos[0]},0\n{videos[1]},1\n")
    (tmp_path / "train_classes.json").write_text('{"0": "riding a bike", "1": "watching a rabbit"}')
    (tmp_path / "test.csv").write_text(f"{videos[2]},0\n{videos[0]},1\n{videos[1]},2\n")
    (tmp_path / "test_classes.txt").write_text("talking on the phone\nriding a bike\nwatching a rabbit\n")
    return tmp_path


@pytest.mark.parametrize("method_name", ["stdd", "open_mede"])
def test_real_files_train_step_and_evaluate(real_lists, method_name, tiny_experiment):
    data = {"dataset": "split_files", "train_list": str(real_lists / "train.csv"),
            "train_classes": str(real_lists / "train_classes.json"), "test_lists": [str(real_lists / "test.csv")],
            "test_classes": [str(real_lists / "test_classes.txt")], "num_frames": 4, "frame_stride": 2,
            "image_size": 32, "resize_range": [32, 36], "test_views": 2}
    method, cfg = tiny_experiment(method_name, data=data, model={"prompt_type": "templates", "num_templates": 2})
    torch.manual_seed(0)
    model = method.build_model(cfg)
    assert model.train_prompts.shape == (2, 2, 32)  # 2 classes x 2 templates, from the CLIP text tower
    expected = model.encode_prompts([cfg.model.templates[1].format("watching a rabbit")])
    torch.testing.assert_close(model.train_prompts[1, 1], torch.nn.functional.normalize(expected[0], dim=-1))
    batch = method.collate_fn([method.build_dataset(cfg, "train")[i] for i in range(2)])
    out = model.loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.vision.tower.conv1.weight.grad is not None
    scores = method.evaluate(model, cfg, "test")
    assert set(scores) == {"top1_split1", "top1_mean", "top1_std"} and 0.0 <= scores["top1_mean"] <= 100.0

    eval_only = tiny_experiment(method_name, data={**data, "train_list": "", "train_classes": ""},
                                model={"prompt_type": "templates", "num_templates": 2})[1]
    evaluator = method.build_model(eval_only)
    assert method.evaluate(evaluator, eval_only, "test")["top1_mean"] >= 0.0
    with pytest.raises(ValueError, match="no training classes"):
        evaluator.loss(batch)


def test_graph_prompts_need_a_graph(real_lists, tiny_experiment):
    method, cfg = tiny_experiment("stdd", data={"dataset": "split_files", "train_list": str(real_lists / "train.csv"),
                                                "train_classes": str(real_lists / "train_classes.json")})
    with pytest.raises(ValueError, match="needs action-graph records"):
        method.build_model(cfg)
