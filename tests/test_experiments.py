"""The studies under experiments/ (research apart from the library): the tables their `--record`
writes to results/, from rows as their CSVs hold them (strings), and the measures they share."""

from experiments.handheld.measures import observability_table, photo_stacks_table
from experiments.hybrid_focus_sweep.sweep import sweep_table
from experiments.photo_stacks.stacks import summary as photo_stacks_summary
from vaeedof.evaluation import results


def _strings(rows):
    return [{key: str(value) for key, value in row.items()} for row in rows]


def test_each_study_table_is_a_figure_results_can_hold(tmp_path):
    sweep = {"stacks": 30, "model": "fusion_release.safetensors", "focus_floor": 3e-4}
    sweep_rows = [
        dict(sweep, collection="MFI-WHU", method="gff", focus_weight="", focus_floor="", reblur_weight="",
             metric="qabf", value=0.7223),
        dict(sweep, collection="mattingmfif/test", method="gff", focus_weight="", focus_floor="",
             reblur_weight="", metric="psnr", value=30.7),
        *[dict(sweep, collection=c, method="hybrid", focus_weight=w, reblur_weight=b, metric=m,
               value=v)
          for c, m, w, b, v in [("MFI-WHU", "qabf", 0.0, 0.0, 0.71),
                                ("MFI-WHU", "qabf", 0.0, 3.0, 0.72),
                                ("MFI-WHU", "qabf", 4.0, 0.0, 0.7241),
                                ("MFI-WHU", "qabf", 4.0, 3.0, 0.7257),
                                *[("mattingmfif/test", "psnr", w, b, 33.0 + w / 10 + b / 10)
                                  for w in (0.0, 4.0) for b in (0.0, 3.0)]]]]
    frame = {"split": "photographic", "scene": "s0", "motion_px": 3.0, "estimator_error_px": 3.0,
             "oracle_registered_px": 0.5}
    frames = [
        dict(frame, frame=0, is_reference=0, in_focus_fraction=0.6, oracle_error_px=0.2),
        dict(frame, frame=1, is_reference=1, in_focus_fraction=0.0, oracle_error_px=0.0),
        dict(frame, frame=2, is_reference=0, in_focus_fraction=0.01, oracle_error_px=9.0),  # left out
        dict(frame, frame=3, is_reference=0, in_focus_fraction=0.3, oracle_error_px=1.0,
             estimator_error_px="")]
    scenes = [
        {"split": "photographic", "scene": "s0", "auto_leaves_registered": 0, "gff_registered": 30.0,
         "gff_registered_auto": 29.9, "gff_true_transforms": 29.5, "gff_unaligned": 22.0}]
    stack = {"frames": 3, "method": "gff", "aligned_applied": 1, "fuse_s": 2.0}
    handheld_rows = [
        dict(stack, stack="a", registered=40.0, registered_auto=40.0, unaligned=20.0,
             true_transforms=39.0, aligned=38.9,
             corner_error_px=0.05, align_s=0.2),
        dict(stack, stack="b", registered=30.0, registered_auto=30.01, unaligned=20.0,
             true_transforms=29.5, aligned=29.7,
             corner_error_px=0.15, align_s=0.4)]
    photo_rows = [
        {"stack": s, "planes": 2, "method": m, "psnr": p, "ssim": 0.9}
        for s, m, p in [("a", "gff", 30.0), ("b", "gff", 34.0), ("a", "hybrid", 31.0),
                        ("b", "hybrid", 33.0), ("a", "stackmff-v3", 29.0), ("b", "stackmff-v3", "")]]

    text = "".join([
        sweep_table(_strings(sweep_rows)), observability_table(_strings(frames), _strings(scenes)),
        photo_stacks_table(_strings(handheld_rows)),
        "\n".join(photo_stacks_summary(_strings(photo_rows))) + "\n"])
    assert "| 4 | 0.7241 | 0.7257 | 33.40 | 33.70 |" in text
    assert "focus floor 0.0003" in text
    assert "Q^AB/F on MFI-WHU (30 stacks): GFF 0.7223" in text
    assert "PSNR on mattingmfif/test (30 stacks): GFF 30.70" in text
    assert ("| gff | 2 | 35.00 | 0.010 dB | 20.00 | 34.25 | 34.30 | -0.70 (-1.10) | 0.100 (0.150) | "
            "0.30 / 2.00 (15%) |") in text
    assert "| gff | 2 | 32.00 | 0.9000 | 0 | - |" in text
    assert "| hybrid | 2 | 32.00 | 0.9000 | 0 | 1 of 2 |" in text
    assert "| stackmff-v3 | 1 | 29.00 | 0.9000 | 1 | 0 of 1 |" in text  # failed on b: not scored
    assert ("| photographic | 1 | 0 | -0.100 (-0.100) | 1 | 2 | 3.00 | 3.00 | 0.60 | 50% | 0.50 | 30.00 | "
            "29.50 | 22.00 |") in text
    for name, table in [("hybrid-sweep", sweep_table(_strings(sweep_rows))),
                        ("handheld-photos", photo_stacks_table(_strings(handheld_rows)))]:
        results.record(name, table, "python -m experiments.x --record", "abc", folder=tmp_path)
        assert results.block(name, tmp_path).startswith(table)


