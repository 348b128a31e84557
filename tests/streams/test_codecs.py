import base64

import fastjsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from models.step import REASON_NAMES
from streams import codecs
from streams.codecs import ObservationIn, Refusal


def obs(**fields: object) -> bytes:
    return orjson.dumps({"series_id": "s1", "ts": "2024-01-01T00:00:00Z", "value": 1.5, **fields})


def test_valid_observation_is_normalised_to_epoch_ns() -> None:
    got = codecs.decode_observation(b"s1", obs())
    assert got == ObservationIn("s1", 1_704_067_200 * 10**9, 1.5)


@pytest.mark.parametrize(
    ("key", "raw", "reason"),
    [
        (b"s1", b"{not json", "malformed_json"),
        (b"s1", None, "malformed_json"),
        (b"s1", b"[1, 2]", "schema"),
        (b"s1", orjson.dumps({"series_id": "s1", "ts": 1}), "schema"),
        (b"s1", obs(value="3"), "schema"),
        (b"s1", obs(value=True), "schema"),
        (b"s1", obs(extra=1), "schema"),
        (b"", orjson.dumps({"series_id": "", "ts": 1, "value": 1}), "schema"),
        (b"x" * 201, orjson.dumps({"series_id": "x" * 201, "ts": 1, "value": 1}), "schema"),
        (b"s1", obs(ts="not-a-timestamp-at-all"), "bad_timestamp"),
        (b"s1", obs(ts="2024-01-01T00:00:00"), "bad_timestamp"),
        (b"s1", b'{"series_id": "s1", "ts": 1, "value": 1e400}', "malformed_json"),
        (None, obs(), "key_mismatch"),
        (b"s2", obs(), "key_mismatch"),
    ],
)
def test_bad_input_is_refused_with_a_reason(key: bytes | None, raw: bytes | None, reason: str) -> None:
    got = codecs.decode_observation(key, raw)
    assert isinstance(got, Refusal)
    assert got.reason == reason
    assert got.detail


def test_refusal_keeps_series_id_when_it_is_readable() -> None:
    got = codecs.decode_observation(b"s1", obs(ts="bad"))
    assert isinstance(got, Refusal) and got.series_id == "s1"


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        (0, 0),
        (1_700_000_000, 1_700_000_000 * 10**9),
        (1_700_000_000_000, 1_700_000_000 * 10**9),
        (1_700_000_000_000_000, 1_700_000_000 * 10**9),
        (1_700_000_000_000_000_000, 1_700_000_000 * 10**9),
        (1_700_000_000.25, 1_700_000_000_250_000_000),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000 * 10**9),
        ("2023-11-15T00:13:20.5+02:00", 1_700_000_000_500_000_000),
    ],
)
def test_parse_ts_units(ts: str | int | float, ns: int) -> None:
    assert codecs.parse_ts(ts) == ns


@pytest.mark.parametrize("ts", [-1, float("inf"), True, 10**19, "2024-13-01T00:00:00Z"])
def test_parse_ts_refuses(ts: object) -> None:
    with pytest.raises(ValueError):
        codecs.parse_ts(ts)  # type: ignore[arg-type]


def test_parse_ts_before_1970_only_when_asked() -> None:
    with pytest.raises(ValueError, match="before 1970"):
        codecs.parse_ts("1969-12-31T23:59:59Z")
    assert codecs.parse_ts("1969-12-31T23:59:59Z", pre_epoch=True) == -10**9
    assert codecs.parse_ts("1677-09-22T00:00:00Z", pre_epoch=True) < -9.2e18
    with pytest.raises(ValueError, match="1677"):
        codecs.parse_ts("1600-01-01T00:00:00Z", pre_epoch=True)
    with pytest.raises(ValueError):
        codecs.parse_ts(-1, pre_epoch=True)  # a negative epoch number stays refused: its unit is a guess


def test_encoders_produce_schema_valid_messages() -> None:
    pred = codecs.prediction_dict("s1", 5, 1.0, 0.5, 1.5, weights=(1, 0, 0, 0), mode="inference",
                                  regime_change=False, cusum_statistic=0.0, cusum_threshold=0.0,
                                  anomaly_score=0.3, config_version="abc")
    codecs.validator("prediction")(orjson.loads(codecs.dumps(pred)))
    event = codecs.event_dict("worker_ready", None, "info", {"partitions": [0]})
    codecs.validator("event")(event)
    raw = b"\xff\xfe not utf-8"
    dead = codecs.deadletter_dict(Refusal("malformed_json", "x"), raw, "usp.observations", 3, 42)
    codecs.validator("deadletter")(dead)
    assert base64.b64decode(dead["raw_b64"]) == raw


