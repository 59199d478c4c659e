"""Property test: HA tool names → wire names → HA names is the identity (tool_names.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from custom_components.home_mind.tool_names import ToolNames, is_valid

_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=140
) | st.from_regex(r"[a-z]{1,8}[.:][A-Za-z_]{1,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAMES, max_size=25), st.randoms())
def test_round_trip_is_identity_valid_and_order_independent(names: list[str], rnd) -> None:
    mapping = ToolNames.for_tools(names)
    wire = {name: mapping.to_wire(name) for name in names}
    for name, wire_name in wire.items():
        assert is_valid(wire_name)
        assert mapping.to_ha(wire_name) == name
        if is_valid(name):
            assert wire_name == name
    assert len(set(wire.values())) == len(set(names))  # no two tools share a wire name
    shuffled = list(names)
    rnd.shuffle(shuffled)
    again = ToolNames.for_tools(shuffled)
    assert {name: again.to_wire(name) for name in names} == wire