def test_record_keeps_other_labels_and_stamps_the_figure(tmp_path, monkeypatch):
    from experiments import record

    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "rows.csv"
    record.merge_rows(raw, "split", "a", [{"split": "a", "v": 1}])
    record.merge_rows(raw, "split", "b", [{"split": "b", "v": 2, "w": 3}])
    rows = record.merge_rows(raw, "split", "a", [{"split": "a", "v": 4}])
    assert sorted((r["split"], r["v"], r["w"]) for r in rows) == [("a", "4", ""), ("b", "2", "3")]
    record.figure("f", "| a |\n|---|\n| 1 |\n")
    head = (tmp_path / "results/f.csv").read_text().splitlines()
    assert head[0].startswith("# made by: python ") and head[1].startswith("# commit: ")


def test_registered_stacks_table_ranks_each_set_and_counts_stacks_above_the_best_peer(tmp_path):
    from experiments.registered_stacks.run import registered_table

    rows = [{"set": label, "stack": stack, "frames": 2, "method": method, "psnr": psnr, "ssim": 0.9}
            for label, stack, method, psnr in [
                ("gt-stacks/s256", "s00", "hybrid", 31.0), ("gt-stacks/s256", "s01", "hybrid", 29.5),
                ("gt-stacks/s256", "s00", "peer-a", 30.0), ("gt-stacks/s256", "s01", "peer-a", 30.0),
                ("gt-stacks/s256", "s00", "peer-b", 20.0), ("gt-stacks/s256", "s01", "peer-b", ""),
                ("gt-stacks/s512", "s00", "hybrid", 40.0), ("gt-stacks/s512", "s00", "peer-b", 41.0)]]
    table = "\n".join(registered_table(_strings(rows), ["peer-a", "peer-b"])) + "\n"
    lines = table.splitlines()
    assert lines[2:5] == ["| gt-stacks/s256 | hybrid | 2 | 30.25 | 0.9000 | 0 | 1 of 2 |",
                          "| gt-stacks/s256 | peer-a | 2 | 30.00 | 0.9000 | 0 | - |",
                          "| gt-stacks/s256 | peer-b | 1 | 20.00 | 0.9000 | 1 | 0 of 1 |"]
    # On the other set peer-a fused nothing: the best peer there is peer-b.
    assert "| gt-stacks/s512 | hybrid | 1 | 40.00 | 0.9000 | 0 | 0 of 1 |" in lines
    results.record("registered-stacks", table, "python -m experiments.x --record", "abc", folder=tmp_path)
    assert results.block("registered-stacks", tmp_path).startswith(table)


