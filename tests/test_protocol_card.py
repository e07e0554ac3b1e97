"""`lpft-bench protocol`: the paper suite's protocol card, pinned. Regenerate deliberately with
`LPFT_BENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_protocol_card.py` and say why in the commit."""
import json
import os
from pathlib import Path

import pytest

from lpft_bench.cli import main

GOLDEN = Path(__file__).parent / "golden" / "protocol.json"


@pytest.mark.slow  # builds the six paper architectures (on the meta device: no weights computed)
def test_protocol_card_of_the_six_paper_benchmarks_is_pinned(capsys, monkeypatch):
    monkeypatch.delenv("LPFT_BENCH_CHECKPOINTS", raising=False)  # the card then says no checkpoint was downloaded
    assert main(["protocol", "--json"]) == 0
    cards = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    if os.environ.get("LPFT_BENCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(cards, indent=1, sort_keys=True) + "\n")
    assert cards == json.loads(GOLDEN.read_text())
    by_name = {card["benchmark"]: card for card in cards}
    assert list(by_name) == ["living17", "entity30", "cifar10", "domainnet", "fmow", "imagenet"]
    assert {name: card["feature_dim"] for name, card in by_name.items()} == {
        "living17": 2048, "entity30": 2048, "cifar10": 2048, "domainnet": 1024, "fmow": 2048, "imagenet": 512}
    assert by_name["living17"]["lp"]["standardise"] == "scalar"
    assert by_name["domainnet"]["batch_size"]["ft"] == 64


def test_protocol_of_an_unknown_benchmark_is_a_one_line_usage_error(capsys):
    assert main(["protocol", "digits"]) == 2
    assert "has no benchmark 'digits'" in capsys.readouterr().err


REN_GOLDEN = Path(__file__).parent / "golden" / "protocol_ren2023.json"


def test_ren2023_card_is_pinned_and_says_where_every_item_comes_from(capsys):
    assert main(["protocol", "ren2023", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    if os.environ.get("LPFT_BENCH_UPDATE_GOLDEN"):
        REN_GOLDEN.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    assert card == json.loads(REN_GOLDEN.read_text())
    for item in card["items"]:
        assert item["source"].startswith(("paper (", "development code (", "our choice, unverifiable")), item
        assert "@895092c" in item["source"] or not item["source"].startswith("development code"), item
        assert "why" in item or not item["source"].startswith("our choice"), item
    assert card["jobs"] == 354
