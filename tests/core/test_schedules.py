import pytest

from dsa_core.schedules import (
    LadderError,
    build_ladder,
    causvid_ladder,
    custom_ladder,
    extended_ladder,
    ladder_preset,
    parse_ladder,
    self_forcing_ladder,
    uniform_ladder,
    warp,
)


def test_self_forcing_levels_exact():
    lad = self_forcing_ladder()
    assert lad.sigmas == (1.0, 0.9375, 5 * 0.5 / 3.0, 0.625)
    assert lad.sigmas[2] == pytest.approx(0.8333, abs=1e-4)
    assert lad.base_steps == 4
    assert lad.timesteps == (1000.0, 937.5, 1000 * 5 * 0.5 / 3.0, 625.0)
    assert uniform_ladder(4, 5.0).sigmas == lad.sigmas


def test_causvid_levels():
    lad = causvid_ladder()
    assert lad.sigmas == pytest.approx((1.0, 0.757, 0.522))
    assert lad.base_steps == 3


def test_extended_ladder_keeps_base_and_adds_lower_levels():
    lad = extended_ladder(self_forcing_ladder(), 6)
    assert lad.sigmas[:4] == self_forcing_ladder().sigmas
    assert lad.sigmas[4:] == pytest.approx((warp(0.125, 5), warp(0.0625, 5)))
    assert lad.sigmas[4] == pytest.approx(0.416667, abs=1e-5) and lad.sigmas[5] == pytest.approx(0.25)
    assert lad.base_steps == 4 and len(lad) == 6
    assert extended_ladder(self_forcing_ladder(), 3).sigmas == self_forcing_ladder().sigmas[:3]
    assert len(ladder_preset("self_forcing_extended")) == 6


def test_custom_and_parse():
    assert parse_ladder("[1000, 750, 500, 250]", shift=5).sigmas == self_forcing_ladder().sigmas
    assert custom_ladder([1.0, 0.5, 0.25]).sigmas == (1.0, 0.5, 0.25)
    assert custom_ladder([1000, 500], unit="timestep").sigmas == (1.0, 0.5)


@pytest.mark.parametrize(
    "values, match",
    [
        ([], "at least one"),
        ([1.0, 0.5, 0.5], "strictly decrease"),
        ([1.0, 0.3, 0.6], "strictly decrease"),
        ([0.9, 0.5], "must be 1.0"),
        ([1.0, 0.0], r"\(0, 1\]"),
        ([1.0, float("nan")], "finite|0, 1"),
    ],
)
def test_validation_messages(values, match):
    with pytest.raises(LadderError, match=match):
        custom_ladder(values, unit="sigma")


def test_parse_errors():
    with pytest.raises(LadderError, match="separated by commas"):
        parse_ladder("1000, abc")
    with pytest.raises(LadderError, match=r"\(0, 1000\]"):
        parse_ladder("1000, 1200")
    with pytest.raises(LadderError, match="unknown ladder preset"):
        ladder_preset("nope")


def test_build_ladder_serves_the_sampler_and_the_ladder_node():
    sf = self_forcing_ladder()
    # the sampler: a preset at max_steps levels (shorter truncates, longer extends)
    assert build_ladder("self_forcing", max_steps=6) == extended_ladder(sf, 6)
    assert build_ladder("self_forcing", max_steps=2).sigmas == sf.sigmas[:2]
    assert build_ladder("causvid", max_steps=5) == extended_ladder(causvid_ladder(), 5)
    # the sampler with a SIGMAS input: the trailing 0 dropped, 4 base steps at most, truncated to max_steps
    lad = build_ladder("self_forcing", max_steps=3, sigmas=[1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    assert lad.sigmas == (1.0, 0.8, 0.6) and lad.base_steps == 3
    assert build_ladder(sigmas=[1.0, 0.8, 0.6, 0.4, 0.2, 0.0]).base_steps == 4
    # the ladder node: the base as is, or extra levels; custom timesteps warped by the shift
    assert build_ladder("self_forcing") == sf
    assert build_ladder("self_forcing", extra_steps=2) == extended_ladder(sf, 6)
    custom = build_ladder("custom", extra_steps=1, custom_timesteps="1000, 500", shift=3.0)
    assert custom.sigmas[:2] == parse_ladder("1000, 500", unit="timestep", shift=3.0).sigmas
    assert custom.sigmas[2] == pytest.approx(warp(0.25, 3.0)) and custom.base_steps == 2
    with pytest.raises(LadderError, match="unknown ladder preset"):
        build_ladder("nope")
