"""The framework-free arithmetic against the paper's numbers (typed from the paper in paper_values.py)."""

import pytest
from paper_values import EXACT, TABLE1_OUTPUT

from inception_lib import arithmetic as A
from inception_lib import spec


def test_table1_rows_match_paper_output_sizes_and_exact_counts():
    rows = {r.name: r for r in A.table1()}
    for name, shape in TABLE1_OUTPUT.items():
        assert rows[name].output_size == shape, name
    for name, (w, macs) in EXACT.items():
        assert (rows[name].weights, rows[name].macs) == (w, macs), name
    assert rows["inception_3a"].filters == (64, 96, 128, 16, 32, 32)
    assert rows["conv1"].printed_params == "2.7K" and rows["conv1"].printed_ops == "34M"


def test_table1_totals_and_errata():
    t = A.table1_totals()
    assert t["weights"] == 6_990_272
    assert t["macs"] == 1_582_671_872
    assert t["depth"] == 22
    assert t["printed_params_k"] == pytest.approx(6797.7)
    assert t["printed_ops_m"] == pytest.approx(1502.0)
    rows = {r.name: r for r in A.table1()}
    # K = 1024 for params fits conv2, 3a and fc; not 4c (the column is inconsistent)
    assert rows["conv2"].weights_k1024 == 112.0 and rows["fc"].weights_k1024 == 1000.0
    assert int(rows["inception_3a"].weights_k1024) == 159
    assert rows["inception_4c"].weights_k1024 == 497.5  # printed 463K
    # conv1's printed numbers fit (7 + 7) * 3 * 64 = 2,688 weights (a hypothesis), not the 7 * 7 * 3 * 64 it has
    conv1, (printed_params, printed_ops) = rows["conv1"], spec.PRINTED_TABLE1["conv1"]
    assert conv1.weights == 7 * 7 * 3 * 64 and (printed_params, printed_ops) == ("2.7K", "34M")
    h, w, _ = A.shapes("paper")["conv1"]
    hypothesis = (7 + 7) * 3 * 64
    assert round(hypothesis / 1000, 1) == 2.7 and round(hypothesis * h * w / 1e6) == 34 != round(conv1.macs / 1e6)
    assert rows["inception_5a"].macs_m == pytest.approx(51.08, abs=0.01)  # printed 54M


@pytest.mark.parametrize(
    "variant,classes,aux,expected",
    [
        ("paper", 1000, False, 6_998_552), ("paper", 1000, True, 13_378_280),
        ("torchvision", 1000, False, 6_624_904), ("torchvision", 1000, True, 13_004_888),
        ("paper", 10, True, 10_334_030), ("paper", 10, False, 5_983_802),
        ("torchvision", 10, False, 5_610_154), ("torchvision", 10, True, 9_960_638),
    ],
)
def test_param_counts_from_references(variant, classes, aux, expected):
    assert A.count_params(variant, classes, aux) == expected


def test_torchvision_macs_match_its_published_ops():
    assert A.count_macs("torchvision") == 1_498_376_192  # torchvision meta _ops 1.498 GFLOPS (MACs)
    assert A.count_macs("paper") == 1_582_671_872


def test_reduction_examples_from_the_source_documents():
    a = A.branch_cost(28, 28, 192, 32, 5, 16)
    assert a.naive_macs == 120_422_400  # ~120.4M
    assert a.reduce_macs == 2_408_448 and a.conv_macs == 10_035_200  # 2.4M + 10M
    assert a.reduced_macs == 12_443_648  # ~12.4M
    b = A.branch_cost(14, 14, 480, 48, 5, 16)
    assert b.naive_macs == 112_896_000  # 112.9M
    assert round(b.reduce_macs / 1e6, 1) == 1.5 and round(b.conv_macs / 1e6, 1) == 3.8
    assert round(b.reduced_macs / 1e6, 1) == 5.3