def test_prediction_schema_rejects_weights_off_the_unit_interval() -> None:
    pred = codecs.prediction_dict("s1", 5, 1.0, 0.5, 1.5, weights=(2, 0, 0, 0), mode="inference",
                                  regime_change=False, cusum_statistic=0.0, cusum_threshold=0.0,
                                  anomaly_score=0.3, config_version="abc")
    with pytest.raises(Exception, match="weights"):
        codecs.validator("prediction")(pred)


def test_every_refusal_reason_of_the_step_is_a_deadletter_reason() -> None:
    enum = set(schemas.load("deadletter")["properties"]["reason"]["enum"])
    assert set(REASON_NAMES) - {"ok"} <= enum
    for reason in REASON_NAMES[1:]:
        dead = codecs.deadletter_dict(Refusal(reason, "a sentence", "s1"), b"{}", "usp.observations", 0, 7)
        codecs.validator("deadletter")(dead)


def test_deadletter_schema_refuses_an_unknown_reason() -> None:
    dead = codecs.deadletter_dict(Refusal("no_such_reason", "x"), b"{}", "usp.observations", 0, 0)
    with pytest.raises(Exception, match="reason"):
        codecs.validator("deadletter")(dead)


@pytest.mark.parametrize(
    ("kind", "severity", "details"),
    [
        ("regime_change", "warning", {"observation_ts": 5, "value": 1.5, "residual": 9.0,
                                      "cusum_statistic": 7.5, "cusum_threshold": 5.0, "alarms": 1}),
        ("degraded_enter", "warning", {"observation_ts": 5, "reason": "frozen"}),
        ("degraded_exit", "info", {"observation_ts": 9, "clean_ticks": 3}),
    ],
)
def test_series_events_are_schema_valid(kind: str, severity: str, details: dict[str, object]) -> None:
    event = orjson.loads(codecs.dumps(codecs.event_dict(kind, "s1", severity, details)))
    codecs.validator("event")(event)
    assert event["series_id"] == "s1" and event["ts"] > 0


def test_prediction_with_fused_weights_and_an_alarm_is_schema_valid() -> None:
    pred = codecs.prediction_dict("s1", 5, 1.0, 0.5, 1.5, weights=[0.1, 0.2, 0.3, 0.4], mode="calibration",
                                  regime_change=True, cusum_statistic=6.2, cusum_threshold=5.0,
                                  anomaly_score=1.0, config_version="abc")
    codecs.validator("prediction")(orjson.loads(codecs.dumps(pred)))


_numbers = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False))
_values = st.one_of(st.none(), _numbers, st.text(max_size=250), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_messages = st.one_of(
    st.fixed_dictionaries({"series_id": st.one_of(st.text(max_size=5), st.text(min_size=195, max_size=210)),
                           "ts": _numbers, "value": _numbers}),  # near the shortcut, and around its length limit
    st.fixed_dictionaries({"series_id": _values, "ts": _values, "value": _values},
                          optional={"meta": _values, "extra": _values}),
    st.dictionaries(st.sampled_from(["series_id", "ts", "value", "meta", "x"]), _values, max_size=4),
    _values,
)


@settings(max_examples=600, deadline=None)
@given(_messages)
def test_the_validators_shortcut_admits_only_what_the_schema_admits(msg: object) -> None:
    """`_plainly_valid` skips the compiled validator for the common record: wherever it says yes, the
    schema must say yes too (where it says no, the validator decides)."""
    if codecs._plainly_valid(msg):
        codecs.validator("observation")(msg)  # raises if the schema refuses it


@pytest.mark.parametrize("msg", [
    {"series_id": "s", "ts": 1, "value": 2.0},
    {"series_id": "s" * 200, "ts": 1.5, "value": -3},
    {"series_id": "s", "ts": 0, "value": 0},
])
def test_the_validators_shortcut_takes_the_common_record(msg: dict[str, object]) -> None:
    assert codecs._plainly_valid(msg)


@pytest.mark.parametrize(("msg", "schema_admits"), [
    ({"series_id": "", "ts": 1, "value": 2.0}, False),
    ({"series_id": "s" * 201, "ts": 1, "value": 2.0}, False),
    ({"series_id": "s", "ts": -1, "value": 2.0}, False),
    ({"series_id": "s", "ts": 1, "value": True}, False),
    ({"series_id": "s", "ts": True, "value": 1.0}, False),
    ({"series_id": "s", "ts": 1}, False),
    ({"series_id": "s", "ts": "2024-01-01T00:00:00Z", "value": 2.0}, True),  # a string ts: its lengths
    ({"series_id": "s", "ts": 1, "value": 2.0, "meta": {}}, True),
])
def test_the_validators_shortcut_leaves_the_rest_to_the_validator(msg: dict[str, object], schema_admits: bool) -> None:
    assert not codecs._plainly_valid(msg)
    if schema_admits:
        codecs.validator("observation")(msg)
    else:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            codecs.validator("observation")(msg)
