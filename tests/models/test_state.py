import numpy as np
import pytest

from models.state import (
    STATE_BYTES,
    StateLayoutError,
    init_state,
    stack_states,
    state_from_bytes,
    state_to_bytes,
    unstack_state,
)


def test_round_trip_keeps_every_leaf_exactly() -> None:
    state = init_state()._replace(n_obs=np.int64(7), last_ts=np.int64(1_700_000_000_123_456_789),
                                  level=np.float64(1e300), lower=np.float64(-0.1))
    back = state_from_bytes(state_to_bytes(state))
    for a, b in zip(state, back, strict=True):
        assert np.asarray(a).dtype == b.dtype
        assert np.array_equal(np.asarray(a), b)


def test_state_is_small() -> None:
    assert len(state_to_bytes(init_state())) == STATE_BYTES <= 4096


def test_foreign_bytes_are_refused() -> None:
    good = state_to_bytes(init_state())
    with pytest.raises(StateLayoutError):
        state_from_bytes(good[:-1])
    with pytest.raises(StateLayoutError):
        state_from_bytes(b"XXXX" + good[4:])


def test_stack_pads_with_fresh_states_and_unstacks() -> None:
    s = init_state()._replace(n_obs=np.int64(3))
    batch = stack_states([s, s], 4)
    assert batch.n_obs.tolist() == [3, 3, 0, 0]
    assert int(unstack_state(batch, 1).n_obs) == 3
