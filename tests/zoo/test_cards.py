"""The seed-summary cell of the reproduce scripts' tables."""

import statistics

from geozoo.zoo.cards import mean_std


def test_mean_std_cells():
    values = [93.6, 92.1, 94.9]
    expected = f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
    assert mean_std(values) == expected == "93.5 ± 1.4"
    assert mean_std([0.12345, 0.5], digits=2) == "0.31 ± 0.27"
    assert mean_std([97.04]) == "97.0"