def test_inception_reductions_cover_nine_blocks():
    rows = A.inception_reductions()
    assert [r["block"] for r in rows] == [b.name for b in spec.INCEPTION_BLOCKS]
    assert all(r["ratio"] > 1 for r in rows)
    assert rows[0]["macs_reduced"] == 128_049_152


def test_fc_vs_gap():
    assert A.fc_vs_gap() == {"fc_weights": 51_380_224, "gap_weights": 0}


def test_alexnet_ratio_is_not_12x():
    assert A.ratio_to_alexnet() == pytest.approx(8.573, abs=0.001)


def test_aux_head_sizes():
    assert A.aux_params("paper", spec.AUX_HEADS[0], 512, 1000) == 3_188_840
    assert A.aux_params("paper", spec.AUX_HEADS[1], 528, 1000) == 3_190_888
    assert A.aux_map_size("paper", 224, spec.AUX_HEADS[0]) == (4, 4)
    # Caffe's ceil rounding (BVLC loss1/ave_pool): 6x6 -> 2x2 at 96 (floor: 1x1), 15x15 -> 5x5 at 240 (floor: 4x4)
    assert A.shapes("paper", 96)["inception_4a"][:2] == (6, 6)
    assert A.aux_map_size("paper", 96, spec.AUX_HEADS[0]) == (2, 2)
    assert A.shapes("paper", 240)["inception_4a"][:2] == (15, 15)
    assert A.aux_map_size("paper", 240, spec.AUX_HEADS[0]) == (5, 5)
    assert A.aux_params("paper", spec.AUX_HEADS[0], 512, 10, (5, 5)) == 512 * 128 + 128 + 3200 * 1024 + 1024 + 10250
    assert A.aux_map_size("torchvision", 240, spec.AUX_HEADS[0]) == (4, 4)  # adaptive: always 4x4
    assert A.aux_map_size("paper", 47, spec.AUX_HEADS[0]) == (1, 1)  # a 3x3 map: one partial window
    with pytest.raises(ValueError, match="aux_pool='adaptive4x4'"):
        A.aux_map_size("paper", 46, spec.AUX_HEADS[0])


def test_pool_output_size_matches_caffe_ceil_mode():
    assert A.pool_output_size(112, 3, 2) == 56  # floor mode would give 55
    assert A.pool_output_size(14, 2, 2) == 7
    assert A.pool_output_size(112, 3, 2, ceil_mode=False) == 55


def test_min_input_sizes():
    assert A.min_input_size("torchvision") == 15  # torchvision's meta min_size
    assert A.min_input_size("paper") == 31
    assert A.min_input_size("paper", aux_logits=True) == 47  # 4a's map 3x3: the smallest a 5x5/3 ceil pool accepts
    with pytest.raises(ValueError, match="too small"):
        A.trace("paper", 30)


def test_variants_ledger():
    assert spec.VARIANTS["paper"].differences() == {}
    tv = spec.VARIANTS["torchvision"].differences()
    assert tv["branch5x5_kernel"] == (5, 3) and tv["pool4"] == ((3, 2), (2, 2)) and tv["dropout"] == (0.4, 0.2)
    assert set(spec.VARIANTS["bn"].differences()) == {"norm", "conv_bias", "init"}
    assert spec.get_variant("paper", dropout=0.5).dropout == 0.5
    with pytest.raises(ValueError, match="unknown variant 'googlenet'.*bn.*paper.*torchvision"):
        spec.get_variant("googlenet")
    with pytest.raises(ValueError, match="unknown Variant field"):
        spec.get_variant("paper", dropout_rate=0.5)
    with pytest.raises(ValueError, match="dropout must be in"):
        spec.get_variant("paper", dropout=1.5)


def test_importing_the_package_imports_no_framework():
    import subprocess
    import sys

    code = "import sys, inception_lib; print(any(m in sys.modules for m in ('torch','tensorflow','keras')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
