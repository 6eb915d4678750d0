import numpy as np
import pytest

from glomkit.core.schemes import COARSE, FIVE_CLASS, ClassScheme, get_scheme


def test_round_trip_through_dict():
    for s in (FIVE_CLASS, COARSE):
        assert ClassScheme.from_dict(s.to_dict()) == s


def test_ggs_probability_sums_the_sclerosed_subtypes():
    p = np.array([[0.1, 0.2, 0.3, 0.1, 0.3]])
    assert FIVE_CLASS.ggs_probability(p)[0] == pytest.approx(0.6)
    assert FIVE_CLASS.glomerulus_probability(p)[0] == pytest.approx(0.7)
    assert [FIVE_CLASS.classes[i].name for i in FIVE_CLASS.ggs_indices] == [
        "obsolescent",
        "solidified",
        "disappearing",
    ]


def test_unknown_names_fail_clearly():
    with pytest.raises(KeyError, match="not in scheme"):
        COARSE.index("obsolescent")
    with pytest.raises(KeyError, match="unknown class scheme"):
        get_scheme("nope")