def test_fast_path_table_compares_each_set_with_the_max_path(tmp_path):
    from experiments.fast_path.run import table

    rows = [{"set": label, "stack": stack, "frames": frames, "size": "64x64", "quality": quality,
             "psnr": psnr, "ssim": 0.9, "seconds": seconds}
            for label, stack, frames, quality, psnr, seconds in [
                ("large", "a", 2, "max", 30.0, 4.0), ("large", "a", 2, "fast", 31.0, 1.0),
                ("large", "b", 3, "max", 30.0, 6.0), ("large", "b", 3, "fast", 29.0, 1.0),
                ("deep", "c", 24, "max", 40.0, 9.0), ("deep", "c", 24, "fast", 40.5, 3.0)]]
    text = table(_strings(rows))
    assert "| large | 2 | 2-3 | 64x64 | max | 30.00 | 0.9000 | 5.0 | - |" in text
    assert "| large | 2 | 2-3 | 64x64 | fast | 30.00 | 0.9000 | 1.0 | 1 of 2 |" in text
    assert "| deep | 1 | 24-24 | 64x64 | fast | 40.50 | 0.9000 | 3.0 | 1 of 1 |" in text
    results.record("fast-path", text, "python -m experiments.x --record", "abc", folder=tmp_path)
    assert results.block("fast-path", tmp_path).startswith(text)


def test_stack_speed_table_gives_each_method_its_ratio_to_the_reference_tools(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "bench_stacks.py"
    spec = importlib.util.spec_from_file_location("bench_stacks", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"stack": "pcb", "frames": 7, "size": "2048x1536", "method": method, "seconds": seconds,
             "peak_mib": 100, "repeats": 1}
            for method, seconds in [(bench.OURS, 12.0), ("enfuse", 2.0), ("focus-stack", 4.0)]]
    text = bench.speed_table(_strings(rows), {"openfocus-guided-filter": "not installed"}, "a CPU, 2 cores")
    assert f"| pcb | 7 | 2048x1536 | {bench.OURS} | 12.00 | 100 | 3.0 | 6.0 |" in text
    assert "Not run: openfocus-guided-filter, not installed." in text
    no_reference = bench.speed_table(_strings(rows[:2]), {}, "a CPU")
    assert f"| {bench.OURS} | 12.00 | 100 | - | 6.0 |" in no_reference
    results.record("stack-speed", text, "python scripts/bench_stacks.py x --record", "abc", folder=tmp_path)
    assert results.block("stack-speed", tmp_path).startswith(text)


def test_depth_maps_table_and_the_thin_lens_blur(tmp_path):
    from experiments.depth_maps.run import blur_px, sharp_frames, table

    meta = {"camera": {"focal_length_mm": 100.0, "aperture_m": 0.1, "sensor_width_mm": 36.0},
            "render": {"resolution": 1024}, "focus_order": [0, 1, 2],
            "planes": [{"distance_m": 8.45}, {"distance_m": 8.54}, {"distance_m": 1.0}]}
    assert blur_px(meta, 8.45, 8.45) == 0.0
    assert blur_px(meta, 8.45, 8.54) < 1.0 < blur_px(meta, 1.0, 8.54)  # 9 cm apart at 8.5 m: both sharp
    assert sharp_frames(meta).tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    rows = [{"scene": s, "frames": 6, "textured_share": 0.6, "right_textured": r, "sharp_textured": r + 0.05,
             "right_all": r} for s, r in (("a", 0.9), ("b", 0.7))]
    text = table(_strings(rows), "mattingmfif/test")
    assert "| mattingmfif/test | 2 | 6-6 | 60.0% | 80.0% | 85.0% | 80.0% | 70.0% (b) |" in text
    results.record("depth-maps", text, "python -m experiments.x --record", "abc", folder=tmp_path)
    assert results.block("depth-maps", tmp_path).startswith(text)
